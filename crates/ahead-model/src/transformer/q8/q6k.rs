//! Q6_K weights in the integer-product panels.
//!
//! GGML's Q6_K packs 256 weights in 210 bytes: 6-bit quants q (-32..=31) as low nibbles and
//! high bit pairs, one signed 8-bit scale per 16 weights, and an f16 `d`; a weight is
//! d x sc x q. Here each block of 32 keeps q + 32 (0..=63) as the same two parts: the low
//! nibbles in the nibble layout (`layout`: two chunks per 64-byte load) and the high pairs four chunks to a
//! 64-byte load, 6 bits a weight as in GGML. The kernel ORs them back into bytes for
//! `vpdpbusd`. Each half block (16 weights, one scale) gets its own exact integer sum
//! T = q . x_q (started at -32 x the input half's sum, as the bias needs); then
//! t = sc_0 T_0 + sc_1 T_1 is still exact, and the block adds t x (d x dx) to its output, the
//! same operations whatever k is.
//!
//! Q2_K (84 bytes per 256 weights: 2-bit q, a 4-bit scale and a 4-bit minimum per 16 weights, f16
//! `d` and `dmin`; a weight is d x sc x q - dmin x m) uses the same panels: q is stored with no
//! bias, and each half block also subtracts dmin x dx x m S, where S is the input half's exact
//! sum: mt = m_0 S_0 + m_1 S_1 is exact, and the block then adds -mt x (dmin x dx).

use half::f16;

use super::layout::{self, NIBBLE_BYTES};
use super::{panel_matmul, portable_walk, Kernel, PanelKernels, QuantizedInput, BLOCK, PANEL};

/// Weights per super-block, blocks of 32 per super-block, GGML bytes per super-block.
const SUPER: usize = 256;
const BLOCKS_PER_SUPER: usize = SUPER / BLOCK;
const GGML_BYTES: usize = 210;
const Q2K_BYTES: usize = 84;
/// Q6_K's weights are stored as q + BIAS, unsigned (Q2_K's q are unsigned already).
const BIAS: i32 = 32;
/// Bytes of one block of one panel: the low nibbles (as Q4_0), then the high pairs.
const PANEL_BLOCK: usize = NIBBLE_BYTES + HIGH_BYTES;
const HIGH_BYTES: usize = BLOCK * PANEL / 4;

/// A `[rows, cols]` Q6_K matrix in panel layout (`cols` a multiple of 256; rows padded to a
/// multiple of 16 with zero weights and zero scales).
#[derive(Debug, Clone)]
pub struct PackedQ6K {
    /// `[panel][block][PANEL_BLOCK bytes]`: q + 32, see the module notes.
    quants: Vec<u8>,
    /// `[panel][super-block][lane]` f16 `d`.
    d: Vec<u16>,
    /// `[panel][half block][lane]`: the scale of each 16 weights.
    sc: Vec<i8>,
    /// Stored weights are q + bias: 32 for Q6_K, 0 for Q2_K.
    bias: i32,
    /// Q2_K only (empty for Q6_K): `[panel][half block][lane]` the minimum of each 16 weights,
    /// and `[panel][super-block][lane]` the f16 `dmin`.
    mins: Vec<u8>,
    dmin: Vec<u16>,
    /// GGML bytes per super-block of the file's type.
    ggml_bytes: usize,
    rows: usize,
    cols: usize,
    /// Blocks (of 32) per row.
    blocks: usize,
}

