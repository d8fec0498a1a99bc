//! Every model format through `ahead generate --model` and `ahead inspect`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// model formats

#[test]
fn model_llama2c_bin_with_tokenizer_beside() {
    assert_golden_cli(Some(STORIES_BIN), &[], &[], "stories260K.bin");
}

#[test]
fn model_llama2c_bin_with_explicit_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("stories260K.bin");
    std::fs::copy(STORIES_BIN, &bin).unwrap();
    assert_golden_cli(
        Some(s(&bin)),
        &["--tokenizer", STORIES_TOK],
        &[],
        "lone .bin + --tokenizer",
    );
    // Without --tokenizer, the error says how to give one.
    fails(
        &ahead(&["generate", "--model", s(&bin), "--max-tokens", "3"]),
        &["tokenizer", "stories260K.bin"],
        "lone .bin",
    );
}

#[test]
fn model_llama2c_bin_with_tokenizer_bin_beside() {
    // `tokenizer.bin` beside the checkpoint is found too.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("model.bin");
    std::fs::copy(STORIES_BIN, &bin).unwrap();
    std::fs::copy(STORIES_TOK, dir.path().join("tokenizer.bin")).unwrap();
    assert_golden_cli(Some(s(&bin)), &[], &[], "model.bin + tokenizer.bin");
}

#[test]
fn model_gguf() {
    assert_golden_cli(Some(STORIES_GGUF), &[], &[], "stories260K.gguf");
}

#[test]
fn model_hf_folder() {
    assert_golden_cli(Some(STORIES_HF), &[], &[], "stories260K-hf");
}

#[test]
fn model_babyllama_text() {
    let v = json(
        &ahead(&[
            "generate",
            "--model",
            BABY_BIN,
            "--prompt-ids",
            "1",
            "--max-tokens",
            "200",
            "--ignore-eos",
            "--json",
        ]),
        "babyllama",
    );
    let path = format!("{FIXTURES}/golden/babyllama_tok105_greedy_bos_200.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["token_ids"], g["generated_ids"]);
    assert_eq!(v["text"], g["text"]);
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("stories260K.bin");
    std::fs::copy(STORIES_BIN, &lone).unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["default"], "llama2c"),
        (vec![STORIES_BIN], "llama2c"),
        (vec![s(&lone), "--tokenizer", STORIES_TOK], "llama2c"),
        (vec![STORIES_GGUF], "gguf"),
        (vec![STORIES_HF], "huggingface"),
    ];
    for (src, format) in cases {
        let what = format!("inspect {src:?}");
        let mut args = vec!["inspect"];
        args.extend(&src);
        let text = ok(&ahead(&args), &what);
        assert!(text.contains("llama"), "{what}: {text}");
        assert!(text.contains("512"), "{what}: {text}");
        args.push("--json");
        let o = ahead(&args);
        let out = ok(&o, &what);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}\n{out}"));
        check_inspect_json(&v, format, &what);
    }
}

/// Configs saved by transformers 5 carry RoPE in `rope_parameters`; inspect shows what was read.
#[test]
fn inspect_reports_rope_as_transformers_5_configures_it() {
    for (dir, theta, scaling) in [
        ("qwen2-theta1e6", 1e6, "none"),
        (
            "llama3-rope",
            5e5,
            "llama3 x8 (low 1, high 4, original context 64)",
        ),
        (
            "llama-yarn",
            1e4,
            "yarn x4 (original context 64, attention 1.1386, beta 32/1)",
        ),
    ] {
        let src = format!("{FIXTURES}/tf5/{dir}");
        let v: Value = serde_json::from_str(&ok(&ahead(&["inspect", &src, "--json"]), dir)).unwrap();
        assert_eq!(v["rope_theta"].as_f64(), Some(theta), "{dir}: {v}");
        assert_eq!(v["rope_scaling"], scaling, "{dir}");
    }
}

#[test]
fn inspect_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    fails(
        &ahead(&["inspect", s(&missing)]),
        &["nope.gguf"],
        "inspect missing",
    );
    let pt = dir.path().join("x.pt");
    std::fs::write(&pt, [0x80, 0x02, b'c', b'x', 0, 0, 0, 0]).unwrap();
    fails(
        &ahead(&["inspect", s(&pt)]),
        &["x.pt", "pickle"],
        "inspect pickle",
    );
}

#[test]
fn convert_writes_gguf_types_and_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q8.gguf");
    let o = ahead(&["convert", STORIES_GGUF, "--to", "q8_0", "--out", s(&out)]);
    ok(&o, "convert --to q8_0");
    let text = ok(&ahead(&["inspect", s(&out)]), "inspect the converted file");
    assert!(text.contains("q8_0"), "{text}");
    // The same greedy text as the source, up to q8_0's rounding: at least it decodes.
    ok(
        &ahead(&["generate", "--model", s(&out), "--max-tokens", "8"]),
        "generate",
    );
    fails(
        &ahead(&["convert", STORIES_GGUF, "--to", "f32", "--out", s(&out)]),
        &["exists", "--force"],
        "existing --out",
    );
    // stories260K's sentencepiece tokenizer has no tokenizer.json form here.
    fails(
        &ahead(&[
            "convert",
            STORIES_GGUF,
            "--to",
            "hf",
            "--out",
            s(&dir.path().join("hf")),
        ]),
        &["tokenizer.json", "sentencepiece"],
        "convert --to hf",
    );
}
