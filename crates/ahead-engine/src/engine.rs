//! The library facade: build an [`Engine`] from a model source, then generate.
//!
//! ```
//! use ahead_engine::{Engine, GenerateParams, Prompt};
//! let engine = Engine::builder().build()?; // the embedded default model
//! let out = engine.generate(&[Prompt::from("Once upon a time")], &GenerateParams::default())?;
//! assert_eq!(out[0].stats.generated_tokens, out[0].token_ids.len());
//! # Ok::<(), ahead_engine::EngineError>(())
//! ```

use std::path::PathBuf;
use std::time::Instant;

use ahead_core::{sampling, Rng};
use ahead_model::{load, ForwardInput, LoadOptions, LoadedModel, Model, ModelSource, Tokenizer};

use crate::commit::{Committer, StopRules};
use crate::error::{EngineError, Result};
use crate::output::{FinishReason, Generation, Stats};
use crate::params::{GenerateParams, Method, Prompt};

/// Configures where the model comes from.
#[derive(Debug, Clone, Default)]
pub struct EngineBuilder {
    model: Option<String>,
    tokenizer: Option<PathBuf>,
}

impl EngineBuilder {
    /// A llama2.c `.bin`, a `.gguf`, a Hugging Face folder or a hub id; default: stories260K.
    pub fn model(mut self, src: impl Into<String>) -> Self {
        self.model = Some(src.into());
        self
    }

    /// The tokenizer of a llama2.c checkpoint, when it is not beside the checkpoint.
    pub fn tokenizer(mut self, path: impl Into<PathBuf>) -> Self {
        self.tokenizer = Some(path.into());
        self
    }

    /// Loads the model and its tokenizer.
    pub fn build(self) -> Result<Engine> {
        let source = match &self.model {
            Some(m) => ModelSource::parse(m)?,
            None => ModelSource::Default,
        };
        let loaded = load(
            &source,
            &LoadOptions {
                tokenizer: self.tokenizer,
            },
        )?;
        Ok(Engine { loaded })
    }
}

/// A loaded model ready to generate. Immutable; generate from several threads at once.
#[derive(Debug, Clone)]
pub struct Engine {
    loaded: LoadedModel,
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Wraps an already loaded model.
    pub fn from_loaded(loaded: LoadedModel) -> Self {
        Self { loaded }
    }

    pub fn model(&self) -> &Model {
        &self.loaded.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.loaded.tokenizer
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
        params.sampling.validate()?;
        if !matches!(params.method, Method::Vanilla | Method::Auto) {
            return Err(EngineError::MethodUnavailable {
                method: params.method.name(),
                reason: "not built yet".into(),
            });
        }
        let prompt_ids = self.prompt_ids(prompt)?;
        let model = &self.loaded.model;
        let context = model.config().max_seq_len;
        if prompt_ids.len() >= context {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {} tokens; the context holds {context}, leaving no room to generate",
                prompt_ids.len()
            )));
        }
        // Room for the prompt and every generated token but the last (which is never fed back).
        let capacity = (prompt_ids.len() + params.max_tokens).min(context);
        let mut cache = model.new_cache(capacity)?;
        let rules = StopRules {
            eos: self.loaded.tokenizer.eos_ids().to_vec(),
            ignore_eos: params.ignore_eos,
            stop: params.stop.clone(),
            max_tokens: params.max_tokens,
        };
        let mut committer = Committer::new(&self.loaded.tokenizer, &prompt_ids, rules);
        let mut rng = Rng::new(params.seed);
        let mut seen = prompt_ids.clone();
        let start = Instant::now();

        let positions: Vec<usize> = (0..prompt_ids.len()).collect();
        let mut logits = model
            .forward(&ForwardInput::causal(&prompt_ids, &positions), &mut cache)?
            .last()
            .to_vec();
        let prefill = start.elapsed();
        let mut forwards = 1;
        while committer.finished().is_none() {
            let token = sampling::choose(&logits, &params.sampling, &seen, &mut rng)?;
            committer.push(token)?;
            seen.push(token);
            // prompt + completion never exceeds the context window.
            if committer.finished().is_none() && cache.len() + 1 >= context {
                committer.finish(FinishReason::Length)?;
            }
            let delta = committer.take_delta();
            if !delta.is_empty() {
                on_text(&delta);
            }
            if committer.finished().is_some() {
                break;
            }
            let pos = [cache.len()];
            logits = model
                .forward(&ForwardInput::causal(&[token], &pos), &mut cache)?
                .last()
                .to_vec();
            forwards += 1;
        }
        let total = start.elapsed();
        let decode_s = (total - prefill).as_secs_f64();
        let generated = committer.tokens().len();
        let stats = Stats {
            method: Method::Vanilla.name().into(),
            target_forwards: forwards,
            generated_tokens: generated,
            drafted_tokens: 0,
            accepted_tokens: 0,
            mean_accepted_length: if forwards > 0 {
                generated as f64 / forwards as f64
            } else {
                0.0
            },
            tokens_per_second: if decode_s > 0.0 {
                generated as f64 / decode_s
            } else {
                0.0
            },
            elapsed_ms: total.as_secs_f64() * 1e3,
            prefill_ms: prefill.as_secs_f64() * 1e3,
        };
        Ok(Generation {
            text: committer.text().to_string(),
            token_ids: committer.tokens().to_vec(),
            prompt_token_ids: prompt_ids,
            finish_reason: committer.finished().unwrap_or(FinishReason::Length),
            stats,
        })
    }
}
