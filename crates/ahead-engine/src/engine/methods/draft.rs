//! A draft model: the same vocabulary (its distributions verified exactly, alone or with
//! Medusa heads of its own) or another tokenizer (its text re-tokenized for the target).

use ahead_core::spec::MedusaTree;

use super::MethodHome;
use crate::engine::costs::Costs;
use crate::engine::Engine;
use crate::error::Result;
use crate::params::GenerateParams;
use crate::spec::{draft::DRAFT_MIN_CONFIDENCE, DraftModel, HybridDraft, Proposer, RetokenizingDraft};

pub(super) struct DraftHome;

impl MethodHome for DraftHome {
    fn check(&self, engine: &Engine, _: &GenerateParams) -> Result<()> {
        engine.drafters.draft().map(|_| ())
    }

    fn proposer(
        &self,
        engine: &Engine,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        let draft = engine.drafters.draft()?;
        let vocab = engine.loaded.model.config().vocab_size;
        Ok(match (&draft.tokenizers, &draft.medusa) {
            (None, Some(heads)) => Box::new(HybridDraft::new(
                DraftModel::new(draft.model.clone(), vocab, capacity)?,
                heads.clone(),
                params.medusa_tree.clone().unwrap_or_else(MedusaTree::default_cpu),
            )),
            (None, None) => {
                // Under the controller a greedy draft also stops where it is unsure.
                let confident = params.num_draft.is_none() && params.sampling.is_greedy();
                Box::new(
                    DraftModel::new(draft.model.clone(), vocab, capacity)?
                        .with_min_confidence(if confident { DRAFT_MIN_CONFIDENCE } else { 0.0 }),
                )
            }
            // Re-tokenized text can take more draft tokens than target tokens.
            (Some((dt, tt)), _) => Box::new(RetokenizingDraft::new(
                draft.model.clone(),
                dt.clone(),
                tt.clone(),
                draft.model.config().max_seq_len,
            )?),
        })
    }

    fn draft_cost(&self, _: &Engine, costs: &Costs) -> f64 {
        costs.draft_step
    }
}
