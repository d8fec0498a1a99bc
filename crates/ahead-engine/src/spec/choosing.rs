//! `auto` with a model drafter loaded: the model (a draft model or an EAGLE head) drafts, and
//! prompt lookup (with the n-gram cache when one is loaded) offers its match for free each
//! step first. The controller verifies whichever promises more tokens per unit of time
//! (`Controller::take_free_offer`): lookup's long matches where the text repeats (translation,
//! retrieval), the model elsewhere, and nothing where neither pays. Both see every outcome,
//! so the model catches up on the tokens a lookup step committed when it drafts next.

use ahead_core::spec::TokenTree;
use ahead_core::{Rng, SamplingParams};

use super::pair::Pair;
use super::proposer::{Needs, Outcome, Proposal, Proposer};
use crate::error::Result;

pub struct ChoosingProposer {
    /// `first` is the model, `second` prompt lookup.
    pair: Pair,
}

impl ChoosingProposer {
    /// `model` drafts at its cost; `lookup` offers drafts that cost nothing to make.
    pub fn new(model: Box<dyn Proposer>, lookup: Box<dyn Proposer>) -> Self {
        Self {
            pair: Pair {
                first: model,
                second: lookup,
            },
        }
    }
}

impl Proposer for ChoosingProposer {
    fn name(&self) -> &'static str {
        "auto"
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
        self.pair.first.stops_own_drafts()
    }

    fn free_offer(
        &mut self,
        history: &[u32],
        most: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Option<TokenTree>> {
        let offer = self.pair.second.propose(history, most, sampling, rng)?.tree;
        Ok((!offer.is_empty()).then_some(offer))
    }

    fn propose(
        &mut self,
        history: &[u32],
        k: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Proposal> {
        self.pair.first.propose(history, k, sampling, rng)
    }
}
