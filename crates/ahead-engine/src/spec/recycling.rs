//! Token recycling: drafts trees from the target's own recent rankings (see
//! `ahead_core::spec::recycling`), merged with what followed the same words earlier in the
//! context and, with an n-gram cache, in the model's earlier answers. The table is shared by the requests of an engine (each request's verify rows
//! teach the next), or private to one request when its tokens must not depend on others.

use std::sync::{Arc, Mutex, MutexGuard};

use ahead_core::spec::{grow_tree, Adjacency, IndexedLookup, NgramCache, PromptLookup};
use ahead_core::{Rng, SamplingParams};

use super::proposer::{Needs, Outcome, Proposal, Proposer};
use crate::error::Result;

/// Candidates kept per token: deeper than any tree this machine verifies needs at one node.
pub const RECYCLING_WIDTH: usize = 8;

/// A candidate's weight when the context itself continues the path that way, by the length of
/// the n-gram that matched: one repeated word is weak evidence, a repeated phrase strong.
fn context_weight(n: usize) -> f32 {
    if n >= 2 {
        0.9
    } else {
        0.5
    }
}

/// What a table weight is worth against a context match: a softmax over 8 candidates
/// over-states the chance of the best (a flat tail is cut off), and a ranking made in another
/// context is weaker evidence than the context repeating itself. On Spec-Bench (7 per group,
/// BENCHMARKS.md) halving them took recycling from 1.17x to 1.28x.
const TABLE_TRUST: f32 = 0.5;

/// How much a prompt's own successors weigh before the target has ranked a token: below a
/// ranking's top candidate, above its tail.
const SEED_WEIGHT: f32 = 0.5;

/// Nodes below this score (the product of their path's weights) are not drafted: under one in
/// fifty, a row costs more than it can return.
const MIN_SCORE: f32 = 0.1;

/// An adjacency table that requests share.
pub type SharedAdjacency = Arc<Mutex<Adjacency>>;

pub struct RecyclingProposer {
    table: SharedAdjacency,
    lookup: IndexedLookup,
    cache: Option<Arc<NgramCache>>,
}

impl RecyclingProposer {
    /// Drafts from `table`, merging context matches found with `lookup`'s n-gram sizes and
    /// the continuations `cache` knows (weighted by its confidence).
    pub fn new(table: SharedAdjacency, lookup: PromptLookup, cache: Option<Arc<NgramCache>>) -> Self {
        Self {
            table,
            lookup: IndexedLookup::new(lookup),
            cache,
        }
    }

    /// A table of its own for a `vocab`-token model.
    pub fn private_table(vocab: usize) -> SharedAdjacency {
        Arc::new(Mutex::new(Adjacency::new(vocab, RECYCLING_WIDTH)))
    }

    /// The table; a request that panicked while holding it left hints, not invariants, so a
    /// poisoned lock is used as it is.
    fn table(&self) -> MutexGuard<'_, Adjacency> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Proposer for RecyclingProposer {
    fn name(&self) -> &'static str {
        "recycling"
    }

    fn needs(&self) -> Needs {
        Needs {
            row_logits: true,
            ..Needs::default()
        }
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.table().seed(prompt, SEED_WEIGHT);
        Ok(())
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        if outcome.verified.is_empty() {
            return Ok(());
        }
        let mut table = self.table();
        for &(token, logits) in &outcome.verified {
            table.record(token, logits);
        }
        Ok(())
    }

    /// Its trees stop where their scores fall below `MIN_SCORE`.
    fn stops_own_drafts(&self) -> bool {
        true
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let Some(&last) = history.last() else {
            return Ok(Proposal::default());
        };
        let cache = self.cache.as_deref();
        let keep = self
            .lookup
            .config
            .max_ngram
            .max(cache.map_or(0, NgramCache::max_n))
            + 1;
        let recent = &history[history.len().saturating_sub(keep)..];
        let table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let lookup = &mut self.lookup;
        Ok(Proposal::from(grow_tree(last, k, MIN_SCORE, |path| {
            let mut candidates: Vec<(u32, f32)> = table
                .candidates(*path.last().unwrap_or(&last))
                .map(|(t, w)| (t, TABLE_TRUST * w))
                .collect();
            let mut tail = recent.to_vec();
            tail.extend_from_slice(&path[1..]);
            if let Some((token, n)) = lookup.next_after(history, &tail) {
                merge(&mut candidates, token, context_weight(n));
            }
            if let Some(hit) = cache.and_then(|c| c.lookup(&tail)) {
                merge(&mut candidates, hit.token, hit.confidence);
            }
            candidates
        })))
    }
}

/// Adds `token` to `candidates` with weight `w`, or raises its weight to `w` if it is there.
fn merge(candidates: &mut Vec<(u32, f32)>, token: u32, w: f32) {
    match candidates.iter_mut().find(|(t, _)| *t == token) {
        Some((_, weight)) => *weight = weight.max(w),
        None => candidates.push((token, w)),
    }
}
