//! GGML's 3-bit k-quant and its 4-bit non-linear types, held in layouts ahead already computes,
//! with exactly the values GGML's `dequantize_row_*` gives (Q2_K has its place in `q6k`):
//!
//! - **Q3_K as Q6_K.** A Q3_K weight is d x (s - 32) x q with q in -4..=3 and a 6-bit s per 16
//!   weights; Q6_K's is d x sc x q with a signed 8-bit sc per 16 and q in -32..=31. The same d,
//!   sc = s - 32 and the same q make a Q6_K block of the same values, for its integer panels.
//! - **IQ4_NL as Q8_0.** An IQ4_NL weight is d x `IQ4NL_VALUES`[i] with a 4-bit index i; the
//!   table's entries are 8-bit integers, so a Q8_0 block (d, 32 signed bytes) holds them exactly.
//! - **IQ4_XS as two Q6_K matrices.** A weight is d x (s - 32) x v with v a level (-127..=113)
//!   and a 6-bit s per 32. With u = v + 128 = 32 a + b (a in 0..=7, b in 0..=31) it is
//!   32 d x (s - 32) x (a - 4) + d x (s - 32) x b: two Q6_K matrices (d 32d and d, the same
//!   scales, q = a - 4 and q = b), each an exact product before the one rounding of their sum,
//!   so a row dequantizes to GGML's value. About 12.6 bits a weight against the file's 4.25, and
//!   two products; its own kernel would halve both.
//!
//! Block layouts and element orders are GGML's (`ggml-common.h`, `ggml-quants.c`).

use half::f16;

/// IQ4_NL's and IQ4_XS's 16 levels (`kvalues_iq4nl`).
pub(crate) const IQ4NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

const SUPER: usize = 256;
const Q3K_BYTES: usize = 110;
const Q6K_BYTES: usize = 210;
const IQ4NL_BYTES: usize = 18;
const IQ4XS_BYTES: usize = 136;
const Q8_0_BYTES: usize = 34;

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q3_K's 16 scales (s - 32) from its 12 packed bytes (`dequantize_row_q3_K`'s `aux` dance).
fn q3k_scales(packed: &[u8]) -> [i8; 16] {
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let (m1, m2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let aux = [
        (a0 & m2) | ((tmp & m1) << 4),
        (a1 & m2) | (((tmp >> 2) & m1) << 4),
        ((a0 >> 4) & m2) | (((tmp >> 4) & m1) << 4),
        ((a1 >> 4) & m2) | (((tmp >> 6) & m1) << 4),
    ];
    std::array::from_fn(|i| ((aux[i / 4] >> (8 * (i % 4))) & 0xff) as i32 as i8 - 32)
}

/// q (-4..=3) of element `e` (0..256) of a Q3_K block: 2 low bits in `qs`, the high bit in
/// `hmask` (set: no -4).
fn q3k_q(block: &[u8], e: usize) -> i8 {
    let (hmask, qs) = (&block[..32], &block[32..96]);
    let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = (qs[32 * n + l] >> (2 * j)) & 3;
    let high = hmask[l] & (1 << (4 * n + j)) != 0;
    low as i8 - if high { 0 } else { 4 }
}

/// Q3_K blocks (110 bytes per 256 weights) as Q6_K blocks of the same values.
pub(crate) fn q3k_as_q6k(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / Q3K_BYTES * Q6K_BYTES);
    for block in data.chunks_exact(Q3K_BYTES) {
        let mut q6 = [0u8; Q6K_BYTES];
        for e in 0..SUPER {
            put_q6k(&mut q6, e, (q3k_q(block, e) + 32) as u8);
        }
        for (i, s) in q3k_scales(&block[96..108]).into_iter().enumerate() {
            q6[192 + i] = s as u8;
        }
        q6[208..210].copy_from_slice(&block[108..110]);
        out.extend_from_slice(&q6);
    }
    out
}

