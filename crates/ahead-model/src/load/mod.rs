//! Finding and loading a model with its tokenizer from any supported source.
//!
//! `SRC` may be a llama2.c checkpoint (`.bin`), a `.gguf` file, a Hugging Face folder, a hub
//! repo id (`org/name`, resolved from the local cache first), or nothing: the embedded default
//! model, stories260K.

mod gguf;
mod hf;
mod hub;
mod llama2c;
pub(crate) mod weights;

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::format::gguf::parse_gguf;
use crate::tokenizer::Tokenizer;
use crate::transformer::Model;

pub use hub::{hub_cache_dir, resolve_hub, resolve_hub_files};

/// The embedded default model: Karpathy's stories260K (MIT), with its 512-piece tokenizer.
const DEFAULT_CHECKPOINT: &[u8] = include_bytes!("../../../../models/stories260K/stories260K.bin");
const DEFAULT_TOKENIZER: &[u8] = include_bytes!("../../../../models/stories260K/tok512.bin");
/// A draft for the default model, distilled by `ahead train draft` (see models/stories260K/README.md).
const DEFAULT_DRAFT: &[u8] = include_bytes!("../../../../models/stories260K/draft.bin");

const DEFAULT_MEDUSA_CONFIG: &str = include_str!("../../../../models/stories260K/medusa/config.json");
const DEFAULT_MEDUSA_WEIGHTS: &[u8] =
    include_bytes!("../../../../models/stories260K/medusa/medusa_lm_head.safetensors");

/// The embedded default model's vendored Medusa heads (trained by `ahead train medusa`).
pub fn default_medusa() -> Result<crate::medusa::MedusaHeads> {
    crate::medusa::MedusaHeads::from_bytes(
        DEFAULT_MEDUSA_CONFIG,
        "stories260K medusa/config.json (embedded)",
        DEFAULT_MEDUSA_WEIGHTS,
        "stories260K medusa/medusa_lm_head.safetensors (embedded)",
    )
}

/// The embedded default model's vendored draft (same tokenizer).
pub fn default_draft() -> Result<Model> {
    llama2c::load(DEFAULT_DRAFT, "stories260K draft.bin (embedded)")
}

/// The file formats ahead reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Llama2c,
    Gguf,
    HuggingFace,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama2c => "llama2c",
            Self::Gguf => "gguf",
            Self::HuggingFace => "huggingface",
        }
    }
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The embedded stories260K.
    Default,
    /// A file or folder on disk.
    Path(PathBuf),
    /// A hub repo id such as `TinyLlama/TinyLlama-1.1B-Chat-v1.0`.
    Hub(String),
}

impl ModelSource {
    /// Interprets a `--model` argument: an existing path, else a hub id of the form `org/name`.
    pub fn parse(src: &str) -> Result<Self> {
        let path = Path::new(src);
        if src.is_empty() || src == "default" {
            return Ok(Self::Default);
        }
        if path.exists() {
            return Ok(Self::Path(path.to_path_buf()));
        }
        let parts: Vec<&str> = src.split('/').collect();
        let ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() == 2 && parts.iter().all(|p| ok(p)) {
            return Ok(Self::Hub(src.to_string()));
        }
        Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file, folder or hub id"),
        ))
    }
}

/// Options beside the source.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Tokenizer for llama2.c checkpoints (else `tokenizer.bin` or a single `tok*.bin` beside it).
    pub tokenizer: Option<PathBuf>,
}

/// What was loaded and from where.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub format: Format,
    /// A printable description of the source.
    pub source: String,
    /// The tokens a drafter's classifier scores, when the file says (a draft trained by
    /// `ahead train draft --vocab-subset`, GGUF key `ahead.token_subset`); the model as loaded
    /// still scores the whole vocabulary.
    pub token_subset: Option<Vec<u32>>,
}

/// A model with its tokenizer.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub info: ModelInfo,
}

/// Loads model and tokenizer from `source`.
pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<LoadedModel> {
    match source {
        ModelSource::Default => {
            let model = llama2c::load(DEFAULT_CHECKPOINT, "stories260K.bin (embedded)")?;
            let tokenizer = Tokenizer::from_llama2c_bytes(
                DEFAULT_TOKENIZER,
                model.config().vocab_size,
                "tok512.bin (embedded)",
            )?;
            let info = ModelInfo {
                format: Format::Llama2c,
                source: "stories260K (embedded default)".into(),
                token_subset: None,
            };
            Ok(LoadedModel {
                model,
                tokenizer,
                info,
            })
        }
        ModelSource::Path(p) => load_path(p, opts),
        ModelSource::Hub(id) => load_path(&resolve_hub(id)?, opts),
    }
}

