//! AVX2 kernels for the k-quant panels (Q4_K, Q5_K, Q6_K), for CPUs without AVX-512 VNNI (most AVX2
//! machines, AMD Zen 1-3 among them): the portable code would be many times slower there.
//!
//! The stored weights are unsigned (q for Q4_K and Q5_K, q + 32 for Q6_K), so `vpmaddubsw` multiplies
//! them by the signed input bytes directly (no sign trick: |pair sum| <= 2 x 63 x 127 fits 16
//! bits) and `vpmaddwd` adds the pairs into each output's 32-bit lane: the same exact integer
//! sums as `vpdpbusd`. The scaling is the VNNI tiles' operations on 8 lanes at a time, so every
//! kernel gives the same bits (tested in `q4k` and `q6k`).

use std::arch::x86_64::*;

use super::q4k::{PackedK, HIGH_BYTES, SUB_BLOCKS};
use super::q6k::{self, PackedQ6K};
use super::{row_blocks, Format, PanelKernels, QuantizedInput, BLOCK, CHUNK_PANELS, PANEL, Q4};

/// The panel pass shared by both formats: `tile(panel, r0, rows)` for every panel and block
/// of at most `max_rows` input rows.
///
/// # Safety
/// AVX2, FMA and F16C are available, and `check` passed for the whole call (the caller's).
#[inline(always)]
unsafe fn walk(k: usize, n: usize, max_rows: usize, mut tile: impl FnMut(usize, usize, usize)) {
    row_blocks(k, n, max_rows, CHUNK_PANELS, |chunk, r0, rows| {
        for p in chunk {
            tile(p, r0, rows);
        }
    });
}

/// Where a tile writes: `buf` is `[k][width]`, panel p at column p x 16.
#[derive(Clone, Copy)]
struct Out {
    buf: *mut f32,
    width: usize,
}

impl Out {
    /// Checks `buf` (`[k][width]`) holds `n` panels for every row, and `w` and `x` hold the
    /// panels from `p0` and k rows: what the tiles' unchecked loads and stores rely on.
    fn new<W: PanelKernels>(
        w: &W,
        x: &QuantizedInput,
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) -> Self {
        let width = buf.len() / k;
        assert!(width >= n * PANEL && buf.len() >= k * width);
        w.check(x, k, p0, n);
        Self {
            buf: buf.as_mut_ptr(),
            width,
        }
    }

    /// # Safety
    /// Row r and panel p lie inside the buffer.
    #[inline(always)]
    unsafe fn store(self, r: usize, p: usize, lanes: [__m256; 2]) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let at = self.buf.add(r * self.width + p * PANEL);
            _mm256_storeu_ps(at, lanes[0]);
            _mm256_storeu_ps(at.add(8), lanes[1]);
        }
    }
}

/// Lanes 8h..8h+8 of chunk c of a Q4_0-layout panel block, as unsigned bytes 0..=15.
#[inline(always)]
unsafe fn nibbles(p: *const u8, c: usize, h: usize) -> __m256i {
    // SAFETY: the caller's block is whole.
    unsafe {
        let v = _mm256_loadu_si256(p.add((c % 4) * 64 + h * 32).cast());
        let v = if c < 4 { v } else { _mm256_srli_epi16::<4>(v) };
        _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
    }
}

/// Lanes 8h..8h+8 of chunk c of a Q5_K fifth-bit block, moved to bit 4 (see
/// `x86::fifth_bits512`).
#[inline(always)]
unsafe fn fifth_bits(p: *const u8, c: usize, h: usize) -> __m256i {
    // SAFETY: the caller's block is whole; the mask keeps bit 4 alone.
    unsafe {
        let v = _mm256_loadu_si256(p.add(h * 32).cast());
        let v = match c {
            0 => _mm256_slli_epi16::<4>(v),
            1 => _mm256_slli_epi16::<3>(v),
            2 => _mm256_slli_epi16::<2>(v),
            3 => _mm256_slli_epi16::<1>(v),
            4 => v,
            5 => _mm256_srli_epi16::<1>(v),
            6 => _mm256_srli_epi16::<2>(v),
            _ => _mm256_srli_epi16::<3>(v),
        };
        _mm256_and_si256(v, _mm256_set1_epi8(0x10))
    }
}

