//! CPU kernels for the forward pass: matrix-vector products that stream each weight row once
//! for all k input rows, RMSNorm, SiLU and softmax.
//!
//! Why our own f32 kernel: a verify forward multiplies k rows by the same weights. Memory
//! bandwidth, not arithmetic, bounds decoding, so the weight row is loaded once and dotted with
//! every input row while it sits in L1; the cost of k rows grows far slower than k. Each output
//! element is one `dot` call whose summation order does not depend on k, so row i of a k-row
//! forward is bit-identical to a 1-row forward (batch invariance by construction).
//! Small products stay on the calling thread: a thread-pool round trip costs more than a
//! 64x172 product (see PERFORMANCE-NOTES.md).

use rayon::prelude::*;

/// Multiply-accumulates below which a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Lanes of independent accumulators in `dot`; a multiple of the widest SIMD register.
const LANES: usize = 32;

/// `out[r * rows + o] = dot(x[r], w[o])` for `k` input rows of `cols` and `rows` weight rows.
pub fn matmul_f32(x: &[f32], k: usize, w: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    debug_assert_eq!(x.len(), k * cols);
    debug_assert_eq!(w.len(), rows * cols);
    let dot = dot_fn();
    matmul_by(k, rows, cols, out, |o, r| {
        dot(&x[r * cols..(r + 1) * cols], &w[o * cols..(o + 1) * cols])
    });
}

/// Fills `out` (`[k][rows]`) with `element(o, r)` for every weight row o and input row r,
/// weight-row-major so a weight row stays in L1 while it meets every input row. Small
/// products run on the calling thread; large ones split the weight rows over rayon.
pub fn matmul_by(
    k: usize,
    rows: usize,
    cols: usize,
    out: &mut [f32],
    element: impl Fn(usize, usize) -> f32 + Sync,
) {
    debug_assert_eq!(out.len(), k * rows);
    let block = |o0: usize, chunk: &mut [f32]| {
        // `chunk` holds outputs o0.. for every input row, laid out [k][chunk_rows].
        let n = chunk.len() / k;
        for o in 0..n {
            for r in 0..k {
                chunk[r * n + o] = element(o0 + o, r);
            }
        }
    };
    if k * rows * cols < PARALLEL_MIN_MACS {
        block(0, out);
        return;
    }
    // Parallel: each tile of weight rows computes all k rows into a scratch buffer, then
    // scatters into `out`'s row-major [k][rows] layout.
    let threads = rayon::current_num_threads().max(1);
    let tile = rows.div_ceil(threads * 4).max(16);
    let tiles: Vec<(usize, Vec<f32>)> = (0..rows.div_ceil(tile))
        .into_par_iter()
        .map(|t| {
            let o0 = t * tile;
            let n = tile.min(rows - o0);
            let mut buf = vec![0f32; n * k];
            block(o0, &mut buf);
            (o0, buf)
        })
        .collect();
    for (o0, buf) in tiles {
        let n = buf.len() / k;
        for r in 0..k {
            out[r * rows + o0..r * rows + o0 + n].copy_from_slice(&buf[r * n..(r + 1) * n]);
        }
    }
}

type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU supports, chosen once.
pub fn dot_fn() -> DotFn {
    static CHOSEN: std::sync::OnceLock<DotFn> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return dot_avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return dot_avx2;
            }
        }
        dot_portable
    })
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32], fused: bool) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let (xa, xb) = (&a[c * LANES..(c + 1) * LANES], &b[c * LANES..(c + 1) * LANES]);
        for j in 0..LANES {
            acc[j] = if fused {
                xa[j].mul_add(xb[j], acc[j])
            } else {
                xa[j] * xb[j] + acc[j]
            };
        }
    }
    let mut tail = 0f32;
    for i in chunks * LANES..a.len() {
        tail += a[i] * b[i];
    }
    // Pairwise reduction of the lanes: fixed order, so results never depend on the caller.
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b, false)
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn inner(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b, true)
    }
    // SAFETY: selected by `dot_fn` only after detecting avx2 and fma on this CPU.
    unsafe { inner(a, b) }
}

#[cfg(target_arch = "x86_64")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn inner(a: &[f32], b: &[f32]) -> f32 {
        dot_body(a, b, true)
    }
    // SAFETY: selected by `dot_fn` only after detecting avx512f and fma on this CPU.
    unsafe { inner(a, b) }
}

/// Dot product of short vectors (attention heads), inlined: a call through `dot_fn` costs more
/// than the work for head sizes of 8 to 128.
#[inline(always)]
pub fn dot_short(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
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

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// In-place softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], k: usize, w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0.0; k * rows];
        for r in 0..k {
            for o in 0..rows {
                out[r * rows + o] = (0..cols)
                    .map(|i| x[r * cols + i] as f64 * w[o * cols + i] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matmul_matches_naive_and_rows_are_batch_invariant() {
        for (k, rows, cols) in [(1, 7, 3), (3, 64, 172), (5, 513, 64), (8, 600, 600)] {
            let x = data(k * cols, 1);
            let w = data(rows * cols, 2);
            let mut out = vec![0.0; k * rows];
            matmul_f32(&x, k, &w, rows, cols, &mut out);
            for (a, b) in out.iter().zip(naive(&x, k, &w, rows, cols)) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
            for r in 0..k {
                let mut one = vec![0.0; rows];
                matmul_f32(&x[r * cols..(r + 1) * cols], 1, &w, rows, cols, &mut one);
                assert_eq!(
                    &out[r * rows..(r + 1) * rows],
                    &one[..],
                    "row {r} differs bitwise"
                );
            }
        }
    }

    #[test]
    fn softmax_and_rms_norm() {
        let mut x = vec![1.0, 2.0, 3.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut out = vec![0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] - 8.0 / r).abs() < 1e-6);
    }
}