/// IQ4_NL blocks (18 bytes per 32 weights) as Q8_0 blocks of the same values.
pub(crate) fn iq4nl_as_q8_0(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / IQ4NL_BYTES * Q8_0_BYTES);
    for block in data.chunks_exact(IQ4NL_BYTES) {
        out.extend_from_slice(&block[..2]);
        let qs = &block[2..];
        let level = |i: u8| IQ4NL_VALUES[i as usize] as u8;
        out.extend(qs.iter().map(|&b| level(b & 0x0f)));
        out.extend(qs.iter().map(|&b| level(b >> 4)));
    }
    out
}

/// IQ4_XS blocks (136 bytes per 256 weights) as f32, as `dequantize_row_iq4_xs` computes them:
/// (d x (s - 32)) x level, s 6 bits per 32 weights.
pub(crate) fn dequantize_iq4xs(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / IQ4XS_BYTES * SUPER);
    for block in data.chunks_exact(IQ4XS_BYTES) {
        let d = half_at(block, 0);
        let scales_h = u16::from_le_bytes([block[2], block[3]]);
        let (scales_l, qs) = (&block[4..8], &block[8..]);
        for ib in 0..SUPER / 32 {
            let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) as i32
                | (((scales_h >> (2 * ib)) & 3) as i32) << 4;
            let dl = d * (ls - 32) as f32;
            let q = &qs[16 * ib..16 * ib + 16];
            out.extend(q.iter().map(|&b| dl * IQ4NL_VALUES[(b & 0x0f) as usize] as f32));
            out.extend(q.iter().map(|&b| dl * IQ4NL_VALUES[(b >> 4) as usize] as f32));
        }
    }
    out
}

/// IQ4_XS blocks (136 bytes per 256 weights) as the two Q6_K matrices whose sum they are (see
/// the module notes), or `None` when 32 d overflows an f16 (no real file's scale does).
pub(crate) fn iq4xs_as_q6k_pair(data: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = data.len() / IQ4XS_BYTES;
    let (mut high, mut low) = (
        Vec::with_capacity(n * Q6K_BYTES),
        Vec::with_capacity(n * Q6K_BYTES),
    );
    for block in data.chunks_exact(IQ4XS_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]);
        let d32 = f16::from_f32(d.to_f32() * 32.0);
        if !d32.is_finite() || d32.to_f32() != d.to_f32() * 32.0 {
            return None;
        }
        let scales_h = u16::from_le_bytes([block[2], block[3]]);
        let (scales_l, qs) = (&block[4..8], &block[8..]);
        let (mut a, mut b) = ([0u8; Q6K_BYTES], [0u8; Q6K_BYTES]);
        for e in 0..SUPER {
            let ib = e / 32;
            let byte = qs[16 * ib + e % 16];
            let index = if e % 32 < 16 { byte & 0x0f } else { byte >> 4 };
            let u = (IQ4NL_VALUES[index as usize] as i32 + 128) as u8;
            // Stored as q + 32: (a - 4) + 32 and b + 32.
            put_q6k(&mut a, e, (u >> 5) + 28);
            put_q6k(&mut b, e, (u & 31) + 32);
        }
        for ib in 0..SUPER / 32 {
            let ls =
                ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((scales_h >> (2 * ib)) & 3) as u8) << 4;
            let sc = (ls as i8).wrapping_sub(32) as u8;
            for m in [&mut a, &mut b] {
                m[192 + 2 * ib] = sc;
                m[192 + 2 * ib + 1] = sc;
            }
        }
        a[208..210].copy_from_slice(&d32.to_le_bytes());
        b[208..210].copy_from_slice(&d.to_le_bytes());
        high.extend_from_slice(&a);
        low.extend_from_slice(&b);
    }
    Some((high, low))
}

