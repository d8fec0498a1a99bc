//! CPU kernels for the forward pass: the panel drivers the matrix products share (`by_panels`,
//! `row_blocks`), RMSNorm and the gated activations (SiLU, tanh GELU). f32 products live in `packed`,
//! integer products in `q8`, attention in `attention`.
//!
//! Small products stay on the calling thread: a thread round trip costs more than a 64x172
//! product (see PERFORMANCE-NOTES.md). The others split their panels over `SpinPool`'s spinning
//! workers (a decoding step's products are too short to wake rayon's), or over rayon when
//! another thread's product holds the pool.

use std::sync::Mutex;

use rayon::prelude::*;

use super::lanes::{self, Lanes, MAX_N};
use super::spin_pool::SpinPool;

/// Multiply-accumulates below which a product runs on the calling thread: measured, 1 << 16
/// made stories260K's 8- and 16-row verifies 10-20% slower and SmolLM2's decoding 3% slower.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Runs `block(p0, n, buf)` over tiles of `n` panels (`panel` weight rows each, the last one
/// padded), where `buf` is `[k][n * panel]` for weight rows `p0 * panel..`, and gathers the
/// tiles into `out` (`[k][rows]`), dropping the padding. Small products run as one tile on the
/// calling thread; larger ones split the panels over the threads, two tiles per thread so a
/// slow core does not hold the others up (more cost more than they balance: measured on
/// SmolLM2). Tiles never change an output's arithmetic.
pub(crate) fn by_panels(
    k: usize,
    rows: usize,
    cols: usize,
    panel: usize,
    out: &mut [f32],
    block: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    debug_assert_eq!(out.len(), k * rows);
    let n_panels = rows.div_ceil(panel);
    let threads = rayon::current_num_threads().max(1);
    if k * rows * cols < PARALLEL_MIN_MACS || threads == 1 {
        if n_panels * panel == rows {
            block(0, n_panels, out);
        } else {
            let mut buf = vec![0f32; k * n_panels * panel];
            block(0, n_panels, &mut buf);
            scatter(&buf, k, 0, n_panels * panel, rows, out);
        }
        return;
    }
    let tile = n_panels.div_ceil(threads * 2).max(16usize.div_ceil(panel));
    let tiles = n_panels.div_ceil(tile);
    let span = |t: usize| (t * tile, tile.min(n_panels - t * tile));
    let bufs: Vec<Mutex<Vec<f32>>> = (0..tiles)
        .map(|t| Mutex::new(vec![0f32; k * span(t).1 * panel]))
        .collect();
    let run = |t: usize| {
        let (p0, n) = span(t);
        // Each tile's buffer is its own: the lock is never contended.
        if let Ok(mut buf) = bufs[t].lock() {
            block(p0, n, &mut buf);
        }
    };
    let spun = SpinPool::global().is_some_and(|pool| pool.run(tiles, &run));
    if !spun {
        (0..tiles).into_par_iter().for_each(run);
    }
    for (t, buf) in bufs.into_iter().enumerate() {
        let buf = buf.into_inner().unwrap_or_else(|e| e.into_inner());
        let width = buf.len() / k;
        scatter(&buf, k, span(t).0 * panel, width, rows, out);
    }
}

/// Copies `buf` (`[k][width]`, outputs from `o0`) into `out` (`[k][rows]`), dropping padding.
fn scatter(buf: &[f32], k: usize, o0: usize, width: usize, rows: usize, out: &mut [f32]) {
    let n = width.min(rows.saturating_sub(o0));
    for r in 0..k {
        out[r * rows + o0..r * rows + o0 + n].copy_from_slice(&buf[r * width..r * width + n]);
    }
}

/// Visits panels `0..n` and input rows `0..k` in blocks of at most `max_rows` rows, calling
/// `visit(panels, r0, rows)`. With one row block each panel is visited once; with more, the
/// panels go in chunks of `chunk_panels` and each chunk meets every row block before the next is
/// read, so a chunk small enough for L2 comes from memory once whatever k is.
pub(crate) fn row_blocks(
    k: usize,
    n: usize,
    max_rows: usize,
    chunk_panels: usize,
    mut visit: impl FnMut(std::ops::Range<usize>, usize, usize),
) {
    let chunk = if k <= max_rows { n.max(1) } else { chunk_panels };
    let mut c0 = 0;
    while c0 < n {
        let c1 = (c0 + chunk).min(n);
        let mut r0 = 0;
        while r0 < k {
            let rows = (k - r0).min(max_rows);
            visit(c0..c1, r0, rows);
            r0 += rows;
        }
        c0 = c1;
    }
}

/// RMSNorm of each `weight.len()`-wide row of `x` into `out`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let ss = xr.iter().map(|v| v * v).sum::<f32>() / n as f32 + eps;
        let scale = 1.0 / ss.sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = w * (v * scale);
        }
    }
}

/// RMSNorm of each `weight.len()`-wide row of `x`, in place (QK-norm, post-norms): the same
/// arithmetic as `rms_norm`.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    for row in x.chunks_exact_mut(n) {
        let ss = row.iter().map(|v| v * v).sum::<f32>() / n as f32 + eps;
        let scale = 1.0 / ss.sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = w * (*v * scale);
        }
    }
}

/// `gate[i] = silu(gate[i]) * up[i]`, vectorized (`lanes::exp`); the same bits on every
/// backend.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gated_mul::<false>(gate, up);
}

