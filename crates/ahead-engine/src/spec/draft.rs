//! Draft-model proposers. `DraftModel` shares the target's vocabulary: it drafts a chain
//! autoregressively from its own KV cache, rolled back to the committed prefix every step, and
//! reports the distribution each token was drawn from. `RetokenizingDraft` wraps one whose
//! tokenizer differs: it drafts on the text, then re-tokenizes the drafted text for the target.

use std::sync::Arc;

use ahead_core::sampling::{self, warp};
use ahead_core::spec::{DraftDist, TokenTree};
use ahead_core::{Distribution, Rng, SamplingParams};
use ahead_model::transformer::Logits;
use ahead_model::{ForwardInput, KvCache, Model, Tokenizer};

use super::proposer::{Proposal, Proposer};
use crate::error::{EngineError, Result};

/// A draft model with its own cache, for one sequence.
#[derive(Debug)]
pub struct DraftModel {
    model: Arc<Model>,
    /// The full vocabulary (a restricted classifier scores only part of it).
    vocab: usize,
    cache: KvCache,
    /// The tokens whose keys and values `cache` holds, in order.
    cached: Vec<u32>,
    /// A greedy draft stops where the product of its own top-token probabilities falls below
    /// this (0: never; a fixed `--num-draft` drafts exactly k).
    min_confidence: f32,
}

/// The confidence below which a greedy draft stops when the controller picks k. A draft
/// trained on the target's own answers is roughly calibrated (its probability of a token
/// estimates the target choosing it), and a verify row costs 6-23% of a plain step on this
/// project's machines (BENCHMARKS.md): a token accepted less often than about 1 in 5 costs more
/// than it returns.
pub const DRAFT_MIN_CONFIDENCE: f32 = 0.2;

impl DraftModel {
    /// A proposer over `model` with room for `capacity` tokens. The draft must share the
    /// target's vocabulary (`target_vocab`); see [`RetokenizingDraft`] otherwise.
    pub fn new(model: Arc<Model>, target_vocab: usize, capacity: usize) -> Result<Self> {
        let vocab = model.config().vocab_size;
        if vocab != target_vocab {
            return Err(EngineError::MethodUnavailable {
                method: "draft",
                reason: format!(
                    "the draft's vocabulary ({vocab}) differs from the target's ({target_vocab}); \
                     load it with its tokenizer to re-tokenize its drafts"
                ),
            });
        }
        Self::any_vocab(model, capacity)
    }

    fn any_vocab(model: Arc<Model>, capacity: usize) -> Result<Self> {
        let cache = model.new_cache(capacity.min(model.config().max_seq_len))?;
        Ok(Self {
            vocab: model.config().vocab_size,
            model,
            cache,
            cached: Vec::new(),
            min_confidence: 0.0,
        })
    }

    /// Stops each greedy draft where its confidence falls below `c` (see
    /// [`DRAFT_MIN_CONFIDENCE`]).
    pub fn with_min_confidence(mut self, c: f32) -> Self {
        self.min_confidence = c;
        self
    }

    /// The token of logit row `row` (a restricted classifier scores a subset).
    pub(crate) fn token_of(&self, row: u32) -> u32 {
        match self.model.classifier_tokens() {
            Some(tokens) => tokens.get(row as usize).copied().unwrap_or(row),
            None => row,
        }
    }

    /// Rolls the cache back to the longest prefix it shares with `history` (keeping at least
    /// one token to feed), then feeds the rest; returns the logits after `history`.
    fn sync(&mut self, history: &[u32]) -> Result<Vec<f32>> {
        Ok(self.sync_hidden(history, false)?.0)
    }

    /// `sync`, also returning the final hidden state at the last token when asked.
    pub(crate) fn sync_hidden(&mut self, history: &[u32], want_hidden: bool) -> Result<(Vec<f32>, Vec<f32>)> {
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
        let input = ForwardInput {
            want_hidden,
            logits: Logits::Last,
            ..ForwardInput::causal(feed, &positions)
        };
        let out = self.model.forward(&input, &mut self.cache)?;
        self.cached.extend_from_slice(feed);
        let d = out.hidden_dim;
        let hidden = match &out.hidden {
            Some(h) => h[h.len() - d..].to_vec(),
            None => Vec::new(),
        };
        Ok((out.last().to_vec(), hidden))
    }

