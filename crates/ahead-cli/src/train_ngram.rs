//! `ahead train ngram`: builds a static n-gram cache for prompt lookup from the target's own
//! greedy continuations of openings of one or more corpora, or from its chat answers recorded
//! by `train chat-data` (self-distillation: the cache learns what this model writes, not what
//! the corpus says), then measures prompt lookup with it against plain decoding on each
//! corpus's held-out tail, or on the records held out of the count.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use ahead_core::spec::NgramCounter;
use ahead_engine::{Engine, GenerateParams, Method, Prompt};
use ahead_train::corpus;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::train::{side_by_side_on, Measured};

#[derive(Debug, Args)]
pub struct NgramArgs {
    /// The model whose continuations the cache learns (any source; default: the embedded
    /// stories260K).
    #[arg(long, default_value = "default")]
    pub model: String,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// UTF-8 text to take openings from (repeatable); each one's tail is held out.
    #[arg(long, required_unless_present = "data")]
    pub corpus: Vec<PathBuf>,
    /// The model's chat answers (`ahead train chat-data`) to count instead of continuations
    /// of corpus openings; the last --held-out fraction of records is measured on.
    #[arg(long, conflicts_with = "corpus")]
    pub data: Option<PathBuf>,
    /// The cache file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Openings per corpus (sentence and line starts, evenly spaced over the training part).
    #[arg(long, default_value_t = 8000)]
    pub prompts: usize,
    /// Tokens generated per opening.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Longest context the cache stores.
    #[arg(long, default_value_t = 12)]
    pub max_n: usize,
    /// Contexts of two or more tokens seen fewer times than this are dropped.
    #[arg(long, default_value_t = 2)]
    pub min_count: u32,
    #[arg(long, default_value_t = 0.1)]
    pub held_out: f64,
    /// Held-out prompts per corpus to run prompt lookup on after building.
    #[arg(long, default_value_t = 12)]
    pub eval_prompts: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct NgramReport {
    model: String,
    corpora: Vec<String>,
    openings: usize,
    generated_tokens: usize,
    generate_seconds: f64,
    max_n: usize,
    min_count: u32,
    contexts: usize,
    bytes: usize,
    /// Prompt lookup with the cache (controller's k) against plain decoding, per corpus.
    measured: Vec<Measured>,
}

/// Shortest and longest opening, in bytes.
const OPENING_CHARS: (usize, usize) = (24, 300);

pub fn ngram(a: NgramArgs) -> Result<()> {
    let mut builder = Engine::builder();
    if a.model != "default" {
        builder = builder.model(&a.model);
    }
    if let Some(t) = &a.tokenizer {
        builder = builder.tokenizer(t);
    }
    let engine = builder.build().context("loading the model")?;
    if let Some(data) = &a.data {
        return from_chat_data(engine, data, &a);
    }
    let texts = a
        .corpus
        .iter()
        .map(|c| std::fs::read_to_string(c).with_context(|| format!("reading the corpus {}", c.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut openings = Vec::new();
    for text in &texts {
        let train = corpus::split(text, a.held_out)?.train;
        openings.extend(corpus::openings(
            train,
            OPENING_CHARS.0,
            OPENING_CHARS.1,
            a.prompts,
        ));
    }
    if openings.is_empty() {
        bail!("the corpora have no openings to generate from");
    }
    eprintln!(
        "generating {} tokens after each of {} openings...",
        a.max_tokens,
        openings.len()
    );
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        method: Method::Vanilla,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let started = Instant::now();
    let sequences = generate_all(&engine, &openings, &params)?;
    let generate_seconds = started.elapsed().as_secs_f64();
    let mut counter = NgramCounter::new(engine.model().config().vocab_size, a.max_n);
    let mut generated_tokens = 0;
    for (prompt, output) in &sequences {
        let mut seq = prompt.clone();
        seq.extend(output);
        counter.add(&seq, prompt.len());
        generated_tokens += output.len();
    }
    let cache = counter.build(a.min_count);
    let bytes = cache.to_bytes();
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;

    let engine = engine.with_ngram_cache(cache)?;
    let lookup = GenerateParams {
        max_tokens: 128,
        method: Method::PromptLookup,
        ..GenerateParams::default()
    };
    let measured = texts
        .iter()
        .map(|t| {
            let held_out = corpus::split(t, a.held_out)?.held_out;
            let prompts: Vec<Prompt> =
                corpus::openings(held_out, OPENING_CHARS.0, OPENING_CHARS.1, a.eval_prompts)
                    .into_iter()
                    .map(Prompt::from)
                    .collect();
            side_by_side_on(&engine, &prompts, &lookup)
        })
        .collect::<Result<Vec<_>>>()?;
    let report = NgramReport {
        model: a.model.clone(),
        corpora: a.corpus.iter().map(|c| c.display().to_string()).collect(),
        openings: openings.len(),
        generated_tokens,
        generate_seconds,
        max_n: a.max_n,
        min_count: a.min_count,
        contexts: engine.ngram_cache().map_or(0, |c| c.len()),
        bytes: bytes.len(),
        measured,
    };
    print(&report, &a)
}

fn print(report: &NgramReport, a: &NgramArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "wrote {} ({} contexts, {} bytes) from {} tokens after {} openings ({:.0} s)",
        a.out.display(),
        report.contexts,
        report.bytes,
        report.generated_tokens,
        report.openings,
        report.generate_seconds
    )?;
    for (corpus, m) in report.corpora.iter().zip(&report.measured) {
        writeln!(
            out,
            "{corpus}: {} held-out prompts, prompt lookup with the cache: mean accepted length {:.2}, {:.0} tok/s vs {:.0} vanilla ({:.2}x)",
            m.prompts,
            m.mean_accepted_length,
            m.speculative_tokens_per_second,
            m.vanilla_tokens_per_second,
            m.speculative_tokens_per_second / m.vanilla_tokens_per_second.max(1e-9)
        )?;
    }
    Ok(())
}

/// The cache counted from recorded chat answers, measured on the records held out of it.
fn from_chat_data(engine: Engine, data: &std::path::Path, a: &NgramArgs) -> Result<()> {
    let records = ahead_train::chat_data::read(data, engine.model().config().vocab_size)?;
    let held = ((records.len() as f64 * a.held_out).round() as usize).min(records.len() - 1);
    let (train, held_out) = records.split_at(records.len() - held);
    let mut counter = NgramCounter::new(engine.model().config().vocab_size, a.max_n);
    for r in train {
        let (seq, prompt_len) = r.sequence();
        counter.add(&seq, prompt_len);
    }
    let cache = counter.build(a.min_count);
    let bytes = cache.to_bytes();
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let engine = engine.with_ngram_cache(cache)?;
    let lookup = GenerateParams {
        max_tokens: a.max_tokens,
        method: Method::PromptLookup,
        ..GenerateParams::default()
    };
    let prompts: Vec<Prompt> = held_out
        .iter()
        .take(a.eval_prompts)
        .map(|r| Prompt::Ids(r.prompt_ids.clone()))
        .collect();
    let measured = if prompts.is_empty() {
        Vec::new()
    } else {
        vec![side_by_side_on(&engine, &prompts, &lookup)?]
    };
    let report = NgramReport {
        model: a.model.clone(),
        corpora: vec![data.display().to_string()],
        openings: train.len(),
        generated_tokens: train.iter().map(|r| r.answer_ids.len()).sum(),
        generate_seconds: 0.0,
        max_n: a.max_n,
        min_count: a.min_count,
        contexts: engine.ngram_cache().map_or(0, |c| c.len()),
        bytes: bytes.len(),
        measured,
    };
    print(&report, a)
}

/// Every opening's prompt ids and greedy continuation, in order, generated on all cores.
fn generate_all(
    engine: &Engine,
    openings: &[&str],
    params: &GenerateParams,
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = openings.len().div_ceil(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = openings
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&text| {
                            let prompt = Prompt::from(text);
                            let ids = engine.prompt_ids(&prompt)?;
                            let g = engine.generate_one(&prompt, params, &mut |_| {})?;
                            Ok((ids, g.token_ids))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(openings.len());
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| anyhow::anyhow!("a generation thread panicked"))??,
            );
        }
        Ok(all)
    })
}
