//! Random-weight models of each architecture, written in every format ahead reads (GGUF in
//! f32/f16/bf16/q8_0, safetensors single and sharded in f32/f16/bf16, llama2.c), load back to
//! the same model: same logits and the same greedy tokens as the model they were written from.
//! This also checks the RoPE layout handling: GGUF and llama2.c store Llama's q/k rows in
//! interleaved-pair order, Hugging Face in rotate-half order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

use ahead_model::format::gguf::{parse_gguf, GgufValue};
use ahead_model::format::gguf_write::GgufWriter;
use ahead_model::transformer::synthetic::{random_model, tiny_config};
use ahead_model::transformer::{Architecture, ForwardInput, Model, ModelConfig, ModelWeights};
use ahead_model::{load, LoadOptions, ModelSource, TensorDType};
use ahead_testutil::{argmax, assert_close, fixture, F32};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn config(architecture: Architecture) -> ModelConfig {
    // The stories260K tokenizers' vocabulary, reused by every format.
    let gemma = architecture == Architecture::Gemma3;
    ModelConfig {
        sliding_window: matches!(architecture, Architecture::Mistral | Architecture::Gemma3).then_some(8),
        // Gemma 3: a sliding layer with its own RoPE base, then a global one.
        sliding_layers: gemma.then(|| vec![true, false]),
        local_rope_theta: gemma.then_some(10_000.0),
        rope_theta: if gemma { 1_000_000.0 } else { 10_000.0 },
        attention_scale: None,
        final_logit_softcap: gemma.then_some(30.0),
        ..tiny_config(architecture, 512)
    }
}

/// Weights rounded to bf16 with tiny values zeroed: exactly representable in f16 and bf16,
/// so every float format decodes to the very same f32 values.
fn exact_in_half(x: f32) -> f32 {
    let r = half::bf16::from_f32(x).to_f32();
    if r.abs() < 1e-3 {
        0.0
    } else {
        r
    }
}

/// The reference: a random model with half-representable weights and rotate-half RoPE.
fn reference(arch: Architecture) -> Model {
    let cfg = config(arch);
    let m = random_model(&cfg, TensorDType::F32, 11).unwrap();
    let mut w = m.weights().clone();
    let round_lin = |l: &ahead_model::transformer::Linear| {
        let v: Vec<f32> = l.to_f32().unwrap().into_iter().map(exact_in_half).collect();
        ahead_model::transformer::Linear::from_f32(v, l.rows(), l.cols()).unwrap()
    };
    let round_vec = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = exact_in_half(*x));
    w.embedding = round_lin(&w.embedding);
    w.lm_head = w.lm_head.as_ref().map(round_lin);
    round_vec(&mut w.norm);
    for l in &mut w.layers {
        for m in [
            &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
        ] {
            *m = round_lin(m);
        }
        for v in [&mut l.attn_norm, &mut l.ffn_norm] {
            round_vec(v);
        }
        let optional = [
            &mut l.bq,
            &mut l.bk,
            &mut l.bv,
            &mut l.q_norm,
            &mut l.k_norm,
            &mut l.post_attn_norm,
            &mut l.post_ffn_norm,
        ];
        for v in optional.into_iter().flatten() {
            round_vec(v);
        }
    }
    Model::new(cfg, w).unwrap()
}