/// `gate[i] = gelu_tanh(gate[i]) * up[i]` (GeGLU, PyTorch's `gelu(approximate="tanh")`),
/// vectorized; the same bits on every backend. 0.5 g (1 + tanh(u)) is g * sigmoid(2u), so it
/// shares SiLU's code with sigmoid's argument 2u, u = sqrt(2/pi) (g + 0.044715 g^3).
pub fn gelu_tanh_mul(gate: &mut [f32], up: &[f32]) {
    gated_mul::<true>(gate, up);
}

fn gated_mul<const GELU: bool>(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in length");
    #[cfg(target_arch = "x86_64")]
    if lanes::has_avx512f() {
        // SAFETY: the CPU has AVX-512F.
        unsafe { gated_mul_avx512::<GELU>(gate, up) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if lanes::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { gated_mul_avx2::<GELU>(gate, up) };
        return;
    }
    gated_mul_with::<lanes::Portable, GELU>(gate, up);
}

/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gated_mul_avx512<const GELU: bool>(gate: &mut [f32], up: &[f32]) {
    gated_mul_with::<lanes::Avx512, GELU>(gate, up);
}

/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gated_mul_avx2<const GELU: bool>(gate: &mut [f32], up: &[f32]) {
    gated_mul_with::<lanes::Avx2, GELU>(gate, up);
}

/// sqrt(2/pi), twice: GELU's sigmoid argument is 2u.
const GELU_2C: f32 = 2.0 * 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

#[inline(always)]
fn gated_mul_with<V: Lanes, const GELU: bool>(gate: &mut [f32], up: &[f32]) {
    let one = V::splat(1.0);
    let (c2, cubic) = (V::splat(GELU_2C), V::splat(GELU_CUBIC));
    let act = |g: V, u: V| {
        // The sigmoid's argument: g for SiLU, 2u for GELU.
        let z = if GELU {
            c2.mul(g.add(cubic.mul(g).mul(g).mul(g)))
        } else {
            g
        };
        g.div(one.add(lanes::exp(V::zero().sub(z)))).mul(u)
    };
    let mut g = gate.chunks_exact_mut(V::N);
    let mut u = up.chunks_exact(V::N);
    for (g, u) in g.by_ref().zip(u.by_ref()) {
        act(V::load(g), V::load(u)).store(g);
    }
    let (g, u) = (g.into_remainder(), u.remainder());
    if !g.is_empty() {
        let (mut gb, mut ub) = ([0f32; MAX_N], [0f32; MAX_N]);
        gb[..g.len()].copy_from_slice(g);
        ub[..u.len()].copy_from_slice(u);
        act(V::load(&gb), V::load(&ub)).store(&mut gb);
        g.copy_from_slice(&gb[..g.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_mul_is_close_to_the_formula_and_the_same_in_every_backend() {
        let gate: Vec<f32> = (-1000..=1000)
            .map(|i| i as f32 / 37.0)
            .chain([-200.0, 200.0])
            .collect();
        let up: Vec<f32> = (0..gate.len()).map(|i| 1.0 + (i % 7) as f32 / 10.0).collect();
        let mut fast = gate.clone();
        silu_mul(&mut fast, &up);
        let mut portable = gate.clone();
        gated_mul_with::<lanes::Portable, false>(&mut portable, &up);
        #[cfg(target_arch = "x86_64")]
        if lanes::has_avx2_fma() {
            // The dispatch above may have taken AVX-512: AVX2 must agree as well.
            let mut avx2 = gate.clone();
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { gated_mul_avx2::<false>(&mut avx2, &up) };
            assert!(avx2
                .iter()
                .zip(&portable)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        for i in 0..gate.len() {
            assert_eq!(fast[i].to_bits(), portable[i].to_bits(), "gate {}", gate[i]);
            let g = gate[i] as f64;
            let want = g / (1.0 + (-g).exp()) * up[i] as f64;
            assert!(
                (fast[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "gate {g}: {} vs {want}",
                fast[i]
            );
        }
    }

    #[test]
    fn gelu_tanh_mul_is_close_to_pytorchs_formula_and_the_same_in_every_backend() {
        let gate: Vec<f32> = (-1000..=1000)
            .map(|i| i as f32 / 37.0)
            .chain([-90.0, 90.0])
            .collect();
        let up: Vec<f32> = (0..gate.len()).map(|i| 0.5 + (i % 5) as f32 / 10.0).collect();
        let mut fast = gate.clone();
        gelu_tanh_mul(&mut fast, &up);
        let mut portable = gate.clone();
        gated_mul_with::<lanes::Portable, true>(&mut portable, &up);
        for i in 0..gate.len() {
            assert_eq!(fast[i].to_bits(), portable[i].to_bits(), "gate {}", gate[i]);
            let g = gate[i] as f64;
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
            let want = 0.5 * g * (1.0 + inner.tanh()) * up[i] as f64;
            assert!(
                (fast[i] as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "gate {g}: {} vs {want}",
                fast[i]
            );
        }
    }

    #[test]
    fn rms_norm_in_place_is_rms_norm() {
        let x: Vec<f32> = (0..48).map(|i| (i as f32 - 20.0) / 7.0).collect();
        let w: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 / 10.0).collect();
        let mut out = vec![0.0; 48];
        rms_norm(&x, &w, 1e-6, &mut out);
        let mut inplace = x.clone();
        rms_norm_in_place(&mut inplace, &w, 1e-6);
        assert_eq!(inplace, out);
    }

    #[test]
    fn rms_norm_scales_each_row() {
        let mut out = vec![0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }
}