/// Writes the stored value `u` (q + 32, below 64) of element `e` into a GGML Q6_K block.
fn put_q6k(q6: &mut [u8], e: usize, u: u8) {
    let (half, j, l) = (e / 128, (e % 128) / 32, e % 32);
    q6[64 * half + l + 32 * (j % 2)] |= (u & 0x0f) << (4 * (j / 2));
    q6[128 + 32 * half + l] |= (u >> 4) << (2 * j);
}

/// The level nearest `x` (ties to the lower).
fn nearest_level(x: f32) -> u8 {
    let mut best = 0;
    for (i, &v) in IQ4NL_VALUES.iter().enumerate() {
        if (x - v as f32).abs() < (x - IQ4NL_VALUES[best] as f32).abs() {
            best = i;
        }
    }
    best as u8
}

/// 32 weights as two nibble halves (elements j and j + 16 share byte j), each the level nearest
/// `value / dl`.
fn put_levels(values: &[f32], dl: f32, out: &mut Vec<u8>) {
    let inv = if dl == 0.0 { 0.0 } else { 1.0 / dl };
    for j in 0..16 {
        out.push(nearest_level(values[j] * inv) | nearest_level(values[j + 16] * inv) << 4);
    }
}

/// IQ4_NL blocks for `values` (synthetic models and tests; simpler than GGML's quantizer,
/// which also searches the scale): d maps the largest magnitude to the level -127.
pub(crate) fn quantize_iq4nl(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * IQ4NL_BYTES);
    for block in values.chunks_exact(32) {
        let max = block
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = f16::from_f32(max / -127.0);
        out.extend_from_slice(&d.to_le_bytes());
        put_levels(block, d.to_f32(), &mut out);
    }
    out
}

