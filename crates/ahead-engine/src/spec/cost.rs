//! Measures what the controller needs: the cost of an r-row target forward relative to one row,
//! on this machine, now.

use std::time::Instant;

use ahead_model::{ForwardInput, Model};

use crate::error::Result;

/// Context length the measurement runs at (attention cost included, as in real steps).
const CONTEXT: usize = 32;
/// Repetitions per width; the minimum is kept (the machine is shared and noisy).
const REPEATS: usize = 5;

/// Seconds of one forward of `rows` rows after a `CONTEXT`-token prefix, best of `REPEATS`.
fn forward_seconds(model: &Model, rows: usize) -> Result<f64> {
    let context = CONTEXT.min(model.config().max_seq_len.saturating_sub(rows + 1));
    let mut cache = model.new_cache(context + rows)?;
    let prefix: Vec<u32> = (0..context as u32)
        .map(|i| i % model.config().vocab_size as u32)
        .collect();
    if !prefix.is_empty() {
        let pos: Vec<usize> = (0..context).collect();
        model.forward(&ForwardInput::causal(&prefix, &pos), &mut cache)?;
    }
    let tokens = vec![1u32; rows];
    let pos: Vec<usize> = (context..context + rows).collect();
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        model.forward(&ForwardInput::causal(&tokens, &pos), &mut cache)?;
        best = best.min(start.elapsed().as_secs_f64());
        cache.truncate(context)?;
    }
    Ok(best)
}

/// `T(r) / T(1)` for r = 1..=max_rows (index 0 is 0).
pub fn verify_cost_curve(model: &Model, max_rows: usize) -> Result<Vec<f64>> {
    let one = forward_seconds(model, 1)?.max(1e-9);
    let mut curve = vec![0.0, 1.0];
    for r in 2..=max_rows {
        curve.push(forward_seconds(model, r)? / one);
    }
    Ok(curve)
}

/// Seconds of a 1-row forward of `model` (to compare a draft with its target).
pub fn step_seconds(model: &Model) -> Result<f64> {
    forward_seconds(model, 1)
}
