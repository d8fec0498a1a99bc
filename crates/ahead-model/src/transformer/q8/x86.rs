//! x86 pieces the formats' kernels share: the AVX-512 VNNI driver (each format supplies its
//! tile through `VnniTiles`), the AVX2 pass and output, and the unpacking of the shared panel
//! layouts (`layout`) into bytes. This module knows no format; the formats import it.

use super::{row_blocks, PanelKernels, QuantizedInput, BLOCK, CHUNK_PANELS, PANEL};
use std::arch::x86_64::*;

/// Input rows per pass: 8 rows x 1 panel keep 16 accumulators in the 32 registers (formats with
/// two sums per row take fewer: `VnniTiles::ROWS`).
const MAX_ROWS: usize = 8;
/// How far ahead (16 KiB: 32 Q8_0 blocks of a panel) weights are prefetched into L2 when several
/// input rows make the loop compute-bound: the hardware prefetcher alone falls behind there,
/// and memory time adds to compute time instead of hiding under it (measured: 8 rows over
/// a 49 MB matrix took 1.64x one row without it, 1.13x with it; up to 4 rows gain nothing).
const PREFETCH_BYTES: usize = 16 << 10;

/// A panel matrix the VNNI driver walks: its micro-kernel.
pub(super) trait VnniTiles: PanelKernels + Sized {
    /// Integer sums per (panel, input row) in a tile: two halves' sums use twice the
    /// registers, so tiles get fewer panels and rows (spilling made them 1.5-2x slower).
    const SUMS: usize = 1;
    /// Input rows per pass (at most `MAX_ROWS`).
    const ROWS: usize = MAX_ROWS;

    /// Panels p..p+P (of the tile's p0) times input rows r0..r0+R.
    ///
    /// # Safety
    /// AVX-512F and VNNI are available, and `check` passed for the whole call.
    unsafe fn tile<const P: usize, const R: usize>(t: &Args<'_, Self>, p: usize);
}

pub(super) fn kernel_vnni<W: VnniTiles>(
    w: &W,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    // SAFETY: chosen only when the CPU reports avx512f and avx512vnni.
    unsafe { kernel_vnni_impl(w, x, k, p0, n, buf) }
}

/// Walks (panel chunk, row block) pairs; panels go 4, 2 or 1 at a time so that at least
/// four independent `vpdpbusd` chains hide the instruction's latency.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn kernel_vnni_impl<W: VnniTiles>(
    w: &W,
    x: &QuantizedInput,
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let width = buf.len() / k;
    assert!(width >= n * PANEL && buf.len() >= k * width);
    w.check(x, k, p0, n);
    row_blocks(k, n, W::ROWS.min(MAX_ROWS), CHUNK_PANELS, |chunk, r0, rows| {
        let t = Args {
            w,
            x,
            r0,
            p0,
            buf: buf.as_mut_ptr(),
            width,
        };
        // SAFETY: the asserts above hold every panel and row the tiles touch in bounds.
        unsafe {
            match rows {
                1 => panels::<W, 4, 1>(&t, chunk),
                2 if W::SUMS > 1 => panels::<W, 2, 2>(&t, chunk),
                2 => panels::<W, 4, 2>(&t, chunk),
                3 => panels::<W, 2, 3>(&t, chunk),
                4 if W::SUMS > 1 => panels::<W, 1, 4>(&t, chunk),
                4 => panels::<W, 2, 4>(&t, chunk),
                5 => panels::<W, 1, 5>(&t, chunk),
                6 => panels::<W, 1, 6>(&t, chunk),
                7 => panels::<W, 1, 7>(&t, chunk),
                _ => panels::<W, 1, 8>(&t, chunk),
            }
        }
    });
}

/// What every tile of one row block shares: input rows r0.. of `x`, panels p0.. of `w`, and
/// `buf` (`[k][width]`, panel p's outputs at column p x 16).
pub(super) struct Args<'a, W> {
    pub(super) w: &'a W,
    pub(super) x: &'a QuantizedInput,
    pub(super) r0: usize,
    pub(super) p0: usize,
    buf: *mut f32,
    width: usize,
}

