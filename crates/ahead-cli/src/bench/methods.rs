//! `ahead bench`: vanilla and every speculative method, side by side, over a workload: the
//! fixed suite of held-out prompts embedded in the binary (TinyStories text and CPython code),
//! or a question file through the model's chat template (`--suite`, see `suite`). Methods are
//! interleaved per prompt, so the machine's noise hits them alike; speed is total generated
//! tokens over total decoding time (prefill excluded). Every method's tokens are compared with
//! vanilla's on every prompt.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ahead_engine::spec::OracleProposer;
use ahead_engine::{Engine, EngineError, GenerateParams, Generation, Method, Prompt, SamplingParams};
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
    /// Suffix decoding's store of earlier outputs to start from (read only: bench never
    /// writes it back).
    #[arg(long)]
    pub suffix_store: Option<std::path::PathBuf>,
    /// Medusa heads folder.
    #[arg(long)]
    pub medusa: Option<String>,
    /// An EAGLE head for `--method eagle`: a folder written by `ahead train eagle`.
    #[arg(long)]
    pub eagle: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub suite: super::suite::SuiteArgs,
    /// Tokens generated per prompt [default: 128; 256 with --suite, which also stops at the end
    /// of the answer, as Spec-Bench does].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Prompts per embedded suite (at most 12).
    #[arg(long, default_value_t = 12, conflicts_with = "suite")]
    pub prompts: usize,
    /// 0 is greedy. When sampling, outputs are not compared with vanilla's (the methods
    /// promise vanilla's distribution, not its draws) and the perfect drafter is not run.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed of every generation's sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Passes over the suites; totals add up over passes.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Generate this many prompts together (`Engine::generate_batched`, one forward per step
    /// for all of them, as `ahead serve` does under load) and report aggregate throughput.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Only these rows (comma-separated names as the table gives them, e.g.
    /// `prompt-lookup,auto`); vanilla always runs, as the baseline.
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Leave out the perfect drafter's rows (which need plain decoding's output first).
    #[arg(long)]
    pub no_ceiling: bool,
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
    /// Whether every prompt's tokens equal vanilla's on every run (`None` when sampling).
    pub identical_to_vanilla: Option<bool>,
    /// The prompts whose tokens differed from vanilla's (with the run).
    pub mismatches: Vec<String>,
    /// The same figures per group of prompts.
    pub by_group: BTreeMap<String, GroupReport>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TimeSplit {
    pub draft: f64,
    pub verify: f64,
    pub other: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct GroupReport {
    pub tokens_per_second: f64,
    pub speedup_vs_vanilla: f64,
    pub mean_accepted_length: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The question file, or `embedded`.
    suite: String,
    model: String,
    /// The groups, in the order reported.
    groups: Vec<String>,
    /// Prompts per group (an MT-bench question's turns are two prompts).
    prompts: BTreeMap<String, usize>,
    max_tokens: usize,
    temperature: f32,
    seed: u64,
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
        ("eagle", with(Method::Eagle, None)),
        ("eagle (k=4)", with(Method::Eagle, Some(4))),
        ("recycling", with(Method::Recycling, None)),
        ("recycling (8 nodes)", with(Method::Recycling, Some(8))),
        ("suffix", with(Method::Suffix, None)),
        ("suffix (8 nodes)", with(Method::Suffix, Some(8))),
        ("hybrid", with(Method::Hybrid, None)),
        ("hybrid (8 nodes)", with(Method::Hybrid, Some(8))),
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

/// One prompt of a workload.
pub(crate) struct Item {
    /// The group it is reported in (`stories`, `qa`, ...).
    pub group: String,
    /// How a mismatch names it.
    pub label: String,
    pub prompt: Prompt,
}

/// What every configuration runs: the prompts, in order, and the parameters that are the
/// workload's rather than the method's (length, end of sequence, sampler, seed).
pub(crate) struct Workload {
    pub items: Vec<Item>,
    /// The groups in the order reported.
    pub groups: Vec<String>,
    pub params: GenerateParams,
}

impl Workload {
    /// `params` with the workload's length, end-of-sequence rule, sampler and seed.
    fn apply(&self, params: &GenerateParams) -> GenerateParams {
        GenerateParams {
            max_tokens: self.params.max_tokens,
            ignore_eos: self.params.ignore_eos,
            sampling: self.params.sampling.clone(),
            seed: self.params.seed,
            ..params.clone()
        }
    }

    fn greedy(&self) -> bool {
        self.params.sampling.temperature == 0.0
    }

    /// Prompts per group.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for item in &self.items {
            *counts.entry(item.group.clone()).or_default() += 1;
        }
        counts
    }
}

