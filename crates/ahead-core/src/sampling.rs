//! Sampling: the warpers turn logits into the distribution a token is drawn from.
//!
//! Order, as in Hugging Face transformers: repetition penalty on the logits, then temperature,
//! top-k, top-p (nucleus), min-p, then normalisation. [`warp`] returns the [`Distribution`]
//! itself, not only a token: speculative decoding needs the exact distributions of both the
//! target and the drafter, built by the same warpers.

use crate::error::CoreError;
use crate::rng::Rng;

/// How to pick the next token. `temperature == 0` means greedy (argmax).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 for greedy; otherwise logits are divided by it. Range [0, 100].
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose mass reaches p; 1 disables. Range (0, 1].
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top probability; 0 disables.
    pub min_p: f32,
    /// CTRL-style penalty on tokens already seen (prompt and output); 1 disables. Range (0, 10].
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
        }
    }

    /// Whether tokens are chosen by argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every parameter's range; the error names the parameter.
    pub fn validate(&self) -> Result<(), CoreError> {
        let check = |name: &'static str, v: f32, ok: bool, expected: &'static str| {
            if v.is_finite() && ok {
                Ok(())
            } else {
                Err(CoreError::InvalidParam {
                    name,
                    value: v.to_string(),
                    expected,
                })
            }
        };
        let t = self.temperature;
        check(
            "temperature",
            t,
            (0.0..=100.0).contains(&t),
            "0 <= temperature <= 100",
        )?;
        let p = self.top_p;
        check("top_p", p, p > 0.0 && p <= 1.0, "0 < top_p <= 1")?;
        let m = self.min_p;
        check("min_p", m, (0.0..=1.0).contains(&m), "0 <= min_p <= 1")?;
        let r = self.repetition_penalty;
        check(
            "repetition_penalty",
            r,
            r > 0.0 && r <= 10.0,
            "0 < repetition_penalty <= 10",
        )
    }
}

/// A probability distribution over the vocabulary (sums to 1, no NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    probs: Vec<f32>,
}

impl Distribution {
    /// Builds a distribution from non-negative weights, normalising them.
    pub fn from_weights(mut weights: Vec<f32>) -> Result<Self, CoreError> {
        let mut total = 0f64;
        for (index, &w) in weights.iter().enumerate() {
            if !w.is_finite() || w < 0.0 {
                return Err(CoreError::NonFinite {
                    what: "distribution weights",
                    index,
                });
            }
            total += w as f64;
        }
        if total <= 0.0 {
            return Err(CoreError::EmptyDistribution("all weights are zero"));
        }
        let inv = 1.0 / total;
        for w in &mut weights {
            *w = (*w as f64 * inv) as f32;
        }
        Ok(Self { probs: weights })
    }

    /// The distribution that puts all mass on one token.
    pub fn one_hot(token: u32, vocab: usize) -> Result<Self, CoreError> {
        let mut probs = vec![0.0; vocab];
        let slot = probs
            .get_mut(token as usize)
            .ok_or(CoreError::TokenOutOfRange { id: token, vocab })?;
        *slot = 1.0;
        Ok(Self { probs })
    }

    /// Probabilities, indexed by token id.
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }

    /// Probability of one token (0 outside the vocabulary).
    pub fn prob(&self, token: u32) -> f32 {
        self.probs.get(token as usize).copied().unwrap_or(0.0)
    }

    /// Draws a token by inverse transform sampling with one uniform from `rng`.
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.next_f64();
        let mut cdf = 0f64;
        let mut last_nonzero = 0;
        for (i, &p) in self.probs.iter().enumerate() {
            if p > 0.0 {
                cdf += p as f64;
                last_nonzero = i;
                if u < cdf {
                    return i as u32;
                }
            }
        }
        // Rounding left the cdf a hair below 1: the last token with mass takes the rest.
        last_nonzero as u32
    }
}

