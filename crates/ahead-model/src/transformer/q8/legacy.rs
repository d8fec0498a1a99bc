//! GGML's blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) in one panel type, `Packed<F>`, with
//! the kernels they share. A `Format` (one module each) says how its GGML block reads and how
//! its panel block stores and unpacks the weights; the tiles here are generic over it.
//!
//! Every format stores unsigned values u = w + `BIAS` (q itself for the formats with a
//! minimum), so `vpdpbusd` takes them as they are and each block's integer sum starts at
//! -BIAS x (the input block's sum): S = sum of w x_q, exact. Per block and input row:
//! - scale only (Q8_0, Q4_0, Q5_0; w = d q'): `acc = fma(S, d dx, acc)`;
//! - with a minimum (Q4_1, Q5_1; w = d q + m): sum (d q + m) x = dx (d S + m X), X the input
//!   block's quant sum (already there for the bias): `acc = fma(fma(d, S, m X), dx, acc)`.
//!
//! The same chain whatever else a tile computes beside it, so row r of a k-row product is
//! bit-identical to a 1-row product, and every kernel (VNNI, AVX2, portable) gives the same
//! bits (tested per format).

use half::f16;

use super::{panel_matmul, portable_walk, Kernel, PanelKernels, QuantizedInput, BLOCK, PANEL};

/// What differs between the blocks of 32: GGML's bytes, and how a panel stores the weights.
pub trait Format: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// GGML bytes per block of 32 (the f16 scale first, then the f16 minimum if `MIN`).
    const GGML_BLOCK: usize;
    /// Bytes of one block of one panel.
    const PANEL_BLOCK: usize;
    /// Weights are stored as w + BIAS, unsigned.
    const BIAS: i32;
    /// Whether a block carries a minimum m: w = d q + m.
    const MIN: bool;

    /// The 32 stored values (w + BIAS) of a GGML block (its whole bytes).
    fn stored_values(block: &[u8]) -> [u8; BLOCK];

    /// A GGML block for 32 values, as GGML's reference quantizer makes it.
    fn quantize_block(values: &[f32], out: &mut Vec<u8>);

    /// Writes the stored value `u` of element `e` of lane `l` into a zeroed panel block.
    fn put(panel_block: &mut [u8], l: usize, e: usize, u: u8);

    /// The stored value of element `e` of lane `l`.
    fn stored(panel_block: &[u8], l: usize, e: usize) -> i32;

    /// Chunk c (0..8) of a panel block: 16 lanes x 4 stored bytes (elements 4c..4c+4).
    ///
    /// # Safety
    /// AVX-512F is available and `p` points to a whole panel block.
    #[cfg(target_arch = "x86_64")]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i;

    /// Lanes 8h..8h+8 of chunk c as signed weights w (u - BIAS).
    ///
    /// # Safety
    /// AVX2 is available and `p` points to a whole panel block.
    #[cfg(target_arch = "x86_64")]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i;
}

/// A `[rows, cols]` matrix of blocks of 32 in panel layout (`cols` a multiple of 32; rows
/// padded to a multiple of 16 with zero weights, scales and minimums).
#[derive(Debug, Clone)]
pub struct Packed<F: Format> {
    /// `[panel][block][F::PANEL_BLOCK bytes]`: weights + `F::BIAS`, laid out by `F::put`.
    quants: Vec<u8>,
    /// `[panel][block][lane]` f16 scales.
    scales: Vec<u16>,
    /// `[panel][block][lane]` f16 minimums (`F::MIN`; empty otherwise).
    mins: Vec<u16>,
    rows: usize,
    cols: usize,
    blocks: usize,
    format: std::marker::PhantomData<F>,
}

/// The f16 at bytes `at..at + 2` of a GGML block.
fn half_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

