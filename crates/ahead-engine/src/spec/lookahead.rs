//! Lookahead decoding as a proposer: every drafting step carries the Jacobi window as a side
//! branch (W x (N-1) rows the tree cannot see), and drafts the pool's n-grams that start with
//! the pending token as a tree (at most G of them, shared prefixes merged). The target's
//! predictions on the window advance it by one Jacobi iteration and fill the pool.

use ahead_core::sampling::argmax;
use ahead_core::spec::{candidate_tree, LookaheadConfig, NgramPool};
use ahead_core::{Rng, SamplingParams};

use super::proposer::{Outcome, Proposal, Proposer, SideBranch};
use crate::error::Result;

/// Continuations kept per first token in the pool.
const POOL_PER_KEY: usize = 32;

/// Lookahead state for one sequence.
#[derive(Debug)]
pub struct LookaheadProposer {
    cfg: LookaheadConfig,
    /// `levels[l][i]`, N-1 levels of W guesses, level 0 the oldest.
    levels: Vec<Vec<u32>>,
    pool: NgramPool,
    /// Nodes of the last proposed tree (for counting pool hits).
    last_tree_len: usize,
    hits: usize,
}

impl LookaheadProposer {
    pub fn new(cfg: LookaheadConfig) -> Self {
        Self {
            cfg,
            levels: Vec::new(),
            pool: NgramPool::new(POOL_PER_KEY),
            last_tree_len: 0,
            hits: 0,
        }
    }
}

impl LookaheadProposer {
    /// The window's rows, when it has any.
    fn side_branch(&self) -> Option<SideBranch> {
        if self.levels.is_empty() || self.cfg.window == 0 {
            return None;
        }
        Some(SideBranch {
            tokens: self.levels.iter().flatten().copied().collect(),
            offsets: self.cfg.branch_offsets(),
            visible: self.cfg.branch_mask(),
        })
    }
}

impl Proposer for LookaheadProposer {
    fn name(&self) -> &'static str {
        "lookahead"
    }

    /// Seeds the pool with the prompt's n-grams and the window with prompt tokens (a fixed
    /// pseudo-random pick, so greedy runs are reproducible and use no request randomness).
    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.pool.insert_all(prompt, self.cfg.ngram);
        let mut pick = Rng::new(0x10_0CAD);
        let n = prompt.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let levels = self.cfg.ngram.saturating_sub(1);
        self.levels = (0..levels)
            .map(|_| {
                (0..self.cfg.window)
                    .map(|_| prompt[(pick.next_u64() % n) as usize])
                    .collect()
            })
            .collect();
        Ok(())
    }

    fn max_side_rows(&self) -> usize {
        self.cfg.branch_rows()
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        let Some(accepted) = outcome.accepted else {
            return Ok(());
        };
        if self.last_tree_len > 0 && accepted > 0 {
            self.hits += 1;
        }
        self.last_tree_len = 0;
        let logits = &outcome.side_logits;
        let (w, levels) = (self.cfg.window, self.levels.len());
        if levels == 0 || logits.len() != w * levels {
            return Ok(());
        }
        // The newest level's predictions become the new top level; each column is an n-gram.
        let top = &logits[(levels - 1) * w..];
        let new: Vec<u32> = top
            .iter()
            .map(|l| argmax(l))
            .collect::<std::result::Result<_, _>>()?;
        for (i, &t) in new.iter().enumerate() {
            let mut gram: Vec<u32> = self.levels.iter().map(|lv| lv[i]).collect();
            gram.push(t);
            self.pool.insert(&gram);
        }
        self.levels.remove(0);
        self.levels.push(new);
        Ok(())
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let Some(&last) = history.last() else {
            return Ok(Proposal::default());
        };
        let candidates = self.pool.candidates(last, self.cfg.guesses.min(k.max(1)));
        let tree = candidate_tree(&candidates);
        self.last_tree_len = tree.len();
        Ok(Proposal {
            tree,
            side: self.side_branch(),
        })
    }

    fn pool_hits(&self) -> Option<usize> {
        Some(self.hits)
    }
}
