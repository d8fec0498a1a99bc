//! GGML Q5_1: f16 scale d, f16 minimum m, 4 bytes qh and 16 bytes of nibbles as Q5_0's;
//! w = d q + m. Stored as q (no bias) in Q5_0's panel layout; the minimum as Q4_1's.

use half::f16;

use super::layout::{FIFTH_BYTES, NIBBLE_BYTES};
use super::legacy::Format;
use super::q4_1::min_scale;
use super::q5_0::{ggml_q5, pack_q5, put_q5, read_q5};
use super::BLOCK;

#[derive(Debug, Clone, Copy)]
pub struct Q5_1;

impl Format for Q5_1 {
    const GGML_BLOCK: usize = 24;
    const PANEL_BLOCK: usize = NIBBLE_BYTES + FIFTH_BYTES;
    const BIAS: i32 = 0;
    const MIN: bool = true;

    fn stored_values(block: &[u8]) -> [u8; BLOCK] {
        ggml_q5(&block[4..8], &block[8..])
    }

    /// GGML's reference: d = (max - min) / 31, m = min, q = (x - min) / d + 0.5.
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let (min, d, id) = min_scale(values, 31.0);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        let q: [u8; BLOCK] = std::array::from_fn(|e| (((values[e] - min) * id + 0.5) as u8).min(31));
        pack_q5(&q, out);
    }

    fn put(panel_block: &mut [u8], l: usize, e: usize, u: u8) {
        put_q5(panel_block, l, e, u);
    }

    fn stored(panel_block: &[u8], l: usize, e: usize) -> i32 {
        read_q5(panel_block, l, e)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i {
        // SAFETY: forwarded from the caller.
        unsafe { super::q5_0::q5_chunk512(p, c) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
        // SAFETY: forwarded from the caller; q (0..=31) is its own signed value.
        unsafe { super::q5_0::q5_chunk256(p, c, h) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::legacy::tests::check_format;
    use super::*;
    use candle_core::quantized::k_quants::BlockQ5_1;

    #[test]
    fn q5_1_matches_candle_and_every_kernel_and_row_count_gives_the_same_bits() {
        check_format::<Q5_1, BlockQ5_1>("q5_1");
    }
}
