//! EAGLE as a proposer: the head drafts a chain in the target's feature space. After every
//! forward the decoder hands over the target's features of the newly committed positions; the
//! head's cache takes one row per committed position (its real feature and the next token),
//! then the chain runs on the head's own predicted features and is rolled back before the
//! next step. Each drafted token carries the distribution it was drawn from, so verification
//! is exact rejection sampling, as for a draft model.

use std::sync::Arc;

use ahead_core::spec::TokenTree;
use ahead_core::{Rng, SamplingParams};
use ahead_model::eagle::EagleHead;
use ahead_model::KvCache;

use super::draft::Chain;
use super::proposer::{Needs, Outcome, Proposal, Proposer};
use crate::error::{EngineError, Result};

/// An EAGLE head and its cache, for one sequence.
#[derive(Debug)]
pub struct EagleProposer {
    head: Arc<EagleHead>,
    /// The target's vocabulary (the head's classifier may score a subset).
    vocab: usize,
    cache: KvCache,
    /// Rows of `cache` made from the target's own features: positions 0..fed.
    fed: usize,
    /// Target features of the committed positions after `fed`, not yet in the cache.
    waiting: Vec<f32>,
    /// The last real row's logits and predicted feature (where the next chain starts).
    last: Option<(Vec<f32>, Vec<f32>)>,
    /// A greedy chain stops where the product of its top-token probabilities falls below this.
    min_confidence: f32,
}

impl EagleProposer {
    /// A proposer with room for `capacity` positions.
    pub fn new(head: Arc<EagleHead>, capacity: usize) -> Result<Self> {
        let cfg = head.config();
        let cache = head.new_cache(capacity.min(cfg.max_seq_len))?;
        Ok(Self {
            vocab: cfg.vocab_size,
            head,
            cache,
            fed: 0,
            waiting: Vec::new(),
            last: None,
            min_confidence: 0.0,
        })
    }

    /// Stops each greedy chain where its confidence falls below `c`.
    pub fn with_min_confidence(mut self, c: f32) -> Self {
        self.min_confidence = c;
        self
    }

    /// Positions whose target features the proposer has seen.
    fn known(&self) -> usize {
        self.fed + self.waiting.len() / self.head.config().dim
    }

    /// Feeds the waiting features as real rows (`history` gives each row's next token).
    fn feed(&mut self, history: &[u32]) -> Result<()> {
        let known = self.known();
        if known == self.fed {
            return Ok(());
        }
        if history.len() <= known || known > self.cache.capacity() {
            return Err(EngineError::Internal(format!(
                "EAGLE: features for {known} positions, but {} tokens and room for {}",
                history.len(),
                self.cache.capacity()
            )));
        }
        self.cache.truncate(self.fed)?;
        let positions: Vec<usize> = (self.fed..known).collect();
        let out = self.head.forward(
            &self.waiting,
            &history[self.fed + 1..=known],
            &positions,
            &mut self.cache,
        )?;
        self.last = Some((out.last().to_vec(), last_feature(&out)?));
        self.fed = known;
        self.waiting.clear();
        Ok(())
    }
}

impl Proposer for EagleProposer {
    fn name(&self) -> &'static str {
        "eagle"
    }

    fn needs(&self) -> Needs {
        Needs {
            hidden: true,
            ..Needs::default()
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        for r in &outcome.hidden {
            self.waiting.extend_from_slice(r);
        }
        Ok(())
    }

    fn stops_own_drafts(&self) -> bool {
        self.min_confidence > 0.0
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        // The prompt's rows count as prefill, as the target's do.
        if self.known() < prompt.len() {
            self.feed(prompt)?;
        }
        Ok(())
    }

    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Proposal> {
        // Every position but the pending token's must have its feature (a proposer that
        // missed some drafts nothing rather than guess).
        if k == 0 || self.known() + 1 != history.len() {
            return Ok(Proposal::default());
        }
        self.feed(history)?;
        // Each step feeds new rows first, so the last real row's outputs are fresh here.
        let Some((logits, mut feature)) = self.last.take() else {
            return Ok(Proposal::default());
        };
        self.cache.truncate(self.fed)?;
        let k = k.min(self.cache.capacity().saturating_sub(self.fed));
        let (head, cache, fed) = (&self.head, &mut self.cache, self.fed);
        let chain = Chain {
            subset: head.classifier_tokens(),
            vocab: self.vocab,
            min_confidence: self.min_confidence,
        };
        let (tokens, q) = chain.draft(history, k, logits, sampling, rng, |x, i| {
            // The chain row at the pending token's position and on: the predicted feature and
            // the token just drafted.
            let out = head.forward(&feature, &[x], &[fed + i], cache)?;
            feature = last_feature(&out)?;
            Ok(out.last().to_vec())
        })?;
        Ok(Proposal::from(TokenTree::chain(tokens, q)))
    }
}

/// The head's predicted feature at its last row.
fn last_feature(out: &ahead_model::ForwardOutput) -> Result<Vec<f32>> {
    let h = out
        .hidden
        .as_ref()
        .ok_or_else(|| EngineError::Internal("the EAGLE head returned no features".into()))?;
    Ok(h[h.len() - out.hidden_dim..].to_vec())
}
