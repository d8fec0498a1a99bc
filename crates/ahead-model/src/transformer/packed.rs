//! Float weights (f32, f16 or bf16) packed in panels of 16 output rows, and the product kernel
//! that reads them. Half-precision weights stay half (half the memory, and half the bytes to
//! stream per token) and are widened exactly to f32 as they are loaded, so an f16 or bf16 matrix
//! gives the very same products as its f32 widening.
//!
//! Layout: panel p holds weight rows 16p..16p+16 interleaved by column, `[cols][16]`, so one
//! 64-byte load (32 bytes for half precision) gives column i of 16 outputs. The kernel broadcasts `x[r][i]` and does one fused
//! multiply-add per (row, panel, column) with no horizontal sums. Why: on models whose weights
//! sit in cache (stories260K) the old one-dot-per-output kernel spent most of its time on call
//! and reduction overhead; this one runs near the FMA throughput, and a k-row verify shares each
//! panel load between rows.
//!
//! Batch invariance: every output is one chain `acc = fma(x[i], w[i], acc)` over i = 0..cols
//! from zero, whatever other outputs are computed beside it, so row r of a k-row product is
//! bit-identical to a 1-row product. Several (panel, row) chains are interleaved only for
//! instruction-level parallelism.

use half::{bf16, f16};

use super::kernels::{by_panels, row_blocks};

/// Outputs per panel: one AVX-512 register of f32.
pub const PANEL: usize = 16;

/// A weight element type the panels can hold: widened exactly to f32 on load.
pub trait PanelElement: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    fn to_f32(self) -> f32;

    /// 16 consecutive elements as f32.
    ///
    /// # Safety
    /// AVX-512F is available and `p` points to 16 readable elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;

    /// 8 consecutive elements as f32.
    ///
    /// # Safety
    /// AVX2 and F16C are available and `p` points to 8 readable elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl PanelElement for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: forwarded from the caller.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded from the caller.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl PanelElement for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller; f16 is 16 bits, so 16 of them are 32 bytes.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

impl PanelElement for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }

    /// bf16 is the top half of an f32: widen each to 32 bits and shift left by 16.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(p.cast()),
            )))
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded from the caller.
        unsafe {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                p.cast(),
            ))))
        }
    }
}

/// A `[rows, cols]` matrix of `E` in panel layout (rows padded with zeros to a multiple of 16).
#[derive(Debug, Clone)]
pub struct Panels<E: PanelElement> {
    panels: Vec<E>,
    rows: usize,
    cols: usize,
}

/// f32 panels.
pub type PackedF32 = Panels<f32>;

impl<E: PanelElement> Panels<E> {
    /// Packs a row-major `[rows, cols]` matrix. `values.len()` must be `rows * cols`.
    pub fn new(values: &[E], rows: usize, cols: usize) -> Self {
        debug_assert_eq!(values.len(), rows * cols);
        let n_panels = rows.div_ceil(PANEL);
        let mut panels = vec![E::default(); n_panels * cols * PANEL];
        for (o, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
            let (p, lane) = (o / PANEL, o % PANEL);
            let panel = &mut panels[p * cols * PANEL..(p + 1) * cols * PANEL];
            for (i, &v) in row.iter().enumerate() {
                panel[i * PANEL + lane] = v;
            }
        }
        Self { panels, rows, cols }
    }

    /// Bytes of real weights (padding excluded).
    pub fn bytes(&self) -> usize {
        self.rows * self.cols * std::mem::size_of::<E>()
    }

    /// Weight row `o` into `out` (`cols` values).
    pub fn row(&self, o: usize, out: &mut [f32]) {
        let (p, lane) = (o / PANEL, o % PANEL);
        let panel = &self.panels[p * self.cols * PANEL..];
        for (i, v) in out.iter_mut().enumerate() {
            *v = panel[i * PANEL + lane].to_f32();
        }
    }

    /// `out[r][o] = x[r] . w[o]` for `k` rows (`x`: `[k, cols]`, `out`: `[k, rows]`).
    pub fn matmul(&self, x: &[f32], k: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), k * self.cols);
        debug_assert_eq!(out.len(), k * self.rows);
        by_panels(k, self.rows, self.cols, PANEL, out, |p0, n, buf| {
            kernel(self, x, k, p0, n, buf)
        });
    }
}

