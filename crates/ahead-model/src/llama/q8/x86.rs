//! The x86 kernels: AVX-512 VNNI, and AVX2 for CPUs without it, with the AVX-512 input
//! quantizer. Each is chosen at run time (`kernel_choice`) and gives the same bits.

use super::q4k::{PackedK, HIGH_BYTES, SUB_BLOCKS};
use super::q6k::PackedQ6K;
use super::{row_blocks, Format, Packed, PanelKernels, QuantizedInput, BLOCK, CHUNK_PANELS, PANEL};
use std::arch::x86_64::*;

/// Input rows per pass: 8 rows x 1 panel keep 16 accumulators in the 32 registers (formats with
/// two sums per row take fewer: `VnniTiles::ROWS`).
const MAX_ROWS: usize = 8;
/// How far ahead (16 KiB: 32 Q8_0 blocks of a panel) weights are prefetched into L2 when several
/// input rows make the loop compute-bound: the hardware prefetcher alone falls behind there,
/// and memory time adds to compute time instead of hiding under it (measured: 8 rows over
/// a 49 MB matrix took 1.64x one row without it, 1.13x with it; up to 4 rows gain nothing).
const PREFETCH_BYTES: usize = 16 << 10;

/// A panel matrix the VNNI driver walks: its micro-kernel.
pub(super) trait VnniTiles: PanelKernels + Sized {
    /// Integer sums per (panel, input row) in a tile: two halves' sums use twice the
    /// registers, so tiles get fewer panels and rows (spilling made them 1.5-2x slower).
    const SUMS: usize = 1;
    /// Input rows per pass (at most `MAX_ROWS`).
    const ROWS: usize = MAX_ROWS;

    /// Panels p..p+P (of the tile's p0) times input rows r0..r0+R.
    ///
    /// # Safety
    /// AVX-512F and VNNI are available, and `check` passed for the whole call.
    unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize);
}

pub(super) fn kernel_vnni<W: VnniTiles>(
    w: &W,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    // SAFETY: chosen only when the CPU reports avx512f and avx512vnni.
    unsafe { kernel_vnni_impl(w, x, k, p0, n, buf) }
}

/// Walks (panel chunk, row block) pairs; panels go 4, 2 or 1 at a time so that at least
/// four independent `vpdpbusd` chains hide the instruction's latency.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel_vnni_impl<W: VnniTiles>(
    w: &W,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let width = buf.len() / k;
    assert!(width >= n * PANEL && buf.len() >= k * width);
    w.check(x, k, p0, n);
    row_blocks(k, n, W::ROWS.min(MAX_ROWS), CHUNK_PANELS, |chunk, r0, rows| {
        let t = Args {
            w,
            x,
            r0,
            p0,
            buf: buf.as_mut_ptr(),
            width,
        };
        // SAFETY: the asserts above hold every panel and row the tiles touch in bounds.
        unsafe {
            match rows {
                1 => panels::<W, 4, 1>(&t, chunk),
                2 if W::SUMS > 1 => panels::<W, 2, 2>(&t, chunk),
                2 => panels::<W, 4, 2>(&t, chunk),
                3 => panels::<W, 2, 3>(&t, chunk),
                4 if W::SUMS > 1 => panels::<W, 1, 4>(&t, chunk),
                4 => panels::<W, 2, 4>(&t, chunk),
                5 => panels::<W, 1, 5>(&t, chunk),
                6 => panels::<W, 1, 6>(&t, chunk),
                7 => panels::<W, 1, 7>(&t, chunk),
                _ => panels::<W, 1, 8>(&t, chunk),
            }
        }
    });
}

/// What every tile of one row block shares.
pub(super) struct Args<'a, W> {
    w: &'a W,
    x: &'a QuantizedInput,
    r0: usize,
    p0: usize,
    buf: *mut f32,
    width: usize,
}

/// Panels of `chunk`, `P` at a time, then one at a time.
#[inline(always)]
unsafe fn panels<W: VnniTiles, const P: usize, const R: usize>(
    t: &Args<'_, W>,
    chunk: std::ops::Range<usize>,
) {
    let mut p = chunk.start;
    while p + P <= chunk.end {
        // SAFETY: forwarded from `kernel_vnni_impl`.
        unsafe { W::tile::<P, R>(t, p) };
        p += P;
    }
    while p < chunk.end {
        // SAFETY: forwarded from `kernel_vnni_impl`.
        unsafe { W::tile::<1, R>(t, p) };
        p += 1;
    }
}

