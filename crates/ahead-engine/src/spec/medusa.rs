//! Medusa as a proposer: the heads read the target's hidden state at the last accepted position
//! (handed over by the decoder after every verify forward, and after the prefill), and their
//! top tokens fill the candidate tree. Candidates are deterministic, so each node is a one-hot
//! draft and exact verification tries siblings in turn.

use std::sync::Arc;

use ahead_core::sampling::argmax;
use ahead_core::spec::MedusaTree;
use ahead_core::{Rng, SamplingParams};
use ahead_model::medusa::MedusaHeads;

use super::draft::DraftModel;
use super::proposer::{Features, Needs, Outcome, Proposal, Proposer};
use crate::error::Result;

/// Medusa heads and a candidate tree, for one sequence.
#[derive(Debug)]
pub struct MedusaProposer {
    heads: Arc<MedusaHeads>,
    tree: MedusaTree,
    /// The hidden state the next proposal reads (none before the first forward).
    hidden: Option<Vec<f32>>,
}

impl MedusaProposer {
    pub fn new(heads: Arc<MedusaHeads>, tree: MedusaTree) -> Self {
        Self {
            heads,
            tree,
            hidden: None,
        }
    }
}

impl Proposer for MedusaProposer {
    fn name(&self) -> &'static str {
        "medusa"
    }

    fn needs(&self) -> Needs {
        Needs {
            hidden: Features::Final,
            ..Needs::default()
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        if let Some(last) = outcome.hidden.last() {
            self.hidden = Some(last.to_vec());
        }
        Ok(())
    }

    fn propose(&mut self, _: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let Some(hidden) = &self.hidden else {
            return Ok(Proposal::default());
        };
        // The decoder keeps the first k nodes: only the heads of their depths are run.
        let needed = self.tree.paths().iter().take(k).map(Vec::len).max().unwrap_or(0);
        let depth = needed.min(self.heads.num_heads());
        let logits = self.heads.forward_first(hidden, depth)?;
        let mut top = Vec::with_capacity(depth);
        for (d, l) in logits.iter().take(depth).enumerate() {
            top.push(top_tokens(&self.heads, l, self.tree.top_k(d))?);
        }
        // The decoder keeps the first k nodes, which is a tree (paths are ordered by depth).
        Ok(Proposal::from(self.tree.build(&top)))
    }
}

/// A draft model that carries Medusa heads (the hybrid): one draft forward over the committed
/// tokens gives the draft's next-token guesses (depth 1) and, through the heads on its hidden
/// state, the deeper levels; the whole tree comes from one draft step instead of one per depth.
#[derive(Debug)]
pub struct HybridDraft {
    draft: DraftModel,
    heads: Arc<MedusaHeads>,
    tree: MedusaTree,
}

impl HybridDraft {
    pub fn new(draft: DraftModel, heads: Arc<MedusaHeads>, tree: MedusaTree) -> Self {
        Self { draft, heads, tree }
    }
}

impl Proposer for HybridDraft {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.draft.prefill(prompt)
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        if history.is_empty() || self.draft.room_after(history.len()) == 0 {
            return Ok(Proposal::default());
        }
        let (logits, hidden) = self.draft.sync_hidden(history, true)?;
        // As for Medusa alone: the first k nodes decide how many heads run.
        let needed = self.tree.paths().iter().take(k).map(Vec::len).max().unwrap_or(0);
        let depth = needed.min(self.heads.num_heads() + 1);
        let draft_top = top_rows(&logits, self.tree.top_k(0))?;
        let mut top = vec![draft_top.into_iter().map(|r| self.draft.token_of(r)).collect()];
        let heads = self.heads.forward_first(&hidden, depth.saturating_sub(1))?;
        for (d, l) in heads.iter().enumerate() {
            top.push(top_tokens(&self.heads, l, self.tree.top_k(d + 1))?);
        }
        Ok(Proposal::from(self.tree.build(&top)))
    }
}

/// The tokens of a head's `n` highest-scoring rows (a pruned head's rows are a subset).
fn top_tokens(heads: &MedusaHeads, logits: &[f32], n: usize) -> Result<Vec<u32>> {
    Ok(top_rows(logits, n)?
        .into_iter()
        .map(|r| heads.token(r as usize))
        .collect())
}

/// The `n` highest-scoring rows, best first (ties: lower row first).
fn top_rows(logits: &[f32], n: usize) -> Result<Vec<u32>> {
    if n <= 1 {
        return Ok(vec![argmax(logits)?]);
    }
    let better = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    // Select the n best in linear time, then order just those (vocabularies run to 150k).
    if n < ids.len() {
        ids.select_nth_unstable_by(n - 1, better);
        ids.truncate(n);
    }
    ids.sort_by(better);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_tokens_are_the_best_in_order_with_ties_by_id() {
        let logits = [0.5, 2.0, -1.0, 2.0, 1.0];
        assert_eq!(top_rows(&logits, 3).unwrap(), vec![1, 3, 4]);
        assert_eq!(top_rows(&logits, 1).unwrap(), vec![1]);
        assert_eq!(top_rows(&logits, 9).unwrap(), vec![1, 3, 4, 0, 2]);
    }
}