/// Computes panels `p0..p0+n` for all k rows into `buf` (`[k][n * 16]`) with the best kernel
/// for this CPU (`cpu`, detected once). The FMA variants give identical results (one
/// fused chain per output lane); the portable one rounds the product separately.
fn kernel<E: PanelElement>(w: &Panels<E>, x: &[f32], k: usize, p0: usize, n: usize, buf: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = super::cpu::cpu();
        if cpu.avx512f {
            return x86::kernel_avx512(w, x, k, p0, n, buf);
        }
        if cpu.avx2_kernels() {
            return x86::kernel_avx2(w, x, k, p0, n, buf);
        }
    }
    kernel_portable(w, x, k, p0, n, buf)
}

/// One instruction set's micro-kernel: `P` panels by `R` rows, one accumulator per (row, panel).
trait Tile {
    /// Most rows one block takes: what the accumulator registers hold.
    const MAX_ROWS: usize;

    /// # Safety
    /// The CPU supports the instruction set; `x` holds rows `r0..r0+R` of `cols` values and
    /// panels `p..p+P` exist; `buf` is `[k][width]` with room for them.
    unsafe fn tile<E: PanelElement, const P: usize, const R: usize>(t: &TileArgs<'_, E>, p: usize);
}

/// What every micro-kernel call of one block shares.
struct TileArgs<'a, E: PanelElement> {
    w: &'a Panels<E>,
    x: &'a [f32],
    r0: usize,
    p0: usize,
    buf: *mut f32,
    width: usize,
}

/// Panels per chunk when the rows need several blocks: every row block walks the chunk while
/// it is in L2 (two panels of a 5632-column matrix are 720 KiB), so the weights come from
/// memory once whatever k is.
const CHUNK_PANELS: usize = 2;

/// Walks rows in blocks of up to `T::MAX_ROWS` (see `row_blocks`) and panels in groups sized
/// so that enough accumulator chains are in flight to hide the FMA latency.
///
/// # Safety
/// `T`'s instruction set is available.
#[inline(always)]
unsafe fn panels<T: Tile, E: PanelElement>(
    w: &Panels<E>,
    x: &[f32],
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    let width = buf.len() / k;
    debug_assert!(width >= n * PANEL && x.len() >= k * w.cols && (p0 + n) * w.cols * PANEL <= w.panels.len());
    row_blocks(k, n, T::MAX_ROWS, CHUNK_PANELS, |chunk, r0, rows| {
        let args = TileArgs {
            w,
            x,
            r0,
            p0,
            buf: buf.as_mut_ptr(),
            width,
        };
        let (c0, c1) = (chunk.start, chunk.end);
        // SAFETY: the bounds above hold for every (panel, row) block visited.
        unsafe {
            match rows {
                1 => row_block::<T, E, 8, 1>(&args, c0, c1),
                2 => row_block::<T, E, 4, 2>(&args, c0, c1),
                3 => row_block::<T, E, 2, 3>(&args, c0, c1),
                4 => row_block::<T, E, 2, 4>(&args, c0, c1),
                5 => row_block::<T, E, 2, 5>(&args, c0, c1),
                6 => row_block::<T, E, 2, 6>(&args, c0, c1),
                7 => row_block::<T, E, 2, 7>(&args, c0, c1),
                _ => row_block::<T, E, 2, 8>(&args, c0, c1),
            }
        }
    });
}

/// Panels `start..end` of a block, `P` at a time, then what is left in halves (4, 2, 1 at
/// a time), so the last panels of a small matrix still run several chains side by side.
#[inline(always)]
unsafe fn row_block<T: Tile, E: PanelElement, const P: usize, const R: usize>(
    args: &TileArgs<'_, E>,
    start: usize,
    end: usize,
) {
    let mut p = start;
    // SAFETY (every tile): forwarded from `panels`.
    unsafe {
        while p + P <= end {
            T::tile::<E, P, R>(args, p);
            p += P;
        }
        if P > 4 && p + 4 <= end {
            T::tile::<E, 4, R>(args, p);
            p += 4;
        }
        if P > 2 && p + 2 <= end {
            T::tile::<E, 2, R>(args, p);
            p += 2;
        }
        while p < end {
            T::tile::<E, 1, R>(args, p);
            p += 1;
        }
    }
}

fn kernel_portable<E: PanelElement>(
    w: &Panels<E>,
    x: &[f32],
    k: usize,
    p0: usize,
    n: usize,
    buf: &mut [f32],
) {
    // SAFETY: the portable tile needs no special instructions.
    unsafe { panels::<Portable, E>(w, x, k, p0, n, buf) }
}

