//! Q8_0 weights repacked for integer dot products, and the product kernel that reads them.
//!
//! Q8_0 stores blocks of 32 signed bytes with one f16 scale. candle's `vec_dot` computes one
//! (weight row, input row) pair per call with 16-bit multiplies; a k-row verify then costs k
//! times a 1-row step. Here each input row is quantized once per product (blocks of 32, as
//! llama.cpp does), and the kernel uses AVX-512 VNNI (`vpdpbusd`: 64 byte products into 16
//! sums per instruction).
//!
//! Layout: a weight row's blocks are taken 16 at a time (a group); within a group, byte chunk c
//! holds bytes 4c..4c+4 of each of the 16 blocks in turn, so one `vpdpbusd` adds four products
//! into each block's own lane, and after 8 chunks lane j holds block j's whole integer sum. Then
//! one conversion and one fused multiply-add by (weight scale x input scale) per group: no
//! horizontal sums until the end of the row. `vpdpbusd` multiplies unsigned by signed bytes, so
//! weights are stored as w + 128 and 128 x (sum of the input block) is subtracted.
//!
//! Batch invariance: every output is the same sequence of operations whatever k is, so row r of
//! a k-row product is bit-identical to a 1-row product (tested).

use super::kernels::by_row_tiles;
use half::f16;

/// Values per block, blocks per group, bytes per group.
const BLOCK: usize = 32;
const GROUP: usize = 16;
const GROUP_BYTES: usize = BLOCK * GROUP;

/// A `[rows, cols]` Q8_0 matrix in group-interleaved layout (`cols` a multiple of 32).
#[derive(Debug, Clone)]
pub struct PackedQ8 {
    /// Per row, `groups` groups of 512 bytes: weight + 128, interleaved as described above.
    quants: Vec<u8>,
    /// Per row, `groups * 16` f16 scales (zero for padding blocks).
    scales: Vec<u16>,
    rows: usize,
    cols: usize,
    groups: usize,
}

/// Input rows quantized to blocks of 32 in the same interleaved layout.
struct QuantizedInput {
    quants: Vec<i8>,
    /// Per row, per block: the block's scale (rounded through f16, as Q8_0 stores it).
    scales: Vec<f32>,
    /// Per row, per block: 128 x the sum of the block's quants (the unsigned-weight correction).
    corrections: Vec<i32>,
}

/// Index in a group of element `e` (0..32) of block `j` (0..16).
#[inline]
fn interleaved(j: usize, e: usize) -> usize {
    (e / 4) * 64 + j * 4 + e % 4
}

