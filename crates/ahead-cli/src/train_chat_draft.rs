//! `ahead train draft --data FILE`: a draft for a chat target, trained on the target's own
//! answers (`ahead train chat-data`) over the target's embedding, with a vocabulary-pruned
//! classifier (FR-Spec), written as a GGUF file with the target's tokenizer and chat template.
//! The classifier's size (FR-Spec's N) is chosen among `--vocab-subset` and its most frequent
//! half, quarter and eighth by held-out agreement against the draft's measured cost. Then the
//! draft is measured as it will be used: loaded back from that file, drafting for the target
//! on held-out records' prompts, against plain decoding.

use std::io::Write;
use std::path::Path;

use ahead_engine::{spec::cost, Engine, Method};
use ahead_model::format::gguf::parse_gguf;
use ahead_model::format::gguf_draft::{write_draft_gguf, DraftGgufOptions};
use ahead_model::{LoadOptions, ModelSource, TensorDType};
use ahead_train::{train_draft_on_chat, ChatDraftOptions, ChatDraftReport};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::train::{on_held_out_prompts, DraftArgs, Measured, ProgressBar};

/// One candidate classifier size, priced on this machine.
#[derive(Debug, Serialize)]
struct SubsetChoice {
    tokens: usize,
    /// The draft's step over the target's.
    draft_cost: f64,
    /// The chain length that gives the most tokens per unit of time at greedy, by the
    /// held-out runs of agreement and the measured verify costs, and that estimate.
    best_k: usize,
    estimated_speedup: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    data: String,
    shape: String,
    training: ChatDraftReport,
    /// The classifier sizes weighed (`--vocab-subset` and its most frequent half, quarter
    /// and eighth), and the one written.
    subset_choices: Vec<SubsetChoice>,
    chosen_subset: usize,
    /// The draft's step (subset classifier) over the target's, measured here.
    draft_cost_per_token: f64,
    /// Greedy, the controller choosing k.
    measured: Measured,
    /// Greedy, k = 3 every step.
    measured_k3: Measured,
}

