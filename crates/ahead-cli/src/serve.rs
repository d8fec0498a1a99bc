//! `ahead serve`: the OpenAI-compatible server. It binds first and loads the model in the
//! background (`/health` is 503 until it is ready), and drains on SIGTERM or Ctrl-C.

use std::sync::Arc;

use ahead_engine::GenerateParams;
use ahead_server::{AppState, HttpLimits, LogFormat, ServerConfig};
use anyhow::{Context, Result};
use clap::Args;

use crate::decoding::with_chat_template;
use crate::sources::Sources;
use crate::tuned::Tuned;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model (default: the embedded stories260K).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// A Jinja chat template for /v1/chat/completions instead of the model's own (or for a model
    /// without one).
    #[arg(long)]
    pub chat_template: Option<std::path::PathBuf>,
    #[arg(long)]
    pub draft: Option<String>,
    #[arg(long)]
    pub draft_tokenizer: Option<std::path::PathBuf>,
    /// Static n-gram cache for prompt lookup, from `ahead train ngram` (default: the embedded
    /// model's vendored cache).
    #[arg(long)]
    pub ngram_cache: Option<std::path::PathBuf>,
    /// Suffix decoding's store of earlier outputs: read from FILE when it exists, written back
    /// when the server stops (default: in memory only).
    #[arg(long)]
    pub suffix_store: Option<std::path::PathBuf>,
    #[arg(long)]
    pub medusa: Option<String>,
    /// An EAGLE head for `--method eagle`: a folder written by `ahead train eagle`.
    #[arg(long)]
    pub eagle: Option<std::path::PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model id clients name (default: the model argument, or "stories260K").
    #[arg(long)]
    pub model_id: Option<String>,
    /// Requests generating at once (they advance together in batches).
    #[arg(long, default_value_t = 8)]
    pub max_concurrent: usize,
    /// KV-cache tokens all requests in flight may reserve (0: no budget). Each request reserves
    /// prompt + max_tokens + 32 draft slots (at most the context) per choice; one that can never
    /// fit gets 400, others wait for room.
    #[arg(long, default_value_t = 0)]
    pub max_kv_tokens: usize,
    /// A config written by `ahead tune`: its method and parameters serve requests that name no
    /// method (and its draft model is loaded unless --draft is given).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Batch worker threads; each advances its share of the running requests in one forward
    /// per step. 0: one per core for a small model, else one.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Requests waiting for a slot (beyond: 503; with 0, a busy server answers 429).
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Largest request body in bytes (beyond: 413).
    #[arg(long, default_value_t = 2 << 20)]
    pub max_body_bytes: usize,
    /// Require `Authorization: Bearer KEY` on the API (401 otherwise); `/health` and
    /// `/metrics` stay open. Prefer the environment variable to keep the key out of `ps`.
    #[arg(long, env = "AHEAD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A client must send its request head within this many seconds (else the connection is
    /// closed) and its body within --body-read-seconds (else 408).
    #[arg(long, default_value_t = 10.0)]
    pub header_read_seconds: f64,
    #[arg(long, default_value_t = 30.0)]
    pub body_read_seconds: f64,
    /// Longest a request may generate, in seconds (then it ends with finish reason `length`).
    #[arg(long, default_value_t = 600.0)]
    pub max_generation_seconds: f64,
    /// Longest a request may wait for a slot, and then for KV budget, in seconds (then 503
    /// `queue_timeout` with Retry-After).
    #[arg(long, default_value_t = 60.0)]
    pub max_queue_seconds: f64,
    /// Reuse finished requests' KV rows for requests that start with the same tokens (the next
    /// turn of a conversation, a shared system prompt), within this many MiB; 0: off.
    #[arg(long, default_value_t = 256)]
    pub prefix_cache_mb: usize,
    /// One line per request on stderr: `text` (key=value), `json`, or `off`.
    #[arg(long, value_enum, default_value_t = LogArg::Text)]
    pub log_format: LogArg,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogArg {
    Text,
    Json,
    Off,
}

