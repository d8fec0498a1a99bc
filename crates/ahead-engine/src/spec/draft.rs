//! A draft model with the target's vocabulary: drafts a chain autoregressively from its own KV
//! cache, rolled back to the committed prefix at every step.

use std::sync::Arc;

use ahead_core::sampling::{self, warp};
use ahead_core::spec::{DraftDist, TokenTree};
use ahead_core::{Distribution, Rng, SamplingParams};
use ahead_model::{ForwardInput, KvCache, Model};

use super::proposer::Proposer;
use crate::error::{EngineError, Result};

/// A draft model proposer for one sequence.
#[derive(Debug)]
pub struct DraftModel {
    model: Arc<Model>,
    cache: KvCache,
    /// The tokens whose keys and values `cache` holds, in order.
    cached: Vec<u32>,
}

impl DraftModel {
    /// A proposer over `model` with room for `capacity` tokens. The draft must share the
    /// target's vocabulary (`target_vocab`).
    pub fn new(model: Arc<Model>, target_vocab: usize, capacity: usize) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if vocab != target_vocab {
            return Err(EngineError::MethodUnavailable {
                method: "draft",
                reason: format!(
                    "the draft's vocabulary ({vocab}) differs from the target's ({target_vocab}); \
                     drafts with another tokenizer are not supported yet"
                ),
            });
        }
        let cache = model.new_cache(capacity.min(model.config().max_seq_len))?;
        Ok(Self {
            model,
            cache,
            cached: Vec::new(),
        })
    }

    /// Rolls the cache back to the longest prefix it shares with `history` (keeping at least
    /// one token to feed), then feeds the rest; returns the logits after `history`.
    fn sync(&mut self, history: &[u32]) -> Result<Vec<f32>> {
        let common = self
            .cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(history.len().saturating_sub(1));
        self.cache.truncate(keep)?;
        self.cached.truncate(keep);
        let feed = &history[keep..];
        let positions: Vec<usize> = (keep..history.len()).collect();
        let out = self
            .model
            .forward(&ForwardInput::causal(feed, &positions), &mut self.cache)?;
        self.cached.extend_from_slice(feed);
        Ok(out.last().to_vec())
    }
}

impl Proposer for DraftModel {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<TokenTree> {
        // The draft cannot see past its own context (or its cache).
        let room = self.cache.capacity().saturating_sub(history.len());
        let k = k.min(room);
        if k == 0 || history.is_empty() {
            return Ok(TokenTree::empty());
        }
        let mut logits = self.sync(history)?;
        let mut seen = history.to_vec();
        let (mut tokens, mut q) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for i in 0..k {
            let (x, dist) = if sampling.is_greedy() {
                (
                    sampling::choose(&logits, sampling, &seen, rng)?,
                    DraftDist::OneHot,
                )
            } else {
                let d: Distribution = warp(&logits, sampling, &seen)?;
                (d.sample(rng), DraftDist::Sampled(d))
            };
            tokens.push(x);
            q.push(dist);
            seen.push(x);
            if i + 1 < k {
                let pos = [self.cached.len()];
                let out = self
                    .model
                    .forward(&ForwardInput::causal(&[x], &pos), &mut self.cache)?;
                self.cached.push(x);
                logits = out.last().to_vec();
            }
        }
        Ok(TokenTree::chain(tokens, q))
    }
}
