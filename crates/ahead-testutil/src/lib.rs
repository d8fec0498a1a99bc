//! Test helpers shared by every crate's tests: one `assert_close`, one way to find fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

/// Relative and absolute tolerances for comparing floats of a dtype.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    pub rtol: f32,
    pub atol: f32,
}

/// f32 paths that should agree up to summation order.
pub const F32: Tolerance = Tolerance {
    rtol: 1e-4,
    atol: 1e-5,
};
/// Quantized weights (activations are quantized to 8 bits on the fly).
pub const QUANTIZED: Tolerance = Tolerance {
    rtol: 1e-3,
    atol: 1e-3,
};

/// Panics with the first index where `|a - b| > atol + rtol * |b|`, naming `what`.
pub fn assert_close(a: &[f32], b: &[f32], tol: Tolerance, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= tol.atol + tol.rtol * y.abs();
        assert!(
            ok,
            "{what}: index {i}: {x} vs {y} (rtol {}, atol {})",
            tol.rtol, tol.atol
        );
    }
}

/// The repository's `tests/fixtures` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A file or folder under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

/// The index of the largest value (lowest index on ties).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}
