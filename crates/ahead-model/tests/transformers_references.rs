//! ahead against Hugging Face transformers, an implementation nobody here wrote: greedy ids and
//! logits stored in `tests/fixtures/` by `scripts/make_tf5_fixtures.py` (tiny models saved by
//! transformers 5, whose `config.json` carries `rope_parameters`) and
//! `scripts/make_references.py` (the real SmolLM2-135M-Instruct Q4_1 file, fetched by
//! `scripts/fetch-models.sh`). Ids must agree up to the first near-tie of the reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use ahead_model::format::convert::convert_gguf;
use ahead_model::format::gguf::parse_gguf;
use ahead_model::format::hf_write::write_hf_folder;
use ahead_model::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
use ahead_model::transformer::RopeScaling;
use ahead_model::{load, ForwardInput, LoadOptions, LoadedModel, Model, ModelSource, TensorDType};
use ahead_testutil::{argmax, fixture, greedy_divergence, real_model};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn load_path(path: &Path) -> LoadedModel {
    load(&ModelSource::Path(path.to_owned()), &LoadOptions::default()).unwrap()
}

/// Greedy ids after `prompt` (stopping after any of `eos`), and the first step's logits.
fn greedy(model: &Model, prompt: &[u32], max_new: usize, eos: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let mut cache = model.new_cache(prompt.len() + max_new + 1).unwrap();
    let positions: Vec<usize> = (0..prompt.len()).collect();
    let out = model
        .forward(&ForwardInput::causal(prompt, &positions), &mut cache)
        .unwrap();
    let first = out.last().to_vec();
    let mut logits = first.clone();
    let mut got = Vec::new();
    while got.len() < max_new {
        let next = argmax(&logits) as u32;
        got.push(next);
        if eos.contains(&next) {
            break;
        }
        let pos = [prompt.len() + got.len() - 1];
        logits = model
            .forward(&ForwardInput::causal(&[next], &pos), &mut cache)
            .unwrap()
            .last()
            .to_vec();
    }
    (got, first)
}

const TF5: [&str; 4] = ["qwen2-theta1e6", "llama3-rope", "llama-linear", "llama-yarn"];

#[test]
fn transformers5_configs_decode_as_transformers_does() {
    for name in TF5 {
        let dir = fixture(&format!("tf5/{name}"));
        let reference = read_json(&dir.join("reference.json"));
        let loaded = load_path(&dir);
        let cfg = loaded.model.config();
        let theta = reference["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32;
        assert_eq!(cfg.rope_theta, theta, "{name}");
        let kind = reference["rope_parameters"]["rope_type"].as_str().unwrap();
        let scaled = match cfg.rope_scaling {
            RopeScaling::None => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3(_) => "llama3",
            RopeScaling::Yarn(y) => {
                let want = reference["rope_attention_scaling"].as_f64().unwrap() as f32;
                assert!((y.attention_factor - want).abs() < 1e-6, "{name}: {y:?}");
                "yarn"
            }
        };
        assert_eq!(scaled, kind, "{name}");

        let prompt = ids(&reference["prompt_ids"]);
        let want = ids(&reference["greedy_ids"]);
        let margins = floats(&reference["top2_margins"]);
        let (got, first) = greedy(&loaded.model, &prompt, want.len(), &[]);
        let want_first = floats(&reference["first_step_logits"]);
        let worst = first
            .iter()
            .zip(&want_first)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 2e-3, "{name}: first-step logits differ by {worst}");
        assert_eq!(
            greedy_divergence(&got, &want, &margins, 0.05),
            None,
            "{name}: {got:?}\nvs {want:?}"
        );
        // The same weights with plain RoPE give other ids: the scaling is what is tested.
        assert_ne!(want, ids(&reference["plain_rope_greedy_ids"]), "{name}");
    }
}

/// Qwen3 (QK-norm, explicit head size) and Gemma 3 (QK-norm, post-norms, GeGLU, scaled
/// embeddings, `query_pre_attn_scalar`, soft-capped logits, sliding layers with their own RoPE
/// base around a global layer with linear scaling, a 6-token window over a 32-token run), as
/// transformers builds and runs them.
#[test]
fn qwen3_and_gemma3_decode_as_transformers_does() {
    for name in ["qwen3-qknorm", "gemma3-sliding"] {
        let dir = fixture(&format!("tf5/{name}"));
        let reference = read_json(&dir.join("reference.json"));
        let loaded = load_path(&dir);
        let cfg = loaded.model.config();
        if name == "gemma3-sliding" {
            assert_eq!(cfg.sliding_window, Some(6));
            assert_eq!(cfg.sliding_layers, Some(vec![true, false, true]));
            assert_eq!(cfg.local_rope_theta, Some(10_000.0));
            assert_eq!(cfg.rope_scaling, RopeScaling::Linear { factor: 2.0 });
            assert_eq!(cfg.attention_scale, Some(24f64.powf(-0.5) as f32));
            assert_eq!(cfg.final_logit_softcap, Some(30.0));
        } else {
            assert_eq!((cfg.head_dim, cfg.q_dim()), (32, 128));
        }
        let prompt = ids(&reference["prompt_ids"]);
        let want = ids(&reference["greedy_ids"]);
        let (got, first) = greedy(&loaded.model, &prompt, want.len(), &[]);
        let worst = first
            .iter()
            .zip(&floats(&reference["first_step_logits"]))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 2e-3, "{name}: first-step logits differ by {worst}");
        assert_eq!(got, want, "{name}");
        if let Some(wide) = reference["no_window_greedy_ids"].as_array() {
            // Without the window transformers gives other ids: the window is what is tested.
            assert_ne!(ids(&Value::Array(wide.clone())), want, "{name}");
        }
    }
}

