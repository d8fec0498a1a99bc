//! The `ahead` binary against the CLI contract: `generate` (text and `--json`), `inspect`,
//! every model format, hub ids from a local cache, and clear errors for bad files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ahead");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
const STORIES_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/stories260K/stories260K.bin");
const STORIES_TOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/stories260K/tok512.bin");
const STORIES_GGUF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/stories260K/stories260K.gguf");
const STORIES_HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/stories260K-hf");
const BABY_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/babyllama-tok105/model5000.bin");

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs `ahead` with `args`, never touching the network or the user's hub cache: the hub
/// cache is an empty temporary folder and `HF_HUB_OFFLINE` is set.
fn ahead(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    ahead_env(args, &[("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_HUB_OFFLINE", "1")])
}

fn ahead_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd.path()).env_remove("HF_HOME").env_remove("HF_HUB_CACHE");
    cmd.env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("running {BIN}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{what}: {}", stderr(o));
    stdout(o)
}

/// Asserts a clean failure (non-zero exit, no panic) whose stderr mentions every one of
/// `mentions` (case-insensitive); returns stderr.
fn fails(o: &Output, mentions: &[&str], what: &str) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "{what}: should fail\nstdout: {}\nstderr: {err}", stdout(o));
    assert!(o.status.code().is_some(), "{what}: killed by a signal\nstderr: {err}");
    assert!(!err.contains("panicked"), "{what}: panicked\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{what}: panicked\n{err}");
    let lower = err.to_lowercase();
    for m in mentions {
        assert!(lower.contains(&m.to_lowercase()), "{what}: stderr should mention {m:?}\nstderr: {err}");
    }
    err
}

/// Parses stdout as exactly one JSON object on one line.
fn json(o: &Output, what: &str) -> Value {
    let out = ok(o, what);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: --json prints one JSON object on one line, got:\n{out}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}\n{out}"));
    assert!(v.is_object(), "{what}: {v}");
    v
}

struct Golden {
    ids: Vec<u64>,
    text: String,
}

