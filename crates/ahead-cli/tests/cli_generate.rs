//! `ahead generate`: text, the `--json` contract, limits, stop strings, sampling flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// generate

#[test]
fn generate_prints_text() {
    let o = ahead(&["generate", "--prompt", "Once upon a time", "--max-tokens", "20"]);
    let out = ok(&o, "generate");
    assert!(out.trim().len() > 10, "generated text expected, got {out:?}");
    assert!(!out.trim_start().starts_with('{'), "plain text, not JSON: {out}");
    // The streamed text is exactly what --json reports.
    let v = json(
        &ahead(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "20",
            "--json",
        ]),
        "generate --json",
    );
    assert_eq!(out.trim_end_matches('\n'), v["text"].as_str().unwrap());
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 20);
}

#[test]
fn generate_without_prompt_starts_from_bos() {
    let v = json(&ahead(&["generate", "--max-tokens", "30", "--json"]), "no prompt");
    assert_eq!(ids(&v["prompt_token_ids"]), [1]);
    assert_eq!(ids(&v["token_ids"]), golden().ids[..30]);
}

#[test]
fn json_has_exactly_the_contract_fields() {
    let v = json(
        &ahead(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "20",
            "--json",
        ]),
        "generate --json",
    );
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["finish_reason", "prompt_token_ids", "stats", "text", "token_ids"]
    );
    let mut stat_keys: Vec<&str> = v["stats"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    stat_keys.sort_unstable();
    assert_eq!(
        stat_keys,
        [
            "accepted_tokens",
            "drafted_tokens",
            "elapsed_ms",
            "generated_tokens",
            "mean_accepted_length",
            "method",
            "target_forwards",
            "tokens_per_second",
        ],
        "stats fields of the CLI contract"
    );
}

#[test]
fn json_values_follow_the_contract() {
    let v = json(
        &ahead(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "20",
            "--json",
        ]),
        "generate --json",
    );
    assert!(v["text"].is_string());
    assert!(
        matches!(v["finish_reason"].as_str(), Some("stop" | "length")),
        "{}",
        v["finish_reason"]
    );
    let prompt = ids(&v["prompt_token_ids"]);
    assert_eq!(prompt.first(), Some(&1), "a text prompt starts with BOS");
    assert!(prompt.len() > 1);
    let st = &v["stats"];
    assert!(st["method"].is_string());
    for k in [
        "target_forwards",
        "generated_tokens",
        "drafted_tokens",
        "accepted_tokens",
    ] {
        assert!(st[k].is_u64(), "stats.{k} is a non-negative integer: {}", st[k]);
    }
    for k in ["mean_accepted_length", "tokens_per_second", "elapsed_ms"] {
        assert!(
            st[k].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0),
            "stats.{k}: {}",
            st[k]
        );
    }
    assert_eq!(
        st["generated_tokens"].as_u64().unwrap() as usize,
        v["token_ids"].as_array().unwrap().len()
    );
}

