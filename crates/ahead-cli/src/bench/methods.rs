//! `ahead bench`: vanilla and every speculative method, side by side, over a fixed suite of
//! held-out prompts (TinyStories text and CPython code, embedded in the binary). Methods are
//! interleaved per prompt, so the machine's noise hits them alike; speed is total generated
//! tokens over total decoding time (prefill excluded), greedy, `max_tokens` each.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ahead_engine::spec::OracleProposer;
use ahead_engine::{Engine, EngineError, GenerateParams, Generation, Method, Prompt};
use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::sources::Sources;

#[derive(Debug, Args)]
pub struct MethodsArgs {
    /// Model (default: the embedded stories260K, with its vendored draft and Medusa heads).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Draft model for `draft` and `auto`.
    #[arg(long)]
    pub draft: Option<String>,
    #[arg(long)]
    pub draft_tokenizer: Option<PathBuf>,
    /// Static n-gram cache for prompt lookup, from `ahead train ngram` (default: the embedded
    /// model's vendored cache).
    #[arg(long)]
    pub ngram_cache: Option<std::path::PathBuf>,
    /// Medusa heads folder.
    #[arg(long)]
    pub medusa: Option<String>,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Prompts per suite (at most 12).
    #[arg(long, default_value_t = 12)]
    pub prompts: usize,
    /// Passes over the suites; totals add up over passes.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Generate this many prompts together (`Engine::generate_batched`, one forward per step
    /// for all of them, as `ahead serve` does under load) and report aggregate throughput.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// One JSON object with a `methods` list instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG chart of the speedups to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// The embedded prompt suite.
#[derive(Debug, Deserialize)]
struct Suite {
    stories: Vec<String>,
    code: Vec<String>,
}

const SUITE: &str = include_str!("prompts.json");

/// Totals of one method over some prompts.
#[derive(Debug, Default, Clone)]
struct Totals {
    tokens: usize,
    forwards: usize,
    drafted: usize,
    accepted: usize,
    decode_ms: f64,
    draft_ms: f64,
    verify_ms: f64,
    by_position: Vec<(usize, usize)>,
}

impl Totals {
    fn of(g: &Generation) -> Self {
        let s = &g.stats;
        Self {
            tokens: s.generated_tokens,
            forwards: s.target_forwards,
            drafted: s.drafted_tokens,
            accepted: s.accepted_tokens,
            decode_ms: s.elapsed_ms - s.prefill_ms,
            draft_ms: s.draft_ms,
            verify_ms: s.verify_ms,
            by_position: s.acceptance_by_position.clone(),
        }
    }

    fn merge(&mut self, o: &Totals) {
        self.tokens += o.tokens;
        self.forwards += o.forwards;
        self.drafted += o.drafted;
        self.accepted += o.accepted;
        self.decode_ms += o.decode_ms;
        self.draft_ms += o.draft_ms;
        self.verify_ms += o.verify_ms;
        if self.by_position.len() < o.by_position.len() {
            self.by_position.resize(o.by_position.len(), (0, 0));
        }
        for (t, p) in self.by_position.iter_mut().zip(&o.by_position) {
            t.0 += p.0;
            t.1 += p.1;
        }
    }

    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / (self.decode_ms / 1e3).max(1e-9)
    }

    fn mean_accepted_length(&self) -> f64 {
        self.tokens as f64 / self.forwards.max(1) as f64
    }
}

