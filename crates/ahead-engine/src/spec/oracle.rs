//! A measuring instrument, not a method: drafts a continuation known in advance (plain
//! decoding's own output), so every draft is right and drafting costs nothing. What it reaches
//! at draft length k is the ceiling of *any* drafter at that k on this machine: the speedup
//! left once acceptance is perfect is set by the verify forward's cost alone.

use ahead_core::spec::{DraftDist, TokenTree};
use ahead_core::{Rng, SamplingParams};

use super::{Proposal, Proposer};
use crate::error::Result;

/// Drafts the next tokens of `continuation`, the text that follows `prompt_len` prompt tokens.
#[derive(Debug, Clone)]
pub struct OracleProposer {
    prompt_len: usize,
    continuation: Vec<u32>,
}

impl OracleProposer {
    pub fn new(prompt_len: usize, continuation: Vec<u32>) -> Self {
        Self {
            prompt_len,
            continuation,
        }
    }
}

impl Proposer for OracleProposer {
    fn name(&self) -> &'static str {
        "oracle"
    }

    /// The next `k` tokens of the continuation after what `history` committed; nothing once
    /// the history has left it (sampling, or another prompt), so it never drafts blindly.
    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let done = history.len().saturating_sub(self.prompt_len);
        let on_track = history.len() >= self.prompt_len
            && self.continuation.len() >= done
            && history[self.prompt_len..] == self.continuation[..done];
        if !on_track {
            return Ok(Proposal::default());
        }
        let tokens: Vec<u32> = self.continuation[done..].iter().take(k).copied().collect();
        let q = vec![DraftDist::OneHot; tokens.len()];
        Ok(Proposal::from(TokenTree::chain(tokens, q)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_follows_the_committed_part_and_nothing_off_track() {
        let mut o = OracleProposer::new(2, vec![5, 6, 7, 8]);
        let (s, mut rng) = (SamplingParams::default(), Rng::new(1));
        assert_eq!(
            o.propose(&[1, 2], 3, &s, &mut rng).unwrap().tree.tokens,
            vec![5, 6, 7]
        );
        assert_eq!(
            o.propose(&[1, 2, 5, 6], 3, &s, &mut rng).unwrap().tree.tokens,
            vec![7, 8]
        );
        assert_eq!(
            o.propose(&[1, 2, 5, 6, 7, 8], 3, &s, &mut rng)
                .unwrap()
                .tree
                .tokens,
            Vec::<u32>::new()
        );
        assert!(o.propose(&[1, 2, 9], 3, &s, &mut rng).unwrap().tree.is_empty());
        assert!(o.propose(&[1], 3, &s, &mut rng).unwrap().tree.is_empty());
    }
}
