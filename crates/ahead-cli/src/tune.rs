//! `ahead tune`: measures, on this machine, every method with a range of parameters (and every
//! candidate draft model), picks the fastest lossless configuration, and writes it as a config
//! that `generate --config` and `serve --config` read.
//!
//! Typical acceptance is not a candidate: it is lossy, and tuning must not trade the model's
//! output for speed behind the user's back.

use std::io::Write;
use std::path::PathBuf;

use ahead_core::spec::MedusaTree;
use ahead_engine::{Engine, GenerateParams, Method};
use anyhow::{Context, Result};
use clap::Args;

use crate::bench::methods::{embedded_workload, measure, runnable, Candidate};
use crate::bench::suite;
use crate::sources::Sources;
use crate::tuned::{Measured, Tuned};

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Model to tune for (default: the embedded stories260K).
    pub model: Option<String>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A candidate draft model (repeatable): each is measured and the best kept. Default: the
    /// model's own vendored draft, if any.
    #[arg(long = "draft")]
    pub drafts: Vec<String>,
    #[arg(long)]
    pub draft_tokenizer: Option<PathBuf>,
    /// Static n-gram cache for prompt lookup, from `ahead train ngram` (default: the embedded
    /// model's vendored cache).
    #[arg(long)]
    pub ngram_cache: Option<std::path::PathBuf>,
    /// Medusa heads folder (default: the model's vendored heads, if any).
    #[arg(long)]
    pub medusa: Option<String>,
    /// EAGLE head folder (from `ahead train eagle`): `eagle` is measured with it.
    #[arg(long)]
    pub eagle: Option<PathBuf>,
    /// Where to write the config.
    #[arg(long, default_value = "ahead-tuned.json")]
    pub out: PathBuf,
    /// Prompts per suite (stories and code), tokens per prompt, passes.
    #[arg(long, default_value_t = 6, conflicts_with = "suite")]
    pub prompts: usize,
    /// Tune on a question file through the model's chat template, as `bench --suite` runs it:
    /// what a chat model is asked.
    #[command(flatten)]
    pub suite: suite::SuiteArgs,
    #[arg(long, default_value_t = 96)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Print the config as JSON on stdout too.
    #[arg(long)]
    pub json: bool,
}

/// Least speedup over vanilla for a speculative configuration to be chosen: less is within
/// the noise of a shared machine, and plain decoding is the safer default then.
const MIN_GAIN: f64 = 1.05;
/// Least mean accepted length of a configuration that counts as speculating.
const MIN_ACCEPTED: f64 = 1.05;

/// A configuration: its name, its parameters, and which draft (index) it runs with.
struct Config {
    name: String,
    params: GenerateParams,
    draft: Option<usize>,
}

fn params(method: Method, num_draft: Option<usize>) -> GenerateParams {
    GenerateParams {
        method,
        num_draft,
        ..GenerateParams::default()
    }
}

/// Prompt lookup's confidence stops tried besides the default, with an n-gram cache.
const MIN_CONFIDENCES: [f32; 2] = [0.35, 0.65];

