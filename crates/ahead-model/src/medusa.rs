//! Medusa heads (Cai et al., 2024): K extra heads on a base model's last hidden state. Head i
//! has L residual blocks `x + SiLU(W x + b)` and a linear layer to the vocabulary; read at
//! position t, it predicts token t + i + 2 (the base's own head predicts t + 1).
//!
//! The on-disk layout is the original project's, so published heads load and ours publish:
//! a folder with `config.json` (`medusa_num_heads`, `medusa_num_layers`) and
//! `medusa_lm_head.safetensors` with `{head}.{block}.linear.weight` `[dim, dim]`,
//! `{head}.{block}.linear.bias` `[dim]` and `{head}.{L}.weight` `[vocab, dim]`. The original
//! `medusa_lm_head.pt` is a pickle and is refused.
//!
//! Vocabulary-pruned heads (FR-Spec, Zhao et al., 2025) score only a subset of the tokens, the
//! most frequent in the target's own outputs: their output layer is `[subset, dim]`, and
//! `config.json` carries ahead's `ahead_token_subset` (row r is that token) and
//! `ahead_vocab_size`. The projection is most of a head's cost, so this is what makes heads pay
//! on a large vocabulary. Verification always scores the whole vocabulary, so output is unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::format::safetensors::parse_safetensors;
use crate::format::safetensors_write::{write_safetensors, Stored};
use crate::load::weights::vector;
use crate::tensor::TensorDType;
use crate::transformer::Linear;

/// One residual block: `x + SiLU(w x + b)`.
#[derive(Debug, Clone)]
pub struct ResBlock {
    pub w: Linear,
    pub b: Vec<f32>,
}

/// One head: residual blocks, then the projection to the vocabulary.
#[derive(Debug, Clone)]
pub struct MedusaHead {
    pub blocks: Vec<ResBlock>,
    pub out: Linear,
}

/// K heads over hidden states of width `dim`.
#[derive(Debug, Clone)]
pub struct MedusaHeads {
    heads: Vec<MedusaHead>,
    dim: usize,
    /// The target's vocabulary the heads predict into.
    vocab: usize,
    /// FR-Spec: output row r scores token `subset[r]`; `None`: row r is token r.
    subset: Option<Vec<u32>>,
    /// Measured held-out top-k accuracy per head (`accuracy[head][rank]`), when known: what
    /// the candidate tree is chosen from.
    accuracy: Option<Vec<Vec<f64>>>,
}

/// `config.json` of a Medusa folder (other keys, such as the base model's name, are kept out).
#[derive(Debug, Serialize, Deserialize)]
struct MedusaConfigFile {
    medusa_num_heads: usize,
    medusa_num_layers: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_model_name_or_path: Option<String>,
    /// ahead's extension: per head, the held-out chance that its rank-r token is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_rank_accuracy: Option<Vec<Vec<f64>>>,
    /// ahead's extension for pruned heads: the token of each output row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_token_subset: Option<Vec<u32>>,
    /// ahead's extension for pruned heads: the full vocabulary's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ahead_vocab_size: Option<usize>,
}

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "medusa_lm_head.safetensors";
/// The files of a Medusa folder (what a hub repo of heads must hold).
pub const FILES: [&str; 2] = [CONFIG, WEIGHTS];

impl MedusaHeads {
    /// Heads over `dim`-wide hidden states predicting `vocab` tokens; checks every shape.
    pub fn new(heads: Vec<MedusaHead>, dim: usize, vocab: usize) -> Result<Self> {
        Self::with_rows(heads, dim, vocab, None)
    }

    /// Heads that score only `subset` of a `vocab`-token vocabulary (output row r is token
    /// `subset[r]`); the ids must be distinct and below `vocab`.
    pub fn pruned(heads: Vec<MedusaHead>, dim: usize, vocab: usize, subset: Vec<u32>) -> Result<Self> {
        let mut seen = vec![false; vocab];
        for &id in &subset {
            match seen.get_mut(id as usize) {
                Some(s) if !*s => *s = true,
                Some(_) => {
                    return Err(ModelError::Input(format!(
                        "token {id} appears twice in the heads' subset"
                    )))
                }
                None => {
                    return Err(ModelError::Input(format!(
                        "the heads' subset holds token {id}, outside the vocabulary of {vocab}"
                    )))
                }
            }
        }
        Self::with_rows(heads, dim, vocab, Some(subset))
    }

