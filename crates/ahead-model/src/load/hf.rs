//! Hugging Face folders: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, and the tokenizer files beside them.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::weights::{hf_name, WeightSource};
use crate::error::{ModelError, Result};
use crate::format::safetensors::{parse_safetensors, parse_safetensors_index, SafetensorsFile};
use crate::llama::{Architecture, Llama3RopeScaling, LlamaConfig, Model, RopeStyle};

/// The fields of `config.json` ahead reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: usize,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    rope_scaling: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
}

/// Loads the model in folder `dir`.
pub fn load(dir: &Path) -> Result<Model> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(refuse_pickle_or_missing(dir));
    }
    let label = config_path.display().to_string();
    let text = std::fs::read(&config_path).map_err(|e| ModelError::io(&config_path, e))?;
    let hf: HfConfig =
        serde_json::from_slice(&text).map_err(|e| ModelError::format(&label, "json", e.to_string()))?;
    let (cfg, bias, tied) = config(&hf, &label)?;
    let shards = read_shards(dir)?;
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, (_, st)) in shards.iter().enumerate() {
        for name in st.names() {
            if owner.insert(name, i).is_some() {
                return Err(ModelError::format(
                    &st.label,
                    name,
                    "tensor appears in more than one shard",
                ));
            }
        }
    }
    let get = |name: &str| {
        Ok(owner.get(name).and_then(|&i| {
            let (bytes, st) = &shards[i];
            st.tensor(bytes, name)
        }))
    };
    let file = dir.display().to_string();
    let source = WeightSource {
        file: &file,
        name: hf_name,
        get: &get,
    };
    let mut weights = source.build(&cfg, bias)?;
    if tied {
        weights.lm_head = None;
    } else if weights.lm_head.is_none() {
        return Err(ModelError::MissingTensor {
            file,
            name: "lm_head.weight".into(),
        });
    }
    Model::new(cfg, weights)
}

/// Turns `config.json` into our config; also says whether q/k/v biases exist and whether the
/// classifier is tied to the embedding.
fn config(hf: &HfConfig, label: &str) -> Result<(LlamaConfig, bool, bool)> {
    let kind = hf
        .model_type
        .as_deref()
        .or_else(|| {
            hf.architectures
                .as_ref()
                .and_then(|a| a.first())
                .map(String::as_str)
        })
        .unwrap_or("llama");
    let architecture = match kind {
        "llama" | "LlamaForCausalLM" => Architecture::Llama,
        "mistral" | "MistralForCausalLM" => Architecture::Mistral,
        "qwen2" | "Qwen2ForCausalLM" => Architecture::Qwen2,
        other => {
            return Err(ModelError::Unsupported(format!(
                "{label}: model_type {other:?}; supported: llama, mistral, qwen2"
            )))
        }
    };
    if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
        return Err(ModelError::Unsupported(format!(
            "{label}: hidden_act {act:?}; only silu"
        )));
    }
    let sliding_window = match architecture {
        Architecture::Qwen2 if hf.use_sliding_window != Some(true) => None,
        _ => hf.sliding_window.filter(|&w| w < hf.max_position_embeddings),
    };
    let bias = architecture == Architecture::Qwen2 || hf.attention_bias == Some(true);
    let n_heads = hf.num_attention_heads;
    let cfg = LlamaConfig {
        architecture,
        dim: hf.hidden_size,
        hidden_dim: hf.intermediate_size,
        n_layers: hf.num_hidden_layers,
        n_heads,
        n_kv_heads: hf.num_key_value_heads.unwrap_or(n_heads),
        head_dim: hf
            .head_dim
            .unwrap_or(hf.hidden_size.checked_div(n_heads).unwrap_or(0)),
        vocab_size: hf.vocab_size,
        max_seq_len: hf.max_position_embeddings,
        rope_theta: hf.rope_theta.unwrap_or(10000.0),
        rope_style: RopeStyle::Half,
        llama3_scaling: rope_scaling(hf.rope_scaling.as_ref(), label)?,
        rope_freq_factors: None,
        rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        sliding_window,
    };
    cfg.validate(label)?;
    Ok((cfg, bias, hf.tie_word_embeddings.unwrap_or(false)))
}

/// `rope_scaling`: none, or Llama 3's; other kinds are refused rather than ignored.
fn rope_scaling(v: Option<&serde_json::Value>, label: &str) -> Result<Option<Llama3RopeScaling>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    if kind == "default" {
        return Ok(None);
    }
    if kind != "llama3" {
        return Err(ModelError::Unsupported(format!(
            "{label}: rope_scaling type {kind:?}; only llama3"
        )));
    }
    let num = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_f64())
            .ok_or_else(|| ModelError::format(label, format!("rope_scaling.{k}"), "missing or not a number"))
    };
    Ok(Some(Llama3RopeScaling {
        factor: num("factor")? as f32,
        low_freq_factor: num("low_freq_factor")? as f32,
        high_freq_factor: num("high_freq_factor")? as f32,
        original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
    }))
}

/// Reads `model.safetensors`, or every shard named by `model.safetensors.index.json`.
fn read_shards(dir: &Path) -> Result<Vec<(Vec<u8>, SafetensorsFile)>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<String> = if single.is_file() {
        vec!["model.safetensors".into()]
    } else if index.is_file() {
        let bytes = std::fs::read(&index).map_err(|e| ModelError::io(&index, e))?;
        let map = parse_safetensors_index(&bytes, &index.display().to_string())?;
        let mut files: Vec<String> = map.into_values().collect();
        files.sort();
        files.dedup();
        files
    } else {
        return Err(refuse_pickle_or_missing(dir));
    };
    files
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
            let st = parse_safetensors(&bytes, &path.display().to_string())?;
            Ok((bytes, st))
        })
        .collect()
}

fn refuse_pickle_or_missing(dir: &Path) -> ModelError {
    for pickle in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "model.pt",
        "model.pth",
    ] {
        if dir.join(pickle).exists() {
            return ModelError::Unsupported(format!(
                "{}: only PyTorch pickle weights ({pickle}) are present. ahead never loads pickle files, \
                 which can run arbitrary code; convert them to safetensors first",
                dir.display()
            ));
        }
    }
    ModelError::Unsupported(format!(
        "{}: not a Hugging Face model folder (needs config.json and model.safetensors or \
         model.safetensors.index.json)",
        dir.display()
    ))
}