/// Lanes 8h..8h+8 of chunk c of a Q6_K panel block as q + 32 (see `q6k::chunk512`).
#[inline(always)]
unsafe fn six_bits(p: *const u8, c: usize, h: usize) -> __m256i {
    // SAFETY: the caller's block is whole; the mask keeps bits that stay in their byte.
    unsafe {
        let hv = _mm256_loadu_si256(p.add(Q4::PANEL_BLOCK + (c / 4) * 64 + h * 32).cast());
        let hv = match c % 4 {
            0 => _mm256_slli_epi16::<4>(hv),
            1 => _mm256_slli_epi16::<2>(hv),
            2 => hv,
            _ => _mm256_srli_epi16::<2>(hv),
        };
        _mm256_or_si256(nibbles(p, c, h), _mm256_and_si256(hv, _mm256_set1_epi8(0x30)))
    }
}

/// `s[h] += u[h] . x` per lane, over the chunk's 4 bytes (`four` holds the input's 4 bytes).
#[inline(always)]
unsafe fn dot_chunk(u: &[__m256i; 2], four: i32, s: &mut [__m256i; 2]) {
    // SAFETY: AVX2 is available (the caller's contract).
    unsafe {
        let xv = _mm256_set1_epi32(four);
        let ones = _mm256_set1_epi16(1);
        for h in 0..2 {
            s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(_mm256_maddubs_epi16(u[h], xv), ones));
        }
    }
}

/// The 4 input bytes of chunk c of block b in input row `row`.
///
/// # Safety
/// Inside the quantized input.
#[inline(always)]
unsafe fn four(x: &QuantizedInput, row: usize, cols: usize, b: usize, c: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { super::x86::four_bytes(x.quants.as_ptr(), row, cols, b, c) }
}