/// IQ4_XS blocks for `values` (synthetic models and tests): each block of 32 gets the 6-bit
/// scale nearest its own -max/127 on a super-block d.
pub(crate) fn quantize_iq4xs(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / SUPER * IQ4XS_BYTES);
    for sup in values.chunks_exact(SUPER) {
        let wanted: Vec<f32> = sup
            .chunks_exact(32)
            .map(|b| {
                b.iter()
                    .copied()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m })
                    / -127.0
            })
            .collect();
        let amax = wanted.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 32.0);
        let df = d.to_f32();
        let ls: Vec<u8> = wanted
            .iter()
            .map(|w| if df == 0.0 { 32 } else { ((w / df).round() as i32).clamp(-32, 31) + 32 } as u8)
            .collect();
        out.extend_from_slice(&d.to_le_bytes());
        let scales_h = ls
            .iter()
            .enumerate()
            .fold(0u16, |h, (i, &s)| h | (((s >> 4) as u16) << (2 * i)));
        out.extend_from_slice(&scales_h.to_le_bytes());
        for pair in ls.chunks_exact(2) {
            out.push((pair[0] & 0x0f) | (pair[1] & 0x0f) << 4);
        }
        for (b, &s) in sup.chunks_exact(32).zip(&ls) {
            put_levels(b, df * (s as i32 - 32) as f32, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transformer::q8::k_tests::matrix;
    use candle_core::quantized::k_quants::{BlockQ3K, BlockQ6K};
    use candle_core::quantized::GgmlType;

    fn blocks<B: GgmlType>(bytes: &[u8]) -> Vec<B> {
        let n = bytes.len() / std::mem::size_of::<B>();
        let mut out = vec![B::zeros(); n];
        // SAFETY: B is a plain-old-data GGML block of that size, and `out` has room for n.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                n * std::mem::size_of::<B>(),
            );
        }
        out
    }

    fn candle_dequantize<B: GgmlType>(bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        B::to_float(&blocks::<B>(bytes), &mut out);
        out
    }

    #[test]
    fn q3k_as_q6k_holds_candles_q3k_values_exactly() {
        let values = matrix(4, SUPER, 3);
        let q3 = crate::transformer::q8::ggml_bytes::<BlockQ3K>(&values);
        assert_eq!(q3.len(), 4 * Q3K_BYTES);
        let want = candle_dequantize::<BlockQ3K>(&q3, values.len());
        let got = candle_dequantize::<BlockQ6K>(&q3k_as_q6k(&q3), values.len());
        assert_eq!(got, want);
        // The values are not all one level: the conversion is tested on real spread.
        assert!(want.iter().filter(|&&v| v != want[0]).count() > 500);
    }

    /// A block made by hand from the GGML layout: d = 0.5, element j's index j % 16 in the low
    /// nibbles (elements 0..16), 15 - j % 16 in the high (elements 16..32).
    #[test]
    fn iq4nl_follows_the_ggml_layout() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let q8 = iq4nl_as_q8_0(&block);
        assert_eq!(q8.len(), Q8_0_BYTES);
        let got = candle_dequantize::<candle_core::quantized::k_quants::BlockQ8_0>(&q8, 32);
        for j in 0..16 {
            assert_eq!(got[j], 0.5 * IQ4NL_VALUES[j] as f32);
            assert_eq!(got[16 + j], 0.5 * IQ4NL_VALUES[15 - j] as f32);
        }
    }

    /// A super-block made by hand: d = 0.25, block ib's 6-bit scale 32 + ib - 4 (low nibbles in
    /// `scales_l`, high pairs in `scales_h`), every index 15 in block 0 and i % 16 elsewhere.
    #[test]
    fn iq4xs_follows_the_ggml_layout() {
        let ls: Vec<u8> = (0..8).map(|ib| (32 + ib - 4) as u8).collect();
        let mut block = f16::from_f32(0.25).to_le_bytes().to_vec();
        let scales_h = ls
            .iter()
            .enumerate()
            .fold(0u16, |h, (i, &s)| h | (((s >> 4) as u16) << (2 * i)));
        block.extend_from_slice(&scales_h.to_le_bytes());
        block.extend(ls.chunks(2).map(|p| (p[0] & 0x0f) | (p[1] & 0x0f) << 4));
        for ib in 0..8 {
            block.extend((0..16u8).map(|j| if ib == 0 { 0xff } else { j | j << 4 }));
        }
        assert_eq!(block.len(), IQ4XS_BYTES);
        let got = dequantize_iq4xs(&block);
        for (e, v) in got.iter().enumerate() {
            let (ib, j) = (e / 32, e % 16);
            let level = if ib == 0 { 15 } else { j };
            let want = 0.25 * (ib as f32 - 4.0) * IQ4NL_VALUES[level] as f32;
            assert_eq!(*v, want, "element {e}");
        }
    }

    /// The pair's rows sum to GGML's dequantized values exactly (each part is an exact product,
    /// so their sum rounds once, as d x (s - 32) x v does).
    #[test]
    fn iq4xs_as_two_q6k_matrices_sums_to_the_dequantized_values() {
        let values = matrix(3, SUPER, 13);
        let bytes = quantize_iq4xs(&values);
        let (high, low) = iq4xs_as_q6k_pair(&bytes).unwrap();
        let (a, b) = (
            candle_dequantize::<BlockQ6K>(&high, values.len()),
            candle_dequantize::<BlockQ6K>(&low, values.len()),
        );
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(sum, dequantize_iq4xs(&bytes));
    }

    #[test]
    fn the_iq4_quantizers_land_near_their_input() {
        let values = matrix(2, SUPER, 9);
        for (name, got) in [
            ("iq4_nl", {
                let q8 = iq4nl_as_q8_0(&quantize_iq4nl(&values));
                candle_dequantize::<candle_core::quantized::k_quants::BlockQ8_0>(&q8, values.len())
            }),
            ("iq4_xs", dequantize_iq4xs(&quantize_iq4xs(&values))),
        ] {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&values)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 0.15 * amax, "{name}: {worst} of {amax}");
        }
    }
}
