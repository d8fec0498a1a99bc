//! `ahead bench --suite`: Spec-Bench's question format through a chat template, every method
//! compared with vanilla on every question, on the toy model with a given template and on the
//! real SmolLM2 file with the vendored questions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// A template for a model that has none: plain text turns.
const TRANSCRIPT: &str =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

const QUESTIONS: &str = r#"{"question_id": 81, "category": "writing", "turns": ["Tell a story about a cat.", "Now make it shorter."]}
{"question_id": "t1", "category": "translation", "turns": ["Translate German-English: Der Hund schläft."]}

{"question_id": 7, "category": "qa", "turns": ["Who was Lily's friend?"]}
{"question_id": 8, "category": "qa", "turns": ["Where did Tom go?"]}
"#;

fn files(dir: &Path, questions: &str) -> (PathBuf, PathBuf) {
    let (suite, template) = (dir.join("q.jsonl"), dir.join("chat.jinja"));
    std::fs::write(&suite, questions).unwrap();
    std::fs::write(&template, TRANSCRIPT).unwrap();
    (suite, template)
}

#[test]
fn suite_reports_each_group_and_compares_every_method_with_vanilla() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, template) = files(dir.path(), QUESTIONS);
    let svg = dir.path().join("s.svg");
    let base = [
        "bench",
        "--suite",
        suite.to_str().unwrap(),
        "--chat-template",
        template.to_str().unwrap(),
        "--max-tokens",
        "8",
        "--runs",
        "1",
        "--json",
    ];
    let with = |extra: &[&str]| -> Output {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        ahead(&args)
    };
    let v = json(&with(&["--plot", svg.to_str().unwrap()]), "bench --suite");
    assert!(v["suite"].as_str().unwrap().ends_with("q.jsonl"), "{v}");
    // Groups in Spec-Bench's order; MT-bench's question gives one prompt per turn.
    assert_eq!(
        v["groups"],
        serde_json::json!(["multi_turn", "translation", "qa"])
    );
    assert_eq!(
        v["prompts"],
        serde_json::json!({"multi_turn": 2, "translation": 1, "qa": 2})
    );
    assert_eq!(v["max_tokens"], 8);
    let methods = v["methods"].as_array().unwrap();
    assert!(methods.len() >= 6, "{v}");
    for m in methods {
        assert_eq!(m["identical_to_vanilla"], true, "{m}");
        assert_eq!(m["mismatches"], serde_json::json!([]), "{m}");
        for group in ["multi_turn", "translation", "qa"] {
            let g = &m["by_group"][group];
            for field in ["speedup_vs_vanilla", "mean_accepted_length", "tokens_per_second"] {
                assert!(
                    g[field].as_f64().is_some_and(|x| x > 0.0),
                    "{group} {field} of {m}"
                );
            }
        }
    }
    assert_eq!(v["ceiling"].as_array().unwrap().len(), 3);
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    let svg = std::fs::read_to_string(&svg).unwrap();
    for group in ["multi_turn", "translation", "qa"] {
        assert!(svg.contains(group), "{group} in the chart");
    }

    // A limit keeps that many questions per group; --methods picks rows (vanilla stays the
    // baseline), --no-ceiling drops the perfect drafter.
    let v = json(
        &with(&[
            "--limit-per-category",
            "1",
            "--methods",
            "prompt-lookup,auto",
            "--no-ceiling",
        ]),
        "--limit-per-category",
    );
    assert_eq!(
        v["prompts"],
        serde_json::json!({"multi_turn": 2, "translation": 1, "qa": 1})
    );
    let picked: Vec<&str> = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(picked, ["vanilla", "prompt-lookup", "auto"]);
    assert_eq!(v["ceiling"].as_array().unwrap().len(), 0);
    let o = with(&["--methods", "warp"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for name in &names {
        assert!(err.contains(name), "{name} offered in {err}");
    }

    // Sampling: the methods promise vanilla's distribution, not its draws, so nothing is
    // compared and the perfect drafter (plain decoding's greedy output) is not run.
    let v = json(&with(&["--temperature", "0.7", "--seed", "3"]), "--temperature");
    assert!((v["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6, "{v}");
    assert_eq!(v["seed"], 3);
    assert!(v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["identical_to_vanilla"].is_null()));
    assert_eq!(v["ceiling"].as_array().unwrap().len(), 0);
}

#[test]
fn a_bad_question_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{\"question_id\": 1, \"category\": \"poetry\", \"turns\": [\"x\"]}\n",
            &["line 1", "\"poetry\"", "writing"][..],
        ),
        (
            "{\"question_id\": 1, \"category\": \"qa\", \"turns\": [\"x\"]}\n{\"question_id\": 2\n",
            &["line 2", "question_id, category, turns"][..],
        ),
        (
            "{\"question_id\": 5, \"category\": \"qa\", \"turns\": []}\n",
            &["question 5 has no turns"][..],
        ),
        ("\n\n", &["holds no questions"][..]),
    ];
    for (text, wants) in cases {
        let (suite, template) = files(dir.path(), text);
        let o = ahead(&[
            "bench",
            "--suite",
            suite.to_str().unwrap(),
            "--chat-template",
            template.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{text}");
        let err = String::from_utf8_lossy(&o.stderr);
        for want in wants {
            assert!(err.contains(want), "{want:?} in {err}");
        }
    }
    let (suite, template) = files(dir.path(), QUESTIONS);
    let o = ahead(&[
        "bench",
        "--suite",
        suite.to_str().unwrap(),
        "--chat-template",
        template.to_str().unwrap(),
        "--limit-per-category",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 1"));
    // The toy model has no template of its own.
    let o = ahead(&["bench", "--suite", suite.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("chat template"));
    // A limit means nothing without a suite.
    let o = ahead(&["bench", "--limit-per-category", "2"]);
    assert!(!o.status.success());
}

#[test]
fn spec_bench_on_the_real_model_is_identical_to_vanilla_for_every_method() {
    let Some(model) = ahead_testutil::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let suite = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/spec-bench/question-dev.jsonl"
    );
    // With the vendored drafters, so that Medusa and the chat cache are among the methods.
    let drafters = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../drafters/smollm2-135m-instruct"
    );
    let (cache, heads) = (format!("{drafters}/chat.ngram"), format!("{drafters}/medusa"));
    let v = json(
        &ahead(&[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--suite",
            suite,
            "--limit-per-category",
            "1",
            "--max-tokens",
            "16",
            "--runs",
            "1",
            "--no-ceiling",
            "--ngram-cache",
            &cache,
            "--medusa",
            &heads,
            "--json",
        ]),
        "bench --suite on SmolLM2",
    );
    assert_eq!(
        v["groups"],
        serde_json::json!([
            "multi_turn",
            "translation",
            "summarization",
            "qa",
            "math_reasoning",
            "rag"
        ])
    );
    assert_eq!(v["prompts"]["multi_turn"], 2, "both turns");
    let methods = v["methods"].as_array().unwrap();
    for m in methods {
        assert_eq!(m["identical_to_vanilla"], true, "{m}");
    }
    for want in ["prompt-lookup", "medusa", "medusa (6 nodes)", "lookahead", "auto"] {
        assert!(methods.iter().any(|m| m["method"] == want), "{want} ran");
    }
}

#[test]
fn tune_on_a_suite_writes_a_config_from_chat_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let (suite, template) = files(dir.path(), QUESTIONS);
    let out = dir.path().join("tuned.json");
    let v = json(
        &ahead(&[
            "tune",
            "--suite",
            suite.to_str().unwrap(),
            "--chat-template",
            template.to_str().unwrap(),
            "--limit-per-category",
            "1",
            "--max-tokens",
            "8",
            "--runs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]),
        "tune --suite",
    );
    assert!(v["measured"].as_array().unwrap().len() >= 10, "{v}");
    assert!(out.is_file());
}
