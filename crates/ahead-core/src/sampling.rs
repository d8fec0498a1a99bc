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
#[derive(Debug, Clone)]
pub struct Distribution {
    probs: Vec<f32>,
    /// The token, when made by [`Distribution::one_hot`]: verification against greedy rows
    /// then needs no pass over the vocabulary.
    one_hot: Option<u32>,
}

impl PartialEq for Distribution {
    fn eq(&self, other: &Self) -> bool {
        self.probs == other.probs
    }
}

impl Distribution {
    /// Builds a distribution from non-negative weights, normalising them.
    pub fn from_weights(weights: Vec<f32>) -> Result<Self, CoreError> {
        // A NaN or an infinity makes the sum so (and `min` passes over NaN); the offender is
        // looked for only if there is one.
        let total = softmax::sum(&weights);
        if !total.is_finite() || softmax::min(&weights) < 0.0 {
            let index = weights
                .iter()
                .position(|&w| !(w >= 0.0 && w.is_finite()))
                .unwrap_or(0);
            return Err(CoreError::NonFinite {
                what: "distribution weights",
                index,
            });
        }
        if total <= 0.0 {
            return Err(CoreError::EmptyDistribution("all weights are zero"));
        }
        Ok(Self::normalized(weights, total))
    }

    /// `weights` (finite, non-negative, summing to `total` > 0) divided by their sum.
    fn normalized(mut weights: Vec<f32>, total: f64) -> Self {
        let inv = 1.0 / total;
        for w in &mut weights {
            *w = (*w as f64 * inv) as f32;
        }
        Self {
            probs: weights,
            one_hot: None,
        }
    }

    /// The distribution that puts all mass on one token.
    pub fn one_hot(token: u32, vocab: usize) -> Result<Self, CoreError> {
        let mut probs = vec![0.0; vocab];
        let slot = probs
            .get_mut(token as usize)
            .ok_or(CoreError::TokenOutOfRange { id: token, vocab })?;
        *slot = 1.0;
        Ok(Self {
            probs,
            one_hot: Some(token),
        })
    }

    /// The token, if this was made by [`Distribution::one_hot`].
    pub fn one_hot_token(&self) -> Option<u32> {
        self.one_hot
    }

    /// Probabilities, indexed by token id.
    pub fn probs(&self) -> &[f32] {
        &self.probs
    }

    /// Probability of one token (0 outside the vocabulary).
    pub fn prob(&self, token: u32) -> f32 {
        self.probs.get(token as usize).copied().unwrap_or(0.0)
    }

    /// Draws a token by inverse transform sampling with one uniform from `rng`: the block
    /// where the cumulative sum passes it is found from the blocks' sums (which vectorize),
    /// then the token within it.
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        const BLOCK: usize = 512;
        let u = rng.next_f64();
        let mut cdf = 0f64;
        let mut last_nonzero = None;
        for (b, block) in self.probs.chunks(BLOCK).enumerate() {
            let mass = softmax::sum(block);
            if mass > 0.0 {
                last_nonzero = Some(b);
            }
            if u < cdf + mass {
                for (i, &p) in block.iter().enumerate() {
                    cdf += p as f64;
                    if p > 0.0 && u < cdf {
                        return (b * BLOCK + i) as u32;
                    }
                }
            } else {
                cdf += mass;
            }
        }
        // Rounding left the cdf a hair below 1: the last token with mass takes the rest.
        last_nonzero.map_or(0, |b| {
            let block = &self.probs[b * BLOCK..((b + 1) * BLOCK).min(self.probs.len())];
            (b * BLOCK + block.iter().rposition(|&p| p > 0.0).unwrap_or(0)) as u32
        })
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
    let penalized;
    let logits = if params.repetition_penalty == 1.0 {
        logits
    } else {
        penalized = {
            let mut l = logits.to_vec();
            apply_repetition_penalty(&mut l, seen, params.repetition_penalty);
            l
        };
        &penalized
    };
    if params.is_greedy() {
        return Distribution::one_hot(argmax(logits)?, logits.len());
    }
    let (max, invalid) = softmax::max_and_invalid(logits);
    if invalid {
        let index = logits
            .iter()
            .position(|x| x.is_nan() || *x == f32::INFINITY)
            .unwrap_or(0);
        return Err(CoreError::NonFinite {
            what: "logits",
            index,
        });
    }
    if max == f32::NEG_INFINITY {
        return Err(CoreError::EmptyDistribution("every logit is -inf"));
    }
    let mut weights = Vec::with_capacity(logits.len());
    softmax::scaled_exp(logits, max, params.temperature, &mut weights);
    let total = softmax::sum(&weights);
    let kept = tail::truncate_tail(&mut weights, total, params);
    // The weights are finite and non-negative by construction, the top token's is 1 and every
    // cut keeps it, and their sum is known: no second pass to check and sum them.
    Ok(Distribution::normalized(weights, kept))
}

mod adjust;
mod softmax;
pub(crate) use softmax::sum;
mod tail;
pub use adjust::{LogitAdjust, MAX_LOGIT_BIAS};

#[cfg(test)]
mod tests;