impl<F: Format> VnniTiles for Packed<F> {
    #[inline(always)]
    unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { tile_blocks::<F, P, R>(t, p) }
    }
}

/// Prefetches into L2 block b of P consecutive panels (`blocks` blocks of `bytes` each from
/// `panels`), `PREFETCH_BYTES` ahead. Past a panel's end this reads ahead into the next panel,
/// which is next in memory; a prefetch never faults, so past the matrix is fine.
#[inline(always)]
unsafe fn prefetch<const P: usize>(panels: *const u8, blocks: usize, b: usize, bytes: usize) {
    for j in 0..P {
        let ahead = panels.wrapping_add((j * blocks + b) * bytes + PREFETCH_BYTES);
        for line in 0..bytes.div_ceil(64) {
            // SAFETY: a prefetch reads nothing the program sees and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(line * 64).cast()) };
        }
    }
}

/// The 4 input bytes of chunk c of block b in row r of `xq` (rows `cols` apart).
///
/// # Safety
/// They lie inside the quantized input.
#[inline(always)]
pub(super) unsafe fn four_bytes(xq: *const i8, r: usize, cols: usize, b: usize, c: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        xq.add(r * cols + b * BLOCK + c * 4)
            .cast::<i32>()
            .read_unaligned()
    }
}

