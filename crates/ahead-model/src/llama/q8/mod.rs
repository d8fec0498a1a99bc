//! Q8_0 and Q4_0 weights repacked for 8-bit integer dot products, and the product kernels that
//! read them.
//!
//! Q8_0 stores blocks of 32 signed bytes with one f16 scale. candle's `vec_dot` computes one
//! (weight row, input row) pair per call with 16-bit multiplies; a k-row verify then costs k
//! times a 1-row step. Here each input row is quantized once per product (blocks of 32, as
//! llama.cpp does), and the kernel uses AVX-512 VNNI (`vpdpbusd`: 64 byte products into 16
//! sums per instruction; `x86.rs`). CPUs without it get an AVX2 kernel, others a portable
//! one, all with the same results.
//!
//! Layout: weight rows go in panels of 16, like the f32 kernel's (`packed`). For each block of
//! 32 columns a panel holds 8 chunks of 64 bytes; chunk c holds bytes 4c..4c+4 of the block in
//! each of the 16 rows in turn. One `vpdpbusd` of a chunk with four input bytes broadcast adds
//! four products into each row's own lane, so 8 of them give the block's integer sum for 16
//! outputs at once, and the 64-byte weight load is shared by every input row of the verify.
//! Per block and input row there is then one conversion and one fused multiply-add by (weight
//! scale x input scale): no horizontal sums at all. `vpdpbusd` multiplies unsigned by signed
//! bytes, so weights are stored as w + 128 and each block sum starts at -128 x (sum of the input
//! block), which leaves the exact signed sum.
//!
//! Q4_0 (blocks of 32 four-bit weights, w = nibble - 8) uses the same panels at half the bytes:
//! each 64-byte load holds two chunks, chunk c in the low nibbles and chunk c + 4 in the high
//! ones (as GGML splits a block), so an AND and a shift unpack them to the same unsigned bytes
//! (stored w + 8; the block sum starts at -8 x the input's sum). The `Format` trait is all that
//! differs between the two.
//!
//! Batch invariance: each output is the chain `acc = fma(block sum, dw x dx, acc)` over the
//! blocks in order (block sums are exact integers), whatever other outputs are computed beside
//! it, so row r of a k-row product is bit-identical to a 1-row product (tested).

use half::f16;

use super::kernels::{by_panels, row_blocks};
use super::packed::PANEL;

/// Values per block; bytes of one block of one panel.
const BLOCK: usize = 32;
const PANEL_BYTES: usize = BLOCK * PANEL;
/// Panels per chunk when the input rows need several passes (see `row_blocks`): four panels of
/// a 5632-column matrix are 360 KiB, well inside L2.
const CHUNK_PANELS: usize = 4;

/// A `[rows, cols]` block-quantized matrix in panel layout (`cols` a multiple of 32; rows
/// padded to a multiple of 16 with zero weights and zero scales).
#[derive(Debug, Clone)]
pub struct Packed<F: Format> {
    /// `[panel][block][F::PANEL_BLOCK bytes]`: weights + `F::BIAS`, laid out by `F::place`.
    quants: Vec<u8>,
    /// `[panel][block][lane]` f16 scales.
    scales: Vec<u16>,
    rows: usize,
    cols: usize,
    blocks: usize,
    format: std::marker::PhantomData<F>,
}

pub type PackedQ8 = Packed<Q8>;
pub type PackedQ4 = Packed<Q4>;

/// Input rows quantized to blocks of 32, row-major.
struct QuantizedInput {
    /// `[k][cols]`.
    quants: Vec<i8>,
    /// `[k][blocks]`: the block's scale (rounded through f16, as Q8_0 stores it).
    scales: Vec<f32>,
    /// `[k][blocks]`: the sum of the block's quants (for the unsigned-weight correction).
    sums: Vec<i32>,
    /// `[k][2 blocks]`: the sums of each half block's quants, for formats that scale every 16
    /// weights (`PanelKernels::needs_half_sums`); empty otherwise.
    half_sums: Vec<i32>,
}

impl QuantizedInput {
    /// Panics unless `k` rows of `cols` values are here.
    fn check(&self, k: usize, cols: usize) {
        let blocks = cols / BLOCK;
        assert!(
            self.quants.len() >= k * cols && self.scales.len() >= k * blocks && self.sums.len() >= k * blocks
        );
    }
}