impl<F: Format> Packed<F> {
    /// Repacks GGML data: `rows * cols / 32` blocks of `F::GGML_BLOCK` bytes, row-major. The
    /// caller checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let n_panels = rows.div_ceil(PANEL);
        let mut quants = vec![0u8; n_panels * blocks * F::PANEL_BLOCK];
        let mut scales = vec![0u16; n_panels * blocks * PANEL];
        let mut mins = vec![0u16; if F::MIN { n_panels * blocks * PANEL } else { 0 }];
        // Padding rows hold w = 0 (stored as the bias), scale 0 and minimum 0.
        let zero = [F::BIAS as u8; BLOCK];
        for o in 0..n_panels * PANEL {
            for b in 0..blocks {
                let (p, lane) = (o / PANEL, o % PANEL);
                let block = data
                    .get((o * blocks + b) * F::GGML_BLOCK..)
                    .filter(|_| o < rows)
                    .map(|blk| &blk[..F::GGML_BLOCK]);
                let values = block.map_or(zero, F::stored_values);
                let at = p * blocks + b;
                let panel_block = &mut quants[at * F::PANEL_BLOCK..(at + 1) * F::PANEL_BLOCK];
                for (e, &u) in values.iter().enumerate() {
                    F::put(panel_block, lane, e, u);
                }
                if let Some(blk) = block {
                    scales[at * PANEL + lane] = half_at(blk, 0);
                    if F::MIN {
                        mins[at * PANEL + lane] = half_at(blk, 2);
                    }
                }
            }
        }
        Self {
            quants,
            scales,
            mins,
            rows,
            cols,
            blocks,
            format: std::marker::PhantomData,
        }
    }

    /// Quantizes row-major f32 values (`cols` a multiple of 32) with GGML's reference
    /// quantizer for the format.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Self {
        Self::from_ggml(&ggml_blocks::<F>(values), rows, cols)
    }

    /// Bytes of real weights (as GGML stores them).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols / BLOCK * F::GGML_BLOCK
    }

    /// The f16 scale (and minimum, 0 without one) of block `at` (panel x blocks + block) of
    /// lane `lane`.
    fn scale_min(&self, at: usize, lane: usize) -> (f32, f32) {
        let d = f16::from_bits(self.scales[at * PANEL + lane]).to_f32();
        let m = if F::MIN {
            f16::from_bits(self.mins[at * PANEL + lane]).to_f32()
        } else {
            0.0
        };
        (d, m)
    }

    /// Weight row `o`, dequantized as GGML does: d q', or d q + m with a minimum.
    pub fn row(&self, o: usize, out: &mut [f32]) {
        let (p, lane) = (o / PANEL, o % PANEL);
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            let at = p * self.blocks + b;
            let (d, m) = self.scale_min(at, lane);
            let panel_block = &self.quants[at * F::PANEL_BLOCK..(at + 1) * F::PANEL_BLOCK];
            for (e, v) in chunk.iter_mut().enumerate() {
                let q = F::stored(panel_block, lane, e) - F::BIAS;
                *v = if F::MIN { q as f32 * d + m } else { q as f32 * d };
            }
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        panel_matmul(self, x, k, out);
    }
}

/// GGML blocks of format `F` for row-major `values` (a multiple of 32), by `F`'s quantizer.
pub(super) fn ggml_blocks<F: Format>(values: &[f32]) -> Vec<u8> {
    let mut data = Vec::with_capacity(values.len() / BLOCK * F::GGML_BLOCK);
    for block in values.chunks_exact(BLOCK) {
        F::quantize_block(block, &mut data);
    }
    data
}

impl<F: Format> PanelKernels for Packed<F> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn check(&self, x: &QuantizedInput, k: usize, p0: usize, n: usize) {
        let per_block = (p0 + n) * self.blocks * PANEL;
        assert!((p0 + n) * self.blocks * F::PANEL_BLOCK <= self.quants.len());
        assert!(per_block <= self.scales.len() && (!F::MIN || per_block <= self.mins.len()));
        x.check(k, self.cols);
    }

    fn run(&self, kernel: Kernel, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => super::x86::kernel_vnni(self, x, k, p0, n, buf),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => simd::kernel_avx2(self, x, k, p0, n, buf),
            Kernel::Portable => kernel_portable(self, x, k, p0, n, buf),
        }
    }
}

