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

use super::layout::{self, FIFTH_BYTES, NIBBLE_BYTES};
use super::{panel_matmul, portable_walk, Kernel, PanelKernels, QuantizedInput, BLOCK, PANEL};

/// Weights per super-block, sub-blocks per super-block.
const SUPER: usize = 256;
const SUB_BLOCKS: usize = SUPER / BLOCK;

/// A `[rows, cols]` Q4_K (`FIVE` false) or Q5_K (`FIVE` true) matrix in panel layout (`cols` a
/// multiple of 256; rows padded to a multiple of 16 with zero weights and zero scales).
#[derive(Debug, Clone)]
pub struct PackedK<const FIVE: bool> {
    /// `[panel][sub-block][NIBBLE_BYTES bytes]`: q's low 4 bits, laid out as Q4_0's.
    quants: Vec<u8>,
    /// `[panel][sub-block][FIFTH_BYTES]`: q's fifth bits (Q5_K only; empty for Q4_K).
    high: Vec<u8>,
    /// `[panel][super-block][lane]` f16 `d` and `dmin`.
    d: Vec<u16>,
    dmin: Vec<u16>,
    /// `[panel][sub-block][lane]` 6-bit scales and mins.
    sc: Vec<u8>,
    m: Vec<u8>,
    rows: usize,
    cols: usize,
    /// Sub-blocks (of 32) per row.
    blocks: usize,
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

impl<const FIVE: bool> PackedK<FIVE> {
    /// GGML bytes per super-block: d, dmin, 12 bytes of scales, (Q5_K: 32 bytes of fifth bits,)
    /// 128 bytes of low nibbles.
    const GGML_BYTES: usize = if FIVE { 176 } else { 144 };

    /// The stored q (0..=15, or 0..=31 for Q5_K) of element `e` of lane `l` in panel block
    /// `at` (its index among all panel blocks).
    fn stored(&self, at: usize, l: usize, e: usize) -> i32 {
        let low = layout::read_nibble(&self.quants[at * NIBBLE_BYTES..][..NIBBLE_BYTES], l, e);
        if !FIVE {
            return low;
        }
        low | layout::read_fifth(&self.high[at * FIFTH_BYTES..][..FIFTH_BYTES], l, e) << 4
    }