/// Named tensors as (row-major shape, f32 values), in the given naming scheme.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tensors(w: &ModelWeights, cfg: &ModelConfig, gguf: bool, interleaved: bool) -> Tensors {
    let mat = |l: &ahead_model::transformer::Linear| (vec![l.rows(), l.cols()], l.to_f32().unwrap());
    let mut out: Tensors = Vec::new();
    let mut push = |name: String, (shape, v): (Vec<usize>, Vec<f32>)| out.push((name, shape, v));
    let (emb, norm, head) = if gguf {
        ("token_embd.weight", "output_norm.weight", "output.weight")
    } else {
        ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")
    };
    push(emb.into(), mat(&w.embedding));
    push(norm.into(), (vec![cfg.dim], w.norm.clone()));
    if let Some(h) = &w.lm_head {
        push(head.into(), mat(h));
    }
    for (i, l) in w.layers.iter().enumerate() {
        let names: [&str; 12] = if gguf {
            [
                "attn_norm.weight",
                "attn_q.weight",
                "attn_k.weight",
                "attn_v.weight",
                "attn_output.weight",
                "ffn_norm.weight",
                "ffn_gate.weight",
                "ffn_down.weight",
                "ffn_up.weight",
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
            ]
        } else {
            [
                "input_layernorm.weight",
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "post_attention_layernorm.weight",
                "mlp.gate_proj.weight",
                "mlp.down_proj.weight",
                "mlp.up_proj.weight",
                "self_attn.q_proj.bias",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
            ]
        };
        let n = |k: usize| {
            if gguf {
                format!("blk.{i}.{}", names[k])
            } else {
                format!("model.layers.{i}.{}", names[k])
            }
        };
        let (mut q, mut k) = (mat(&l.wq), mat(&l.wk));
        if interleaved {
            q.1 = ahead_model::format::llama2c_write::interleave(&q.1, cfg.n_heads, cfg.head_dim, cfg.dim);
            k.1 = ahead_model::format::llama2c_write::interleave(&k.1, cfg.n_kv_heads, cfg.head_dim, cfg.dim);
        }
        push(n(0), (vec![cfg.dim], l.attn_norm.clone()));
        push(n(1), q);
        push(n(2), k);
        push(n(3), mat(&l.wv));
        push(n(4), mat(&l.wo));
        push(n(5), (vec![cfg.dim], l.ffn_norm.clone()));
        push(n(6), mat(&l.w1));
        push(n(7), mat(&l.w2));
        push(n(8), mat(&l.w3));
        for (j, b) in [(9, &l.bq), (10, &l.bk), (11, &l.bv)] {
            if let Some(b) = b {
                push(n(j), (vec![b.len()], b.clone()));
            }
        }
        // QK-norm and Gemma's post-norms (written in GGUF only: the Hugging Face layouts of
        // these families are tested against transformers' own files).
        let extra = [
            ("attn_q_norm.weight", &l.q_norm),
            ("attn_k_norm.weight", &l.k_norm),
            ("post_attention_norm.weight", &l.post_attn_norm),
            ("post_ffw_norm.weight", &l.post_ffn_norm),
        ];
        for (name, v) in extra {
            if let Some(v) = v.as_ref().filter(|_| gguf) {
                push(format!("blk.{i}.{name}"), (vec![v.len()], v.clone()));
            }
        }
    }
    out
}

fn write_gguf(model: &Model, path: &Path, dtype: TensorDType) {
    let cfg = model.config();
    let arch = cfg.architecture.name();
    let interleaved = cfg.architecture.spec().gguf_rope == ahead_model::transformer::RopeStyle::Interleaved;
    let mut w = GgufWriter::new();
    w.add_string("general.architecture", arch);
    for (k, v) in [
        ("embedding_length", cfg.dim),
        ("feed_forward_length", cfg.hidden_dim),
        ("block_count", cfg.n_layers),
        ("attention.head_count", cfg.n_heads),
        ("attention.head_count_kv", cfg.n_kv_heads),
        ("context_length", cfg.max_seq_len),
    ] {
        w.add_u32(format!("{arch}.{k}"), v as u32);
    }
    if let Some(win) = cfg.sliding_window {
        w.add_u32(format!("{arch}.attention.sliding_window"), win as u32);
    }
    if let Some(layers) = &cfg.sliding_layers {
        let flags = layers.iter().map(|&b| GgufValue::Bool(b)).collect();
        w.add_metadata(
            format!("{arch}.attention.sliding_window_pattern"),
            GgufValue::Array(flags),
        );
    }
    if let Some(theta) = cfg.local_rope_theta {
        w.add_f32(format!("{arch}.rope.freq_base_swa"), theta);
    }
    if let Some(cap) = cfg.final_logit_softcap {
        w.add_f32(format!("{arch}.final_logit_softcapping"), cap);
    }
    w.add_f32(format!("{arch}.rope.freq_base"), cfg.rope_theta);
    w.add_f32(format!("{arch}.attention.layer_norm_rms_epsilon"), cfg.rms_eps);
    // The tokenizer of the real stories260K.gguf (same 512-piece vocabulary).
    let real = std::fs::read(fixture("stories260K/stories260K.gguf")).unwrap();
    let real = parse_gguf(&real, "stories260K.gguf").unwrap();
    for (k, v) in real.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
        w.add_metadata(k.clone(), v.clone());
    }
    for (name, shape, v) in tensors(model.weights(), cfg, true, interleaved) {
        match (shape.len(), dtype) {
            (1, _) | (_, TensorDType::F32) => w.add_tensor_f32(name, &shape, &v),
            (_, TensorDType::F16) => w.add_tensor_f16(name, &shape, &v),
            (_, TensorDType::BF16) => w.add_tensor_bf16(name, &shape, &v),
            (_, q) => {
                let bytes = quantized_bytes(&v, q);
                w.add_tensor_raw(name, q, &shape, bytes)
            }
        }
        .unwrap();
    }
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

