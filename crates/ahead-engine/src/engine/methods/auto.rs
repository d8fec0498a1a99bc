//! `auto` with a model drafter loaded (a draft model the user gave, else an EAGLE head): the
//! model drafts, and prompt lookup offers its matches for free beside it; the controller
//! verifies whichever promises more each step (`spec::ChoosingProposer`). Without a model
//! drafter, and for seeded sampling, `auto` is prompt lookup (`Engine::resolved_method`).

use super::draft::DraftHome;
use super::eagle::EagleHome;
use super::lookup::PromptLookupHome;
use super::MethodHome;
use crate::engine::costs::Costs;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::params::{GenerateParams, Method};
use crate::spec::{ChoosingProposer, Proposer};

pub(super) struct AutoHome;

/// The model drafter `auto` pairs with prompt lookup on `engine`, if one is loaded.
pub(super) fn model_drafter(engine: &Engine) -> Option<Method> {
    if engine.drafters.draft.as_ref().is_some_and(|d| !d.embedded) {
        Some(Method::Draft)
    } else if engine.drafters.eagle.is_some() {
        Some(Method::Eagle)
    } else {
        None
    }
}

fn model_home(engine: &Engine) -> Result<&'static dyn MethodHome> {
    match model_drafter(engine) {
        Some(Method::Draft) => Ok(&DraftHome),
        Some(_) => Ok(&EagleHome),
        None => Err(EngineError::InvalidRequest(
            "auto pairs prompt lookup with a draft model or an EAGLE head, and none is loaded".into(),
        )),
    }
}

impl MethodHome for AutoHome {
    fn check(&self, engine: &Engine, params: &GenerateParams) -> Result<()> {
        model_home(engine)?.check(engine, params)
    }

    fn proposer(
        &self,
        engine: &Engine,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(ChoosingProposer::new(
            model_home(engine)?.proposer(engine, params, capacity)?,
            PromptLookupHome.proposer(engine, params, capacity)?,
        )))
    }

    /// Prompt lookup's, beside the model's drafts.
    fn offers_free_drafts(&self) -> bool {
        true
    }

    /// The model's: lookup's offers cost nothing to make.
    fn draft_cost(&self, engine: &Engine, costs: &Costs) -> f64 {
        model_home(engine).map_or(0.0, |home| home.draft_cost(engine, costs))
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!("{:?}", params.lookup)
    }
}
