//! Losslessness on a real chat model, SmolLM2-135M-Instruct Q4_1 (fetched by
//! `scripts/fetch-models.sh`; skipped with one line without it, a failure under
//! `AHEAD_REQUIRE_MODELS=1`): every method's greedy output is token-identical to plain decoding
//! on chat prompts, and sampled output follows the target's distribution (chi-square, fixed
//! seeds, alpha = 1e-4). Its vendored drafters (`drafters/smollm2-135m-instruct`: the chat
//! n-gram cache, the vocabulary-pruned Medusa heads and the trained draft model over 4,096
//! tokens) are loaded, as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::OnceLock;

use ahead_engine::Method;
use ahead_model::tokenizer::ChatMessage;
use ahead_testutil::{chi_square, chi_square_critical as critical, real_model};

const DRAFTERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../drafters/smollm2-135m-instruct"
);

/// SmolLM2 with a Q8_0 copy of itself as its draft model and its vendored cache, Medusa heads
/// and EAGLE head; `None` when the file is missing.
fn engine() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = real_model("SmolLM2-135M-Instruct.Q4_1.gguf")?;
        let e = Engine::builder()
            .model(path.to_str().unwrap())
            .ngram_cache(format!("{DRAFTERS}/chat.ngram"))
            .medusa(format!("{DRAFTERS}/medusa"))
            .eagle(format!("{DRAFTERS}/eagle"))
            .build()
            .unwrap();
        let draft = quantized_copy(e.model());
        Some(e.with_draft(draft))
    })
    .as_ref()
}

/// SmolLM2 with its vendored trained draft (`draft/draft.gguf`: its own tables, one trained
/// layer, a classifier over 4,096 tokens); `None` when the model file is missing.
fn engine_with_trained_draft() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let path = real_model("SmolLM2-135M-Instruct.Q4_1.gguf")?;
        let e = Engine::builder()
            .model(path.to_str().unwrap())
            .draft(format!("{DRAFTERS}/draft/draft.gguf"))
            .build()
            .unwrap();
        Some(e)
    })
    .as_ref()
}

fn chat(e: &Engine, system: Option<&str>, user: &str) -> Prompt {
    let mut messages: Vec<ChatMessage> = system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .collect();
    messages.push(ChatMessage::new("user", user));
    Prompt::Ids(e.chat_prompt(&messages, true).unwrap().ids)
}

/// Stops at the end of the turn, as a chat does.
fn until_eos(p: GenerateParams) -> GenerateParams {
    GenerateParams {
        ignore_eos: false,
        ..p
    }
}

#[test]
fn every_method_is_token_identical_to_plain_decoding_on_chats() {
    let Some(e) = engine() else { return };
    let prompts = [
        chat(
            e,
            None,
            "Write a Python function that reverses a list, then explain it.",
        ),
        chat(
            e,
            Some("You are a concise assistant."),
            "Summarize: The cat sat on the mat. The cat was happy. The mat was red.",
        ),
        chat(
            e,
            None,
            "Repeat after me: the quick brown fox jumps over the lazy dog, the quick brown fox.",
        ),
    ];
    for prompt in &prompts {
        let want = gen(
            e,
            prompt,
            &until_eos(method_params(
                Method::Vanilla,
                None,
                SamplingParams::greedy(),
                0,
                64,
            )),
        );
        for (method, k) in [
            (Method::Draft, Some(4)),
            (Method::Draft, None),
            (Method::PromptLookup, None),
            (Method::PromptLookup, Some(8)),
            (Method::Lookahead, None),
            (Method::Medusa, None),
            (Method::Medusa, Some(6)),
            (Method::Eagle, Some(4)),
            (Method::Eagle, None),
            (Method::Recycling, None),
            (Method::Recycling, Some(8)),
            (Method::Suffix, None),
            (Method::Suffix, Some(8)),
            (Method::Hybrid, None),
            (Method::Hybrid, Some(8)),
            (Method::Auto, None),
        ] {
            let got = gen(
                e,
                prompt,
                &until_eos(method_params(method, k, SamplingParams::greedy(), 0, 64)),
            );
            assert_eq!(got.token_ids, want.token_ids, "{method:?} k={k:?}");
            assert_eq!(got.finish_reason, want.finish_reason, "{method:?} k={k:?}");
            let learned = matches!(
                method,
                Method::Draft | Method::Medusa | Method::Eagle | Method::Recycling
            );
            if learned && k.is_some() {
                assert!(
                    got.stats.accepted_tokens > 0,
                    "{method:?}'s drafts were never accepted: {:?}",
                    got.stats
                );
            }
        }
    }
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let Some(e) = engine() else { return };
    // A short repetitive text (each sample prefills it), so that prompt lookup drafts from
    // the first token on.
    let prompt = Prompt::from("I like apples, I like pears, I like plums, I like");
    let prompt_ids = e.prompt_ids(&prompt).unwrap();
    // One warper setting per method: each sample prefills a 135M model (the toy model's tests
    // cross every method with every warper).
    let cases = [
        (
            Method::Draft,
            SamplingParams {
                temperature: 0.8,
                top_k: 20,
                ..SamplingParams::greedy()
            },
        ),
        (
            Method::PromptLookup,
            SamplingParams {
                temperature: 1.0,
                top_p: 0.9,
                min_p: 0.02,
                ..SamplingParams::greedy()
            },
        ),
        (
            Method::Medusa,
            SamplingParams {
                temperature: 0.7,
                top_k: 40,
                ..SamplingParams::greedy()
            },
        ),
        (
            Method::Eagle,
            SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                ..SamplingParams::greedy()
            },
        ),
        (
            Method::Recycling,
            SamplingParams {
                temperature: 0.6,
                min_p: 0.05,
                ..SamplingParams::greedy()
            },
        ),
        (
            Method::Suffix,
            SamplingParams {
                temperature: 1.0,
                top_k: 30,
                ..SamplingParams::greedy()
            },
        ),
        // Prompt lookup's free offers beside the draft model: under the controller, whose
        // choice between them is the point.
        (
            Method::Auto,
            SamplingParams {
                temperature: 0.8,
                top_p: 0.9,
                ..SamplingParams::greedy()
            },
        ),
    ];
    let n = 500;
    let vocab = e.model().config().vocab_size;
    for (method, sampling) in cases {
        let p1 = target_dist(e, &prompt_ids, &sampling);
        let mut first = vec![0u64; vocab];
        let (mut drafted, mut free) = (0, 0);
        for seed in 0..n {
            let params = match method {
                Method::Auto => GenerateParams {
                    reproducible: false,
                    ..method_params(method, None, sampling.clone(), seed, 2)
                },
                _ => method_params(method, Some(3), sampling.clone(), seed, 2),
            };
            let out = gen(e, &prompt, &params);
            first[out.token_ids[0] as usize] += 1;
            drafted += out.stats.drafted_tokens;
            free += out.stats.free_offer_steps;
        }
        assert!(
            drafted > 0,
            "{method:?} never drafted: the test would not test speculation"
        );
        assert!(
            method != Method::Auto || free > 0,
            "auto never verified lookup's offers"
        );
        let (s, dof) = chi_square(&first, &p1);
        assert!(
            dof >= 2,
            "{method:?}: the distribution is too peaked to test ({dof} dof)"
        );
        assert!(
            s < critical(dof),
            "{method:?} {sampling:?}: first token chi2 {s}, dof {dof}"
        );
    }
}