    /// Free room in the draft's cache after `len` tokens.
    pub(crate) fn room_after(&self, len: usize) -> usize {
        self.cache.capacity().saturating_sub(len)
    }

    /// Up to `k` tokens continuing `history` (the draft's own ids), each drawn from the
    /// draft's distribution under `sampling` (one-hot when greedy).
    fn draft(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<(Vec<u32>, Vec<DraftDist>)> {
        // The draft cannot see past its own context (or its cache).
        let k = k.min(self.cache.capacity().saturating_sub(history.len()));
        if k == 0 || history.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let logits = self.sync(history)?;
        let (model, cache, cached) = (&self.model, &mut self.cache, &mut self.cached);
        let chain = Chain {
            subset: model.classifier_tokens(),
            vocab: self.vocab,
            min_confidence: self.min_confidence,
        };
        chain.draft(history, k, logits, sampling, rng, |x, _| {
            let pos = [cached.len()];
            let out = model.forward(&ForwardInput::causal(&[x], &pos), cache)?;
            cached.push(x);
            Ok(out.last().to_vec())
        })
    }
}

/// How a drafter turns its logits into a chain: the token each logit row stands for, the
/// vocabulary, and the confidence stop.
pub(crate) struct Chain<'s> {
    pub subset: Option<&'s [u32]>,
    pub vocab: usize,
    /// A greedy chain stops where the product of its top-token probabilities falls below this
    /// (0: never).
    pub min_confidence: f32,
}

impl Chain<'_> {
    /// Up to `k` tokens after `history`, from `logits` on; `next(token, i)` feeds drafted
    /// token i to the drafter and returns its next logits. Each token carries the distribution
    /// it was drawn from.
    pub fn draft(
        &self,
        history: &[u32],
        k: usize,
        mut logits: Vec<f32>,
        sampling: &SamplingParams,
        rng: &mut Rng,
        mut next: impl FnMut(u32, usize) -> Result<Vec<f32>>,
    ) -> Result<(Vec<u32>, Vec<DraftDist>)> {
        let mut seen = history.to_vec();
        let (mut tokens, mut q) = (Vec::with_capacity(k), Vec::with_capacity(k));
        let mut confidence = 1.0;
        for i in 0..k {
            if self.min_confidence > 0.0 && sampling.is_greedy() {
                confidence *= top_probability(&logits);
                if confidence < self.min_confidence {
                    break;
                }
            }
            let (x, dist) = draw(&logits, self.subset, self.vocab, sampling, &seen, rng)?;
            tokens.push(x);
            q.push(dist);
            seen.push(x);
            if i + 1 < k {
                logits = next(x, i)?;
            }
        }
        Ok((tokens, q))
    }
}

impl Proposer for DraftModel {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn stops_own_drafts(&self) -> bool {
        self.min_confidence > 0.0
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        if prompt.len() < self.cache.capacity() {
            self.sync(prompt)?;
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
        let (tokens, q) = self.draft(history, k, sampling, rng)?;
        Ok(Proposal::from(TokenTree::chain(tokens, q)))
    }
}

/// A draft token from a drafter's logits (over `subset` when its classifier is restricted) and
/// the distribution it was drawn from under `sampling` (one-hot when greedy).
fn draw(
    logits: &[f32],
    subset: Option<&[u32]>,
    vocab: usize,
    sampling: &SamplingParams,
    seen: &[u32],
    rng: &mut Rng,
) -> Result<(u32, DraftDist)> {
    Ok(match subset {
        // A restricted classifier's best row is its best token: no penalty to apply.
        Some(tokens) if sampling.is_greedy() && sampling.repetition_penalty == 1.0 => {
            (tokens[sampling::argmax(logits)? as usize], DraftDist::OneHot)
        }
        _ => {
            let full = vocabulary_logits(logits, subset, vocab);
            if sampling.is_greedy() {
                (sampling::choose(&full, sampling, seen, rng)?, DraftDist::OneHot)
            } else {
                // q is over the subset (zero elsewhere), the distribution the token was drawn
                // from: rejection sampling stays exact.
                let d: Distribution = warp(&full, sampling, seen)?;
                (d.sample(rng), DraftDist::Sampled(d))
            }
        }
    })
}

/// The softmax probability of the highest logit.
fn top_probability(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    if sum > 0.0 && sum.is_finite() {
        1.0 / sum
    } else {
        0.0
    }
}

/// Logits over the whole vocabulary: a restricted classifier's rows scattered to their tokens,
/// every other token at -inf (probability 0 after any warper).
pub(super) fn vocabulary_logits<'l>(
    rows: &'l [f32],
    subset: Option<&[u32]>,
    vocab: usize,
) -> std::borrow::Cow<'l, [f32]> {
    match subset {
        None => std::borrow::Cow::Borrowed(rows),
        Some(tokens) => {
            let mut full = vec![f32::NEG_INFINITY; vocab];
            for (&t, &l) in tokens.iter().zip(rows) {
                full[t as usize] = l;
            }
            std::borrow::Cow::Owned(full)
        }
    }
}

