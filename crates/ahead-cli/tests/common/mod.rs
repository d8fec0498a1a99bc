//! Helpers shared by the CLI tests: run the real binary, read its JSON, fixtures.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub use ahead_testutil::paths::*;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Output};
pub use std::time::{Duration, Instant};

pub use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ahead");

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs `ahead` with `args`, never touching the network or the user's hub cache: the hub
/// cache is an empty temporary folder and `HF_HUB_OFFLINE` is set.
pub fn ahead(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    ahead_env(
        args,
        &[
            ("HF_HUB_CACHE", cache.path().to_str().unwrap()),
            ("HF_HUB_OFFLINE", "1"),
        ],
    )
}

pub fn ahead_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd.path())
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE");
    cmd.env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("running {BIN}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output, what: &str) -> String {
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
pub fn fails(o: &Output, mentions: &[&str], what: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: should fail\nstdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(
        o.status.code().is_some(),
        "{what}: killed by a signal\nstderr: {err}"
    );
    assert!(!err.contains("panicked"), "{what}: panicked\n{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{what}: panicked\n{err}");
    let lower = err.to_lowercase();
    for m in mentions {
        assert!(
            lower.contains(&m.to_lowercase()),
            "{what}: stderr should mention {m:?}\nstderr: {err}"
        );
    }
    err
}

/// Parses stdout as exactly one JSON object on one line.
pub fn json(o: &Output, what: &str) -> Value {
    let out = ok(o, what);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: --json prints one JSON object on one line, got:\n{out}"
    );
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{what}: {e}\n{out}"));
    assert!(v.is_object(), "{what}: {v}");
    v
}

pub struct Golden {
    pub ids: Vec<u64>,
    pub text: String,
}

pub fn golden() -> Golden {
    let path = format!("{FIXTURES}/golden/stories260K_greedy_bos_256.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Golden {
        ids: v["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect(),
        text: v["text"].as_str().unwrap().to_string(),
    }
}

pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

pub const GOLDEN_ARGS: [&str; 7] = [
    "--prompt-ids",
    "1",
    "--max-tokens",
    "256",
    "--ignore-eos",
    "--temperature",
    "0",
];

/// `generate --model SRC [extra] <golden args> --json`, checked against the golden output.
pub fn assert_golden_cli(model: Option<&str>, extra: &[&str], env: &[(&str, &str)], what: &str) {
    let mut args = vec!["generate"];
    if let Some(m) = model {
        args.extend(["--model", m]);
    }
    args.extend(extra);
    args.extend(GOLDEN_ARGS);
    args.push("--json");
    let o = if env.is_empty() {
        ahead(&args)
    } else {
        ahead_env(&args, env)
    };
    let v = json(&o, what);
    let g = golden();
    assert_eq!(ids(&v["token_ids"]), g.ids, "{what}: golden ids");
    assert_eq!(v["text"].as_str().unwrap(), g.text, "{what}: golden text");
    assert_eq!(ids(&v["prompt_token_ids"]), [1], "{what}");
    assert_eq!(v["finish_reason"], "length", "{what}");
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

pub fn lcg_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect()
}

pub fn prefix_of(path: &str, n: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[..n].to_vec()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn check_inspect_json(v: &Value, format: &str, what: &str) {
    // The GGUF's metadata declares llama.context_length 2048; the other files say 512.
    let context = if format == "gguf" { 2048 } else { 512 };
    assert_eq!(v["architecture"], "llama", "{what}");
    assert_eq!(v["vocab_size"], 512, "{what}");
    assert_eq!(v["n_layers"], 5, "{what}");
    assert_eq!(v["n_kv_heads"], 4, "{what}");
    assert_eq!(v["n_heads"], 8, "{what}");
    assert_eq!(v["dim"], 64, "{what}");
    assert_eq!(v["hidden_dim"], 172, "{what}");
    assert_eq!(v["head_dim"], 8, "{what}");
    assert_eq!(v["context_length"], context, "{what}");
    assert_eq!(v["format"], format, "{what}");
    assert_eq!(v["tokenizer"]["vocab_size"], 512, "{what}");
    assert_eq!(v["tokenizer"]["bos_id"], 1, "{what}");
    // stories260K has 260,032 parameters with the classifier tied to the embedding; the GGUF
    // stores the classifier as its own `output.weight` (512 x 64 more).
    let (params, tied) = if format == "gguf" {
        (260_032 + 512 * 64, false)
    } else {
        (260_032, true)
    };
    assert_eq!(v["parameters"], params, "{what}");
    assert_eq!(v["tied_classifier"], tied, "{what}");
}