/// The same arithmetic without SIMD: per (output, input row), each block's exact integer sum
/// scaled (and its minimum added) in block order.
fn kernel_portable<F: Format>(
    w: &Packed<F>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let (blocks, cols) = (w.blocks, w.cols);
    portable_walk(k, p0, n, blocks, buf, |panel, r, b, acc| {
        let at = panel * blocks + b;
        let wq = &w.quants[at * F::PANEL_BLOCK..(at + 1) * F::PANEL_BLOCK];
        let xq = &x.quants[r * cols + b * BLOCK..][..BLOCK];
        let xsum = x.sums[r * blocks + b];
        let mut sums = [-F::BIAS * xsum; PANEL];
        for (lane, sum) in sums.iter_mut().enumerate() {
            for (e, &xv) in xq.iter().enumerate() {
                *sum += F::stored(wq, lane, e) * xv as i32;
            }
        }
        let dx = x.scales[r * blocks + b];
        for (lane, a) in acc.iter_mut().enumerate() {
            let (dw, m) = w.scale_min(at, lane);
            *a = if F::MIN {
                dw.mul_add(sums[lane] as f32, m * xsum as f32).mul_add(dx, *a)
            } else {
                (sums[lane] as f32).mul_add(dw * dx, *a)
            };
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::x86::{avx2_walk, dot_signed, four_bytes, prefetch, Args, Out, VnniTiles};
    use super::super::{QuantizedInput, PANEL};
    use super::{Format, Packed};

    impl<F: Format> VnniTiles for Packed<F> {
        /// `kernel_portable`'s operations on 16 lanes, P panels and R input rows at a time.
        #[inline(always)]
        unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
            let (w, x) = (t.w, t.x);
            let (blocks, cols) = (w.blocks, w.cols);
            // SAFETY (whole body): the caller guarantees the CPU features and the bounds.
            unsafe {
                let wq = w.quants.as_ptr().add((t.p0 + p) * blocks * F::PANEL_BLOCK);
                let ws = w.scales.as_ptr().add((t.p0 + p) * blocks * PANEL);
                let wm = w.mins.as_ptr().wrapping_add((t.p0 + p) * blocks * PANEL);
                let xq = x.quants.as_ptr().add(t.r0 * cols);
                let xs = x.scales.as_ptr().add(t.r0 * blocks);
                let xsum = x.sums.as_ptr().add(t.r0 * blocks);
                let half = |v: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(v.cast()));
                let mut acc = [[_mm512_setzero_ps(); P]; R];
                for b in 0..blocks {
                    if R > 4 {
                        prefetch::<P>(wq, blocks, b, F::PANEL_BLOCK);
                    }
                    let mut sums: [[__m512i; P]; R] =
                        std::array::from_fn(|r| [_mm512_set1_epi32(-F::BIAS * *xsum.add(r * blocks + b)); P]);
                    // With few tiles (one input row: decoding) the 8 chunks' `vpdpbusd` chain
                    // is latency-bound; odd chunks then go to a second chain, added at the end.
                    // Integer sums are exact in any order, so the bits do not change.
                    let split = R * P <= 4;
                    let mut odd = [[_mm512_setzero_si512(); P]; R];
                    for c in 0..8 {
                        let wv: [__m512i; P] = std::array::from_fn(|j| {
                            F::chunk512(wq.add((j * blocks + b) * F::PANEL_BLOCK), c)
                        });
                        let target = if split && c % 2 == 1 { &mut odd } else { &mut sums };
                        for (r, s) in target.iter_mut().enumerate() {
                            let xv = _mm512_set1_epi32(four_bytes(xq, r, cols, b, c));
                            for j in 0..P {
                                s[j] = _mm512_dpbusd_epi32(s[j], wv[j], xv);
                            }
                        }
                    }
                    if split {
                        for (s, o) in sums.iter_mut().zip(&odd) {
                            for j in 0..P {
                                s[j] = _mm512_add_epi32(s[j], o[j]);
                            }
                        }
                    }
                    let dw: [__m512; P] = std::array::from_fn(|j| half(ws.add((j * blocks + b) * PANEL)));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let dx = _mm512_set1_ps(*xs.add(r * blocks + b));
                        if F::MIN {
                            let sum = _mm512_set1_ps(*xsum.add(r * blocks + b) as f32);
                            for j in 0..P {
                                let m = half(wm.add((j * blocks + b) * PANEL));
                                let s = _mm512_cvtepi32_ps(sums[r][j]);
                                let t = _mm512_fmadd_ps(dw[j], s, _mm512_mul_ps(m, sum));
                                a[j] = _mm512_fmadd_ps(t, dx, a[j]);
                            }
                        } else {
                            for j in 0..P {
                                let s = _mm512_cvtepi32_ps(sums[r][j]);
                                a[j] = _mm512_fmadd_ps(s, _mm512_mul_ps(dw[j], dx), a[j]);
                            }
                        }
                    }
                }
                t.store(p, &acc);
            }
        }
    }

    /// For CPUs without AVX-512 VNNI (most AVX2 machines): signed weights through
    /// `dot_signed`, the same exact block sums as the VNNI kernel's and the same scaling, so
    /// the same bits (tested).
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
        let out = Out::new(w, x, k, p0, n, buf);
        // 2 rows x 2 register halves of integer sums and of float accumulators leave room for
        // the operands in the 16 AVX2 registers.
        avx2_walk(k, n, 2, |p, r0, rows| {
            // SAFETY: `Out::new` checked every panel and row the tiles touch.
            unsafe {
                if rows == 1 {
                    tile_avx2::<F, 1>(w, x, p0 + p, p, r0, out);
                } else {
                    tile_avx2::<F, 2>(w, x, p0 + p, p, r0, out);
                }
            }
        });
    }

    /// Panel `panel` times input rows r0..r0+R, in two 8-lane halves.
    #[inline(always)]
    unsafe fn tile_avx2<F: Format, const R: usize>(
        w: &Packed<F>,
        x: &QuantizedInput,
        panel: usize,
        p: usize,
        r0: usize,
        out: Out,
    ) {
        let (blocks, cols) = (w.blocks, w.cols);
        // SAFETY (whole body): the caller guarantees the CPU features and the bounds.
        unsafe {
            let wq = w.quants.as_ptr().add(panel * blocks * F::PANEL_BLOCK);
            let ws = w.scales.as_ptr().add(panel * blocks * PANEL);
            let wm = w.mins.as_ptr().wrapping_add(panel * blocks * PANEL);
            let xq = x.quants.as_ptr().add(r0 * cols);
            let half = |v: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(v.cast()));
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
                        dot_signed(&wv, four_bytes(xq, r, cols, b, c), &mut s[c % split]);
                    }
                }
                let dw = [half(ws.add(b * PANEL)), half(ws.add(b * PANEL + 8))];
                for (r, a) in acc.iter_mut().enumerate() {
                    let dx = _mm256_set1_ps(x.scales[(r0 + r) * blocks + b]);
                    let xsum = x.sums[(r0 + r) * blocks + b];
                    for h in 0..2 {
                        let s = _mm256_cvtepi32_ps(_mm256_add_epi32(sums[r][0][h], sums[r][1][h]));
                        a[h] = if F::MIN {
                            let m = half(wm.add(b * PANEL + 8 * h));
                            let mx = _mm256_mul_ps(m, _mm256_set1_ps(xsum as f32));
                            _mm256_fmadd_ps(_mm256_fmadd_ps(dw[h], s, mx), dx, a[h])
                        } else {
                            _mm256_fmadd_ps(s, _mm256_mul_ps(dw[h], dx), a[h])
                        };
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                out.store(r0 + r, p, *a);
            }
        }
    }
}

