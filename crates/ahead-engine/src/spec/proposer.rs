//! The `Proposer` trait: drafts a token tree continuing the committed tokens.

use std::sync::Arc;

use ahead_core::spec::{DraftDist, IndexedLookup, NgramCache, PromptLookup, TokenTree};
use ahead_core::{Rng, SamplingParams};

use crate::error::Result;

/// Drafts tokens for one sequence. Owns its state (a draft KV cache, an n-gram index); the
/// target verifies what it returns with exact acceptance.
pub trait Proposer {
    /// The method's name in stats.
    fn name(&self) -> &'static str;

    /// Processes the prompt before decoding starts (a draft model's KV cache), so that the
    /// prompt's cost counts as prefill, as the target's does. By default nothing.
    fn prefill(&mut self, _prompt: &[u32]) -> Result<()> {
        Ok(())
    }

    /// What it reads from the target's forwards (see [`Outcome`]). By default nothing.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// What a forward told it: after every prompt chunk and every verify step.
    fn observe(&mut self, _outcome: &Outcome<'_>) -> Result<()> {
        Ok(())
    }

    /// When the request ends (finished or cancelled), with the tokens it generated: where
    /// state shared across requests learns. By default nothing.
    fn finish(&mut self, _output: &[u32]) {}

    /// The most side rows a step may add (the cache must have room for them).
    fn max_side_rows(&self) -> usize {
        0
    }

    /// Whether it ends each draft where its own confidence runs out (so a short draft means
    /// "unsure", and the controller can offer its best k at once, without a slow start).
    fn stops_own_drafts(&self) -> bool {
        false
    }

    /// Whether its drafts are as long as the match they copy and cost nothing to propose (prompt
    /// lookup with a cache, suffix decoding): then it is asked every step for all it offers,
    /// and how much of an offer to verify is judged by the offer's length, which says how
    /// sure it is (`Controller::keep_offer`). Implies `stops_own_drafts`.
    fn offers_as_long_as_its_match(&self) -> bool {
        false
    }

    /// A draft from a second source that costs nothing to make (`auto`'s prompt lookup beside
    /// a model drafter), up to `most` nodes, asked before the proposer's own: the controller
    /// verifies it instead when it promises more (`Controller::take_free_offer`), and the
    /// proposer then drafts nothing this step. By default none.
    fn free_offer(
        &mut self,
        _history: &[u32],
        _most: usize,
        _sampling: &SamplingParams,
        _rng: &mut Rng,
    ) -> Result<Option<TokenTree>> {
        Ok(None)
    }

    /// Steps whose drafts came from a pool and were (partly) accepted, for stats.
    fn pool_hits(&self) -> Option<usize> {
        None
    }

    /// Up to `k` draft tokens continuing `history` (prompt and committed tokens; the last one
    /// is not yet in the target's cache). Each node carries the distribution it was drawn from
    /// after the request's warpers, or one-hot for deterministic drafts. Asked only on steps
    /// that draft.
    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Proposal>;
}

/// What a proposer reads from the target's forwards besides the committed tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The target's hidden state at every committed row (feature drafters).
    pub hidden: Features,
    /// The target's logits at every verified row, accepted or not (token recycling).
    pub row_logits: bool,
}

/// Which hidden state of the target a feature drafter reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Features {
    #[default]
    None,
    /// The final (normed) hidden state: Medusa, EAGLE-1.
    Final,
    /// The outputs of these layers (ascending), concatenated: EAGLE-3's low, middle and high
    /// features (`ForwardInput::taps`).
    Layers(Vec<usize>),
}

impl Features {
    pub fn any(&self) -> bool {
        *self != Self::None
    }

    /// The layers to tap in a forward that wants these features (none for the final state).
    pub fn taps(&self) -> &[usize] {
        match self {
            Self::Layers(l) => l,
            _ => &[],
        }
    }
}