/// A copy of a tf5 fixture folder with `config.json` edited by `edit`.
fn with_config(name: &str, edit: impl Fn(&mut Value)) -> tempfile::TempDir {
    let src = fixture(&format!("tf5/{name}"));
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let mut cfg = read_json(&src.join("config.json"));
    edit(&mut cfg);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    dir
}

fn load_err(dir: &Path) -> String {
    match load(&ModelSource::Path(dir.to_owned()), &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rope_settings_ahead_does_not_implement_are_refused() {
    let dynamic = with_config("llama-linear", |c| {
        c["rope_parameters"]["rope_type"] = "dynamic".into()
    });
    assert!(load_err(dynamic.path()).contains("rope_type \"dynamic\""));
    let unknown = with_config("llama-linear", |c| {
        c["rope_parameters"]["short_factor"] = 1.0.into()
    });
    assert!(load_err(unknown.path()).contains("rope_parameters.short_factor"));
    let conflict = with_config("qwen2-theta1e6", |c| c["rope_theta"] = 10000.0.into());
    assert!(load_err(conflict.path()).contains("rope_theta"));
    let mixed = with_config("qwen2-theta1e6", |c| {
        c["layer_types"] = serde_json::json!(["full_attention", "sliding_attention"]);
    });
    assert!(load_err(mixed.path()).contains("layer_types"));
    // transformers 4's shape still loads, with the same numbers.
    let v4 = with_config("llama-linear", |c| {
        let params = c["rope_parameters"].take();
        c["rope_theta"] = params["rope_theta"].clone();
        c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": params["factor"]});
        c.as_object_mut().unwrap().remove("rope_parameters");
    });
    let cfg = load_path(v4.path()).model.config().clone();
    assert_eq!(cfg.rope_scaling, RopeScaling::Linear { factor: 2.0 });
}

/// Gemma 3's config as transformers 4 wrote it (top-level `rope_theta`, `rope_local_base_freq`,
/// `rope_scaling` for the global layers, `sliding_window_pattern` instead of `layer_types`)
/// describes the same model as transformers 5's; a pattern that disagrees with `layer_types`'
/// list is what it says, and a bidirectional or attention-capped Gemma is refused.
#[test]
fn gemma3_configs_in_transformers_4_shape_load_the_same_model() {
    let want = load_path(&fixture("tf5/gemma3-sliding")).model.config().clone();
    let v4 = with_config("gemma3-sliding", |c| {
        let params = c["rope_parameters"].take();
        let o = c.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.remove("layer_types");
        o.insert(
            "rope_theta".into(),
            params["full_attention"]["rope_theta"].clone(),
        );
        o.insert(
            "rope_local_base_freq".into(),
            params["sliding_attention"]["rope_theta"].clone(),
        );
        o.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "linear", "factor": 2.0}),
        );
        // Layers 0 and 2 slide, layer 1 (the last of its pair) is global: [sliding, full, sliding].
        o.insert("sliding_window_pattern".into(), 2.into());
    });
    assert_eq!(load_path(v4.path()).model.config(), &want);
    let every_third = with_config("gemma3-sliding", |c| {
        c.as_object_mut().unwrap().remove("layer_types");
        c["sliding_window_pattern"] = 3.into();
    });
    let cfg = load_path(every_third.path()).model.config().clone();
    assert_eq!(cfg.sliding_layers, Some(vec![true, true, false]));
    let bidirectional = with_config("gemma3-sliding", |c| {
        c["use_bidirectional_attention"] = true.into()
    });
    assert!(load_err(bidirectional.path()).contains("use_bidirectional_attention"));
    let capped = with_config("gemma3-sliding", |c| c["attn_logit_softcapping"] = 50.0.into());
    assert!(load_err(capped.path()).contains("attn_logit_softcapping"));
    let silu = with_config("gemma3-sliding", |c| {
        c["hidden_activation"] = "silu".into();
        c["hidden_act"] = "silu".into();
    });
    assert!(load_err(silu.path()).contains("gelu_pytorch_tanh"));
}

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn smollm2_reference() -> Value {
    read_json(&fixture("reference/smollm2-135m-instruct-q4_1.json"))
}

