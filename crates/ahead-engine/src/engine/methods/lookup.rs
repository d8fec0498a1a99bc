//! The methods that draft from text already seen, with no model of their own: prompt lookup
//! (the context and an optional n-gram cache), token recycling (the target's own recent
//! rankings) and suffix decoding (the request's text and earlier requests' outputs).

use super::MethodHome;
use crate::engine::Engine;
use crate::error::Result;
use crate::params::GenerateParams;
use crate::spec::{PromptLookupProposer, Proposer, RecyclingProposer, SuffixProposer};

pub(super) struct PromptLookupHome;

pub(super) struct RecyclingHome;

pub(super) struct SuffixHome;

impl MethodHome for PromptLookupHome {
    fn proposer(&self, engine: &Engine, params: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(PromptLookupProposer::with_cache(
            params.lookup,
            engine.drafters.ngram_cache.clone(),
        )))
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!("{:?}", params.lookup)
    }
}

impl MethodHome for RecyclingHome {
    fn proposer(&self, engine: &Engine, params: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(recycling_proposer(engine, params)))
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!("{:?}", params.lookup)
    }
}

impl MethodHome for SuffixHome {
    fn proposer(&self, engine: &Engine, params: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        // Seeded sampling's tokens depend on its drafts: it drafts from its own text only.
        Ok(Box::new(SuffixProposer::new(
            engine.scopes.get(params.scope.as_deref()).suffix.store.clone(),
            !params.seeded_sampling(),
        )))
    }
}

/// Token recycling from the request's scope's table (seeded sampling: a table of its own,
/// since its tokens depend on its drafts).
pub(super) fn recycling_proposer(engine: &Engine, params: &GenerateParams) -> RecyclingProposer {
    let vocab = engine.loaded.model.config().vocab_size;
    let table = if params.seeded_sampling() {
        RecyclingProposer::private_table(vocab)
    } else {
        engine.scopes.get(params.scope.as_deref()).recycled(vocab)
    };
    RecyclingProposer::new(table, params.lookup, engine.drafters.ngram_cache.clone())
}
