//! The log-probabilities a request asked for (`GenerateParams::logprobs`): for every generated
//! token, the target's own log-probability of it and of its most likely alternatives, read from
//! the verify row the token was accepted or drawn at. That row's logits are the ones plain
//! decoding computes at that position, so every method reports plain decoding's numbers.

use ahead_core::sampling::apply_repetition_penalty;
use ahead_core::sampling::top_logits;
use ahead_core::SamplingParams;
use serde::Serialize;

use crate::error::{EngineError, Result};

/// Most alternatives a request may ask for per token (OpenAI's chat limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One generated token's log-probability and the `top` most likely tokens' at its position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    /// Most likely first (lower id first among equals).
    pub top: Vec<(u32, f32)>,
}

/// The log-softmax over the whole vocabulary of `logits` after the repetition penalty (over
/// `seen`) and the temperature (0, greedy, reports temperature 1), before the truncating
/// warpers (top-k, top-p, min-p): what the model gives each token, as OpenAI reports it.
pub(crate) fn token_logprobs(
    logits: &[f32],
    sampling: &SamplingParams,
    seen: &[u32],
    token: u32,
    top: usize,
) -> Result<TokenLogprobs> {
    let mut scaled = logits.to_vec();
    apply_repetition_penalty(&mut scaled, seen, sampling.repetition_penalty);
    if sampling.temperature > 0.0 {
        let inv = 1.0 / sampling.temperature;
        scaled.iter_mut().for_each(|l| *l *= inv);
    }
    let max = scaled
        .iter()
        .fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    if !max.is_finite() {
        return Err(EngineError::Internal("logits with no finite maximum".into()));
    }
    let sum: f64 = scaled.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    let at = |t: u32| scaled.get(t as usize).map(|&l| l - lse);
    let logprob =
        at(token).ok_or_else(|| EngineError::Internal(format!("token {token} outside the logits")))?;
    let top = top_logits(&scaled, top.min(MAX_TOP_LOGPROBS))
        .into_iter()
        .map(|(t, l)| (t, l - lse))
        .collect();
    Ok(TokenLogprobs { token, logprob, top })
}
