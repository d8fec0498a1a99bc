//! The flags every decoding command shares (`generate`, `chat`): where the model comes from,
//! the sampler, the method and its parameters, turned into an engine and `GenerateParams` in
//! one place.

use std::path::Path;

use ahead_core::sampling::LogitAdjust;
use ahead_core::spec::{MedusaTree, PromptLookup};
use ahead_engine::{Engine, GenerateParams, Grammar, MedusaAcceptance as Verify, Method, SamplingParams};
use ahead_model::tokenizer::ChatTemplate;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::sources::Sources;
use crate::tuned::Tuned;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MedusaAcceptance {
    /// Rejection sampling over the tree: the model's own distribution (the default).
    Exact,
    /// Medusa's typical acceptance: LOSSY when sampling; the output no longer follows the
    /// model's distribution exactly (greedy output is unaffected).
    Typical,
}

#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Model: llama2.c .bin, .gguf, Hugging Face folder or hub id (default: embedded stories260K).
    #[arg(long)]
    pub model: Option<String>,
    /// llama2.c tokenizer .bin (default: tokenizer.bin or the single tok*.bin beside the model).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// A Jinja chat template to use instead of the model's own (or for a model without one).
    #[arg(long)]
    pub chat_template: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Emit the end-of-sequence token like any other and go on to --max-tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Stop when the text contains this string (repeatable); the text ends before it.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Decoding method: vanilla, draft, prompt-lookup, medusa, eagle, recycling, suffix, hybrid,
    /// lookahead or auto
    /// [default: auto, or the --config file's].
    #[arg(long, value_parser = method_arg)]
    pub method: Option<Method>,
    /// A config written by `ahead tune`: its method and parameters apply unless --method is given.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    #[arg(long)]
    pub draft: Option<String>,
    #[arg(long)]
    pub draft_tokenizer: Option<std::path::PathBuf>,
    /// Draft exactly K tokens per step (default: chosen per step from measured costs).
    #[arg(long)]
    pub num_draft: Option<usize>,
    /// Prompt lookup: longest n-gram to match (tried first).
    #[arg(long, default_value_t = 3)]
    pub lookup_max_ngram: usize,
    /// Prompt lookup: shortest n-gram to match.
    #[arg(long, default_value_t = 1)]
    pub lookup_min_ngram: usize,
    /// Prompt lookup with an n-gram cache: stop a draft where the product of its tokens'
    /// confidences falls below this [default: 0.5, or the --config file's].
    #[arg(long)]
    pub lookup_min_confidence: Option<f32>,
    /// Static n-gram cache for prompt lookup, from `ahead train ngram` (default: the embedded
    /// model's vendored cache).
    #[arg(long)]
    pub ngram_cache: Option<std::path::PathBuf>,
    /// OpenAI's presence penalty: subtracted once from every token the output holds [-2, 2].
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted per occurrence in the output [-2, 2].
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub frequency_penalty: f32,
    /// Add BIAS to token ID's logit (repeatable; -100 bans it, +100 forces it).
    #[arg(long, value_parser = logit_bias_arg, allow_hyphen_values = true)]
    pub logit_bias: Vec<(u32, f32)>,
    /// End-of-sequence is impossible before this many tokens.
    #[arg(long, default_value_t = 0)]
    pub min_tokens: usize,
    /// Structured output: any JSON object.
    #[arg(long, conflicts_with_all = ["json_schema", "regex"])]
    pub json_object: bool,
    /// Structured output: JSON matching the JSON schema in FILE.
    #[arg(long, conflicts_with = "regex")]
    pub json_schema: Option<std::path::PathBuf>,
    /// Structured output: text matching this regular expression.
    #[arg(long)]
    pub regex: Option<String>,
    /// Report each generated token's log-probability and its N most likely alternatives (up
    /// to 20), in --json output as `logprobs`: the model's own numbers, whatever the method.
    #[arg(long)]
    pub logprobs: Option<usize>,
    /// Suffix decoding's store of earlier outputs: read from FILE when it exists, written back
    /// at the end (default: in memory only).
    #[arg(long)]
    pub suffix_store: Option<std::path::PathBuf>,
    /// Medusa heads: a folder with config.json and medusa_lm_head.safetensors (default: the
    /// embedded model's vendored heads).
    #[arg(long)]
    pub medusa: Option<String>,
    /// An EAGLE head for `--method eagle`: a folder written by `ahead train eagle`.
    #[arg(long)]
    pub eagle: Option<std::path::PathBuf>,
    /// Medusa heads trained on the draft model (`ahead train medusa --base DRAFT`): the draft
    /// then drafts a whole tree per step (the hybrid).
    #[arg(long)]
    pub draft_medusa: Option<String>,
    /// How Medusa candidates are verified when sampling. `typical` is LOSSY.
    #[arg(long, value_enum)]
    pub medusa_acceptance: Option<MedusaAcceptance>,
    /// Typical acceptance: the probability a candidate must beat (capped by the entropy rule).
    #[arg(long, default_value_t = 0.09)]
    pub posterior_threshold: f64,
    /// Typical acceptance: alpha in min(threshold, alpha * exp(-entropy)).
    #[arg(long, default_value_t = 0.3)]
    pub posterior_alpha: f64,
    /// Medusa candidate tree as JSON paths of top-k ranks (e.g. "[[0],[0,0],[1]]") or a file
    /// holding them (default: chosen from the heads' measured accuracy and this machine's
    /// verify cost, else a small CPU tree).
    #[arg(long)]
    pub medusa_choices: Option<String>,
    /// Lookahead: window size W (default: chosen from this machine's verify cost).
    #[arg(long)]
    pub lookahead_window: Option<usize>,
    /// Lookahead: n-gram size N.
    #[arg(long)]
    pub lookahead_ngram: Option<usize>,
    /// Lookahead: most candidate n-grams verified per step G.
    #[arg(long)]
    pub lookahead_guesses: Option<usize>,
}

