//! `ahead train eagle`: an EAGLE head for a chat target, trained on the target's own answers
//! (`ahead train chat-data`) and written as a folder (`config.json`, `model.safetensors`) that
//! `--eagle` loads. Then measured as it will run: loaded back from that folder, drafting for
//! the target on held-out records' prompts, against plain decoding.

use std::io::Write;
use std::path::PathBuf;

use ahead_engine::{spec::cost, Engine, Method};
use ahead_model::eagle::EagleHead;
use ahead_model::{LoadOptions, ModelSource, TensorDType};
use ahead_train::{train_eagle, EagleOptions, EagleReport};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::train::{on_held_out_prompts, Measured, ProgressBar};

#[derive(Debug, Args)]
pub struct EagleArgs {
    /// The target model (any source ahead loads).
    #[arg(long)]
    pub target: String,
    /// The target's own chat answers, from `ahead train chat-data` (its last --held-out share
    /// of records is held out and measured on).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// The head's classifier scores the N tokens most frequent in the training answers.
    #[arg(long, default_value_t = 4096)]
    pub vocab_subset: usize,
    /// The layer's feed-forward width (default: the target's).
    #[arg(long)]
    pub hidden_dim: Option<usize>,
    /// Attention heads and key/value heads (default: the target's).
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// The type the head's matrices are stored and run in.
    #[arg(long, default_value = "f16", value_parser = ["f32", "f16"])]
    pub dtype: String,
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Records per optimizer step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight of the token loss beside the feature loss.
    #[arg(long, default_value_t = 0.1)]
    pub token_weight: f64,
    /// Share of the token loss against the target's distribution (the rest: its answer token).
    #[arg(long, default_value_t = 0.0)]
    pub soft_labels: f64,
    /// Chain steps trained beyond the first, on the head's own predicted features (EAGLE-3's
    /// training-time test; each costs about one more pass).
    #[arg(long, default_value_t = 1)]
    pub chain_steps: usize,
    /// EAGLE-3's feature fusion: the target layers (0-based, comma-separated) whose outputs a
    /// real row reads, or `eagle3` for EAGLE-3's low, middle and high (2, n/2, n - 3 of n
    /// layers). Without it the head reads the final hidden state (EAGLE-1).
    #[arg(long)]
    pub fuse_layers: Option<String>,
    /// Share of records (the last) held out.
    #[arg(long, default_value_t = 0.05)]
    pub held_out: f64,
    /// Longest record trained on, in tokens.
    #[arg(long, default_value_t = 768)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Held-out prompts to run speculative decoding on after training.
    #[arg(long, default_value_t = 12)]
    pub eval_prompts: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    data: String,
    shape: String,
    training: EagleReport,
    /// One chain step of the head over a target step, measured here.
    head_cost_per_token: f64,
    /// Greedy, the controller choosing k.
    measured: Measured,
    /// Greedy, k = 4 every step.
    measured_k4: Measured,
}

