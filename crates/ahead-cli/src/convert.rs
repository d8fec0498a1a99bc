//! `ahead convert`: a GGUF file's weights re-encoded as F32, F16 or Q8_0 (same metadata,
//! tokenizer and template), e.g. to compare a quantized file with transformers' float32 run;
//! or any model ahead loads written as a Hugging Face folder (`--to hf`).

use std::path::PathBuf;

use ahead_model::format::convert::convert_gguf;
use ahead_model::format::hf_write::write_hf_folder;
use ahead_model::TensorDType;
use ahead_model::{load, LoadOptions, ModelSource};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    /// A Hugging Face folder (F32 safetensors, config, tokenizer.json, chat template).
    Hf,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The GGUF file to read (with --to hf: any model source ahead loads).
    pub input: PathBuf,
    /// The type every matrix is written in (vectors stay F32).
    #[arg(long)]
    pub to: Target,
    /// Where to write the new file (refused if it exists, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite --out.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!("{} exists (--force overwrites it)", a.out.display());
    }
    let target = match a.to {
        Target::F32 => TensorDType::F32,
        Target::F16 => TensorDType::F16,
        Target::Q8_0 => TensorDType::Q8_0,
        Target::Hf => return hf_folder(&a),
    };
    let bytes = std::fs::read(&a.input).with_context(|| format!("reading {}", a.input.display()))?;
    let out = convert_gguf(&bytes, &a.input.display().to_string(), target)?;
    // Written beside the target and renamed, so a failure never leaves half a file.
    let tmp = a.out.with_extension("gguf.partial");
    std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.out).with_context(|| format!("renaming to {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({} MB, {})",
        a.out.display(),
        out.len() / 1_000_000,
        target.name()
    );
    Ok(())
}

fn hf_folder(a: &ConvertArgs) -> Result<()> {
    let source = ModelSource::Path(a.input.clone());
    let loaded = load(&source, &LoadOptions::default()).context("loading the model")?;
    write_hf_folder(&loaded.model, &loaded.tokenizer, &a.out)?;
    eprintln!("wrote {} (a Hugging Face folder, f32)", a.out.display());
    Ok(())
}