/// `--logit-bias ID=BIAS`.
fn logit_bias_arg(s: &str) -> std::result::Result<(u32, f32), String> {
    let (id, bias) = s.split_once('=').ok_or("ID=BIAS, e.g. 50256=-100")?;
    let id = id.trim().parse().map_err(|e| format!("token id {id:?}: {e}"))?;
    let bias = bias.trim().parse().map_err(|e| format!("bias {bias:?}: {e}"))?;
    Ok((id, bias))
}

/// `--method NAME`: one of `Method::names`.
fn method_arg(name: &str) -> std::result::Result<Method, String> {
    Method::from_name(name).ok_or_else(|| format!("one of {}", Method::names()))
}

impl DecodeArgs {
    /// The grammar the flags ask for, if any.
    fn grammar(&self) -> Result<Option<Grammar>> {
        Ok(if self.json_object {
            Some(Grammar::JsonObject)
        } else if let Some(path) = &self.json_schema {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let schema =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            Some(Grammar::JsonSchema(schema))
        } else {
            self.regex.clone().map(Grammar::Regex)
        })
    }

    /// Loads the engine and turns the flags (and the tuned config) into generation parameters.
    pub fn load(&self) -> Result<(Engine, GenerateParams)> {
        let a = &mut self.clone();
        let tuned = a.config.as_deref().map(Tuned::load).transpose()?;
        // The tuned draft model, when the tuned method is used and no draft was named.
        if let (Some(t), None, None) = (&tuned, &a.method, &a.draft) {
            a.draft = t.draft.clone();
        }
        // Likewise its n-gram cache.
        if let (Some(t), None, None) = (&tuned, &a.method, &a.ngram_cache) {
            a.ngram_cache = t.ngram_cache.as_ref().map(Into::into);
        }
        // And its EAGLE head.
        if let (Some(t), None, None) = (&tuned, &a.method, &a.eagle) {
            a.eagle = t.eagle.as_ref().map(Into::into);
        }
        let method = a.method.unwrap_or(Method::Auto);
        let medusa_tree = match &a.medusa_choices {
            None => None,
            Some(c) => {
                let json = if std::path::Path::new(c).is_file() {
                    std::fs::read_to_string(c).with_context(|| format!("reading {c}"))?
                } else {
                    c.clone()
                };
                Some(MedusaTree::parse(&json)?)
            }
        };
        let medusa_acceptance = match a.medusa_acceptance {
            Some(MedusaAcceptance::Typical) => {
                if !(0.0..=1.0).contains(&a.posterior_threshold) || !(0.0..=1.0).contains(&a.posterior_alpha)
                {
                    bail!("--posterior-threshold and --posterior-alpha must be in [0, 1]");
                }
                if a.temperature > 0.0 {
                    eprintln!("medusa: typical acceptance is lossy: sampled output may differ from the model's distribution");
                }
                Verify::Typical {
                    posterior_threshold: a.posterior_threshold,
                    posterior_alpha: a.posterior_alpha,
                }
            }
            _ => Verify::Exact,
        };
        let engine = Sources {
            eagle: a.eagle.as_deref(),
            model: a.model.as_deref(),
            tokenizer: a.tokenizer.as_deref(),
            draft: a.draft.as_deref(),
            draft_tokenizer: a.draft_tokenizer.as_deref(),
            medusa: a.medusa.as_deref(),
            ngram_cache: a.ngram_cache.as_deref(),
            suffix_store: a.suffix_store.as_deref(),
            draft_medusa: a.draft_medusa.as_deref(),
        }
        .engine()?;
        let engine = with_chat_template(engine, a.chat_template.as_deref())?;
        if matches!(a.method, None | Some(Method::Draft | Method::Auto)) && a.draft.is_some() {
            if let Some(mode) = engine.draft_mode() {
                eprintln!("draft: {}", mode.describe());
            }
        }
        let mut params = GenerateParams {
            max_tokens: a.max_tokens,
            sampling: SamplingParams {
                temperature: a.temperature,
                top_k: a.top_k,
                top_p: a.top_p,
                min_p: a.min_p,
                repetition_penalty: a.repetition_penalty,
            },
            seed: a.seed,
            stop: a.stop.clone(),
            ignore_eos: a.ignore_eos,
            method,
            num_draft: a.num_draft,
            lookup: PromptLookup {
                max_ngram: a.lookup_max_ngram,
                min_ngram: a.lookup_min_ngram,
                min_confidence: PromptLookup::default().min_confidence,
            },
            medusa_tree,
            medusa_acceptance,
            lookahead_window: a.lookahead_window,
            lookahead_ngram: a.lookahead_ngram,
            lookahead_guesses: a.lookahead_guesses,
            reproducible: true,
            scope: None,
            logprobs: a.logprobs,
            adjust: LogitAdjust {
                presence_penalty: a.presence_penalty,
                frequency_penalty: a.frequency_penalty,
                logit_bias: a.logit_bias.clone(),
                min_tokens: a.min_tokens,
            },
            grammar: a.grammar()?,
        };
        if let Some(t) = &tuned {
            t.apply(&mut params, a.method.is_some())?;
        }
        if let Some(c) = a.lookup_min_confidence {
            if !(0.0..=1.0).contains(&c) {
                bail!("--lookup-min-confidence must be in [0, 1]");
            }
            params.lookup.min_confidence = c;
        }
        if a.lookup_min_ngram == 0 || a.lookup_min_ngram > a.lookup_max_ngram {
            bail!("--lookup-min-ngram must be at least 1 and at most --lookup-max-ngram");
        }
        Ok((engine, params))
    }
}

/// Replaces the model's chat template with the one in `path` (a Jinja file), if given.
pub fn with_chat_template(mut engine: Engine, path: Option<&Path>) -> Result<Engine> {
    if let Some(path) = path {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("reading the chat template {}", path.display()))?;
        let template =
            ChatTemplate::new(source).with_context(|| format!("the chat template {}", path.display()))?;
        engine.set_chat_template(template);
    }
    Ok(engine)
}
