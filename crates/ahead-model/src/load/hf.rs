//! Hugging Face folders: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, and the tokenizer files beside them.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::weights::{hf_name, WeightSource};
use crate::error::{ModelError, Result};
use crate::format::safetensors::{parse_safetensors, parse_safetensors_index, SafetensorsFile};
use crate::transformer::{
    Activation, ArchSpec, Architecture, Llama3RopeScaling, Model, ModelConfig, RopeScaling, RopeStyle,
    SlidingPattern, YarnRopeScaling,
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
    /// Qwen2/3 without `layer_types`: layers from this one on slide (transformers' default 28).
    max_window_layers: Option<usize>,
    hidden_act: Option<String>,
    /// Gemma's name for `hidden_act`.
    hidden_activation: Option<String>,
    /// Gemma 3: queries scale by its inverse square root.
    query_pre_attn_scalar: Option<f64>,
    final_logit_softcapping: Option<f32>,
    attn_logit_softcapping: Option<f32>,
    /// Gemma 3 in transformers 4: the sliding layers' RoPE base, and the layer pattern.
    rope_local_base_freq: Option<f32>,
    sliding_window_pattern: Option<usize>,
    use_bidirectional_attention: Option<bool>,
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
        norm_plus_one: cfg.architecture.spec().hf_norm_plus_one,
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
    let architecture = Architecture::from_hf(kind).ok_or_else(|| {
        ModelError::Unsupported(format!(
            "{label}: model_type {kind:?}; supported: {}",
            Architecture::supported(true)
        ))
    })?;
    let spec = architecture.spec();
    let want_act = match spec.activation {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
    };
    if let Some(act) = hf
        .hidden_activation
        .as_deref()
        .or(hf.hidden_act.as_deref())
        .filter(|a| *a != want_act)
    {
        return Err(ModelError::Unsupported(format!(
            "{label}: activation {act:?}; {} uses {want_act:?}",
            architecture.name()
        )));
    }
    if let Some(cap) = hf.attn_logit_softcapping {
        return Err(ModelError::Unsupported(format!(
            "{label}: attn_logit_softcapping {cap}: attention-score soft-capping is not implemented"
        )));
    }
    if hf.use_bidirectional_attention == Some(true) {
        return Err(ModelError::Unsupported(format!(
            "{label}: use_bidirectional_attention: ahead runs causal decoders only"
        )));
    }
    let ((rope_theta, rope_scaling), local) = rope_by_layer_type(hf, spec, label)?;
    let bias = spec.qkv_bias || hf.attention_bias == Some(true);
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
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        // transformers computes `query_pre_attn_scalar**-0.5` in double precision.
        attention_scale: (architecture == Architecture::Gemma3)
            .then(|| hf.query_pre_attn_scalar.unwrap_or(256.0).powf(-0.5) as f32),
        final_logit_softcap: hf.final_logit_softcapping,
    };
    let cfg = sliding(hf, label, cfg, local)?;
    cfg.validate(label)?;
    Ok((
        cfg,
        bias,
        hf.tie_word_embeddings.unwrap_or(spec.hf_tied_by_default),
    ))
}

