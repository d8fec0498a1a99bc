//! f32 vectors for the hand-written kernels (attention, SiLU): one generic algorithm, an
//! AVX2+FMA backend and a portable one of `LANES` lanes, and an AVX-512 one of 16 lanes for
//! element-wise work (exp, SiLU). Every operation rounds as IEEE 754 single precision does
//! (fused multiply-add included), so the backends give the same bits, whatever their width.

/// f32 lanes per vector of the layouts and reductions that fix the order of a sum (attention's
/// key blocks, its partial sums): every backend follows them.
pub(crate) const LANES: usize = 8;

/// Whether this CPU runs the AVX2 backend.
pub(crate) fn has_avx2_fma() -> bool {
    super::cpu::cpu().avx2_fma()
}

/// Whether this CPU runs the AVX-512 backend for element-wise work.
pub(crate) fn has_avx512f() -> bool {
    let f = super::cpu::cpu();
    f.avx512f && f.avx2_fma()
}

/// The vector operations the kernels need; every backend rounds each exactly as IEEE 754
/// single precision does, so they all give the same bits.
pub(crate) trait Lanes: Copy {
    /// Lanes of this backend: `LANES`, or 16 for `Avx512` (element-wise work only).
    const N: usize;
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    /// The first `N` values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `N` values of `s`.
    fn store(self, s: &mut [f32]);
    /// Lanes 0..N/2 from the first values of `lo`, N/2..N from the first values of `hi`.
    fn load_halves(lo: &[f32], hi: &[f32]) -> Self;
    /// `self * b + c`, rounded once.
    fn fma(self, b: Self, c: Self) -> Self;
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn div(self, b: Self) -> Self;
    /// Per lane `if self > b { self } else { b }` (x86 `maxps`).
    fn max(self, b: Self) -> Self;
    /// Per lane `if self < b { self } else { b }` (x86 `minps`).
    fn min(self, b: Self) -> Self;
    /// To the nearest integer, ties to even.
    fn round(self) -> Self;
    /// 2^n for lanes holding integers n in -126..=127.
    fn pow2(self) -> Self;
    /// Per lane `if x < bound { 0 } else { self }` (a NaN x keeps `self`).
    fn zero_below(self, x: Self, bound: Self) -> Self;
}

/// Asks the CPU to start loading the cache line that holds `s[i]`: a hint, which changes no
/// result (nothing happens where there is no such instruction, or past the end of `s`).
#[inline(always)]
pub(crate) fn prefetch(s: &[f32], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < s.len() {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: the address lies inside `s`, and a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(i).cast()) };
    }
}

/// `f(V::load(x)).store(out)` over whole vectors of `x`, the tail padded with zeros: element-wise
/// work in any backend's width, lane for lane the same bits.
#[inline(always)]
pub(crate) fn map_in_place<V: Lanes>(x: &mut [f32], f: impl Fn(V) -> V) {
    let mut chunks = x.chunks_exact_mut(V::N);
    for c in chunks.by_ref() {
        f(V::load(c)).store(c);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut buf = [0f32; MAX_N];
        buf[..rest.len()].copy_from_slice(rest);
        f(V::load(&buf)).store(&mut buf);
        rest.copy_from_slice(&buf[..rest.len()]);
    }
}

/// The widest backend's lanes.
pub(crate) const MAX_N: usize = 16;

/// e^x within 2 ulp for x in -87..=88; outside, x is clamped to that range (e^-87 is about
/// 1.6e-38, e^88 about 1.7e38: below and above everything softmax and SiLU can tell apart).
/// Cody-Waite reduction to |r| <= ln 2 / 2, then a degree-7 Taylor polynomial.
#[inline(always)]
pub(crate) fn exp<V: Lanes>(x: V) -> V {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const COEFFS: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let x = x.max(V::splat(-87.0)).min(V::splat(88.0));
    let n = x.mul(V::splat(std::f32::consts::LOG2_E)).round();
    let r = n.fma(V::splat(-LN2_HI), x);
    let r = n.fma(V::splat(-LN2_LO), r);
    let mut p = V::splat(1.0 / 5040.0);
    for c in COEFFS {
        p = p.fma(r, V::splat(c));
    }
    p.mul(n.pow2())
}

/// Plain arrays: the portable backend, lane by lane.
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; LANES]);

