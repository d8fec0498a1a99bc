//! The library facade: build an [`Engine`] from a model source, then generate.
//!
//! ```
//! use ahead_engine::{Engine, GenerateParams, Prompt};
//! let engine = Engine::builder().build()?; // the embedded default model
//! let out = engine.generate(&[Prompt::from("Once upon a time")], &GenerateParams::default())?;
//! assert_eq!(out[0].stats.generated_tokens, out[0].token_ids.len());
//! # Ok::<(), ahead_engine::EngineError>(())
//! ```

use std::sync::{Arc, OnceLock};

use ahead_core::spec::{Controller, NgramCache};
use ahead_model::eagle::EagleHead;
use ahead_model::medusa::MedusaHeads;
use ahead_model::tokenizer::{ChatMessage, ChatPrompt, ChatTemplate};
use ahead_model::{LoadedModel, Model, Tokenizer};

mod costs;
mod drafters;
mod methods;
mod scopes;
use costs::Costs;
pub use drafters::DraftMode;
use drafters::{Draft, Drafters};
use scopes::Scopes;

use crate::builder::EngineBuilder;
use crate::decode::{Sequence, StepInspector};
use crate::error::{EngineError, Result};
use crate::grammar::GrammarEnv;
use crate::learned::LearnedByMethod;
use crate::logprobs::MAX_TOP_LOGPROBS;
use crate::output::Generation;
use crate::params::{GenerateParams, Prompt};
use crate::prefix::PrefixCache;
use crate::spec::suffix::{SharedSuffixStore, SuffixState};
use crate::spec::Proposer;

/// A loaded model ready to generate. Immutable; generate from several threads at once.
#[derive(Debug)]
pub struct Engine {
    loaded: LoadedModel,
    /// What the methods draft with (draft model, heads, n-gram cache).
    drafters: Drafters,
    costs: OnceLock<Costs>,
    /// Costs from the models' sizes alone, for seeded sampling (see `costs_for`).
    nominal: OnceLock<Costs>,
    /// Each method's acceptance as its finished requests measured it: a request's controller
    /// starts there (see `learned`).
    learned: LearnedByMethod,
    /// What drafters learn across requests, per scope (`GenerateParams::scope`).
    scopes: Scopes,
    /// Finished requests' KV rows, for requests that start with the same tokens.
    prefix: Option<PrefixCache>,
    /// The vocabulary indexed for grammars, at the first request that has one.
    grammar_env: OnceLock<std::result::Result<GrammarEnv, String>>,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Wraps an already loaded model.
    pub fn from_loaded(loaded: LoadedModel) -> Self {
        let vocab_size = loaded.model.config().vocab_size;
        Self {
            loaded,
            drafters: Drafters::default(),
            costs: OnceLock::new(),
            nominal: OnceLock::new(),
            learned: LearnedByMethod::default(),
            scopes: Scopes::new(vocab_size),
            prefix: None,
            grammar_env: OnceLock::new(),
        }
    }

    /// Reuses finished requests' KV rows for requests that start with the same tokens, within
    /// `bytes` (0: off).
    pub fn with_prefix_cache(mut self, bytes: usize) -> Self {
        let cfg = self.loaded.model.config();
        let per_token = cfg.n_layers * cfg.kv_dim() * 2 * std::mem::size_of::<f32>();
        self.prefix = (bytes > 0).then(|| PrefixCache::new(bytes, per_token));
        self
    }

    /// The vocabulary indexed for grammars (built at the first use).
    pub(crate) fn grammar_env(&self) -> Result<&GrammarEnv> {
        self.grammar_env
            .get_or_init(|| GrammarEnv::new(&self.loaded.tokenizer).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| EngineError::Internal(e.clone()))
    }

    /// The prefix cache, if on.
    pub fn prefix_cache(&self) -> Option<&PrefixCache> {
        self.prefix.as_ref()
    }

    /// Keeps suffix decoding's store of earlier outputs in `path`: read now if it exists,
    /// written by [`Engine::save_suffix_store`].
    pub fn with_suffix_store_file(mut self, path: &std::path::Path) -> Result<Self> {
        let state = SuffixState::from_file(path, self.loaded.model.config().vocab_size)?;
        self.scopes = self.scopes.with_default_suffix(state);
        Ok(self)
    }

    /// Writes the default scope's suffix store to its file (nothing without one).
    pub fn save_suffix_store(&self) -> Result<()> {
        self.scopes.default_scope().suffix.save()
    }

    /// Suffix decoding's store of earlier requests' outputs in `scope` (`None`: the default).
    pub fn suffix_store(&self, scope: Option<&str>) -> SharedSuffixStore {
        self.scopes.get(scope).suffix.store.clone()
    }

