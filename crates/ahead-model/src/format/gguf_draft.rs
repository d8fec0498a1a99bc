//! A draft model written as a GGUF file for its GGUF target: llama architecture and every
//! `tokenizer.*` key of the target's file (vocabulary, merges, special ids, chat template), so
//! ahead and llama.cpp load it on its own. When the draft is meant to score only part of the
//! vocabulary (FR-Spec), the subset is stored as `ahead.token_subset`: ahead restricts the
//! draft's classifier to it when it drafts (`Model::restricted_to`); llama.cpp ignores the key
//! and scores the whole vocabulary with the tied embedding, which the file always holds.

use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ8_0};

use crate::error::{ModelError, Result};
use crate::format::gguf::{GgufFile, GgufValue};
use crate::format::gguf_write::GgufWriter;
use crate::load::weights::{gguf_name, LayerSlot, Slot};
use crate::tensor::TensorDType;
use crate::transformer::q8::ggml_bytes;
use crate::transformer::{Architecture, Linear, Model, RopeScaling, RopeStyle};

/// The GGUF key holding a drafter's classifier subset (token ids, most frequent first).
pub const TOKEN_SUBSET_KEY: &str = "ahead.token_subset";
/// The GGUF key naming the target a draft was trained for.
pub const DRAFT_FOR_KEY: &str = "ahead.draft_for";

const LABEL: &str = "draft GGUF";

/// How to write a draft.
#[derive(Debug, Clone)]
pub struct DraftGgufOptions<'a> {
    /// `general.name` of the draft.
    pub name: String,
    /// The embedding's type, and an untied classifier's (the file's largest tensors: 49,152 x
    /// 576 for SmolLM2).
    pub embedding: TensorDType,
    /// Every other matrix's type.
    pub matrices: TensorDType,
    /// The classifier subset to store, if any.
    pub token_subset: Option<&'a [u32]>,
}

/// The types a draft's matrices may be written in.
pub const DRAFT_DTYPES: [TensorDType; 4] = [
    TensorDType::F32,
    TensorDType::F16,
    TensorDType::Q8_0,
    TensorDType::Q4_0,
];