/// Everything tried: each method with the controller and with fixed settings (and with an
/// n-gram cache, prompt lookup's confidence stop).
fn configs(drafts: usize, cache: bool) -> Vec<Config> {
    let plain = |name: &str, params| Config {
        name: name.to_string(),
        params,
        draft: None,
    };
    let mut out = vec![
        plain("vanilla", params(Method::Vanilla, None)),
        plain("prompt-lookup", params(Method::PromptLookup, None)),
        plain("prompt-lookup k=2", params(Method::PromptLookup, Some(2))),
        plain("prompt-lookup k=4", params(Method::PromptLookup, Some(4))),
    ];
    if cache {
        for c in MIN_CONFIDENCES {
            let mut p = params(Method::PromptLookup, None);
            p.lookup.min_confidence = c;
            out.push(plain(&format!("prompt-lookup C={c}"), p));
        }
    }
    out.extend([
        plain("medusa", params(Method::Medusa, None)),
        plain("medusa k=1", params(Method::Medusa, Some(1))),
        Config {
            name: "medusa 6-node tree".into(),
            params: GenerateParams {
                medusa_tree: Some(MedusaTree::default_cpu()),
                ..params(Method::Medusa, Some(6))
            },
            draft: None,
        },
        plain("eagle", params(Method::Eagle, None)),
        plain("eagle k=2", params(Method::Eagle, Some(2))),
        plain("eagle k=4", params(Method::Eagle, Some(4))),
        plain("recycling", params(Method::Recycling, None)),
        plain("recycling k=4", params(Method::Recycling, Some(4))),
        plain("recycling k=8", params(Method::Recycling, Some(8))),
        plain("suffix", params(Method::Suffix, None)),
        plain("suffix k=8", params(Method::Suffix, Some(8))),
        plain("hybrid", params(Method::Hybrid, None)),
        plain("hybrid k=8", params(Method::Hybrid, Some(8))),
        plain("lookahead", params(Method::Lookahead, None)),
        // Prompt lookup beside the EAGLE head, if one is loaded (else prompt lookup again).
        plain("auto", params(Method::Auto, None)),
    ]);
    for (w, n, g) in [(4, 4, 4), (8, 4, 8), (15, 5, 15)] {
        out.push(plain(
            &format!("lookahead W{w} N{n} G{g}"),
            GenerateParams {
                lookahead_window: Some(w),
                lookahead_ngram: Some(n),
                lookahead_guesses: Some(g),
                ..params(Method::Lookahead, Some(16))
            },
        ));
    }
    for d in 0..drafts {
        // Prompt lookup beside this draft.
        out.push(Config {
            name: format!("draft #{} auto", d + 1),
            params: params(Method::Auto, None),
            draft: Some(d),
        });
        for k in [None, Some(1), Some(2), Some(4)] {
            out.push(Config {
                name: format!(
                    "draft #{} {}",
                    d + 1,
                    k.map_or("controller".into(), |k| format!("k={k}"))
                ),
                params: params(Method::Draft, k),
                draft: Some(d),
            });
        }
    }
    out
}

fn engine(a: &TuneArgs, draft: Option<&str>) -> Result<Engine> {
    Sources {
        eagle: a.eagle.as_deref(),
        model: a.model.as_deref(),
        tokenizer: a.tokenizer.as_deref(),
        draft,
        draft_tokenizer: a.draft_tokenizer.as_deref(),
        medusa: a.medusa.as_deref(),
        ngram_cache: a.ngram_cache.as_deref(),
        suffix_store: None,
        draft_medusa: None,
    }
    .engine()
}