/// What one forward of the target told a proposer.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// How many of the step's tree nodes the target accepted; `None` after a prompt chunk.
    pub accepted: Option<usize>,
    /// With [`Needs::hidden`]: hidden states at consecutive positions now committed,
    /// the last one at the last accepted position (whose next token is the pending token):
    /// every prompt row after the prefill (a chunk at a time when chunked), then the pending
    /// row and the accepted nodes after every verify step.
    pub hidden: Vec<&'a [f32]>,
    /// The target's logits after each side row of the step.
    pub side_logits: Vec<&'a [f32]>,
    /// With [`Needs::row_logits`]: each verified row's input token and the target's logits
    /// after it, the pending token's first, then every tree node's in order.
    pub verified: Vec<(u32, &'a [f32])>,
}

/// What a proposer offers for one step: the tree to verify and, optionally, rows that ride
/// along in the same forward without being verified (lookahead's window).
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    pub tree: TokenTree,
    pub side: Option<SideBranch>,
}

impl From<TokenTree> for Proposal {
    fn from(tree: TokenTree) -> Self {
        Self { tree, side: None }
    }
}

/// Extra rows of a verify forward that are not verified: their tokens, their positions as
/// offsets after the pending token's, and for each the earlier side rows it sees (every side
/// row also sees the committed tokens and the pending token, and never the tree).
#[derive(Debug, Clone, Default)]
pub struct SideBranch {
    pub tokens: Vec<u32>,
    pub offsets: Vec<usize>,
    pub visible: Vec<Vec<usize>>,
}

/// Plain decoding: never drafts.
#[derive(Debug, Default)]
pub struct NoDraft;

impl Proposer for NoDraft {
    fn name(&self) -> &'static str {
        "vanilla"
    }

    fn propose(&mut self, _: &[u32], _: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        Ok(Proposal::default())
    }
}

/// Prompt lookup: copies what followed the last n-gram earlier in the context, and, with a
/// static n-gram cache, continues from the cache where the context has nothing as long. One-hot
/// q, so exact under sampling too.
#[derive(Debug, Default)]
pub struct PromptLookupProposer {
    lookup: IndexedLookup,
    cache: Option<Arc<NgramCache>>,
}

/// How sure a draft token copied from the context itself is, against the cache's counts: an
/// n-gram repeated within one request is strong evidence (lookup decoding's premise).
const CONTEXT_CONFIDENCE: f32 = 0.9;

impl PromptLookupProposer {
    pub fn new(config: PromptLookup) -> Self {
        Self::with_cache(config, None)
    }

    pub fn with_cache(config: PromptLookup, cache: Option<Arc<NgramCache>>) -> Self {
        Self {
            lookup: IndexedLookup::new(config),
            cache,
        }
    }

    /// Up to `k` tokens, one at a time: each from the longer of the context's and the cache's
    /// matches (the context's on a tie), until the product of their confidences falls below
    /// `min_confidence`.
    fn propose_with_cache(
        lookup: &mut IndexedLookup,
        cache: &NgramCache,
        history: &[u32],
        k: usize,
    ) -> Vec<u32> {
        let config = lookup.config;
        let keep = cache.max_n().max(config.max_ngram) + 1;
        let mut tail = history[history.len().saturating_sub(keep)..].to_vec();
        let mut drafts = Vec::with_capacity(k);
        let mut confidence = 1.0;
        while drafts.len() < k {
            let hit = cache.lookup(&tail);
            let (token, c) = match (lookup.next_after(history, &tail), hit) {
                (Some((t, n)), h) if h.is_none_or(|h| n >= h.n) => (t, CONTEXT_CONFIDENCE),
                (_, Some(h)) => (h.token, h.confidence),
                _ => break,
            };
            confidence *= c;
            if confidence < config.min_confidence {
                break;
            }
            drafts.push(token);
            tail.push(token);
        }
        drafts
    }
}

impl Proposer for PromptLookupProposer {
    fn name(&self) -> &'static str {
        "prompt-lookup"
    }

    fn stops_own_drafts(&self) -> bool {
        self.cache.is_some()
    }

    fn offers_as_long_as_its_match(&self) -> bool {
        self.cache.is_some()
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let tokens = match &self.cache {
            Some(cache) if k > 0 => Self::propose_with_cache(&mut self.lookup, cache, history, k),
            _ => self.lookup.propose(history, k),
        };
        let q = vec![DraftDist::OneHot; tokens.len()];
        Ok(Proposal::from(TokenTree::chain(tokens, q)))
    }
}
