//! Random-weight models of any shape: for tests (every architecture, every dtype) and for
//! benchmarks at real model sizes without downloading one.

use super::config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use super::linear::Linear;
use super::model::{LayerWeights, Model, ModelWeights};
use crate::error::Result;
use crate::tensor::TensorDType;

/// TinyLlama-1.1B's shapes (22 layers, dim 2048, GQA 32/4, vocab 32000).
pub fn tinyllama_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        dim: 2048,
        hidden_dim: 5632,
        n_layers: 22,
        n_heads: 32,
        n_kv_heads: 4,
        head_dim: 64,
        vocab_size: 32000,
        max_seq_len: 2048,
        rope_theta: 10000.0,
        rope_style: RopeStyle::Half,
        rope_scaling: RopeScaling::None,
        rope_freq_factors: None,
        rms_eps: 1e-5,
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: None,
    }
}

/// Qwen2.5-0.5B's shapes (24 layers, dim 896, GQA 14/2, biases on q/k/v, vocab 151,936).
pub fn qwen2_5_0_5b_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Qwen2,
        dim: 896,
        hidden_dim: 4864,
        n_layers: 24,
        n_heads: 14,
        n_kv_heads: 2,
        head_dim: 64,
        vocab_size: 151_936,
        max_seq_len: 32_768,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
        ..tinyllama_config()
    }
}

/// Llama-3.2-1B's shapes (16 layers, dim 2048, GQA 32/8, vocab 128,256; RoPE scaling omitted,
/// which does not change the cost).
pub fn llama_3_2_1b_config() -> ModelConfig {
    ModelConfig {
        hidden_dim: 8192,
        n_layers: 16,
        n_kv_heads: 8,
        vocab_size: 128_256,
        max_seq_len: 131_072,
        rope_theta: 500_000.0,
        ..tinyllama_config()
    }
}

/// The shapes of a known model by name, for benchmarks: `tinyllama-1.1b` (or `tinyllama`),
/// `qwen2.5-0.5b`, `llama-3.2-1b`.
pub fn named_config(name: &str) -> Option<ModelConfig> {
    match name {
        "tinyllama" | "tinyllama-1.1b" => Some(tinyllama_config()),
        "qwen2.5-0.5b" => Some(qwen2_5_0_5b_config()),
        "llama-3.2-1b" => Some(llama_3_2_1b_config()),
        _ => None,
    }
}

/// Names `named_config` knows.
pub const NAMED_CONFIGS: [&str; 3] = ["tinyllama-1.1b", "qwen2.5-0.5b", "llama-3.2-1b"];

/// A tiny model shape for tests: 2 layers, dim 64, 4 query / 2 key-value heads of 16.
pub fn tiny_config(architecture: Architecture, vocab_size: usize) -> ModelConfig {
    ModelConfig {
        architecture,
        dim: 64,
        hidden_dim: 96,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        vocab_size,
        max_seq_len: 64,
        rope_theta: 10000.0,
        rope_style: RopeStyle::Half,
        rope_scaling: RopeScaling::None,
        rope_freq_factors: None,
        rms_eps: 1e-5,
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: None,
    }
}

/// A deterministic stream of values in [-scale, scale).
struct Values {
    state: u64,
}

impl Values {
    fn take(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.state = self
                    .state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// How a synthetic model's matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// Every matrix in one dtype.
    Uniform(TensorDType),
    /// llama.cpp's Q4_K_M mix: Q6_K for the output matrix and for `attn_v` and `ffn_down` in
    /// the layers llama.cpp gives more bits (the first and last eighth, and every third
    /// between), Q4_K elsewhere.
    Q4KM,
}

impl Recipe {
    pub fn name(&self) -> &'static str {
        match self {
            Recipe::Uniform(d) => d.name(),
            Recipe::Q4KM => "q4_k_m",
        }
    }

    /// The dtype of a layer's `attn_v` or `ffn_down` (`more_bits_candidate`) or other matrix.
    fn layer_dtype(&self, layer: usize, n_layers: usize, more_bits_candidate: bool) -> TensorDType {
        match self {
            Recipe::Uniform(d) => *d,
            Recipe::Q4KM => {
                let eighth = n_layers / 8;
                let more_bits = layer < eighth || layer >= 7 * n_layers / 8 || (layer - eighth) % 3 == 2;
                if more_bits_candidate && more_bits {
                    TensorDType::Q6K
                } else {
                    TensorDType::Q4K
                }
            }
        }
    }

    fn output_dtype(&self) -> TensorDType {
        match self {
            Recipe::Uniform(d) => *d,
            Recipe::Q4KM => TensorDType::Q6K,
        }
    }
}

/// A model with random weights of `cfg`'s shapes; matrices stored as `dtype`. Biases are added
/// for Qwen2. Weights are scaled like a trained model's so activations stay in range.
pub fn random_model(cfg: &ModelConfig, dtype: TensorDType, seed: u64) -> Result<Model> {
    random_model_with(cfg, Recipe::Uniform(dtype), seed)
}

