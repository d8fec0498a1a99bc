//! Two proposers' trees in one verify forward: the first's tree as it is, then the second's
//! nodes it does not hold already (the same token after the same path), up to k nodes. A
//! feature drafter's confident chain then comes with token recycling's wider guesses where the
//! chain stops. Greedy only: under sampling a token both drafted would need a single q, so the
//! first proposer drafts alone.

use ahead_core::spec::TokenTree;
use ahead_core::{Rng, SamplingParams};

use super::pair::Pair;
use super::proposer::{Needs, Outcome, Proposal, Proposer};
use crate::error::Result;

pub struct MergedProposer {
    pair: Pair,
}

impl MergedProposer {
    pub fn new(first: Box<dyn Proposer>, second: Box<dyn Proposer>) -> Self {
        Self {
            pair: Pair { first, second },
        }
    }
}

impl Proposer for MergedProposer {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.pair.prefill(prompt)
    }

    fn needs(&self) -> Needs {
        self.pair.needs()
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        self.pair.observe(outcome)
    }

    fn finish(&mut self, output: &[u32]) {
        self.pair.finish(output)
    }

    fn max_side_rows(&self) -> usize {
        self.pair.first.max_side_rows()
    }

    fn stops_own_drafts(&self) -> bool {
        self.pair.first.stops_own_drafts() && self.pair.second.stops_own_drafts()
    }

    /// Under greedy the first drafts at most half of `k` (the second fills the rest); under
    /// sampling it drafts alone.
    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Proposal> {
        if !sampling.is_greedy() {
            return self.pair.first.propose(history, k, sampling, rng);
        }
        let first = self.pair.first.propose(history, k.div_ceil(2), sampling, rng)?;
        if first.tree.len() >= k {
            return Ok(first);
        }
        let second = self.pair.second.propose(history, k, sampling, rng)?;
        Ok(Proposal {
            tree: merge(first.tree, &second.tree, k),
            side: first.side,
        })
    }
}

/// `a` with the nodes of `b` it lacks, in `b`'s order, while it has fewer than `k` nodes.
pub(crate) fn merge(mut a: TokenTree, b: &TokenTree, k: usize) -> TokenTree {
    // Where each node of `b` sits in the merged tree (`None`: left out).
    let mut at: Vec<Option<usize>> = Vec::with_capacity(b.len());
    for n in 0..b.len() {
        let parent = match b.parents[n] {
            Some(p) => match at[p] {
                Some(merged) => Some(merged),
                None => {
                    at.push(None);
                    continue;
                }
            },
            None => None,
        };
        let same = (0..a.len()).find(|&i| a.parents[i] == parent && a.tokens[i] == b.tokens[n]);
        at.push(match same {
            Some(i) => Some(i),
            None if a.len() < k => {
                a.tokens.push(b.tokens[n]);
                a.parents.push(parent);
                a.q.push(b.q[n].clone());
                Some(a.len() - 1)
            }
            None => None,
        });
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use ahead_core::spec::DraftDist;

    fn tree(tokens: &[u32], parents: &[Option<usize>]) -> TokenTree {
        TokenTree {
            tokens: tokens.to_vec(),
            parents: parents.to_vec(),
            q: vec![DraftDist::OneHot; tokens.len()],
        }
    }

    #[test]
    fn merging_keeps_the_first_tree_and_adds_what_it_lacks_up_to_k() {
        let a = tree(&[5, 6], &[None, Some(0)]);
        // b: 5 -> 7 (shares the root 5), and a sibling root 9 with a child 10.
        let b = tree(&[5, 7, 9, 10], &[None, Some(0), None, Some(2)]);
        let m = merge(a.clone(), &b, 10);
        assert!(m.is_well_formed());
        assert_eq!(m.tokens, vec![5, 6, 7, 9, 10]);
        assert_eq!(m.parents, vec![None, Some(0), Some(0), None, Some(3)]);
        // At k = 3 the root 9 does not fit, so neither does its child.
        let m = merge(a, &b, 3);
        assert_eq!(m.tokens, vec![5, 6, 7]);
    }
}