/// The vendored draft drafts only its 4,096 tokens (q zero elsewhere): greedy output stays
/// plain decoding's, and sampled output the target's distribution.
#[test]
fn the_trained_pruned_draft_is_lossless() {
    let Some(e) = engine_with_trained_draft() else {
        return;
    };
    assert_eq!(e.model().config().vocab_size, 49_152);
    for user in [
        "Write a Python function that reverses a list, then explain it.",
        "Summarize: The cat sat on the mat. The cat was happy. The mat was red.",
    ] {
        let prompt = chat(e, None, user);
        let greedy = |method, k| until_eos(method_params(method, k, SamplingParams::greedy(), 0, 64));
        let want = gen(e, &prompt, &greedy(Method::Vanilla, None));
        for k in [Some(4), None] {
            let got = gen(e, &prompt, &greedy(Method::Draft, k));
            assert_eq!(got.token_ids, want.token_ids, "k={k:?}");
            if k.is_some() {
                assert!(got.stats.accepted_tokens > 0, "{:?}", got.stats);
            }
        }
    }
    let prompt = Prompt::from("I like apples, I like pears, I like plums, I like");
    let prompt_ids = e.prompt_ids(&prompt).unwrap();
    let sampling = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        ..SamplingParams::greedy()
    };
    let p1 = target_dist(e, &prompt_ids, &sampling);
    let mut first = vec![0u64; e.model().config().vocab_size];
    let mut drafted = 0;
    for seed in 0..500 {
        let out = gen(
            e,
            &prompt,
            &method_params(Method::Draft, Some(3), sampling.clone(), seed, 2),
        );
        first[out.token_ids[0] as usize] += 1;
        drafted += out.stats.drafted_tokens;
    }
    assert!(drafted > 0);
    let (s, dof) = chi_square(&first, &p1);
    assert!(dof >= 2 && s < critical(dof), "first token chi2 {s}, dof {dof}");
}

/// Structured output on a byte-level BPE vocabulary: the answer is JSON of the schema, and
/// every method gives plain decoding's constrained tokens.
#[test]
fn a_json_schema_constrains_the_chat_answer_for_every_method() {
    let Some(e) = engine() else { return };
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "country": {"type": "string", "maxLength": 30},
            "population_millions": {"type": "integer", "minimum": 0, "maximum": 100}
        },
        "required": ["city", "country", "population_millions"],
        "additionalProperties": false
    });
    let prompt = chat(e, None, "Give the capital of France as JSON with its population.");
    let params = |method, k| GenerateParams {
        grammar: Some(ahead_engine::Grammar::JsonSchema(schema.clone())),
        ignore_eos: false,
        ..method_params(method, k, SamplingParams::greedy(), 0, 80)
    };
    let want = gen(e, &prompt, &params(Method::Vanilla, None));
    let v: serde_json::Value =
        serde_json::from_str(&want.text).unwrap_or_else(|err| panic!("{err}: {:?}", want.text));
    assert!(
        v["city"].is_string() && v["population_millions"].is_number(),
        "{v}"
    );
    for (method, k) in [
        (Method::PromptLookup, None),
        (Method::Eagle, Some(4)),
        (Method::Recycling, Some(8)),
        (Method::Draft, Some(4)),
    ] {
        let got = gen(e, &prompt, &params(method, k));
        assert_eq!(got.token_ids, want.token_ids, "{method:?}");
    }
}