    /// Adds the default model's vendored draft: `Method::Draft` uses it, `Auto` does not.
    pub(crate) fn with_embedded_draft(mut self, draft: Model) -> Self {
        self.drafters.draft = Some(Draft::shared(draft, true));
        self
    }

    /// Adds a draft model without a tokenizer: it must share the target's vocabulary.
    pub fn with_draft(mut self, draft: Model) -> Self {
        self.drafters.draft = Some(Draft::shared(draft, false));
        self
    }

    /// Adds a draft model with its tokenizer; compares the vocabularies to choose the mode. A
    /// draft whose file names a classifier subset (FR-Spec, `ahead train draft
    /// --vocab-subset`) scores only those tokens.
    pub fn with_draft_loaded(mut self, draft: LoadedModel) -> Result<Self> {
        self.drafters.draft = Some(Draft::loaded(draft, &self.loaded)?);
        Ok(self)
    }

    /// Adds Medusa heads; they must read this model's hidden states and share its vocabulary.
    pub fn with_medusa(mut self, heads: MedusaHeads) -> Result<Self> {
        self.drafters.set_medusa(heads, self.loaded.model.config())?;
        Ok(self)
    }

    /// Adds an EAGLE head (built over this model's embedding and classifier, so it fits).
    pub fn with_eagle(mut self, head: EagleHead) -> Self {
        self.drafters.eagle = Some(Arc::new(head));
        self
    }

    /// The loaded EAGLE head, if any.
    pub fn eagle_head(&self) -> Option<&EagleHead> {
        self.drafters.eagle.as_deref()
    }

    /// Adds a static n-gram cache for prompt lookup; it must predict this model's vocabulary.
    pub fn with_ngram_cache(mut self, cache: NgramCache) -> Result<Self> {
        self.drafters.set_ngram_cache(cache, self.loaded.model.config())?;
        Ok(self)
    }

    /// The loaded n-gram cache, if any.
    pub fn ngram_cache(&self) -> Option<&NgramCache> {
        self.drafters.ngram_cache.as_deref()
    }

    /// Gives the loaded draft model Medusa heads of its own (the hybrid proposer).
    pub fn with_draft_medusa(mut self, heads: MedusaHeads) -> Result<Self> {
        let draft = self
            .drafters
            .draft
            .as_mut()
            .ok_or_else(|| EngineError::MethodUnavailable {
                method: "draft",
                reason: "draft Medusa heads need a draft model (--draft)".into(),
            })?;
        draft.set_medusa(heads)?;
        Ok(self)
    }

    /// The loaded Medusa heads, if any.
    pub fn medusa_heads(&self) -> Option<&MedusaHeads> {
        self.drafters.medusa.as_deref()
    }

    /// How the loaded draft model (if any) is used.
    pub fn draft_mode(&self) -> Option<DraftMode> {
        self.drafters.draft.as_ref().map(|d| d.mode)
    }

    pub fn model(&self) -> &Model {
        &self.loaded.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.loaded.tokenizer
    }

    /// Renders and tokenizes a chat through the model's template (message content stays text:
    /// only the template's own text yields control tokens).
    pub fn chat_prompt(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<ChatPrompt> {
        Ok(self
            .loaded
            .tokenizer
            .encode_chat(messages, add_generation_prompt)?)
    }

    /// Uses `template` for chats instead of the model's own; its end-of-turn token then ends
    /// generation too.
    pub fn set_chat_template(&mut self, template: ChatTemplate) {
        self.loaded.tokenizer.set_chat_template(Some(template));
    }

    pub fn loaded(&self) -> &LoadedModel {
        &self.loaded
    }

    /// Token ids of a prompt: text gets the model's BOS rule; ids are checked against the vocabulary.
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        let ids = match prompt {
            Prompt::Text(t) => self.loaded.tokenizer.encode(t, self.loaded.tokenizer.add_bos())?,
            Prompt::Ids(ids) => ids.clone(),
        };
        let vocab = self.loaded.model.config().vocab_size;
        if ids.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "prompt token {bad} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(ids)
    }

    /// Generates a completion for every prompt, in order.
    pub fn generate(&self, prompts: &[Prompt], params: &GenerateParams) -> Result<Vec<Generation>> {
        prompts
            .iter()
            .map(|p| self.generate_one(p, params, &mut |_| {}))
            .collect()
    }

    /// Generates one completion, handing each piece of final text to `on_text` as it is ready.
    pub fn generate_one(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        self.generate_inspected(prompt, params, on_text, None, None)
    }