impl PackedQ8 {
    /// Repacks GGML Q8_0 data: `rows * cols / 32` blocks of 34 bytes (f16 scale, 32 quants),
    /// row-major. The caller checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let per_row = cols / BLOCK;
        let groups = per_row.div_ceil(GROUP);
        // Padding blocks hold w = 0 (stored 128) and scale 0.
        let mut quants = vec![128u8; rows * groups * GROUP_BYTES];
        let mut scales = vec![0u16; rows * groups * GROUP];
        for (i, block) in data.chunks_exact(34).enumerate().take(rows * per_row) {
            let (o, b) = (i / per_row, i % per_row);
            let (g, j) = (b / GROUP, b % GROUP);
            let base = (o * groups + g) * GROUP_BYTES;
            for (e, &q) in block[2..].iter().enumerate() {
                quants[base + interleaved(j, e)] = (q as i8 as i16 + 128) as u8;
            }
            scales[(o * groups + g) * GROUP + j] = u16::from_le_bytes([block[0], block[1]]);
        }
        Self {
            quants,
            scales,
            rows,
            cols,
            groups,
        }
    }

    /// Quantizes row-major f32 values (`cols` a multiple of 32) as Q8_0 does: per block,
    /// scale = max |x| / 127 stored as f16, quants = round(x / scale).
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Self {
        let mut data = Vec::with_capacity(values.len() / BLOCK * 34);
        for block in values.chunks_exact(BLOCK) {
            let (d, id) = block_scale(block);
            data.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            data.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
        }
        Self::from_ggml(&data, rows, cols)
    }

    /// Bytes of real weights (as GGML stores them: 34 per block).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols / BLOCK * 34
    }

    /// Weight row `o`, dequantized.
    pub fn row(&self, o: usize, out: &mut [f32]) {
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (g, j) = (b / GROUP, b % GROUP);
            let base = (o * self.groups + g) * GROUP_BYTES;
            let d = f16::from_bits(self.scales[(o * self.groups + g) * GROUP + j]).to_f32();
            for (e, v) in chunk.iter_mut().enumerate() {
                *v = (self.quants[base + interleaved(j, e)] as i16 - 128) as f32 * d;
            }
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), k * self.cols);
        debug_assert_eq!(out.len(), k * self.rows);
        let input = self.quantize_input(x, k);
        let dot = dot_fn();
        by_row_tiles(k, self.rows, self.cols, out, |o0, chunk| {
            dot(self, o0, chunk.len() / k, &input, k, chunk);
        });
    }

    /// Quantizes each input row to blocks of 32 (scale = max |x| / 127, as Q8_0's own
    /// quantizer), in the weights' interleaved layout.
    fn quantize_input(&self, x: &[f32], k: usize) -> QuantizedInput {
        let groups = self.groups;
        let mut quants = vec![0i8; k * groups * GROUP_BYTES];
        let mut scales = vec![0f32; k * groups * GROUP];
        let mut corrections = vec![0i32; k * groups * GROUP];
        for (r, row) in x.chunks_exact(self.cols).enumerate() {
            for (b, block) in row.chunks_exact(BLOCK).enumerate() {
                let (g, j) = (b / GROUP, b % GROUP);
                let (exact, id) = block_scale(block);
                let d = f16::from_f32(exact).to_f32();
                let base = (r * groups + g) * GROUP_BYTES;
                let mut sum = 0i32;
                for (e, v) in block.iter().enumerate() {
                    let q = (v * id).round().clamp(-127.0, 127.0) as i8;
                    quants[base + interleaved(j, e)] = q;
                    sum += q as i32;
                }
                scales[(r * groups + g) * GROUP + j] = d;
                corrections[(r * groups + g) * GROUP + j] = 128 * sum;
            }
        }
        QuantizedInput {
            quants,
            scales,
            corrections,
        }
    }
}

/// A block's scale (max |x| / 127) and its inverse, as Q8_0's quantizer computes them (the
/// inverse of the exact scale; the scale is then stored as f16).
fn block_scale(block: &[f32]) -> (f32, f32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Dot products of weight rows o0..o0+n with every input row, into `chunk` (`[k][n]`).
type DotFn = fn(&PackedQ8, usize, usize, &QuantizedInput, usize, &mut [f32]);

/// The kernel for this CPU, chosen once.
fn dot_fn() -> DotFn {
    static CHOSEN: std::sync::OnceLock<DotFn> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                return x86::dot_vnni;
            }
        }
        dot_portable
    })
}