pub fn run(a: EagleArgs) -> Result<()> {
    let source = ModelSource::parse(&a.target)?;
    let loaded = ahead_model::load(&source, &LoadOptions::default()).context("loading the target")?;
    let tcfg = loaded.model.config().clone();
    let records = ahead_train::chat_data::read(&a.data, tcfg.vocab_size)?;
    let options = EagleOptions {
        hidden_dim: a.hidden_dim.unwrap_or(tcfg.hidden_dim),
        heads: a.heads.unwrap_or(tcfg.n_heads),
        kv_heads: a.kv_heads.unwrap_or(tcfg.n_kv_heads),
        vocab_subset: a.vocab_subset,
        dtype: if a.dtype == "f32" {
            TensorDType::F32
        } else {
            TensorDType::F16
        },
        epochs: a.epochs,
        batch: a.batch,
        learning_rate: a.lr,
        token_weight: a.token_weight,
        chain_steps: a.chain_steps,
        soft_labels: a.soft_labels,
        feature_layers: a
            .fuse_layers
            .as_deref()
            .map(|l| fused_layers(l, tcfg.n_layers))
            .transpose()?,
        held_out: a.held_out,
        max_len: a.seq_len,
        seed: a.seed,
    };
    let shape = format!(
        "one layer, dim {} hidden {} heads {}/{}, classifier over {} tokens, {}{}",
        tcfg.dim,
        options.hidden_dim,
        options.heads,
        options.kv_heads,
        options.vocab_subset,
        a.dtype,
        match &options.feature_layers {
            Some(l) => format!(", fusing layers {l:?}"),
            None => String::new(),
        }
    );
    eprintln!(
        "training an EAGLE head for {} on {} ({shape}); the target's features come first...",
        loaded.info.source,
        a.data.display()
    );
    let mut bar = ProgressBar::new();
    let trained = train_eagle(&loaded.model, &records, &options, &mut |p| bar.update(p))?;
    bar.finish();
    let target_name = loaded.info.source.clone();
    trained.head.save(&a.out, Some(&target_name))?;

    // Measured as it will run: the folder loaded back.
    let head = EagleHead::load(&a.out, &loaded.model)
        .with_context(|| format!("loading {} back", a.out.display()))?;
    let head_cost = cost::eagle_seconds(&head)? / cost::step_seconds(&loaded.model)?.max(1e-12);
    let engine = Engine::from_loaded(loaded).with_eagle(head);
    let (measured, measured_k4) = on_held_out_prompts(
        &engine,
        &records,
        options.held_out,
        a.eval_prompts,
        Method::Eagle,
        4,
        head_cost,
    )?;
    let report = Report {
        target: target_name,
        data: a.data.display().to_string(),
        shape,
        training: trained.report,
        head_cost_per_token: head_cost,
        measured,
        measured_k4,
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
        "wrote {} ({} trained parameters); trained on {} answer tokens of {} records, {} steps, {:.0} s ({:.0} s of target features)",
        a.out.display(),
        t.parameters,
        t.train_tokens,
        t.train_records,
        t.steps,
        t.seconds,
        t.feature_seconds
    )?;
    writeln!(
        out,
        "held-out ({} records): first draft agrees {:.3}; tokens per step with a chain of k=1..8: {}",
        t.held_out_records,
        t.top1_agreement,
        t.expected_accepted_length
            .iter()
            .map(|(_, e)| format!("{e:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for (label, m) in [("controller", &report.measured), ("k=4", &report.measured_k4)] {
        writeln!(
            out,
            "measured on {} held-out prompts (greedy, {label}): mean accepted length {:.2}, head cost {:.3} of a target step, {:.0} tok/s vs {:.0} vanilla",
            m.prompts, m.mean_accepted_length, m.proposer_cost_per_step, m.speculative_tokens_per_second, m.vanilla_tokens_per_second
        )?;
    }
    Ok(())
}

/// `--fuse-layers`: a comma-separated list of layers, or `eagle3` for 2, n/2 and n - 3.
fn fused_layers(spec: &str, n_layers: usize) -> Result<Vec<usize>> {
    if spec == "eagle3" {
        anyhow::ensure!(
            n_layers >= 6,
            "--fuse-layers eagle3 needs a target of 6 layers or more, this one has {n_layers}"
        );
        return Ok(vec![2, n_layers / 2, n_layers - 3]);
    }
    spec.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .with_context(|| format!("--fuse-layers: {x:?} is not a layer number (or use eagle3)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_layers_are_a_list_or_eagle3s_three() {
        assert_eq!(fused_layers("eagle3", 30).ok(), Some(vec![2, 15, 27]));
        assert_eq!(fused_layers("1, 4,7", 30).ok(), Some(vec![1, 4, 7]));
        assert!(fused_layers("eagle3", 5).is_err());
        assert!(fused_layers("1,x", 30).is_err());
    }
}
