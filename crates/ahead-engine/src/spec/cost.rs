//! Measures what the controller needs: the cost of an r-row target forward relative to one row,
//! on this machine, now.

use std::time::Instant;

use ahead_model::{ForwardInput, Model};

use crate::error::Result;

/// Context length the measurement runs at (attention cost included, as in real steps).
const CONTEXT: usize = 32;
/// Repetitions per width; the minimum is kept (the machine is shared and noisy).
const REPEATS: usize = 3;
/// Widths measured; the others are interpolated (a forward of a large model takes long).
const MEASURED: [usize; 5] = [1, 2, 3, 5, 9];

/// Seconds of one forward of each of `widths` rows after a `CONTEXT`-token prefix, best of
/// `REPEATS`. The widths take turns, round after round, so that a burst of load elsewhere on
/// the machine slows one round of every width rather than every repeat of one width (whose
/// ratio to the others it would then distort, for as long as the engine lives).
fn forward_seconds(model: &Model, widths: &[usize]) -> Result<Vec<f64>> {
    let mut runs = Vec::with_capacity(widths.len());
    for &rows in widths {
        let context = CONTEXT.min(model.config().max_seq_len.saturating_sub(rows + 1));
        let mut cache = model.new_cache(context + rows)?;
        let prefix: Vec<u32> = (0..context as u32)
            .map(|i| i % model.config().vocab_size as u32)
            .collect();
        if !prefix.is_empty() {
            let pos: Vec<usize> = (0..context).collect();
            model.forward(&ForwardInput::causal(&prefix, &pos), &mut cache)?;
        }
        let pos: Vec<usize> = (context..context + rows).collect();
        runs.push((cache, context, vec![1u32; rows], pos));
    }
    let mut best = vec![f64::INFINITY; widths.len()];
    for _ in 0..REPEATS {
        for ((cache, context, tokens, pos), best) in runs.iter_mut().zip(&mut best) {
            let start = Instant::now();
            model.forward(&ForwardInput::causal(tokens, pos), cache)?;
            *best = best.min(start.elapsed().as_secs_f64());
            cache.truncate(*context)?;
        }
    }
    Ok(best)
}

/// `T(r) / T(1)` for r = 1..=max_rows (index 0 is 0): widths in `MEASURED` (and `max_rows`)
/// are timed, the rest interpolated linearly between them.
pub fn verify_cost_curve(model: &Model, max_rows: usize) -> Result<Vec<f64>> {
    // 1 first (the unit), then the measured widths up to `max_rows`, and `max_rows` itself.
    let widths: Vec<usize> = std::iter::once(1)
        .chain(MEASURED.into_iter().filter(|&r| r > 1 && r < max_rows))
        .chain((max_rows > 1).then_some(max_rows))
        .collect();
    let seconds = forward_seconds(model, &widths)?;
    let one = seconds.first().copied().unwrap_or(1.0).max(1e-9);
    let points: Vec<(usize, f64)> = widths.iter().zip(&seconds).map(|(&r, s)| (r, s / one)).collect();
    let mut curve = vec![0.0; max_rows.max(1) + 1];
    for w in points.windows(2) {
        let ((r0, c0), (r1, c1)) = (w[0], w[1]);
        for (r, slot) in curve.iter_mut().enumerate().take(r1 + 1).skip(r0) {
            *slot = c0 + (c1 - c0) * (r - r0) as f64 / (r1 - r0) as f64;
        }
    }
    curve[1] = 1.0;
    Ok(curve)
}

/// Seconds of a 1-row forward of `model` (to compare a draft with its target).
pub fn step_seconds(model: &Model) -> Result<f64> {
    Ok(forward_seconds(model, &[1])?
        .first()
        .copied()
        .unwrap_or(f64::INFINITY))
}

/// Seconds of one pass of every Medusa head over a hidden state, best of `REPEATS`.
pub fn medusa_seconds(heads: &ahead_model::medusa::MedusaHeads) -> Result<f64> {
    let hidden = vec![0.1f32; heads.dim()];
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        heads.forward(&hidden)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Seconds of one EAGLE chain step (one head row after a `CONTEXT`-row prefix), best of
/// `REPEATS`.
pub fn eagle_seconds(head: &ahead_model::eagle::EagleHead) -> Result<f64> {
    let d = head.config().dim;
    let mut cache = head.new_cache(CONTEXT + 1)?;
    let pos: Vec<usize> = (0..CONTEXT).collect();
    head.forward(&vec![0.1; CONTEXT * d], &[1; CONTEXT], &pos, &mut cache)?;
    let feature = vec![0.1; d];
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        head.forward(&feature, &[1], &[CONTEXT], &mut cache)?;
        best = best.min(start.elapsed().as_secs_f64());
        cache.truncate(CONTEXT)?;
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahead_model::transformer::synthetic::{random_model, tiny_config};
    use ahead_model::transformer::Architecture;
    use ahead_model::TensorDType;

    #[test]
    fn the_curve_starts_at_one_and_covers_every_width() {
        let cfg = tiny_config(Architecture::Llama, 100);
        let model = random_model(&cfg, TensorDType::F32, 1).unwrap();
        let curve = verify_cost_curve(&model, 9).unwrap();
        assert_eq!(curve.len(), 10);
        assert_eq!(curve[1], 1.0);
        assert!(curve[2..].iter().all(|c| c.is_finite() && *c > 0.0), "{curve:?}");
    }
}
