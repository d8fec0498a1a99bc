//! llama2.c checkpoints, legacy layout: seven i32 header fields, then f32 weights in a fixed
//! order. A negative vocabulary size means the classifier is stored separately (unshared).

use std::collections::HashMap;

use super::weights::{gguf_name, gguf_source_name, LayerSlot, Slot, WeightSource};
use crate::error::{ModelError, Result};
use crate::tensor::{RawTensor, TensorDType};
use crate::transformer::{Architecture, Model, ModelConfig, RopeScaling, RopeStyle};

const HEADER_BYTES: usize = 7 * 4;
/// Magic of llama2.c's newer "version 1/2" exports ("ak42").
const VERSIONED_MAGIC: u32 = 0x616b_3432;

/// Reads a legacy llama2.c checkpoint held in `bytes`; `file` names it in errors.
pub fn load(bytes: &[u8], file: &str) -> Result<Model> {
    let header = |i: usize| -> Result<i32> {
        bytes
            .get(i * 4..i * 4 + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| {
                ModelError::format(
                    file,
                    "header",
                    format!("file is {} bytes, shorter than the 28-byte header", bytes.len()),
                )
            })
    };
    if header(0)? as u32 == VERSIONED_MAGIC {
        return Err(ModelError::Unsupported(format!(
            "{file}: llama2.c version-1/2 exports are not supported; export with --version 0 (legacy) or convert to GGUF"
        )));
    }
    let field = |i: usize, name: &str| -> Result<usize> {
        let v = header(i)?;
        let v = if name == "vocab_size" {
            v.unsigned_abs() as i64
        } else {
            v as i64
        };
        if v <= 0 || v > (1 << 24) {
            return Err(ModelError::format(file, name, format!("{v} is out of range")));
        }
        Ok(v as usize)
    };
    let (dim, hidden_dim, n_layers) = (field(0, "dim")?, field(1, "hidden_dim")?, field(2, "n_layers")?);
    let (n_heads, n_kv_heads) = (field(3, "n_heads")?, field(4, "n_kv_heads")?);
    let vocab_size = field(5, "vocab_size")?;
    let shared = header(5)? > 0;
    let max_seq_len = field(6, "seq_len")?;
    if dim % n_heads != 0 {
        return Err(ModelError::format(
            file,
            "n_heads",
            format!("{n_heads} does not divide dim {dim}"),
        ));
    }
    let cfg = ModelConfig {
        architecture: Architecture::Llama,
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim: dim / n_heads,
        vocab_size,
        max_seq_len,
        rope_theta: 10000.0,
        rope_style: RopeStyle::Interleaved,
        rope_scaling: RopeScaling::None,
        rope_freq_factors: None,
        rms_eps: 1e-5,
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: None,
    };
    cfg.validate(file)?;
    let tensors = slice_tensors(&cfg, shared, &bytes[HEADER_BYTES..], file)?;
    let get = |name: &str| Ok(tensors.get(name).cloned());
    let source = WeightSource {
        file,
        name: gguf_source_name,
        norm_plus_one: false,
        get: &get,
    };
    Model::new(cfg.clone(), source.build(&cfg, false)?)
}

/// Cuts the weight region into named tensors, checking the total size against the file.
fn slice_tensors<'a>(
    cfg: &ModelConfig,
    shared: bool,
    data: &'a [u8],
    file: &str,
) -> Result<HashMap<String, RawTensor<'a>>> {
    use LayerSlot::*;
    let (d, kv, h, l, hs) = (cfg.dim, cfg.kv_dim(), cfg.hidden_dim, cfg.n_layers, cfg.head_dim);
    // (slot for each layer or the whole model, per-layer shape), in file order.
    let stacked: [(Option<LayerSlot>, Vec<usize>); 9] = [
        (Some(AttnNorm), vec![d]),
        (Some(Wq), vec![d, d]),
        (Some(Wk), vec![kv, d]),
        (Some(Wv), vec![kv, d]),
        (Some(Wo), vec![d, d]),
        (Some(FfnNorm), vec![d]),
        (Some(W1), vec![h, d]),
        (Some(W2), vec![d, h]),
        (Some(W3), vec![h, d]),
    ];
    let mut out = HashMap::new();
    let mut offset = 0usize;
    let mut take =
        |name: String, shape: Vec<usize>, out: &mut HashMap<String, RawTensor<'a>>| -> Result<()> {
            let bytes = shape
                .iter()
                .try_fold(4usize, |a, &x| a.checked_mul(x))
                .ok_or_else(|| ModelError::format(file, &name, "size overflows"))?;
            let end = offset
                .checked_add(bytes)
                .filter(|&e| e <= data.len())
                .ok_or_else(|| {
                    ModelError::format(
                        file,
                        &name,
                        format!(
                            "needs {bytes} bytes at offset {}, file has {}",
                            offset + HEADER_BYTES,
                            data.len() + HEADER_BYTES
                        ),
                    )
                })?;
            out.insert(
                name,
                RawTensor {
                    dtype: TensorDType::F32,
                    shape,
                    data: &data[offset..end],
                },
            );
            offset = end;
            Ok(())
        };
    take(gguf_name(Slot::Embedding), vec![cfg.vocab_size, d], &mut out)?;
    for (slot, shape) in stacked {
        for i in 0..l {
            if let Some(s) = slot {
                take(gguf_name(Slot::Layer(i, s)), shape.clone(), &mut out)?;
            }
        }
    }
    take(gguf_name(Slot::Norm), vec![d], &mut out)?;
    // The precomputed RoPE tables (real and imaginary halves) are recomputed instead.
    take("freq_cis".into(), vec![2, cfg.max_seq_len, hs / 2], &mut out)?;
    if !shared {
        take(gguf_name(Slot::LmHead), vec![cfg.vocab_size, d], &mut out)?;
    }
    if offset != data.len() {
        return Err(ModelError::format(
            file,
            "size",
            format!("{} bytes left after the last tensor", data.len() - offset),
        ));
    }
    Ok(out)
}
