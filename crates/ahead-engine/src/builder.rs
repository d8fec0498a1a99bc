//! [`EngineBuilder`]: where the model, its draft, Medusa heads, n-gram cache and suffix store
//! come from; the embedded default model brings its own vendored drafters.

use std::path::PathBuf;

use ahead_core::spec::NgramCache;
use ahead_model::medusa::MedusaHeads;
use ahead_model::{load, LoadOptions, ModelSource};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Configures where the model comes from.
#[derive(Debug, Clone, Default)]
pub struct EngineBuilder {
    model: Option<String>,
    tokenizer: Option<PathBuf>,
    draft: Option<String>,
    draft_tokenizer: Option<PathBuf>,
    medusa: Option<PathBuf>,
    eagle: Option<PathBuf>,
    draft_medusa: Option<PathBuf>,
    ngram_cache: Option<PathBuf>,
    suffix_store: Option<PathBuf>,
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

    /// A draft model for `Method::Draft` (same sources as `model`).
    pub fn draft(mut self, src: impl Into<String>) -> Self {
        self.draft = Some(src.into());
        self
    }

    /// Medusa heads for `Method::Medusa`: a folder in the original layout, or a hub id.
    pub fn medusa(mut self, dir: impl Into<PathBuf>) -> Self {
        self.medusa = Some(dir.into());
        self
    }

    /// An EAGLE head for `Method::Eagle`: a folder written by `ahead train eagle`.
    pub fn eagle(mut self, dir: impl Into<PathBuf>) -> Self {
        self.eagle = Some(dir.into());
        self
    }

    /// Medusa heads trained on the draft model (the hybrid: the draft drafts a whole tree in one
    /// step). The draft must share the target's vocabulary.
    pub fn draft_medusa(mut self, dir: impl Into<PathBuf>) -> Self {
        self.draft_medusa = Some(dir.into());
        self
    }

    /// A static n-gram cache for prompt lookup (written by `ahead train ngram`).
    pub fn ngram_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.ngram_cache = Some(path.into());
        self
    }

    /// The file suffix decoding's store of earlier outputs is kept in (read at build when it
    /// exists; written by `Engine::save_suffix_store`).
    pub fn suffix_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.suffix_store = Some(path.into());
        self
    }

    /// The tokenizer of a llama2.c draft checkpoint, when it is not beside it.
    pub fn draft_tokenizer(mut self, path: impl Into<PathBuf>) -> Self {
        self.draft_tokenizer = Some(path.into());
        self
    }

    /// Loads the model and its tokenizer (and the draft, if any).
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
        let mut engine = Engine::from_loaded(loaded);
        if source == ModelSource::Default {
            if self.draft.is_none() {
                engine = engine.with_embedded_draft(ahead_model::load::default_draft()?);
            }
            if self.medusa.is_none() {
                engine = engine.with_medusa(ahead_model::load::default_medusa()?)?;
            }
            if self.ngram_cache.is_none() {
                engine = engine.with_ngram_cache(default_ngram_cache()?)?;
            }
        }
        if let Some(path) = &self.ngram_cache {
            let bytes = std::fs::read(path).map_err(|e| {
                EngineError::InvalidRequest(format!("cannot read n-gram cache {}: {e}", path.display()))
            })?;
            let cache = NgramCache::from_bytes(&bytes).map_err(|source| EngineError::NgramCache {
                path: path.display().to_string(),
                source,
            })?;
            engine = engine.with_ngram_cache(cache)?;
        }
        if let Some(path) = &self.suffix_store {
            engine = engine.with_suffix_store_file(path)?;
        }
        if let Some(src) = &self.medusa {
            engine = engine.with_medusa(MedusaHeads::load(&medusa_dir(src)?)?)?;
        }
        if let Some(dir) = &self.eagle {
            let head = ahead_model::eagle::EagleHead::load(dir, engine.model())?;
            engine = engine.with_eagle(head);
        }
        if let Some(d) = &self.draft {
            let opts = LoadOptions {
                tokenizer: self.draft_tokenizer,
            };
            engine = engine.with_draft_loaded(load(&ModelSource::parse(d)?, &opts)?)?;
        }
        if let Some(src) = &self.draft_medusa {
            engine = engine.with_draft_medusa(MedusaHeads::load(&medusa_dir(src)?)?)?;
        }
        Ok(engine)
    }
}

/// The default model's vendored n-gram cache (`ahead train ngram`, see models/stories260K).
const DEFAULT_NGRAM_CACHE: &[u8] = include_bytes!("../../../models/stories260K/ngram-cache.bin");

/// The embedded default model's vendored n-gram cache (the builder adds it to that model).
pub fn default_ngram_cache() -> Result<NgramCache> {
    NgramCache::from_bytes(DEFAULT_NGRAM_CACHE).map_err(|source| EngineError::NgramCache {
        path: "stories260K ngram-cache.bin (embedded)".into(),
        source,
    })
}

/// The folder of Medusa heads given as a path or a hub id (resolved from the local cache first).
fn medusa_dir(src: &std::path::Path) -> Result<PathBuf> {
    let text = src.to_string_lossy();
    Ok(match ModelSource::parse(&text)? {
        ModelSource::Path(p) => p,
        ModelSource::Hub(id) => ahead_model::load::resolve_hub_files(&id, &ahead_model::medusa::FILES)?,
        ModelSource::Default => src.to_path_buf(),
    })
}