impl<W> Args<'_, W> {
    /// Stores the tile's accumulators: `acc[r][j]` is input row r0 + r, panel p + j.
    ///
    /// # Safety
    /// AVX-512F is available, and the rows and panels lie inside the call's buffer.
    #[inline(always)]
    pub(super) unsafe fn store<const P: usize, const R: usize>(&self, p: usize, acc: &[[__m512; P]; R]) {
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                // SAFETY: forwarded from the caller.
                unsafe { _mm512_storeu_ps(self.buf.add((self.r0 + r) * self.width + (p + j) * PANEL), *v) };
            }
        }
    }
}

/// Panels of `chunk`, `P` at a time, then one at a time.
#[inline(always)]
unsafe fn panels<W: VnniTiles, const P: usize, const R: usize>(
    t: &Args<'_, W>,
    chunk: std::ops::Range<usize>,
) {
    let mut p = chunk.start;
    while p + P <= chunk.end {
        // SAFETY: forwarded from `kernel_vnni_impl`.
        unsafe { W::tile::<P, R>(t, p) };
        p += P;
    }
    while p < chunk.end {
        // SAFETY: forwarded from `kernel_vnni_impl`.
        unsafe { W::tile::<1, R>(t, p) };
        p += 1;
    }
}

/// Prefetches into L2 block b of P consecutive panels (`blocks` blocks of `bytes` each from
/// `panels`), `PREFETCH_BYTES` ahead. Past a panel's end this reads ahead into the next panel,
/// which is next in memory; a prefetch never faults, so past the matrix is fine.
#[inline(always)]
pub(super) unsafe fn prefetch<const P: usize>(panels: *const u8, blocks: usize, b: usize, bytes: usize) {
    for j in 0..P {
        let ahead = panels.wrapping_add((j * blocks + b) * bytes + PREFETCH_BYTES);
        for line in 0..bytes.div_ceil(64) {
            // SAFETY: a prefetch reads nothing the program sees and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(line * 64).cast()) };
        }
    }
}

/// The 4 input bytes of chunk c of block b in row r of `xq` (rows `cols` apart).
///
/// # Safety
/// They lie inside the quantized input.
#[inline(always)]
pub(super) unsafe fn four_bytes(xq: *const i8, r: usize, cols: usize, b: usize, c: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        xq.add(r * cols + b * BLOCK + c * 4)
            .cast::<i32>()
            .read_unaligned()
    }
}

/// Chunk c of a nibble-layout block (`layout`): 16 lanes x 4 bytes 0..=15.
///
/// # Safety
/// AVX-512F is available and `p` points to a whole nibble block.
#[inline(always)]
pub(super) unsafe fn nibbles512(p: *const u8, c: usize) -> __m512i {
    // SAFETY: forwarded from the caller; chunks c and c + 4 share a 64-byte load.
    unsafe {
        let v = _mm512_loadu_si512(p.add((c % 4) * 64).cast());
        let v = if c < 4 { v } else { _mm512_srli_epi16::<4>(v) };
        _mm512_and_si512(v, _mm512_set1_epi8(0x0f))
    }
}

/// Chunk c of a plane of fifth bits, each moved to bit 4 of its byte.
///
/// # Safety
/// AVX-512F is available and `p` points to a whole plane.
#[inline(always)]
pub(super) unsafe fn fifth_bits512(p: *const u8, c: usize) -> __m512i {
    // SAFETY: forwarded from the caller. The 16-bit shifts bring in bits of the neighbouring
    // byte only below bit 4 (left) or above it (right), and the mask keeps bit 4 alone.
    unsafe {
        let v = _mm512_loadu_si512(p.cast());
        let v = match c {
            0 => _mm512_slli_epi16::<4>(v),
            1 => _mm512_slli_epi16::<3>(v),
            2 => _mm512_slli_epi16::<2>(v),
            3 => _mm512_slli_epi16::<1>(v),
            4 => v,
            5 => _mm512_srli_epi16::<1>(v),
            6 => _mm512_srli_epi16::<2>(v),
            _ => _mm512_srli_epi16::<3>(v),
        };
        _mm512_and_si512(v, _mm512_set1_epi8(0x10))
    }
}

/// Lanes 8h..8h+8 of chunk c of a nibble-layout block, as bytes 0..=15.
///
/// # Safety
/// AVX2 is available and `p` points to a whole nibble block.
#[inline(always)]
pub(super) unsafe fn nibbles256(p: *const u8, c: usize, h: usize) -> __m256i {
    // SAFETY: forwarded from the caller.
    unsafe {
        let v = _mm256_loadu_si256(p.add((c % 4) * 64 + h * 32).cast());
        let v = if c < 4 { v } else { _mm256_srli_epi16::<4>(v) };
        _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
    }
}