#[test]
fn json_golden_and_vanilla_stats() {
    let o = ahead(&[
        "generate",
        "--prompt-ids",
        "1",
        "--max-tokens",
        "256",
        "--ignore-eos",
        "--temperature",
        "0",
        "--method",
        "vanilla",
        "--json",
    ]);
    let v = json(&o, "golden");
    let g = golden();
    assert_eq!(ids(&v["token_ids"]), g.ids);
    assert_eq!(v["text"].as_str().unwrap(), g.text);
    assert_eq!(ids(&v["prompt_token_ids"]), [1]);
    assert_eq!(v["finish_reason"], "length");
    let st = &v["stats"];
    assert_eq!(st["method"], "vanilla");
    assert_eq!(st["generated_tokens"].as_u64(), Some(256));
    assert_eq!(
        st["generated_tokens"].as_u64().unwrap() as usize,
        v["token_ids"].as_array().unwrap().len()
    );
    assert_eq!(st["drafted_tokens"].as_u64(), Some(0));
    assert_eq!(st["accepted_tokens"].as_u64(), Some(0));
    assert_eq!(st["target_forwards"].as_u64(), Some(256));
    assert!(
        (st["mean_accepted_length"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{}",
        st["mean_accepted_length"]
    );
    assert!(st["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(st["elapsed_ms"].as_f64().unwrap() > 0.0);

    // --method vanilla and the comma-separated id form give the same.
    let v2 = json(
        &ahead(&[
            "generate",
            "--prompt-ids",
            "1,403,407",
            "--max-tokens",
            "50",
            "--ignore-eos",
            "--method",
            "vanilla",
            "--json",
        ]),
        "ids",
    );
    assert_eq!(ids(&v2["prompt_token_ids"]), [1, 403, 407]);
    assert_eq!(ids(&v2["token_ids"]), g.ids[2..52]);
    assert_eq!(v2["stats"]["method"], "vanilla");
}

#[test]
fn max_tokens_exact() {
    for n in [1usize, 2, 7] {
        let v = json(
            &ahead(&[
                "generate",
                "--prompt-ids",
                "1",
                "--max-tokens",
                &n.to_string(),
                "--ignore-eos",
                "--json",
            ]),
            "max-tokens",
        );
        assert_eq!(ids(&v["token_ids"]), golden().ids[..n]);
        assert_eq!(v["finish_reason"], "length");
    }
}

#[test]
fn stop_strings() {
    let v = json(
        &ahead(&[
            "generate",
            "--prompt-ids",
            "1",
            "--max-tokens",
            "256",
            "--stop",
            "Lily. She",
            "--json",
        ]),
        "--stop",
    );
    assert_eq!(v["text"], "Once upon a time, there was a little girl named ");
    assert_eq!(v["finish_reason"], "stop");
    let got = ids(&v["token_ids"]);
    assert_eq!(got, golden().ids[..got.len()], "a prefix of the greedy ids");

    // Repeatable: the earliest wins.
    let v = json(
        &ahead(&[
            "generate",
            "--prompt-ids",
            "1",
            "--max-tokens",
            "256",
            "--stop",
            "too high",
            "--stop",
            "red ball",
            "--json",
        ]),
        "--stop x2",
    );
    assert_eq!(v["finish_reason"], "stop");
    let text = v["text"].as_str().unwrap();
    assert!(text.ends_with("she saw a big, "), "{text:?}");

    // Plain output stops there too.
    let out = ok(
        &ahead(&[
            "generate",
            "--prompt-ids",
            "1",
            "--max-tokens",
            "256",
            "--stop",
            "Lily. She",
        ]),
        "--stop text",
    );
    assert_eq!(
        out.trim_end_matches('\n'),
        "Once upon a time, there was a little girl named "
    );

    // A stop string that never appears.
    let v = json(
        &ahead(&[
            "generate",
            "--prompt-ids",
            "1",
            "--max-tokens",
            "40",
            "--stop",
            "zebra",
            "--json",
        ]),
        "--stop absent",
    );
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(ids(&v["token_ids"]), golden().ids[..40]);
}

#[test]
fn sampling_flags() {
    let args = |seed: &str| {
        ahead(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "60",
            "--temperature",
            "0.8",
            "--top-k",
            "40",
            "--top-p",
            "0.9",
            "--min-p",
            "0.05",
            "--repetition-penalty",
            "1.1",
            "--seed",
            seed,
            "--json",
        ])
    };
    let a = json(&args("7"), "sampled");
    let b = json(&args("7"), "sampled again");
    assert_eq!(a["token_ids"], b["token_ids"], "same seed, same tokens");
    let others: Vec<Value> = ["8", "9", "10"]
        .iter()
        .map(|s| json(&args(s), "other seed")["token_ids"].clone())
        .collect();
    assert!(
        others.iter().any(|o| *o != a["token_ids"]),
        "different seeds should differ"
    );
}

#[test]
fn bad_generate_arguments_fail_cleanly() {
    fails(
        &ahead(&["generate", "--prompt-ids", "1,9999", "--max-tokens", "5"]),
        &["9999"],
        "id outside the vocabulary",
    );
    fails(
        &ahead(&["generate", "--prompt", "x", "--temperature=-1"]),
        &["temperature"],
        "negative temperature",
    );
    fails(
        &ahead(&["generate", "--prompt", "x", "--temperature", "1", "--top-p", "0"]),
        &["top_p"],
        "top_p 0",
    );
    let long: Vec<String> = std::iter::repeat_n("1".to_string(), 600).collect();
    fails(
        &ahead(&["generate", "--prompt-ids", &long.join(","), "--max-tokens", "5"]),
        &["context"],
        "prompt longer than the context",
    );
}

#[test]
fn method_draft_errors_clearly_without_a_draft() {
    // The embedded default model has a vendored draft; another model needs --draft.
    fails(
        &ahead(&[
            "generate", "--model", BABY_BIN, "--prompt", "Once", "--method", "draft",
        ]),
        &["draft"],
        "--method draft",
    );
}

#[test]
fn the_default_model_drafts_with_its_vendored_draft() {
    let run = |method: &str| {
        json(
            &ahead(&[
                "generate",
                "--prompt",
                "Once upon a time",
                "--max-tokens",
                "80",
                "--method",
                method,
                "--num-draft",
                "3",
                "--json",
            ]),
            method,
        )
    };
    let (draft, vanilla) = (run("draft"), run("vanilla"));
    assert_eq!(draft["token_ids"], vanilla["token_ids"]);
    assert_eq!(draft["stats"]["method"], "draft");
    assert!(draft["stats"]["accepted_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn medusa_uses_the_vendored_heads_and_refuses_pickles() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--prompt",
            "Once upon a time",
            "--max-tokens",
            "80",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&ahead(&args), "medusa")
    };
    let vanilla = run(&["--method", "vanilla"]);
    let medusa = run(&["--method", "medusa"]);
    assert_eq!(medusa["token_ids"], vanilla["token_ids"]);
    assert_eq!(medusa["stats"]["method"], "medusa");
    assert!(
        medusa["stats"]["accepted_tokens"].as_u64().unwrap() > 0
            || medusa["stats"]["drafted_tokens"].as_u64().unwrap() == 0
    );
    let tree = run(&[
        "--method",
        "medusa",
        "--medusa-choices",
        "[[0],[0,0],[1]]",
        "--num-draft",
        "3",
    ]);
    assert_eq!(tree["token_ids"], vanilla["token_ids"]);
    assert!(tree["stats"]["drafted_tokens"].as_u64().unwrap() > 0);
    // Typical acceptance is allowed, and says it is lossy when sampling.
    let o = ahead(&[
        "generate",
        "--prompt",
        "Once",
        "--max-tokens",
        "20",
        "--method",
        "medusa",
        "--medusa-acceptance",
        "typical",
        "--temperature",
        "0.8",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lossy"));
    // Bad trees and pickled heads are clear errors.
    fails(
        &ahead(&["generate", "--method", "medusa", "--medusa-choices", "[[0,1]]"]),
        &["medusa_choices"],
        "tree without its prefix",
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("medusa_lm_head.pt"), b"\x80\x02}q\x00.").unwrap();
    fails(
        &ahead(&[
            "generate",
            "--method",
            "medusa",
            "--medusa",
            tmp.path().to_str().unwrap(),
        ]),
        &["pickle"],
        "pickled heads",
    );
}

#[test]
fn lookahead_is_lossless_and_reports_pool_hits() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--prompt",
            "The cat sat on the mat. The cat sat on the mat. The cat",
            "--max-tokens",
            "80",
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&ahead(&args), "lookahead")
    };
    let vanilla = run(&["--method", "vanilla"]);
    assert!(
        vanilla["stats"].get("pool_hits").is_none(),
        "pool_hits is lookahead's only"
    );
    let la = run(&[
        "--method",
        "lookahead",
        "--lookahead-window",
        "15",
        "--lookahead-ngram",
        "5",
        "--lookahead-guesses",
        "15",
        "--num-draft",
        "16",
    ]);
    assert_eq!(la["token_ids"], vanilla["token_ids"]);
    assert_eq!(la["stats"]["method"], "lookahead");
    assert!(la["stats"]["pool_hits"].as_u64().unwrap() > 0);
    fails(
        &ahead(&[
            "generate",
            "--method",
            "lookahead",
            "--lookahead-ngram",
            "1",
            "--lookahead-window",
            "2",
            "--lookahead-guesses",
            "2",
        ]),
        &["lookahead"],
        "n-gram size 1",
    );
}