fn golden() -> Golden {
    let path = format!("{FIXTURES}/golden/stories260K_greedy_bos_256.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Golden {
        ids: v["generated_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect(),
        text: v["text"].as_str().unwrap().to_string(),
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_u64().unwrap()).collect()
}

const GOLDEN_ARGS: [&str; 7] = ["--prompt-ids", "1", "--max-tokens", "256", "--ignore-eos", "--temperature", "0"];

/// `generate --model SRC [extra] <golden args> --json`, checked against the golden output.
fn assert_golden_cli(model: Option<&str>, extra: &[&str], env: &[(&str, &str)], what: &str) {
    let mut args = vec!["generate"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    args.extend(extra);
    args.extend(GOLDEN_ARGS);
    args.push("--json");
    let o = if env.is_empty() { ahead(&args) } else { ahead_env(&args, env) };
    let v = json(&o, what);
    let g = golden();
    assert_eq!(ids(&v["token_ids"]), g.ids, "{what}: golden ids");
    assert_eq!(v["text"].as_str().unwrap(), g.text, "{what}: golden text");
    assert_eq!(ids(&v["prompt_token_ids"]), [1], "{what}");
    assert_eq!(v["finish_reason"], "length", "{what}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn lcg_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect()
}

fn prefix_of(path: &str, n: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[..n].to_vec()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// generate

#[test]
fn generate_prints_text() {
    let o = ahead(&["generate", "--prompt", "Once upon a time", "--max-tokens", "20"]);
    let out = ok(&o, "generate");
    assert!(out.trim().len() > 10, "generated text expected, got {out:?}");
    assert!(!out.trim_start().starts_with('{'), "plain text, not JSON: {out}");
    // The streamed text is exactly what --json reports.
    let v = json(&ahead(&["generate", "--prompt", "Once upon a time", "--max-tokens", "20", "--json"]), "generate --json");
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
    let v = json(&ahead(&["generate", "--prompt", "Once upon a time", "--max-tokens", "20", "--json"]), "generate --json");
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["finish_reason", "prompt_token_ids", "stats", "text", "token_ids"]);
    let mut stat_keys: Vec<&str> = v["stats"].as_object().unwrap().keys().map(String::as_str).collect();
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
    let v = json(&ahead(&["generate", "--prompt", "Once upon a time", "--max-tokens", "20", "--json"]), "generate --json");
    assert!(v["text"].is_string());
    assert!(matches!(v["finish_reason"].as_str(), Some("stop" | "length")), "{}", v["finish_reason"]);
    let prompt = ids(&v["prompt_token_ids"]);
    assert_eq!(prompt.first(), Some(&1), "a text prompt starts with BOS");
    assert!(prompt.len() > 1);
    let st = &v["stats"];
    assert!(st["method"].is_string());
    for k in ["target_forwards", "generated_tokens", "drafted_tokens", "accepted_tokens"] {
        assert!(st[k].is_u64(), "stats.{k} is a non-negative integer: {}", st[k]);
    }
    for k in ["mean_accepted_length", "tokens_per_second", "elapsed_ms"] {
        assert!(st[k].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "stats.{k}: {}", st[k]);
    }
    assert_eq!(st["generated_tokens"].as_u64().unwrap() as usize, v["token_ids"].as_array().unwrap().len());
}

#[test]
fn json_golden_and_vanilla_stats() {
    let o = ahead(&["generate", "--prompt-ids", "1", "--max-tokens", "256", "--ignore-eos", "--temperature", "0", "--json"]);
    let v = json(&o, "golden");
    let g = golden();
    assert_eq!(ids(&v["token_ids"]), g.ids);
    assert_eq!(v["text"].as_str().unwrap(), g.text);
    assert_eq!(ids(&v["prompt_token_ids"]), [1]);
    assert_eq!(v["finish_reason"], "length");
    let st = &v["stats"];
    assert_eq!(st["method"], "vanilla");
    assert_eq!(st["generated_tokens"].as_u64(), Some(256));
    assert_eq!(st["generated_tokens"].as_u64().unwrap() as usize, v["token_ids"].as_array().unwrap().len());
    assert_eq!(st["drafted_tokens"].as_u64(), Some(0));
    assert_eq!(st["accepted_tokens"].as_u64(), Some(0));
    assert_eq!(st["target_forwards"].as_u64(), Some(256));
    assert!((st["mean_accepted_length"].as_f64().unwrap() - 1.0).abs() < 1e-9, "{}", st["mean_accepted_length"]);
    assert!(st["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(st["elapsed_ms"].as_f64().unwrap() > 0.0);

    // --method vanilla and the comma-separated id form give the same.
    let v2 = json(&ahead(&["generate", "--prompt-ids", "1,403,407", "--max-tokens", "50", "--ignore-eos", "--method", "vanilla", "--json"]), "ids");
    assert_eq!(ids(&v2["prompt_token_ids"]), [1, 403, 407]);
    assert_eq!(ids(&v2["token_ids"]), g.ids[2..52]);
    assert_eq!(v2["stats"]["method"], "vanilla");
}

#[test]
fn max_tokens_exact() {
    for n in [1usize, 2, 7] {
        let v = json(&ahead(&["generate", "--prompt-ids", "1", "--max-tokens", &n.to_string(), "--ignore-eos", "--json"]), "max-tokens");
        assert_eq!(ids(&v["token_ids"]), golden().ids[..n]);
        assert_eq!(v["finish_reason"], "length");
    }
}

#[test]
fn stop_strings() {
    let v = json(&ahead(&["generate", "--prompt-ids", "1", "--max-tokens", "256", "--stop", "Lily. She", "--json"]), "--stop");
    assert_eq!(v["text"], "Once upon a time, there was a little girl named ");
    assert_eq!(v["finish_reason"], "stop");
    let got = ids(&v["token_ids"]);
    assert_eq!(got, golden().ids[..got.len()], "a prefix of the greedy ids");

    // Repeatable: the earliest wins.
    let v = json(
        &ahead(&["generate", "--prompt-ids", "1", "--max-tokens", "256", "--stop", "too high", "--stop", "red ball", "--json"]),
        "--stop x2",
    );
    assert_eq!(v["finish_reason"], "stop");
    let text = v["text"].as_str().unwrap();
    assert!(text.ends_with("she saw a big, "), "{text:?}");

    // Plain output stops there too.
    let out = ok(&ahead(&["generate", "--prompt-ids", "1", "--max-tokens", "256", "--stop", "Lily. She"]), "--stop text");
    assert_eq!(out.trim_end_matches('\n'), "Once upon a time, there was a little girl named ");

    // A stop string that never appears.
    let v = json(&ahead(&["generate", "--prompt-ids", "1", "--max-tokens", "40", "--stop", "zebra", "--json"]), "--stop absent");
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(ids(&v["token_ids"]), golden().ids[..40]);
}

#[test]
fn sampling_flags() {
    let args = |seed: &str| {
        ahead(&[
            "generate", "--prompt", "Once upon a time", "--max-tokens", "60", "--temperature", "0.8", "--top-k", "40", "--top-p", "0.9",
            "--min-p", "0.05", "--repetition-penalty", "1.1", "--seed", seed, "--json",
        ])
    };
    let a = json(&args("7"), "sampled");
    let b = json(&args("7"), "sampled again");
    assert_eq!(a["token_ids"], b["token_ids"], "same seed, same tokens");
    let others: Vec<Value> = ["8", "9", "10"].iter().map(|s| json(&args(s), "other seed")["token_ids"].clone()).collect();
    assert!(others.iter().any(|o| *o != a["token_ids"]), "different seeds should differ");
}

#[test]
fn bad_generate_arguments_fail_cleanly() {
    fails(&ahead(&["generate", "--prompt-ids", "1,9999", "--max-tokens", "5"]), &["9999"], "id outside the vocabulary");
    fails(&ahead(&["generate", "--prompt", "x", "--temperature=-1"]), &["temperature"], "negative temperature");
    fails(&ahead(&["generate", "--prompt", "x", "--temperature", "1", "--top-p", "0"]), &["top_p"], "top_p 0");
    let long: Vec<String> = std::iter::repeat_n("1".to_string(), 600).collect();
    fails(&ahead(&["generate", "--prompt-ids", &long.join(","), "--max-tokens", "5"]), &["context"], "prompt longer than the context");
}

#[test]
fn method_draft_errors_clearly() {
    fails(&ahead(&["generate", "--prompt", "Once", "--method", "draft"]), &["draft"], "--method draft");
}

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
    assert_golden_cli(Some(s(&bin)), &["--tokenizer", STORIES_TOK], &[], "lone .bin + --tokenizer");
    // Without --tokenizer, the error says how to give one.
    fails(&ahead(&["generate", "--model", s(&bin), "--max-tokens", "3"]), &["tokenizer", "stories260K.bin"], "lone .bin");
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
    let v = json(&ahead(&["generate", "--model", BABY_BIN, "--prompt-ids", "1", "--max-tokens", "200", "--ignore-eos", "--json"]), "babyllama");
    let path = format!("{FIXTURES}/golden/babyllama_tok105_greedy_bos_200.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["token_ids"], g["generated_ids"]);
    assert_eq!(v["text"], g["text"]);
}

// ---------------------------------------------------------------------------------------------
// inspect

fn check_inspect_json(v: &Value, format: &str, what: &str) {
    assert_eq!(v["architecture"], "llama", "{what}");
    assert_eq!(v["vocab_size"], 512, "{what}");
    assert_eq!(v["n_layers"], 5, "{what}");
    assert_eq!(v["n_kv_heads"], 4, "{what}");
    assert_eq!(v["n_heads"], 8, "{what}");
    assert_eq!(v["dim"], 64, "{what}");
    assert_eq!(v["hidden_dim"], 172, "{what}");
    assert_eq!(v["head_dim"], 8, "{what}");
    assert_eq!(v["context_length"], 512, "{what}");
    assert_eq!(v["format"], format, "{what}");
    assert_eq!(v["tokenizer"]["vocab_size"], 512, "{what}");
    assert_eq!(v["tokenizer"]["bos_id"], 1, "{what}");
    assert_eq!(v["parameters"], 260_032, "{what}: stories260K has 260,032 parameters");
}

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

#[test]
fn inspect_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    fails(&ahead(&["inspect", s(&missing)]), &["nope.gguf"], "inspect missing");
    let pt = dir.path().join("x.pt");
    std::fs::write(&pt, [0x80, 0x02, b'c', b'x', 0, 0, 0, 0]).unwrap();
    fails(&ahead(&["inspect", s(&pt)]), &["x.pt", "pickle"], "inspect pickle");
}

// ---------------------------------------------------------------------------------------------
// errors: each names the file and the reason, exits non-zero, never panics

#[test]
fn error_nonexistent_path() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["missing.bin", "missing.gguf", "missing-folder"] {
        let p = dir.path().join(name);
        let err = fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &[name], name);
        let lower = err.to_lowercase();
        assert!(lower.contains("no such") || lower.contains("not found") || lower.contains("does not exist"), "{name}: reason\n{err}");
    }
}

#[test]
fn error_pickle_files() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("x.pt");
    let mut pickle = vec![0x80, 0x02, b'}', b'q', 0x00, b'('];
    pickle.extend(lcg_bytes(200, 1));
    std::fs::write(&pt, &pickle).unwrap();
    fails(&ahead(&["generate", "--model", s(&pt), "--max-tokens", "3"]), &["x.pt", "pickle"], "x.pt");

    // A zip-format torch.save file named like a llama2.c checkpoint, with a tokenizer beside it.
    let zip_dir = tempfile::tempdir().unwrap();
    let zipped = zip_dir.path().join("pytorch_model.bin");
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend(lcg_bytes(4000, 2));
    std::fs::write(&zipped, &zip).unwrap();
    std::fs::copy(STORIES_TOK, zip_dir.path().join("tok512.bin")).unwrap();
    fails(&ahead(&["generate", "--model", s(&zipped), "--max-tokens", "3"]), &["pytorch_model.bin", "pickle"], "zip pytorch_model.bin");

    // A pickle with a .bin name (protocol 4).
    let p4 = dir.path().join("weights.bin");
    let mut bytes = vec![0x80, 0x04, 0x95];
    bytes.extend(lcg_bytes(3000, 3));
    std::fs::write(&p4, &bytes).unwrap();
    fails(&ahead(&["generate", "--model", s(&p4), "--tokenizer", STORIES_TOK, "--max-tokens", "3"]), &["weights.bin", "pickle"], "pickle .bin");
}

#[test]
fn error_truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    for n in [1000usize, 4, 24, 100_000, 1_185_000] {
        let p = dir.path().join(format!("cut{n}.gguf"));
        std::fs::write(&p, prefix_of(STORIES_GGUF, n)).unwrap();
        let name = format!("cut{n}.gguf");
        fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &[&name], &name);
        fails(&ahead(&["inspect", s(&p)]), &[&name], &name);
    }
}

