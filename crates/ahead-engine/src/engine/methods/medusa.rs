//! Medusa: heads on the target's last hidden state propose a candidate tree, chosen from the
//! heads' measured accuracy and this machine's verify cost.

use ahead_core::spec::MedusaTree;
use ahead_model::medusa::MedusaHeads;

use super::MethodHome;
use crate::engine::costs::Costs;
use crate::engine::{Engine, MAX_DRAFT};
use crate::error::Result;
use crate::params::GenerateParams;
use crate::spec::{MedusaProposer, Proposer};

pub(super) struct MedusaHome;

impl MethodHome for MedusaHome {
    fn check(&self, engine: &Engine, params: &GenerateParams) -> Result<()> {
        engine.medusa_tree_for(params).map(|_| ())
    }

    fn proposer(&self, engine: &Engine, params: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        let tree = engine.medusa_tree_for(params)?;
        Ok(Box::new(MedusaProposer::new(
            engine.drafters.medusa()?.clone(),
            tree,
        )))
    }

    fn draft_cost(&self, _: &Engine, costs: &Costs) -> f64 {
        costs.medusa_step
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!("{:?}", params.medusa_tree)
    }
}

impl Engine {
    /// The Medusa tree a request with `params` would use.
    pub fn medusa_tree_for(&self, params: &GenerateParams) -> Result<MedusaTree> {
        let heads = self.drafters.medusa()?;
        match &params.medusa_tree {
            Some(t) => Ok(t.clone()),
            None => self.medusa_tree(heads, params),
        }
    }

    /// The candidate tree for `heads`: chosen from their measured accuracy and this machine's
    /// verify cost when known, else a small default.
    pub(super) fn medusa_tree(&self, heads: &MedusaHeads, params: &GenerateParams) -> Result<MedusaTree> {
        Ok(match heads.accuracy() {
            Some(acc) => MedusaTree::optimal(acc, &self.costs_for(params)?.verify, MAX_DRAFT)?,
            None => MedusaTree::default_cpu(),
        })
    }
}
