//! A loaded model written as a Hugging Face folder (`ahead convert --to hf`): `config.json`
//! (transformers 4's shape), `model.safetensors` (F32, so any quantized source is kept
//! exactly), `tokenizer.json` (the `tokenizers` pipeline ahead runs), `tokenizer_config.json`
//! (BOS/EOS and the chat template) and `generation_config.json`. transformers and ahead load
//! it; it is how the tests get a real model in the Hugging Face layout without a download.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{ModelError, Result};
use crate::format::safetensors_write::{write_safetensors, Stored};
use crate::load::weights::{hf_name, LayerSlot, Slot};
use crate::tokenizer::Tokenizer;
use crate::transformer::{Architecture, Linear, Model, RopeScaling, RopeStyle};

/// Writes `model` and `tokenizer` into `dir` (created if needed). Refuses what the folder could
/// not say: GGUF RoPE frequency factors and tokenizers that are not `tokenizers` pipelines
/// (sentencepiece GGUF, llama2.c).
pub fn write_hf_folder(model: &Model, tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    let cfg = model.config();
    let arch = cfg.architecture.spec();
    if !matches!(
        cfg.architecture,
        Architecture::Llama | Architecture::Mistral | Architecture::Qwen2
    ) {
        return Err(ModelError::Unsupported(format!(
            "writing a Hugging Face folder for {} (only llama, mistral and qwen2)",
            cfg.architecture.name()
        )));
    }
    if cfg.rope_freq_factors.is_some() {
        return Err(ModelError::Unsupported(
            "writing a Hugging Face folder for a model with GGUF rope_freqs factors".into(),
        ));
    }
    let tokenizer_json = tokenizer.hf_json()?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;

    // Name, shape and F32 values.
    type Entry = (String, Vec<usize>, Vec<f32>);
    // q and k rows of each head (`heads`) go back to rotate-half order.
    let matrix = |slot: Slot, l: &Linear, heads: Option<usize>| -> Result<Entry> {
        let mut w = l.to_f32()?;
        if let Some(heads) = heads.filter(|_| cfg.rope_style == RopeStyle::Interleaved) {
            w = rotate_half_rows(&w, heads, cfg.head_dim, l.cols());
        }
        Ok((hf_name(slot, arch), vec![l.rows(), l.cols()], w))
    };
    let vector = |slot: Slot, v: &[f32], heads: Option<usize>| -> Entry {
        let v = match heads.filter(|_| cfg.rope_style == RopeStyle::Interleaved) {
            Some(heads) => rotate_half_rows(v, heads, cfg.head_dim, 1),
            None => v.to_vec(),
        };
        (hf_name(slot, arch), vec![v.len()], v)
    };
    let w = model.weights();
    let mut tensors: Vec<Entry> = vec![matrix(Slot::Embedding, &w.embedding, None)?];
    if let Some(head) = &w.lm_head {
        tensors.push(matrix(Slot::LmHead, head, None)?);
    }
    for (i, l) in w.layers.iter().enumerate() {
        let at = |s: LayerSlot| Slot::Layer(i, s);
        tensors.push(matrix(at(LayerSlot::Wq), &l.wq, Some(cfg.n_heads))?);
        tensors.push(matrix(at(LayerSlot::Wk), &l.wk, Some(cfg.n_kv_heads))?);
        for (s, m) in [
            (LayerSlot::Wv, &l.wv),
            (LayerSlot::Wo, &l.wo),
            (LayerSlot::W1, &l.w1),
            (LayerSlot::W2, &l.w2),
            (LayerSlot::W3, &l.w3),
        ] {
            tensors.push(matrix(at(s), m, None)?);
        }
        tensors.push(vector(at(LayerSlot::AttnNorm), &l.attn_norm, None));
        tensors.push(vector(at(LayerSlot::FfnNorm), &l.ffn_norm, None));
        for (s, b, heads) in [
            (LayerSlot::Bq, &l.bq, Some(cfg.n_heads)),
            (LayerSlot::Bk, &l.bk, Some(cfg.n_kv_heads)),
            (LayerSlot::Bv, &l.bv, None),
        ] {
            if let Some(b) = b {
                tensors.push(vector(at(s), b, heads));
            }
        }
    }
    tensors.push(vector(Slot::Norm, &w.norm, None));
    let tensors: Vec<Stored> = tensors
        .into_iter()
        .map(|(name, shape, values)| Stored::f32(name, shape, &values))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors, "the weights")?;

    let biased = w.layers.first().is_some_and(|l| l.bq.is_some());
    write_json(dir, "config.json", &config_json(model, tokenizer, biased))?;
    write(dir, "tokenizer.json", tokenizer_json.as_bytes())?;
    let piece = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_piece(i));
    let mut tok_cfg = json!({
        "bos_token": piece(tokenizer.bos_id()),
        "eos_token": piece(tokenizer.eos_ids().first().copied()),
        "add_bos_token": tokenizer.add_bos(),
    });
    if let Some(t) = tokenizer.chat_template() {
        tok_cfg["chat_template"] = t.source().into();
    }
    write_json(dir, "tokenizer_config.json", &tok_cfg)?;
    let generation = json!({"bos_token_id": tokenizer.bos_id(), "eos_token_id": tokenizer.eos_ids()});
    write_json(dir, "generation_config.json", &generation)
}

/// GGUF Llama q/k rows (RoPE pairs interleaved within a head, as llama.cpp's converter permutes
/// them) back into transformers' rotate-half order: row 2i + j of a head becomes j * half + i.
fn rotate_half_rows(w: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = (h * head_dim + 2 * i + j) * cols;
                let to = (h * head_dim + j * half + i) * cols;
                out[to..to + cols].copy_from_slice(&w[from..from + cols]);
            }
        }
    }
    out
}

fn config_json(model: &Model, tokenizer: &Tokenizer, biased: bool) -> Value {
    let c = model.config();
    // The table lists each family's `model_type` first and its class second.
    let names = c.architecture.spec().hf_names;
    let (model_type, class) = (names[0], names[names.len() - 1]);
    let rope_scaling = match c.rope_scaling {
        RopeScaling::None => Value::Null,
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Llama3(s) => json!({
            "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }),
        RopeScaling::Yarn(y) => json!({
            "rope_type": "yarn", "factor": y.factor, "beta_fast": y.beta_fast, "beta_slow": y.beta_slow,
            "attention_factor": y.attention_factor, "truncate": y.truncate,
            "original_max_position_embeddings": y.original_max_position_embeddings,
        }),
    };
    let mut cfg = json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": c.dim,
        "intermediate_size": c.hidden_dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "hidden_act": "silu",
        "tie_word_embeddings": model.weights().lm_head.is_none(),
        "bos_token_id": tokenizer.bos_id(),
        "eos_token_id": tokenizer.eos_ids(),
        "torch_dtype": "float32",
    });
    if c.architecture == Architecture::Llama {
        cfg["attention_bias"] = biased.into();
    }
    if let Some(w) = c.sliding_window {
        cfg["sliding_window"] = w.into();
        if c.architecture == Architecture::Qwen2 {
            cfg["use_sliding_window"] = true.into();
        }
    }
    cfg
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| ModelError::io(&path, e))
}

fn write_json(dir: &Path, name: &str, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ModelError::Input(format!("{name}: {e}")))?;
    write(dir, name, text.as_bytes())
}