/// Q8_0 blocks of `v`, laid out as GGUF stores them.
fn quantized_bytes(v: &[f32], q: TensorDType) -> Vec<u8> {
    use candle_core::quantized::k_quants::BlockQ8_0;
    use candle_core::quantized::GgmlType;
    assert_eq!(q, TensorDType::Q8_0, "only q8_0 is written by this test");
    let mut blocks = vec![BlockQ8_0::zeros(); v.len() / 32];
    BlockQ8_0::from_float(v, &mut blocks);
    let mut out = Vec::with_capacity(blocks.len() * 34);
    for b in &blocks {
        // SAFETY (test): BlockQ8_0 is repr(C) {f16, [i8; 32]}, 34 bytes without padding.
        let bytes = unsafe { std::slice::from_raw_parts((b as *const BlockQ8_0).cast::<u8>(), 34) };
        out.extend_from_slice(bytes);
    }
    out
}

fn st_bytes(ts: &[(String, Vec<usize>, Vec<f32>)], dtype: TensorDType) -> Vec<u8> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = ts
        .iter()
        .map(|(n, s, v)| {
            let b: Vec<u8> = match dtype {
                TensorDType::F16 => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
                TensorDType::BF16 => v
                    .iter()
                    .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                    .collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            (n.clone(), s.clone(), b)
        })
        .collect();
    let st_dtype = match dtype {
        TensorDType::F16 => Dtype::F16,
        TensorDType::BF16 => Dtype::BF16,
        _ => Dtype::F32,
    };
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(st_dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

fn write_hf(model: &Model, dir: &Path, dtype: TensorDType, shards: usize) {
    let cfg = model.config();
    std::fs::create_dir_all(dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture(&format!("stories260K-hf/{f}")), dir.join(f)).unwrap();
    }
    let config = serde_json::json!({
        "model_type": cfg.architecture.name(),
        "hidden_size": cfg.dim, "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_eps, "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": false, "hidden_act": "silu",
        "sliding_window": cfg.sliding_window, "use_sliding_window": cfg.sliding_window.is_some(),
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let ts = tensors(model.weights(), cfg, false, false);
    if shards == 1 {
        std::fs::write(dir.join("model.safetensors"), st_bytes(&ts, dtype)).unwrap();
        return;
    }
    let mut map = HashMap::new();
    for (i, chunk) in ts.chunks(ts.len().div_ceil(shards)).enumerate() {
        let name = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
        std::fs::write(dir.join(&name), st_bytes(chunk, dtype)).unwrap();
        for (n, _, _) in chunk {
            map.insert(n.clone(), name.clone());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn write_llama2c(model: &Model, dir: &Path) {
    ahead_model::format::llama2c_write::write_llama2c(model, &dir.join("model.bin")).unwrap();
    std::fs::copy(fixture("stories260K/tok512.bin"), dir.join("tok512.bin")).unwrap();
}

const PROMPT: [u32; 6] = [1, 403, 407, 261, 378, 12];

/// Prompt logits of every row, and 16 greedy tokens after the prompt.
fn run(model: &Model) -> (Vec<f32>, Vec<u32>) {
    let mut cache = model.new_cache(40).unwrap();
    let pos: Vec<usize> = (0..PROMPT.len()).collect();
    let out = model
        .forward(&ForwardInput::causal(&PROMPT, &pos), &mut cache)
        .unwrap();
    let logits = out.logits.clone();
    let mut next = argmax(out.last()) as u32;
    let mut tokens = vec![next];
    for p in PROMPT.len()..PROMPT.len() + 15 {
        let o = model
            .forward(&ForwardInput::causal(&[next], &[p]), &mut cache)
            .unwrap();
        next = argmax(o.last()) as u32;
        tokens.push(next);
    }
    (logits, tokens)
}

fn check(what: &str, reference: &Model, path: &Path, exact: bool) {
    let loaded = load(&ModelSource::Path(path.to_path_buf()), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(loaded.tokenizer.vocab_size(), 512, "{what}: tokenizer");
    let (want_logits, want_tokens) = run(reference);
    let (logits, tokens) = run(&loaded.model);
    if exact {
        assert_eq!(logits, want_logits, "{what}: logits must be bit-identical");
    } else {
        assert_close(&logits, &want_logits, F32, what);
    }
    assert_eq!(tokens, want_tokens, "{what}: greedy tokens");
}

#[test]
fn every_format_loads_back_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in [Architecture::Llama, Architecture::Mistral, Architecture::Qwen2] {
        let m = reference(arch);
        let name = arch.name();
        for (dtype, shards) in [
            (TensorDType::F32, 1),
            (TensorDType::F16, 1),
            (TensorDType::BF16, 3),
        ] {
            let dir = tmp.path().join(format!("{name}-hf-{}-{shards}", dtype.name()));
            write_hf(&m, &dir, dtype, shards);
            // Same layout and the same f32 values: bit-identical.
            check(
                &format!("{name} HF {} in {shards} shard(s)", dtype.name()),
                &m,
                &dir,
                true,
            );
        }
        for dtype in [TensorDType::F32, TensorDType::F16, TensorDType::BF16] {
            let path = tmp.path().join(format!("{name}-{}.gguf", dtype.name()));
            write_gguf(&m, &path, dtype);
            // Interleaved RoPE sums the same products in another order: close, same tokens.
            check(
                &format!("{name} GGUF {}", dtype.name()),
                &m,
                &path,
                arch == Architecture::Qwen2,
            );
        }
    }
    let m = reference(Architecture::Llama);
    let dir = tmp.path().join("llama2c");
    std::fs::create_dir_all(&dir).unwrap();
    write_llama2c(&m, &dir);
    check("llama2.c checkpoint", &m, &dir.join("model.bin"), false);
}

/// Qwen3 and Gemma 3 GGUF files as llama.cpp writes them (QK-norm, post-norm tensor names;
/// a sliding-window pattern as a list of flags, the sliding layers' RoPE base, soft-capping)
/// load back to the same model.
#[test]
fn qwen3_and_gemma3_gguf_files_load_back_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in [Architecture::Qwen3, Architecture::Gemma3] {
        let m = reference(arch);
        for dtype in [TensorDType::F32, TensorDType::F16] {
            let path = tmp.path().join(format!("{}-{}.gguf", arch.name(), dtype.name()));
            write_gguf(&m, &path, dtype);
            let what = format!("{} GGUF {}", arch.name(), dtype.name());
            check(&what, &m, &path, true);
            let loaded = load(&ModelSource::Path(path), &LoadOptions::default()).unwrap();
            assert_eq!(loaded.model.config(), m.config(), "{what}");
        }
    }
}

#[test]
fn q8_0_gguf_matches_the_same_quantized_weights_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let m = reference(Architecture::Llama);
    let path = tmp.path().join("q8.gguf");
    write_gguf(&m, &path, TensorDType::Q8_0);
    // The same weights quantized in memory (quantization is per row, so the GGUF's row
    // permutation does not change a block).
    let q = |l: &ahead_model::transformer::Linear| {
        ahead_model::transformer::Linear::quantize(
            &l.to_f32().unwrap(),
            l.rows(),
            l.cols(),
            TensorDType::Q8_0,
        )
        .unwrap()
    };
    let mut w = m.weights().clone();
    w.embedding = q(&w.embedding);
    w.lm_head = w.lm_head.as_ref().map(q);
    for l in &mut w.layers {
        for x in [
            &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
        ] {
            *x = q(x);
        }
    }
    let reference = Model::new(m.config().clone(), w).unwrap();
    let loaded = load(&ModelSource::Path(path.clone()), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.model.weights().layers[0].wq.dtype(), TensorDType::Q8_0);
    check("llama GGUF q8_0", &reference, &path, false);
}
