//! EAGLE (a head drafting in the target's feature space) and the hybrid (the head's drafts
//! filled out with token recycling's tree in the same forward).

use super::lookup::recycling_proposer;
use super::MethodHome;
use crate::engine::costs::Costs;
use crate::engine::Engine;
use crate::error::Result;
use crate::params::GenerateParams;
use crate::spec::{draft::DRAFT_MIN_CONFIDENCE, EagleProposer, MergedProposer, Proposer};

pub(super) struct EagleHome;

pub(super) struct HybridHome;

impl MethodHome for EagleHome {
    fn check(&self, engine: &Engine, _: &GenerateParams) -> Result<()> {
        engine.drafters.eagle("eagle").map(|_| ())
    }

    fn proposer(
        &self,
        engine: &Engine,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(eagle_proposer(engine, "eagle", params, capacity)?))
    }

    fn draft_cost(&self, _: &Engine, costs: &Costs) -> f64 {
        costs.eagle_step
    }
}

impl MethodHome for HybridHome {
    fn check(&self, engine: &Engine, _: &GenerateParams) -> Result<()> {
        engine.drafters.eagle("hybrid").map(|_| ())
    }

    fn proposer(
        &self,
        engine: &Engine,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(MergedProposer::new(
            Box::new(eagle_proposer(engine, "hybrid", params, capacity)?),
            Box::new(recycling_proposer(engine, params)),
        )))
    }

    fn draft_cost(&self, _: &Engine, costs: &Costs) -> f64 {
        costs.eagle_step
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!("{:?}", params.lookup)
    }
}

/// The loaded EAGLE head's proposer with room for `capacity` positions; under the controller
/// a greedy tree drafts no node the head gives less than `DRAFT_MIN_CONFIDENCE`.
fn eagle_proposer(
    engine: &Engine,
    method: &'static str,
    params: &GenerateParams,
    capacity: usize,
) -> Result<EagleProposer> {
    let head = engine.drafters.eagle(method)?.clone();
    let confident = params.num_draft.is_none() && params.sampling.is_greedy();
    Ok(
        EagleProposer::new(head, capacity)?.with_min_confidence(if confident {
            DRAFT_MIN_CONFIDENCE
        } else {
            0.0
        }),
    )
}
