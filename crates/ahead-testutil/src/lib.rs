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

/// Paths of the fixture files the test suites share, as `&str` for command lines.
pub mod paths {
    pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    pub const STORIES_BIN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stories260K/stories260K.bin"
    );
    pub const STORIES_TOK: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stories260K/tok512.bin"
    );
    pub const STORIES_GGUF: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/stories260K/stories260K.gguf"
    );
    pub const STORIES_HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/stories260K-hf");
    pub const BABY_BIN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/babyllama-tok105/model5000.bin"
    );
    pub const BABY_TOK: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/babyllama-tok105/tok105.bin"
    );
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

/// Pearson's chi-square of observed `counts` against probabilities `probs`: returns the
/// statistic and its degrees of freedom. Cells expected fewer than 5 times are pooled into one,
/// and a count on a zero-probability cell panics (a token outside the support).
pub fn chi_square(counts: &[u64], probs: &[f64]) -> (f64, usize) {
    assert_eq!(counts.len(), probs.len(), "chi_square: lengths differ");
    let n: u64 = counts.iter().sum();
    let (mut stat, mut cells, mut pool_o, mut pool_e) = (0.0, 0usize, 0.0, 0.0);
    for (i, (&c, &p)) in counts.iter().zip(probs).enumerate() {
        let e = n as f64 * p;
        if p <= 0.0 {
            assert_eq!(c, 0, "outcome {i} has probability 0 but was observed {c} times");
        } else if e < 5.0 {
            pool_o += c as f64;
            pool_e += e;
        } else {
            stat += (c as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pool_e > 0.0 {
        stat += (pool_o - pool_e).powi(2) / pool_e;
        cells += 1;
    }
    (stat, cells.saturating_sub(1))
}

/// The chi-square critical value for `dof` degrees of freedom at alpha = 1e-4 (Wilson-Hilferty
/// approximation, within 2% of the exact quantile for dof >= 3). Tests use fixed seeds, so a
/// pass or a fail is deterministic.
pub fn chi_square_critical(dof: usize) -> f64 {
    let k = dof.max(1) as f64;
    let z = 3.719; // standard normal quantile of 1 - 1e-4
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// A real model file fetched by `scripts/fetch-models.sh` (into `models/cache/`, or the
/// folder `AHEAD_MODELS` names). `None` when it is not there, after one line on stderr saying
/// the test is skipped; with `AHEAD_REQUIRE_MODELS=1` (what CI sets) its absence fails the test.
pub fn real_model(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("AHEAD_MODELS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/cache")),
    };
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("AHEAD_REQUIRE_MODELS").as_deref() != Ok("1"),
        "{} is missing and AHEAD_REQUIRE_MODELS=1: run scripts/fetch-models.sh",
        path.display()
    );
    eprintln!(
        "skipped: {} is missing (scripts/fetch-models.sh fetches it)",
        path.display()
    );
    None
}

/// Where two greedy decodings part: `None` if `got` equals `want`, else the first differing
/// step. A difference is excused (returns `None`) when the reference's top-2 margin at that step
/// or before is under `near_tie` (a near-tie: a tiny numerical difference may flip it).
pub fn greedy_divergence(got: &[u32], want: &[u32], margins: &[f32], near_tie: f32) -> Option<usize> {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    match first {
        Some(i)
            if margins[..=i.min(margins.len().saturating_sub(1))]
                .iter()
                .any(|&m| m < near_tie) =>
        {
            None
        }
        Some(i) => Some(i),
        None if got.len() != want.len() => Some(got.len().min(want.len())),
        None => None,
    }
}