/// The most likely token; ties go to the lowest id (as llama2.c and llama.cpp do).
pub fn argmax(logits: &[f32]) -> Result<u32, CoreError> {
    // Two branch-free passes (they vectorize): the maximum and whether any value is NaN, then
    // the first index holding the maximum (ties go to the lowest id).
    let (max, nan) = logits.iter().fold((f32::NEG_INFINITY, false), |(m, nan), &x| {
        (if x > m { x } else { m }, nan | x.is_nan())
    });
    if nan {
        let index = logits.iter().position(|x| x.is_nan()).unwrap_or(0);
        return Err(CoreError::NonFinite {
            what: "logits",
            index,
        });
    }
    logits
        .iter()
        .position(|&x| x == max)
        .map(|i| i as u32)
        .ok_or(CoreError::EmptyDistribution("no logits"))
}

/// The `n` highest logits with their ids, highest first (lower id first among equals); NaNs
/// are skipped.
pub fn top_logits(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return top;
    }
    // Only blocks whose maximum beats the current n-th are scanned: after the first few
    // blocks, that is one vectorized maximum per block for almost all of the vocabulary.
    const BLOCK: usize = 32;
    let mut floor = f32::NEG_INFINITY;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        let max = block
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if max <= floor && top.len() == n {
            continue;
        }
        for (i, &l) in block.iter().enumerate() {
            if l.is_nan() || (top.len() == n && l <= floor) {
                continue;
            }
            let at = top.partition_point(|&(_, x)| x >= l);
            top.insert(at, ((b * BLOCK + i) as u32, l));
            top.truncate(n);
            if top.len() == n {
                floor = top[n - 1].1;
            }
        }
    }
    top
}

/// Applies the CTRL repetition penalty in place: seen tokens' positive logits are divided by
/// `penalty`, negative ones multiplied, once per distinct token.
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut done = vec![false; logits.len()];
    for &t in seen {
        let i = t as usize;
        if let (Some(x), Some(d)) = (logits.get_mut(i), done.get_mut(i)) {
            if !*d {
                *x = if *x > 0.0 { *x / penalty } else { *x * penalty };
                *d = true;
            }
        }
    }
}

/// Picks the next token: argmax under greedy params, else a draw from [`warp`]'s distribution.
/// `seen` is the context (prompt and output) for the repetition penalty.
pub fn choose(
    logits: &[f32],
    params: &SamplingParams,
    seen: &[u32],
    rng: &mut Rng,
) -> Result<u32, CoreError> {
    if params.is_greedy() {
        if params.repetition_penalty == 1.0 {
            return argmax(logits);
        }
        let mut l = logits.to_vec();
        apply_repetition_penalty(&mut l, seen, params.repetition_penalty);
        return argmax(&l);
    }
    Ok(warp(logits, params, seen)?.sample(rng))
}

/// The distribution a sampled token is drawn from, after every warper.
/// Requires `params.temperature > 0` (greedy has no distribution but a one-hot).
pub fn warp(logits: &[f32], params: &SamplingParams, seen: &[u32]) -> Result<Distribution, CoreError> {
    params.validate()?;
    if params.is_greedy() {
        let mut l = logits.to_vec();
        apply_repetition_penalty(&mut l, seen, params.repetition_penalty);
        return Distribution::one_hot(argmax(&l)?, logits.len());
    }
    if let Some(index) = logits.iter().position(|x| x.is_nan() || *x == f32::INFINITY) {
        return Err(CoreError::NonFinite {
            what: "logits",
            index,
        });
    }
    let mut l = logits.to_vec();
    apply_repetition_penalty(&mut l, seen, params.repetition_penalty);
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return Err(CoreError::EmptyDistribution("every logit is -inf"));
    }
    // Softmax in f64 after subtracting the max: no overflow even for tiny temperatures.
    let inv_t = 1.0 / params.temperature as f64;
    let mut probs: Vec<f64> = l.iter().map(|&x| ((x - max) as f64 * inv_t).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    truncate_tail(&mut probs, params);
    Distribution::from_weights(probs.into_iter().map(|p| p as f32).collect())
}