/// One method's row of the report.
#[derive(Debug, Serialize)]
pub(crate) struct MethodReport {
    pub method: String,
    pub tokens_per_second: f64,
    pub speedup_vs_vanilla: f64,
    pub mean_accepted_length: f64,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    /// Per draft position: of the steps that drafted that deep, the share whose accepted path
    /// reached it.
    pub acceptance_by_position: Vec<f64>,
    /// Shares of decoding time: drafting, target verify forwards, and the rest (acceptance,
    /// commits, detokenization).
    pub time_split: TimeSplit,
    /// The same figures per suite.
    pub suites: BTreeMap<String, SuiteReport>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TimeSplit {
    pub draft: f64,
    pub verify: f64,
    pub other: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct SuiteReport {
    pub tokens_per_second: f64,
    pub speedup_vs_vanilla: f64,
    pub mean_accepted_length: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    prompts: BTreeMap<String, usize>,
    max_tokens: usize,
    runs: usize,
    batch: usize,
    methods: Vec<MethodReport>,
    /// Not methods: a drafter that knows plain decoding's output (every draft right, free)
    /// at fixed draft lengths, measured beside the methods. The ceiling of any drafter here.
    ceiling: Vec<MethodReport>,
    /// Methods that could not run with this model (no draft, no heads), and why.
    skipped: Vec<String>,
}

/// The methods compared: the controller's choice for each, plus fixed settings that show
/// what acceptance each method reaches when it always drafts.
fn methods() -> Vec<(&'static str, GenerateParams)> {
    let with = |method, num_draft| GenerateParams {
        method,
        num_draft,
        ..GenerateParams::default()
    };
    vec![
        ("vanilla", with(Method::Vanilla, None)),
        ("prompt-lookup", with(Method::PromptLookup, None)),
        ("prompt-lookup (k=8)", with(Method::PromptLookup, Some(8))),
        ("draft", with(Method::Draft, None)),
        ("draft (k=4)", with(Method::Draft, Some(4))),
        ("medusa", with(Method::Medusa, None)),
        ("medusa (6 nodes)", with(Method::Medusa, Some(6))),
        ("lookahead", with(Method::Lookahead, None)),
        (
            "lookahead (W4 N4 G4)",
            GenerateParams {
                lookahead_window: Some(4),
                lookahead_ngram: Some(4),
                lookahead_guesses: Some(4),
                ..with(Method::Lookahead, Some(16))
            },
        ),
        ("auto", with(Method::Auto, None)),
    ]
}

/// Draft lengths at which the perfect drafter is measured.
const CEILING_DRAFTS: [usize; 3] = [2, 4, 8];

/// A configuration to measure: a name, the engine it runs on, and its parameters.
pub(crate) struct Candidate<'e> {
    pub name: String,
    pub engine: &'e Engine,
    pub params: GenerateParams,
    /// Draft with `OracleProposer` (plain decoding's own output for the prompt) instead of
    /// `params.method`.
    pub oracle: bool,
}

/// The embedded prompt suites, `n` prompts each (at most 12).
pub(crate) fn suites(n: usize) -> Result<Vec<(&'static str, Vec<String>)>> {
    let suite: Suite = serde_json::from_str(SUITE).context("the embedded prompt suite")?;
    let n = n.clamp(1, 12);
    Ok(vec![
        ("stories", suite.stories.into_iter().take(n).collect()),
        ("code", suite.code.into_iter().take(n).collect()),
    ])
}

/// Drops the candidates their engine cannot run (no draft, no heads), saying why.
pub(crate) fn runnable(candidates: &mut Vec<Candidate<'_>>) -> Vec<String> {
    let mut skipped = Vec::new();
    candidates.retain(|c| {
        let probe = GenerateParams {
            max_tokens: 1,
            ..c.params.clone()
        };
        match c
            .engine
            .generate_one(&Prompt::Text("Once".into()), &probe, &mut |_| {})
        {
            Err(EngineError::MethodUnavailable { reason, .. }) => {
                skipped.push(format!("{}: {reason}", c.name));
                false
            }
            _ => true,
        }
    });
    skipped
}

/// Runs every candidate on every prompt, interleaved per prompt, `runs` passes, greedy, and
/// reports each against the first (the baseline, vanilla).
pub(crate) fn measure(
    candidates: &[Candidate<'_>],
    suites: &[(&'static str, Vec<String>)],
    max_tokens: usize,
    runs: usize,
    batch: usize,
) -> Result<Vec<MethodReport>> {
    // totals[candidate][suite]
    let mut totals: Vec<BTreeMap<&str, Totals>> = vec![BTreeMap::new(); candidates.len()];
    let prompts: usize = suites.iter().map(|(_, p)| p.len()).sum();
    let continuations = match candidates.iter().find(|c| c.oracle) {
        Some(c) => plain_continuations(c.engine, suites, max_tokens)?,
        None => BTreeMap::new(),
    };
    for run in 0..runs.max(1) {
        eprintln!(
            "pass {}/{}: {} configurations x {prompts} prompts...",
            run + 1,
            runs.max(1),
            candidates.len()
        );
        for (suite, prompts) in suites {
            for (pi, group) in prompts.chunks(batch.max(1)).enumerate() {
                // The order rotates from prompt to prompt, so that no configuration always
                // runs first (or right after the heaviest one).
                let n = candidates.len();
                for i in (0..n).map(|i| (i + pi + run) % n) {
                    let (c, t) = (&candidates[i], &mut totals[i]);
                    let params = GenerateParams {
                        max_tokens,
                        ignore_eos: true,
                        ..c.params.clone()
                    };
                    let measured = if c.oracle {
                        let p = &group[0];
                        let (prompt_len, tokens) = &continuations[p.as_str()];
                        let oracle = OracleProposer::new(*prompt_len, tokens.clone());
                        let g = c
                            .engine
                            .generate_with_proposer(&Prompt::Text(p.clone()), &params, Box::new(oracle))
                            .with_context(|| format!("{} on {p:?}", c.name))?;
                        Totals::of(&g)
                    } else if batch <= 1 {
                        let p = &group[0];
                        let g = c
                            .engine
                            .generate_one(&Prompt::Text(p.clone()), &params, &mut |_| {})
                            .with_context(|| format!("{} on {p:?}", c.name))?;
                        Totals::of(&g)
                    } else {
                        batched(c, group, &params)?
                    };
                    t.entry(suite).or_default().merge(&measured);
                }
            }
        }
    }
    let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
    Ok(report(&names, &totals))
}

/// Each prompt's length in tokens and plain decoding's greedy continuation of it.
fn plain_continuations<'p>(
    engine: &Engine,
    suites: &'p [(&'static str, Vec<String>)],
    max_tokens: usize,
) -> Result<BTreeMap<&'p str, (usize, Vec<u32>)>> {
    let params = GenerateParams {
        method: Method::Vanilla,
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::default()
    };
    let mut out = BTreeMap::new();
    for p in suites.iter().flat_map(|(_, p)| p) {
        let prompt = Prompt::Text(p.clone());
        let g = engine.generate_one(&prompt, &params, &mut |_| {})?;
        out.insert(p.as_str(), (engine.prompt_ids(&prompt)?.len(), g.token_ids));
    }
    Ok(out)
}