/// The embedded prompt suites, `n` prompts each (at most 12), raw text generated to
/// `max_tokens` whatever the model would end on.
pub(crate) fn embedded_workload(
    n: usize,
    max_tokens: usize,
    sampling: SamplingParams,
    seed: u64,
) -> Result<Workload> {
    let suite: Suite = serde_json::from_str(SUITE).context("the embedded prompt suite")?;
    let n = n.clamp(1, 12);
    let mut items = Vec::new();
    for (group, prompts) in [("stories", suite.stories), ("code", suite.code)] {
        items.extend(prompts.into_iter().take(n).enumerate().map(|(i, p)| Item {
            group: group.to_string(),
            label: format!("{group} #{}", i + 1),
            prompt: Prompt::Text(p),
        }));
    }
    Ok(Workload {
        items,
        groups: vec!["stories".into(), "code".into()],
        params: GenerateParams {
            max_tokens,
            ignore_eos: true,
            sampling,
            seed,
            ..GenerateParams::default()
        },
    })
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

/// A progress bar on stderr (drawn only on a terminal).
pub(crate) fn progress(len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:32}] {pos}/{len} generations, ETA {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs every candidate on every prompt of `work`, interleaved per prompt, `runs` passes, and
/// reports each against the first (the baseline, vanilla), comparing tokens when greedy.
pub(crate) fn measure(
    candidates: &[Candidate<'_>],
    work: &Workload,
    runs: usize,
    batch: usize,
) -> Result<Vec<MethodReport>> {
    let (n, runs, batch) = (candidates.len(), runs.max(1), batch.max(1));
    // totals[candidate][group]
    let mut totals: Vec<BTreeMap<&str, Totals>> = vec![BTreeMap::new(); n];
    let mut mismatches: Vec<Vec<String>> = vec![Vec::new(); n];
    let continuations = if candidates.iter().any(|c| c.oracle) {
        plain_continuations(candidates[0].engine, work)?
    } else {
        Vec::new()
    };
    let bar = progress(runs * work.items.len() * n);
    // Consecutive prompts of one group form a batch.
    let mut groups: Vec<&[Item]> = Vec::new();
    for chunk in work.items.chunk_by(|a, b| a.group == b.group) {
        groups.extend(chunk.chunks(batch));
    }
    for run in 0..runs {
        if bar.is_hidden() {
            eprintln!(
                "pass {}/{runs}: {n} configurations x {} prompts...",
                run + 1,
                work.items.len()
            );
        }
        let mut first = 0;
        for (gi, group) in groups.iter().enumerate() {
            let mut outputs: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
            // The order rotates from prompt to prompt, so that no configuration always
            // runs first (or right after the heaviest one).
            for i in (0..n).map(|i| (i + gi + run) % n) {
                let c = &candidates[i];
                bar.set_message(c.name.clone());
                // Each configuration and pass learns across prompts on its own: one that ran
                // a prompt before would otherwise hand the next its answer (greedy answers
                // are the same), and a second pass would draft from the first.
                let params = GenerateParams {
                    scope: Some(format!("{} / pass {}", c.name, run + 1)),
                    ..work.apply(&c.params)
                };
                let what = |item: &Item| format!("{} on {}", c.name, item.label);
                let (measured, ids) = if c.oracle {
                    let (prompt_len, tokens) = &continuations[first];
                    let oracle = OracleProposer::new(*prompt_len, tokens.clone());
                    let g = c
                        .engine
                        .generate_with_proposer(&group[0].prompt, &params, Box::new(oracle))
                        .with_context(|| what(&group[0]))?;
                    (Totals::of(&g), vec![g.token_ids])
                } else if batch <= 1 {
                    let g = c
                        .engine
                        .generate_one(&group[0].prompt, &params, &mut |_| {})
                        .with_context(|| what(&group[0]))?;
                    (Totals::of(&g), vec![g.token_ids])
                } else {
                    batched(c, group, &params)?
                };
                totals[i]
                    .entry(group[0].group.as_str())
                    .or_default()
                    .merge(&measured);
                outputs[i] = ids;
                bar.inc(group.len() as u64);
            }
            if work.greedy() {
                for (i, out) in outputs.iter().enumerate().skip(1) {
                    for (j, (ids, item)) in out.iter().zip(group.iter()).enumerate() {
                        if outputs[0].get(j) != Some(ids) {
                            mismatches[i].push(format!("{} (run {})", item.label, run + 1));
                        }
                    }
                }
            }
            first += group.len();
        }
    }
    bar.finish_and_clear();
    let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
    Ok(report(&names, &totals, mismatches, work.greedy()))
}

/// Each prompt's length in tokens and plain decoding's continuation of it, in workload order.
fn plain_continuations(engine: &Engine, work: &Workload) -> Result<Vec<(usize, Vec<u32>)>> {
    let params = work.apply(&GenerateParams {
        method: Method::Vanilla,
        ..GenerateParams::default()
    });
    let bar = progress(work.items.len());
    bar.set_message("plain decoding's output, for the perfect drafter");
    let out = work
        .items
        .iter()
        .map(|item| {
            let g = engine.generate_one(&item.prompt, &params, &mut |_| {})?;
            bar.inc(1);
            Ok((engine.prompt_ids(&item.prompt)?.len(), g.token_ids))
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// Totals of one batch of prompts generated together (`Engine::generate_batched`) and each
/// prompt's tokens: tokens and forwards add up; time is the batch's wall time, of which the
/// forwards shared by all its sequences count once (the longest sequence saw every one).
fn batched(c: &Candidate<'_>, items: &[Item], params: &GenerateParams) -> Result<(Totals, Vec<Vec<u32>>)> {
    let prompts: Vec<Prompt> = items.iter().map(|i| i.prompt.clone()).collect();
    let start = std::time::Instant::now();
    let gens = c.engine.generate_batched(&prompts, params);
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut sum = Totals::default();
    let mut verify_ms = 0f64;
    let mut ids = Vec::new();
    for g in gens {
        let g = g.with_context(|| format!("{} in a batch", c.name))?;
        verify_ms = verify_ms.max(g.stats.verify_ms);
        sum.merge(&Totals::of(&g));
        ids.push(g.token_ids);
    }
    sum.decode_ms = wall_ms;
    sum.verify_ms = verify_ms;
    Ok((sum, ids))
}

pub fn run(a: MethodsArgs) -> Result<()> {
    let engine = Sources {
        eagle: a.eagle.as_deref(),
        model: a.model.as_deref(),
        tokenizer: a.tokenizer.as_deref(),
        draft: a.draft.as_deref(),
        draft_tokenizer: a.draft_tokenizer.as_deref(),
        medusa: a.medusa.as_deref(),
        ngram_cache: a.ngram_cache.as_deref(),
        suffix_store: a.suffix_store.as_deref(),
        draft_medusa: None,
    }
    .engine()?;
    let engine = crate::decoding::with_chat_template(engine, a.suite.chat_template.as_deref())?;
    let sampling = SamplingParams {
        temperature: a.temperature,
        ..SamplingParams::default()
    };
    sampling.validate().context("--temperature")?;
    let (suite, work) = match &a.suite.suite {
        Some(path) => {
            let max_tokens = a.max_tokens.unwrap_or(256);
            let work = super::suite::workload(
                &engine,
                path,
                a.suite.limit_per_category,
                max_tokens,
                sampling,
                a.seed,
            )?;
            (path.display().to_string(), work)
        }
        None => {
            let max_tokens = a.max_tokens.unwrap_or(128);
            (
                "embedded".to_string(),
                embedded_workload(a.prompts, max_tokens, sampling, a.seed)?,
            )
        }
    };
    let mut candidates: Vec<Candidate<'_>> = pick(methods(), &a.methods)?
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
    // The perfect drafter knows plain decoding's greedy output and runs through one
    // sequence's steps; batches and sampled runs take methods only.
    if a.batch <= 1 && work.greedy() && !a.no_ceiling {
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
    let mut methods = measure(&candidates, &work, a.runs, a.batch)?;
    let ceiling = methods.split_off(n_methods);
    let r = Report {
        suite,
        model: engine.loaded().info.source.clone(),
        prompts: work.counts(),
        groups: work.groups.clone(),
        max_tokens: work.params.max_tokens,
        temperature: a.temperature,
        seed: a.seed,
        runs: a.runs.max(1),
        batch: a.batch.max(1),
        methods,
        ceiling,
        skipped,
    };
    if let Some(path) = &a.plot {
        std::fs::write(path, super::plot::speedups_svg(&r.model, &r.groups, &r.methods))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    print(&r, a.json)
}

/// The rows `names` asks for, vanilla first; all of them when `names` is empty.
fn pick(all: Vec<(&'static str, GenerateParams)>, names: &[String]) -> Result<Vec<(String, GenerateParams)>> {
    let mut extra = Vec::new();
    for name in names.iter().filter(|n| !all.iter().any(|(m, _)| m == n)) {
        match fixed_setting(name) {
            Some(params) => extra.push((name.clone(), params)),
            None => {
                let known: Vec<&str> = all.iter().map(|(m, _)| *m).collect();
                anyhow::bail!(
                    "unknown method {name:?} for --methods; one of: {}, or any method with a fixed \
                     draft as \"NAME (k=N)\" or \"NAME (N nodes)\"",
                    known.join(", ")
                );
            }
        }
    }
    let listed = all
        .into_iter()
        .filter(|(m, _)| names.is_empty() || *m == "vanilla" || names.iter().any(|n| n == m))
        .map(|(m, p)| (m.to_string(), p));
    Ok(listed.chain(extra).collect())
}

/// A method at a fixed draft size, named "NAME (k=N)" or "NAME (N nodes)".
fn fixed_setting(name: &str) -> Option<GenerateParams> {
    let (method, rest) = name.strip_suffix(')')?.split_once(" (")?;
    let k = match rest.strip_prefix("k=") {
        Some(k) => k,
        None => rest.strip_suffix(" nodes")?,
    };
    Some(GenerateParams {
        method: Method::from_name(method)?,
        num_draft: Some(k.parse().ok().filter(|&k| k > 0)?),
        ..GenerateParams::default()
    })
}

fn report(
    names: &[&str],
    totals: &[BTreeMap<&str, Totals>],
    mismatches: Vec<Vec<String>>,
    compared: bool,
) -> Vec<MethodReport> {
    let all = |t: &BTreeMap<&str, Totals>| {
        let mut sum = Totals::default();
        t.values().for_each(|s| sum.merge(s));
        sum
    };
    let vanilla = totals.first().map(all).unwrap_or_default();
    names
        .iter()
        .zip(totals)
        .zip(mismatches)
        .map(|((name, t), mismatches)| {
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
                identical_to_vanilla: compared.then_some(mismatches.is_empty()),
                mismatches,
                by_group: t
                    .iter()
                    .map(|(group, s)| {
                        let base = totals
                            .first()
                            .and_then(|v| v.get(group))
                            .map_or(1.0, Totals::tokens_per_second);
                        (
                            group.to_string(),
                            GroupReport {
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
        let sampler = if r.temperature == 0.0 {
            "greedy".to_string()
        } else {
            format!("temperature {} (seed {})", r.temperature, r.seed)
        };
        writeln!(
            out,
            "{} on {}: {} prompts, up to {} tokens, {sampler}, {} run(s), batches of {}\n",
            r.model,
            r.suite,
            r.prompts.values().sum::<usize>(),
            r.max_tokens,
            r.runs,
            r.batch
        )?;
        let header = |first: &str| {
            let groups: String = r.groups.iter().map(|g| format!(" {g} |")).collect();
            format!("| {first} | tokens/s | overall |{groups} mean accepted |")
        };
        let rule = |extra: usize| "|---".repeat(r.groups.len() + 4 + extra) + "|";
        writeln!(out, "{} identical | draft / verify / other |", header("method"))?;
        writeln!(out, "{}", rule(2))?;
        for m in &r.methods {
            let identical = match m.identical_to_vanilla {
                Some(true) => "yes".to_string(),
                Some(false) => format!("NO ({})", m.mismatches.len()),
                None => "-".to_string(),
            };
            writeln!(
                out,
                "{} {identical} | {:.0}% / {:.0}% / {:.0}% |",
                cells(m, &r.groups),
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
            writeln!(out, "{}", header("drafter"))?;
            writeln!(out, "{}", rule(0))?;
            for m in &r.ceiling {
                writeln!(out, "{}", cells(m, &r.groups))?;
            }
        }
        for m in r.methods.iter().filter(|m| !m.mismatches.is_empty()) {
            writeln!(
                out,
                "{} differed from vanilla on: {}",
                m.method,
                m.mismatches.join(", ")
            )?;
        }
        for s in &r.skipped {
            writeln!(out, "skipped: {s}")?;
        }
        Ok(())
    })
}

/// A report row's first cells: name, tokens/s, speedup overall and per group, mean accepted.
fn cells(m: &MethodReport, groups: &[String]) -> String {
    let by_group: String = groups
        .iter()
        .map(|g| {
            m.by_group
                .get(g)
                .map_or(" - |".to_string(), |x| format!(" {:.2}x |", x.speedup_vs_vanilla))
        })
        .collect();
    format!(
        "| {} | {:.0} | {:.2}x |{by_group} {:.2} |",
        m.method, m.tokens_per_second, m.speedup_vs_vanilla, m.mean_accepted_length
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn any_method_can_be_asked_for_at_a_fixed_draft_size() {
        let names: Vec<String> = ["eagle (k=8)", "recycling (12 nodes)", "medusa"]
            .map(String::from)
            .to_vec();
        let picked = pick(methods(), &names).unwrap();
        let got: Vec<(&str, Method, Option<usize>)> = picked
            .iter()
            .map(|(n, p)| (n.as_str(), p.method, p.num_draft))
            .collect();
        assert_eq!(
            got,
            vec![
                ("vanilla", Method::Vanilla, None),
                ("medusa", Method::Medusa, None),
                ("eagle (k=8)", Method::Eagle, Some(8)),
                ("recycling (12 nodes)", Method::Recycling, Some(12)),
            ]
        );
        for bad in ["eagle (k=0)", "eagel (k=4)", "eagle (k=four)", "eagle k=4"] {
            let err = pick(methods(), &[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains("NAME (k=N)"), "{bad}: {err}");
        }
    }
}