/// The same arithmetic without SIMD: 16 lanes, each a block's integer sum, scaled and
/// accumulated per group, summed at the end.
fn dot_portable(w: &PackedQ8, o0: usize, n: usize, x: &QuantizedInput, k: usize, chunk: &mut [f32]) {
    let groups = w.groups;
    for o in 0..n {
        let wo = o0 + o;
        for r in 0..k {
            let mut acc = [0f32; GROUP];
            for g in 0..groups {
                let wq = &w.quants[(wo * groups + g) * GROUP_BYTES..][..GROUP_BYTES];
                let xq = &x.quants[(r * groups + g) * GROUP_BYTES..][..GROUP_BYTES];
                let mut sums = [0i32; GROUP];
                for (i, (&a, &b)) in wq.iter().zip(xq).enumerate() {
                    sums[(i % 64) / 4] += a as i32 * b as i32;
                }
                for j in 0..GROUP {
                    let s = (sums[j] - x.corrections[(r * groups + g) * GROUP + j]) as f32;
                    let dw = f16::from_bits(w.scales[(wo * groups + g) * GROUP + j]).to_f32();
                    let scale = dw * x.scales[(r * groups + g) * GROUP + j];
                    acc[j] = s.mul_add(scale, acc[j]);
                }
            }
            chunk[r * n + o] = acc.iter().sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{PackedQ8, QuantizedInput, GROUP, GROUP_BYTES};
    use std::arch::x86_64::*;

    /// AVX-512 VNNI over tiles of 4 weight rows x 4 input rows: per 64-byte chunk, 4 weight
    /// loads and 4 input loads feed 16 `vpdpbusd` (loads, not multiplies, are what limit a
    /// one-row-at-a-time loop). Per group, each (weight row, input row) pair's 16 block sums
    /// get the correction, one conversion and one fused multiply-add by (weight scale x input
    /// scale). Remainders use narrower tiles of the same arithmetic.
    pub(super) fn dot_vnni(
        w: &PackedQ8,
        o0: usize,
        n: usize,
        x: &QuantizedInput,
        k: usize,
        chunk: &mut [f32],
    ) {
        // SAFETY: chosen only when the CPU reports avx512f and avx512vnni.
        unsafe { dot_vnni_impl(w, o0, n, x, k, chunk) }
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dot_vnni_impl(
        w: &PackedQ8,
        o0: usize,
        n: usize,
        x: &QuantizedInput,
        k: usize,
        chunk: &mut [f32],
    ) {
        let mut o = 0;
        while o < n {
            let wn = if n - o >= 4 && k >= 4 { 4 } else { 1 };
            let mut r = 0;
            while r < k {
                let rn = if k - r >= 4 { 4 } else { 1 };
                let at = Place { o0, col: o, r0: r, n };
                // SAFETY: the caller's CPU has the features these kernels are compiled for.
                unsafe {
                    match (wn, rn) {
                        (4, 4) => tile::<4, 4, 16>(w, x, at, chunk),
                        (4, _) => tile::<4, 1, 4>(w, x, at, chunk),
                        (_, 4) => tile::<1, 4, 4>(w, x, at, chunk),
                        _ => tile::<1, 1, 1>(w, x, at, chunk),
                    }
                }
                r += rn;
            }
            o += wn;
        }
    }

    /// Where a tile goes: weight rows o0+col.., input rows r0.., in a `[k][n]` chunk whose
    /// column 0 is weight row o0.
    #[derive(Clone, Copy)]
    struct Place {
        o0: usize,
        col: usize,
        r0: usize,
        n: usize,
    }

    /// Dot products of weight rows o..o+W with input rows r0..r0+R (`WR` = W x R), written to
    /// the chunk.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tile<const W: usize, const R: usize, const WR: usize>(
        w: &PackedQ8,
        x: &QuantizedInput,
        at: Place,
        chunk: &mut [f32],
    ) {
        let (o, r0, groups) = (at.o0 + at.col, at.r0, w.groups);
        assert!(WR == W * R);
        assert!(
            w.quants.len() >= (o + W) * groups * GROUP_BYTES && w.scales.len() >= (o + W) * groups * GROUP
        );
        assert!(x.quants.len() >= (r0 + R) * groups * GROUP_BYTES);
        assert!(
            x.scales.len() >= (r0 + R) * groups * GROUP && x.corrections.len() >= (r0 + R) * groups * GROUP
        );
        // Row pointers computed once: the loops below only add offsets.
        let wq: [*const u8; W] = std::array::from_fn(|i| w.quants[(o + i) * groups * GROUP_BYTES..].as_ptr());
        let ws: [*const u16; W] = std::array::from_fn(|i| w.scales[(o + i) * groups * GROUP..].as_ptr());
        let xq: [*const i8; R] =
            std::array::from_fn(|j| x.quants[(r0 + j) * groups * GROUP_BYTES..].as_ptr());
        let xs: [*const f32; R] = std::array::from_fn(|j| x.scales[(r0 + j) * groups * GROUP..].as_ptr());
        let xc: [*const i32; R] =
            std::array::from_fn(|j| x.corrections[(r0 + j) * groups * GROUP..].as_ptr());
        let mut acc = [_mm512_setzero_ps(); WR];
        for g in 0..groups {
            // SAFETY: the asserts above keep every 64-byte load (chunk c of group g of a row)
            // and every 16-lane load of scales and corrections inside its slice.
            unsafe {
                // With several input rows the kernel computes long enough per byte that the
                // hardware prefetcher falls behind: fetch the next tile's weights (the same
                // group of the W rows after these) while this one computes.
                if R > 1 && o + 2 * W <= w.rows {
                    for p in &wq {
                        let next = p.add(W * groups * GROUP_BYTES + g * GROUP_BYTES);
                        for line in 0..GROUP_BYTES / 64 {
                            _mm_prefetch::<_MM_HINT_T0>(next.add(line * 64).cast());
                        }
                    }
                }
                let mut sums = [_mm512_setzero_si512(); WR];
                for c in 0..8 {
                    let at = g * GROUP_BYTES + c * 64;
                    let wv: [__m512i; W] = std::array::from_fn(|i| _mm512_loadu_si512(wq[i].add(at).cast()));
                    let xv: [__m512i; R] = std::array::from_fn(|j| _mm512_loadu_si512(xq[j].add(at).cast()));
                    for i in 0..W {
                        for j in 0..R {
                            sums[i * R + j] = _mm512_dpbusd_epi32(sums[i * R + j], wv[i], xv[j]);
                        }
                    }
                }
                let dw: [__m512; W] =
                    std::array::from_fn(|i| _mm512_cvtph_ps(_mm256_loadu_si256(ws[i].add(g * GROUP).cast())));
                for j in 0..R {
                    let corr = _mm512_loadu_si512(xc[j].add(g * GROUP).cast());
                    let dx = _mm512_loadu_ps(xs[j].add(g * GROUP));
                    for i in 0..W {
                        let s = _mm512_cvtepi32_ps(_mm512_sub_epi32(sums[i * R + j], corr));
                        acc[i * R + j] = _mm512_fmadd_ps(s, _mm512_mul_ps(dw[i], dx), acc[i * R + j]);
                    }
                }
            }
        }
        for i in 0..W {
            for j in 0..R {
                chunk[(r0 + j) * at.n + at.col + i] = _mm512_reduce_add_ps(acc[i * R + j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::BlockQ8_0;
    use candle_core::quantized::GgmlType;

    fn matrix(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| (((i + seed) * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn packed(rows: usize, cols: usize) -> (PackedQ8, Vec<BlockQ8_0>) {
        let w = matrix(rows, cols, 3);
        let mut blocks = vec![BlockQ8_0::zeros(); rows * cols / BLOCK];
        BlockQ8_0::from_float(&w, &mut blocks);
        let p = PackedQ8::quantize(&w, rows, cols);
        (p, blocks)
    }

    #[test]
    fn rows_dequantize_to_the_ggml_blocks() {
        let (rows, cols) = (5, 96 + 512);
        let (p, blocks) = packed(rows, cols);
        let mut want = vec![0f32; rows * cols];
        BlockQ8_0::to_float(&blocks, &mut want);
        let mut got = vec![0f32; cols];
        for o in 0..rows {
            p.row(o, &mut got);
            assert_eq!(&got[..], &want[o * cols..(o + 1) * cols]);
        }
    }

    #[test]
    fn the_product_matches_candles_vec_dot_and_every_row_is_batch_invariant() {
        // 19 blocks per row: one whole group and a padded one.
        let (rows, cols, k) = (37, 19 * 32, 7);
        let (p, blocks) = packed(rows, cols);
        let x = matrix(k, cols, 11);
        let mut got = vec![0f32; k * rows];
        p.matmul(&x, k, &mut got);
        let per_row = cols / BLOCK;
        for r in 0..k {
            let mut xq = vec![BlockQ8_0::zeros(); per_row];
            BlockQ8_0::from_float(&x[r * cols..(r + 1) * cols], &mut xq);
            for o in 0..rows {
                let want = BlockQ8_0::vec_dot(cols, &blocks[o * per_row..(o + 1) * per_row], &xq);
                let g = got[r * rows + o];
                assert!(
                    (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "row {r} out {o}: {g} vs {want}"
                );
            }
            // Alone, the row gives the very same bits.
            let mut one = vec![0f32; rows];
            p.matmul(&x[r * cols..(r + 1) * cols], 1, &mut one);
            assert_eq!(&one[..], &got[r * rows..(r + 1) * rows], "row {r}");
        }
        // The portable kernel computes the same sums (up to the order of the final reduction).
        let input = p.quantize_input(&x, k);
        let mut a = vec![0f32; k * rows];
        dot_portable(&p, 0, rows, &input, k, &mut a);
        for (i, (a, g)) in a.iter().zip(&got).enumerate() {
            assert!(
                (a - g).abs() <= 1e-5 * (1.0 + g.abs()),
                "portable {i}: {a} vs {g}"
            );
        }
    }
}