pub fn run(a: TuneArgs) -> Result<()> {
    let base = crate::decoding::with_chat_template(engine(&a, None)?, a.suite.chat_template.as_deref())?;
    // One engine per candidate draft (the default engine carries the model's own, if any).
    let drafted: Vec<Engine> = a
        .drafts
        .iter()
        .map(|d| crate::decoding::with_chat_template(engine(&a, Some(d))?, a.suite.chat_template.as_deref()))
        .collect::<Result<_>>()?;
    let n_drafts = if a.drafts.is_empty() { 1 } else { a.drafts.len() };
    let configs = configs(n_drafts, base.ngram_cache().is_some());
    let mut candidates: Vec<Candidate<'_>> = configs
        .iter()
        .map(|c| Candidate {
            name: c.name.clone(),
            engine: match c.draft {
                Some(d) if !drafted.is_empty() => &drafted[d],
                _ => &base,
            },
            params: c.params.clone(),
            oracle: false,
        })
        .collect();
    // `auto` without a model drafter is prompt lookup, already a row.
    candidates.retain(|c| {
        !(c.params.method == Method::Auto && c.engine.resolved_method(&c.params) == Method::PromptLookup)
    });
    let skipped = runnable(&mut candidates);
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    let work = match &a.suite.suite {
        Some(path) => suite::workload(
            &base,
            path,
            a.suite.limit_per_category,
            a.max_tokens,
            Default::default(),
            0,
        )?,
        None => embedded_workload(a.prompts, a.max_tokens, Default::default(), 0)?,
    };
    let reports = measure(&candidates, &work, a.runs, 1)?;
    let mut measured: Vec<Measured> = reports
        .iter()
        .map(|r| Measured {
            name: r.method.clone(),
            tokens_per_second: r.tokens_per_second,
            speedup_vs_vanilla: r.speedup_vs_vanilla,
            mean_accepted_length: r.mean_accepted_length,
        })
        .collect();
    measured.sort_by(|x, y| y.tokens_per_second.total_cmp(&x.tokens_per_second));
    // A configuration must beat plain decoding by more than the machine's noise to be chosen.
    // And it must actually speculate: one that drafted (almost) nothing ran as plain decoding,
    // and its lead is noise.
    let best = measured
        .iter()
        .find(|m| m.name == "vanilla" || m.mean_accepted_length >= MIN_ACCEPTED)
        .filter(|m| m.speedup_vs_vanilla >= MIN_GAIN)
        .map_or_else(|| "vanilla".to_string(), |m| m.name.clone());
    let chosen = configs
        .iter()
        .find(|c| c.name == best)
        .context("the fastest configuration is not among those tried")?;
    let p = &chosen.params;
    let tuned = Tuned {
        model: base.loaded().info.source.clone(),
        machine: machine(),
        threads: rayon::current_num_threads(),
        method: p.method.name().to_string(),
        num_draft: p.num_draft,
        draft: chosen.draft.and_then(|d| a.drafts.get(d).cloned()),
        medusa_choices: p.medusa_tree.as_ref().map(|t| t.paths().to_vec()),
        lookahead_window: p.lookahead_window,
        lookahead_ngram: p.lookahead_ngram,
        lookahead_guesses: p.lookahead_guesses,
        lookup_min_confidence: (p.method == Method::PromptLookup && base.ngram_cache().is_some())
            .then_some(p.lookup.min_confidence),
        ngram_cache: a.ngram_cache.as_ref().map(|c| c.display().to_string()),
        eagle: a.eagle.as_ref().map(|c| c.display().to_string()),
        measured,
    };
    let text = serde_json::to_string_pretty(&tuned)?;
    std::fs::write(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&tuned)?)?;
        return Ok(());
    }
    writeln!(out, "| configuration | tokens/s | vs vanilla | mean accepted |")?;
    writeln!(out, "|---|---|---|---|")?;
    for m in &tuned.measured {
        writeln!(
            out,
            "| {} | {:.0} | {:.2}x | {:.2} |",
            m.name, m.tokens_per_second, m.speedup_vs_vanilla, m.mean_accepted_length
        )?;
    }
    if a.drafts.len() > 1 {
        for (i, d) in a.drafts.iter().enumerate() {
            let best = tuned
                .measured
                .iter()
                .find(|m| m.name.starts_with(&format!("draft #{} ", i + 1)));
            if let Some(m) = best {
                writeln!(
                    out,
                    "draft #{} {d}: best {:.2}x (mean accepted {:.2})",
                    i + 1,
                    m.speedup_vs_vanilla,
                    m.mean_accepted_length
                )?;
            }
        }
    }
    if best == "vanilla" {
        writeln!(
            out,
            "no configuration beat plain decoding by {:.0}% here: vanilla chosen",
            (MIN_GAIN - 1.0) * 100.0
        )?;
    }
    writeln!(
        out,
        "chosen: {best}; written to {} (use it with `ahead generate --config` or `ahead serve --config`)",
        a.out.display()
    )?;
    Ok(())
}

/// The CPU's model name, for the record.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