fn messages(case: &Value) -> Vec<ChatMessage> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn smollm2_chat_prompts_tokenize_as_apply_chat_template() {
    let Some(path) = real_model(SMOLLM2) else { return };
    let bytes = std::fs::read(&path).unwrap();
    let tok = &Tokenizer::from_gguf(&parse_gguf(&bytes, SMOLLM2).unwrap()).unwrap();
    let reference = smollm2_reference();
    assert_eq!(tok.piece_to_id("<|im_end|>"), Some(2));
    assert!(tok.eos_ids().contains(&2), "{:?}", tok.eos_ids());
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["prompt_ids"]);
        let got = if case["kind"] == "chat" {
            let chat = tok.encode_chat(&messages(case), true).unwrap();
            assert_eq!(chat.text, case["prompt_text"].as_str().unwrap(), "{name}");
            chat.ids
        } else {
            tok.encode(case["prompt"].as_str().unwrap(), tok.add_bos())
                .unwrap()
        };
        assert_eq!(got, want, "{name}");
        if case.get("naive_prompt_ids").is_some() {
            // The user's `<|im_end|>` is text: no turn ends inside their message.
            assert_ne!(got, ids(&case["naive_prompt_ids"]), "{name}");
        }
    }
}

/// Greedy decoding of the Q4_1 file against transformers' float32 run of the same weights.
/// ahead quantizes activations to 8 bits for the integer kernels (as llama.cpp does), so the
/// ids may part, but only at a step where the reference's top two are within
/// `QUANTIZED_NEAR_TIE` (measured: four cases part at margins 0.08, 0.03, 0.41 and 0.16, two
/// not at all), and no fewer tokens may agree than when this was written.
const QUANTIZED_NEAR_TIE: f32 = 0.5;
/// Tokens of the six cases that agreed before their first divergence (of 354), measured.
const QUANTIZED_AGREED: usize = 187;

#[test]
fn smollm2_q4_1_decodes_as_transformers_does() {
    let Some(path) = real_model(SMOLLM2) else { return };
    let loaded = load_path(&path);
    let eos = loaded.tokenizer.eos_ids().to_vec();
    let agreed = agreement(&loaded.model, &smollm2_reference(), &eos, QUANTIZED_NEAR_TIE);
    eprintln!("smollm2 q4_1: {agreed} greedy tokens agree with transformers");
    assert!(
        agreed >= QUANTIZED_AGREED,
        "{agreed} tokens agree; {QUANTIZED_AGREED} did"
    );
}

/// The GGUF at `path` converted to F32 (`ahead convert --to f32`: the dequantized weights,
/// exactly), loaded back.
fn converted_to_f32(path: &Path, name: &str) -> LoadedModel {
    let bytes = std::fs::read(path).unwrap();
    let f32_file = convert_gguf(&bytes, name, TensorDType::F32).unwrap();
    drop(bytes);
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("f32.gguf");
    std::fs::write(&converted, f32_file).unwrap();
    let loaded = load_path(&converted);
    assert_eq!(loaded.model.weights().layers[0].wq.dtype(), TensorDType::F32);
    loaded
}

/// `ahead convert --to f32` holds the Q4_1 weights exactly, and float32 throughout is what
/// transformers computed: token for token, up to the reference's own near-ties.
#[test]
fn smollm2_converted_to_f32_decodes_token_for_token() {
    let Some(path) = real_model(SMOLLM2) else { return };
    let loaded = converted_to_f32(&path, SMOLLM2);
    let eos = loaded.tokenizer.eos_ids().to_vec();
    for case in smollm2_reference()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["greedy_ids"]);
        let margins = floats(&case["top2_margins"]);
        let (got, _) = greedy(&loaded.model, &ids(&case["prompt_ids"]), want.len(), &eos);
        assert_eq!(
            greedy_divergence(&got, &want, &margins, 0.05),
            None,
            "{name}: {got:?}\nvs {want:?}"
        );
        assert_eq!(got, want, "{name}: not even past a near-tie");
    }
}

