//! `ahead bench`: measured speed, reproducible.
//!
//! - `ahead bench` runs vanilla and every speculative method side by side over a fixed suite of
//!   held-out prompts (`methods`), or over Spec-Bench's questions through the model's chat
//!   template (`--suite`, `suite`), as a table, JSON or an SVG chart (`plot`).
//! - `ahead bench cost` times one forward of k rows and of tree masks on a model of real shapes
//!   with random weights (`cost`): the verify-cost curve speculation lives on.
//! - `ahead bench decode` sets plain decoding against the memory-bandwidth limit (`decode`).

mod cost;
mod decode;
pub(crate) mod methods;
mod plot;
pub(crate) mod suite;

use std::io::Write;

use ahead_model::transformer::synthetic::Recipe;
use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub methods: methods::MethodsArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time one forward of k rows (k = 1..32) and of tree masks on a model of real shapes.
    Cost(cost::CostArgs),
    /// Plain decoding speed against the memory-bandwidth limit.
    Decode(decode::DecodeArgs),
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.command {
        Some(BenchCommand::Cost(c)) => cost::run(c),
        Some(BenchCommand::Decode(d)) => decode::run(d),
        None => methods::run(a.methods),
    }
}

/// Prints `report` as one JSON line with `json`, else as `table` writes it.
pub(crate) fn emit<T: serde::Serialize>(
    report: &T,
    json: bool,
    table: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    table(&mut out)
}

/// Parses a synthetic model's weight dtype: one dtype, or `q4_k_m` (llama.cpp's mix).
fn parse_recipe(s: &str) -> Result<Recipe> {
    if s == "q4_k_m" {
        return Ok(Recipe::Q4KM);
    }
    parse_dtype(s).map(Recipe::Uniform)
}

/// Parses a weight dtype name.
fn parse_dtype(s: &str) -> Result<ahead_model::TensorDType> {
    use ahead_model::TensorDType as D;
    D::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = ahead_model::tensor::DTYPES.iter().map(|i| i.name).collect();
        anyhow::anyhow!("unknown dtype {s:?}; one of {}, q4_k_m", names.join(", "))
    })
}

/// The model a cost or decode bench measures: a random-weight model of a named shape with
/// `synthetic`, else `model` (default: the embedded stories260K). Returns the model, a name for
/// the report and the weights' dtype name.
fn bench_model(
    model: Option<&str>,
    synthetic: Option<&str>,
    layers: Option<usize>,
    dtype: &str,
) -> Result<(ahead_model::Model, String, String)> {
    use anyhow::Context;
    if let Some(s) = synthetic {
        let dtype = parse_recipe(dtype)?;
        let model = self::synthetic(s, layers, dtype)?;
        let name = format!("synthetic {s}");
        return Ok((model, name, dtype.name().to_string()));
    }
    let src = ahead_model::ModelSource::parse(model.unwrap_or("default"))?;
    let loaded = ahead_model::load(&src, &Default::default()).context("loading the model")?;
    let dtype = loaded
        .model
        .weights()
        .layers
        .first()
        .map_or("f32", |l| l.wq.dtype().name())
        .to_string();
    Ok((loaded.model, loaded.info.source, dtype))
}

/// A random-weight model of a named shape, optionally cut to `layers`.
fn synthetic(name: &str, layers: Option<usize>, dtype: Recipe) -> Result<ahead_model::Model> {
    use ahead_model::transformer::synthetic::{named_config, random_model_with, NAMED_CONFIGS};
    let mut cfg = named_config(name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown synthetic model {name:?}; known: {}",
            NAMED_CONFIGS.join(", ")
        )
    })?;
    if let Some(l) = layers {
        anyhow::ensure!(l >= 1, "--layers must be at least 1");
        cfg.n_layers = l;
    }
    eprintln!(
        "building a random {name} model with {} layers ({})...",
        cfg.n_layers,
        dtype.name()
    );
    random_model_with(&cfg, dtype, 1).map_err(|e| anyhow::anyhow!("{name} as {}: {e}", dtype.name()))
}
