//! Two proposers behind one (`MergedProposer`, `ChoosingProposer`): both see the prompt,
//! every outcome and the request's end, whichever drafted.

use super::proposer::{Needs, Outcome, Proposer};
use crate::error::Result;

pub(crate) struct Pair {
    pub first: Box<dyn Proposer>,
    pub second: Box<dyn Proposer>,
}

impl Pair {
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.first.prefill(prompt)?;
        self.second.prefill(prompt)
    }

    /// What either reads (at most one of the two reads features).
    pub fn needs(&self) -> Needs {
        let (a, b) = (self.first.needs(), self.second.needs());
        Needs {
            hidden: if a.hidden.any() { a.hidden } else { b.hidden },
            row_logits: a.row_logits || b.row_logits,
        }
    }

    pub fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        self.first.observe(outcome)?;
        self.second.observe(outcome)
    }

    pub fn finish(&mut self, output: &[u32]) {
        self.first.finish(output);
        self.second.finish(output);
    }
}
