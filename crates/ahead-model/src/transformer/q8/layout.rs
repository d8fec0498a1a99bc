//! Where a weight sits in a panel block (one block of 32 columns of 16 rows): the byte layouts
//! the formats share, as plain index arithmetic. The SIMD unpacking of the same layouts is in
//! `x86`.
//!
//! A chunk c (0..8) is elements 4c..4c+4 of every lane: what one `vpdpbusd` consumes.
//! - bytes: 8 chunks of 64 bytes; chunk c holds elements 4c..4c+4 of lane 0, then lane 1, ...
//! - nibbles: half of that, 4 loads of 64 bytes; chunk c is the low nibbles of load c (c < 4)
//!   or the high nibbles of load c - 4, as GGML splits a block into elements 0..16 and 16..32.
//! - fifth bits: one bit a weight, 64 bytes; bit c of byte (lane, e % 4) is element 4c + e % 4's.

use super::{BLOCK, PANEL};

/// Bytes of a panel block of 8-bit weights, of 4-bit weights, and of a plane of fifth bits.
pub(super) const BYTES: usize = BLOCK * PANEL;
pub(super) const NIBBLE_BYTES: usize = BYTES / 2;
pub(super) const FIFTH_BYTES: usize = BYTES / 8;

/// Offset of element `e` (0..32) of lane `l` (0..16) in the byte layout.
#[inline]
pub(super) fn byte(l: usize, e: usize) -> usize {
    (e / 4) * 64 + l * 4 + e % 4
}

/// Offset and bit shift of element `e` of lane `l` in the nibble layout.
#[inline]
pub(super) fn nibble(l: usize, e: usize) -> (usize, u32) {
    (byte(l, e % 16), 4 * (e / 16) as u32)
}

/// Offset and bit shift of element `e` of lane `l` in a plane of fifth bits.
#[inline]
pub(super) fn fifth(l: usize, e: usize) -> (usize, u32) {
    (l * 4 + e % 4, (e / 4) as u32)
}

/// The 4-bit value of element `e` of lane `l` in a nibble-layout block.
#[inline]
pub(super) fn read_nibble(block: &[u8], l: usize, e: usize) -> i32 {
    let (at, shift) = nibble(l, e);
    ((block[at] >> shift) & 0x0f) as i32
}

/// Ors the 4-bit `q` into element `e` of lane `l` of a zeroed nibble-layout block.
#[inline]
pub(super) fn put_nibble(block: &mut [u8], l: usize, e: usize, q: u8) {
    let (at, shift) = nibble(l, e);
    block[at] |= (q & 0x0f) << shift;
}

/// The bit of element `e` of lane `l` in a plane of fifth bits.
#[inline]
pub(super) fn read_fifth(plane: &[u8], l: usize, e: usize) -> i32 {
    let (at, shift) = fifth(l, e);
    ((plane[at] >> shift) & 1) as i32
}

/// Ors `bit` (0 or 1) into element `e` of lane `l` of a zeroed plane of fifth bits.
#[inline]
pub(super) fn put_fifth(plane: &mut [u8], l: usize, e: usize, bit: u8) {
    let (at, shift) = fifth(l, e);
    plane[at] |= (bit & 1) << shift;
}
