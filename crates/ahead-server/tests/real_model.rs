//! The server on the real SmolLM2-135M-Instruct (skipped unless `scripts/fetch-models.sh`
//! fetched it; CI does): chat is tokenized as transformers' `apply_chat_template`, a client's
//! `<|im_end|>` stays text, control-token ids are valid prompts, and the chat answer equals
//! plain generation on the same ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use ahead_engine::{Engine, GenerateParams, Method, Prompt};
use ahead_server::ServerConfig;
use common::{post, start_with};
use serde_json::{json, Value};

fn reference() -> Value {
    let path = ahead_testutil::fixture("reference/smollm2-135m-instruct-q4_1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_chat_completions_feed_the_templates_ids() {
    let Some(path) = ahead_testutil::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let engine = Arc::new(Engine::builder().model(path.to_str().unwrap()).build().unwrap());
    let s = start_with(
        engine.clone(),
        ServerConfig {
            model_id: "smollm2".into(),
            ..ServerConfig::default()
        },
    );
    let chat = format!("{}/v1/chat/completions", s.url);
    for case in reference()["cases"].as_array().unwrap() {
        if case["kind"] != "chat" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let want_prompt = ids(&case["prompt_ids"]);
        let body = json!({"messages": case["messages"], "max_tokens": 24, "temperature": 0,
                          "ahead": {"method": "vanilla"}});
        let (code, got) = post(&chat, &body);
        assert_eq!(code, 200, "{name}: {got}");
        assert_eq!(got["usage"]["prompt_tokens"], want_prompt.len(), "{name}");
        // The answer is plain generation from exactly the template's ids.
        let params = GenerateParams {
            max_tokens: 24,
            method: Method::Vanilla,
            ..GenerateParams::default()
        };
        let plain = engine
            .generate_one(&Prompt::Ids(want_prompt.clone()), &params, &mut |_| {})
            .unwrap();
        assert_eq!(
            got["choices"][0]["message"]["content"],
            plain.text.as_str(),
            "{name}"
        );
        assert!(!plain.text.contains("<|im_"), "{name}: {}", plain.text);
    }

    // Token-id prompts with control ids (<|im_start|> 1, <|im_end|> 2) are valid.
    let case = &reference()["cases"][0];
    let completions = format!("{}/v1/completions", s.url);
    let (code, got) = post(
        &completions,
        &json!({"prompt": case["prompt_ids"], "max_tokens": 4, "temperature": 0}),
    );
    assert_eq!(code, 200, "{got}");
}
