//! What a caller asks for: prompts, sampling, limits, method.

use ahead_core::spec::PromptLookup;
use ahead_core::SamplingParams;

/// A prompt as text (tokenized with the model's BOS rule) or as exact token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

/// Decoding methods. Every method gives vanilla's exact output at temperature 0 and vanilla's
/// distribution when sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Method {
    /// One token per forward: the reference.
    Vanilla,
    /// A smaller draft model with the target's vocabulary drafts a chain.
    Draft,
    /// Drafts copy what followed the last n-gram earlier in the prompt or output.
    PromptLookup,
    /// Let the engine choose per request: the draft model if one is loaded, else prompt
    /// lookup; the controller turns speculation off when it does not pay.
    #[default]
    Auto,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::Vanilla => "vanilla",
            Self::Draft => "draft",
            Self::PromptLookup => "prompt-lookup",
            Self::Auto => "auto",
        }
    }
}

/// Everything about one generation besides the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate (the prompt does not count). Also bounded by the context.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Seed of the sampling RNG; the same seed gives the same tokens.
    pub seed: u64,
    /// Generation stops when the text contains one of these; the text ends before it.
    pub stop: Vec<String>,
    /// Treat end-of-sequence like any other token and go on to `max_tokens`.
    pub ignore_eos: bool,
    pub method: Method,
    /// Draft exactly this many tokens every step; `None` lets the controller choose from the
    /// measured verify cost and live acceptance.
    pub num_draft: Option<usize>,
    /// n-gram sizes of prompt lookup.
    pub lookup: PromptLookup,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::greedy(),
            seed: 0,
            stop: Vec::new(),
            ignore_eos: false,
            method: Method::Auto,
            num_draft: None,
            lookup: PromptLookup::default(),
        }
    }
}
