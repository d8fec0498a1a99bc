//! Hugging Face folders: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, and the tokenizer files beside them.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::weights::{hf_name, WeightSource};
use crate::error::{ModelError, Result};
use crate::format::safetensors::{parse_safetensors, parse_safetensors_index, SafetensorsFile};
use crate::transformer::{
    Architecture, Llama3RopeScaling, Model, ModelConfig, RopeScaling, RopeStyle, YarnRopeScaling,
};

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
    /// transformers 4's RoPE scaling.
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5's RoPE settings: `rope_theta`, `rope_type` and the type's parameters.
    rope_parameters: Option<serde_json::Value>,
    /// transformers 5: the attention of each layer (`full_attention`, `sliding_attention`).
    layer_types: Option<Vec<String>>,
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
fn config(hf: &HfConfig, label: &str) -> Result<(ModelConfig, bool, bool)> {
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
    check_layer_types(hf, sliding_window.is_some(), label)?;
    let (rope_theta, rope_scaling) = rope(hf, label)?;
    let bias = architecture == Architecture::Qwen2 || hf.attention_bias == Some(true);
    let n_heads = hf.num_attention_heads;
    let cfg = ModelConfig {
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
        rope_theta,
        rope_style: RopeStyle::Half,
        rope_scaling,
        rope_freq_factors: None,
        rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
        sliding_window,
    };
    cfg.validate(label)?;
    Ok((cfg, bias, hf.tie_word_embeddings.unwrap_or(false)))
}

/// `layer_types` (transformers 5) must agree with the one attention every layer here has: all
/// `full_attention`, or all `sliding_attention` when the model has a window.
fn check_layer_types(hf: &HfConfig, sliding: bool, label: &str) -> Result<()> {
    let Some(types) = &hf.layer_types else {
        return Ok(());
    };
    let want = if sliding {
        "sliding_attention"
    } else {
        "full_attention"
    };
    if types.len() != hf.num_hidden_layers {
        return Err(ModelError::format(
            label,
            "layer_types",
            format!("{} entries for {} layers", types.len(), hf.num_hidden_layers),
        ));
    }
    match types.iter().find(|t| *t != want) {
        Some(other) => Err(ModelError::Unsupported(format!(
            "{label}: layer_types mixes {other:?} with {want:?}; per-layer attention is not supported for this architecture"
        ))),
        None => Ok(()),
    }
}

/// Keys of a RoPE settings object that ahead reads; any other is refused.
const ROPE_KEYS: &[&str] = &[
    "rope_type",
    "type",
    "rope_theta",
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
    "beta_fast",
    "beta_slow",
    "attention_factor",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "partial_rotary_factor",
];