pub(super) fn kernel_q4k<const FIVE: bool>(
    w: &PackedK<FIVE>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    // SAFETY: chosen only when the CPU reports avx2, fma and f16c.
    unsafe { kernel_q4k_impl(w, x, k, p0, n, buf) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_q4k_impl<const FIVE: bool>(
    w: &PackedK<FIVE>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let out = Out::new(w, x, k, p0, n, buf);
    // SAFETY (the walk): the asserts above hold every panel and row in bounds.
    unsafe {
        walk(k, n, 2, |p, r0, rows| {
            if rows == 1 {
                q4k_tile::<FIVE, 1>(w, x, p0 + p, p, r0, out);
            } else {
                q4k_tile::<FIVE, 2>(w, x, p0 + p, p, r0, out);
            }
        })
    }
}

/// Panel `panel` times input rows r0..r0+R: `q4k::kernel_portable`'s operations, 8 lanes at
/// a time.
#[inline(always)]
unsafe fn q4k_tile<const FIVE: bool, const R: usize>(
    w: &PackedK<FIVE>,
    x: &QuantizedInput,
    panel: usize,
    p: usize,
    r0: usize,
    out: Out,
) {
    let (blocks, cols) = (w.blocks, w.cols);
    let supers = blocks / SUB_BLOCKS;
    // SAFETY (whole body): the caller guarantees the CPU features and `check`.
    unsafe {
        let wq = w.quants.as_ptr().add(panel * blocks * Q4::PANEL_BLOCK);
        let half = |v: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(v.cast()));
        let widen = |v: *const u8| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(v.cast())));
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..blocks {
            let mut sums = [[_mm256_setzero_si256(); 2]; R];
            let at = wq.add(b * Q4::PANEL_BLOCK);
            let fifth = w.high.as_ptr().wrapping_add((panel * blocks + b) * HIGH_BYTES);
            for c in 0..8 {
                let u: [__m256i; 2] = std::array::from_fn(|h| {
                    if FIVE {
                        _mm256_or_si256(nibbles(at, c, h), fifth_bits(fifth, c, h))
                    } else {
                        nibbles(at, c, h)
                    }
                });
                for (r, s) in sums.iter_mut().enumerate() {
                    dot_chunk(&u, four(x, r0 + r, cols, b, c), s);
                }
            }
            let s = (panel * supers + b / SUB_BLOCKS) * PANEL;
            let at = (panel * blocks + b) * PANEL;
            let d1: [__m256; 2] = std::array::from_fn(|h| {
                _mm256_mul_ps(
                    half(w.d.as_ptr().add(s + 8 * h)),
                    widen(w.sc.as_ptr().add(at + 8 * h)),
                )
            });
            let m1: [__m256; 2] = std::array::from_fn(|h| {
                _mm256_mul_ps(
                    half(w.dmin.as_ptr().add(s + 8 * h)),
                    widen(w.m.as_ptr().add(at + 8 * h)),
                )
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let dx = _mm256_set1_ps(x.scales[(r0 + r) * blocks + b]);
                let sum = _mm256_set1_ps(x.sums[(r0 + r) * blocks + b] as f32);
                for h in 0..2 {
                    let t = _mm256_fmsub_ps(d1[h], _mm256_cvtepi32_ps(sums[r][h]), _mm256_mul_ps(m1[h], sum));
                    a[h] = _mm256_fmadd_ps(t, dx, a[h]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            out.store(r0 + r, p, *a);
        }
    }
}

pub(super) fn kernel_q6k(w: &PackedQ6K, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
    // SAFETY: chosen only when the CPU reports avx2, fma and f16c.
    unsafe { kernel_q6k_impl(w, x, k, p0, n, buf) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_q6k_impl(w: &PackedQ6K, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
    let out = Out::new(w, x, k, p0, n, buf);
    // SAFETY (the walk): the asserts above hold every panel and row in bounds. One row per
    // tile: its four sums and two accumulators, with the operands, fill the 16 registers.
    unsafe { walk(k, n, 1, |p, r0, _| q6k_tile(w, x, p0 + p, p, r0, out)) }
}

/// Panel `panel` times input row r0: `q6k::kernel_portable`'s operations, 8 lanes at a time.
#[inline(always)]
unsafe fn q6k_tile(w: &PackedQ6K, x: &QuantizedInput, panel: usize, p: usize, r0: usize, out: Out) {
    let (blocks, cols) = (w.blocks, w.cols);
    let supers = blocks / (256 / BLOCK);
    // SAFETY (whole body): the caller guarantees the CPU features and `check`.
    unsafe {
        let wq = w.quants.as_ptr().add(panel * blocks * q6k::PANEL_BLOCK);
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..blocks {
            let half_sum = |hb: usize| x.half_sums[r0 * 2 * blocks + 2 * b + hb];
            let mut sums = [
                [_mm256_set1_epi32(-q6k::BIAS * half_sum(0)); 2],
                [_mm256_set1_epi32(-q6k::BIAS * half_sum(1)); 2],
            ];
            let at = wq.add(b * q6k::PANEL_BLOCK);
            for c in 0..8 {
                let u = [six_bits(at, c, 0), six_bits(at, c, 1)];
                dot_chunk(&u, four(x, r0, cols, b, c), &mut sums[c / 4]);
            }
            let s = (panel * supers + b / (256 / BLOCK)) * PANEL;
            let dx = _mm256_set1_ps(x.scales[r0 * blocks + b]);
            for (h, a) in acc.iter_mut().enumerate() {
                let d = _mm256_cvtph_ps(_mm_loadu_si128(w.d.as_ptr().add(s + 8 * h).cast()));
                let sc = |hb: usize| {
                    let at = (panel * 2 * blocks + 2 * b + hb) * PANEL + 8 * h;
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(w.sc.as_ptr().add(at).cast()))
                };
                let t = _mm256_add_epi32(
                    _mm256_mullo_epi32(sc(0), sums[0][h]),
                    _mm256_mullo_epi32(sc(1), sums[1][h]),
                );
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(d, dx), *a);
            }
        }
        out.store(r0, p, acc);
    }
}
