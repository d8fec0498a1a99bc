//! GGML Q4_0: an f16 scale d and 16 bytes; byte j holds q of element j (low nibble) and
//! j + 16 (high nibble); w = d (q - 8). Stored as q in the nibble layout (`layout::nibble`),
//! half the bytes of Q8_0's panels: each 64-byte load holds two chunks.

use half::f16;

use super::layout::{self, NIBBLE_BYTES};
use super::legacy::Format;
use super::BLOCK;

#[derive(Debug, Clone, Copy)]
pub struct Q4;

/// The 4-bit q of element `e` (0..32) from a GGML block's 16 bytes of nibbles.
pub(super) fn ggml_nibble(qs: &[u8], e: usize) -> u8 {
    (qs[e % 16] >> (4 * (e / 16))) & 0x0f
}

impl Format for Q4 {
    const GGML_BLOCK: usize = 18;
    const PANEL_BLOCK: usize = NIBBLE_BYTES;
    const BIAS: i32 = 8;
    const MIN: bool = false;

    fn stored_values(block: &[u8]) -> [u8; BLOCK] {
        std::array::from_fn(|e| ggml_nibble(&block[2..], e))
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
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe { _mm256_sub_epi8(super::x86::nibbles256(p, c, h), _mm256_set1_epi8(8)) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::legacy::tests::check_format;
    use super::*;
    use candle_core::quantized::k_quants::BlockQ4_0;

    #[test]
    fn q4_0_matches_candle_and_every_kernel_and_row_count_gives_the_same_bits() {
        check_format::<Q4, BlockQ4_0>("q4_0");
    }
}