#[test]
fn error_truncated_llama2c_bin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(STORIES_TOK, dir.path().join("tok512.bin")).unwrap();
    for n in [5000usize, 10, 27, 28, 1_056_000] {
        let name = format!("cut{n}.bin");
        let p = dir.path().join(&name);
        std::fs::write(&p, prefix_of(STORIES_BIN, n)).unwrap();
        fails(&ahead(&["generate", "--model", s(&p), "--tokenizer", STORIES_TOK, "--max-tokens", "3"]), &[&name], &name);
    }
    // With the tokenizer found beside it (only tok512.bin besides the checkpoints... several
    // cut*.bin files are not tok*.bin, so the tokenizer is still unambiguous).
    let p = dir.path().join("cut5000.bin");
    fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &["cut5000.bin"], "cut5000.bin, tokenizer beside");
}

#[test]
fn error_garbage_bin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(STORIES_TOK, dir.path().join("tok512.bin")).unwrap();
    for (i, len) in [0usize, 3, 100, 50_000, 1_056_540].into_iter().enumerate() {
        let name = format!("garbage{i}.bin");
        let p = dir.path().join(&name);
        std::fs::write(&p, lcg_bytes(len, 40 + i as u64)).unwrap();
        fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &[&name], &name);
    }
    // A header that looks plausible but promises more data than the file holds.
    let mut header = Vec::new();
    for v in [64i32, 172, 5, 8, 4, 512, 512] {
        header.extend(v.to_le_bytes());
    }
    header.extend(lcg_bytes(1000, 9));
    let p = dir.path().join("short.bin");
    std::fs::write(&p, header).unwrap();
    fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &["short.bin"], "short.bin");
    // A header with absurd sizes.
    let mut header = Vec::new();
    for v in [i32::MAX, i32::MAX, i32::MAX, 1, 1, i32::MAX, i32::MAX] {
        header.extend(v.to_le_bytes());
    }
    let p = dir.path().join("huge.bin");
    std::fs::write(&p, header).unwrap();
    fails(&ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]), &["huge.bin"], "huge.bin");
}

