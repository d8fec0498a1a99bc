//! What the methods draft with, loaded once per engine and shared by its requests: a draft
//! model, Medusa heads, an EAGLE head and a static n-gram cache, each checked against the
//! target when it is added.

use std::sync::Arc;

use ahead_core::spec::NgramCache;
use ahead_model::eagle::EagleHead;
use ahead_model::medusa::MedusaHeads;
use ahead_model::{LoadedModel, Model, ModelConfig, Tokenizer};

use crate::error::{EngineError, Result};

/// The drafters an engine holds.
#[derive(Debug, Default)]
pub(super) struct Drafters {
    pub draft: Option<Draft>,
    pub medusa: Option<Arc<MedusaHeads>>,
    pub eagle: Option<Arc<EagleHead>>,
    pub ngram_cache: Option<Arc<NgramCache>>,
}

/// How a draft model's tokens reach the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftMode {
    /// Same vocabulary (same size, same piece for every id): tokens are verified as drafted,
    /// with the draft's distributions (exact rejection sampling).
    SharedVocabulary,
    /// Different vocabularies: drafted text is re-tokenized for the target and verified as
    /// one-hot proposals (exact, with lower acceptance when sampling).
    Retokenized,
}

impl DraftMode {
    pub fn describe(self) -> &'static str {
        match self {
            Self::SharedVocabulary => "shared vocabulary: drafts are verified token for token",
            Self::Retokenized => {
                "vocabularies differ: drafted text is re-tokenized for the target and verified strictly"
            }
        }
    }
}

/// A loaded draft model and how it is used.
#[derive(Debug)]
pub(super) struct Draft {
    pub model: Arc<Model>,
    pub mode: DraftMode,
    /// For `Retokenized`: the draft's and the target's tokenizers.
    pub tokenizers: Option<(Arc<Tokenizer>, Arc<Tokenizer>)>,
    /// Medusa heads trained on the draft (the hybrid), if any.
    pub medusa: Option<Arc<MedusaHeads>>,
    /// The default model's vendored draft: used by `Method::Draft`, not chosen by `Auto`
    /// (on CPUs where the tiny target's verify cost grows linearly it does not pay; see
    /// BENCHMARKS.md).
    pub embedded: bool,
}

impl Draft {
    pub fn shared(model: Model, embedded: bool) -> Self {
        Self {
            model: Arc::new(model),
            mode: DraftMode::SharedVocabulary,
            tokenizers: None,
            medusa: None,
            embedded,
        }
    }

    /// A draft with its tokenizer for `target`: the vocabularies compared to choose the mode;
    /// a draft whose file names a classifier subset (FR-Spec) scores only those tokens.
    pub fn loaded(draft: LoadedModel, target: &LoadedModel) -> Result<Self> {
        let (dt, tt) = (&draft.tokenizer, &target.tokenizer);
        let shared = draft.model.config().vocab_size == target.model.config().vocab_size
            && dt.vocab_size() == tt.vocab_size()
            && (0..tt.vocab_size() as u32).all(|id| dt.id_to_piece(id) == tt.id_to_piece(id));
        let model = match &draft.info.token_subset {
            Some(subset) => draft.model.restricted_to(subset)?,
            None => draft.model,
        };
        Ok(if shared {
            Self::shared(model, false)
        } else {
            Self {
                model: Arc::new(model),
                mode: DraftMode::Retokenized,
                tokenizers: Some((Arc::new(draft.tokenizer), Arc::new(tt.clone()))),
                medusa: None,
                embedded: false,
            }
        })
    }

    /// Gives the draft Medusa heads of its own (the hybrid proposer).
    pub fn set_medusa(&mut self, heads: MedusaHeads) -> Result<()> {
        let unavailable = |reason: String| EngineError::MethodUnavailable {
            method: "draft",
            reason,
        };
        if self.mode != DraftMode::SharedVocabulary {
            return Err(unavailable(
                "draft Medusa heads need a draft with the target's vocabulary".into(),
            ));
        }
        let cfg = self.model.config();
        if heads.dim() != cfg.dim || heads.vocab_size() != cfg.vocab_size {
            return Err(unavailable(format!(
                "the heads read hidden states of {} and predict {} tokens; the draft has {} and {}",
                heads.dim(),
                heads.vocab_size(),
                cfg.dim,
                cfg.vocab_size
            )));
        }
        self.medusa = Some(Arc::new(heads));
        self.embedded = false;
        Ok(())
    }
}

impl Drafters {
    /// Adds Medusa heads; they must read `target`'s hidden states and share its vocabulary.
    pub fn set_medusa(&mut self, heads: MedusaHeads, target: &ModelConfig) -> Result<()> {
        if heads.dim() != target.dim || heads.vocab_size() != target.vocab_size {
            return Err(EngineError::MethodUnavailable {
                method: "medusa",
                reason: format!(
                    "the heads read hidden states of {} and predict {} tokens; the model has {} and {}",
                    heads.dim(),
                    heads.vocab_size(),
                    target.dim,
                    target.vocab_size
                ),
            });
        }
        self.medusa = Some(Arc::new(heads));
        Ok(())
    }

    /// Adds a static n-gram cache for prompt lookup; it must predict `target`'s vocabulary.
    pub fn set_ngram_cache(&mut self, cache: NgramCache, target: &ModelConfig) -> Result<()> {
        if cache.vocab_size() != target.vocab_size {
            return Err(EngineError::MethodUnavailable {
                method: "prompt-lookup",
                reason: format!(
                    "the n-gram cache was built for a vocabulary of {}; the model has {}",
                    cache.vocab_size(),
                    target.vocab_size
                ),
            });
        }
        self.ngram_cache = Some(Arc::new(cache));
        Ok(())
    }

    /// The loaded draft, or why a method that needs one cannot run.
    pub fn draft(&self) -> Result<&Draft> {
        self.draft.as_ref().ok_or_else(|| EngineError::MethodUnavailable {
            method: "draft",
            reason: "no draft model is loaded (EngineBuilder::draft, --draft)".into(),
        })
    }

    /// The loaded Medusa heads, or why Medusa cannot run.
    pub fn medusa(&self) -> Result<&Arc<MedusaHeads>> {
        self.medusa
            .as_ref()
            .ok_or_else(|| EngineError::MethodUnavailable {
                method: "medusa",
                reason: "no Medusa heads are loaded (EngineBuilder::medusa, --medusa)".into(),
            })
    }

    /// The loaded EAGLE head, or why `method` (EAGLE or the hybrid) cannot run.
    pub fn eagle(&self, method: &'static str) -> Result<&Arc<EagleHead>> {
        self.eagle.as_ref().ok_or_else(|| EngineError::MethodUnavailable {
            method,
            reason: "no EAGLE head is loaded (EngineBuilder::eagle, --eagle)".into(),
        })
    }
}