/// The Hugging Face folder ahead writes (`ahead convert --to hf`) loads back through the
/// `tokenizer.json` path with the same chat ids as `apply_chat_template` and decodes as
/// transformers does (transformers loads the folder too: checked by hand, same ids).
#[test]
fn smollm2_hf_folder_written_by_ahead_chats_and_decodes_as_transformers() {
    let Some(path) = real_model(SMOLLM2) else { return };
    let gguf = load_path(&path);
    let dir = tempfile::tempdir().unwrap();
    write_hf_folder(&gguf.model, &gguf.tokenizer, dir.path()).unwrap();
    drop(gguf);
    let hf = load_path(dir.path());
    assert_eq!(hf.tokenizer.kind(), "huggingface");
    let eos = hf.tokenizer.eos_ids().to_vec();
    for case in smollm2_reference()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        if case["kind"] == "chat" {
            assert_eq!(
                hf.tokenizer.encode_chat(&messages(case), true).unwrap().ids,
                prompt,
                "{name}"
            );
        }
        if name == "chat_two_turn" || name == "raw_code_fibonacci" {
            let (got, _) = greedy(&hf.model, &prompt, ids(&case["greedy_ids"]).len(), &eos);
            assert_eq!(got, ids(&case["greedy_ids"]), "{name}");
        }
    }
}

const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

fn gemma3_reference() -> Value {
    read_json(&fixture("reference/gemma-3-270m-q4_k_m.json"))
}

/// The Gemma 3 template the user gives with `--chat-template` (the base file has none).
fn gemma3_template() -> ChatTemplate {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/gemma3.jinja");
    ChatTemplate::new(std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn gemma3_prompts_tokenize_as_transformers_with_the_published_template() {
    let Some(path) = real_model(GEMMA3) else { return };
    let bytes = std::fs::read(&path).unwrap();
    let mut tok = Tokenizer::from_gguf(&parse_gguf(&bytes, GEMMA3).unwrap()).unwrap();
    assert!(tok.chat_template().is_none(), "the base file carries no template");
    tok.set_chat_template(Some(gemma3_template()));
    let end_of_turn = tok.piece_to_id("<end_of_turn>").unwrap();
    assert!(tok.eos_ids().contains(&end_of_turn), "{:?}", tok.eos_ids());
    for case in gemma3_reference()["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let got = if case["kind"] == "chat" {
            let chat = tok.encode_chat(&messages(case), true).unwrap();
            assert_eq!(chat.text, case["prompt_text"].as_str().unwrap(), "{name}");
            chat.ids
        } else {
            tok.encode(case["prompt"].as_str().unwrap(), tok.add_bos())
                .unwrap()
        };
        assert_eq!(got, ids(&case["prompt_ids"]), "{name}");
        let text = tok.decode(&ids(&case["greedy_ids"])).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "{name}");
    }
}

/// Greedy ids of `model` (stopping after any of `eos`) against every case of `reference`: equal
/// up to the first step where the reference's top two are within `near_tie`; returns how many
/// agreed before each case's first divergence, in all.
fn agreement(model: &Model, reference: &Value, eos: &[u32], near_tie: f32) -> usize {
    let mut agreed = 0;
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let want = ids(&case["greedy_ids"]);
        let margins = floats(&case["top2_margins"]);
        let (got, _) = greedy(model, &ids(&case["prompt_ids"]), want.len(), eos);
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        if same < want.len() {
            // The step where they part must itself be a near-tie of the reference.
            assert!(
                margins[same] < near_tie,
                "{name}: parts at step {same}, where the reference's margin is {}\n{got:?}\nvs {want:?}",
                margins[same]
            );
        }
        agreed += same;
    }
    agreed
}

/// Tokens of the six Gemma 3 cases (1,048 in all) that agreed before their first divergence,
/// measured on the file as fetched (8-bit activations in the integer kernels).
const GEMMA3_QUANTIZED_AGREED: usize = 948;

#[test]
fn gemma3_q4_k_m_decodes_as_transformers_does() {
    let Some(path) = real_model(GEMMA3) else { return };
    let loaded = load_path(&path);
    let agreed = agreement(&loaded.model, &gemma3_reference(), &[], QUANTIZED_NEAR_TIE);
    eprintln!("gemma3 q4_k_m: {agreed} greedy tokens agree with transformers");
    assert!(
        agreed >= GEMMA3_QUANTIZED_AGREED,
        "{agreed} agree; {GEMMA3_QUANTIZED_AGREED} did"
    );
}

/// In float32 throughout (`ahead convert --to f32` holds the quantized weights exactly) ahead
/// computes what transformers computed: every case token for token up to a near-tie,
/// including 600 tokens past the 512-token window of the sliding layers.
#[test]
fn gemma3_converted_to_f32_decodes_token_for_token() {
    let Some(path) = real_model(GEMMA3) else { return };
    let loaded = converted_to_f32(&path, GEMMA3);
    let cfg = loaded.model.config();
    assert_eq!(
        (cfg.sliding_window, cfg.local_rope_theta),
        (Some(512), Some(10_000.0))
    );
    let total: usize = gemma3_reference()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| ids(&c["greedy_ids"]).len())
        .sum();
    assert_eq!(agreement(&loaded.model, &gemma3_reference(), &[], 0.05), total);
}