/// The bytes of a GGUF file holding `draft` with `target`'s tokenizer. The draft must be the
/// llama shape GGUF describes: interleaved RoPE without scaling, no biases, no window, its
/// full classifier (not restricted), and the target's vocabulary.
pub fn write_draft_gguf(draft: &Model, target: &GgufFile, opts: &DraftGgufOptions<'_>) -> Result<Vec<u8>> {
    let cfg = draft.config();
    let refuse = |why: &str| Err(ModelError::Unsupported(format!("writing a draft as GGUF: {why}")));
    if cfg.architecture != Architecture::Llama {
        return refuse("the draft must be a llama");
    }
    if cfg.rope_style != RopeStyle::Interleaved
        || cfg.rope_scaling != RopeScaling::None
        || cfg.rope_freq_factors.is_some()
        || cfg.sliding_window.is_some()
    {
        return refuse("the draft must use plain interleaved RoPE and no sliding window");
    }
    let w = draft.weights();
    if w.layers
        .iter()
        .any(|l| l.bq.is_some() || l.bk.is_some() || l.bv.is_some())
    {
        return refuse("the draft must not have attention biases");
    }
    if draft.classifier_tokens().is_some() {
        return refuse("write the full draft; its subset goes in the options");
    }
    let tokens = target
        .get_str_array("tokenizer.ggml.tokens")?
        .map_or(0, |t| t.len());
    if tokens != cfg.vocab_size {
        return refuse(&format!(
            "the target's tokenizer has {tokens} tokens and the draft a vocabulary of {}",
            cfg.vocab_size
        ));
    }
    for dtype in [opts.embedding, opts.matrices] {
        if !DRAFT_DTYPES.contains(&dtype) {
            return refuse(&format!("type {} (one of f32, f16, q8_0, q4_0)", dtype.name()));
        }
    }
    if let Some(subset) = opts.token_subset {
        if subset.is_empty() || subset.iter().any(|&t| t as usize >= cfg.vocab_size) {
            return refuse("the token subset must be non-empty and inside the vocabulary");
        }
    }

    let mut out = GgufWriter::new();
    out.add_string("general.architecture", "llama");
    out.add_string("general.name", opts.name.clone());
    let target_name = target.get_str("general.name")?.unwrap_or(target.label.as_str());
    out.add_string(DRAFT_FOR_KEY, target_name);
    for (key, value) in &target.metadata {
        if key.starts_with("tokenizer.") {
            out.add_metadata(key.clone(), value.clone());
        }
    }
    let u32_of =
        |n: usize| u32::try_from(n).map_err(|_| ModelError::format(LABEL, "size", format!("{n} too large")));
    out.add_u32("llama.context_length", u32_of(cfg.max_seq_len)?);
    out.add_u32("llama.embedding_length", u32_of(cfg.dim)?);
    out.add_u32("llama.block_count", u32_of(cfg.n_layers)?);
    out.add_u32("llama.feed_forward_length", u32_of(cfg.hidden_dim)?);
    out.add_u32("llama.attention.head_count", u32_of(cfg.n_heads)?);
    out.add_u32("llama.attention.head_count_kv", u32_of(cfg.n_kv_heads)?);
    out.add_u32("llama.attention.key_length", u32_of(cfg.head_dim)?);
    out.add_u32("llama.attention.value_length", u32_of(cfg.head_dim)?);
    out.add_u32("llama.rope.dimension_count", u32_of(cfg.head_dim)?);
    out.add_f32("llama.rope.freq_base", cfg.rope_theta);
    out.add_f32("llama.attention.layer_norm_rms_epsilon", cfg.rms_eps);
    out.add_u32("llama.vocab_size", u32_of(cfg.vocab_size)?);
    if let Some(subset) = opts.token_subset {
        let ids: Vec<i32> = subset.iter().map(|&t| t as i32).collect();
        out.add_i32_array(TOKEN_SUBSET_KEY, &ids);
    }

    matrix(&mut out, gguf_name(Slot::Embedding), &w.embedding, opts.embedding)?;
    if let Some(head) = &w.lm_head {
        // As large as the embedding: stored like it.
        matrix(&mut out, gguf_name(Slot::LmHead), head, opts.embedding)?;
    }
    out.add_tensor_f32(gguf_name(Slot::Norm), &[cfg.dim], &w.norm)?;
    for (i, l) in w.layers.iter().enumerate() {
        let name = |s: LayerSlot| gguf_name(Slot::Layer(i, s));
        out.add_tensor_f32(name(LayerSlot::AttnNorm), &[cfg.dim], &l.attn_norm)?;
        out.add_tensor_f32(name(LayerSlot::FfnNorm), &[cfg.dim], &l.ffn_norm)?;
        for (s, m) in [
            (LayerSlot::Wq, &l.wq),
            (LayerSlot::Wk, &l.wk),
            (LayerSlot::Wv, &l.wv),
            (LayerSlot::Wo, &l.wo),
            (LayerSlot::W1, &l.w1),
            (LayerSlot::W2, &l.w2),
            (LayerSlot::W3, &l.w3),
        ] {
            matrix(&mut out, name(s), m, opts.matrices)?;
        }
    }
    out.add_metadata("general.file_type", GgufValue::U32(file_type(opts.matrices)));
    out.to_bytes()
}

/// The token subset a GGUF file stores for its classifier, if any.
pub fn token_subset(file: &GgufFile) -> Result<Option<Vec<u32>>> {
    file.get_u32_array(TOKEN_SUBSET_KEY)
}

/// Adds `m` as `dtype` (a matrix whose rows do not split into blocks of 32 stays F16).
fn matrix(out: &mut GgufWriter, name: String, m: &Linear, dtype: TensorDType) -> Result<()> {
    let values = m.to_f32()?;
    let shape = [m.rows(), m.cols()];
    let blocks = m.cols().is_multiple_of(32);
    match dtype {
        TensorDType::F32 => out.add_tensor_f32(name, &shape, &values)?,
        TensorDType::Q8_0 if blocks => {
            out.add_tensor_raw(name, dtype, &shape, ggml_bytes::<BlockQ8_0>(&values))?
        }
        TensorDType::Q4_0 if blocks => {
            out.add_tensor_raw(name, dtype, &shape, ggml_bytes::<BlockQ4_0>(&values))?
        }
        _ => out.add_tensor_f16(name, &shape, &values)?,
    };
    Ok(())
}

/// llama.cpp's `general.file_type` for a file mostly of `dtype`.
fn file_type(dtype: TensorDType) -> u32 {
    match dtype {
        TensorDType::F32 => 0,
        TensorDType::F16 => 1,
        TensorDType::Q4_0 => 2,
        _ => 7,
    }
}
