//! Q4_K and Q5_K weights in the integer-product panels.
//!
//! GGML's Q4_K packs 256 weights in 144 bytes: f16 `d` and `dmin`, 6-bit scale and min for
//! each of 8 sub-blocks of 32, and 4-bit quants q; a weight is (d x sc) q - (dmin x m). Each
//! sub-block is stored like a Q4_0 block (two chunks per 64-byte load) with q as is, and its
//! scale and min stay 6-bit integers (4.6 bits a weight in all, against GGML's 4.5): the kernel
//! multiplies them by `d` and `dmin` per sub-block, shared by every input row. With a sub-block
//! integer sum S = q . x_q and the input block's sum X and scale dx, the sub-block adds
//! dx ((d sc) S - (dmin m) X) to each output, the same operations whatever k is.
//!
//! Q5_K (176 bytes per 256) is Q4_K with a fifth bit per weight (q in 0..=31): the same panels
//! plus a plane of fifth bits, 64 bytes per panel block, bit c of byte (lane, e % 4) holding
//! chunk c's bit (`PackedK<true>`); the kernels OR it in as bit 4 before the products.

use half::f16;

use super::{panel_matmul, Format, Kernel, PanelKernels, QuantizedInput, BLOCK, PANEL, Q4};

/// Weights per super-block, sub-blocks per super-block.
const SUPER: usize = 256;
pub(super) const SUB_BLOCKS: usize = SUPER / BLOCK;
/// Bytes of the fifth-bit plane per panel block.
pub(super) const HIGH_BYTES: usize = BLOCK * PANEL / 8;

/// A `[rows, cols]` Q4_K (`FIVE` false) or Q5_K (`FIVE` true) matrix in panel layout (`cols` a
/// multiple of 256; rows padded to a multiple of 16 with zero weights and zero scales).
#[derive(Debug, Clone)]
pub struct PackedK<const FIVE: bool> {
    /// `[panel][sub-block][Q4::PANEL_BLOCK bytes]`: q's low 4 bits, laid out as Q4_0's.
    pub(super) quants: Vec<u8>,
    /// `[panel][sub-block][HIGH_BYTES]`: q's fifth bits (Q5_K only; empty for Q4_K).
    pub(super) high: Vec<u8>,
    /// `[panel][super-block][lane]` f16 `d` and `dmin`.
    pub(super) d: Vec<u16>,
    pub(super) dmin: Vec<u16>,
    /// `[panel][sub-block][lane]` 6-bit scales and mins.
    pub(super) sc: Vec<u8>,
    pub(super) m: Vec<u8>,
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// Sub-blocks (of 32) per row.
    pub(super) blocks: usize,
}

