//! `ahead bench`: every method side by side with the JSON contract and an SVG chart, the
//! verify-cost curve on synthetic shapes, and plain decoding against the bandwidth limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

#[test]
fn bench_reports_every_method_as_json_and_plots_them() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("f.svg");
    let v = json(
        &ahead(&[
            "bench",
            "--json",
            "--plot",
            svg.to_str().unwrap(),
            "--prompts",
            "2",
            "--runs",
            "1",
            "--max-tokens",
            "16",
        ]),
        "bench --json",
    );
    let methods = v["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    for want in ["vanilla", "draft", "medusa", "lookahead", "prompt-lookup", "auto"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for m in methods {
        for field in ["tokens_per_second", "speedup_vs_vanilla", "mean_accepted_length"] {
            assert!(m[field].as_f64().is_some_and(|x| x > 0.0), "{field} of {m}");
        }
        let split = &m["time_split"];
        let total: f64 = ["draft", "verify", "other"]
            .iter()
            .map(|k| split[k].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "time split of {m}");
        for suite in ["stories", "code"] {
            assert!(
                m["by_group"][suite]["speedup_vs_vanilla"].as_f64().is_some(),
                "{suite} of {m}"
            );
        }
    }
    assert_eq!(methods[0]["method"], "vanilla");
    assert!((methods[0]["speedup_vs_vanilla"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    // Every drafting method at a fixed k drafted, and its acceptance per position is a share.
    let fixed = methods.iter().find(|m| m["method"] == "draft (k=4)").unwrap();
    assert!(fixed["drafted_tokens"].as_u64().unwrap() > 0);
    let by_pos = fixed["acceptance_by_position"].as_array().unwrap();
    assert_eq!(by_pos.len(), 4);
    assert!(by_pos.iter().all(|p| (0.0..=1.0).contains(&p.as_f64().unwrap())));
    // The perfect drafter is reported apart from the methods: every draft accepted, each step
    // k drafts and the target's token (16 tokens: steps of 3, 5 and 9 but the last).
    let ceiling = v["ceiling"].as_array().unwrap();
    let lengths: Vec<f64> = ceiling
        .iter()
        .map(|m| m["mean_accepted_length"].as_f64().unwrap())
        .collect();
    assert_eq!(ceiling.len(), 3, "{ceiling:?}");
    for (m, want) in ceiling.iter().zip([16.0 / 6.0, 16.0 / 4.0, 16.0 / 2.0]) {
        assert_eq!(m["drafted_tokens"], m["accepted_tokens"], "{m}");
        assert!(
            (m["mean_accepted_length"].as_f64().unwrap() - want).abs() < 1e-9,
            "{lengths:?}"
        );
        assert!(m["speedup_vs_vanilla"].as_f64().unwrap() > 0.0);
    }
    assert!(!names.iter().any(|n| n.starts_with("perfect")), "{names:?}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for name in names {
        assert!(svg.contains(&name.replace('&', "&amp;")), "{name} in the chart");
    }
}

#[test]
fn bench_batch_measures_sequences_generated_together() {
    let v = json(
        &ahead(&[
            "bench",
            "--json",
            "--batch",
            "2",
            "--prompts",
            "2",
            "--runs",
            "1",
            "--max-tokens",
            "8",
        ]),
        "bench --batch",
    );
    assert_eq!(v["batch"], 2);
    assert_eq!(
        v["ceiling"].as_array().unwrap().len(),
        0,
        "the perfect drafter runs unbatched"
    );
    let methods = v["methods"].as_array().unwrap();
    assert!(methods.len() >= 6);
    for m in methods {
        assert!(m["tokens_per_second"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["mean_accepted_length"].as_f64().unwrap() >= 1.0, "{m}");
    }
}

#[test]
fn bench_cost_gives_the_verify_curve_of_synthetic_shapes() {
    for (model, dtype) in [("tinyllama-1.1b", "q8_0"), ("qwen2.5-0.5b", "f32")] {
        let v = json(
            &ahead(&[
                "bench",
                "cost",
                "--synthetic",
                model,
                "--layers",
                "1",
                "--dtype",
                dtype,
                "--context",
                "8",
                "--runs",
                "1",
                "--json",
            ]),
            "bench cost --json",
        );
        let ks: Vec<u64> = v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert!(p["ms"].as_f64().unwrap() > 0.0, "{p}");
                let k = p["k"].as_u64().unwrap();
                let ceiling = k as f64 / p["ratio"].as_f64().unwrap();
                assert!(
                    (p["ceiling"].as_f64().unwrap() - ceiling).abs() < 1e-6 * ceiling,
                    "{p}"
                );
                k
            })
            .collect();
        let best = v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ceiling"].as_f64().unwrap())
            .fold(0.0, f64::max);
        assert_eq!(v["best_ceiling"].as_f64().unwrap(), best, "{v}");
        assert_eq!(ks, [1, 2, 4, 8, 16, 32], "{model}");
        assert_eq!(v["trees"].as_array().unwrap().len(), 2);
        assert_eq!(v["dtype"], dtype);
    }
    let o = ahead(&["bench", "cost", "--synthetic", "gpt-9", "--dtype", "f32"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("tinyllama-1.1b"));
    // Qwen2.5-0.5B's width (896) is not a whole number of 256-value k-quant blocks.
    let o = ahead(&[
        "bench",
        "cost",
        "--synthetic",
        "qwen2.5-0.5b",
        "--layers",
        "1",
        "--dtype",
        "q4_k",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("q4_k"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bench_decode_sets_plain_decoding_against_the_bandwidth_limit() {
    let v = json(
        &ahead(&["bench", "decode", "--tokens", "32", "--runs", "1", "--json"]),
        "bench decode",
    );
    assert!(v["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(v["bandwidth_bound_tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn tune_writes_a_config_that_generate_follows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.json");
    let v = json(
        &ahead(&[
            "tune",
            "--prompts",
            "1",
            "--max-tokens",
            "12",
            "--runs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]),
        "tune --json",
    );
    let measured = v["measured"].as_array().unwrap();
    assert!(measured.len() >= 10, "every method and setting measured: {v}");
    assert!(measured.iter().any(|m| m["name"] == "vanilla"));
    assert!(
        measured.iter().all(|m| m["name"] != "typical"),
        "lossy settings are never candidates"
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written, v);
    let method = v["method"].as_str().unwrap();
    let g = json(
        &ahead(&[
            "generate",
            "--config",
            out.to_str().unwrap(),
            "--prompt",
            "Once",
            "--max-tokens",
            "8",
            "--json",
        ]),
        "generate --config",
    );
    // Tune tries `auto` only where it pairs prompt lookup with a model drafter (here it would be
    // prompt lookup again, a row already), so the chosen method is the one reported.
    assert_eq!(g["stats"]["method"], method);

    // A config choosing a fixed draft length: generate follows it, and --method wins over it.
    let cfg = dir.path().join("draft.json");
    let mut fixed = v.clone();
    fixed["method"] = "draft".into();
    fixed["num_draft"] = 3.into();
    std::fs::write(&cfg, fixed.to_string()).unwrap();
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        "30",
        "--json",
    ];
    let g = json(
        &ahead(&[&["generate"][..], &args[..]].concat()),
        "generate --config draft",
    );
    assert_eq!(g["stats"]["method"], "draft");
    assert!(g["stats"]["drafted_tokens"].as_u64().unwrap() >= 3);
    let plain = json(
        &ahead(&[&["generate", "--method", "vanilla"][..], &args[..]].concat()),
        "generate --method over --config",
    );
    assert_eq!(plain["stats"]["method"], "vanilla");
    assert_eq!(plain["token_ids"], g["token_ids"], "lossless either way");
    // With the embedded model's n-gram cache, prompt lookup's confidence stop is tuned too,
    // and generate follows the file's (the flag wins over it).
    assert!(
        measured.iter().any(|m| m["name"] == "prompt-lookup C=0.35"),
        "{v}"
    );
    let drafted = |confidence: f64, flag: Option<&str>| {
        let mut lookup = v.clone();
        lookup["method"] = "prompt-lookup".into();
        lookup["num_draft"] = 8.into();
        lookup["lookup_min_confidence"] = confidence.into();
        std::fs::write(&cfg, lookup.to_string()).unwrap();
        let mut argv = vec!["generate"];
        argv.extend(args);
        argv.extend(flag.map(|f| ["--lookup-min-confidence", f]).into_iter().flatten());
        let g = json(&ahead(&argv), "generate --config prompt-lookup");
        assert_eq!(g["token_ids"], plain["token_ids"], "lossless");
        g["stats"]["drafted_tokens"].as_u64().unwrap()
    };
    let (low, high) = (drafted(0.0, None), drafted(0.95, None));
    assert!(high < low, "drafted {high} at 0.95, {low} at 0.0");
    assert_eq!(drafted(0.95, Some("0")), low);
    let o = ahead(&["generate", "--prompt", "x", "--lookup-min-confidence", "1.5"]);
    assert!(!o.status.success());
    // A broken config is a clear error.
    std::fs::write(&cfg, "{\"method\": \"warp\"}").unwrap();
    let o = ahead(&["generate", "--config", cfg.to_str().unwrap(), "--prompt", "x"]);
    assert!(!o.status.success());
}