/// A positive, finite number of seconds.
fn seconds(s: f64, flag: &str) -> Result<std::time::Duration> {
    if s.is_finite() && s > 0.0 {
        Ok(std::time::Duration::from_secs_f64(s))
    } else {
        anyhow::bail!("{flag} must be a positive number of seconds, got {s}")
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(a))
}

async fn serve(mut a: ServeArgs) -> Result<()> {
    let mut defaults = GenerateParams::default();
    if let Some(path) = &a.config {
        let tuned = Tuned::load(path)?;
        tuned.apply(&mut defaults, false)?;
        if a.draft.is_none() {
            a.draft = tuned.draft.clone();
        }
        if a.ngram_cache.is_none() {
            a.ngram_cache = tuned.ngram_cache.as_ref().map(Into::into);
        }
        if a.eagle.is_none() {
            a.eagle = tuned.eagle.as_ref().map(Into::into);
        }
        eprintln!("tuned config {}: method {}", path.display(), tuned.method);
    }
    let cfg = ServerConfig {
        defaults,
        model_id: a
            .model_id
            .clone()
            .or_else(|| a.model.clone())
            .unwrap_or_else(|| "stories260K".into()),
        max_concurrent: a.max_concurrent,
        max_queue: a.max_queue,
        max_body_bytes: a.max_body_bytes,
        max_generation_seconds: a.max_generation_seconds,
        max_queue_seconds: seconds(a.max_queue_seconds, "--max-queue-seconds")?.as_secs_f64(),
        log: match a.log_format {
            LogArg::Text => LogFormat::Text,
            LogArg::Json => LogFormat::Json,
            LogArg::Off => LogFormat::Off,
        },
        workers: a.workers,
        max_kv_tokens: a.max_kv_tokens,
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        http: HttpLimits {
            header_read_timeout: seconds(a.header_read_seconds, "--header-read-seconds")?,
            body_read_timeout: seconds(a.body_read_seconds, "--body-read-seconds")?,
            ..HttpLimits::default()
        },
        ..ServerConfig::default()
    };
    let state = AppState::new(cfg);
    let addr = format!("{}:{}", a.host, a.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    let loading = state.clone();
    let saving = a.suffix_store.is_some().then(|| state.clone());
    let load = tokio::task::spawn_blocking(move || -> Result<()> {
        let engine = Sources {
            eagle: a.eagle.as_deref(),
            model: a.model.as_deref(),
            tokenizer: a.tokenizer.as_deref(),
            draft: a.draft.as_deref(),
            draft_tokenizer: a.draft_tokenizer.as_deref(),
            medusa: a.medusa.as_deref(),
            ngram_cache: a.ngram_cache.as_deref(),
            suffix_store: a.suffix_store.as_deref(),
            draft_medusa: None,
        }
        .engine()?;
        let engine = with_chat_template(engine, a.chat_template.as_deref())?
            .with_prefix_cache(a.prefix_cache_mb << 20);
        loading.set_engine(Arc::new(engine));
        eprintln!("model loaded; ready");
        Ok(())
    });
    // What suffix decoding learned outlives the process: written once every request is done.
    let save_store = move || -> Result<()> {
        if let Some(engine) = saving.as_ref().and_then(|s| s.engine()) {
            engine.save_suffix_store()?;
            eprintln!("suffix store saved");
        }
        Ok(())
    };
    let server = tokio::spawn(ahead_server::run(listener, state, shutdown_signal()));
    // A model that fails to load ends the process with its error.
    load.await.context("loading task")??;
    server.await.context("server task")?.context("serving")?;
    save_store()?;
    eprintln!("drained; bye");
    Ok(())
}

/// SIGTERM (Kubernetes, systemd) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("shutting down: draining in-flight requests");
}