/// Checks every block-of-32 format shares, against candle's blocks of the same format.
#[cfg(test)]
pub(super) mod tests {
    use candle_core::quantized::GgmlType;

    use super::super::k_tests::matrix;
    use super::super::{available_kernels, quantize_input};
    use super::*;

    /// Values from a fixed-seed generator (xorshift) in -0.8..0.8, plus an offset that changes
    /// every 96 values (-0.6..0.6), so that many blocks have minimums away from zero.
    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                (2.0 * u - 1.0) * 0.8 + ((i / 96) % 5) as f32 * 0.3 - 0.6
            })
            .collect()
    }

    /// `F` against candle's `B`: our quantizer writes candle's bytes, rows dequantize to
    /// candle's `to_float` bit for bit, products equal a reference f64 dot of the dequantized
    /// weights with the dequantized input within float rounding, a row gives the same bits
    /// beside any number of others, and every kernel this CPU has gives the same bits.
    pub(in super::super) fn check_format<F: Format, B: GgmlType>(name: &str) {
        assert_eq!(std::mem::size_of::<B>(), F::GGML_BLOCK, "{name} block bytes");
        // 37 rows: two whole panels and a padded one; k = 20 takes three passes of rows (8, 8,
        // 4) over chunks of panels, and every tile shape.
        let (rows, cols, k) = (37, 19 * BLOCK, 20);
        for values in [matrix(rows, cols, 3), random(rows * cols, 0x5eed)] {
            let mut blocks = vec![B::zeros(); rows * cols / BLOCK];
            B::from_float(&values, &mut blocks);
            let candle = super::super::ggml_bytes::<B>(&values);
            assert!(
                ggml_blocks::<F>(&values) == candle,
                "{name}: our quantizer's bytes"
            );
            let mut deq = vec![0f32; rows * cols];
            B::to_float(&blocks, &mut deq);
            let p = Packed::<F>::from_ggml(&candle, rows, cols);
            let mut row = vec![0f32; cols];
            for o in 0..rows {
                p.row(o, &mut row);
                assert_eq!(&row[..], &deq[o * cols..(o + 1) * cols], "{name} row {o}");
            }
            check_products(&p, &deq, k, name);
        }
    }

    fn check_products<F: Format>(p: &Packed<F>, deq: &[f32], k: usize, name: &str) {
        let (rows, cols) = (p.rows, p.cols);
        let x = random(k * cols, 0xc0ffee);
        let mut got = vec![0f32; k * rows];
        p.matmul(&x, k, &mut got);
        let input = quantize_input(&x, cols);
        for r in 0..k {
            let xr = |i: usize| {
                input.quants[r * cols + i] as f64 * input.scales[r * cols / BLOCK + i / BLOCK] as f64
            };
            for o in 0..rows {
                let w = &deq[o * cols..(o + 1) * cols];
                let want: f64 = (0..cols).map(|i| w[i] as f64 * xr(i)).sum();
                let size: f64 = (0..cols).map(|i| (w[i] as f64 * xr(i)).abs()).sum();
                let g = got[r * rows + o] as f64;
                assert!(
                    (g - want).abs() <= 1e-5 * size + 1e-6,
                    "{name} row {r} out {o}: {g} vs {want}"
                );
            }
        }
        for width in [1, 2, 3, 5, 8, 9] {
            for r0 in (0..k - width).step_by(7) {
                let mut some = vec![0f32; width * rows];
                p.matmul(&x[r0 * cols..(r0 + width) * cols], width, &mut some);
                assert_eq!(
                    &some[..],
                    &got[r0 * rows..(r0 + width) * rows],
                    "{name} rows {r0}+{width}"
                );
            }
        }
        for kernel in available_kernels() {
            let mut a = vec![0f32; k * 48];
            p.run(kernel, &input, k, 0, 3, &mut a);
            for r in 0..k {
                assert_eq!(
                    &a[r * 48..r * 48 + rows],
                    &got[r * rows..(r + 1) * rows],
                    "{name} {kernel:?} row {r}"
                );
            }
        }
    }
}