/// Context tokens decoded beside the drafts to find the drafted text.
const DECODE_TAIL: usize = 8;

/// A draft whose tokenizer differs from the target's. Each step it re-encodes the committed
/// text with its own tokenizer, drafts greedily, decodes the new text, and encodes that as a
/// continuation with the target's tokenizer. The target verifies those tokens as one-hot
/// proposals, which is exact for any proposal (accepting x with probability p(x) and otherwise
/// sampling p without x gives p), so greedy and sampled output stay the target's.
/// Greedy drafting maximises p(x) for the likely x, the acceptance rate of a one-hot proposal.
/// Each step still decodes and re-encodes the whole committed text (linear in its length).
#[derive(Debug)]
pub struct RetokenizingDraft {
    draft: DraftModel,
    draft_tokenizer: Arc<Tokenizer>,
    target_tokenizer: Arc<Tokenizer>,
}

impl RetokenizingDraft {
    pub fn new(
        model: Arc<Model>,
        draft_tokenizer: Arc<Tokenizer>,
        target_tokenizer: Arc<Tokenizer>,
        capacity: usize,
    ) -> Result<Self> {
        Ok(Self {
            draft: DraftModel::any_vocab(model, capacity)?,
            draft_tokenizer,
            target_tokenizer,
        })
    }
}

impl Proposer for RetokenizingDraft {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        let text = self.target_tokenizer.decode(prompt)?;
        let dt = &self.draft_tokenizer;
        self.draft.prefill(&dt.encode(&text, dt.add_bos())?)
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, rng: &mut Rng) -> Result<Proposal> {
        let text = self.target_tokenizer.decode(history)?;
        let dt = &self.draft_tokenizer;
        let context = dt.encode(&text, dt.add_bos())?;
        // Each draft token carries at least one character, and target tokens too: k draft
        // tokens give at most as many target tokens as characters, trimmed to k below.
        let (drafted, _) = self.draft.draft(&context, k, &SamplingParams::greedy(), rng)?;
        if drafted.is_empty() {
            return Ok(Proposal::default());
        }
        // The drafted text: a short tail of the context decoded with and without the drafts.
        // Both decodes start at the same token, so leading-space rules treat them alike, and
        // the cost per step does not grow with the context.
        let tail = &context[context.len().saturating_sub(DECODE_TAIL)..];
        let before = dt.decode(tail)?;
        let after = dt.decode(&[tail, drafted.as_slice()].concat())?;
        // Decoding is not always prefix-stable (a byte-fallback character split across tokens
        // decodes to U+FFFD); then there is nothing reliable to propose this step.
        let Some(suffix) = after.strip_prefix(before.as_str()).filter(|s| !s.is_empty()) else {
            return Ok(Proposal::default());
        };
        let mut tokens = self.target_tokenizer.encode_continuation(suffix)?;
        tokens.truncate(k);
        let q = vec![DraftDist::OneHot; tokens.len()];
        Ok(Proposal::from(TokenTree::chain(tokens, q)))
    }
}