/// Offset in a (panel, block) of element `e` (0..32) of lane `l` (0..16).
#[inline]
fn interleaved(l: usize, e: usize) -> usize {
    (e / 4) * 64 + l * 4 + e % 4
}

/// What differs between the block formats: GGML's bytes, and how a panel stores the weights.
pub trait Format: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// GGML bytes per block of 32 (the f16 scale first).
    const GGML_BLOCK: usize;
    /// Bytes of one block of one panel.
    const PANEL_BLOCK: usize;
    /// Weights are stored as w + BIAS, unsigned.
    const BIAS: i32;

    /// The 32 signed weights of a GGML block's quants (the bytes after the scale).
    fn weights(quants: &[u8]) -> [i8; BLOCK];

    /// A GGML block (scale and quants) for 32 values, as GGML's reference quantizer makes it.
    fn quantize_block(values: &[f32], out: &mut Vec<u8>);

    /// Byte offset in a panel block, and bit shift, of element `e` of lane `l`.
    fn place(l: usize, e: usize) -> (usize, u32);

    /// The stored (unsigned) value at a place.
    fn stored(panel_block: &[u8], l: usize, e: usize) -> i32 {
        let (at, shift) = Self::place(l, e);
        let mask = if Self::PANEL_BLOCK == PANEL_BYTES {
            0xff
        } else {
            0x0f
        };
        ((panel_block[at] >> shift) & mask) as i32
    }

    /// Chunk c (0..8) of a panel block: 16 lanes x 4 unsigned bytes (elements 4c..4c+4).
    ///
    /// # Safety
    /// AVX-512F is available and `p` points to a whole panel block.
    #[cfg(target_arch = "x86_64")]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i;

    /// Lanes 8h..8h+8 of chunk c as signed weights.
    ///
    /// # Safety
    /// AVX2 is available and `p` points to a whole panel block.
    #[cfg(target_arch = "x86_64")]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i;
}

/// GGML Q8_0: an f16 scale and 32 signed bytes.
#[derive(Debug, Clone, Copy)]
pub struct Q8;

impl Format for Q8 {
    const GGML_BLOCK: usize = 34;
    const PANEL_BLOCK: usize = PANEL_BYTES;
    const BIAS: i32 = 128;

    fn weights(quants: &[u8]) -> [i8; BLOCK] {
        // GGML's quantizer writes -127..=127; a file's -128 is read as -127 so that every
        // kernel sees the same weights (the AVX2 one negates them).
        std::array::from_fn(|e| (quants[e] as i8).max(-127))
    }

    /// Scale = max |x| / 127 stored as f16, quants = round(x / scale).
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let (d, id) = block_scale(values);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(values.iter().map(|v| (v * id).round() as i8 as u8));
    }

    fn place(l: usize, e: usize) -> (usize, u32) {
        (interleaved(l, e), 0)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i {
        // SAFETY: forwarded from the caller.
        unsafe { std::arch::x86_64::_mm512_loadu_si512(p.add(c * 64).cast()) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller. Flipping the top bit of w + 128 gives w.
        unsafe {
            _mm256_xor_si256(
                _mm256_loadu_si256(p.add(c * 64 + h * 32).cast()),
                _mm256_set1_epi8(-128),
            )
        }
    }
}

/// GGML Q4_0: an f16 scale and 16 bytes; byte j holds element j (low nibble) and j + 16
/// (high nibble), each w + 8.
#[derive(Debug, Clone, Copy)]
pub struct Q4;

impl Format for Q4 {
    const GGML_BLOCK: usize = 18;
    const PANEL_BLOCK: usize = PANEL_BYTES / 2;
    const BIAS: i32 = 8;

    fn weights(quants: &[u8]) -> [i8; BLOCK] {
        std::array::from_fn(|e| ((quants[e % 16] >> (4 * (e / 16))) & 0x0f) as i8 - 8)
    }

    /// GGML's reference: d = (the value of largest magnitude) / -8, q = min(15, x / d + 8.5).
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let max = values
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        out.extend((0..16).map(|j| q(values[j]) | (q(values[j + 16]) << 4)));
    }

    fn place(l: usize, e: usize) -> (usize, u32) {
        (interleaved(l, e % 16), 4 * (e / 16) as u32)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller; chunks c and c + 4 share a 64-byte load.
        unsafe {
            let v = _mm512_loadu_si512(p.add((c % 4) * 64).cast());
            let v = if c < 4 { v } else { _mm512_srli_epi16::<4>(v) };
            _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe {
            let v = _mm256_loadu_si256(p.add((c % 4) * 64 + h * 32).cast());
            let v = if c < 4 { v } else { _mm256_srli_epi16::<4>(v) };
            _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8))
        }
    }
}

