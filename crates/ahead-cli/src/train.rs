//! `ahead train draft|medusa|ngram`. `draft` distils a small draft from a target on a text corpus, writes it as a
//! llama2.c checkpoint beside the target's tokenizer, and measures it: held-out agreement, its
//! cost per token against the target's, and real speculative decoding on held-out prompts.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use ahead_core::spec::MedusaTree;
use ahead_engine::{spec::cost, Engine, GenerateParams, Method, Prompt, MAX_DRAFT};
use ahead_model::format::llama2c_write::write_llama2c;
use ahead_model::{LoadOptions, ModelSource};
use ahead_train::{
    corpus, distill_draft, train_medusa, train_medusa_on_chat, DistillOptions, DistillReport, DraftShape,
    MedusaOptions, MedusaReport, Progress,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Distil a draft model from a target (loss on the target's distributions).
    Draft(DraftArgs),
    /// Train Medusa heads on a frozen base (Medusa-1).
    Medusa(MedusaArgs),
    /// Train an EAGLE head on a chat target's own answers (`chat-data`).
    Eagle(crate::train_eagle::EagleArgs),
    /// Build a static n-gram cache for prompt lookup from the model's own continuations.
    Ngram(crate::train_ngram::NgramArgs),
    /// Record a chat model's own answers to instructions made from corpora (self-distillation
    /// data for `ngram --data` and `medusa --data`).
    ChatData(crate::train_chat_data::ChatDataArgs),
}

#[derive(Debug, Args)]
pub struct MedusaArgs {
    /// The base model (any source; default: the embedded stories260K).
    #[arg(long, default_value = "default")]
    pub base: String,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// UTF-8 text, paragraphs separated by blank lines; its tail is held out.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Train on the base's own continuations of N openings (of the corpus, or of BOS alone
    /// without one) instead of the corpus text.
    #[arg(long, default_value_t = 0)]
    pub self_distill: usize,
    /// Train on a chat model's own answers recorded by `ahead train chat-data` (its last
    /// --held-out share of records is held out and measured on).
    #[arg(long, conflicts_with_all = ["corpus", "self_distill", "joint"])]
    pub data: Option<PathBuf>,
    /// FR-Spec: the heads score only the N tokens most frequent in the training answers
    /// (--data); 0 scores the whole vocabulary.
    #[arg(long, default_value_t = 0, requires = "data")]
    pub vocab_subset: usize,
    /// Store the heads' matrices as `f16` (half the file and the bytes read per step; measured
    /// as stored) or `f32`.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub dtype: String,
    /// Number of heads K (head i predicts the token i + 2 ahead).
    #[arg(long, default_value_t = 3)]
    pub heads: usize,
    /// Residual blocks per head L.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Medusa-2: train the base jointly with the heads, keeping the base's own loss (KL to the
    /// original) so its output stays close. Writes the new base as OUT/base.bin: use it with
    /// the heads. llama2.c-style bases only.
    #[arg(long)]
    pub joint: bool,
    /// Medusa-2: weight of the base's own loss.
    #[arg(long, default_value_t = 1.0)]
    pub base_weight: f64,
    /// Medusa-2: the base's learning rate as a fraction of the heads' (Adam moves every weight
    /// by about the learning rate per step, so a small model needs a small fraction).
    #[arg(long, default_value_t = 0.01)]
    pub base_lr_scale: f64,
    /// Folder for config.json and medusa_lm_head.safetensors (the original Medusa layout).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.1)]
    pub held_out: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Held-out prompts to run Medusa decoding on after training.
    #[arg(long, default_value_t = 12)]
    pub eval_prompts: usize,
    /// The tree to measure acceptance with after training (JSON paths of top-k ranks).
    #[arg(long, default_value = EVAL_TREE)]
    pub eval_choices: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DraftArgs {
    /// The target: with --corpus a llama2.c checkpoint or `default` (the embedded
    /// stories260K); with --data a GGUF file.
    #[arg(long, default_value = "default")]
    pub target: String,
    /// Tokenizer of a llama2.c target, when it is not beside the checkpoint.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// UTF-8 text; paragraphs are separated by blank lines. Its tail is held out. The draft
    /// learns the target's full distributions there (written as a llama2.c checkpoint).
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub corpus: Option<PathBuf>,
    /// A chat target's own answers (`ahead train chat-data`): the draft reads and scores
    /// tokens through the target's embedding (frozen), learns layers of the target's width on
    /// the answers, scores only the --vocab-subset most frequent answer tokens when drafting,
    /// and is written as OUT/draft.gguf with the target's tokenizer and chat template.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// With --data: the tokens the draft's classifier scores (FR-Spec).
    #[arg(long, default_value_t = 4096, requires = "data")]
    pub vocab_subset: usize,
    /// With --data: the type of the draft's embedding (its largest tensor) in the file.
    #[arg(long, default_value = "q8_0", value_parser = ["f32", "f16", "q8_0", "q4_0"], requires = "data")]
    pub embedding_dtype: String,
    /// With --data: the type of the draft's other matrices.
    #[arg(long, default_value = "q8_0", value_parser = ["f32", "f16", "q8_0", "q4_0"], requires = "data")]
    pub dtype: String,
    /// Folder to write the draft (draft.bin and tokenizer.bin, or draft.gguf) and
    /// report.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Width (default 32; with --data the target's, which the draft shares).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Feed-forward width (default 64; with --data the target's).
    #[arg(long)]
    pub hidden_dim: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Query heads (default 4; with --data the target's).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads (default 4; with --data the target's).
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Tokens per training window (--corpus); with --data the longest record trained on.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Windows (--data: records) per optimizer step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Passes over the training data (default 4; with --data 2).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate (default 4e-3; with --data 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fraction of the corpus (its end; with --data, of the records) kept for evaluation only.
    #[arg(long)]
    pub held_out: Option<f64>,
    /// Also train on the target's own continuations of this many training prompts (--corpus).
    #[arg(long, default_value_t = 0)]
    pub generated: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Held-out prompts to run speculative decoding on after training.
    #[arg(long, default_value_t = 12)]
    pub eval_prompts: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Draft(a) => draft(a),
        TrainCommand::Medusa(a) => medusa(a),
        TrainCommand::Ngram(a) => crate::train_ngram::ngram(a),
        TrainCommand::Eagle(a) => crate::train_eagle::run(a),
        TrainCommand::ChatData(a) => crate::train_chat_data::run(a),
    }
}

/// Measured on held-out prompts with what was trained.
#[derive(Debug, Serialize)]
pub(crate) struct Measured {
    pub prompts: usize,
    /// Drafted tokens (or tree nodes) per step; `None`: chosen by the controller.
    pub num_draft: Option<usize>,
    pub mean_accepted_length: f64,
    /// The proposer's cost per step (draft: per token) in target 1-row forwards.
    pub proposer_cost_per_step: f64,
    pub vanilla_tokens_per_second: f64,
    pub speculative_tokens_per_second: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    corpus: String,
    shape: String,
    training: DistillReport,
    measured: Measured,
}

fn draft(a: DraftArgs) -> Result<()> {
    let corpus = match (&a.data, &a.corpus) {
        (Some(data), _) => return crate::train_chat_draft::run(&a, data),
        (None, Some(corpus)) => corpus.clone(),
        (None, None) => bail!("give --corpus (text) or --data (a chat target's answers)"),
    };
    let source = ModelSource::parse(&a.target)?;
    let opts = LoadOptions {
        tokenizer: a.tokenizer.clone(),
    };
    let loaded = ahead_model::load(&source, &opts).context("loading the target")?;
    let Some(tokenizer_bytes) = ahead_model::load::llama2c_tokenizer_bytes(&source, &opts)? else {
        bail!(
            "drafts are written as llama2.c checkpoints, which need the target's llama2.c tokenizer; \
             GGUF and Hugging Face targets are not supported by `ahead train draft` yet"
        );
    };
    let text = std::fs::read_to_string(&corpus)
        .with_context(|| format!("reading the corpus {}", corpus.display()))?;
    let shape = DraftShape {
        dim: a.dim.unwrap_or(32),
        hidden_dim: a.hidden_dim.unwrap_or(64),
        n_layers: a.layers,
        n_heads: a.heads.unwrap_or(4),
        n_kv_heads: a.kv_heads.unwrap_or(4),
    };
    let options = DistillOptions {
        shape,
        seq_len: a.seq_len.unwrap_or(128),
        batch: a.batch,
        epochs: a.epochs.unwrap_or(4),
        learning_rate: a.lr.unwrap_or(4e-3),
        held_out: a.held_out.unwrap_or(0.1),
        generated: a.generated,
        seed: a.seed,
    };
    eprintln!(
        "labelling {} with {} and training a {}-layer dim-{} draft...",
        corpus.display(),
        loaded.info.source,
        a.layers,
        shape.dim
    );
    let mut bar = ProgressBar::new();
    let (draft, training) = distill_draft(&loaded.model, &loaded.tokenizer, &text, &options, &mut |p| {
        bar.update(p)
    })?;
    bar.finish();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_llama2c(&draft, &a.out.join("draft.bin"))?;
    std::fs::write(a.out.join("tokenizer.bin"), tokenizer_bytes)?;

    let held_out = corpus::split(&text, options.held_out)?.held_out;
    let draft_cost = cost::step_seconds(&draft)? / cost::step_seconds(&loaded.model)?.max(1e-12);
    let engine = Engine::from_loaded(loaded).with_draft(draft);
    let params = GenerateParams {
        max_tokens: 128,
        method: Method::Draft,
        num_draft: Some(4),
        ..GenerateParams::default()
    };
    let mut measured = side_by_side(&engine, held_out, a.eval_prompts, &params)?;
    measured.proposer_cost_per_step = draft_cost;
    let report = Report {
        target: a.target.clone(),
        corpus: corpus.display().to_string(),
        shape: format!(
            "dim {} hidden {} layers {} heads {}/{}",
            shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads
        ),
        training,
        measured,
    };
    std::fs::write(a.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let t = &report.training;
    let m = &report.measured;
    writeln!(
        out,
        "wrote {}/draft.bin ({} parameters)",
        a.out.display(),
        t.parameters
    )?;
    writeln!(
        out,
        "trained on {} tokens, {} steps, {:.0} s; held out {} tokens",
        t.train_tokens, t.steps, t.seconds, t.held_out_tokens
    )?;
    writeln!(
        out,
        "held-out: top-1 agreement {:.3}, KL {:.3} nats/token; expected accepted length at k=4: {:.2}",
        t.top1_agreement,
        t.held_out_kl,
        t.expected_accepted_length.get(3).map_or(0.0, |e| e.1)
    )?;
    writeln!(
        out,
        "measured on {} held-out prompts (greedy, k=4): mean accepted length {:.2}, draft cost {:.2} of a target step, {:.0} tok/s vs {:.0} vanilla",
        m.prompts, m.mean_accepted_length, m.proposer_cost_per_step, m.speculative_tokens_per_second, m.vanilla_tokens_per_second
    )?;
    Ok(())
}

/// A 12-node tree: large enough to show what the heads can do, small enough for a CPU.
const EVAL_TREE: &str = "[[0],[1],[2],[0,0],[0,1],[0,2],[1,0],[2,0],[0,0,0],[0,0,1],[0,1,0],[1,0,0]]";

#[derive(Debug, Serialize)]
struct MedusaTrainReport {
    base: String,
    corpus: Option<String>,
    heads: usize,
    layers: usize,
    training: MedusaReport,
    tree: Vec<Vec<usize>>,
    eval_tree: Vec<Vec<usize>>,
    measured: Measured,
}

fn medusa(a: MedusaArgs) -> Result<()> {
    let source = ModelSource::parse(&a.base)?;
    let loaded = ahead_model::load(
        &source,
        &LoadOptions {
            tokenizer: a.tokenizer.clone(),
        },
    )
    .context("loading the base model")?;
    let text = match &a.corpus {
        Some(c) => {
            Some(std::fs::read_to_string(c).with_context(|| format!("reading the corpus {}", c.display()))?)
        }
        None => None,
    };
    let options = MedusaOptions {
        heads: a.heads,
        layers: a.layers,
        seq_len: a.seq_len,
        batch: a.batch,
        epochs: a.epochs,
        learning_rate: a.lr,
        held_out: a.held_out,
        self_distill: a.self_distill,
        joint: a.joint,
        base_weight: a.base_weight,
        base_lr_scale: a.base_lr_scale,
        seed: a.seed,
        vocab_subset: a.vocab_subset,
    };
    let records = match &a.data {
        Some(d) => Some(ahead_train::chat_data::read(d, loaded.model.config().vocab_size)?),
        None => None,
    };
    let tokenizer_bytes = ahead_model::load::llama2c_tokenizer_bytes(
        &source,
        &LoadOptions {
            tokenizer: a.tokenizer.clone(),
        },
    )?;
    if a.joint && tokenizer_bytes.is_none() {
        bail!("--joint writes the trained base as a llama2.c checkpoint: the base must be one");
    }
    eprintln!(
        "computing {}'s hidden states and training {} Medusa heads of {} block(s)...",
        loaded.info.source, a.heads, a.layers
    );
    let mut bar = ProgressBar::new();
    let trained = match &records {
        Some(r) => train_medusa_on_chat(&loaded.model, r, &options, &mut |p| bar.update(p))?,
        None => train_medusa(
            &loaded.model,
            &loaded.tokenizer,
            text.as_deref(),
            &options,
            &mut |p| bar.update(p),
        )?,
    };
    bar.finish();
    let (mut heads, training) = (trained.heads, trained.report);
    if a.dtype == "f16" {
        heads = heads.converted(ahead_model::TensorDType::F16)?;
    }
    heads.save(&a.out, Some(&a.base))?;
    let mut loaded = loaded;
    if let (Some(base), Some(tok)) = (trained.base, tokenizer_bytes) {
        write_llama2c(&base, &a.out.join("base.bin"))?;
        std::fs::write(a.out.join("tokenizer.bin"), tok)?;
        loaded.model = base;
        loaded.info.source = a.out.join("base.bin").display().to_string();
    }
    let heads_cost = cost::medusa_seconds(&heads)? / cost::step_seconds(&loaded.model)?.max(1e-12);
    let engine = Engine::from_loaded(loaded).with_medusa(heads)?;
    // The tree the engine would choose from the measured accuracies and this machine's costs
    // (reported), and a fixed tree to measure acceptance with (comparable across runs).
    let tree = engine.medusa_tree_for(&GenerateParams::default())?;
    let eval_tree = MedusaTree::parse(&a.eval_choices)?;
    let params = GenerateParams {
        max_tokens: 128,
        method: Method::Medusa,
        num_draft: Some(eval_tree.len().min(MAX_DRAFT)),
        medusa_tree: Some(eval_tree.clone()),
        ..GenerateParams::default()
    };
    let mut measured = match &records {
        // The records held out of training, as the chats they were.
        Some(r) => {
            let held = ((r.len() as f64 * a.held_out).round() as usize).max(1);
            let prompts: Vec<Prompt> = r[r.len() - held..]
                .iter()
                .take(a.eval_prompts)
                .map(|r| Prompt::Ids(r.prompt_ids.clone()))
                .collect();
            side_by_side_on(&engine, &prompts, &params)?
        }
        None => {
            let held_out = match &text {
                Some(t) => corpus::split(t, a.held_out)?.held_out.to_string(),
                None => String::new(),
            };
            side_by_side(&engine, &held_out, a.eval_prompts, &params)?
        }
    };
    measured.proposer_cost_per_step = heads_cost;
    let report = MedusaTrainReport {
        base: a.base.clone(),
        corpus: a
            .corpus
            .as_ref()
            .or(a.data.as_ref())
            .map(|c| c.display().to_string()),
        heads: a.heads,
        layers: a.layers,
        training,
        tree: tree.paths().to_vec(),
        eval_tree: eval_tree.paths().to_vec(),
        measured,
    };
    std::fs::write(a.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let t = &report.training;
    writeln!(out, "wrote {} ({} parameters)", a.out.display(), t.parameters)?;
    writeln!(
        out,
        "trained on {} tokens, {} steps, {:.0} s; held out {} tokens",
        t.train_tokens, t.steps, t.seconds, t.held_out_tokens
    )?;
    if let (Some(agree), Some(kl)) = (t.base_agreement, t.base_kl) {
        writeln!(
            out,
            "Medusa-2: wrote {}/base.bin; held-out top-1 agreement with the original base {:.3}, KL {:.4} nats/token",
            a.out.display(),
            agree,
            kl
        )?;
    }
    if let (Some(n), Some(coverage)) = (t.vocab_subset, t.subset_coverage) {
        writeln!(
            out,
            "heads score the {n} most frequent tokens: {:.1}% of held-out answer tokens",
            coverage * 100.0
        )?;
    }
    for (i, (t1, t5)) in t.top1.iter().zip(&t.top5).enumerate() {
        writeln!(
            out,
            "head {i} (token t+{}): top-1 {:.3}, top-5 {:.3}",
            i + 2,
            t1,
            t5
        )?;
    }
    let m = &report.measured;
    writeln!(
        out,
        "chosen tree here {:?}; measured with a {}-node tree on {} held-out prompts (greedy): mean accepted length {:.2}, heads cost {:.2} of a target step, {:.0} tok/s vs {:.0} vanilla",
        report.tree, report.eval_tree.len(), m.prompts, m.mean_accepted_length, m.proposer_cost_per_step, m.speculative_tokens_per_second, m.vanilla_tokens_per_second
    )?;
    Ok(())
}

/// Greedy speculative decoding with `params` on held-out prompts, against vanilla, side by side
/// (alternating per prompt). Fails if any output differs from vanilla's.
pub(crate) fn side_by_side(
    engine: &Engine,
    held_out: &str,
    n: usize,
    params: &GenerateParams,
) -> Result<Measured> {
    let mut prompts: Vec<Prompt> = corpus::paragraphs(held_out)
        .filter(|p| p.len() > 80)
        .take(n)
        .map(|p| Prompt::from(p.split(". ").next().unwrap_or(p)))
        .collect();
    // Without held-out text (self-distillation from BOS), start from BOS.
    if prompts.is_empty() {
        prompts.push(Prompt::Ids(engine.tokenizer().bos_id().into_iter().collect()));
    }
    side_by_side_on(engine, &prompts, params)
}

/// `side_by_side` on the given prompts.
pub(crate) fn side_by_side_on(
    engine: &Engine,
    prompts: &[Prompt],
    params: &GenerateParams,
) -> Result<Measured> {
    let vanilla = GenerateParams {
        method: Method::Vanilla,
        ..params.clone()
    };
    let (mut generated, mut forwards, mut t_vanilla, mut t_method) = (0usize, 0usize, 0.0, 0.0);
    for p in prompts {
        let v = engine.generate_one(p, &vanilla, &mut |_| {})?;
        t_vanilla += v.stats.generated_tokens as f64 / v.stats.tokens_per_second.max(1e-9);
        let d = engine.generate_one(p, params, &mut |_| {})?;
        t_method += d.stats.generated_tokens as f64 / d.stats.tokens_per_second.max(1e-9);
        if d.token_ids != v.token_ids {
            bail!("speculative output differs from vanilla: this is a bug, please report it");
        }
        generated += d.stats.generated_tokens;
        forwards += d.stats.target_forwards;
    }
    let tokens = generated as f64;
    Ok(Measured {
        prompts: prompts.len(),
        num_draft: params.num_draft,
        mean_accepted_length: tokens / forwards.max(1) as f64,
        proposer_cost_per_step: 0.0,
        vanilla_tokens_per_second: tokens / t_vanilla.max(1e-9),
        speculative_tokens_per_second: tokens / t_method.max(1e-9),
    })
}

/// `method` measured on the prompts of up to `count` held-out records (the last `held_out`
/// share of `records`), greedy, 128 tokens: with the controller, then at a fixed `k`, each
/// against plain decoding; `cost` is the proposer's per step, for the report.
pub(crate) fn on_held_out_prompts(
    engine: &Engine,
    records: &[ahead_train::chat_data::ChatRecord],
    held_out: f64,
    count: usize,
    method: Method,
    k: usize,
    cost: f64,
) -> Result<(Measured, Measured)> {
    let held = (records.len() as f64 * held_out).round() as usize;
    let prompts: Vec<Prompt> = records[records.len() - held.clamp(1, records.len())..]
        .iter()
        .take(count)
        .map(|r| Prompt::Ids(r.prompt_ids.clone()))
        .collect();
    let params = |num_draft| GenerateParams {
        max_tokens: 128,
        method,
        num_draft,
        ..GenerateParams::default()
    };
    let mut controller = side_by_side_on(engine, &prompts, &params(None))?;
    controller.proposer_cost_per_step = cost;
    let mut fixed = side_by_side_on(engine, &prompts, &params(Some(k)))?;
    fixed.proposer_cost_per_step = cost;
    Ok((controller, fixed))
}

/// A one-line progress bar on a terminal; a line per tenth otherwise (logs stay short).
pub(crate) struct ProgressBar {
    tty: bool,
    last_tenth: usize,
    last_draw: Option<Instant>,
}

impl ProgressBar {
    pub(crate) fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
            last_draw: None,
        }
    }

    pub(crate) fn update(&mut self, p: Progress) {
        let eta = p.elapsed_s / p.step as f64 * (p.steps - p.step) as f64;
        if self.tty {
            if self.last_draw.is_some_and(|t| t.elapsed().as_millis() < 100) && p.step < p.steps {
                return;
            }
            self.last_draw = Some(Instant::now());
            let width = 30;
            let done = width * p.step / p.steps.max(1);
            eprint!(
                "\r[{}{}] step {}/{} loss {:.3} eta {:.0}s ",
                "=".repeat(done),
                " ".repeat(width - done),
                p.step,
                p.steps,
                p.kl,
                eta
            );
        } else {
            let tenth = 10 * p.step / p.steps.max(1);
            if tenth > self.last_tenth {
                self.last_tenth = tenth;
                eprintln!("step {}/{} loss {:.3} eta {:.0}s", p.step, p.steps, p.kl, eta);
            }
        }
    }

    pub(crate) fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