/// `VnniTiles::tile` for Q8_0 and Q4_0.
#[inline(always)]
unsafe fn tile_blocks<F: Format, const P: usize, const R: usize>(t: &Args<'_, Packed<F>>, p: usize) {
    let (blocks, cols) = (t.w.blocks, t.w.cols);
    // SAFETY (whole body): the caller guarantees the CPU features and the bounds.
    unsafe {
        let wq = t.w.quants.as_ptr().add((t.p0 + p) * blocks * F::PANEL_BLOCK);
        let ws = t.w.scales.as_ptr().add((t.p0 + p) * blocks * PANEL);
        let xq = t.x.quants.as_ptr().add(t.r0 * cols);
        let xs = t.x.scales.as_ptr().add(t.r0 * blocks);
        let xsum = t.x.sums.as_ptr().add(t.r0 * blocks);
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for b in 0..blocks {
            if R > 4 {
                prefetch::<P>(wq, blocks, b, F::PANEL_BLOCK);
            }
            let mut sums: [[__m512i; P]; R] =
                std::array::from_fn(|r| [_mm512_set1_epi32(-F::BIAS * *xsum.add(r * blocks + b)); P]);
            for c in 0..8 {
                let wv: [__m512i; P] =
                    std::array::from_fn(|j| F::chunk512(wq.add((j * blocks + b) * F::PANEL_BLOCK), c));
                for (r, s) in sums.iter_mut().enumerate() {
                    let four = four_bytes(xq, r, cols, b, c);
                    let xv = _mm512_set1_epi32(four);
                    for j in 0..P {
                        s[j] = _mm512_dpbusd_epi32(s[j], wv[j], xv);
                    }
                }
            }
            let dw: [__m512; P] = std::array::from_fn(|j| {
                _mm512_cvtph_ps(_mm256_loadu_si256(ws.add((j * blocks + b) * PANEL).cast()))
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let dx = _mm512_set1_ps(*xs.add(r * blocks + b));
                for j in 0..P {
                    a[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][j]), _mm512_mul_ps(dw[j], dx), a[j]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                _mm512_storeu_ps(t.buf.add((t.r0 + r) * t.width + (p + j) * PANEL), *v);
            }
        }
    }
}

/// Chunk c of a Q5_K panel block's fifth bits, moved to bit 4 of each byte.
///
/// # Safety
/// AVX-512F is available and `p` points to a whole fifth-bit block.
#[inline(always)]
pub(super) unsafe fn fifth_bits512(p: *const u8, c: usize) -> __m512i {
    // SAFETY: forwarded from the caller. The 16-bit shifts bring in bits of the neighbouring
    // byte only below bit 4 (left) or above it (right), and the mask keeps bit 4 alone.
    unsafe {
        let v = _mm512_loadu_si512(p.cast());
        let v = match c {
            0 => _mm512_slli_epi16::<4>(v),
            1 => _mm512_slli_epi16::<3>(v),
            2 => _mm512_slli_epi16::<2>(v),
            3 => _mm512_slli_epi16::<1>(v),
            4 => v,
            5 => _mm512_srli_epi16::<1>(v),
            6 => _mm512_srli_epi16::<2>(v),
            _ => _mm512_srli_epi16::<3>(v),
        };
        _mm512_and_si512(v, _mm512_set1_epi8(0x10))
    }
}

impl<const FIVE: bool> VnniTiles for PackedK<FIVE> {
    /// Per sub-block: the integer sums S from zero (q is unsigned as stored), then per input
    /// row `acc = fma(fmsub(d sc, S, (dmin m) X), dx, acc)`, as `q4k::kernel_portable`.
    #[inline(always)]
    unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
        use super::Q4;
        let (blocks, cols, w) = (t.w.blocks, t.w.cols, t.w);
        let supers = blocks / SUB_BLOCKS;
        // SAFETY (whole body): the caller guarantees the CPU features and `check`.
        unsafe {
            let wq = w.quants.as_ptr().add((t.p0 + p) * blocks * Q4::PANEL_BLOCK);
            let wh = w.high.as_ptr().wrapping_add((t.p0 + p) * blocks * HIGH_BYTES);
            let xq = t.x.quants.as_ptr().add(t.r0 * cols);
            let xs = t.x.scales.as_ptr().add(t.r0 * blocks);
            let xsum = t.x.sums.as_ptr().add(t.r0 * blocks);
            let widen = |v: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(v.cast())));
            let half = |v: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(v.cast()));
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            for b in 0..blocks {
                if R > 4 {
                    prefetch::<P>(wq, blocks, b, Q4::PANEL_BLOCK);
                    if FIVE {
                        prefetch::<P>(wh, blocks, b, HIGH_BYTES);
                    }
                }
                let mut sums = [[_mm512_setzero_si512(); P]; R];
                for c in 0..8 {
                    let wv: [__m512i; P] = std::array::from_fn(|j| {
                        let low = Q4::chunk512(wq.add((j * blocks + b) * Q4::PANEL_BLOCK), c);
                        if FIVE {
                            _mm512_or_si512(low, fifth_bits512(wh.add((j * blocks + b) * HIGH_BYTES), c))
                        } else {
                            low
                        }
                    });
                    for (r, s) in sums.iter_mut().enumerate() {
                        let four = four_bytes(xq, r, cols, b, c);
                        let xv = _mm512_set1_epi32(four);
                        for j in 0..P {
                            s[j] = _mm512_dpbusd_epi32(s[j], wv[j], xv);
                        }
                    }
                }
                let (mut d1, mut m1) = ([_mm512_setzero_ps(); P], [_mm512_setzero_ps(); P]);
                for j in 0..P {
                    let panel = t.p0 + p + j;
                    let s = (panel * supers + b / SUB_BLOCKS) * PANEL;
                    let at = (panel * blocks + b) * PANEL;
                    d1[j] = _mm512_mul_ps(half(w.d.as_ptr().add(s)), widen(w.sc.as_ptr().add(at)));
                    m1[j] = _mm512_mul_ps(half(w.dmin.as_ptr().add(s)), widen(w.m.as_ptr().add(at)));
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let dx = _mm512_set1_ps(*xs.add(r * blocks + b));
                    let sum = _mm512_set1_ps(*xsum.add(r * blocks + b) as f32);
                    for j in 0..P {
                        let t =
                            _mm512_fmsub_ps(d1[j], _mm512_cvtepi32_ps(sums[r][j]), _mm512_mul_ps(m1[j], sum));
                        a[j] = _mm512_fmadd_ps(t, dx, a[j]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (j, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(t.buf.add((t.r0 + r) * t.width + (p + j) * PANEL), *v);
                }
            }
        }
    }
}

impl VnniTiles for PackedQ6K {
    /// One per half block.
    const SUMS: usize = 2;
    /// 12 sums and 6 accumulators (4 rows a pass measured the same).
    const ROWS: usize = 6;