/// Plain Rust (no FMA assumed): multiply, round, add.
struct Portable;

impl Tile for Portable {
    const MAX_ROWS: usize = 4;

    #[inline(always)]
    unsafe fn tile<E: PanelElement, const P: usize, const R: usize>(t: &TileArgs<'_, E>, p: usize) {
        let cols = t.w.cols;
        let stride = cols * PANEL;
        let ws: [&[E]; P] = std::array::from_fn(|j| &t.w.panels[(t.p0 + p + j) * stride..][..stride]);
        let mut acc = [[[0f32; PANEL]; P]; R];
        for i in 0..cols {
            for (j, w) in ws.iter().enumerate() {
                let col = &w[i * PANEL..(i + 1) * PANEL];
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = t.x[(t.r0 + r) * cols + i];
                    for l in 0..PANEL {
                        a[j][l] += xv * col[l].to_f32();
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (j, v) in a.iter().enumerate() {
                let at = (t.r0 + r) * t.width + (p + j) * PANEL;
                // SAFETY: `buf` is `[k][width]` and panel p+j lies within `width`.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), t.buf.add(at), PANEL) };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{panels, PanelElement, Panels, Tile, TileArgs, PANEL};

    pub fn kernel_avx512<E: PanelElement>(
        w: &Panels<E>,
        x: &[f32],
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) {
        #[target_feature(enable = "avx512f")]
        unsafe fn inner<E: PanelElement>(
            w: &Panels<E>,
            x: &[f32],
            k: usize,
            p0: usize,
            n: usize,
            buf: &mut [f32],
        ) {
            // SAFETY: avx512f is enabled for this function.
            unsafe { panels::<Avx512, E>(w, x, k, p0, n, buf) }
        }
        // SAFETY: chosen by `kernel` only after detecting avx512f on this CPU.
        unsafe { inner(w, x, k, p0, n, buf) }
    }

    pub fn kernel_avx2<E: PanelElement>(
        w: &Panels<E>,
        x: &[f32],
        k: usize,
        p0: usize,
        n: usize,
        buf: &mut [f32],
    ) {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn inner<E: PanelElement>(
            w: &Panels<E>,
            x: &[f32],
            k: usize,
            p0: usize,
            n: usize,
            buf: &mut [f32],
        ) {
            // SAFETY: avx2, fma and f16c are enabled for this function.
            unsafe { panels::<Avx2, E>(w, x, k, p0, n, buf) }
        }
        // SAFETY: chosen by `kernel` only after detecting avx2, fma and f16c on this CPU.
        unsafe { inner(w, x, k, p0, n, buf) }
    }

    /// One 16-lane register per panel.
    struct Avx512;

    impl Tile for Avx512 {
        /// 8 rows x 2 panels: 16 of the 32 vector registers accumulate.
        const MAX_ROWS: usize = 8;

        #[inline(always)]
        unsafe fn tile<E: PanelElement, const P: usize, const R: usize>(t: &TileArgs<'_, E>, p: usize) {
            let cols = t.w.cols;
            let stride = cols * PANEL;
            // SAFETY (whole body): the caller guarantees avx512f and the bounds (see `Tile`).
            unsafe {
                let base = t.w.panels.as_ptr().add((t.p0 + p) * stride);
                let xs = t.x.as_ptr().add(t.r0 * cols);
                let mut acc = [[_mm512_setzero_ps(); P]; R];
                for i in 0..cols {
                    for j in 0..P {
                        let w = E::load16(base.add(j * stride + i * PANEL));
                        for (r, a) in acc.iter_mut().enumerate() {
                            let xv = _mm512_set1_ps(*xs.add(r * cols + i));
                            a[j] = _mm512_fmadd_ps(xv, w, a[j]);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (j, v) in a.iter().enumerate() {
                        let at = (t.r0 + r) * t.width + (p + j) * PANEL;
                        _mm512_storeu_ps(t.buf.add(at), *v);
                    }
                }
            }
        }
    }

    /// Two 8-lane registers per panel; each lane is the same fused chain as in `Avx512`.
    struct Avx2;

    impl Tile for Avx2 {
        /// 4 rows x 2 panels x 2 halves: all 16 vector registers but the operands'.
        const MAX_ROWS: usize = 4;

        #[inline(always)]
        unsafe fn tile<E: PanelElement, const P: usize, const R: usize>(t: &TileArgs<'_, E>, p: usize) {
            let cols = t.w.cols;
            let stride = cols * PANEL;
            // SAFETY (whole body): the caller guarantees avx2+fma and the bounds (see `Tile`).
            unsafe {
                let base = t.w.panels.as_ptr().add((t.p0 + p) * stride);
                let xs = t.x.as_ptr().add(t.r0 * cols);
                let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
                for i in 0..cols {
                    for j in 0..P {
                        let lo = E::load8(base.add(j * stride + i * PANEL));
                        let hi = E::load8(base.add(j * stride + i * PANEL + 8));
                        for (r, a) in acc.iter_mut().enumerate() {
                            let xv = _mm256_set1_ps(*xs.add(r * cols + i));
                            a[j][0] = _mm256_fmadd_ps(xv, lo, a[j][0]);
                            a[j][1] = _mm256_fmadd_ps(xv, hi, a[j][1]);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (j, v) in a.iter().enumerate() {
                        let at = (t.r0 + r) * t.width + (p + j) * PANEL;
                        _mm256_storeu_ps(t.buf.add(at), v[0]);
                        _mm256_storeu_ps(t.buf.add(at + 8), v[1]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_naive_and_rows_are_batch_invariant() {
        for (k, rows, cols) in [
            (1, 7, 3),
            (3, 64, 172),
            (5, 513, 64),
            (8, 600, 600),
            (9, 40, 1),
            (13, 100, 33),
            (20, 70, 600),
        ] {
            let x = data(k * cols, 1);
            let values = data(rows * cols, 2);
            let w = PackedF32::new(&values, rows, cols);
            let mut out = vec![0.0; k * rows];
            w.matmul(&x, k, &mut out);
            for r in 0..k {
                for o in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|i| x[r * cols + i] as f64 * values[o * cols + i] as f64)
                        .sum();
                    let got = out[r * rows + o];
                    assert!(
                        (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{got} vs {want}"
                    );
                }
                let mut one = vec![0.0; rows];
                w.matmul(&x[r * cols..(r + 1) * cols], 1, &mut one);
                assert_eq!(
                    &out[r * rows..(r + 1) * rows],
                    &one[..],
                    "row {r} differs bitwise"
                );
            }
            let mut row = vec![0.0; cols];
            w.row(rows - 1, &mut row);
            assert_eq!(row, values[(rows - 1) * cols..]);
            // The portable kernel, and half-precision panels (widened exactly on load) give
            // the same bits as f32 panels of the widened values.
            let half: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            let widened: Vec<f32> = half.iter().map(|v| v.to_f32()).collect();
            let (mut a, mut b) = (vec![0.0; k * rows], vec![0.0; k * rows]);
            Panels::new(&half, rows, cols).matmul(&x, k, &mut a);
            PackedF32::new(&widened, rows, cols).matmul(&x, k, &mut b);
            assert_eq!(a, b, "f16 panels");
            let brain: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            let widened: Vec<f32> = brain.iter().map(|v| v.to_f32()).collect();
            Panels::new(&brain, rows, cols).matmul(&x, k, &mut a);
            PackedF32::new(&widened, rows, cols).matmul(&x, k, &mut b);
            assert_eq!(a, b, "bf16 panels");
            let n_panels = rows.div_ceil(PANEL);
            let (mut p1, mut p2) = (vec![0.0; k * n_panels * PANEL], vec![0.0; k * n_panels * PANEL]);
            kernel_portable(&Panels::new(&brain, rows, cols), &x, k, 0, n_panels, &mut p1);
            kernel_portable(&PackedF32::new(&widened, rows, cols), &x, k, 0, n_panels, &mut p2);
            assert_eq!(p1, p2, "portable bf16 panels");
            // Every SIMD kernel this CPU has computes the same chains: the same bits.
            #[cfg(target_arch = "x86_64")]
            if crate::transformer::cpu::cpu().avx2_kernels() {
                let panels = Panels::new(&half, rows, cols);
                let (mut v2, mut best) = (vec![0.0; k * n_panels * PANEL], vec![0.0; k * n_panels * PANEL]);
                x86::kernel_avx2(&panels, &x, k, 0, n_panels, &mut v2);
                kernel(&panels, &x, k, 0, n_panels, &mut best);
                assert_eq!(v2, best, "avx2 f16 panels");
                let panels = Panels::new(&brain, rows, cols);
                x86::kernel_avx2(&panels, &x, k, 0, n_panels, &mut v2);
                kernel(&panels, &x, k, 0, n_panels, &mut best);
                assert_eq!(v2, best, "avx2 bf16 panels");
            }
        }
    }
}
