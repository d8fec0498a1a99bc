//! What a generation returns.

use serde::Serialize;

use crate::logprobs::TokenLogprobs;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The caller cancelled (a client that went away).
    Cancelled,
}

/// Counters of one generation. `target_forwards` counts the forwards after the prefill (which
/// feeds every prompt token but the last); each yields the accepted drafts plus one token, so
/// `mean_accepted_length` (generated tokens per target forward) is 1 for plain decoding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub method: String,
    pub target_forwards: usize,
    pub generated_tokens: usize,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    pub mean_accepted_length: f64,
    /// Generated tokens per second of decoding (prefill and loading excluded).
    pub tokens_per_second: f64,
    /// Prefill plus decoding, in milliseconds.
    pub elapsed_ms: f64,
    /// Prefill alone (not in the CLI's JSON, whose fields are a fixed contract).
    #[serde(skip)]
    pub prefill_ms: f64,
    /// Of the decoding time: drafting (proposers) and target verify forwards; the rest is
    /// acceptance, commits and bookkeeping. For `ahead bench`; not in the CLI's JSON.
    #[serde(skip)]
    pub draft_ms: f64,
    #[serde(skip)]
    pub verify_ms: f64,
    /// Prompt tokens whose KV rows were reused from an earlier request (prefix cache; the
    /// server reports it as `prompt_tokens_details.cached_tokens`, not the CLI's JSON).
    #[serde(skip)]
    pub cached_prompt_tokens: usize,
    /// Lookahead only: steps whose candidates from the n-gram pool were (partly) accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_hits: Option<usize>,
    /// Per draft position (index 0: the first token after the pending one): steps that drafted
    /// that far, and steps whose accepted path reached it. For metrics; not in the CLI's JSON.
    #[serde(skip)]
    pub acceptance_by_position: Vec<(usize, usize)>,
    /// `auto`: steps that verified prompt lookup's free offer instead of the model's draft. For
    /// tests and metrics; not in the CLI's JSON.
    #[serde(skip)]
    pub free_offer_steps: usize,
}

/// One finished generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    /// Generated token ids only (an EOS that ended generation included).
    pub token_ids: Vec<u32>,
    pub prompt_token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub stats: Stats,
    /// With `GenerateParams::logprobs`: one entry per generated token, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprobs>,
}