    /// Per half block: the integer sum T from -32 x the input half's sum; per block and input
    /// row `acc = fma(sc_0 T_0 + sc_1 T_1, d dx, acc)`, as `q6k::kernel_portable`.
    #[inline(always)]
    unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
        use super::q6k::{chunk512, BIAS, PANEL_BLOCK};
        let (blocks, cols, w) = (t.w.blocks, t.w.cols, t.w);
        let supers = blocks / (256 / BLOCK);
        // SAFETY (whole body): the caller guarantees the CPU features and `check`.
        unsafe {
            let wq = w.quants.as_ptr().add((t.p0 + p) * blocks * PANEL_BLOCK);
            let xq = t.x.quants.as_ptr().add(t.r0 * cols);
            let xs = t.x.scales.as_ptr().add(t.r0 * blocks);
            let xhalf = t.x.half_sums.as_ptr().add(t.r0 * 2 * blocks);
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            for b in 0..blocks {
                // Its unpacking makes the loop compute-bound from 3 rows on: prefetch there.
                if R > 2 {
                    prefetch::<P>(wq, blocks, b, PANEL_BLOCK);
                }
                let mut sums: [[[__m512i; 2]; P]; R] = std::array::from_fn(|r| {
                    let half = |h: usize| _mm512_set1_epi32(-BIAS * *xhalf.add(r * 2 * blocks + 2 * b + h));
                    [[half(0), half(1)]; P]
                });
                for c in 0..8 {
                    let wv: [__m512i; P] =
                        std::array::from_fn(|j| chunk512(wq.add((j * blocks + b) * PANEL_BLOCK), c));
                    for (r, s) in sums.iter_mut().enumerate() {
                        let four = four_bytes(xq, r, cols, b, c);
                        let xv = _mm512_set1_epi32(four);
                        for j in 0..P {
                            s[j][c / 4] = _mm512_dpbusd_epi32(s[j][c / 4], wv[j], xv);
                        }
                    }
                }
                let mut d = [_mm512_setzero_ps(); P];
                let mut sc = [[_mm512_setzero_si512(); 2]; P];
                for j in 0..P {
                    let panel = t.p0 + p + j;
                    let s = (panel * supers + b / (256 / BLOCK)) * PANEL;
                    d[j] = _mm512_cvtph_ps(_mm256_loadu_si256(w.d.as_ptr().add(s).cast()));
                    for (h, sc) in sc[j].iter_mut().enumerate() {
                        let at = (panel * 2 * blocks + 2 * b + h) * PANEL;
                        *sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(w.sc.as_ptr().add(at).cast()));
                    }
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let dx = _mm512_set1_ps(*xs.add(r * blocks + b));
                    for j in 0..P {
                        let t = _mm512_add_epi32(
                            _mm512_mullo_epi32(sc[j][0], sums[r][j][0]),
                            _mm512_mullo_epi32(sc[j][1], sums[r][j][1]),
                        );
                        a[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(d[j], dx), a[j]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (j, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(t.buf.add((t.r0 + r) * t.width + (p + j) * PANEL), *v);
                }
            }
        }
    }
}

/// Input rows per pass without AVX-512: 2 rows x 2 register halves of integer sums and of
/// float accumulators, with room for the operands in the 16 AVX2 registers.
const MAX_ROWS_AVX2: usize = 2;

/// For CPUs without AVX-512 VNNI (most AVX2 machines). There is no byte dot product, so
/// each chunk goes through `vpmaddubsw` (unsigned x signed bytes, pairs into 16 bits) and
/// `vpmaddwd` (pairs into 32 bits). The unsigned operand is |x| and the signed one is w with
/// x's sign, as in llama.cpp: with |w|, |x| <= 128 no 16-bit pair sum overflows. The block
/// sums are the same exact integers as the VNNI kernel's, and the scaling the same
/// operations, so the results are the same bits (tested).
pub(super) fn kernel_avx2<F: Format>(
    w: &Packed<F>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    // SAFETY: chosen only when the CPU reports avx2, fma and f16c.
    unsafe { kernel_avx2_impl(w, x, k, p0, n, buf) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_avx2_impl<F: Format>(
    w: &Packed<F>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let width = buf.len() / k;
    assert!(width >= n * PANEL && buf.len() >= k * width);
    w.check(x, k, p0, n);
    row_blocks(k, n, MAX_ROWS_AVX2, CHUNK_PANELS, |chunk, r0, rows| {
        let t = Args {
            w,
            x,
            r0,
            p0,
            buf: buf.as_mut_ptr(),
            width,
        };
        for p in chunk {
            // SAFETY: the asserts above hold every panel and row the tiles touch in bounds.
            unsafe {
                if rows == 1 {
                    tile_avx2::<F, 1>(&t, p);
                } else {
                    tile_avx2::<F, 2>(&t, p);
                }
            }
        }
    });
}

/// Panel p (of the tile's p0) times input rows r0..r0+R, in two 8-lane halves.
#[inline(always)]
unsafe fn tile_avx2<F: Format, const R: usize>(t: &Args<'_, Packed<F>>, p: usize) {
    let (blocks, cols) = (t.w.blocks, t.w.cols);
    // SAFETY (whole body): the caller guarantees the CPU features and the bounds.
    unsafe {
        let wq = t.w.quants.as_ptr().add((t.p0 + p) * blocks * F::PANEL_BLOCK);
        let ws = t.w.scales.as_ptr().add((t.p0 + p) * blocks * PANEL);
        let xq = t.x.quants.as_ptr().add(t.r0 * cols);
        let xs = t.x.scales.as_ptr().add(t.r0 * blocks);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for b in 0..blocks {
            // One row alone would wait on its two chains of adds: give it two per half (even
            // and odd chunks; integer sums, so the split changes nothing).
            let split = if R == 1 { 2 } else { 1 };
            let mut sums = [[[_mm256_setzero_si256(); 2]; 2]; R];
            for c in 0..8 {
                let at = wq.add(b * F::PANEL_BLOCK);
                let wv = [F::chunk256_signed(at, c, 0), F::chunk256_signed(at, c, 1)];
                for (r, s) in sums.iter_mut().enumerate() {
                    let four = four_bytes(xq, r, cols, b, c);
                    let xv = _mm256_set1_epi32(four);
                    let magnitude = _mm256_sign_epi8(xv, xv);
                    let s = &mut s[c % split];
                    for h in 0..2 {
                        let products = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(wv[h], xv));
                        s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(products, ones));
                    }
                }
            }
            let dw = [
                _mm256_cvtph_ps(_mm_loadu_si128(ws.add(b * PANEL).cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(ws.add(b * PANEL + 8).cast())),
            ];
            for (r, a) in acc.iter_mut().enumerate() {
                let dx = _mm256_set1_ps(*xs.add(r * blocks + b));
                for h in 0..2 {
                    let sum = _mm256_add_epi32(sums[r][0][h], sums[r][1][h]);
                    a[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw[h], dx), a[h]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let out = t.buf.add((t.r0 + r) * t.width + p * PANEL);
            _mm256_storeu_ps(out, a[0]);
            _mm256_storeu_ps(out.add(8), a[1]);
        }
    }
}

/// `quantize_input_scalar` 32 values at a time: the same max, scale, inverse and
/// round-half-to-even, so the same bits.
#[target_feature(enable = "avx512f,f16c")]
pub(super) unsafe fn quantize_input_avx512(x: &[f32], input: &mut QuantizedInput) {
    let n_blocks = x.len() / BLOCK;
    assert!(input.quants.len() >= n_blocks * BLOCK && input.scales.len() >= n_blocks);
    assert!(input.sums.len() >= n_blocks);
    let limit = _mm512_set1_ps(127.0);
    for b in 0..n_blocks {
        // SAFETY: the asserts keep block b's 32 values and outputs in bounds.
        unsafe {
            let lo = _mm512_loadu_ps(x.as_ptr().add(b * BLOCK));
            let hi = _mm512_loadu_ps(x.as_ptr().add(b * BLOCK + 16));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            let d = amax / 127.0;
            let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let round = |v: __m512| {
                let q = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(v, id),
                );
                _mm512_cvtps_epi32(_mm512_max_ps(
                    _mm512_min_ps(q, limit),
                    _mm512_sub_ps(_mm512_setzero_ps(), limit),
                ))
            };
            let (qlo, qhi) = (round(lo), round(hi));
            let out = input.quants.as_mut_ptr().add(b * BLOCK);
            _mm_storeu_si128(out.cast(), _mm512_cvtepi32_epi8(qlo));
            _mm_storeu_si128(out.add(16).cast(), _mm512_cvtepi32_epi8(qhi));
            input.sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
            let half = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(d));
            input.scales[b] = _mm_cvtss_f32(_mm_cvtph_ps(half));
        }
    }
}
