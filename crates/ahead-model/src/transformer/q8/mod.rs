//! Quantized weights repacked for 8-bit integer dot products, and the product kernels that read
//! them: GGML's blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and the k-quants (Q4_K, Q5_K, Q6_K).
//!
//! candle's `vec_dot` computes one (weight row, input row) pair per call with 16-bit
//! multiplies; a k-row verify then costs k times a 1-row step. Here each input row is quantized
//! once per product (blocks of 32, as llama.cpp does), and the kernels use AVX-512 VNNI
//! (`vpdpbusd`: 64 byte products into 16 sums per instruction). CPUs without it get AVX2
//! kernels, others portable ones, all with the same results.
//!
//! Layout: weight rows go in panels of 16, like the f32 kernel's (`packed`). For each block of
//! 32 columns a panel holds the block's weights of all 16 rows, interleaved so that one chunk
//! (4 weights of each row, `layout`) is one 64-byte `vpdpbusd` operand: with four input bytes
//! broadcast it adds four products into each row's own lane, so 8 of them give the block's
//! integer sum for 16 outputs at once, and each weight load is shared by every input row of the
//! verify. Per block and input row there is then one conversion and a fused multiply-add or
//! two: no horizontal sums at all. `vpdpbusd` multiplies unsigned by signed bytes, so weights
//! are stored unsigned (w + a bias) and each block sum starts at -bias x (the input block's
//! sum), which leaves the exact signed sum.
//!
//! Batch invariance: each output is a chain over its blocks in order (block sums are exact
//! integers), whatever other outputs are computed beside it, so row r of a k-row product is
//! bit-identical to a 1-row product (tested for every format).
//!
//! Code map (imports point down this list, never up; every file may use this one's driver):
//! - the formats: `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1` (each a `legacy::Format`: its GGML
//!   block, reference quantizer and panel storage; the 5-bit and minimum formats reuse the
//!   4-bit ones' block readers), `q4k` (Q4_K and Q5_K) and `q6k` (each with its own tiles);
//! - `legacy`: `Packed<F>` and the portable, VNNI and AVX2 tiles of the blocks of 32;
//! - `x86`: the VNNI driver, the AVX2 pass, the SIMD unpacking of the shared layouts;
//! - `layout`: where a weight sits in a panel block;
//! - this file: the driver (input quantization, kernel choice, the walk over panels). It
//!   names the formats only to re-export them.

use half::f16;

use super::kernels::{by_panels, row_blocks};
use super::packed::PANEL;

mod layout;
mod legacy;
pub(crate) mod lowbit;
mod q4_0;
mod q4_1;
mod q4k;
mod q5_0;
mod q5_1;
mod q6k;
mod q8_0;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use legacy::{Format, Packed};
pub use q4_0::Q4;
pub use q4_1::Q4_1;
pub use q4k::{PackedQ4K, PackedQ5K};
pub use q5_0::Q5_0;
pub use q5_1::Q5_1;
pub use q6k::PackedQ6K;
pub use q8_0::Q8;

pub type PackedQ8 = Packed<Q8>;
pub type PackedQ4 = Packed<Q4>;
pub type PackedQ4_1 = Packed<Q4_1>;
pub type PackedQ5_0 = Packed<Q5_0>;
pub type PackedQ5_1 = Packed<Q5_1>;

/// Values per block.
const BLOCK: usize = 32;
/// Panels per chunk when the input rows need several passes (see `row_blocks`): four panels of
/// a 5632-column matrix are 360 KiB, well inside L2.
const CHUNK_PANELS: usize = 4;

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
        let cpu = crate::transformer::cpu::cpu();
        if cpu.avx512f && cpu.f16c {
            // SAFETY: the features are present.
            unsafe { quantize_input_avx512(x, &mut input) };
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

/// `quantize_input_scalar` 32 values at a time: the same max, scale, inverse and
/// round-half-to-even, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,f16c")]
unsafe fn quantize_input_avx512(x: &[f32], input: &mut QuantizedInput) {
    use std::arch::x86_64::*;
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
        let cpu = crate::transformer::cpu::cpu();
        if cpu.vnni() {
            kernels.push(Kernel::Vnni);
        }
        if cpu.avx2_kernels() {
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

/// `values` quantized by candle's reference quantizer for the GGML block type `B`, as GGML's bytes.
pub(crate) fn ggml_bytes<B: candle_core::quantized::GgmlType>(values: &[f32]) -> Vec<u8> {
    let mut blocks = vec![B::zeros(); values.len() / B::BLCK_SIZE];
    B::from_float(values, &mut blocks);
    // SAFETY: candle's GGML blocks are repr(C) f16, u8 and i8 fields without padding (candle
    // asserts their sizes), laid out as GGML's blocks; the length is the slice's size.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(&blocks[..])) }
        .to_vec()
}

/// Test data, and the checks the k-quant panel matrices share: against candle's reference
/// blocks.
#[cfg(test)]
mod k_tests {
    use candle_core::quantized::GgmlType;

    use super::{available_kernels, panel_matmul, quantize_for, PanelKernels};

    /// A fixed `[rows, cols]` matrix of values in -1..1.
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
        check_within(p, row, deq, name, 0.02);
    }

    /// `check`, with products within `tol` of the f32 product (relative, plus `tol` absolute).
    pub(super) fn check_within<W: PanelKernels>(
        p: &W,
        row: impl Fn(usize, &mut [f32]),
        deq: &[f32],
        name: &str,
        tol: f32,
    ) {
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
                    (g - want).abs() <= tol * (1.0 + want.abs()),
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

    #[test]
    fn input_quantization_is_the_same_with_and_without_simd() {
        let mut x = k_tests::matrix(3, 256, 5);
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