    fn with_rows(heads: Vec<MedusaHead>, dim: usize, vocab: usize, subset: Option<Vec<u32>>) -> Result<Self> {
        let rows = subset.as_ref().map_or(vocab, Vec::len);
        if heads.is_empty() {
            return Err(ModelError::Input("Medusa needs at least one head".into()));
        }
        for (i, h) in heads.iter().enumerate() {
            let bad = |what: &str, found: Vec<usize>, expected: Vec<usize>| ModelError::Shape {
                name: format!("medusa head {i} {what}"),
                expected,
                found,
            };
            for b in &h.blocks {
                if b.w.rows() != dim || b.w.cols() != dim {
                    return Err(bad("block", vec![b.w.rows(), b.w.cols()], vec![dim, dim]));
                }
                if b.b.len() != dim {
                    return Err(bad("bias", vec![b.b.len()], vec![dim]));
                }
            }
            if h.out.rows() != rows || h.out.cols() != dim {
                return Err(bad("output", vec![h.out.rows(), h.out.cols()], vec![rows, dim]));
            }
        }
        Ok(Self {
            heads,
            dim,
            vocab,
            subset,
            accuracy: None,
        })
    }

    /// The same heads scoring only `subset` of their tokens (each output row kept is the row
    /// of its token): pruning heads trained on the whole vocabulary.
    pub fn restricted_to(&self, subset: Vec<u32>) -> Result<Self> {
        let heads = self
            .heads
            .iter()
            .map(|h| {
                let mut rows = Vec::with_capacity(subset.len() * self.dim);
                let mut row = vec![0f32; self.dim];
                for &t in &subset {
                    let r = match &self.subset {
                        Some(s) => s.iter().position(|&x| x == t),
                        None => Some(t as usize).filter(|&r| r < h.out.rows()),
                    }
                    .ok_or_else(|| ModelError::Input(format!("the heads do not score token {t}")))?;
                    h.out.row(r, &mut row)?;
                    rows.extend_from_slice(&row);
                }
                Ok(MedusaHead {
                    blocks: h.blocks.clone(),
                    out: Linear::from_f32(rows, subset.len(), self.dim)?,
                })
            })
            .collect::<Result<_>>()?;
        let mut out = Self::pruned(heads, self.dim, self.vocab, subset)?;
        out.accuracy = self.accuracy.clone();
        Ok(out)
    }

    /// The tokens the heads score, when pruned.
    pub fn subset(&self) -> Option<&[u32]> {
        self.subset.as_deref()
    }

    /// The token an output row scores.
    pub fn token(&self, row: usize) -> u32 {
        self.subset.as_ref().map_or(row as u32, |s| s[row])
    }

    /// Per head, the measured chance that its rank-r token is right, if known.
    pub fn accuracy(&self) -> Option<&[Vec<f64>]> {
        self.accuracy.as_deref()
    }

    /// Records measured per-head rank accuracies (saved in `config.json`).
    pub fn set_accuracy(&mut self, accuracy: Vec<Vec<f64>>) {
        self.accuracy = Some(accuracy);
    }

    pub fn num_heads(&self) -> usize {
        self.heads.len()
    }