pub fn run(a: &DraftArgs, data: &Path) -> Result<()> {
    let target_path = match ModelSource::parse(&a.target)? {
        ModelSource::Path(p) if !p.is_dir() => p,
        _ => bail!(
            "--data writes the draft as GGUF with the target's tokenizer, so the target must be a GGUF \
             file (not {}); a Hugging Face or llama2.c target trains on a corpus (--corpus)",
            a.target
        ),
    };
    let bytes = std::fs::read(&target_path).with_context(|| format!("reading {}", target_path.display()))?;
    if !bytes.starts_with(b"GGUF") {
        bail!(
            "{} is not a GGUF file: --data needs a GGUF target",
            target_path.display()
        );
    }
    let target_file = parse_gguf(&bytes, &target_path.display().to_string())?;
    let loaded = ahead_model::load(&ModelSource::Path(target_path.clone()), &LoadOptions::default())
        .context("loading the target")?;
    let tcfg = loaded.model.config().clone();
    if a.dim.is_some_and(|d| d != tcfg.dim) {
        bail!(
            "--dim: a draft over the target's embedding has the target's width, {}",
            tcfg.dim
        );
    }
    let records = ahead_train::chat_data::read(data, tcfg.vocab_size)?;
    let options = ChatDraftOptions {
        layers: a.layers,
        hidden_dim: a.hidden_dim.unwrap_or(tcfg.hidden_dim),
        heads: a.heads.unwrap_or(tcfg.n_heads),
        kv_heads: a.kv_heads.unwrap_or(tcfg.n_kv_heads),
        vocab_subset: a.vocab_subset,
        embedding_dtype: dtype(&a.embedding_dtype)?,
        epochs: a.epochs.unwrap_or(2),
        batch: a.batch,
        learning_rate: a.lr.unwrap_or(1e-3),
        held_out: a.held_out.unwrap_or(0.05),
        max_len: a.seq_len.unwrap_or(768),
        seed: a.seed,
    };
    let shape = format!(
        "dim {} hidden {} layers {} heads {}/{}, classifier over {} tokens",
        tcfg.dim, options.hidden_dim, options.layers, options.heads, options.kv_heads, options.vocab_subset
    );
    eprintln!(
        "training a draft for {} on {} ({shape})...",
        loaded.info.source,
        data.display()
    );
    let mut bar = ProgressBar::new();
    let trained = train_draft_on_chat(&loaded.model, &records, &options, &mut |p| bar.update(p))?;
    bar.finish();

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let path = a.out.join("draft.gguf");
    let partial = path.with_extension("gguf.partial");
    let name = format!(
        "draft for {}",
        target_file.get_str("general.name")?.unwrap_or("the target")
    );
    let write = |subset: &[u32]| -> Result<Vec<u8>> {
        let file = write_draft_gguf(
            &trained.model,
            &target_file,
            &DraftGgufOptions {
                name: name.clone(),
                embedding: options.embedding_dtype,
                matrices: dtype(&a.dtype)?,
                token_subset: Some(subset),
            },
        )?;
        std::fs::write(&partial, &file).with_context(|| format!("writing {}", partial.display()))?;
        Ok(file)
    };

    // FR-Spec's N, chosen by measurement: per candidate classifier size, the draft's cost per
    // token here, as stored (the file with every candidate's rows, loaded back), and the best
    // chain length's estimated tokens per unit of time.
    write(&trained.token_subset)?;
    let stored = ahead_model::load(&ModelSource::Path(partial.clone()), &LoadOptions::default())
        .with_context(|| format!("loading {} back", partial.display()))?;
    let verify = cost::verify_cost_curve(&loaded.model, 9)?;
    let target_step = cost::step_seconds(&loaded.model)?.max(1e-12);
    let mut choices = Vec::new();
    for score in &trained.report.by_subset {
        let restricted = stored
            .model
            .restricted_to(&trained.token_subset[..score.tokens])?;
        let draft_cost = cost::step_seconds(&restricted)? / target_step;
        let (best_k, speedup) = score
            .expected_accepted_length
            .iter()
            .map(|&(k, tokens)| (k, tokens / (verify[k + 1] + k as f64 * draft_cost)))
            .fold((0, 1.0), |best, c| if c.1 > best.1 { c } else { best });
        choices.push(SubsetChoice {
            tokens: score.tokens,
            draft_cost,
            best_k,
            estimated_speedup: speedup,
        });
    }
    let chosen = choices
        .iter()
        .max_by(|a, b| a.estimated_speedup.total_cmp(&b.estimated_speedup))
        .map_or(trained.token_subset.len(), |c| c.tokens);
    let file = write(&trained.token_subset[..chosen])?;
    std::fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;

    // Measured as it will run: the file loaded back, its classifier restricted as it says.
    let draft = ahead_model::load(&ModelSource::Path(path.clone()), &LoadOptions::default())
        .with_context(|| format!("loading {} back", path.display()))?;
    let restricted = match &draft.info.token_subset {
        Some(s) => draft.model.restricted_to(s)?,
        None => bail!("{} lost its token subset", path.display()),
    };
    let draft_cost = cost::step_seconds(&restricted)? / cost::step_seconds(&loaded.model)?.max(1e-12);
    let engine = Engine::from_loaded(loaded).with_draft_loaded(draft)?;
    let (measured, measured_k3) = on_held_out_prompts(
        &engine,
        &records,
        options.held_out,
        a.eval_prompts,
        Method::Draft,
        3,
        draft_cost,
    )?;
    let report = Report {
        target: a.target.clone(),
        data: data.display().to_string(),
        shape,
        training: trained.report,
        subset_choices: choices,
        chosen_subset: chosen,
        draft_cost_per_token: draft_cost,
        measured,
        measured_k3,
    };
    std::fs::write(a.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let t = &report.training;
    writeln!(
        out,
        "wrote {} ({:.1} MB, {} parameters of which {} trained)",
        path.display(),
        file.len() as f64 / 1e6,
        t.parameters,
        t.trainable_parameters
    )?;
    writeln!(
        out,
        "trained on {} answer tokens of {} records, {} steps, {:.0} s; held out {} records",
        t.train_tokens, t.train_records, t.steps, t.seconds, t.held_out_records
    )?;
    writeln!(
        out,
        "held-out: top-1 agreement {:.3} (subset of {} covers {:.1}% of answer tokens); tokens per step at k=1..4: {}",
        t.top1_agreement,
        t.vocab_subset,
        100.0 * t.subset_coverage,
        t.expected_accepted_length
            .iter()
            .take(4)
            .map(|(_, e)| format!("{e:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for c in &report.subset_choices {
        writeln!(
            out,
            "classifier over {:>6} tokens: draft cost {:.3} of a target step, best k {} for an estimated {:.2}x{}",
            c.tokens,
            c.draft_cost,
            c.best_k,
            c.estimated_speedup,
            if c.tokens == report.chosen_subset { "  <- written" } else { "" }
        )?;
    }
    for (label, m) in [("controller", &report.measured), ("k=3", &report.measured_k3)] {
        writeln!(
            out,
            "measured on {} held-out prompts (greedy, {label}): mean accepted length {:.2}, draft cost {:.3} of a target step, {:.0} tok/s vs {:.0} vanilla",
            m.prompts, m.mean_accepted_length, m.proposer_cost_per_step, m.speculative_tokens_per_second, m.vanilla_tokens_per_second
        )?;
    }
    Ok(())
}

fn dtype(name: &str) -> Result<TensorDType> {
    Ok(match name {
        "f32" => TensorDType::F32,
        "f16" => TensorDType::F16,
        "q8_0" => TensorDType::Q8_0,
        "q4_0" => TensorDType::Q4_0,
        other => bail!("unknown type {other:?}: one of f32, f16, q8_0, q4_0"),
    })
}