impl Portable {
    #[inline(always)]
    fn map2(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self(std::array::from_fn(|i| f(self.0[i], b.0[i])))
    }
}

impl Lanes for Portable {
    const N: usize = LANES;
    fn zero() -> Self {
        Self([0.0; LANES])
    }
    fn splat(x: f32) -> Self {
        Self([x; LANES])
    }
    fn load(s: &[f32]) -> Self {
        Self(std::array::from_fn(|i| s[i]))
    }
    fn store(self, s: &mut [f32]) {
        s[..LANES].copy_from_slice(&self.0);
    }
    fn load_halves(lo: &[f32], hi: &[f32]) -> Self {
        Self(std::array::from_fn(|i| {
            if i < LANES / 2 {
                lo[i]
            } else {
                hi[i - LANES / 2]
            }
        }))
    }
    fn fma(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|i| self.0[i].mul_add(b.0[i], c.0[i])))
    }
    fn add(self, b: Self) -> Self {
        self.map2(b, |x, y| x + y)
    }
    fn sub(self, b: Self) -> Self {
        self.map2(b, |x, y| x - y)
    }
    fn mul(self, b: Self) -> Self {
        self.map2(b, |x, y| x * y)
    }
    fn div(self, b: Self) -> Self {
        self.map2(b, |x, y| x / y)
    }
    fn max(self, b: Self) -> Self {
        self.map2(b, |x, y| if x > y { x } else { y })
    }
    fn min(self, b: Self) -> Self {
        self.map2(b, |x, y| if x < y { x } else { y })
    }
    fn round(self) -> Self {
        Self(self.0.map(f32::round_ties_even))
    }
    fn pow2(self) -> Self {
        Self(self.0.map(|n| f32::from_bits(((n as i32 + 127) as u32) << 23)))
    }
    fn zero_below(self, x: Self, bound: Self) -> Self {
        Self(std::array::from_fn(|i| {
            if x.0[i] < bound.0[i] {
                0.0
            } else {
                self.0[i]
            }
        }))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Lanes, LANES};

    /// AVX2 + FMA lanes. Use them only inside functions compiled with
    /// `#[target_feature(enable = "avx2,fma")]` and called where `has_avx2_fma()` holds.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    // SAFETY (every method): by the type's contract the CPU has AVX2 and FMA; loads and stores
    // go through slices of at least `LANES` values.
    impl Lanes for Avx2 {
        const N: usize = LANES;
        #[inline(always)]
        fn zero() -> Self {
            Self(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Self(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            let s = &s[..Self::N];
            Self(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..Self::N];
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn load_halves(lo: &[f32], hi: &[f32]) -> Self {
            let (lo, hi) = (&lo[..Self::N / 2], &hi[..Self::N / 2]);
            Self(unsafe { _mm256_loadu2_m128(hi.as_ptr(), lo.as_ptr()) })
        }
        #[inline(always)]
        fn fma(self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Self(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Self(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Self(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            Self(unsafe { _mm256_div_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            Self(unsafe { _mm256_max_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn min(self, b: Self) -> Self {
            Self(unsafe { _mm256_min_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn round(self) -> Self {
            Self(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        fn pow2(self) -> Self {
            Self(unsafe {
                let n = _mm256_add_epi32(_mm256_cvtps_epi32(self.0), _mm256_set1_epi32(127));
                _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n))
            })
        }
        #[inline(always)]
        fn zero_below(self, x: Self, bound: Self) -> Self {
            Self(unsafe { _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x.0, bound.0), self.0) })
        }
    }

    /// AVX-512 lanes, 16 wide: for element-wise work, where width does not change the bits.
    /// Use them only inside functions compiled with `#[target_feature(enable = "avx512f")]`
    /// and called where `has_avx512f()` holds.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    // SAFETY (every method): by the type's contract the CPU has AVX-512F; loads and stores go
    // through slices of at least 16 values.
    impl Lanes for Avx512 {
        const N: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            Self(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            Self(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            let s = &s[..Self::N];
            Self(unsafe { _mm512_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..Self::N];
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn load_halves(lo: &[f32], hi: &[f32]) -> Self {
            let (lo, hi) = (&lo[..Self::N / 2], &hi[..Self::N / 2]);
            Self(unsafe {
                let lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(lo.as_ptr())));
                let hi = _mm256_castps_pd(_mm256_loadu_ps(hi.as_ptr()));
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
            })
        }
        #[inline(always)]
        fn fma(self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Self(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Self(unsafe { _mm512_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Self(unsafe { _mm512_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            Self(unsafe { _mm512_div_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            Self(unsafe { _mm512_max_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn min(self, b: Self) -> Self {
            Self(unsafe { _mm512_min_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn round(self) -> Self {
            Self(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
        }
        #[inline(always)]
        fn pow2(self) -> Self {
            Self(unsafe {
                let n = _mm512_add_epi32(_mm512_cvtps_epi32(self.0), _mm512_set1_epi32(127));
                _mm512_castsi512_ps(_mm512_slli_epi32::<23>(n))
            })
        }
        #[inline(always)]
        fn zero_below(self, x: Self, bound: Self) -> Self {
            Self(unsafe { _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x.0, bound.0), self.0) })
        }
    }

    /// `out = exp(x)` lane by lane, for tests.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(test)]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp_lanes(x: &[f32], out: &mut [f32]) {
        super::exp(Avx2::load(x)).store(out);
    }

    /// `out = exp(x)` for 16 lanes, and `zero_below(x, bound)` of it, for tests.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[cfg(test)]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp_lanes512(x: &[f32], bound: f32, out: &mut [f32], kept: &mut [f32]) {
        let e = super::exp(Avx512::load(x));
        e.store(out);
        e.zero_below(Avx512::load(x), Avx512::splat(bound)).store(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn exp_is_within_two_ulp_from_minus_87_to_88_and_the_same_in_every_backend() {
        let xs: Vec<f32> = (-87_000..=88_000)
            .map(|i| i as f32 / 1000.0)
            .chain([-0.0, -1e-30, 1e-30, -86.99, 87.99])
            .collect();
        for chunk in xs.chunks(MAX_N) {
            let mut buf = [0f32; MAX_N];
            buf[..chunk.len()].copy_from_slice(chunk);
            let mut portable = [0f32; MAX_N];
            for (x, out) in buf.chunks(LANES).zip(portable.chunks_mut(LANES)) {
                exp(Portable::load(x)).store(out);
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                let mut fast = [0f32; MAX_N];
                for (x, out) in buf.chunks(LANES).zip(fast.chunks_mut(LANES)) {
                    // SAFETY: the CPU has AVX2 and FMA.
                    unsafe { x86::exp_lanes(x, out) };
                }
                assert_eq!(bits(&fast), bits(&portable), "{buf:?}");
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx512f() {
                let (mut wide, mut kept) = ([0f32; MAX_N], [0f32; MAX_N]);
                // SAFETY: the CPU has AVX-512F.
                unsafe { x86::exp_lanes512(&buf, -1.0, &mut wide, &mut kept) };
                assert_eq!(bits(&wide), bits(&portable), "{buf:?}");
                let want: Vec<f32> = buf
                    .iter()
                    .zip(&wide)
                    .map(|(&x, &e)| if x < -1.0 { 0.0 } else { e })
                    .collect();
                assert_eq!(bits(&kept), bits(&want), "{buf:?}");
            }
            for (&x, &y) in chunk.iter().zip(&portable) {
                let want = (x as f64).exp();
                let ulp = (want as f32).to_bits().abs_diff(y.to_bits());
                assert!(ulp <= 2, "exp({x}) = {y}, want {want} ({ulp} ulp)");
            }
        }
    }
}

#[cfg(test)]
mod zero_below_tests {
    use super::*;

    #[test]
    fn zero_below_keeps_nan_and_the_bound_itself_in_every_backend() {
        let x = [-3.0, -2.0, -1.0, f32::NAN, 0.0, -f32::INFINITY, 5.0, -2.0000002];
        let v = [1.5f32; LANES];
        let mut portable = [0f32; LANES];
        Portable::load(&v)
            .zero_below(Portable::load(&x), Portable::splat(-2.0))
            .store(&mut portable);
        assert_eq!(portable, [0.0, 1.5, 1.5, 1.5, 1.5, 0.0, 1.5, 0.0]);
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            let mut fast = [0f32; LANES];
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { x86_zero_below(&v, &x, &mut fast) };
            assert_eq!(fast, portable);
        }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn x86_zero_below(v: &[f32], x: &[f32], out: &mut [f32]) {
        Avx2::load(v)
            .zero_below(Avx2::load(x), Avx2::splat(-2.0))
            .store(out);
    }
}