/// RoPE's base and scaling, from transformers 5's `rope_parameters` or transformers 4's
/// top-level `rope_theta` and `rope_scaling`. Types and keys ahead does not implement are
/// refused rather than ignored.
fn rope(hf: &HfConfig, label: &str) -> Result<(f32, RopeScaling)> {
    let present = |v: &Option<serde_json::Value>| v.as_ref().filter(|v| !v.is_null()).cloned();
    let (params, field) = match (present(&hf.rope_parameters), present(&hf.rope_scaling)) {
        (Some(p), _) => (p, "rope_parameters"),
        (None, Some(s)) => (s, "rope_scaling"),
        (None, None) => (serde_json::json!({}), "rope_scaling"),
    };
    let obj = params
        .as_object()
        .ok_or_else(|| ModelError::format(label, field, "expected an object"))?;
    if let Some(key) = obj.keys().find(|k| !ROPE_KEYS.contains(&k.as_str())) {
        let hint = if obj.values().all(serde_json::Value::is_object) {
            " (RoPE settings per layer type are not supported for this architecture)"
        } else {
            ""
        };
        return Err(ModelError::Unsupported(format!(
            "{label}: {field}.{key} is not understood{hint}"
        )));
    }
    let num = |k: &str| -> Result<Option<f64>> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| ModelError::format(label, format!("{field}.{k}"), "not a number")),
        }
    };
    let need = |k: &str| num(k)?.ok_or_else(|| ModelError::format(label, format!("{field}.{k}"), "missing"));
    let theta = match (num("rope_theta")?, hf.rope_theta) {
        (Some(a), Some(b)) if a as f32 != b => {
            return Err(ModelError::format(
                label,
                "rope_theta",
                format!("{b} at the top level but {a} in {field}"),
            ))
        }
        (Some(a), _) => a as f32,
        (None, Some(b)) => b,
        // transformers' own default for these families.
        (None, None) => 10000.0,
    };
    if let Some(p) = num("partial_rotary_factor")?.filter(|&p| p != 1.0) {
        return Err(ModelError::Unsupported(format!(
            "{label}: {field}.partial_rotary_factor {p}; only 1"
        )));
    }
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .map(|t| {
            t.as_str()
                .ok_or_else(|| ModelError::format(label, format!("{field}.rope_type"), "not a string"))
        })
        .transpose()?
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: need("factor")? as f32,
        },
        "llama3" => RopeScaling::Llama3(Llama3RopeScaling {
            factor: need("factor")? as f32,
            low_freq_factor: need("low_freq_factor")? as f32,
            high_freq_factor: need("high_freq_factor")? as f32,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
        }),
        "yarn" => yarn(hf, &num, label, field)?,
        other => {
            return Err(ModelError::Unsupported(format!(
                "{label}: {field}.rope_type {other:?}; supported: default, linear, llama3, yarn"
            )))
        }
    };
    if let RopeScaling::Linear { factor } | RopeScaling::Llama3(Llama3RopeScaling { factor, .. }) = scaling {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(ModelError::format(
                label,
                format!("{field}.factor"),
                format!("{factor}"),
            ));
        }
    }
    Ok((theta, scaling))
}

/// YaRN's parameters with transformers' rules for what is left out: the factor from the two
/// context lengths, the attention factor from the factor (and `mscale`s), betas 32 and 1.
fn yarn(
    hf: &HfConfig,
    num: &dyn Fn(&str) -> Result<Option<f64>>,
    label: &str,
    field: &str,
) -> Result<RopeScaling> {
    let original = num("original_max_position_embeddings")?.unwrap_or(hf.max_position_embeddings as f64);
    let factor = match num("factor")? {
        Some(f) => f,
        None => hf.max_position_embeddings as f64 / original,
    };
    if !(factor.is_finite() && factor > 0.0 && original >= 1.0) {
        return Err(ModelError::format(
            label,
            format!("{field}.factor"),
            format!("{factor}"),
        ));
    }
    let mscale = |scale: f64, m: f64| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * m * scale.ln() + 1.0
        }
    };
    let attention_factor = match (num("attention_factor")?, num("mscale")?, num("mscale_all_dim")?) {
        (Some(a), _, _) => a,
        (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(factor, m) / mscale(factor, all),
        _ => mscale(factor, 1.0),
    };
    // `or 32` in transformers: a zero means the default too.
    let beta = |k: &str, default: f64| -> Result<f32> {
        Ok(num(k)?.filter(|&b| b != 0.0).unwrap_or(default) as f32)
    };
    let truncate = match params_bool(hf, "truncate") {
        Some(Ok(b)) => b,
        Some(Err(())) => {
            return Err(ModelError::format(
                label,
                format!("{field}.truncate"),
                "not a boolean",
            ))
        }
        None => true,
    };
    Ok(RopeScaling::Yarn(YarnRopeScaling {
        factor: factor as f32,
        original_max_position_embeddings: original as usize,
        beta_fast: beta("beta_fast", 32.0)?,
        beta_slow: beta("beta_slow", 1.0)?,
        attention_factor: attention_factor as f32,
        truncate,
    }))
}

/// A boolean RoPE setting, from whichever of the two fields holds the settings.
fn params_bool(hf: &HfConfig, key: &str) -> Option<std::result::Result<bool, ()>> {
    let v = hf
        .rope_parameters
        .as_ref()
        .filter(|v| !v.is_null())
        .or(hf.rope_scaling.as_ref())?
        .get(key)?;
    Some(v.as_bool().ok_or(()))
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