impl<F: Format> Packed<F> {
    /// Repacks GGML data: `rows * cols / 32` blocks of `F::GGML_BLOCK` bytes, row-major. The
    /// caller checks the length.
    pub fn from_ggml(data: &[u8], rows: usize, cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let n_panels = rows.div_ceil(PANEL);
        let mut quants = vec![0u8; n_panels * blocks * F::PANEL_BLOCK];
        let mut scales = vec![0u16; n_panels * blocks * PANEL];
        // Padding rows hold w = 0 (stored as the bias) and scale 0.
        let zero = [0i8; BLOCK];
        for o in 0..n_panels * PANEL {
            for b in 0..blocks {
                let (p, lane) = (o / PANEL, o % PANEL);
                let block = data.get((o * blocks + b) * F::GGML_BLOCK..).filter(|_| o < rows);
                let weights = block.map_or(zero, |blk| F::weights(&blk[2..F::GGML_BLOCK]));
                let base = (p * blocks + b) * F::PANEL_BLOCK;
                for (e, &w) in weights.iter().enumerate() {
                    let (at, shift) = F::place(lane, e);
                    quants[base + at] |= ((w as i32 + F::BIAS) as u8) << shift;
                }
                if let Some(blk) = block {
                    scales[(p * blocks + b) * PANEL + lane] = u16::from_le_bytes([blk[0], blk[1]]);
                }
            }
        }
        Self {
            quants,
            scales,
            rows,
            cols,
            blocks,
            format: std::marker::PhantomData,
        }
    }

    /// Quantizes row-major f32 values (`cols` a multiple of 32) with GGML's reference
    /// quantizer for the format.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Self {
        let mut data = Vec::with_capacity(values.len() / BLOCK * F::GGML_BLOCK);
        for block in values.chunks_exact(BLOCK) {
            F::quantize_block(block, &mut data);
        }
        Self::from_ggml(&data, rows, cols)
    }

    /// Bytes of real weights (as GGML stores them).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols / BLOCK * F::GGML_BLOCK
    }

    /// Weight row `o`, dequantized.
    pub fn row(&self, o: usize, out: &mut [f32]) {
        let (p, lane) = (o / PANEL, o % PANEL);
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            let at = p * self.blocks + b;
            let d = f16::from_bits(self.scales[at * PANEL + lane]).to_f32();
            let panel_block = &self.quants[at * F::PANEL_BLOCK..(at + 1) * F::PANEL_BLOCK];
            for (e, v) in chunk.iter_mut().enumerate() {
                *v = (F::stored(panel_block, lane, e) - F::BIAS) as f32 * d;
            }
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        panel_matmul(self, x, k, out);
    }
}

impl<F: Format> PanelKernels for Packed<F> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn check(&self, x: &QuantizedInput, k: usize, p0: usize, n: usize) {
        assert!(
            (p0 + n) * self.blocks * F::PANEL_BLOCK <= self.quants.len()
                && (p0 + n) * self.blocks * PANEL <= self.scales.len()
        );
        x.check(k, self.cols);
    }

    fn run(&self, kernel: Kernel, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => x86::kernel_vnni(self, x, k, p0, n, buf),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::kernel_avx2(self, x, k, p0, n, buf),
            Kernel::Portable => kernel_portable(self, x, k, p0, n, buf),
        }
    }
}

/// A matrix in integer-product panels. The formats differ in their kernels; quantizing the
/// input and walking the panels (`panel_matmul`) is shared.
trait PanelKernels: Sync {
    /// (rows, cols).
    fn shape(&self) -> (usize, usize);

    /// Whether the kernels read `QuantizedInput::half_sums`.
    fn needs_half_sums(&self) -> bool {
        false
    }

    /// Panics unless panels `p0..p0 + n` and `k` rows of `x` lie inside the data: what the
    /// SIMD kernels rely on for their unchecked loads.
    fn check(&self, x: &QuantizedInput, k: usize, p0: usize, n: usize);

    /// Panels `p0..p0 + n` for all k input rows into `buf` (`[k][n * 16]`) with `kernel`.
    fn run(&self, kernel: Kernel, x: &QuantizedInput, k: usize, p0: usize, n: usize, buf: &mut [f32]);
}