    /// `generate_one` that stops before the next step once `cancel` is set (a client that went
    /// away): the result then ends with `FinishReason::Cancelled`.
    pub fn generate_cancellable(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Generation> {
        self.generate_inspected(prompt, params, on_text, None, Some(cancel))
    }

    /// `generate_one`, calling `inspect` with the target cache and the committed tokens after
    /// every step that does not finish the generation (for invariant tests).
    #[doc(hidden)]
    pub fn generate_inspected(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
        inspect: Option<StepInspector<'_, '_>>,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Generation> {
        let mut seq = self.sequence(prompt, params, false)?;
        seq.run(on_text, inspect, cancel)?;
        Ok(seq.finish())
    }

    /// `generate_one` with a proposer of the caller's (a measuring instrument such as
    /// [`OracleProposer`](crate::spec::OracleProposer)) in place of `params.method`'s. It drafts
    /// `params.num_draft` tokens a step when given, else as many as the cost controller
    /// chooses. Verification is the same exact acceptance as for every method.
    pub fn generate_with_proposer(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        proposer: Box<dyn Proposer>,
    ) -> Result<Generation> {
        let mut seq = self.sequence_with(prompt, params, false, proposer)?;
        seq.run(&mut |_| {}, None, None)?;
        Ok(seq.finish())
    }

    /// A generation ready to step with the caller's proposer (see `generate_with_proposer`).
    pub(crate) fn sequence_with(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        chunked: bool,
        proposer: Box<dyn Proposer>,
    ) -> Result<Sequence<'_>> {
        let prompt_ids = self.checked_prompt(prompt, params)?;
        let controller = match params.num_draft {
            Some(k) => Controller::fixed(k),
            None => self.cost_controller(params, 0.0, proposer.as_ref())?,
        };
        Sequence::start(self, proposer, controller, prompt_ids, params, chunked)
    }

    /// The prompt's ids, after checking the request's sampling and draft length.
    fn checked_prompt(&self, prompt: &Prompt, params: &GenerateParams) -> Result<Vec<u32>> {
        params.sampling.validate()?;
        if params.num_draft.is_some_and(|k| k > MAX_DRAFT) {
            return Err(EngineError::InvalidRequest(format!(
                "num_draft must be at most {MAX_DRAFT}"
            )));
        }
        params.adjust.validate(self.loaded.model.config().vocab_size)?;
        if params.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(EngineError::InvalidRequest(format!(
                "at most {MAX_TOP_LOGPROBS} alternatives per token can be reported"
            )));
        }
        self.prompt_ids(prompt)
    }

    /// The cost-model controller for a proposer whose drafts cost `draft_cost` target steps
    /// per token.
    fn cost_controller(
        &self,
        params: &GenerateParams,
        draft_cost: f64,
        proposer: &dyn Proposer,
    ) -> Result<Controller> {
        let mut c = Controller::new(self.costs_for(params)?.verify.clone(), draft_cost);
        if proposer.stops_own_drafts() {
            c = c.with_proposer_limiting_length();
        }
        if proposer.offers_as_long_as_its_match() {
            c = c.with_offers_judged_by_length();
        }
        Ok(c)
    }

    /// A generation ready to step: the prompt checked and prefilled (now, or a chunk per step
    /// when `chunked`), its proposer and controller chosen for `params`.
    pub(crate) fn sequence(
        &self,
        prompt: &Prompt,
        params: &GenerateParams,
        chunked: bool,
    ) -> Result<Sequence<'_>> {
        let prompt_ids = self.checked_prompt(prompt, params)?;
        let model = &self.loaded.model;
        let capacity = (prompt_ids.len() + params.max_tokens + MAX_DRAFT).min(model.config().max_seq_len);
        let method = self.resolved_method(params);
        let proposer = self.proposer_for(method, params, capacity)?;
        let controller = self.controller_for(method, params, proposer.as_ref())?;
        let learning = self.learning_key(method, params);
        let controller = match &learning {
            Some(key) => self.learned.start(key, controller),
            None => controller,
        };
        let seq = Sequence::start(self, proposer, controller, prompt_ids, params, chunked)?;
        Ok(match learning {
            Some(key) => seq.learning_into(&self.learned, key),
            None => seq,
        })
    }

    /// The acceptance per draft position that `params`' method has measured on this engine's
    /// finished requests (the start of its next request's controller), if any.
    pub fn learned_acceptance(&self, params: &GenerateParams) -> Option<Vec<f64>> {
        let method = self.resolved_method(params);
        let key = self.learning_key(method, params)?;
        self.learned.get(&key).map(|l| l.acceptance().to_vec())
    }
}

/// Most draft tokens (or Medusa tree nodes) per step.
pub const MAX_DRAFT: usize = 16;