/// q of element `e` (0..256) of a GGML Q6_K block (`dequantize_row_q6_K`'s order).
fn ggml_q(block: &[u8], e: usize) -> i32 {
    let (half, j, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = block[64 * half + l + 32 * (j % 2)] >> (4 * (j / 2)) & 0x0f;
    let high = (block[128 + 32 * half + l] >> (2 * j)) & 3;
    (low | high << 4) as i32 - BIAS
}

/// Byte offset and shift of the high pair of element `e` (0..32) of lane `l` in a panel block.
fn place_high(l: usize, e: usize) -> (usize, u32) {
    let chunk = e / 4;
    (
        NIBBLE_BYTES + (chunk / 4) * 64 + l * 4 + e % 4,
        2 * (chunk % 4) as u32,
    )
}

/// The stored q + 32 of element `e` of lane `l` in a panel block.
fn stored(panel_block: &[u8], l: usize, e: usize) -> i32 {
    let (at, shift) = place_high(l, e);
    layout::read_nibble(panel_block, l, e) | (((panel_block[at] >> shift) & 3) as i32) << 4
}

impl PackedQ6K {
    /// Repacks GGML Q6_K data: `rows * cols / 256` blocks of 210 bytes, row-major. The caller
    /// checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let (blocks, supers, n_panels) = (cols / BLOCK, cols / SUPER, rows.div_ceil(PANEL));
        let mut packed = Self::zeros(rows, cols, false);
        // Padding rows: q = 0 (stored as the bias) with scale 0.
        for o in 0..n_panels * PANEL {
            let (p, lane) = (o / PANEL, o % PANEL);
            for s in 0..supers {
                let block = data.get((o * supers + s) * GGML_BYTES..).filter(|_| o < rows);
                if let Some(blk) = block {
                    packed.d[(p * supers + s) * PANEL + lane] = u16::from_le_bytes([blk[208], blk[209]]);
                    for h in 0..2 * BLOCKS_PER_SUPER {
                        packed.sc[(p * 2 * blocks + 2 * s * BLOCKS_PER_SUPER + h) * PANEL + lane] =
                            blk[192 + h] as i8;
                    }
                }
                for e in 0..SUPER {
                    let u = (block.map_or(0, |blk| ggml_q(blk, e)) + BIAS) as u8;
                    packed.put(p, lane, s * SUPER + e, u);
                }
            }
        }
        packed
    }

    /// Repacks GGML Q2_K data: `rows * cols / 256` blocks of 84 bytes, row-major. The caller
    /// checks the length.
    pub fn from_q2k(data: &[u8], rows: usize, cols: usize) -> Self {
        let (blocks, supers) = (cols / BLOCK, cols / SUPER);
        let mut packed = Self::zeros(rows, cols, true);
        // Padding rows keep q = 0, scales and minimums 0.
        for o in 0..rows {
            let (p, lane) = (o / PANEL, o % PANEL);
            for s in 0..supers {
                let at = (o * supers + s) * Q2K_BYTES;
                let blk = &data[at..at + Q2K_BYTES];
                packed.d[(p * supers + s) * PANEL + lane] = u16::from_le_bytes([blk[80], blk[81]]);
                packed.dmin[(p * supers + s) * PANEL + lane] = u16::from_le_bytes([blk[82], blk[83]]);
                for (h, &byte) in blk[..2 * BLOCKS_PER_SUPER].iter().enumerate() {
                    let i = (p * 2 * blocks + 2 * s * BLOCKS_PER_SUPER + h) * PANEL + lane;
                    packed.sc[i] = (byte & 0x0f) as i8;
                    packed.mins[i] = byte >> 4;
                }
                for e in 0..SUPER {
                    // `dequantize_row_q2_K`'s order: 32-byte groups of four 2-bit planes.
                    let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
                    packed.put(p, lane, s * SUPER + e, (blk[16 + 32 * n + l] >> (2 * j)) & 3);
                }
            }
        }
        packed
    }

    /// All-zero panels for a Q6_K matrix, or a Q2_K one (no bias, with minimums).
    fn zeros(rows: usize, cols: usize, q2k: bool) -> Self {
        let (blocks, supers, n_panels) = (cols / BLOCK, cols / SUPER, rows.div_ceil(PANEL));
        let per_half = n_panels * 2 * blocks * PANEL;
        Self {
            quants: vec![0u8; n_panels * blocks * PANEL_BLOCK],
            d: vec![0u16; n_panels * supers * PANEL],
            sc: vec![0i8; per_half],
            bias: if q2k { 0 } else { BIAS },
            mins: vec![0u8; if q2k { per_half } else { 0 }],
            dmin: vec![0u16; if q2k { n_panels * supers * PANEL } else { 0 }],
            ggml_bytes: if q2k { Q2K_BYTES } else { GGML_BYTES },
            rows,
            cols,
            blocks,
        }
    }

    /// Stores `u` (below 64) for element `e` of the row at `lane` of panel `p`.
    fn put(&mut self, p: usize, lane: usize, e: usize, u: u8) {
        let (b, within) = (e / BLOCK, e % BLOCK);
        let base = (p * self.blocks + b) * PANEL_BLOCK;
        layout::put_nibble(&mut self.quants[base..base + NIBBLE_BYTES], lane, within, u);
        let (at, shift) = place_high(lane, within);
        self.quants[base + at] |= (u >> 4) << shift;
    }

    /// Bytes of real weights (as GGML stores them).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols / SUPER * self.ggml_bytes
    }

    /// Q2_K's `dmin` of block `b` and the minimums of its two halves, for lane `lane` of panel
    /// `p`; `None` for Q6_K.
    fn minimums(&self, p: usize, b: usize, lane: usize) -> Option<(f32, [i32; 2])> {
        if self.mins.is_empty() {
            return None;
        }
        let s = (p * self.blocks / BLOCKS_PER_SUPER + b / BLOCKS_PER_SUPER) * PANEL + lane;
        let m = |h: usize| self.mins[(p * 2 * self.blocks + 2 * b + h) * PANEL + lane] as i32;
        Some((f16::from_bits(self.dmin[s]).to_f32(), [m(0), m(1)]))
    }

    /// `d` of block `b` and the scales of its two halves, for lane `lane` of panel `p`.
    fn scales(&self, p: usize, b: usize, lane: usize) -> (f32, [i32; 2]) {
        let s = (p * self.blocks / BLOCKS_PER_SUPER + b / BLOCKS_PER_SUPER) * PANEL + lane;
        let sc = |h: usize| self.sc[(p * 2 * self.blocks + 2 * b + h) * PANEL + lane] as i32;
        (f16::from_bits(self.d[s]).to_f32(), [sc(0), sc(1)])
    }

    /// Weight row `o`, dequantized as GGML does: (d x sc) x q, less (dmin x m) for Q2_K.
    pub fn row(&self, o: usize, out: &mut [f32]) {
        let (p, lane) = (o / PANEL, o % PANEL);
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (d, sc) = self.scales(p, b, lane);
            let at = (p * self.blocks + b) * PANEL_BLOCK;
            let panel_block = &self.quants[at..at + PANEL_BLOCK];
            let mins = self.minimums(p, b, lane);
            for (e, v) in chunk.iter_mut().enumerate() {
                let q = (stored(panel_block, lane, e) - self.bias) as f32;
                *v = d * sc[e / 16] as f32 * q;
                if let Some((dmin, m)) = mins {
                    *v -= dmin * m[e / 16] as f32;
                }
            }
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`). Without
    /// AVX-512 VNNI an AVX2 kernel runs, else portable code (the same bits).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        panel_matmul(self, x, k, out);
    }
}

impl PanelKernels for PackedQ6K {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn needs_half_sums(&self) -> bool {
        true
    }

    fn check(&self, x: &QuantizedInput, k: usize, p0: usize, n: usize) {
        assert!((p0 + n) * self.blocks * PANEL_BLOCK <= self.quants.len());
        assert!((p0 + n) * 2 * self.blocks * PANEL <= self.sc.len());
        assert!((p0 + n) * self.blocks / BLOCKS_PER_SUPER * PANEL <= self.d.len());
        if !self.mins.is_empty() {
            assert!((p0 + n) * 2 * self.blocks * PANEL <= self.mins.len());
            assert!((p0 + n) * self.blocks / BLOCKS_PER_SUPER * PANEL <= self.dmin.len());
        }
        x.check(k, self.cols);
        assert!(x.half_sums.len() >= k * 2 * self.blocks);
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

/// Per (output, input row): each half block's exact integer sum, the block's exact
/// t = sc_0 T_0 + sc_1 T_1, then `acc = fma(t, d x dx, acc)` in block order, as the VNNI tile;
/// for Q2_K then `acc = fma(-mt, dmin x dx, acc)` with mt = m_0 S_0 + m_1 S_1.
fn kernel_portable(w: &PackedQ6K, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
    let (blocks, cols) = (w.blocks, w.cols);
    portable_walk(k, p0, n, blocks, buf, |panel, r, b, acc| {
        let at = (panel * blocks + b) * PANEL_BLOCK;
        let wq = &w.quants[at..at + PANEL_BLOCK];
        let xq = &x.quants[r * cols + b * BLOCK..][..BLOCK];
        let half_sum = |h: usize| x.half_sums[r * 2 * blocks + 2 * b + h];
        let dx = x.scales[r * blocks + b];
        for (lane, a) in acc.iter_mut().enumerate() {
            let (d, sc) = w.scales(panel, b, lane);
            let t: i32 = (0..2)
                .map(|h| {
                    let sum: i32 = (16 * h..16 * h + 16)
                        .map(|e| stored(wq, lane, e) * xq[e] as i32)
                        .sum();
                    sc[h] * (sum - w.bias * half_sum(h))
                })
                .sum();
            *a = (t as f32).mul_add(d * dx, *a);
            if let Some((dmin, m)) = w.minimums(panel, b, lane) {
                let mt = m[0] * half_sum(0) + m[1] * half_sum(1);
                *a = (-(mt as f32)).mul_add(dmin * dx, *a);
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::super::x86::{
        avx2_walk, dot_unsigned, four_bytes, nibbles256, nibbles512, prefetch, Args, Out, VnniTiles,
    };
    use super::super::{QuantizedInput, BLOCK, PANEL};
    use super::{PackedQ6K, NIBBLE_BYTES, PANEL_BLOCK};

    /// Chunk c (0..8) of a Q6_K panel block as unsigned bytes q + 32: its low nibbles, OR its
    /// high pair moved to bits 4 and 5.
    ///
    /// # Safety
    /// AVX-512F is available and `p` points to a whole panel block.
    #[inline(always)]
    unsafe fn chunk512(p: *const u8, c: usize) -> __m512i {
        // SAFETY: forwarded from the caller. 16-bit shifts move bits across bytes, but the mask
        // keeps only bits 4 and 5, which come from the byte's own pair for every shift here.
        unsafe {
            let low = nibbles512(p, c);
            let h = _mm512_loadu_si512(p.add(NIBBLE_BYTES + (c / 4) * 64).cast());
            let h = match c % 4 {
                0 => _mm512_slli_epi16::<4>(h),
                1 => _mm512_slli_epi16::<2>(h),
                2 => h,
                _ => _mm512_srli_epi16::<2>(h),
            };
            _mm512_or_si512(low, _mm512_and_si512(h, _mm512_set1_epi8(0x30)))
        }
    }

    /// Lanes 8h..8h+8 of chunk c of a Q6_K panel block as q + 32 (as `chunk512`).
    ///
    /// # Safety
    /// AVX2 is available and `p` points to a whole panel block.
    #[inline(always)]
    unsafe fn chunk256(p: *const u8, c: usize, h: usize) -> __m256i {
        // SAFETY: forwarded from the caller; the mask keeps bits that stay in their byte.
        unsafe {
            let hv = _mm256_loadu_si256(p.add(NIBBLE_BYTES + (c / 4) * 64 + h * 32).cast());
            let hv = match c % 4 {
                0 => _mm256_slli_epi16::<4>(hv),
                1 => _mm256_slli_epi16::<2>(hv),
                2 => hv,
                _ => _mm256_srli_epi16::<2>(hv),
            };
            _mm256_or_si256(nibbles256(p, c, h), _mm256_and_si256(hv, _mm256_set1_epi8(0x30)))
        }
    }

    impl VnniTiles for PackedQ6K {
        /// One per half block.
        const SUMS: usize = 2;
        /// 12 sums and 6 accumulators (4 rows a pass measured the same).
        const ROWS: usize = 6;

        /// Per half block: the integer sum T from -32 x the input half's sum; per block and input
        /// row `acc = fma(sc_0 T_0 + sc_1 T_1, d dx, acc)`, as `kernel_portable`.
        #[inline(always)]
        unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize) {
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
                        let half =
                            |h: usize| _mm512_set1_epi32(-w.bias * *xhalf.add(r * 2 * blocks + 2 * b + h));
                        [[half(0), half(1)]; P]
                    });
                    for c in 0..8 {
                        let wv: [__m512i; P] =
                            std::array::from_fn(|j| chunk512(wq.add((j * blocks + b) * PANEL_BLOCK), c));
                        for (r, s) in sums.iter_mut().enumerate() {
                            let xv = _mm512_set1_epi32(four_bytes(xq, r, cols, b, c));
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
                    // Q2_K: each panel's dmin and the minimums of the block's two halves.
                    let q2k = !w.mins.is_empty();
                    let mut dmin = [_mm512_setzero_ps(); P];
                    let mut mins = [[_mm512_setzero_si512(); 2]; P];
                    if q2k {
                        for j in 0..P {
                            let panel = t.p0 + p + j;
                            let s = (panel * supers + b / (256 / BLOCK)) * PANEL;
                            dmin[j] = _mm512_cvtph_ps(_mm256_loadu_si256(w.dmin.as_ptr().add(s).cast()));
                            for (h, m) in mins[j].iter_mut().enumerate() {
                                let at = (panel * 2 * blocks + 2 * b + h) * PANEL;
                                *m = _mm512_cvtepu8_epi32(_mm_loadu_si128(w.mins.as_ptr().add(at).cast()));
                            }
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
                            if q2k {
                                let half =
                                    |h: usize| _mm512_set1_epi32(*xhalf.add(r * 2 * blocks + 2 * b + h));
                                let mt = _mm512_add_epi32(
                                    _mm512_mullo_epi32(mins[j][0], half(0)),
                                    _mm512_mullo_epi32(mins[j][1], half(1)),
                                );
                                a[j] = _mm512_fnmadd_ps(
                                    _mm512_cvtepi32_ps(mt),
                                    _mm512_mul_ps(dmin[j], dx),
                                    a[j],
                                );
                            }
                        }
                    }
                }
                t.store(p, &acc);
            }
        }
    }

    /// For CPUs without AVX-512 VNNI: q + 32 is unsigned (below 64), so `dot_unsigned` takes
    /// it directly; the scaling is the VNNI tile's on 8 lanes at a time: the same bits.
    pub(super) fn kernel_avx2(
        w: &PackedQ6K,
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
    unsafe fn kernel_avx2_impl(
        w: &PackedQ6K,
        x: &QuantizedInput,
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) {
        let out = Out::new(w, x, k, p0, n, buf);
        // One row per tile: its four sums and two accumulators, with the operands, fill the 16
        // registers.
        avx2_walk(k, n, 1, |p, r0, _| {
            // SAFETY: `Out::new` checked every panel and row the tiles touch.
            unsafe { tile_avx2(w, x, p0 + p, p, r0, out) }
        });
    }

    /// Panel `panel` times input row r0: `kernel_portable`'s operations, 8 lanes at a time.
    #[inline(always)]
    unsafe fn tile_avx2(w: &PackedQ6K, x: &QuantizedInput, panel: usize, p: usize, r0: usize, out: Out) {
        let (blocks, cols) = (w.blocks, w.cols);
        let supers = blocks / (256 / BLOCK);
        // SAFETY (whole body): the caller guarantees the CPU features and `check`.
        unsafe {
            let wq = w.quants.as_ptr().add(panel * blocks * PANEL_BLOCK);
            let mut acc = [_mm256_setzero_ps(); 2];
            for b in 0..blocks {
                let half_sum = |hb: usize| x.half_sums[r0 * 2 * blocks + 2 * b + hb];
                let mut sums = [
                    [_mm256_set1_epi32(-w.bias * half_sum(0)); 2],
                    [_mm256_set1_epi32(-w.bias * half_sum(1)); 2],
                ];
                let at = wq.add(b * PANEL_BLOCK);
                for c in 0..8 {
                    let u = [chunk256(at, c, 0), chunk256(at, c, 1)];
                    dot_unsigned(
                        &u,
                        four_bytes(x.quants.as_ptr(), r0, cols, b, c),
                        &mut sums[c / 4],
                    );
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
                    if !w.mins.is_empty() {
                        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(w.dmin.as_ptr().add(s + 8 * h).cast()));
                        let m = |hb: usize| {
                            let at = (panel * 2 * blocks + 2 * b + hb) * PANEL + 8 * h;
                            _mm256_cvtepu8_epi32(_mm_loadl_epi64(w.mins.as_ptr().add(at).cast()))
                        };
                        let mt = _mm256_add_epi32(
                            _mm256_mullo_epi32(m(0), _mm256_set1_epi32(half_sum(0))),
                            _mm256_mullo_epi32(m(1), _mm256_set1_epi32(half_sum(1))),
                        );
                        *a = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mt), _mm256_mul_ps(dmin, dx), *a);
                    }
                }
            }
            out.store(r0, p, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::k_tests::{check, check_within, ggml_blocks};
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ2K, BlockQ6K};

    #[test]
    fn q6_k_rows_dequantize_as_ggml_products_match_and_every_kernel_gives_the_same_bits() {
        let (bytes, deq) = ggml_blocks::<BlockQ6K>(37, 2 * SUPER);
        assert_eq!(bytes.len(), 37 * 2 * GGML_BYTES);
        let p = PackedQ6K::from_ggml(&bytes, 37, 2 * SUPER);
        check(&p, |o, out| p.row(o, out), &deq, "q6_k");
    }

    #[test]
    fn q2_k_rows_dequantize_as_ggml_products_match_and_every_kernel_gives_the_same_bits() {
        let (bytes, deq) = ggml_blocks::<BlockQ2K>(37, 2 * SUPER);
        assert_eq!(bytes.len(), 37 * 2 * Q2K_BYTES);
        let p = PackedQ6K::from_q2k(&bytes, 37, 2 * SUPER);
        // Against the inputs as quantized, the products are exact up to f32 rounding.
        let cols = 2 * SUPER;
        let x = super::super::k_tests::matrix(3, cols, 11);
        let input = super::super::quantize_for(&p, &x);
        let mut got = vec![0f32; 3 * 37];
        p.matmul(&x, 3, &mut got);
        for r in 0..3 {
            for o in 0..37 {
                let want: f64 = (0..cols)
                    .map(|i| {
                        let xq = input.quants[r * cols + i] as f64
                            * input.scales[r * cols / BLOCK + i / BLOCK] as f64;
                        xq * deq[o * cols + i] as f64
                    })
                    .sum();
                let g = got[r * 37 + o] as f64;
                assert!(
                    (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "row {r} out {o}: {g} vs {want}"
                );
            }
        }
        // Against the f32 inputs the error is the inputs' 8-bit rounding, which Q2_K's
        // minimums (an offset on every weight) weigh more than other types' weights do.
        check_within(&p, |o, out| p.row(o, out), &deq, "q2_k", 0.05);
    }
}