/// Scale and min of sub-block `j` from a super-block's 12 packed bytes (GGML's
/// `get_scale_min_k4`).
fn scale_min(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

pub type PackedQ4K = PackedK<false>;
pub type PackedQ5K = PackedK<true>;

/// Byte offset and shift of the fifth bit of element `e` (0..32) of lane `l` in a panel block.
fn place_high(l: usize, e: usize) -> (usize, u32) {
    (l * 4 + e % 4, (e / 4) as u32)
}

impl<const FIVE: bool> PackedK<FIVE> {
    /// GGML bytes per super-block: d, dmin, 12 bytes of scales, (Q5_K: 32 bytes of fifth bits,)
    /// 128 bytes of low nibbles.
    pub(super) const GGML_BYTES: usize = if FIVE { 176 } else { 144 };

    /// The stored q (0..=15, or 0..=31 for Q5_K) of element `e` of lane `l` in panel block
    /// `at` (its index among all panel blocks).
    pub(super) fn stored(&self, at: usize, l: usize, e: usize) -> i32 {
        let low = Q4::stored(&self.quants[at * Q4::PANEL_BLOCK..][..Q4::PANEL_BLOCK], l, e);
        if !FIVE {
            return low;
        }
        let (byte, shift) = place_high(l, e);
        low | (((self.high[at * HIGH_BYTES + byte] >> shift) & 1) as i32) << 4
    }

    /// Repacks GGML data: `rows * cols / 256` blocks of `GGML_BYTES`, row-major. The caller
    /// checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let (blocks, supers, n_panels) = (cols / BLOCK, cols / SUPER, rows.div_ceil(PANEL));
        let mut packed = Self {
            quants: vec![0u8; n_panels * blocks * Q4::PANEL_BLOCK],
            high: vec![0u8; if FIVE { n_panels * blocks * HIGH_BYTES } else { 0 }],
            d: vec![0u16; n_panels * supers * PANEL],
            dmin: vec![0u16; n_panels * supers * PANEL],
            sc: vec![0u8; n_panels * blocks * PANEL],
            m: vec![0u8; n_panels * blocks * PANEL],
            rows,
            cols,
            blocks,
        };
        for (i, block) in data
            .chunks_exact(Self::GGML_BYTES)
            .enumerate()
            .take(rows * supers)
        {
            let (o, s) = (i / supers, i % supers);
            let (p, lane) = (o / PANEL, o % PANEL);
            packed.d[(p * supers + s) * PANEL + lane] = u16::from_le_bytes([block[0], block[1]]);
            packed.dmin[(p * supers + s) * PANEL + lane] = u16::from_le_bytes([block[2], block[3]]);
            let scales = &block[4..16];
            let qs = &block[Self::GGML_BYTES - 128..];
            if FIVE {
                // Byte l of qh holds bit 4 of element l of sub-block j in its bit j.
                for (l, &bits) in block[16..48].iter().enumerate() {
                    for j in 0..SUB_BLOCKS {
                        let (at, shift) = place_high(lane, l);
                        let b = s * SUB_BLOCKS + j;
                        packed.high[(p * blocks + b) * HIGH_BYTES + at] |= ((bits >> j) & 1) << shift;
                    }
                }
            }
            for j in 0..SUB_BLOCKS {
                let (sc, m) = scale_min(j, scales);
                let at = (p * blocks + s * SUB_BLOCKS + j) * PANEL + lane;
                packed.sc[at] = sc;
                packed.m[at] = m;
            }
            // Bytes 32g..32g+32 hold sub-block 2g in their low nibbles and 2g + 1 in the high.
            for (l, &byte) in qs.iter().enumerate() {
                for (half, q) in [byte & 0x0f, byte >> 4].into_iter().enumerate() {
                    let b = s * SUB_BLOCKS + 2 * (l / 32) + half;
                    let (at, shift) = Q4::place(lane, l % 32);
                    packed.quants[(p * blocks + b) * Q4::PANEL_BLOCK + at] |= q << shift;
                }
            }
        }
        packed
    }

    /// Bytes of real weights (as GGML stores them).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols / SUPER * Self::GGML_BYTES
    }

    /// `d x sc` and `dmin x m` of sub-block `b` of lane `lane` in panel `p`, as GGML's
    /// dequantization computes them.
    fn scales(&self, p: usize, b: usize, lane: usize) -> (f32, f32) {
        let s = (p * self.blocks / SUB_BLOCKS + b / SUB_BLOCKS) * PANEL + lane;
        let at = (p * self.blocks + b) * PANEL + lane;
        (
            f16::from_bits(self.d[s]).to_f32() * self.sc[at] as f32,
            f16::from_bits(self.dmin[s]).to_f32() * self.m[at] as f32,
        )
    }

    /// Weight row `o`, dequantized.
    pub fn row(&self, o: usize, out: &mut [f32]) {
        let (p, lane) = (o / PANEL, o % PANEL);
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (d1, m1) = self.scales(p, b, lane);
            for (e, v) in chunk.iter_mut().enumerate() {
                *v = d1 * self.stored(p * self.blocks + b, lane, e) as f32 - m1;
            }
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`). Without
    /// AVX-512 VNNI an AVX2 kernel runs, else portable code (the same bits).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        panel_matmul(self, x, k, out);
    }
}

impl<const FIVE: bool> PanelKernels for PackedK<FIVE> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn check(&self, x: &QuantizedInput, k: usize, p0: usize, n: usize) {
        let per_block = (p0 + n) * self.blocks * PANEL;
        let per_super = (p0 + n) * self.blocks / SUB_BLOCKS * PANEL;
        assert!((p0 + n) * self.blocks * Q4::PANEL_BLOCK <= self.quants.len());
        assert!(!FIVE || (p0 + n) * self.blocks * HIGH_BYTES <= self.high.len());
        assert!(per_block <= self.sc.len() && per_block <= self.m.len());
        assert!(per_super <= self.d.len() && per_super <= self.dmin.len());
        x.check(k, self.cols);
    }

    fn run(&self, kernel: Kernel, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => super::x86::kernel_vnni(self, x, k, p0, n, buf),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => super::avx2_k::kernel_q4k(self, x, k, p0, n, buf),
            Kernel::Portable => kernel_portable(self, x, k, p0, n, buf),
        }
    }
}

/// Per (output, input row): each sub-block's exact integer sum, scaled and accumulated in
/// block order, in the operations of the VNNI tile.
pub(super) fn kernel_portable<const FIVE: bool>(
    w: &PackedK<FIVE>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let (blocks, cols) = (w.blocks, w.cols);
    super::portable_walk(k, p0, n, blocks, buf, |panel, r, b, acc| {
        let at = panel * blocks + b;
        let xq = &x.quants[r * cols + b * BLOCK..][..BLOCK];
        let (sum, dx) = (x.sums[r * blocks + b] as f32, x.scales[r * blocks + b]);
        for (lane, a) in acc.iter_mut().enumerate() {
            let s: i32 = xq
                .iter()
                .enumerate()
                .map(|(e, &v)| w.stored(at, lane, e) * v as i32)
                .sum();
            let (d1, m1) = w.scales(panel, b, lane);
            let t = d1.mul_add(s as f32, -(m1 * sum));
            *a = t.mul_add(dx, *a);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::k_tests::{check, ggml_blocks};
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ4K, BlockQ5K};

    #[test]
    fn q4_k_rows_dequantize_as_ggml_products_match_and_every_kernel_gives_the_same_bits() {
        let (bytes, deq) = ggml_blocks::<BlockQ4K>(37, 2 * SUPER);
        assert_eq!(bytes.len(), 37 * 2 * PackedQ4K::GGML_BYTES);
        let p = PackedQ4K::from_ggml(&bytes, 37, 2 * SUPER);
        check(&p, |o, out| p.row(o, out), &deq, "q4_k");
    }

    #[test]
    fn q5_k_rows_dequantize_as_ggml_products_match_and_every_kernel_gives_the_same_bits() {
        let (bytes, deq) = ggml_blocks::<BlockQ5K>(37, 2 * SUPER);
        assert_eq!(bytes.len(), 37 * 2 * PackedQ5K::GGML_BYTES);
        let p = PackedQ5K::from_ggml(&bytes, 37, 2 * SUPER);
        check(&p, |o, out| p.row(o, out), &deq, "q5_k");
    }
}
