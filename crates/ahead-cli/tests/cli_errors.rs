//! Bad model files and sources: a clear error naming the file and the reason, never a panic;
//! hub ids resolved from a local cache without the network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// errors: each names the file and the reason, exits non-zero, never panics

#[test]
fn error_nonexistent_path() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["missing.bin", "missing.gguf", "missing-folder"] {
        let p = dir.path().join(name);
        let err = fails(
            &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
            &[name],
            name,
        );
        let lower = err.to_lowercase();
        assert!(
            lower.contains("no such") || lower.contains("not found") || lower.contains("does not exist"),
            "{name}: reason\n{err}"
        );
        assert!(
            lower.matches("no such").count() <= 1,
            "{name}: the reason is repeated\n{err}"
        );
    }
}

#[test]
fn error_pickle_files() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("x.pt");
    let mut pickle = vec![0x80, 0x02, b'}', b'q', 0x00, b'('];
    pickle.extend(lcg_bytes(200, 1));
    std::fs::write(&pt, &pickle).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&pt), "--max-tokens", "3"]),
        &["x.pt", "pickle"],
        "x.pt",
    );

    // A zip-format torch.save file named like a llama2.c checkpoint, with a tokenizer beside it.
    let zip_dir = tempfile::tempdir().unwrap();
    let zipped = zip_dir.path().join("pytorch_model.bin");
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.extend(lcg_bytes(4000, 2));
    std::fs::write(&zipped, &zip).unwrap();
    std::fs::copy(STORIES_TOK, zip_dir.path().join("tok512.bin")).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&zipped), "--max-tokens", "3"]),
        &["pytorch_model.bin", "pickle"],
        "zip pytorch_model.bin",
    );

    // A pickle with a .bin name (protocol 4).
    let p4 = dir.path().join("weights.bin");
    let mut bytes = vec![0x80, 0x04, 0x95];
    bytes.extend(lcg_bytes(3000, 3));
    std::fs::write(&p4, &bytes).unwrap();
    fails(
        &ahead(&[
            "generate",
            "--model",
            s(&p4),
            "--tokenizer",
            STORIES_TOK,
            "--max-tokens",
            "3",
        ]),
        &["weights.bin", "pickle"],
        "pickle .bin",
    );
}

#[test]
fn error_truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    for n in [1000usize, 4, 24, 100_000, 1_185_000] {
        let p = dir.path().join(format!("cut{n}.gguf"));
        std::fs::write(&p, prefix_of(STORIES_GGUF, n)).unwrap();
        let name = format!("cut{n}.gguf");
        fails(
            &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
            &[&name],
            &name,
        );
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
        fails(
            &ahead(&[
                "generate",
                "--model",
                s(&p),
                "--tokenizer",
                STORIES_TOK,
                "--max-tokens",
                "3",
            ]),
            &[&name],
            &name,
        );
    }
    // With the tokenizer found beside it (only tok512.bin besides the checkpoints... several
    // cut*.bin files are not tok*.bin, so the tokenizer is still unambiguous).
    let p = dir.path().join("cut5000.bin");
    fails(
        &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
        &["cut5000.bin"],
        "cut5000.bin, tokenizer beside",
    );
}