/// The sliding window and the layers it applies to: `layer_types` (transformers 5) when given,
/// else each family's rule (Mistral: every layer; Qwen: from `max_window_layers` on, with
/// `use_sliding_window`; Gemma 3: all but the last of every `sliding_window_pattern`). `local`
/// is the sliding layers' RoPE base when they have their own.
fn sliding(hf: &HfConfig, label: &str, cfg: ModelConfig, local: Option<f32>) -> Result<ModelConfig> {
    let n = hf.num_hidden_layers;
    let arch = cfg.architecture;
    let qwen = matches!(arch, Architecture::Qwen2 | Architecture::Qwen3);
    let window = match arch {
        _ if qwen && hf.use_sliding_window != Some(true) => None,
        Architecture::Gemma3 => hf.sliding_window,
        _ => hf.sliding_window.filter(|&w| w < hf.max_position_embeddings),
    };
    let layers: Vec<bool> = match &hf.layer_types {
        Some(types) => {
            if types.len() != n {
                return Err(ModelError::format(
                    label,
                    "layer_types",
                    format!("{} entries for {n} layers", types.len()),
                ));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(false),
                    "sliding_attention" => Ok(true),
                    other => Err(ModelError::Unsupported(format!(
                        "{label}: layer_types entry {other:?}; supported: full_attention, sliding_attention"
                    ))),
                })
                .collect::<Result<_>>()?
        }
        None => (0..n)
            .map(|i| match arch {
                _ if qwen => i >= hf.max_window_layers.unwrap_or(28),
                Architecture::Gemma3 => {
                    SlidingPattern::AllButLastOf(hf.sliding_window_pattern.unwrap_or(6)).slides(i)
                }
                _ => true,
            })
            .collect(),
    };
    if !layers.iter().any(|&s| s) {
        return Ok(cfg);
    }
    let Some(window) = window else {
        if hf.layer_types.is_some() {
            return Err(ModelError::format(
                label,
                "layer_types",
                "names sliding layers, but the model has no sliding window",
            ));
        }
        return Ok(cfg);
    };
    let every = layers.iter().all(|&s| s);
    Ok(ModelConfig {
        sliding_window: Some(window),
        sliding_layers: (!every).then_some(layers),
        local_rope_theta: local.filter(|&t| t != cfg.rope_theta || cfg.rope_scaling != RopeScaling::None),
        ..cfg
    })
}

/// RoPE of the global layers (base, scaling) and the sliding layers' own base, if any: from
/// `rope_parameters` keyed by layer type (transformers 5's Gemma 3), or one RoPE for all with
/// transformers 4's `rope_local_base_freq` (or the family's default) for the sliding layers.
fn rope_by_layer_type(
    hf: &HfConfig,
    spec: &ArchSpec,
    label: &str,
) -> Result<((f32, RopeScaling), Option<f32>)> {
    let per_type = hf
        .rope_parameters
        .as_ref()
        .and_then(|p| p.as_object())
        .filter(|o| o.contains_key("full_attention") || o.contains_key("sliding_attention"));
    let Some(per_type) = per_type else {
        let global = rope(hf, hf.rope_parameters.as_ref(), "rope_parameters", label)?;
        return Ok((global, hf.rope_local_base_freq.or(spec.default_local_rope_theta)));
    };
    if let Some(k) = per_type
        .keys()
        .find(|k| *k != "full_attention" && *k != "sliding_attention")
    {
        return Err(ModelError::Unsupported(format!(
            "{label}: rope_parameters.{k} is not understood"
        )));
    }
    let field = "rope_parameters.full_attention";
    let global = rope(hf, per_type.get("full_attention"), field, label)?;
    let local = match per_type.get("sliding_attention") {
        None => None,
        Some(p) => {
            let (theta, scaling) = rope(hf, Some(p), "rope_parameters.sliding_attention", label)?;
            if scaling != RopeScaling::None {
                return Err(ModelError::Unsupported(format!(
                    "{label}: rope_parameters.sliding_attention: scaled RoPE on sliding layers is not implemented"
                )));
            }
            Some(theta)
        }
    };
    Ok((global, local))
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
fn rope(
    hf: &HfConfig,
    parameters: Option<&serde_json::Value>,
    parameters_field: &'static str,
    label: &str,
) -> Result<(f32, RopeScaling)> {
    let present = |v: Option<&serde_json::Value>| v.filter(|v| !v.is_null()).cloned();
    let (params, field) = match (present(parameters), present(hf.rope_scaling.as_ref())) {
        (Some(p), _) => (p, parameters_field),
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
        "yarn" => yarn(hf, &params, &num, label, field)?,
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
    params: &serde_json::Value,
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
    let truncate = match params.get("truncate").map(|v| v.as_bool().ok_or(())) {
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
