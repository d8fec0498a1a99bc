//! `ahead inspect SRC`: what a model holds.

use std::collections::BTreeMap;
use std::io::Write;

use ahead_model::transformer::RopeScaling;
use ahead_model::{LoadOptions, ModelSource};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model: llama2.c .bin, .gguf, Hugging Face folder or hub id ("default" for the embedded one).
    pub src: String,
    /// llama2.c tokenizer .bin, when it is not beside the checkpoint.
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Inspection {
    source: String,
    format: String,
    architecture: String,
    dim: usize,
    hidden_dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    vocab_size: usize,
    context_length: usize,
    rope_theta: f32,
    rope_style: String,
    /// `none`, or the scaling and its parameters.
    rope_scaling: String,
    rms_eps: f32,
    sliding_window: Option<usize>,
    /// The layers that slide, when not all of them.
    sliding_layers: Option<Vec<usize>>,
    /// The sliding layers' RoPE base, when it is their own.
    local_rope_theta: Option<f32>,
    attention_scale: f32,
    final_logit_softcap: Option<f32>,
    tied_classifier: bool,
    /// Tokens a drafter's classifier scores when it drafts (`ahead.token_subset`), if the file
    /// names a subset.
    drafting_subset: Option<usize>,
    parameters: usize,
    weight_bytes: usize,
    matrix_dtypes: BTreeMap<String, usize>,
    tokenizer: TokenizerInfo,
}

#[derive(Debug, Serialize)]
struct TokenizerInfo {
    kind: String,
    vocab_size: usize,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    chat_template: bool,
}

pub fn run(a: InspectArgs) -> Result<()> {
    let src = ModelSource::parse(&a.src)?;
    let loaded = ahead_model::load(
        &src,
        &LoadOptions {
            tokenizer: a.tokenizer,
        },
    )
    .with_context(|| format!("loading {}", a.src))?;
    let c = loaded.model.config();
    let w = loaded.model.weights();
    let mut dtypes = BTreeMap::new();
    let mut params = w.norm.len();
    let mut matrices = vec![&w.embedding];
    matrices.extend(&w.lm_head);
    for l in &w.layers {
        matrices.extend([&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3]);
        params += l.attn_norm.len() + l.ffn_norm.len();
        params += [
            &l.bq,
            &l.bk,
            &l.bv,
            &l.q_norm,
            &l.k_norm,
            &l.post_attn_norm,
            &l.post_ffn_norm,
        ]
        .iter()
        .map(|b| b.as_ref().map_or(0, Vec::len))
        .sum::<usize>();
    }
    for m in matrices {
        *dtypes.entry(m.dtype().name().to_string()).or_insert(0) += 1;
        params += m.rows() * m.cols();
    }
    let t = &loaded.tokenizer;
    let info = Inspection {
        source: loaded.info.source.clone(),
        format: loaded.info.format.name().into(),
        architecture: c.architecture.name().into(),
        dim: c.dim,
        hidden_dim: c.hidden_dim,
        n_layers: c.n_layers,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        vocab_size: c.vocab_size,
        context_length: c.max_seq_len,
        rope_theta: c.rope_theta,
        rope_style: format!("{:?}", c.rope_style).to_lowercase(),
        rope_scaling: describe_scaling(&c.rope_scaling),
        rms_eps: c.rms_eps,
        sliding_window: c.sliding_window,
        sliding_layers: c
            .sliding_layers
            .as_ref()
            .map(|l| (0..l.len()).filter(|&i| l[i]).collect()),
        local_rope_theta: c.local_rope_theta,
        attention_scale: c.attention_scale(),
        final_logit_softcap: c.final_logit_softcap,
        tied_classifier: w.lm_head.is_none(),
        drafting_subset: loaded.info.token_subset.as_ref().map(Vec::len),
        parameters: params,
        weight_bytes: loaded.model.weight_bytes(),
        matrix_dtypes: dtypes,
        tokenizer: TokenizerInfo {
            kind: t.kind().into(),
            vocab_size: t.vocab_size(),
            bos_id: t.bos_id(),
            eos_ids: t.eos_ids().to_vec(),
            add_bos: t.add_bos(),
            chat_template: t.chat_template().is_some(),
        },
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    writeln!(out, "source        {}", info.source)?;
    writeln!(out, "format        {}", info.format)?;
    writeln!(
        out,
        "architecture  {} ({} parameters, {:.2} MB of weights)",
        info.architecture,
        info.parameters,
        info.weight_bytes as f64 / 1e6
    )?;
    writeln!(
        out,
        "shape         dim {}, hidden {}, {} layers, {} heads / {} kv heads, head_dim {}",
        c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim
    )?;
    writeln!(
        out,
        "context       {} tokens, rope theta {} ({}, scaling {}), rms eps {:e}",
        c.max_seq_len, c.rope_theta, info.rope_style, info.rope_scaling, c.rms_eps
    )?;
    if let Some(win) = c.sliding_window {
        let layers = match &info.sliding_layers {
            Some(l) => format!("layers {l:?}"),
            None => "every layer".into(),
        };
        let rope = info
            .local_rope_theta
            .map_or(String::new(), |t| format!(", their rope theta {t}"));
        writeln!(out, "attention     window of {win} tokens on {layers}{rope}")?;
    }
    let mut extras = vec![format!("query scale {}", info.attention_scale)];
    if let Some(cap) = info.final_logit_softcap {
        extras.push(format!("logits soft-capped at {cap}"));
    }
    writeln!(out, "scores        {}", extras.join(", "))?;
    writeln!(
        out,
        "classifier    {}",
        if info.tied_classifier {
            "tied to the embedding"
        } else {
            "separate"
        }
    )?;
    if let Some(n) = info.drafting_subset {
        writeln!(
            out,
            "drafting      scores {n} tokens as a draft (ahead.token_subset)"
        )?;
    }
    writeln!(out, "matrices      {:?}", info.matrix_dtypes)?;
    let tk = &info.tokenizer;
    writeln!(
        out,
        "tokenizer     {} (vocab {}, bos {:?}, eos {:?}, add_bos {})",
        tk.kind, tk.vocab_size, tk.bos_id, tk.eos_ids, tk.add_bos
    )?;
    writeln!(
        out,
        "chat template {}",
        if tk.chat_template { "yes" } else { "none" }
    )?;
    Ok(())
}

/// RoPE scaling as one phrase, e.g. `yarn x4 (original context 64, attention 1.1386)`.
fn describe_scaling(s: &RopeScaling) -> String {
    match s {
        RopeScaling::None => "none".into(),
        RopeScaling::Linear { factor } => format!("linear x{factor}"),
        RopeScaling::Llama3(l) => format!(
            "llama3 x{} (low {}, high {}, original context {})",
            l.factor, l.low_freq_factor, l.high_freq_factor, l.original_max_position_embeddings
        ),
        RopeScaling::Yarn(y) => format!(
            "yarn x{} (original context {}, attention {:.4}, beta {}/{})",
            y.factor, y.original_max_position_embeddings, y.attention_factor, y.beta_fast, y.beta_slow
        ),
    }
}