#[test]
fn error_hf_folder_truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    copy_dir(Path::new(STORIES_HF), &hf);
    let st = hf.join("model.safetensors");
    let full = std::fs::read(&st).unwrap();
    for n in [full.len() - 1000, 5000, 100, 7] {
        std::fs::write(&st, &full[..n]).unwrap();
        fails(&ahead(&["generate", "--model", s(&hf), "--max-tokens", "3"]), &["model.safetensors"], &format!("safetensors cut at {n}"));
        fails(&ahead(&["inspect", s(&hf)]), &["model.safetensors"], &format!("inspect safetensors cut at {n}"));
    }
}

#[test]
fn error_hf_folder_with_pickle_weights_only() {
    let dir = tempfile::tempdir().unwrap();
    // A Hugging Face folder whose weights are only a pickle.
    let hf = dir.path().join("hf-pickle");
    copy_dir(Path::new(STORIES_HF), &hf);
    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(lcg_bytes(2000, 5));
    std::fs::write(hf.join("pytorch_model.bin"), &zip).unwrap();
    fails(&ahead(&["generate", "--model", s(&hf), "--max-tokens", "3"]), &["hf-pickle", "pickle", "safetensors"], "hf folder, pickle weights");
}

#[test]
fn error_folder_with_only_pytorch_model_bin() {
    let dir = tempfile::tempdir().unwrap();
    let only = dir.path().join("only-pickle");
    std::fs::create_dir(&only).unwrap();
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(lcg_bytes(2000, 6));
    std::fs::write(only.join("pytorch_model.bin"), &zip).unwrap();
    fails(&ahead(&["generate", "--model", s(&only), "--max-tokens", "3"]), &["only-pickle", "pickle"], "folder with only pytorch_model.bin");
}