/// The bytes of a llama2.c source's tokenizer (to ship it beside a draft trained for it), or
/// `None` for GGUF and Hugging Face sources, whose tokenizers live inside the model files.
pub fn llama2c_tokenizer_bytes(source: &ModelSource, opts: &LoadOptions) -> Result<Option<Vec<u8>>> {
    let path = match source {
        ModelSource::Default => return Ok(Some(DEFAULT_TOKENIZER.to_vec())),
        ModelSource::Path(p) => p.clone(),
        ModelSource::Hub(_) => return Ok(None),
    };
    if path.is_dir() {
        return Ok(None);
    }
    let mut head = [0u8; 4];
    let n = std::io::Read::read(
        &mut std::fs::File::open(&path).map_err(|e| ModelError::io(&path, e))?,
        &mut head,
    )
    .map_err(|e| ModelError::io(&path, e))?;
    if head[..n].starts_with(b"GGUF") {
        return Ok(None);
    }
    let tok = match &opts.tokenizer {
        Some(t) => t.clone(),
        None => find_llama2c_tokenizer(&path)?,
    };
    std::fs::read(&tok).map(Some).map_err(|e| ModelError::io(&tok, e))
}

fn load_path(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let info = |format| ModelInfo {
        format,
        source: path.display().to_string(),
        token_subset: None,
    };
    if path.is_dir() {
        let model = hf::load(path)?;
        let tokenizer = hf_tokenizer(path)?;
        return Ok(LoadedModel {
            model,
            tokenizer,
            info: info(Format::HuggingFace),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let label = path.display().to_string();
    if bytes.starts_with(b"GGUF") {
        let file = parse_gguf(&bytes, &label)?;
        let model = gguf::load(&file, &bytes)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        return Ok(LoadedModel {
            model,
            tokenizer,
            info: ModelInfo {
                token_subset: crate::format::gguf_draft::token_subset(&file)?,
                ..info(Format::Gguf)
            },
        });
    }
    refuse_unloadable(path, &bytes)?;
    let model = llama2c::load(&bytes, &label)?;
    let tok_path = match &opts.tokenizer {
        Some(t) => t.clone(),
        None => find_llama2c_tokenizer(path)?,
    };
    let tokenizer = Tokenizer::from_llama2c_file(&tok_path, model.config().vocab_size)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        info: info(Format::Llama2c),
    })
}

/// Refuses pickles, zips and lone safetensors files with an explanation.
fn refuse_unloadable(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display();
    let is_zip = bytes.starts_with(b"PK\x03\x04");
    let is_pickle = bytes.first() == Some(&0x80) && bytes.get(1).is_some_and(|v| (2..=5).contains(v));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if is_zip || is_pickle || matches!(ext, "pt" | "pth" | "pkl" | "ckpt") {
        return Err(ModelError::Unsupported(format!(
            "{name} is a PyTorch pickle. ahead never loads pickle files, which can run arbitrary code \
             when read; convert it to safetensors or GGUF"
        )));
    }
    if ext == "safetensors" {
        return Err(ModelError::Unsupported(format!(
            "{name}: point --model at the folder that holds it with config.json and tokenizer.json"
        )));
    }
    Ok(())
}

/// The tokenizer of a llama2.c checkpoint: `tokenizer.bin` beside it, or the single `tok*.bin`.
fn find_llama2c_tokenizer(checkpoint: &Path) -> Result<PathBuf> {
    let dir = checkpoint
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let named = dir.join("tokenizer.bin");
    if named.is_file() {
        return Ok(named);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("tok") && n.ends_with(".bin") && p.as_path() != checkpoint
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ModelError::Tokenizer(format!(
            "no tokenizer for {}: put tokenizer.bin beside it or pass --tokenizer",
            checkpoint.display()
        ))),
        _ => Err(ModelError::Tokenizer(format!(
            "several tok*.bin files beside {}: choose one with --tokenizer",
            checkpoint.display()
        ))),
    }
}

fn hf_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let opt = |n: &str| Some(dir.join(n)).filter(|p| p.is_file());
    let tj = dir.join("tokenizer.json");
    if !tj.is_file() {
        return Err(ModelError::Tokenizer(format!(
            "{}: no tokenizer.json",
            dir.display()
        )));
    }
    Tokenizer::from_hf_files(
        &tj,
        opt("tokenizer_config.json").as_deref(),
        opt("generation_config.json").as_deref(),
    )
}