/// Totals of one batch of prompts generated together (`Engine::generate_batched`): tokens and
/// forwards add up; time is the batch's wall time, of which the forwards shared by all its
/// sequences count once (the longest sequence saw every one).
fn batched(c: &Candidate<'_>, prompts: &[String], params: &GenerateParams) -> Result<Totals> {
    let prompts: Vec<Prompt> = prompts.iter().map(|p| Prompt::Text(p.clone())).collect();
    let start = std::time::Instant::now();
    let gens = c.engine.generate_batched(&prompts, params);
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut sum = Totals::default();
    let mut verify_ms = 0f64;
    for g in gens {
        let g = g.with_context(|| format!("{} in a batch", c.name))?;
        verify_ms = verify_ms.max(g.stats.verify_ms);
        sum.merge(&Totals::of(&g));
    }
    sum.decode_ms = wall_ms;
    sum.verify_ms = verify_ms;
    Ok(sum)
}

pub fn run(a: MethodsArgs) -> Result<()> {
    let engine = Sources {
        model: a.model.as_deref(),
        tokenizer: a.tokenizer.as_deref(),
        draft: a.draft.as_deref(),
        draft_tokenizer: a.draft_tokenizer.as_deref(),
        medusa: a.medusa.as_deref(),
        ngram_cache: a.ngram_cache.as_deref(),
        draft_medusa: None,
    }
    .engine()?;
    let suites = suites(a.prompts)?;
    let mut candidates: Vec<Candidate<'_>> = methods()
        .into_iter()
        .map(|(name, params)| Candidate {
            name: name.to_string(),
            engine: &engine,
            params,
            oracle: false,
        })
        .collect();
    let skipped = runnable(&mut candidates);
    let n_methods = candidates.len();
    // The perfect drafter runs through one sequence's steps; batches take methods only.
    if a.batch <= 1 {
        candidates.extend(CEILING_DRAFTS.map(|k| Candidate {
            name: format!("perfect drafts (k={k})"),
            engine: &engine,
            params: GenerateParams {
                num_draft: Some(k),
                ..GenerateParams::default()
            },
            oracle: true,
        }));
    }
    let mut methods = measure(&candidates, &suites, a.max_tokens, a.runs, a.batch)?;
    let ceiling = methods.split_off(n_methods);
    let r = Report {
        model: engine.loaded().info.source.clone(),
        prompts: suites.iter().map(|(s, p)| (s.to_string(), p.len())).collect(),
        max_tokens: a.max_tokens,
        runs: a.runs.max(1),
        batch: a.batch.max(1),
        methods,
        ceiling,
        skipped,
    };
    if let Some(path) = &a.plot {
        std::fs::write(path, super::plot::speedups_svg(&r.model, &r.methods))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&r, a.json)
}

