//! GGML Q4_1: f16 scale d, f16 minimum m and 16 bytes of nibbles as Q4_0's (byte j: element
//! j low, j + 16 high); w = d q + m. Stored as q (no bias) in the nibble layout; the minimum's
//! term m x (the input block's sum) joins each block's sum (`legacy`).

use half::f16;

use super::layout::{self, NIBBLE_BYTES};
use super::legacy::Format;
use super::q4_0::ggml_nibble;
use super::BLOCK;

#[derive(Debug, Clone, Copy)]
pub struct Q4_1;

/// A block's minimum and its scale (max - min) / `levels` with the inverse, as GGML's Q4_1
/// and Q5_1 reference quantizers compute them.
pub(super) fn min_scale(values: &[f32], levels: f32) -> (f32, f32, f32) {
    let min = values.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let max = values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let d = (max - min) / levels;
    (min, d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

impl Format for Q4_1 {
    const GGML_BLOCK: usize = 20;
    const PANEL_BLOCK: usize = NIBBLE_BYTES;
    const BIAS: i32 = 0;
    const MIN: bool = true;

    fn stored_values(block: &[u8]) -> [u8; BLOCK] {
        std::array::from_fn(|e| ggml_nibble(&block[4..], e))
    }

    /// GGML's reference: d = (max - min) / 15, m = min, q = min(15, (x - min) / d + 0.5).
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let (min, d, id) = min_scale(values, 15.0);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        out.extend((0..16).map(|j| q(values[j]) | (q(values[j + 16]) << 4)));
    }

    fn put(panel_block: &mut [u8], l: usize, e: usize, u: u8) {
        layout::put_nibble(panel_block, l, e, u);
    }

    fn stored(panel_block: &[u8], l: usize, e: usize) -> i32 {
        layout::read_nibble(panel_block, l, e)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i {
        // SAFETY: forwarded from the caller.
        unsafe { super::x86::nibbles512(p, c) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
        // SAFETY: forwarded from the caller; q (0..=15) is its own signed value.
        unsafe { super::x86::nibbles256(p, c, h) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::legacy::tests::check_format;
    use super::*;
    use candle_core::quantized::k_quants::BlockQ4_1;

    #[test]
    fn q4_1_matches_candle_and_every_kernel_and_row_count_gives_the_same_bits() {
        check_format::<Q4_1, BlockQ4_1>("q4_1");
    }
}