/// `out[r][o] = x[r] . w[o]` for `k` rows: the input rows quantized once, then this CPU's best
/// kernel over the panels.
fn panel_matmul<W: PanelKernels>(w: &W, x: &[f32], k: usize, out: &mut [f32]) {
    let (rows, cols) = w.shape();
    debug_assert_eq!(x.len(), k * cols);
    debug_assert_eq!(out.len(), k * rows);
    let input = quantize_for(w, x);
    let kernel = kernel_choice();
    by_panels(k, rows, cols, PANEL, out, |p0, n, buf| {
        w.run(kernel, &input, k, p0, n, buf)
    });
}

/// `x` quantized for `w`'s kernels.
fn quantize_for<W: PanelKernels>(w: &W, x: &[f32]) -> QuantizedInput {
    let mut input = quantize_input(x, w.shape().1);
    if w.needs_half_sums() {
        input.half_sums = input
            .quants
            .chunks_exact(BLOCK / 2)
            .map(|h| h.iter().map(|&q| q as i32).sum())
            .collect();
    }
    input
}

/// A block's scale (max |x| / 127) and its inverse, as Q8_0's quantizer computes them (the
/// inverse of the exact scale; the scale is then stored as f16).
fn block_scale(block: &[f32]) -> (f32, f32) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Quantizes each row of `x` to blocks of 32: scale = max |x| / 127 (rounded through f16),
/// quants = x / exact scale rounded half to even. The SIMD and scalar versions give the same
/// bits.
fn quantize_input(x: &[f32], cols: usize) -> QuantizedInput {
    let n_blocks = x.len() / BLOCK;
    let mut input = QuantizedInput {
        quants: vec![0i8; x.len()],
        scales: vec![0f32; n_blocks],
        sums: vec![0i32; n_blocks],
        half_sums: Vec::new(),
    };
    debug_assert_eq!(cols % BLOCK, 0);
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("f16c") {
            // SAFETY: the features are present.
            unsafe { x86::quantize_input_avx512(x, &mut input) };
            return input;
        }
    }
    quantize_input_scalar(x, &mut input);
    input
}

fn quantize_input_scalar(x: &[f32], input: &mut QuantizedInput) {
    for (b, block) in x.chunks_exact(BLOCK).enumerate() {
        let (exact, id) = block_scale(block);
        let mut sum = 0i32;
        for (q, v) in input.quants[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(block) {
            *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
            sum += *q as i32;
        }
        input.scales[b] = f16::from_f32(exact).to_f32();
        input.sums[b] = sum;
    }
}

/// The product kernels.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

/// The kernels this CPU can run, best first (the tests compare them all).
fn available_kernels() -> Vec<Kernel> {
    let mut kernels = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
            kernels.push(Kernel::Vnni);
        }
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            kernels.push(Kernel::Avx2);
        }
    }
    kernels.push(Kernel::Portable);
    kernels
}

/// The kernel for this CPU, chosen once.
fn kernel_choice() -> Kernel {
    static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| available_kernels()[0])
}

/// The portable kernels' walk: for every panel `p0..p0 + n` and input row r, `block(panel, r,
/// b, acc)` adds each block b in order to the panel's 16 outputs; they land in `buf` (`[k][n *
/// 16]`). The formats differ only in `block`.
fn portable_walk(
    k: usize,
    p0: usize,
    n: usize,
    blocks: usize,
    buf: &mut [f32],
    block: impl Fn(usize, usize, usize, &mut [f32; PANEL]),
) {
    let width = buf.len() / k;
    for p in 0..n {
        for r in 0..k {
            let mut acc = [0f32; PANEL];
            for b in 0..blocks {
                block(p0 + p, r, b, &mut acc);
            }
            buf[r * width + p * PANEL..][..PANEL].copy_from_slice(&acc);
        }
    }
}