fn report(names: &[&str], totals: &[BTreeMap<&str, Totals>]) -> Vec<MethodReport> {
    let all = |t: &BTreeMap<&str, Totals>| {
        let mut sum = Totals::default();
        t.values().for_each(|s| sum.merge(s));
        sum
    };
    let vanilla = totals.first().map(all).unwrap_or_default();
    names
        .iter()
        .zip(totals)
        .map(|(name, t)| {
            let sum = all(t);
            let decode = sum.decode_ms.max(1e-9);
            MethodReport {
                method: name.to_string(),
                tokens_per_second: sum.tokens_per_second(),
                speedup_vs_vanilla: sum.tokens_per_second() / vanilla.tokens_per_second().max(1e-9),
                mean_accepted_length: sum.mean_accepted_length(),
                drafted_tokens: sum.drafted,
                accepted_tokens: sum.accepted,
                acceptance_by_position: sum
                    .by_position
                    .iter()
                    .map(|&(d, r)| r as f64 / d.max(1) as f64)
                    .collect(),
                time_split: TimeSplit {
                    draft: sum.draft_ms / decode,
                    verify: sum.verify_ms / decode,
                    other: (1.0 - (sum.draft_ms + sum.verify_ms) / decode).max(0.0),
                },
                suites: t
                    .iter()
                    .map(|(suite, s)| {
                        let base = totals
                            .first()
                            .and_then(|v| v.get(suite))
                            .map_or(1.0, Totals::tokens_per_second);
                        (
                            suite.to_string(),
                            SuiteReport {
                                tokens_per_second: s.tokens_per_second(),
                                speedup_vs_vanilla: s.tokens_per_second() / base.max(1e-9),
                                mean_accepted_length: s.mean_accepted_length(),
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

fn print(r: &Report, json: bool) -> Result<()> {
    super::emit(r, json, |out| {
        writeln!(
            out,
            "{}: {} prompts x {} tokens, greedy, {} run(s), batches of {}\n",
            r.model,
            r.prompts.values().sum::<usize>(),
            r.max_tokens,
            r.runs,
            r.batch
        )?;
        writeln!(
            out,
            "| method | tokens/s | vs vanilla | stories | code | mean accepted | draft / verify / other |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
        for m in &r.methods {
            writeln!(
                out,
                "{} {:.0}% / {:.0}% / {:.0}% |",
                cells(m),
                m.time_split.draft * 100.0,
                m.time_split.verify * 100.0,
                m.time_split.other * 100.0
            )?;
        }
        if !r.ceiling.is_empty() {
            writeln!(
                out,
                "\nCeiling of any drafter on this machine: drafts that are always right and free \
                 (plain decoding's own output), side by side with the methods above:\n"
            )?;
            writeln!(
                out,
                "| drafter | tokens/s | vs vanilla | stories | code | mean accepted |"
            )?;
            writeln!(out, "|---|---|---|---|---|---|")?;
            for m in &r.ceiling {
                writeln!(out, "{}", cells(m))?;
            }
        }
        for s in &r.skipped {
            writeln!(out, "skipped: {s}")?;
        }
        Ok(())
    })
}

/// A report row's first cells: name, tokens/s, speedup overall and per suite, mean accepted.
fn cells(m: &MethodReport) -> String {
    let suite = |s: &str| m.suites.get(s).map_or(0.0, |x| x.speedup_vs_vanilla);
    format!(
        "| {} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {:.2} |",
        m.method,
        m.tokens_per_second,
        m.speedup_vs_vanilla,
        suite("stories"),
        suite("code"),
        m.mean_accepted_length
    )
}
