//! The configuration `ahead tune` writes and `generate` and `serve` read (`--config FILE`):
//! the method and parameters measured fastest for a model on a machine, with the measurements
//! behind the choice. Flags given on the command line win over the file.

use std::path::Path;

use ahead_core::spec::MedusaTree;
use ahead_engine::{GenerateParams, Method};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What was tuned, on what, and the choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tuned {
    /// The model it was tuned for, and the machine.
    pub model: String,
    pub machine: String,
    pub threads: usize,
    /// The chosen method, by name (`Method::names`).
    pub method: String,
    /// Fixed draft length (or tree size); absent: the controller chooses per step.
    pub num_draft: Option<usize>,
    /// The draft model chosen among the candidates (for `draft`).
    pub draft: Option<String>,
    /// Medusa's tree as paths of top-k ranks.
    pub medusa_choices: Option<Vec<Vec<usize>>>,
    pub lookahead_window: Option<usize>,
    pub lookahead_ngram: Option<usize>,
    pub lookahead_guesses: Option<usize>,
    /// Prompt lookup's confidence stop (with an n-gram cache).
    #[serde(default)]
    pub lookup_min_confidence: Option<f32>,
    /// The n-gram cache it was tuned with, when one was named (`--ngram-cache`).
    #[serde(default)]
    pub ngram_cache: Option<String>,
    /// The EAGLE head it was tuned with, when one was named (`--eagle`).
    #[serde(default)]
    pub eagle: Option<String>,
    /// Every configuration measured, fastest first.
    pub measured: Vec<Measured>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub name: String,
    pub tokens_per_second: f64,
    pub speedup_vs_vanilla: f64,
    pub mean_accepted_length: f64,
}

pub fn parse_method(s: &str) -> Result<Method> {
    match Method::from_name(s) {
        Some(m) => Ok(m),
        None => bail!("unknown method {s:?} in the tuned config: {}", Method::names()),
    }
}

impl Tuned {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: Tuned = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        parse_method(&t.method)?;
        if t.lookup_min_confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
            bail!("lookup_min_confidence in {} is not in [0, 1]", path.display());
        }
        if let Some(c) = &t.medusa_choices {
            MedusaTree::new(c.clone()).with_context(|| format!("medusa_choices in {}", path.display()))?;
        }
        Ok(t)
    }

    /// Fills what the command line left open: the method (when not given), and that method's
    /// parameters (each only when not given; the caller re-applies a given confidence stop).
    pub fn apply(&self, params: &mut GenerateParams, method_given: bool) -> Result<()> {
        if method_given {
            return Ok(());
        }
        params.method = parse_method(&self.method)?;
        params.num_draft = params.num_draft.or(self.num_draft);
        if params.medusa_tree.is_none() {
            if let Some(c) = &self.medusa_choices {
                params.medusa_tree = Some(MedusaTree::new(c.clone())?);
            }
        }
        params.lookahead_window = params.lookahead_window.or(self.lookahead_window);
        params.lookahead_ngram = params.lookahead_ngram.or(self.lookahead_ngram);
        params.lookahead_guesses = params.lookahead_guesses.or(self.lookahead_guesses);
        if let Some(c) = self.lookup_min_confidence {
            params.lookup.min_confidence = c;
        }
        Ok(())
    }
}
