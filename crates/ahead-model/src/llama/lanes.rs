//! f32 vectors of `LANES` lanes for the hand-written kernels (attention, SiLU): one generic
//! algorithm, an AVX2+FMA backend and a portable one. Every operation rounds as IEEE 754 single
//! precision does (fused multiply-add included), so the backends give the same bits.

/// f32 lanes per vector.
pub(crate) const LANES: usize = 8;

/// Whether this CPU runs the AVX2 backend (checked once).
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The vector operations the kernels need; every backend rounds each exactly as IEEE 754
/// single precision does, so they all give the same bits.
pub(crate) trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    /// The first `LANES` values of `s`.
    fn load(s: &[f32]) -> Self;
    /// Into the first `LANES` values of `s`.
    fn store(self, s: &mut [f32]);
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
}

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
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Avx2;

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
            let s = &s[..LANES];
            Self(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..LANES];
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
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
        for chunk in xs.chunks(LANES) {
            let mut buf = [0f32; LANES];
            buf[..chunk.len()].copy_from_slice(chunk);
            let mut portable = [0f32; LANES];
            exp(Portable::load(&buf)).store(&mut portable);
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                let mut fast = [0f32; LANES];
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { x86::exp_lanes(&buf, &mut fast) };
                assert_eq!(bits(&fast), bits(&portable), "{buf:?}");
            }
            for (&x, &y) in chunk.iter().zip(&portable) {
                let want = (x as f64).exp();
                let ulp = (want as f32).to_bits().abs_diff(y.to_bits());
                assert!(ulp <= 2, "exp({x}) = {y}, want {want} ({ulp} ulp)");
            }
        }
    }
}
