//! GGML Q8_0: an f16 scale d and 32 signed bytes q; w = d q. Stored as q + 128 in the byte
//! layout (`layout::byte`), 8 chunks of 64 bytes a panel block.

use half::f16;

use super::layout::{self, BYTES};
use super::legacy::Format;
use super::{block_scale, BLOCK};

#[derive(Debug, Clone, Copy)]
pub struct Q8;

impl Format for Q8 {
    const GGML_BLOCK: usize = 34;
    const PANEL_BLOCK: usize = BYTES;
    const BIAS: i32 = 128;
    const MIN: bool = false;

    fn stored_values(block: &[u8]) -> [u8; BLOCK] {
        // GGML's quantizer writes -127..=127; a file's -128 is read as -127 so that every
        // kernel sees the same weights (the AVX2 one negates them).
        std::array::from_fn(|e| ((block[2 + e] as i8).max(-127) as i32 + Self::BIAS) as u8)
    }

    /// Scale = max |x| / 127 stored as f16, quants = round(x / scale).
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let (d, id) = block_scale(values);
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(values.iter().map(|v| (v * id).round() as i8 as u8));
    }

    fn put(panel_block: &mut [u8], l: usize, e: usize, u: u8) {
        panel_block[layout::byte(l, e)] = u;
    }

    fn stored(panel_block: &[u8], l: usize, e: usize) -> i32 {
        panel_block[layout::byte(l, e)] as i32
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

#[cfg(test)]
mod tests {
    use super::super::legacy::tests::check_format;
    use super::super::PackedQ8;
    use super::*;
    use candle_core::quantized::k_quants::BlockQ8_0;

    #[test]
    fn q8_0_matches_candle_and_every_kernel_and_row_count_gives_the_same_bits() {
        check_format::<Q8, BlockQ8_0>("q8_0");
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
}
