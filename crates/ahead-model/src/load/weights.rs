//! Maps each format's tensor names onto the one `ModelWeights` layout.

use crate::error::{ModelError, Result};
use crate::tensor::{RawTensor, TensorDType};
use crate::transformer::{ArchSpec, LayerWeights, Linear, ModelConfig, ModelWeights};

/// A weight of the architecture, independent of how a file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Embedding,
    Norm,
    LmHead,
    Layer(usize, LayerSlot),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerSlot {
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    Bq,
    Bk,
    Bv,
    QNorm,
    KNorm,
    PostAttnNorm,
    FfnNorm,
    PostFfnNorm,
    W1,
    W2,
    W3,
}

/// Tensor names in GGUF files (llama.cpp's convention; also used for llama2.c slices).
pub(crate) fn gguf_name(slot: Slot) -> String {
    use LayerSlot::*;
    match slot {
        Slot::Embedding => "token_embd.weight".into(),
        Slot::Norm => "output_norm.weight".into(),
        Slot::LmHead => "output.weight".into(),
        Slot::Layer(i, s) => {
            let n = match s {
                AttnNorm => "attn_norm.weight",
                Wq => "attn_q.weight",
                Wk => "attn_k.weight",
                Wv => "attn_v.weight",
                Wo => "attn_output.weight",
                Bq => "attn_q.bias",
                Bk => "attn_k.bias",
                Bv => "attn_v.bias",
                QNorm => "attn_q_norm.weight",
                KNorm => "attn_k_norm.weight",
                PostAttnNorm => "post_attention_norm.weight",
                FfnNorm => "ffn_norm.weight",
                PostFfnNorm => "post_ffw_norm.weight",
                W1 => "ffn_gate.weight",
                W2 => "ffn_down.weight",
                W3 => "ffn_up.weight",
            };
            format!("blk.{i}.{n}")
        }
    }
}

/// `gguf_name` as a `WeightSource` naming scheme (GGUF names do not depend on the family).
pub(crate) fn gguf_source_name(slot: Slot, _arch: &ArchSpec) -> String {
    gguf_name(slot)
}

/// Tensor names in Hugging Face safetensors files. `post_attention_layernorm` is the
/// feed-forward's norm in Llama-like models but the attention output's in Gemma's.
pub(crate) fn hf_name(slot: Slot, arch: &ArchSpec) -> String {
    use LayerSlot::*;
    match slot {
        Slot::Embedding => "model.embed_tokens.weight".into(),
        Slot::Norm => "model.norm.weight".into(),
        Slot::LmHead => "lm_head.weight".into(),
        Slot::Layer(i, s) => {
            let n = match s {
                AttnNorm => "input_layernorm.weight",
                Wq => "self_attn.q_proj.weight",
                Wk => "self_attn.k_proj.weight",
                Wv => "self_attn.v_proj.weight",
                Wo => "self_attn.o_proj.weight",
                Bq => "self_attn.q_proj.bias",
                Bk => "self_attn.k_proj.bias",
                Bv => "self_attn.v_proj.bias",
                QNorm => "self_attn.q_norm.weight",
                KNorm => "self_attn.k_norm.weight",
                PostAttnNorm => "post_attention_layernorm.weight",
                FfnNorm if arch.post_norms => "pre_feedforward_layernorm.weight",
                FfnNorm => "post_attention_layernorm.weight",
                PostFfnNorm => "post_feedforward_layernorm.weight",
                W1 => "mlp.gate_proj.weight",
                W2 => "mlp.down_proj.weight",
                W3 => "mlp.up_proj.weight",
            };
            format!("model.layers.{i}.{n}")
        }
    }
}

/// Where weights come from: a file label for errors, a naming scheme and a lookup.
pub(crate) struct WeightSource<'s, 'a> {
    pub file: &'s str,
    pub name: fn(Slot, &ArchSpec) -> String,
    pub get: &'s dyn Fn(&str) -> Result<Option<RawTensor<'a>>>,
    /// The file stores RMSNorm weights as `w` for a `1 + w` norm (Gemma in Hugging Face
    /// folders); the model holds `1 + w`, as GGUF files do.
    pub norm_plus_one: bool,
}

