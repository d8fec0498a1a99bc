//! Medusa as a proposer: the heads read the target's hidden state at the last accepted position
//! (handed over by the decoder after every verify forward, and after the prefill), and their
//! top tokens fill the candidate tree. Candidates are deterministic, so each node is a one-hot
//! draft and exact verification tries siblings in turn.

use std::sync::Arc;

use ahead_core::sampling::argmax;
use ahead_core::spec::{MedusaTree, TokenTree};
use ahead_core::{Rng, SamplingParams};
use ahead_model::medusa::MedusaHeads;

use super::proposer::Proposer;
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

    fn wants_hidden(&self) -> bool {
        true
    }

    fn observe_hidden(&mut self, hidden: &[f32]) {
        self.hidden = Some(hidden.to_vec());
    }

    fn propose(&mut self, _: &[u32], _: usize, _: &SamplingParams, _: &mut Rng) -> Result<TokenTree> {
        let Some(hidden) = &self.hidden else {
            return Ok(TokenTree::empty());
        };
        let depth = self.tree.depth().min(self.heads.num_heads());
        let logits = self.heads.forward(hidden)?;
        let mut top = Vec::with_capacity(depth);
        for (d, l) in logits.iter().take(depth).enumerate() {
            top.push(top_tokens(l, self.tree.top_k(d))?);
        }
        // The decoder keeps the first k nodes, which is a tree (paths are ordered by depth).
        Ok(self.tree.build(&top))
    }
}

/// The `n` highest-scoring token ids, best first (ties: lower id first).
fn top_tokens(logits: &[f32], n: usize) -> Result<Vec<u32>> {
    if n <= 1 {
        return Ok(vec![argmax(logits)?]);
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    ids.truncate(n);
    Ok(ids)
}