/// Lanes 8h..8h+8 of chunk c of a plane of fifth bits, moved to bit 4 (as `fifth_bits512`).
///
/// # Safety
/// AVX2 is available and `p` points to a whole plane.
#[inline(always)]
pub(super) unsafe fn fifth_bits256(p: *const u8, c: usize, h: usize) -> __m256i {
    // SAFETY: forwarded from the caller; the mask keeps bit 4 alone.
    unsafe {
        let v = _mm256_loadu_si256(p.add(h * 32).cast());
        let v = match c {
            0 => _mm256_slli_epi16::<4>(v),
            1 => _mm256_slli_epi16::<3>(v),
            2 => _mm256_slli_epi16::<2>(v),
            3 => _mm256_slli_epi16::<1>(v),
            4 => v,
            5 => _mm256_srli_epi16::<1>(v),
            6 => _mm256_srli_epi16::<2>(v),
            _ => _mm256_srli_epi16::<3>(v),
        };
        _mm256_and_si256(v, _mm256_set1_epi8(0x10))
    }
}

/// `s[h] += u[h] . x` per lane over one chunk, for unsigned weights `u` below 64 (`four`
/// holds the input's 4 bytes). `vpmaddubsw` multiplies them by the signed input bytes
/// (|pair sum| <= 2 x 63 x 127 fits 16 bits) and `vpmaddwd` adds the pairs into each lane's
/// 32 bits: the same exact integer sums as `vpdpbusd`.
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
pub(super) unsafe fn dot_unsigned(u: &[__m256i; 2], four: i32, s: &mut [__m256i; 2]) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let xv = _mm256_set1_epi32(four);
        let ones = _mm256_set1_epi16(1);
        for h in 0..2 {
            s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(_mm256_maddubs_epi16(u[h], xv), ones));
        }
    }
}

/// `s[h] += w[h] . x` per lane over one chunk, for signed weights with |w| <= 128: there is no
/// signed x signed byte product, so the unsigned operand is |x| and the signed one w with x's
/// sign, as in llama.cpp (no 16-bit pair sum overflows).
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
pub(super) unsafe fn dot_signed(w: &[__m256i; 2], four: i32, s: &mut [__m256i; 2]) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let xv = _mm256_set1_epi32(four);
        let magnitude = _mm256_sign_epi8(xv, xv);
        let ones = _mm256_set1_epi16(1);
        for h in 0..2 {
            let products = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w[h], xv));
            s[h] = _mm256_add_epi32(s[h], _mm256_madd_epi16(products, ones));
        }
    }
}

/// The AVX2 kernels' pass: `tile(panel, r0, rows)` for every panel of `n` and block of at
/// most `max_rows` input rows.
#[inline(always)]
pub(super) fn avx2_walk(k: usize, n: usize, max_rows: usize, mut tile: impl FnMut(usize, usize, usize)) {
    row_blocks(k, n, max_rows, CHUNK_PANELS, |chunk, r0, rows| {
        for p in chunk {
            tile(p, r0, rows);
        }
    });
}

/// Where an AVX2 tile writes: `buf` is `[k][width]`, panel p at column p x 16.
#[derive(Clone, Copy)]
pub(super) struct Out {
    buf: *mut f32,
    width: usize,
}

impl Out {
    /// Checks `buf` (`[k][width]`) holds `n` panels for every row, and `w` and `x` hold the
    /// panels from `p0` and k rows: what the tiles' unchecked loads and stores rely on.
    pub(super) fn new<W: PanelKernels>(
        w: &W,
        x: &QuantizedInput,
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) -> Self {
        let width = buf.len() / k;
        assert!(width >= n * PANEL && buf.len() >= k * width);
        w.check(x, k, p0, n);
        Self {
            buf: buf.as_mut_ptr(),
            width,
        }
    }

    /// # Safety
    /// AVX is available, and row r and panel p lie inside the buffer.
    #[inline(always)]
    pub(super) unsafe fn store(self, r: usize, p: usize, lanes: [__m256; 2]) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let at = self.buf.add(r * self.width + p * PANEL);
            _mm256_storeu_ps(at, lanes[0]);
            _mm256_storeu_ps(at.add(8), lanes[1]);
        }
    }
}
