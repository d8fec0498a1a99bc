//! `ahead train draft|medusa|ngram` end to end on small slices of the TinyStories corpus: each
//! writes what it trained and a report, and decoding with it is lossless.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

/// The first `bytes` of the TinyStories corpus (cut at a character), written into `dir`.
fn tinystories_head(dir: &std::path::Path, bytes: usize) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("{FIXTURES}/corpus/tinystories_valid_head.txt")).unwrap();
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, &text[..cut]).unwrap();
    corpus
}

/// `ahead generate` of "Once upon a time" with `model`, `method` and `extra` flags, as JSON.
fn once_upon_a_time(model: &str, max_tokens: &str, method: &str, extra: &[&str]) -> Value {
    let mut argv = vec![
        "generate",
        "--model",
        model,
        "--prompt",
        "Once upon a time",
        "--max-tokens",
        max_tokens,
        "--method",
        method,
        "--json",
    ];
    argv.extend(extra);
    let o = ahead(&argv);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn train_draft_writes_a_draft_that_decodes_losslessly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tinystories_head(tmp.path(), 40_000);
    let out_dir = tmp.path().join("draft");
    let o = ahead(&[
        "train",
        "draft",
        "--target",
        STORIES_BIN,
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--seq-len",
        "64",
        "--batch",
        "8",
        "--generated",
        "8",
        "--eval-prompts",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let t = &report["training"];
    assert!(t["steps"].as_u64().unwrap() > 0);
    assert!(t["held_out_tokens"].as_u64().unwrap() > 0, "{report}");
    let agreement = t["top1_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    assert!(report["measured"]["mean_accepted_length"].as_f64().unwrap() >= 1.0);
    for f in ["draft.bin", "tokenizer.bin", "report.json"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    // The written draft loads and gives the target's exact greedy output.
    let draft = out_dir.join("draft.bin");
    let run = |method| {
        once_upon_a_time(STORIES_BIN, "60", method, &["--draft", draft.to_str().unwrap()])["token_ids"]
            .clone()
    };
    assert_eq!(run("draft"), run("vanilla"));
}

#[test]
fn train_draft_refuses_bad_options_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("c.txt");
    std::fs::write(&corpus, "Once upon a time.").unwrap();
    let o = ahead(&[
        "train",
        "draft",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        tmp.path().join("d").to_str().unwrap(),
        "--dim",
        "30",
        "--heads",
        "4",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("heads"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ahead(&[
        "train",
        "draft",
        "--corpus",
        tmp.path().join("missing.txt").to_str().unwrap(),
        "--out",
        tmp.path().join("d").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("corpus"));
}

#[test]
fn chat_data_refuses_foreign_text_without_its_language() {
    let tmp = tempfile::tempdir().unwrap();
    let german = tmp.path().join("german.txt");
    std::fs::write(&german, "Der Hund schläft.").unwrap();
    let out = tmp.path().join("chat.jsonl");
    let o = ahead(&[
        "train",
        "chat-data",
        "--model",
        STORIES_BIN,
        "--foreign",
        german.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("LANGUAGE:FILE"), "{err}");
    assert!(!out.exists());
}

#[test]
fn train_medusa_writes_heads_in_the_original_layout_that_decode_losslessly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tinystories_head(tmp.path(), 40_000);
    let out_dir = tmp.path().join("heads");
    let o = ahead(&[
        "train",
        "medusa",
        "--base",
        STORIES_BIN,
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--heads",
        "2",
        "--layers",
        "1",
        "--epochs",
        "1",
        "--seq-len",
        "64",
        "--batch",
        "8",
        "--self-distill",
        "16",
        "--eval-prompts",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["training"]["top1"].as_array().unwrap().len(), 2);
    for f in ["config.json", "medusa_lm_head.safetensors", "report.json"] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["medusa_num_heads"], 2);
    let run = |method| {
        once_upon_a_time(
            STORIES_BIN,
            "60",
            method,
            &["--medusa", out_dir.to_str().unwrap()],
        )["token_ids"]
            .clone()
    };
    assert_eq!(run("medusa"), run("vanilla"));
}

#[test]
fn train_medusa_joint_writes_a_base_to_use_with_its_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("m2");
    // No corpus: self-distillation from BOS.
    let o = ahead(&[
        "train",
        "medusa",
        "--base",
        STORIES_BIN,
        "--self-distill",
        "24",
        "--joint",
        "--heads",
        "2",
        "--epochs",
        "1",
        "--seq-len",
        "48",
        "--batch",
        "8",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let agreement = report["training"]["base_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    assert!(report["training"]["base_kl"].as_f64().unwrap() >= 0.0);
    let base = out_dir.join("base.bin");
    assert!(base.is_file() && out_dir.join("tokenizer.bin").is_file());
    let run = |method| {
        once_upon_a_time(
            base.to_str().unwrap(),
            "40",
            method,
            &["--medusa", out_dir.to_str().unwrap()],
        )["token_ids"]
            .clone()
    };
    assert_eq!(run("medusa"), run("vanilla"));
    // A base that is not a llama2.c checkpoint cannot be written back for --joint.
    let o = ahead(&[
        "train",
        "medusa",
        "--base",
        STORIES_GGUF,
        "--self-distill",
        "8",
        "--joint",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("llama2.c"));
}

#[test]
fn train_ngram_writes_a_cache_that_prompt_lookup_uses_losslessly() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tinystories_head(tmp.path(), 60_000);
    let cache = tmp.path().join("cache.bin");
    let o = ahead(&[
        "train",
        "ngram",
        "--model",
        STORIES_BIN,
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--prompts",
        "150",
        "--max-tokens",
        "48",
        "--eval-prompts",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // 150 evenly spaced starts, less the openings too short to keep.
    let openings = report["openings"].as_u64().unwrap();
    assert!((100..=150).contains(&openings), "{report}");
    assert_eq!(report["generated_tokens"].as_u64(), Some(openings * 48));
    assert!(report["contexts"].as_u64().unwrap() > 500, "{report}");
    assert_eq!(
        report["bytes"].as_u64().unwrap(),
        std::fs::metadata(&cache).unwrap().len()
    );
    assert!(report["measured"][0]["mean_accepted_length"].as_f64().unwrap() >= 1.0);
    let run = |method| {
        let v = once_upon_a_time(
            STORIES_BIN,
            "60",
            method,
            &["--num-draft", "4", "--ngram-cache", cache.to_str().unwrap()],
        );
        (
            v["token_ids"].clone(),
            v["stats"]["accepted_tokens"].as_u64().unwrap(),
        )
    };
    let (lookup, accepted) = run("prompt-lookup");
    assert_eq!(lookup, run("vanilla").0);
    assert!(accepted > 0, "the cache never drafted an accepted token");
    // A file that is not a cache is refused with its name.
    let o = ahead(&[
        "generate",
        "--prompt",
        "Hi",
        "--ngram-cache",
        corpus.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("n-gram cache"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Self-distillation for a chat model: `train chat-data` records the model's own answers to
/// instructions made from corpora, through a chat template; `train ngram --data`,
/// `train medusa --data --vocab-subset` and `train draft --data --vocab-subset` learn from
/// them, and decoding with each is lossless.
#[test]
fn chat_data_trains_a_cache_pruned_heads_and_a_draft_that_decode_losslessly() {
    let tmp = tempfile::tempdir().unwrap();
    let prose = tinystories_head(tmp.path(), 60_000);
    let code = format!("{FIXTURES}/corpus/cpython311_stdlib_sample.py.txt");
    let template = tmp.path().join("chat.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    )
    .unwrap();
    // Documents to answer from and German to translate: short, for the toy's 512-token context.
    let documents = tmp.path().join("news.txt");
    let story = |i: usize| {
        format!("Story {i}: the town council met on Monday and agreed to repair the old bridge by the river. Work starts in May, costs two million, and the road stays open to buses while the builders work at night and on weekends.")
    };
    std::fs::write(&documents, (0..12).map(story).collect::<Vec<_>>().join("\n\n")).unwrap();
    let german = tmp.path().join("german.txt");
    std::fs::write(&german, "Der Hund schläft im Garten.\n\nDie Sonne scheint heute.\n\nWir gehen morgen ins Kino.\n\nDas Buch ist sehr spannend.").unwrap();
    let foreign = format!("German:{}", german.display());
    let data = tmp.path().join("chat.jsonl");
    let o = ahead(&[
        "train",
        "chat-data",
        "--model",
        STORIES_BIN,
        "--chat-template",
        template.to_str().unwrap(),
        "--prose",
        prose.to_str().unwrap(),
        "--code",
        &code,
        "--documents",
        documents.to_str().unwrap(),
        "--foreign",
        &foreign,
        "--instructions",
        "24",
        "--max-tokens",
        "48",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Two-turn instructions and self-written questions give two records each.
    let records = summary["records"].as_u64().unwrap();
    assert!(records > 24, "{summary}");
    let lines: Vec<Value> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, records);
    for kind in [
        "math",
        "translate",
        "two-turn",
        "self-question",
        "answer-own-question",
        "translate-to-english",
        "document-question",
        "answer-from-documents",
    ] {
        assert!(lines.iter().any(|l| l["kind"] == kind), "{kind} in the data");
    }
    assert!(lines
        .iter()
        .all(|l| !l["prompt_ids"].as_array().unwrap().is_empty()));

    let cache = tmp.path().join("chat.ngram");
    let o = ahead(&[
        "train",
        "ngram",
        "--model",
        STORIES_BIN,
        "--data",
        data.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--max-tokens",
        "24",
        "--eval-prompts",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(report["contexts"].as_u64().unwrap() > 0, "{report}");

    let heads = tmp.path().join("heads");
    let o = ahead(&[
        "train",
        "medusa",
        "--base",
        STORIES_BIN,
        "--data",
        data.to_str().unwrap(),
        "--vocab-subset",
        "128",
        "--heads",
        "2",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--eval-prompts",
        "2",
        "--out",
        heads.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["training"]["vocab_subset"], 128);
    let coverage = report["training"]["subset_coverage"].as_f64().unwrap();
    assert!(coverage > 0.5 && coverage <= 1.0, "{report}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(heads.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ahead_token_subset"].as_array().unwrap().len(), 128);
    assert_eq!(cfg["ahead_vocab_size"], 512);
    for (flag, path, method) in [
        ("--medusa", &heads, "medusa"),
        ("--ngram-cache", &cache, "prompt-lookup"),
    ] {
        let got = once_upon_a_time(STORIES_BIN, "60", method, &[flag, path.to_str().unwrap()]);
        let want = once_upon_a_time(STORIES_BIN, "60", "vanilla", &[]);
        assert_eq!(got["token_ids"], want["token_ids"], "{method}");
    }
    // A draft for a GGUF target from the same answers: it reads and scores tokens through the
    // target's embedding, drafts over 128 tokens, and is written as GGUF with the target's
    // tokenizer, so it loads alone; drafting with it is lossless.
    let draft_dir = tmp.path().join("draft");
    let o = ahead(&[
        "train",
        "draft",
        "--target",
        STORIES_GGUF,
        "--data",
        data.to_str().unwrap(),
        "--vocab-subset",
        "128",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--eval-prompts",
        "2",
        "--out",
        draft_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["training"]["vocab_subset"], 128, "{report}");
    let agreement = report["training"]["top1_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement), "{report}");
    assert_eq!(
        report["training"]["expected_accepted_length"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    let draft = draft_dir.join("draft.gguf");
    let inspected = ahead(&["inspect", draft.to_str().unwrap()]);
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let text = stdout(&inspected);
    // The classifier size written was chosen among 128 and its most frequent half.
    let chosen = report["chosen_subset"].as_u64().unwrap();
    assert!(chosen == 64 || chosen == 128, "{report}");
    assert_eq!(report["subset_choices"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        report["training"]["by_subset"].as_array().unwrap().len(),
        2,
        "{report}"
    );
    assert!(
        text.contains("1 layers")
            && text.contains("vocab 512")
            && text.contains(&format!("scores {chosen} tokens")),
        "{text}"
    );
    for k in ["3", "auto"] {
        let extra = ["--draft", draft.to_str().unwrap(), "--num-draft", k];
        let extra = if k == "auto" { &extra[..2] } else { &extra[..] };
        let got = once_upon_a_time(STORIES_GGUF, "60", "draft", extra);
        let want = once_upon_a_time(STORIES_GGUF, "60", "vanilla", &[]);
        assert_eq!(got["token_ids"], want["token_ids"], "k {k}");
        assert!(
            got["stats"]["drafted_tokens"].as_u64().unwrap() > 0 || k == "auto",
            "{got}"
        );
    }
    // An EAGLE head from the same answers (any target ahead loads): a folder that --eagle
    // loads, drafting losslessly for the target.
    let train_eagle = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "eagle",
            "--target",
            STORIES_BIN,
            "--data",
            data.to_str().unwrap(),
            "--vocab-subset",
            "128",
            "--epochs",
            "1",
            "--eval-prompts",
            "2",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        ahead(&args)
    };
    let eagle = tmp.path().join("eagle");
    let o = train_eagle(&eagle, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["training"]["vocab_subset"], 128, "{report}");
    assert_eq!(
        report["training"]["expected_accepted_length"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(eagle.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ahead_token_subset"].as_array().unwrap().len(), 128);
    for k in ["3", "auto"] {
        let extra = ["--eagle", eagle.to_str().unwrap(), "--num-draft", k];
        let extra = if k == "auto" { &extra[..2] } else { &extra[..] };
        let got = once_upon_a_time(STORIES_BIN, "60", "eagle", extra);
        let want = once_upon_a_time(STORIES_BIN, "60", "vanilla", &[]);
        assert_eq!(got["token_ids"], want["token_ids"], "k {k}");
        assert_eq!(got["stats"]["method"], "eagle");
    }
    // Fused (EAGLE-3): the first and last layers' outputs, trained on tokens alone.
    let fused = tmp.path().join("eagle3");
    let o = train_eagle(&fused, &["--chain-steps", "2", "--fuse-layers", "0,4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(fused.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["ahead_feature_layers"], serde_json::json!([0, 4]), "{cfg}");
    let got = once_upon_a_time(
        STORIES_BIN,
        "60",
        "eagle",
        &["--eagle", fused.to_str().unwrap(), "--num-draft", "3"],
    );
    let want = once_upon_a_time(STORIES_BIN, "60", "vanilla", &[]);
    assert_eq!(got["token_ids"], want["token_ids"], "fused");
    assert!(got["stats"]["drafted_tokens"].as_u64().unwrap() > 0, "{got}");

    // A target that is not GGUF is refused with the reason.
    let o = ahead(&[
        "train",
        "draft",
        "--target",
        STORIES_BIN,
        "--data",
        data.to_str().unwrap(),
        "--out",
        draft_dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("GGUF"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Data made for another vocabulary is refused.
    std::fs::write(
        &data,
        "{\"kind\":\"x\",\"prompt_ids\":[1],\"answer_ids\":[99999]}\n",
    )
    .unwrap();
    let o = ahead(&[
        "train",
        "ngram",
        "--model",
        STORIES_BIN,
        "--data",
        data.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("99999"));
}