    /// Repacks GGML data: `rows * cols / 256` blocks of `GGML_BYTES`, row-major. The caller
    /// checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let (blocks, supers, n_panels) = (cols / BLOCK, cols / SUPER, rows.div_ceil(PANEL));
        let mut packed = Self {
            quants: vec![0u8; n_panels * blocks * NIBBLE_BYTES],
            high: vec![0u8; if FIVE { n_panels * blocks * FIFTH_BYTES } else { 0 }],
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
                        let at = (p * blocks + s * SUB_BLOCKS + j) * FIFTH_BYTES;
                        layout::put_fifth(&mut packed.high[at..at + FIFTH_BYTES], lane, l, bits >> j);
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
                    let at = (p * blocks + s * SUB_BLOCKS + 2 * (l / 32) + half) * NIBBLE_BYTES;
                    layout::put_nibble(&mut packed.quants[at..at + NIBBLE_BYTES], lane, l % 32, q);
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
        assert!((p0 + n) * self.blocks * NIBBLE_BYTES <= self.quants.len());
        assert!(!FIVE || (p0 + n) * self.blocks * FIFTH_BYTES <= self.high.len());
        assert!(per_block <= self.sc.len() && per_block <= self.m.len());
        assert!(per_super <= self.d.len() && per_super <= self.dmin.len());
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

/// Per (output, input row): each sub-block's exact integer sum, scaled and accumulated in
/// block order, in the operations of the VNNI tile.
fn kernel_portable<const FIVE: bool>(
    w: &PackedK<FIVE>,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let (blocks, cols) = (w.blocks, w.cols);
    portable_walk(k, p0, n, blocks, buf, |panel, r, b, acc| {
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

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::x86::{
        avx2_walk, dot_unsigned, fifth_bits256, fifth_bits512, four_bytes, nibbles256, nibbles512, prefetch,
        Args, Out, VnniTiles,
    };
    use super::super::{QuantizedInput, PANEL};
    use super::{PackedK, FIFTH_BYTES, NIBBLE_BYTES, SUB_BLOCKS};

    impl<const FIVE: bool> VnniTiles for PackedK<FIVE> {
        /// Per sub-block: the integer sums S from zero (q is unsigned as stored), then per input
        /// row `acc = fma(fmsub(d sc, S, (dmin m) X), dx, acc)`, as `kernel_portable`.
        #[inline(always)]
        unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
            let (blocks, cols, w) = (t.w.blocks, t.w.cols, t.w);
            let supers = blocks / SUB_BLOCKS;
            // SAFETY (whole body): the caller guarantees the CPU features and `check`.
            unsafe {
                let wq = w.quants.as_ptr().add((t.p0 + p) * blocks * NIBBLE_BYTES);
                let wh = w.high.as_ptr().wrapping_add((t.p0 + p) * blocks * FIFTH_BYTES);
                let xq = t.x.quants.as_ptr().add(t.r0 * cols);
                let xs = t.x.scales.as_ptr().add(t.r0 * blocks);
                let xsum = t.x.sums.as_ptr().add(t.r0 * blocks);
                let widen =
                    |v: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(v.cast())));
                let half = |v: *const u16| _mm512_cvtph_ps(_mm256_loadu_si256(v.cast()));
                let mut acc = [[_mm512_setzero_ps(); P]; R];
                for b in 0..blocks {
                    if R > 4 {
                        prefetch::<P>(wq, blocks, b, NIBBLE_BYTES);
                        if FIVE {
                            prefetch::<P>(wh, blocks, b, FIFTH_BYTES);
                        }
                    }
                    let mut sums = [[_mm512_setzero_si512(); P]; R];
                    for c in 0..8 {
                        let wv: [__m512i; P] = std::array::from_fn(|j| {
                            let low = nibbles512(wq.add((j * blocks + b) * NIBBLE_BYTES), c);
                            if FIVE {
                                _mm512_or_si512(low, fifth_bits512(wh.add((j * blocks + b) * FIFTH_BYTES), c))
                            } else {
                                low
                            }
                        });
                        for (r, s) in sums.iter_mut().enumerate() {
                            let xv = _mm512_set1_epi32(four_bytes(xq, r, cols, b, c));
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
                            let t = _mm512_fmsub_ps(
                                d1[j],
                                _mm512_cvtepi32_ps(sums[r][j]),
                                _mm512_mul_ps(m1[j], sum),
                            );
                            a[j] = _mm512_fmadd_ps(t, dx, a[j]);
                        }
                    }
                }
                t.store(p, &acc);
            }
        }
    }

    /// For CPUs without AVX-512 VNNI (AMD Zen 1-3 among them): the portable code would be
    /// many times slower there. q is unsigned as stored, so `dot_unsigned` takes it directly;
    /// the scaling is the VNNI tile's on 8 lanes at a time: the same bits (tested).
    pub(super) fn kernel_avx2<const FIVE: bool>(
        w: &PackedK<FIVE>,
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
    unsafe fn kernel_avx2_impl<const FIVE: bool>(
        w: &PackedK<FIVE>,
        x: &QuantizedInput,
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) {
        let out = Out::new(w, x, k, p0, n, buf);
        avx2_walk(k, n, 2, |p, r0, rows| {
            // SAFETY: `Out::new` checked every panel and row the tiles touch.
            unsafe {
                if rows == 1 {
                    tile_avx2::<FIVE, 1>(w, x, p0 + p, p, r0, out);
                } else {
                    tile_avx2::<FIVE, 2>(w, x, p0 + p, p, r0, out);
                }
            }
        });
    }

    /// Panel `panel` times input rows r0..r0+R: `kernel_portable`'s operations, 8 lanes at a
    /// time.
    #[inline(always)]
    unsafe fn tile_avx2<const FIVE: bool, const R: usize>(
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
            let wq = w.quants.as_ptr().add(panel * blocks * NIBBLE_BYTES);
            let xq = x.quants.as_ptr();
            let half = |v: *const u16| _mm256_cvtph_ps(_mm_loadu_si128(v.cast()));
            let widen = |v: *const u8| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(v.cast())));
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for b in 0..blocks {
                let mut sums = [[_mm256_setzero_si256(); 2]; R];
                let at = wq.add(b * NIBBLE_BYTES);
                let fifth = w.high.as_ptr().wrapping_add((panel * blocks + b) * FIFTH_BYTES);
                for c in 0..8 {
                    let u: [__m256i; 2] = std::array::from_fn(|h| {
                        if FIVE {
                            _mm256_or_si256(nibbles256(at, c, h), fifth_bits256(fifth, c, h))
                        } else {
                            nibbles256(at, c, h)
                        }
                    });
                    for (r, s) in sums.iter_mut().enumerate() {
                        dot_unsigned(&u, four_bytes(xq, r0 + r, cols, b, c), s);
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
                        let t =
                            _mm256_fmsub_ps(d1[h], _mm256_cvtepi32_ps(sums[r][h]), _mm256_mul_ps(m1[h], sum));
                        a[h] = _mm256_fmadd_ps(t, dx, a[h]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                out.store(r0 + r, p, *a);
            }
        }
    }
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
