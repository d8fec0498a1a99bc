//! The hyper-parameters of a model, whatever file they came from.

pub use super::arch::{Activation, Architecture};
use crate::error::{ModelError, Result};

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): llama2.c and llama.cpp's GGUF Llama layout.
    Interleaved,
    /// Halves (i, i + d/2): Hugging Face's rotate-half layout (and GGUF Qwen2, "NEOX").
    Half,
}

/// How RoPE's frequencies are stretched beyond the trained context (`rope_parameters.rope_type`
/// in transformers, `rope.scaling.type` in GGUF).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// Plain RoPE (`default`).
    #[default]
    None,
    /// Position interpolation: every frequency divided by `factor` (`linear`).
    Linear { factor: f32 },
    /// Llama 3.1's banded scaling (`llama3`).
    Llama3(Llama3RopeScaling),
    /// YaRN (`yarn`).
    Yarn(YarnRopeScaling),
}

/// Llama 3.1-style frequency scaling (`rope_type == "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// YaRN (Peng et al., 2023) as transformers computes it: frequencies ramp from interpolated
/// (divided by `factor`) to kept between two correction dimensions set by `beta_fast` and
/// `beta_slow` rotations over the original context, and cos/sin are scaled by
/// `attention_factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnRopeScaling {
    pub factor: f32,
    pub original_max_position_embeddings: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub attention_factor: f32,
    /// Round the correction range outwards to whole dimensions (transformers' default).
    pub truncate: bool,
}

/// Everything the forward pass needs to know about the model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Longest context the model was trained for.
    pub max_seq_len: usize,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: RopeScaling,
    /// Per-frequency divisors stored in some GGUF files (`rope_freqs.weight`).
    pub rope_freq_factors: Option<Vec<f32>>,
    pub rms_eps: f32,
    /// The sliding attention window, if any (Mistral, Gemma 3): a row sees the positions less
    /// than this far behind its own.
    pub sliding_window: Option<usize>,
    /// Which layers the window applies to, when not every layer (Gemma 3: five of every six).
    pub sliding_layers: Option<Vec<bool>>,
    /// RoPE base of the sliding layers, when it differs from `rope_theta` (Gemma 3's 10,000;
    /// unscaled).
    pub local_rope_theta: Option<f32>,
    /// Scale of the attention scores when it is not 1/sqrt(head_dim) (Gemma 3's
    /// `query_pre_attn_scalar`^-1/2).
    pub attention_scale: Option<f32>,
    /// Final logits become `cap * tanh(logits / cap)` (Gemma's `final_logit_softcapping`).
    pub final_logit_softcap: Option<f32>,
}

/// What one layer's attention sees and how it rotates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerAttention {
    pub window: Option<usize>,
    /// Uses `local_rope_theta`'s RoPE, not the global one.
    pub local_rope: bool,
}

impl ModelConfig {
    /// Layer `i`'s attention: its window and which RoPE it uses.
    pub fn layer_attention(&self, i: usize) -> LayerAttention {
        let slides = self.sliding_window.is_some()
            && self
                .sliding_layers
                .as_ref()
                .is_none_or(|l| l.get(i).copied().unwrap_or(false));
        LayerAttention {
            window: self.sliding_window.filter(|_| slides),
            local_rope: slides && self.local_rope_theta.is_some(),
        }
    }

    /// The scale of attention scores.
    pub fn attention_scale(&self) -> f32 {
        self.attention_scale
            .unwrap_or(1.0 / (self.head_dim as f32).sqrt())
    }

    /// Width of the key/value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Width of the query projection.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Checks that the numbers describe a model that can exist; `file` names the source.
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |field: &str, reason: String| Err(ModelError::format(file, field, reason));
        for (field, v) in [
            ("dim", self.dim),
            ("hidden_dim", self.hidden_dim),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v == 0 || v > (1 << 24) {
                return bad(field, format!("{v} is out of range"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(
                "n_kv_heads",
                format!("{} does not divide n_heads {}", self.n_kv_heads, self.n_heads),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", format!("{} is odd; RoPE needs pairs", self.head_dim));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta", format!("{}", self.rope_theta));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return bad("rms_eps", format!("{}", self.rms_eps));
        }
        if let Some(l) = &self.sliding_layers {
            if l.len() != self.n_layers {
                return bad(
                    "sliding_layers",
                    format!("{} entries for {} layers", l.len(), self.n_layers),
                );
            }
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "0".into());
        }
        for (field, v) in [
            ("local_rope_theta", self.local_rope_theta),
            ("attention_scale", self.attention_scale),
            ("final_logit_softcap", self.final_logit_softcap),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(field, format!("{v}"));
            }
        }
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim / 2 {
                return bad(
                    "rope_freqs",
                    format!("{} factors for head_dim {}", f.len(), self.head_dim),
                );
            }
        }
        Ok(())
    }
}