/// The same arithmetic without SIMD: per (output, input row), each block's exact integer sum
/// scaled and accumulated in block order.
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
        let mut sums = [-F::BIAS * x.sums[r * blocks + b]; PANEL];
        for (lane, sum) in sums.iter_mut().enumerate() {
            for (e, &xv) in xq.iter().enumerate() {
                *sum += F::stored(wq, lane, e) * xv as i32;
            }
        }
        let dx = x.scales[r * blocks + b];
        for (lane, a) in acc.iter_mut().enumerate() {
            let dw = f16::from_bits(w.scales[at * PANEL + lane]).to_f32();
            *a = (sums[lane] as f32).mul_add(dw * dx, *a);
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2_k;
mod q4k;
mod q6k;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use q4k::{PackedQ4K, PackedQ5K};
pub use q6k::PackedQ6K;

/// `values` quantized by candle's reference quantizer for the k-quant `B`, as GGML's bytes.
pub(crate) fn ggml_bytes<B: candle_core::quantized::GgmlType>(values: &[f32]) -> Vec<u8> {
    let mut blocks = vec![B::zeros(); values.len() / B::BLCK_SIZE];
    B::from_float(values, &mut blocks);
    // SAFETY: candle's k-quant blocks are repr(C) f16, u8 and i8 fields without padding (candle
    // asserts their sizes), laid out as GGML's blocks; the length is the slice's size.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(&blocks[..])) }
        .to_vec()
}

/// Checks the k-quant panel matrices share: against candle's reference blocks.
#[cfg(test)]
mod k_tests {
    use candle_core::quantized::GgmlType;

    use super::{available_kernels, panel_matmul, quantize_for, PanelKernels};

    pub(super) fn matrix(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| (((i + seed) * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Candle's blocks of type `B` for a fixed matrix: their bytes (GGML's layout) and values.
    pub(super) fn ggml_blocks<B: GgmlType>(rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
        let values = matrix(rows, cols, 3);
        let mut blocks = vec![B::zeros(); rows * cols / B::BLCK_SIZE];
        B::from_float(&values, &mut blocks);
        let mut deq = vec![0f32; rows * cols];
        B::to_float(&blocks, &mut deq);
        (super::ggml_bytes::<B>(&values), deq)
    }

    /// Rows dequantize exactly to `deq`; products match the f32 product within the input's
    /// 8-bit quantization; any number of rows gives the same bits; every kernel this CPU has
    /// gives the same bits. 37 rows: two whole panels and a padded one; k = 20 takes several
    /// passes of rows.
    pub(super) fn check<W: PanelKernels>(p: &W, row: impl Fn(usize, &mut [f32]), deq: &[f32], name: &str) {
        let (rows, cols) = p.shape();
        assert_eq!(rows, 37);
        let k = 20;
        let mut r = vec![0f32; cols];
        for o in 0..rows {
            row(o, &mut r);
            assert_eq!(&r[..], &deq[o * cols..(o + 1) * cols], "{name} row {o}");
        }
        let x = matrix(k, cols, 11);
        let mut got = vec![0f32; k * rows];
        panel_matmul(p, &x, k, &mut got);
        for r in 0..k {
            for o in 0..rows {
                let want: f32 = (0..cols).map(|i| x[r * cols + i] * deq[o * cols + i]).sum();
                let g = got[r * rows + o];
                // Inputs are quantized to 8 bits: about 1% of the magnitude.
                assert!(
                    (g - want).abs() <= 0.02 * (1.0 + want.abs()),
                    "{name} row {r} out {o}: {g} vs {want}"
                );
            }
        }
        for width in [1, 2, 3, 5, 8, 9] {
            for r0 in (0..k - width).step_by(7) {
                let mut some = vec![0f32; width * rows];
                panel_matmul(p, &x[r0 * cols..(r0 + width) * cols], width, &mut some);
                assert_eq!(
                    &some[..],
                    &got[r0 * rows..(r0 + width) * rows],
                    "{name} rows {r0}+{width}"
                );
            }
        }
        let input = quantize_for(p, &x);
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ8_0};
    use candle_core::quantized::GgmlType;

    fn matrix(rows: usize, cols: usize, seed: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| (((i + seed) * 7919) % 997) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn packed<F: Format, B: GgmlType>(rows: usize, cols: usize) -> (Packed<F>, Vec<B>) {
        let w = matrix(rows, cols, 3);
        let mut blocks = vec![B::zeros(); rows * cols / BLOCK];
        B::from_float(&w, &mut blocks);
        let p = Packed::<F>::quantize(&w, rows, cols);
        (p, blocks)
    }

    /// Our quantizer makes GGML's blocks, and our rows dequantize to them.
    fn rows_dequantize_to_the_ggml_blocks<F: Format, B: GgmlType>() {
        let (rows, cols) = (5, 96 + 512);
        let (p, blocks) = packed::<F, B>(rows, cols);
        let mut want = vec![0f32; rows * cols];
        B::to_float(&blocks, &mut want);
        let mut got = vec![0f32; cols];
        for o in 0..rows {
            p.row(o, &mut got);
            assert_eq!(
                &got[..],
                &want[o * cols..(o + 1) * cols],
                "{} row {o}",
                std::any::type_name::<F>()
            );
        }
    }

    #[test]
    fn q8_0_and_q4_0_rows_dequantize_to_the_ggml_blocks() {
        rows_dequantize_to_the_ggml_blocks::<Q8, BlockQ8_0>();
        rows_dequantize_to_the_ggml_blocks::<Q4, BlockQ4_0>();
    }

    fn the_product_matches_candle_and_every_row_is_batch_invariant<F: Format, B: GgmlType>() {
        // 37 rows: two whole panels and a padded one; k = 20 takes three passes of rows (8, 8, 4)
        // over chunks of panels, and every tile shape.
        let (rows, cols, k) = (37, 19 * 32, 20);
        let (p, blocks) = packed::<F, B>(rows, cols);
        let x = matrix(k, cols, 11);
        let mut got = vec![0f32; k * rows];
        p.matmul(&x, k, &mut got);
        let per_row = cols / BLOCK;
        for r in 0..k {
            let mut xq = vec![B::VecDotType::zeros(); per_row];
            B::VecDotType::from_float(&x[r * cols..(r + 1) * cols], &mut xq);
            for o in 0..rows {
                let want = B::vec_dot(cols, &blocks[o * per_row..(o + 1) * per_row], &xq);
                let g = got[r * rows + o];
                assert!(
                    (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{} row {r} out {o}: {g} vs {want}",
                    std::any::type_name::<F>()
                );
            }
        }
        // Alone, or beside any number of other rows, a row gives the very same bits.
        for width in [1, 2, 3, 5, 8, 9] {
            for r0 in (0..k - width).step_by(7) {
                let mut some = vec![0f32; width * rows];
                p.matmul(&x[r0 * cols..(r0 + width) * cols], width, &mut some);
                assert_eq!(
                    &some[..],
                    &got[r0 * rows..(r0 + width) * rows],
                    "{} rows {r0}+{width}",
                    std::any::type_name::<F>()
                );
            }
        }
        // Every kernel does the same arithmetic in the same order: the same bits.
        let input = quantize_input(&x, cols);
        for kernel in available_kernels() {
            let mut a = vec![0f32; k * 48];
            p.run(kernel, &input, k, 0, 3, &mut a);
            let name = format!("{kernel:?}");
            for r in 0..k {
                assert_eq!(
                    &a[r * 48..r * 48 + rows],
                    &got[r * rows..(r + 1) * rows],
                    "{} {name} row {r}",
                    std::any::type_name::<F>()
                );
            }
        }
    }

    #[test]
    fn q8_0_and_q4_0_products_match_candle_and_every_row_is_batch_invariant() {
        the_product_matches_candle_and_every_row_is_batch_invariant::<Q8, BlockQ8_0>();
        the_product_matches_candle_and_every_row_is_batch_invariant::<Q4, BlockQ4_0>();
    }

    #[test]
    fn a_q8_0_file_s_minus_128_reads_as_minus_127() {
        let mut data = vec![0u8; 34];
        data[..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        data[2] = 0x80; // -128
        let p = PackedQ8::from_ggml(&data, 1, 32);
        let mut row = vec![0f32; 32];
        p.row(0, &mut row);
        assert_eq!(row[0], -127.0 * 0.5);
    }

    #[test]
    fn input_quantization_is_the_same_with_and_without_simd() {
        let mut x = matrix(3, 256, 5);
        x[40] = 0.0; // a block's ties and extremes: exact halves of the scale, and zeros
        x[64..96].iter_mut().for_each(|v| *v = 0.0);
        for (i, v) in x[96..128].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.5;
        }
        let simd = quantize_input(&x, 256);
        let mut scalar = QuantizedInput {
            quants: vec![0; x.len()],
            scales: vec![0.0; x.len() / BLOCK],
            sums: vec![0; x.len() / BLOCK],
            half_sums: Vec::new(),
        };
        quantize_input_scalar(&x, &mut scalar);
        assert_eq!(simd.quants, scalar.quants);
        assert_eq!(simd.scales, scalar.scales);
        assert_eq!(simd.sums, scalar.sums);
        assert!(scalar.scales[2] == 0.0 && scalar.quants[64..96].iter().all(|&q| q == 0));
    }
}