impl WeightSource<'_, '_> {
    fn raw(&self, slot: Slot, arch: &ArchSpec) -> Result<Option<RawTensor<'_>>> {
        (self.get)(&(self.name)(slot, arch))
    }

    fn require(&self, slot: Slot, arch: &ArchSpec) -> Result<RawTensor<'_>> {
        self.raw(slot, arch)?.ok_or_else(|| ModelError::MissingTensor {
            file: self.file.into(),
            name: (self.name)(slot, arch),
        })
    }

    fn linear(&self, slot: Slot, arch: &ArchSpec) -> Result<Linear> {
        Linear::from_raw(&self.require(slot, arch)?, &(self.name)(slot, arch))
    }

    fn vector(&self, slot: Slot, arch: &ArchSpec) -> Result<Vec<f32>> {
        vector(&self.require(slot, arch)?, self.file, &(self.name)(slot, arch))
    }

    fn optional_vector(&self, slot: Slot, arch: &ArchSpec) -> Result<Option<Vec<f32>>> {
        self.raw(slot, arch)?
            .map(|r| vector(&r, self.file, &(self.name)(slot, arch)))
            .transpose()
    }

    /// An RMSNorm's weights as the model applies them.
    fn norm(&self, slot: Slot, arch: &ArchSpec) -> Result<Vec<f32>> {
        let mut w = self.vector(slot, arch)?;
        if self.norm_plus_one {
            w.iter_mut().for_each(|v| *v += 1.0);
        }
        Ok(w)
    }

    /// A norm the architecture has (`needed`), or none.
    fn norm_if(&self, needed: bool, slot: Slot, arch: &ArchSpec) -> Result<Option<Vec<f32>>> {
        needed.then(|| self.norm(slot, arch)).transpose()
    }

    /// Reads every weight `cfg` needs. `bias` says whether q/k/v biases must be present.
    pub fn build(&self, cfg: &ModelConfig, bias: bool) -> Result<ModelWeights> {
        use LayerSlot::*;
        let arch = cfg.architecture.spec();
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let l = |s| Slot::Layer(i, s);
            let b = |s| {
                if bias {
                    self.vector(l(s), arch).map(Some)
                } else {
                    self.optional_vector(l(s), arch)
                }
            };
            layers.push(LayerWeights {
                attn_norm: self.norm(l(AttnNorm), arch)?,
                wq: self.linear(l(Wq), arch)?,
                wk: self.linear(l(Wk), arch)?,
                wv: self.linear(l(Wv), arch)?,
                wo: self.linear(l(Wo), arch)?,
                bq: b(Bq)?,
                bk: b(Bk)?,
                bv: b(Bv)?,
                q_norm: self.norm_if(arch.qk_norm, l(QNorm), arch)?,
                k_norm: self.norm_if(arch.qk_norm, l(KNorm), arch)?,
                post_attn_norm: self.norm_if(arch.post_norms, l(PostAttnNorm), arch)?,
                post_ffn_norm: self.norm_if(arch.post_norms, l(PostFfnNorm), arch)?,
                ffn_norm: self.norm(l(FfnNorm), arch)?,
                w1: self.linear(l(W1), arch)?,
                w2: self.linear(l(W2), arch)?,
                w3: self.linear(l(W3), arch)?,
            });
        }
        let lm_head = match self.raw(Slot::LmHead, arch)? {
            Some(raw) => Some(Linear::from_raw(&raw, &(self.name)(Slot::LmHead, arch))?),
            None => None,
        };
        Ok(ModelWeights {
            embedding: self.linear(Slot::Embedding, arch)?,
            layers,
            norm: self.norm(Slot::Norm, arch)?,
            lm_head,
        })
    }
}

/// A 1-D float tensor as f32.
pub(crate) fn vector(raw: &RawTensor<'_>, file: &str, name: &str) -> Result<Vec<f32>> {
    raw.validate(file, name)?;
    if raw.shape.len() != 1 {
        return Err(ModelError::format(
            file,
            name,
            format!("expected a vector, found shape {:?}", raw.shape),
        ));
    }
    let d = raw.data;
    Ok(match raw.dtype {
        TensorDType::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        TensorDType::F16 => d
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        TensorDType::BF16 => d
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        q => {
            return Err(ModelError::Unsupported(format!(
                "{file}: {name} is quantized ({}); vectors must be float",
                q.name()
            )))
        }
    })
}
