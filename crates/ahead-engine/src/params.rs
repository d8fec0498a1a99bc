//! What a caller asks for: prompts, sampling, limits, method.

use ahead_core::sampling::LogitAdjust;
use ahead_core::spec::{MedusaTree, PromptLookup};
use ahead_core::SamplingParams;

use crate::grammar::Grammar;

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
    /// Medusa heads on the target's hidden state draft a tree of candidates.
    Medusa,
    /// An EAGLE head drafts a chain in the target's feature space (`EngineBuilder::eagle`).
    Eagle,
    /// Token recycling: trees from the target's own rankings after each token the last time
    /// it read it, merged with context matches. No draft model, no training.
    Recycling,
    /// Suffix decoding: trees from a suffix tree of the request's own text and of earlier
    /// requests' outputs. No draft model, no training.
    Suffix,
    /// The EAGLE head's chain, filled out with token recycling's tree in the same forward
    /// (greedy; under sampling the head drafts alone).
    Hybrid,
    /// Lookahead decoding: Jacobi iteration over a window fills an n-gram pool whose n-grams
    /// are verified in the same forward. No draft model, no training.
    Lookahead,
    /// Let the engine choose per request: the draft model if one is loaded, else prompt
    /// lookup; the controller turns speculation off when it does not pay.
    #[default]
    Auto,
}

impl Method {
    /// Every method, in the order users see them listed.
    pub const ALL: [Method; 10] = [
        Self::Vanilla,
        Self::Draft,
        Self::PromptLookup,
        Self::Medusa,
        Self::Eagle,
        Self::Recycling,
        Self::Suffix,
        Self::Hybrid,
        Self::Lookahead,
        Self::Auto,
    ];

    /// The method a name (as `name` gives it) stands for: the one parser every command line,
    /// config file and request uses.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Every name, for messages: "vanilla, draft, ... or auto".
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
        let (last, rest) = names.split_last().unwrap_or((&"", &[]));
        format!("{} or {last}", rest.join(", "))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Vanilla => "vanilla",
            Self::Draft => "draft",
            Self::PromptLookup => "prompt-lookup",
            Self::Medusa => "medusa",
            Self::Recycling => "recycling",
            Self::Suffix => "suffix",
            Self::Hybrid => "hybrid",
            Self::Lookahead => "lookahead",
            Self::Eagle => "eagle",
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
    /// Medusa's candidate tree; `None`: the heads' own (from their measured accuracy), else
    /// a small default.
    pub medusa_tree: Option<MedusaTree>,
    /// How Medusa candidates are verified when sampling.
    pub medusa_acceptance: MedusaAcceptance,
    /// Lookahead's window W, n-gram size N and most verified candidates G; `None`: chosen
    /// from this machine's measured verify cost.
    pub lookahead_window: Option<usize>,
    pub lookahead_ngram: Option<usize>,
    pub lookahead_guesses: Option<usize>,
    /// Under sampling, keep the draft schedule independent of timing and load, so that a seed
    /// gives the same text on every run and in any batch (greedy output never depends on the
    /// schedule). Off, live timings and load steer k under sampling too, as they do at greedy;
    /// servers turn it off for requests that give no seed.
    pub reproducible: bool,
    /// Requests of one scope share what drafters learn from each other's verified tokens
    /// (token recycling's table, suffix decoding's store); no other scope drafts from it.
    /// `None`: the engine's default scope. Output never depends on it (drafts are verified).
    pub scope: Option<String>,
    /// Report every generated token's log-probability and its `n` most likely alternatives
    /// (at most `logprobs::MAX_TOP_LOGPROBS`) in `Generation::logprobs`; `None`: not computed.
    pub logprobs: Option<usize>,
    /// OpenAI's presence and frequency penalties, logit bias and minimum length, applied to the
    /// target's logits at every position before the warpers (drafts are verified against
    /// them, so every method stays exact).
    pub adjust: LogitAdjust,
    /// Output must match this grammar (structured output); `None`: free text.
    pub grammar: Option<Grammar>,
}

impl GenerateParams {
    /// Reproducible sampling: its tokens depend on where drafts were accepted, so nothing
    /// other requests did may steer its drafts.
    pub fn seeded_sampling(&self) -> bool {
        self.reproducible && !self.sampling.is_greedy()
    }
}

/// Verification of Medusa candidates under sampling (greedy is always exact).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MedusaAcceptance {
    /// Rejection sampling over the tree: the target's distribution exactly.
    #[default]
    Exact,
    /// Medusa's typical acceptance. LOSSY: accepts a candidate whose probability exceeds
    /// min(posterior_threshold, posterior_alpha * exp(-entropy)); output no longer follows
    /// the target's distribution exactly.
    Typical {
        posterior_threshold: f64,
        posterior_alpha: f64,
    },
}

impl MedusaAcceptance {
    /// Typical acceptance with the Medusa paper's defaults (0.09, 0.3).
    pub fn typical() -> Self {
        Self::Typical {
            posterior_threshold: 0.09,
            posterior_alpha: 0.3,
        }
    }
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
            medusa_tree: None,
            medusa_acceptance: MedusaAcceptance::Exact,
            lookahead_window: None,
            lookahead_ngram: None,
            lookahead_guesses: None,
            reproducible: true,
            scope: None,
            logprobs: None,
            adjust: LogitAdjust::default(),
            grammar: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_found_by_its_name_and_listed() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
            assert!(Method::names().contains(m.name()));
        }
        assert_eq!(Method::from_name("Medusa"), None);
        assert!(Method::names().ends_with(" or auto"), "{}", Method::names());
    }
}