    /// Residual blocks per head.
    pub fn num_layers(&self) -> usize {
        self.heads.first().map_or(0, |h| h.blocks.len())
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    pub fn heads(&self) -> &[MedusaHead] {
        &self.heads
    }

    /// Bytes of weights one pass of every head reads.
    pub fn weight_bytes(&self) -> usize {
        self.heads
            .iter()
            .map(|h| {
                h.out.bytes()
                    + h.blocks
                        .iter()
                        .map(|b| b.w.bytes() + 4 * b.b.len())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Logits of every head for one hidden state, one per output row (see `token`).
    pub fn forward(&self, hidden: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.forward_first(hidden, self.heads.len())
    }

    /// Logits of the first `n` heads only (a short draft needs only the shallow heads, and
    /// each head costs a classifier product).
    pub fn forward_first(&self, hidden: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        if hidden.len() != self.dim {
            return Err(ModelError::Input(format!(
                "a hidden state of {} values for heads of width {}",
                hidden.len(),
                self.dim
            )));
        }
        let mut out = Vec::with_capacity(n.min(self.heads.len()));
        let mut y = vec![0f32; self.dim];
        for h in self.heads.iter().take(n) {
            let mut x = hidden.to_vec();
            for b in &h.blocks {
                b.w.forward(&x, 1, &mut y)?;
                for ((xv, yv), bv) in x.iter_mut().zip(&y).zip(&b.b) {
                    let z = yv + bv;
                    *xv += z / (1.0 + (-z).exp());
                }
            }
            let mut logits = vec![0f32; h.out.rows()];
            h.out.forward(&x, 1, &mut logits)?;
            out.push(logits);
        }
        Ok(out)
    }

    /// Loads a Medusa folder (see the module docs for the layout).
    pub fn load(dir: &Path) -> Result<Self> {
        if dir.join("medusa_lm_head.pt").is_file() && !dir.join(WEIGHTS).is_file() {
            return Err(ModelError::Unsupported(format!(
                "{}: medusa_lm_head.pt is a PyTorch pickle, which can run arbitrary code when read; \
                 ahead never loads pickles. Convert it to {WEIGHTS} (safetensors)",
                dir.display()
            )));
        }
        let cfg_path = dir.join(CONFIG);
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let path = dir.join(WEIGHTS);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        Self::from_bytes(
            &cfg_text,
            &cfg_path.display().to_string(),
            &bytes,
            &path.display().to_string(),
        )
    }

    /// Heads from the contents of `config.json` and `medusa_lm_head.safetensors` (labels name
    /// them in errors).
    pub fn from_bytes(config: &str, config_label: &str, weights: &[u8], weights_label: &str) -> Result<Self> {
        let cfg: MedusaConfigFile = serde_json::from_str(config)
            .map_err(|e| ModelError::format(config_label, "config", e.to_string()))?;
        if cfg.medusa_num_heads == 0 || cfg.medusa_num_heads > 64 || cfg.medusa_num_layers > 64 {
            return Err(ModelError::format(
                config_label,
                "medusa_num_heads",
                format!(
                    "{} heads of {} layers is out of range",
                    cfg.medusa_num_heads, cfg.medusa_num_layers
                ),
            ));
        }
        let file = weights_label.to_string();
        let st = parse_safetensors(weights, &file)?;
        let get = |name: &str| {
            st.tensor(weights, name).ok_or_else(|| ModelError::MissingTensor {
                file: file.clone(),
                name: name.to_string(),
            })
        };
        let mut heads = Vec::with_capacity(cfg.medusa_num_heads);
        for i in 0..cfg.medusa_num_heads {
            let mut blocks = Vec::with_capacity(cfg.medusa_num_layers);
            for j in 0..cfg.medusa_num_layers {
                let wn = format!("{i}.{j}.linear.weight");
                let bn = format!("{i}.{j}.linear.bias");
                blocks.push(ResBlock {
                    w: Linear::from_raw(&get(&wn)?, &wn)?,
                    b: vector(&get(&bn)?, &file, &bn)?,
                });
            }
            let on = format!("{i}.{}.weight", cfg.medusa_num_layers);
            heads.push(MedusaHead {
                blocks,
                out: Linear::from_raw(&get(&on)?, &on)?,
            });
        }
        let (rows, dim) = (heads[0].out.rows(), heads[0].out.cols());
        let mut out = match (cfg.ahead_token_subset, cfg.ahead_vocab_size) {
            (None, None) => Self::new(heads, dim, rows)?,
            (Some(subset), Some(vocab)) => Self::pruned(heads, dim, vocab, subset)?,
            _ => {
                return Err(ModelError::format(
                    config_label,
                    "ahead_token_subset",
                    "pruned heads need both ahead_token_subset and ahead_vocab_size".to_string(),
                ))
            }
        };
        out.accuracy = cfg.ahead_rank_accuracy;
        Ok(out)
    }

    /// The same heads with every matrix stored as `dtype` (F16 halves a file and the bytes
    /// each step reads).
    pub fn converted(&self, dtype: TensorDType) -> Result<Self> {
        let convert = |l: &Linear| Linear::quantize(&l.to_f32()?, l.rows(), l.cols(), dtype);
        let heads = self
            .heads
            .iter()
            .map(|h| {
                Ok(MedusaHead {
                    blocks: h
                        .blocks
                        .iter()
                        .map(|b| {
                            Ok(ResBlock {
                                w: convert(&b.w)?,
                                b: b.b.clone(),
                            })
                        })
                        .collect::<Result<_>>()?,
                    out: convert(&h.out)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            heads,
            ..self.clone()
        })
    }

    /// Writes the heads in the original layout into `dir`, which is created if needed: matrices
    /// stored as F16 are written as F16, all else as F32.
    pub fn save(&self, dir: &Path, base_model: Option<&str>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut tensors = Vec::new();
        for (i, h) in self.heads.iter().enumerate() {
            for (j, b) in h.blocks.iter().enumerate() {
                tensors.push(Stored::matrix(format!("{i}.{j}.linear.weight"), &b.w)?);
                tensors.push(Stored::vector(format!("{i}.{j}.linear.bias"), &b.b));
            }
            tensors.push(Stored::matrix(format!("{i}.{}.weight", h.blocks.len()), &h.out)?);
        }
        write_safetensors(&dir.join(WEIGHTS), &tensors, "Medusa heads")?;
        let cfg = MedusaConfigFile {
            medusa_num_heads: self.num_heads(),
            medusa_num_layers: self.num_layers(),
            base_model_name_or_path: base_model.map(str::to_string),
            ahead_rank_accuracy: self.accuracy.clone(),
            ahead_token_subset: self.subset.clone(),
            ahead_vocab_size: self.subset.as_ref().map(|_| self.vocab),
        };
        let cfg_path = dir.join(CONFIG);
        let text = serde_json::to_string_pretty(&cfg)
            .map_err(|e| ModelError::Input(format!("Medusa config: {e}")))?;
        std::fs::write(&cfg_path, text).map_err(|e| ModelError::io(&cfg_path, e))
    }
}
