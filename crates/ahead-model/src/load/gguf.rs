//! GGUF models: hyper-parameters from `{arch}.*` metadata, weights by llama.cpp's names.

use super::weights::{gguf_name, vector, WeightSource};
use crate::error::{ModelError, Result};
use crate::format::gguf::GgufFile;
use crate::transformer::{Architecture, Model, ModelConfig, RopeScaling, RopeStyle};

/// Builds the model described by a parsed GGUF file over its bytes.
pub fn load(gguf: &GgufFile, bytes: &[u8]) -> Result<Model> {
    let file = gguf.label.as_str();
    let arch_name = gguf
        .get_str("general.architecture")?
        .ok_or_else(|| ModelError::format(file, "general.architecture", "missing"))?;
    let (architecture, rope_style, bias) = match arch_name {
        // llama.cpp's converter permutes Llama q/k rows into interleaved-pair RoPE order.
        "llama" => (Architecture::Llama, RopeStyle::Interleaved, false),
        "mistral" => (Architecture::Mistral, RopeStyle::Interleaved, false),
        // Qwen2 keeps Hugging Face's rotate-half order ("NEOX" RoPE) and has q/k/v biases.
        "qwen2" => (Architecture::Qwen2, RopeStyle::Half, true),
        other => {
            return Err(ModelError::Unsupported(format!(
                "{file}: architecture {other:?}; supported: llama, mistral, qwen2"
            )))
        }
    };
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
        rope_style,
        rope_scaling: RopeScaling::None,
        rope_freq_factors,
        rms_eps: gguf
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        sliding_window: gguf
            .get_u32(&key("attention.sliding_window"))?
            .map(|v| v as usize),
    };
    cfg.validate(file)?;
    let get = |name: &str| Ok(gguf.tensor(bytes, name));
    let source = WeightSource {
        file,
        name: gguf_name,
        get: &get,
    };
    let weights = source.build(&cfg, bias)?;
    Model::new(cfg, weights)
}