#[test]
fn error_garbage_bin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(STORIES_TOK, dir.path().join("tok512.bin")).unwrap();
    for (i, len) in [0usize, 3, 100, 50_000, 1_056_540].into_iter().enumerate() {
        let name = format!("garbage{i}.bin");
        let p = dir.path().join(&name);
        std::fs::write(&p, lcg_bytes(len, 40 + i as u64)).unwrap();
        fails(
            &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
            &[&name],
            &name,
        );
    }
    // A header that looks plausible but promises more data than the file holds.
    let mut header = Vec::new();
    for v in [64i32, 172, 5, 8, 4, 512, 512] {
        header.extend(v.to_le_bytes());
    }
    header.extend(lcg_bytes(1000, 9));
    let p = dir.path().join("short.bin");
    std::fs::write(&p, header).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
        &["short.bin"],
        "short.bin",
    );
    // A header with absurd sizes.
    let mut header = Vec::new();
    for v in [i32::MAX, i32::MAX, i32::MAX, 1, 1, i32::MAX, i32::MAX] {
        header.extend(v.to_le_bytes());
    }
    let p = dir.path().join("huge.bin");
    std::fs::write(&p, header).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&p), "--max-tokens", "3"]),
        &["huge.bin"],
        "huge.bin",
    );
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
        fails(
            &ahead(&["generate", "--model", s(&hf), "--max-tokens", "3"]),
            &["model.safetensors"],
            &format!("safetensors cut at {n}"),
        );
        fails(
            &ahead(&["inspect", s(&hf)]),
            &["model.safetensors"],
            &format!("inspect safetensors cut at {n}"),
        );
    }
}

#[test]
fn error_hf_folder_with_pickle_weights_only() {
    let dir = tempfile::tempdir().unwrap();
    // A Hugging Face folder whose weights are only a pickle.
    let hf = dir.path().join("hf-torch");
    copy_dir(Path::new(STORIES_HF), &hf);
    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(lcg_bytes(2000, 5));
    std::fs::write(hf.join("pytorch_model.bin"), &zip).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&hf), "--max-tokens", "3"]),
        &["hf-torch", "pickle", "safetensors"],
        "hf folder, pickle weights",
    );
}

#[test]
fn error_folder_with_only_pytorch_model_bin() {
    let dir = tempfile::tempdir().unwrap();
    let only = dir.path().join("only-torch");
    std::fs::create_dir(&only).unwrap();
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend(lcg_bytes(2000, 6));
    std::fs::write(only.join("pytorch_model.bin"), &zip).unwrap();
    fails(
        &ahead(&["generate", "--model", s(&only), "--max-tokens", "3"]),
        &["only-torch", "pytorch_model.bin", "pickle"],
        "folder with only pytorch_model.bin",
    );
}

#[test]
fn error_lone_safetensors_file() {
    let st = format!("{STORIES_HF}/model.safetensors");
    fails(
        &ahead(&["generate", "--model", &st, "--max-tokens", "3"]),
        &["model.safetensors", "folder"],
        "lone safetensors",
    );
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
    let o = ahead_env(
        &["inspect", "testorg/stories260K", "--json"],
        &[("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1")],
    );
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
    fails(
        &o,
        &["testorg/not-there", "HF_HUB_OFFLINE"],
        "missing hub id offline",
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    // The same with an empty cache folder that does not exist at all.
    let o = ahead_env(
        &["inspect", "testorg/not-there"],
        &[
            ("HF_HUB_CACHE", s(&dir.path().join("no-such-cache"))),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    fails(&o, &["testorg/not-there"], "missing hub id, missing cache");
}

/// Medusa heads given as a hub id resolve from the local cache, offline.
#[test]
fn medusa_heads_by_hub_id_from_local_cache() {
    let dir = tempfile::tempdir().unwrap();
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = dir.path().join("hub").join("models--testorg--stories-medusa");
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    let vendored = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/stories260K/medusa");
    for f in ["config.json", "medusa_lm_head.safetensors"] {
        std::fs::copy(Path::new(vendored).join(f), snap.join(f)).unwrap();
    }
    let cache = dir.path().join("hub");
    let env = [("HF_HUB_CACHE", cache.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let run = |method: &str| {
        let o = ahead_env(
            &[
                "generate",
                "--prompt",
                "Once upon a time",
                "--max-tokens",
                "40",
                "--method",
                method,
                "--medusa",
                "testorg/stories-medusa",
                "--json",
            ],
            &env,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["token_ids"].clone()
    };
    assert_eq!(run("medusa"), run("vanilla"));
    // An id that is not in the cache fails clearly, offline.
    let o = ahead_env(
        &["generate", "--method", "medusa", "--medusa", "testorg/missing"],
        &env,
    );
    assert!(!o.status.success());
}
