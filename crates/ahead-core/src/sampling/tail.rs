//! Top-k, top-p and min-p: each cuts the order by probability (ties broken by token id, so the
//! result is deterministic) after some number of tokens, and the shortest cut wins. Sorting a
//! whole vocabulary costs more than the forward that made the logits (49,152 tokens: a third
//! of SmolLM2's decoding speed), and the cuts almost always fall among the few tokens within a
//! factor of the most probable one: only those are sorted, and more only when the cuts do not
//! fall among them.

use super::SamplingParams;

/// Zeroes the weights of the tokens the cuts remove and returns the sum of those left.
/// `weights` are non-negative, `total` their sum.
pub(super) fn truncate_tail(weights: &mut [f32], total: f64, params: &SamplingParams) -> f64 {
    let vocab = weights.len();
    let top_k = if params.top_k == 0 {
        vocab
    } else {
        params.top_k.min(vocab)
    };
    if top_k == vocab && params.top_p >= 1.0 && params.min_p <= 0.0 {
        return total;
    }
    if top_k < vocab && top_k <= SMALL_TOP_K {
        // The k most probable by one vectorized pass over blocks (no sort of the rest).
        let mut head: Vec<usize> = super::top_logits(weights, top_k)
            .iter()
            .map(|&(i, _)| i as usize)
            .collect();
        let mass: f64 = head.iter().map(|&i| weights[i] as f64).sum();
        let keep = cut(&head, weights, mass, params, None).unwrap_or(head.len());
        head.truncate(keep);
        return keep_only(weights, &head);
    }
    let max = weights.iter().copied().fold(0.0, f32::max);
    let kept = HEAD_SHARES
        .iter()
        .find_map(|share| kept_of(weights, total, top_k, params, Some(max * share)))
        .unwrap_or_else(|| kept_whole(weights, total, top_k, params));
    keep_only(weights, &kept)
}

/// A top-k at most this large is found by [`super::top_logits`], whose insertions grow with k.
const SMALL_TOP_K: usize = 256;

/// Zeroes every weight but those of `kept`, and returns their sum.
fn keep_only(weights: &mut [f32], kept: &[usize]) -> f64 {
    let mut keep = vec![false; weights.len()];
    let mut total = 0.0;
    for &i in kept {
        keep[i] = true;
        total += weights[i] as f64;
    }
    for (w, k) in weights.iter_mut().zip(keep) {
        if !k {
            *w = 0.0;
        }
    }
    total
}

/// Shares of the most probable token's weight that bound the heads sorted first.
const HEAD_SHARES: [f32; 2] = [1.0 / 1024.0, 1.0 / (1024.0 * 1024.0)];

/// More probable first; the lower id first among equals.
fn by_weight(weights: &[f32], a: usize, b: usize) -> std::cmp::Ordering {
    weights[b].total_cmp(&weights[a]).then(a.cmp(&b))
}

/// The tokens the cuts keep, in order, sorting only those weighing at least `floor`; `None`
/// when the cuts can not be told to fall among them.
fn kept_of(
    weights: &[f32],
    total: f64,
    top_k: usize,
    params: &SamplingParams,
    floor: Option<f32>,
) -> Option<Vec<usize>> {
    let mut head: Vec<usize> = match floor {
        Some(f) => (0..weights.len()).filter(|&i| weights[i] >= f).collect(),
        None => (0..weights.len()).collect(),
    };
    let whole = head.len() == weights.len();
    let order = |a: &usize, b: &usize| by_weight(weights, *a, *b);
    if top_k < weights.len() {
        // The top k are all in the head when it holds k tokens: every other weighs less.
        if head.len() < top_k && !whole {
            return None;
        }
        if head.len() > top_k {
            head.select_nth_unstable_by(top_k - 1, order);
            head.truncate(top_k);
        }
        head.sort_unstable_by(order);
        let mass: f64 = head.iter().map(|&i| weights[i] as f64).sum();
        let keep = cut(&head, weights, mass, params, None).unwrap_or(head.len());
        head.truncate(keep);
        return Some(head);
    }
    head.sort_unstable_by(order);
    let outside_below = if whole { None } else { floor };
    let keep = cut(&head, weights, total, params, outside_below)?;
    head.truncate(keep);
    Some(head)
}

/// [`kept_of`] over the whole vocabulary, which always tells.
fn kept_whole(weights: &[f32], total: f64, top_k: usize, params: &SamplingParams) -> Vec<usize> {
    kept_of(weights, total, top_k, params, None).unwrap_or_default()
}

/// How many tokens of `head` (the start of the order by weight) top-p and min-p keep, top-p's
/// share being of `mass`. `outside_below`: `None` when `head` is the whole order, else a
/// weight every token left out of it is below; then `None` when neither cut can be told to
/// fall inside `head`.
fn cut(
    head: &[usize],
    weights: &[f32],
    mass: f64,
    params: &SamplingParams,
    outside_below: Option<f32>,
) -> Option<usize> {
    let mut keep = outside_below.is_none().then_some(head.len());
    let mut shorten = |n: usize| keep = Some(keep.map_or(n, |k| k.min(n)));
    if params.top_p < 1.0 {
        let target = params.top_p as f64 * mass;
        let mut cum = 0.0;
        if let Some(n) = head.iter().position(|&i| {
            cum += weights[i] as f64;
            cum >= target
        }) {
            shorten(n + 1);
        }
    }
    if params.min_p > 0.0 {
        let floor = params.min_p * head.first().map_or(0.0, |&i| weights[i]);
        // Every token at or above the floor is in `head` when the floor is above the rest.
        if outside_below.is_none_or(|below| floor >= below) {
            shorten(head.iter().take_while(|&&i| weights[i] >= floor).count().max(1));
        }
    }
    keep
}