/// Zeroes the tokens top-k, top-p and min-p remove: each cuts the order by probability (ties
/// broken by token id, so the result is deterministic) after some number of tokens, and the
/// shortest cut wins.
fn truncate_tail(probs: &mut [f64], params: &SamplingParams) {
    let vocab = probs.len();
    let top_k = if params.top_k == 0 {
        vocab
    } else {
        params.top_k.min(vocab)
    };
    if top_k == vocab && params.top_p >= 1.0 && params.min_p <= 0.0 {
        return;
    }
    let kept = if top_k < vocab {
        let mut order: Vec<usize> = (0..vocab).collect();
        order.select_nth_unstable_by(top_k - 1, |a, b| by_probability(probs, *a, *b));
        order.truncate(top_k);
        cut_whole(order, probs, None, params)
    } else {
        head_of_order(probs, params)
    };
    let mut keep = vec![false; vocab];
    for i in kept {
        keep[i] = true;
    }
    for (p, k) in probs.iter_mut().zip(keep) {
        if !k {
            *p = 0.0;
        }
    }
}

/// More probable first; the lower id first among equals.
fn by_probability(probs: &[f64], a: usize, b: usize) -> std::cmp::Ordering {
    probs[b].total_cmp(&probs[a]).then(a.cmp(&b))
}

/// The tokens top-p and min-p keep of the whole vocabulary, in order. Sorting all of it costs
/// more than the forward that made the logits (a 49,152-token vocabulary: a third of
/// SmolLM2's decoding speed), and the cuts almost always fall among the few tokens within a
/// factor of the most probable one: only those are sorted, and the rest only when neither cut
/// falls among them.
fn head_of_order(probs: &[f64], params: &SamplingParams) -> Vec<usize> {
    let max = probs.iter().copied().fold(0.0, f64::max);
    let mass: f64 = probs.iter().sum();
    for share in HEAD_SHARES {
        let floor = max * share;
        let mut head: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] >= floor).collect();
        head.sort_unstable_by(|a, b| by_probability(probs, *a, *b));
        if let Some(keep) = cut(&head, probs, mass, params, Some(floor)) {
            head.truncate(keep);
            return head;
        }
    }
    cut_whole((0..probs.len()).collect(), probs, Some(mass), params)
}

/// Shares of the most probable token's probability that bound the heads sorted first.
const HEAD_SHARES: [f64; 2] = [1.0 / 1024.0, 1.0 / (1024.0 * 1024.0)];

/// The tokens of `order` (every token still in the running, in any order) that top-p and
/// min-p keep, in order; top-p's share is of `mass`, or else of `order`'s.
fn cut_whole(mut order: Vec<usize>, probs: &[f64], mass: Option<f64>, params: &SamplingParams) -> Vec<usize> {
    order.sort_unstable_by(|a, b| by_probability(probs, *a, *b));
    let mass = mass.unwrap_or_else(|| order.iter().map(|&i| probs[i]).sum());
    let keep = cut(&order, probs, mass, params, None).unwrap_or(order.len());
    order.truncate(keep);
    order
}

/// How many tokens of `head` (the start of the order by probability) top-p and min-p keep,
/// top-p's share being of `mass`. `outside_below`: `None` when `head` is the whole order,
/// else a probability every token left out of it is below; then `None` when neither cut can
/// be told to fall inside `head`.
fn cut(
    head: &[usize],
    probs: &[f64],
    mass: f64,
    params: &SamplingParams,
    outside_below: Option<f64>,
) -> Option<usize> {
    let mut keep = outside_below.is_none().then_some(head.len());
    let mut shorten = |n: usize| keep = Some(keep.map_or(n, |k| k.min(n)));
    if params.top_p < 1.0 {
        let target = params.top_p as f64 * mass;
        let mut cum = 0.0;
        if let Some(n) = head.iter().position(|&i| {
            cum += probs[i];
            cum >= target
        }) {
            shorten(n + 1);
        }
    }
    if params.min_p > 0.0 {
        let floor = params.min_p as f64 * head.first().map_or(0.0, |&i| probs[i]);
        // Every token at or above the floor is in `head` when the floor is above the rest.
        if outside_below.is_none_or(|below| floor >= below) {
            shorten(head.iter().take_while(|&&i| probs[i] >= floor).count().max(1));
        }
    }
    keep
}

mod adjust;
pub use adjust::{LogitAdjust, MAX_LOGIT_BIAS};

#[cfg(test)]
mod tests;
