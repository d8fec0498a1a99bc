//! GGUF models: hyper-parameters from `{arch}.*` metadata, weights by llama.cpp's names.

use super::weights::{gguf_name, gguf_source_name, vector, WeightSource};
use crate::error::{ModelError, Result};
use crate::format::gguf::{GgufFile, GgufValue};
use crate::transformer::{Architecture, Model, ModelConfig, RopeScaling, SlidingPattern};

/// Builds the model described by a parsed GGUF file over its bytes.
pub fn load(gguf: &GgufFile, bytes: &[u8]) -> Result<Model> {
    let file = gguf.label.as_str();
    let arch_name = gguf
        .get_str("general.architecture")?
        .ok_or_else(|| ModelError::format(file, "general.architecture", "missing"))?;
    let architecture = Architecture::from_gguf(arch_name).ok_or_else(|| {
        ModelError::Unsupported(format!(
            "{file}: architecture {arch_name:?}; supported: {}",
            Architecture::supported(false)
        ))
    })?;
    let spec = architecture.spec();
    let key = |k: &str| format!("{arch_name}.{k}");
    let req = |k: &str| -> Result<usize> {
        gguf.get_u32(&key(k))?
            .map(|v| v as usize)
            .ok_or_else(|| ModelError::format(file, key(k), "missing"))
    };
    let dim = req("embedding_length")?;
    let n_heads = req("attention.head_count")?;
    let n_kv_heads = gguf
        .get_u32(&key("attention.head_count_kv"))?
        .map_or(n_heads, |v| v as usize);
    let head_dim = match gguf.get_u32(&key("attention.key_length"))? {
        Some(v) => v as usize,
        None if n_heads > 0 => dim / n_heads,
        None => return Err(ModelError::format(file, key("attention.head_count"), "is zero")),
    };
    let embedding = gguf
        .tensor(bytes, &gguf_name(super::weights::Slot::Embedding))
        .ok_or_else(|| ModelError::MissingTensor {
            file: file.into(),
            name: gguf_name(super::weights::Slot::Embedding),
        })?;
    let vocab_size = *embedding.shape.first().unwrap_or(&0);
    let rope_freq_factors = gguf
        .tensor(bytes, "rope_freqs.weight")
        .map(|t| vector(&t, file, "rope_freqs.weight"))
        .transpose()?;
    let cfg = ModelConfig {
        architecture,
        dim,
        hidden_dim: req("feed_forward_length")?,
        n_layers: req("block_count")?,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab_size,
        max_seq_len: req("context_length")?,
        rope_theta: gguf.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        rope_style: spec.gguf_rope,
        rope_scaling: rope_scaling(gguf, &key)?,
        rope_freq_factors,
        rms_eps: gguf
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: gguf.get_f32(&key("final_logit_softcapping"))?,
    };
    let cfg = ModelConfig {
        attention_scale: attention_scale(&cfg),
        ..sliding(gguf, &key, cfg)?
    };
    if let Some(cap) = gguf.get_f32(&key("attn_logit_softcapping"))? {
        return Err(ModelError::Unsupported(format!(
            "{file}: {} {cap}: attention-score soft-capping is not implemented",
            key("attn_logit_softcapping")
        )));
    }
    cfg.validate(file)?;
    let get = |name: &str| Ok(gguf.tensor(bytes, name));
    let source = WeightSource {
        file,
        name: gguf_source_name,
        norm_plus_one: false,
        get: &get,
    };
    let weights = source.build(&cfg, spec.qkv_bias)?;
    Model::new(cfg, weights)
}

/// `{arch}.rope.scaling.*`: none or linear; any other type is refused, not ignored.
fn rope_scaling(gguf: &GgufFile, key: &dyn Fn(&str) -> String) -> Result<RopeScaling> {
    let file = gguf.label.as_str();
    match gguf.get_str(&key("rope.scaling.type"))? {
        None | Some("none") => Ok(RopeScaling::None),
        Some("linear") => {
            let factor = gguf
                .get_f32(&key("rope.scaling.factor"))?
                .ok_or_else(|| ModelError::format(file, key("rope.scaling.factor"), "missing"))?;
            if !(factor.is_finite() && factor > 0.0) {
                return Err(ModelError::format(
                    file,
                    key("rope.scaling.factor"),
                    format!("{factor}"),
                ));
            }
            Ok(RopeScaling::Linear { factor })
        }
        Some(other) => Err(ModelError::Unsupported(format!(
            "{file}: {} {other:?}; supported: none, linear",
            key("rope.scaling.type")
        ))),
    }
}

/// The sliding window, the layers it applies to (`attention.sliding_window_pattern`, a period
/// or a list of flags, else the architecture's pattern) and their RoPE base
/// (`rope.freq_base_swa`, else the architecture's), as llama.cpp reads them.
fn sliding(gguf: &GgufFile, key: &dyn Fn(&str) -> String, cfg: ModelConfig) -> Result<ModelConfig> {
    let Some(window) = gguf.get_u32(&key("attention.sliding_window"))?.filter(|&w| w > 0) else {
        return Ok(cfg);
    };
    let spec = cfg.architecture.spec();
    let n = cfg.n_layers;
    let pattern_key = key("attention.sliding_window_pattern");
    let layers: Vec<bool> = match gguf.get(&pattern_key) {
        None => (0..n).map(|i| spec.sliding.slides(i)).collect(),
        Some(GgufValue::Array(items)) => {
            if items.len() != n {
                return Err(ModelError::format(
                    &gguf.label,
                    &pattern_key,
                    format!("{} flags for {n} layers", items.len()),
                ));
            }
            items
                .iter()
                .map(|v| match v {
                    GgufValue::Bool(b) => Ok(*b),
                    _ => Err(ModelError::format(&gguf.label, &pattern_key, "expected booleans")),
                })
                .collect::<Result<_>>()?
        }
        Some(_) => {
            let period = gguf.get_u32(&pattern_key)?.unwrap_or(0) as usize;
            (0..n)
                .map(|i| SlidingPattern::AllButLastOf(period).slides(i))
                .collect()
        }
    };
    let every = layers.iter().all(|&s| s);
    let local_rope_theta = match gguf.get_f32(&key("rope.freq_base_swa"))? {
        Some(t) => Some(t),
        None => spec.default_local_rope_theta,
    }
    .filter(|&t| t != cfg.rope_theta || cfg.rope_scaling != RopeScaling::None);
    Ok(ModelConfig {
        sliding_window: Some(window as usize),
        sliding_layers: (!every).then_some(layers),
        local_rope_theta,
        ..cfg
    })
}

/// llama.cpp's rule for Gemma 3 (after gemma_pytorch): queries scale by 1/sqrt(dim / heads) in
/// the 27B model (62 layers) and by 1/sqrt(head_dim) in the others. GGUF has no key for it.
fn attention_scale(cfg: &ModelConfig) -> Option<f32> {
    (cfg.architecture == Architecture::Gemma3 && cfg.n_layers == 62)
        .then(|| 1.0 / ((cfg.dim / cfg.n_heads) as f32).sqrt())
}