#[test]
fn error_lone_safetensors_file() {
    let st = format!("{STORIES_HF}/model.safetensors");
    fails(&ahead(&["generate", "--model", &st, "--max-tokens", "3"]), &["model.safetensors", "folder"], "lone safetensors");
}

// ---------------------------------------------------------------------------------------------
// hub ids from a local cache

/// Builds a hub cache laid out like huggingface_hub's: `models--testorg--stories260K/refs/main`
/// holds the commit; `snapshots/<commit>/` holds the files, config.json and model.safetensors
/// as relative symlinks into `blobs/`.
fn hub_cache(root: &Path) -> PathBuf {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.join("models--testorg--stories260K");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for e in std::fs::read_dir(STORIES_HF).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name == "config.json" || name == "model.safetensors" {
            let blob = format!("{:064x}", 0xb10b_0000_u64 + name.len() as u64);
            std::fs::copy(e.path(), repo.join("blobs").join(&blob)).unwrap();
            std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(&name)).unwrap();
        } else {
            std::fs::copy(e.path(), snap.join(&name)).unwrap();
        }
    }
    root.to_path_buf()
}

#[test]
fn hub_id_from_local_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = hub_cache(&dir.path().join("hub"));
    let env = [("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1")];
    assert_golden_cli(Some("testorg/stories260K"), &[], &env, "hub id via HF_HUB_CACHE");
    // HF_HOME/hub is the cache when HF_HUB_CACHE is unset.
    let env = [("HF_HOME", s(dir.path())), ("HF_HUB_OFFLINE", "1")];
    assert_golden_cli(Some("testorg/stories260K"), &[], &env, "hub id via HF_HOME");
    // inspect resolves hub ids too.
    let o = ahead_env(&["inspect", "testorg/stories260K", "--json"], &[("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1")]);
    let v: Value = serde_json::from_str(&ok(&o, "inspect hub id")).unwrap();
    check_inspect_json(&v, "huggingface", "inspect hub id");
}

#[test]
fn hub_id_missing_offline_fails_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let cache = hub_cache(&dir.path().join("hub"));
    let start = Instant::now();
    let o = ahead_env(
        &["generate", "--model", "testorg/not-there", "--max-tokens", "3"],
        &[("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1")],
    );
    let elapsed = start.elapsed();
    fails(&o, &["testorg/not-there", "HF_HUB_OFFLINE"], "missing hub id offline");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // The same with an empty cache folder that does not exist at all.
    let o = ahead_env(
        &["inspect", "testorg/not-there"],
        &[("HF_HUB_CACHE", s(&dir.path().join("no-such-cache"))), ("HF_HUB_OFFLINE", "1")],
    );
    fails(&o, &["testorg/not-there"], "missing hub id, missing cache");
}
