//! Hub repo ids, resolved from the local Hugging Face cache first; downloaded only when the
//! cache lacks them and `HF_HUB_OFFLINE` is not set.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo};

use crate::error::{ModelError, Result};

/// Files a model folder needs, besides its weights.
const FILES: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// The hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Path::new(&p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// Returns the local snapshot folder of `repo_id` (downloading it if allowed and needed).
pub fn resolve_hub(repo_id: &str) -> Result<PathBuf> {
    let cache = Cache::new(hub_cache_dir());
    let repo = cache.repo(Repo::model(repo_id.to_string()));
    if let Some(config) = repo.get("config.json") {
        let has_weights =
            repo.get("model.safetensors").is_some() || repo.get("model.safetensors.index.json").is_some();
        if has_weights {
            if let Some(dir) = config.parent() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if offline {
        return Err(ModelError::Unsupported(format!(
            "{repo_id} is not in the hub cache at {} and HF_HUB_OFFLINE is set",
            hub_cache_dir().display()
        )));
    }
    download(repo_id)
}

/// Returns the local snapshot folder of a repo that must hold exactly `files` (Medusa heads:
/// `config.json` and `medusa_lm_head.safetensors`), from the cache first, downloading if allowed.
pub fn resolve_hub_files(repo_id: &str, files: &[&str]) -> Result<PathBuf> {
    let cache = Cache::new(hub_cache_dir());
    let repo = cache.repo(Repo::model(repo_id.to_string()));
    let cached: Option<Vec<PathBuf>> = files.iter().map(|f| repo.get(f)).collect();
    if let Some(dir) = cached.as_ref().and_then(|c| c.first()).and_then(|p| p.parent()) {
        return Ok(dir.to_path_buf());
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    if offline {
        return Err(ModelError::Unsupported(format!(
            "{repo_id} is not in the hub cache at {} and HF_HUB_OFFLINE is set",
            hub_cache_dir().display()
        )));
    }
    let net = |e: hf_hub::api::sync::ApiError| ModelError::Unsupported(format!("downloading {repo_id}: {e}"));
    let api = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(hub_cache_dir()))
        .build()
        .map_err(net)?;
    let repo = api.model(repo_id.to_string());
    let mut dir = None;
    for f in files {
        dir = repo.get(f).map_err(net)?.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| ModelError::Unsupported(format!("{repo_id}: unexpected cache layout")))
}

fn download(repo_id: &str) -> Result<PathBuf> {
    let net = |e: hf_hub::api::sync::ApiError| ModelError::Unsupported(format!("downloading {repo_id}: {e}"));
    let api = hf_hub::api::sync::ApiBuilder::from_cache(Cache::new(hub_cache_dir()))
        .build()
        .map_err(net)?;
    let repo = api.model(repo_id.to_string());
    let config = repo.get("config.json").map_err(net)?;
    for f in FILES.iter().skip(1) {
        // Optional files: a repo without them is still loadable (the loader says what is missing).
        let _ = repo.get(f);
    }
    match repo.get("model.safetensors") {
        Ok(_) => {}
        Err(_) => {
            let index = repo.get("model.safetensors.index.json").map_err(net)?;
            let bytes = std::fs::read(&index).map_err(|e| ModelError::io(&index, e))?;
            let map = crate::format::safetensors::parse_safetensors_index(&bytes, repo_id)?;
            let mut shards: Vec<&String> = map.values().collect();
            shards.sort();
            shards.dedup();
            for s in shards {
                repo.get(s).map_err(net)?;
            }
        }
    }
    config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| ModelError::Unsupported(format!("{repo_id}: unexpected cache layout")))
}
