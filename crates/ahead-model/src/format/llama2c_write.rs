//! Writes a model as a llama2.c checkpoint (the legacy v0 layout `run.c` reads): a 7-int header,
//! then f32 tensors grouped by kind across layers. Used for drafts trained by `ahead train`,
//! which share the target's llama2.c tokenizer.

use std::path::Path;

use crate::error::{ModelError, Result};
use crate::transformer::{Model, RopeStyle};

/// Writes `model` to `path`. llama2.c has no room for biases, a separate head size or
/// rotate-half RoPE: rotate-half q/k rows are permuted to the interleaved pairs it uses, and
/// the rest is refused.
pub fn write_llama2c(model: &Model, path: &Path) -> Result<()> {
    let cfg = model.config();
    let w = model.weights();
    let refuse = |why: &str| Err(ModelError::Unsupported(format!("a llama2.c checkpoint {why}")));
    if cfg.head_dim * cfg.n_heads != cfg.dim {
        return refuse("needs n_heads * head_dim == dim");
    }
    if w.layers
        .iter()
        .any(|l| l.bq.is_some() || l.bk.is_some() || l.bv.is_some())
    {
        return refuse("has no attention biases");
    }
    let half = cfg.rope_style == RopeStyle::Half;
    let vocab =
        i32::try_from(cfg.vocab_size).map_err(|_| ModelError::Input("vocabulary too large".into()))?;
    let header = [
        cfg.dim,
        cfg.hidden_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        0,
        cfg.max_seq_len,
    ];
    let mut out: Vec<u8> = Vec::with_capacity(model.weight_bytes() + 64);
    for (i, v) in header.into_iter().enumerate() {
        // A negative vocabulary size marks an untied classifier.
        let v = if i == 5 {
            if w.lm_head.is_some() {
                -vocab
            } else {
                vocab
            }
        } else {
            i32::try_from(v).map_err(|_| ModelError::Input("config value too large".into()))?
        };
        out.extend(v.to_le_bytes());
    }
    let mut put = |v: &[f32]| out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    put(&w.embedding.to_f32()?);
    let hd = cfg.head_dim;
    for part in 0..9 {
        for l in &w.layers {
            match part {
                0 => put(&l.attn_norm),
                1 if half => put(&interleave(&l.wq.to_f32()?, cfg.n_heads, hd, cfg.dim)),
                1 => put(&l.wq.to_f32()?),
                2 if half => put(&interleave(&l.wk.to_f32()?, cfg.n_kv_heads, hd, cfg.dim)),
                2 => put(&l.wk.to_f32()?),
                3 => put(&l.wv.to_f32()?),
                4 => put(&l.wo.to_f32()?),
                5 => put(&l.ffn_norm),
                6 => put(&l.w1.to_f32()?),
                7 => put(&l.w2.to_f32()?),
                _ => put(&l.w3.to_f32()?),
            }
        }
    }
    put(&w.norm);
    // run.c's precomputed RoPE tables; ahead recomputes them, so zeros keep the layout.
    put(&vec![0.0; cfg.max_seq_len * hd]);
    if let Some(h) = &w.lm_head {
        put(&h.to_f32()?);
    }
    std::fs::write(path, out).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        cause: e,
    })
}

/// Rows of a q or k projection reordered from rotate-half to interleaved pairs.
pub fn interleave(values: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for s in 0..2 {
                let src = h * hd + s * hd / 2 + i;
                let dst = h * hd + 2 * i + s;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