/// `random_model` with the matrices' dtypes chosen by `recipe`.
pub fn random_model_with(cfg: &ModelConfig, recipe: Recipe, seed: u64) -> Result<Model> {
    let mut v = Values {
        state: seed ^ 0x5DEE_CE66_D1CE_4E5B,
    };
    let mut lin = |rows: usize, cols: usize, dtype: TensorDType| {
        let scale = 1.0 / (cols as f32).sqrt() * 1.7;
        Linear::quantize(&v.take(rows * cols, scale), rows, cols, dtype)
    };
    let (d, q, kv, h) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.hidden_dim);
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let (base, more) = (
            recipe.layer_dtype(i, cfg.n_layers, false),
            recipe.layer_dtype(i, cfg.n_layers, true),
        );
        layers.push(LayerWeights {
            attn_norm: vec![1.0; d],
            wq: lin(q, d, base)?,
            wk: lin(kv, d, base)?,
            wv: lin(kv, d, more)?,
            wo: lin(d, q, base)?,
            bq: None,
            bk: None,
            bv: None,
            q_norm: None,
            k_norm: None,
            post_attn_norm: None,
            post_ffn_norm: None,
            ffn_norm: vec![1.0; d],
            w1: lin(h, d, base)?,
            w2: lin(d, h, more)?,
            w3: lin(h, d, base)?,
        });
    }
    let embedding = lin(cfg.vocab_size, d, recipe.layer_dtype(0, 1, false))?;
    let lm_head = Some(lin(cfg.vocab_size, d, recipe.output_dtype())?);
    let mut bias = Values {
        state: seed.wrapping_add(99),
    };
    let spec = cfg.architecture.spec();
    for l in &mut layers {
        if spec.qkv_bias {
            l.bq = Some(bias.take(q, 0.1));
            l.bk = Some(bias.take(kv, 0.1));
            l.bv = Some(bias.take(kv, 0.1));
        }
        let mut norm = |n: usize| Some(bias.take(n, 0.2).into_iter().map(|x| 1.0 + x).collect());
        if spec.qk_norm {
            l.q_norm = norm(cfg.head_dim);
            l.k_norm = norm(cfg.head_dim);
        }
        if spec.post_norms {
            l.post_attn_norm = norm(d);
            l.post_ffn_norm = norm(d);
        }
    }
    let norm = bias.take(d, 0.2).into_iter().map(|x| 1.0 + x).collect();
    Model::new(
        cfg.clone(),
        ModelWeights {
            embedding,
            layers,
            norm,
            lm_head,
        },
    )
}

/// An EAGLE head with random weights for `target` (one layer of the target's width, its
/// heads and feed-forward width; interleaved RoPE), its classifier restricted to `subset` if
/// given. For tests of exactness: it drafts, the target decides.
pub fn random_eagle_head(
    target: &Model,
    seed: u64,
    subset: Option<&[u32]>,
) -> Result<crate::eagle::EagleHead> {
    let t = target.config();
    let cfg = ModelConfig {
        n_layers: 1,
        rope_style: RopeStyle::Interleaved,
        rope_scaling: RopeScaling::None,
        rope_freq_factors: None,
        sliding_window: None,
        sliding_layers: None,
        local_rope_theta: None,
        attention_scale: None,
        final_logit_softcap: None,
        architecture: Architecture::Llama,
        ..t.clone()
    };
    let layer = random_model(&cfg, TensorDType::F32, seed)?.weights().layers[0].clone();
    let mut v = Values { state: seed ^ 0xFC };
    let d = t.dim;
    let fc = Linear::from_f32(v.take(2 * d * d, 1.7 / (2.0 * d as f32).sqrt()), d, 2 * d)?;
    crate::eagle::EagleHead::new(target, &cfg, fc, layer, vec![1.0; d], subset)
}

/// [`random_eagle_head`] fused over the outputs of `target`'s `layers` (EAGLE-3).
pub fn random_fused_eagle_head(
    target: &Model,
    seed: u64,
    subset: Option<&[u32]>,
    layers: &[usize],
) -> Result<crate::eagle::EagleHead> {
    let d = target.config().dim;
    let n = layers.len() * d;
    let mut v = Values { state: seed ^ 0xF05E };
    let fuse = Linear::from_f32(v.take(n * d, 1.7 / (n as f32).sqrt()), d, n)?;
    random_eagle_head(target, seed, subset)?.with_fusion(target, layers.to_vec(), fuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_puts_q6_k_where_llama_cpp_does() {
        let cfg = ModelConfig {
            dim: 256,
            hidden_dim: 256,
            n_layers: 16,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            ..tiny_config(Architecture::Llama, 32)
        };
        let m = random_model_with(&cfg, Recipe::Q4KM, 1).unwrap();
        let w = m.weights();
        assert_eq!(w.lm_head.as_ref().map(|l| l.dtype()), Some(TensorDType::Q6K));
        assert_eq!(w.embedding.dtype(), TensorDType::Q4K);
        // llama.cpp's use_more_bits(i, 16): the first and last two layers, and every third from 2.
        let more: Vec<usize> = (0..16)
            .filter(|&i| w.layers[i].wv.dtype() == TensorDType::Q6K)
            .collect();
        assert_eq!(more, [0, 1, 4, 7, 10, 13, 14, 15]);
        for l in &w.layers {
            assert_eq!(l.w2.dtype(), l.wv.dtype());
            assert!([&l.wq, &l.wk, &l.wo, &l.w1, &l.w3]
                .iter()
                .all(|x| x.dtype() == TensorDType::Q4K));
        }
    }
}
