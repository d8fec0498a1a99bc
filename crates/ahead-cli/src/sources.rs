//! Where a command's model comes from: the flags every command shares (`--model`,
//! `--tokenizer`, `--draft`, `--draft-tokenizer`, `--medusa`, `--eagle`, `--draft-medusa`, `--ngram-cache`, `--suffix-store`), turned into an
//! engine in one place.

use std::path::Path;

use ahead_engine::Engine;
use anyhow::{Context, Result};

/// The model sources a command was given; `None` leaves the engine's default.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sources<'a> {
    pub model: Option<&'a str>,
    pub tokenizer: Option<&'a Path>,
    pub draft: Option<&'a str>,
    pub draft_tokenizer: Option<&'a Path>,
    pub medusa: Option<&'a str>,
    pub eagle: Option<&'a Path>,
    pub draft_medusa: Option<&'a str>,
    pub ngram_cache: Option<&'a Path>,
    pub suffix_store: Option<&'a Path>,
}

impl Sources<'_> {
    /// Loads the model with what was given.
    pub fn engine(&self) -> Result<Engine> {
        let mut b = Engine::builder();
        if let Some(m) = self.model {
            b = b.model(m);
        }
        if let Some(t) = self.tokenizer {
            b = b.tokenizer(t);
        }
        if let Some(d) = self.draft {
            b = b.draft(d);
        }
        if let Some(t) = self.draft_tokenizer {
            b = b.draft_tokenizer(t);
        }
        if let Some(m) = self.medusa {
            b = b.medusa(m);
        }
        if let Some(e) = self.eagle {
            b = b.eagle(e);
        }
        if let Some(m) = self.draft_medusa {
            b = b.draft_medusa(m);
        }
        if let Some(c) = self.ngram_cache {
            b = b.ngram_cache(c);
        }
        if let Some(s) = self.suffix_store {
            b = b.suffix_store(s);
        }
        b.build().context("loading the model")
    }
}
