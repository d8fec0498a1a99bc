//! GGML Q5_0: f16 scale d, 4 bytes qh (bit j: the fifth bit of element j) and 16 bytes of
//! nibbles as Q4_0's; w = d (q - 16), q = nibble | fifth bit << 4. Stored as q: the nibble
//! layout, then a plane of fifth bits (`layout::fifth`), 5 bits a weight as in GGML.

use half::f16;

use super::layout::{self, FIFTH_BYTES, NIBBLE_BYTES};
use super::legacy::Format;
use super::q4_0::ggml_nibble;
use super::BLOCK;

#[derive(Debug, Clone, Copy)]
pub struct Q5_0;

/// The 5-bit q of each element of a GGML Q5_0 or Q5_1 block from its 4 bytes of fifth bits
/// and 16 bytes of nibbles.
pub(super) fn ggml_q5(qh: &[u8], qs: &[u8]) -> [u8; BLOCK] {
    let high = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    std::array::from_fn(|e| ggml_nibble(qs, e) | (((high >> e) & 1) as u8) << 4)
}

/// A GGML block's qh and nibbles for 32 five-bit values.
pub(super) fn pack_q5(q: &[u8; BLOCK], out: &mut Vec<u8>) {
    let high = (0..BLOCK).fold(0u32, |h, e| h | (((q[e] >> 4) & 1) as u32) << e);
    out.extend_from_slice(&high.to_le_bytes());
    out.extend((0..16).map(|j| (q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4));
}

/// Writes a 5-bit stored value into a panel block: nibble layout, then the fifth-bit plane.
pub(super) fn put_q5(panel_block: &mut [u8], l: usize, e: usize, u: u8) {
    layout::put_nibble(panel_block, l, e, u);
    layout::put_fifth(&mut panel_block[NIBBLE_BYTES..], l, e, u >> 4);
}

/// The 5-bit stored value of element `e` of lane `l`.
pub(super) fn read_q5(panel_block: &[u8], l: usize, e: usize) -> i32 {
    layout::read_nibble(panel_block, l, e) | layout::read_fifth(&panel_block[NIBBLE_BYTES..], l, e) << 4
}

/// Chunk c of a 5-bit panel block as bytes 0..=31.
///
/// # Safety
/// AVX-512F is available and `p` points to a whole panel block.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn q5_chunk512(p: *const u8, c: usize) -> std::arch::x86_64::__m512i {
    use super::x86::{fifth_bits512, nibbles512};
    // SAFETY: forwarded from the caller.
    unsafe { std::arch::x86_64::_mm512_or_si512(nibbles512(p, c), fifth_bits512(p.add(NIBBLE_BYTES), c)) }
}

/// Lanes 8h..8h+8 of chunk c of a 5-bit panel block as bytes 0..=31.
///
/// # Safety
/// AVX2 is available and `p` points to a whole panel block.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn q5_chunk256(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
    use super::x86::{fifth_bits256, nibbles256};
    // SAFETY: forwarded from the caller.
    unsafe {
        std::arch::x86_64::_mm256_or_si256(nibbles256(p, c, h), fifth_bits256(p.add(NIBBLE_BYTES), c, h))
    }
}

impl Format for Q5_0 {
    const GGML_BLOCK: usize = 22;
    const PANEL_BLOCK: usize = NIBBLE_BYTES + FIFTH_BYTES;
    const BIAS: i32 = 16;
    const MIN: bool = false;

    fn stored_values(block: &[u8]) -> [u8; BLOCK] {
        ggml_q5(&block[2..6], &block[6..])
    }

    /// GGML's reference: d = (the value of largest magnitude) / -16, q = min(31, x / d + 16.5).
    fn quantize_block(values: &[f32], out: &mut Vec<u8>) {
        let max = values
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q: [u8; BLOCK] = std::array::from_fn(|e| ((values[e] * id + 16.5) as i32).clamp(0, 31) as u8);
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
        unsafe { q5_chunk512(p, c) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn chunk256_signed(p: *const u8, c: usize, h: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe { _mm256_sub_epi8(q5_chunk256(p, c, h), _mm256_set1_epi8(16)) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::legacy::tests::check_format;
    use super::*;
    use candle_core::quantized::k_quants::BlockQ5_0;

    #[test]
    fn q5_0_matches_candle_and_every_kernel_and_row_count_gives_the_same_bits() {
        check_format::<Q5_0, BlockQ5_0>("q5_0");
    }
}
