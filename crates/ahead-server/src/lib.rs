//! ahead-server: the OpenAI-compatible HTTP API over an [`Engine`].
//!
//! Every request goes through the same pipeline (RELIABILITY.md): parse (OpenAI-shaped 400s,
//! 413 past the body limit), validate, tokenize and check the context, then admission (a free
//! slot, else a bounded queue, else 429/503), and only then the 200 and, for streams, the SSE
//! headers. Generation runs on the engine's batch workers ([`Scheduler`]): the requests in
//! flight advance together, one target forward per step for all of them, and each request's
//! controller drafts less as the batch fills. A client that goes away (the response future or
//! the event stream is dropped) sets the request's cancel flag, which the worker checks before
//! every step, so its cache is freed within one step. On shutdown the server stops
//! accepting, reports 503 on `/health`, and lets in-flight requests finish.

pub mod api;
pub mod error;
pub mod http;
pub mod metrics;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ahead_engine::{
    Engine, FinishReason, GenerateParams, Generation, Job, Method, Prompt, SamplingParams, Scheduler,
    MAX_DRAFT,
};
use ahead_model::tokenizer::ChatMessage;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::api::{ChatRequest, Common, CompletionRequest, PromptInput, SpecUsage, Usage};
use crate::error::ApiError;
pub use crate::http::HttpLimits;
use crate::metrics::Metrics;

/// Limits and identity of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id `/v1/models` lists and requests may name.
    pub model_id: String,
    /// Requests generating at once; more wait in the queue.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; beyond it, 503 (or 429 without a queue).
    pub max_queue: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens_cap: usize,
    /// Largest `n`.
    pub n_cap: usize,
    /// Longest a request may generate, in seconds; then it ends with finish reason `length`.
    pub max_generation_seconds: f64,
    /// Requests must carry `Authorization: Bearer KEY` (401 otherwise); `/health` and
    /// `/metrics` stay open for probes and scrapers.
    pub api_key: Option<String>,
    /// Connection and request-read limits.
    pub http: HttpLimits,
    /// Total KV-cache tokens the requests in flight may reserve (0: no budget). A request
    /// reserves prompt + max_tokens + draft slots (at most the context) for each choice; one
    /// that could never fit gets 400, others wait until enough is free.
    pub max_kv_tokens: usize,
    /// Method and parameters for requests that name none (e.g. from `ahead tune`); sampling,
    /// limits and stops always come from the request.
    pub defaults: GenerateParams,
    /// Batch worker threads; each advances its share of the requests in one batch. 0: one per
    /// core for a model small enough that a forward stays on one core, else one (whose
    /// forwards use every core).
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            model_id: "ahead".into(),
            max_concurrent: 8,
            max_queue: 64,
            max_body_bytes: 2 << 20,
            max_tokens_cap: 4096,
            n_cap: 4,
            max_generation_seconds: 600.0,
            workers: 0,
            max_kv_tokens: 0,
            defaults: GenerateParams::default(),
            api_key: None,
            http: HttpLimits::default(),
        }
    }
}

/// Shared by every handler.
pub struct AppState {
    engine: OnceLock<Arc<Engine>>,
    scheduler: OnceLock<Scheduler>,
    cfg: ServerConfig,
    slots: Arc<Semaphore>,
    /// KV-cache tokens still free, with a budget.
    kv: Option<Arc<Semaphore>>,
    queued: AtomicU64,
    draining: AtomicBool,
    next_id: AtomicU64,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(cfg: ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            engine: OnceLock::new(),
            scheduler: OnceLock::new(),
            slots: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            kv: (cfg.max_kv_tokens > 0).then(|| Arc::new(Semaphore::new(cfg.max_kv_tokens))),
            cfg,
            queued: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            metrics: Metrics::default(),
        })
    }

    /// Makes the server ready (until then `/health` says 503 and requests get 503).
    pub fn set_engine(&self, engine: Arc<Engine>) {
        let workers = match self.cfg.workers {
            0 => auto_workers(&engine),
            w => w,
        };
        let _ = self.scheduler.set(Scheduler::start(engine.clone(), workers));
        let _ = self.engine.set(engine);
    }

    /// Takes a generation slot as a request would (tests hold one to make the server busy).
    #[doc(hidden)]
    pub fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// KV-cache tokens not reserved by requests in flight (with a budget).
    #[doc(hidden)]
    pub fn kv_available(&self) -> Option<usize> {
        self.kv.as_ref().map(|k| k.available_permits())
    }

    /// Stops admitting requests (`/health` 503); in-flight ones finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// Weights below which a forward stays on one core (the kernels go parallel above about this).
const SMALL_MODEL_BYTES: usize = 16 << 20;

/// Batch workers when not configured: a small model's forward runs on one core, so each core
/// gets a batch; a larger one's matmuls already use every core, and one batch reads the
/// weights once per step for all its requests.
fn auto_workers(engine: &Engine) -> usize {
    if engine.model().weight_bytes() < SMALL_MODEL_BYTES {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    // The API key guards the API; bodies are read whole (cap and deadline) once it passed.
    let api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .layer(from_fn_with_state(state.clone(), http::read_body))
        .layer(from_fn_with_state(state.clone(), http::require_key));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn method_not_allowed() -> ApiError {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn not_found() -> ApiError {
    ApiError::status(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such route",
    )
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    let (code, status) = if s.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if s.engine.get().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "loading")
    } else {
        (StatusCode::OK, "ok")
    };
    (code, Json(json!({ "status": status }))).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn models(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": s.cfg.model_id, "object": "model", "created": now(), "owned_by": "ahead"}],
    }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which endpoint a request came through (response and chunk shapes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return rejected(&s, e),
    };
    let prompt = match req.prompt {
        PromptInput::Text(t) if t.is_empty() => {
            return fail(&s, ApiError::invalid("prompt is empty", Some("prompt")))
        }
        PromptInput::Text(t) => Prompt::Text(t),
        PromptInput::Ids(ids) => Prompt::Ids(ids),
    };
    serve(s, prompt, req.common, Kind::Completion).await
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Json<ChatRequest>, JsonRejection>) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return rejected(&s, e),
    };
    let Some(engine) = s.engine.get().cloned() else {
        return fail(&s, loading());
    };
    if req.messages.is_empty() {
        return fail(&s, ApiError::invalid("messages is empty", Some("messages")));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        if !ROLES.contains(&m.role.as_str()) {
            return fail(
                &s,
                ApiError::invalid(
                    format!("unknown role {:?}: one of {ROLES:?}", truncated(&m.role)),
                    Some("messages"),
                ),
            );
        }
        match m.content.text() {
            Ok(text) => messages.push(ChatMessage::new(&m.role, &text)),
            Err(kind) => {
                return fail(
                    &s,
                    ApiError::invalid(
                        format!(
                            "content parts of type {:?} are not supported; only text",
                            truncated(&kind)
                        ),
                        Some("messages"),
                    ),
                )
            }
        }
    }
    let text = match render_chat(&engine, &messages) {
        Ok(t) => t,
        Err(e) => return fail(&s, e),
    };
    serve(s, Prompt::Text(text), req.common, Kind::Chat).await
}

/// Roles a chat message may have.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// At most the first 64 characters of a client's string, for error messages.
fn truncated(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The model's chat template, or for base models without one a plain transcript:
/// `role: content` lines, then `assistant:`.
fn render_chat(engine: &Engine, messages: &[ChatMessage]) -> Result<String, ApiError> {
    let tok = engine.tokenizer();
    match tok.chat_template() {
        Some(t) => {
            let piece = |id: Option<u32>| id.and_then(|i| tok.id_to_piece(i)).unwrap_or_default();
            let bos = piece(tok.bos_id());
            let eos = piece(tok.eos_ids().first().copied());
            t.render(messages, true, &bos, &eos)
                .map_err(|e| ApiError::invalid(format!("chat template: {e}"), Some("messages")))
        }
        None => {
            let mut out = String::new();
            for m in messages {
                out.push_str(&format!("{}: {}\n", m.role, m.content));
            }
            out.push_str("assistant:");
            Ok(out)
        }
    }
}

fn loading() -> ApiError {
    ApiError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "loading",
        "the model is still loading",
    )
}

fn rejected(s: &AppState, e: JsonRejection) -> Response {
    let status = e.status();
    let err = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::status(status, "invalid_request_error", "body_too_large", e.body_text())
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        ApiError::status(
            status,
            "invalid_request_error",
            "unsupported_media_type",
            e.body_text(),
        )
    } else {
        ApiError::invalid(e.body_text(), None)
    };
    fail(s, err)
}

pub(crate) fn fail(s: &AppState, e: ApiError) -> Response {
    s.metrics.outcome(&format!("{}", e.status.as_u16()));
    e.into_response()
}

/// Checks and converts the common fields into generation parameters.
fn params(cfg: &ServerConfig, c: &Common) -> Result<(GenerateParams, usize, bool), ApiError> {
    if let Some(m) = &c.model {
        if m != &cfg.model_id {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "model {:?} is not served here; available: [{:?}]",
                    truncated(m),
                    cfg.model_id
                ),
                kind: "invalid_request_error",
                param: Some("model".into()),
                code: Some("model_not_found"),
            });
        }
    }
    let n = c.n.unwrap_or(1);
    if n == 0 || n > cfg.n_cap {
        return Err(ApiError::invalid(
            format!("n must be between 1 and {}", cfg.n_cap),
            Some("n"),
        ));
    }
    if c.stream && n > 1 {
        return Err(ApiError::invalid("n > 1 is not supported with stream", Some("n")));
    }
    let max_tokens = c.max_completion_tokens.or(c.max_tokens).unwrap_or(256);
    if max_tokens == 0 || max_tokens > cfg.max_tokens_cap {
        return Err(ApiError::invalid(
            format!("max_tokens must be between 1 and {}", cfg.max_tokens_cap),
            Some("max_tokens"),
        ));
    }
    let stop = c.stop.clone().map(api::Stop::into_vec).unwrap_or_default();
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(ApiError::invalid(
            "stop takes at most 4 non-empty strings of up to 256 bytes",
            Some("stop"),
        ));
    }
    let method = match c.ahead.as_ref().and_then(|a| a.method.as_deref()) {
        None => cfg.defaults.method,
        Some("auto") => Method::Auto,
        Some("vanilla") => Method::Vanilla,
        Some("draft") => Method::Draft,
        Some("medusa") => Method::Medusa,
        Some("lookahead") => Method::Lookahead,
        Some("prompt-lookup") => Method::PromptLookup,
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "unknown method {:?}: vanilla, draft, medusa, lookahead, prompt-lookup or auto",
                    truncated(other)
                ),
                Some("ahead.method"),
            ))
        }
    };
    let sampling = SamplingParams {
        temperature: c.temperature.unwrap_or(1.0),
        top_p: c.top_p.unwrap_or(1.0),
        ..SamplingParams::greedy()
    };
    sampling
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string(), None))?;
    // The configured parameters go with the configured method only.
    let tuned = (method == cfg.defaults.method).then_some(&cfg.defaults);
    let params = GenerateParams {
        max_tokens,
        sampling,
        // Without a seed, each request samples afresh (as OpenAI's API does), and the draft
        // schedule may follow timing and load; with one, output is reproducible.
        seed: c.seed.unwrap_or_else(fresh_seed),
        reproducible: c.seed.is_some(),
        stop,
        method,
        num_draft: c
            .ahead
            .as_ref()
            .and_then(|a| a.num_draft)
            .or(tuned.and_then(|t| t.num_draft)),
        ignore_eos: c.ahead.as_ref().is_some_and(|a| a.ignore_eos),
        medusa_tree: tuned.and_then(|t| t.medusa_tree.clone()),
        lookahead_window: tuned.and_then(|t| t.lookahead_window),
        lookahead_ngram: tuned.and_then(|t| t.lookahead_ngram),
        lookahead_guesses: tuned.and_then(|t| t.lookahead_guesses),
        ..GenerateParams::default()
    };
    let usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    Ok((params, n, usage))
}

/// A seed for a request that gave none.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // SplitMix64 of the clock and a counter: distinct for requests in the same nanosecond.
    let mut z = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A slot to generate in: taken at once, or after waiting in the bounded queue.
async fn admit(s: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down",
        ));
    }
    if let Ok(p) = s.slots.clone().try_acquire_owned() {
        return Ok(p);
    }
    if s.cfg.max_queue == 0 {
        return Err(ApiError::status(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "too_many_requests",
            "every generation slot is busy",
        ));
    }
    let depth = s.queued.fetch_add(1, Ordering::SeqCst);
    s.metrics.queue_depth.store(depth + 1, Ordering::Relaxed);
    // Leaves the queue however this future ends (the client may go away while waiting).
    struct Leave<'a>(&'a AppState);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            let d = self.0.queued.fetch_sub(1, Ordering::SeqCst);
            self.0
                .metrics
                .queue_depth
                .store(d.saturating_sub(1), Ordering::Relaxed);
        }
    }
    let _leave = Leave(s);
    if depth >= s.cfg.max_queue as u64 {
        return Err(ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "queue_full",
            "the request queue is full",
        ));
    }
    s.slots.clone().acquire_owned().await.map_err(|_| {
        ApiError::status(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "closed",
            "closed",
        )
    })
}

/// Ends a generation that runs past the time limit: sets `timed_out`, then the cancel flag.
fn watchdog(limit: f64, cancel: Arc<AtomicBool>, timed_out: Arc<AtomicBool>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs_f64(limit.max(0.0))).await;
        timed_out.store(true, Ordering::Relaxed);
        cancel.store(true, Ordering::Relaxed);
    });
}

/// The finish reason a client sees: a generation stopped by the time limit was cut short.
fn finish_for(g: &Generation, timed_out: &AtomicBool) -> &'static str {
    if g.finish_reason == FinishReason::Cancelled && timed_out.load(Ordering::Relaxed) {
        "length"
    } else {
        finish(g.finish_reason)
    }
}

/// Sets the cancel flag when dropped: a response future dropped by a disconnect.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn serve(s: Arc<AppState>, prompt: Prompt, common: Common, kind: Kind) -> Response {
    let Some(engine) = s.engine.get().cloned() else {
        return fail(&s, loading());
    };
    let (params, n, include_usage) = match params(&s.cfg, &common) {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    // Tokenize and check the context before taking a slot.
    let ids = match engine.prompt_ids(&prompt) {
        Ok(ids) => ids,
        Err(e) => return fail(&s, e.into()),
    };
    let context = engine.model().config().max_seq_len;
    if ids.len() >= context {
        return fail(
            &s,
            ApiError::invalid(
                format!("the prompt has {} tokens; the context is {context}", ids.len()),
                Some("prompt"),
            ),
        );
    }
    // Worst-case cache of each choice: prompt, completion and draft slots (lookahead's window
    // included), never more than the context.
    let need = (ids.len() + params.max_tokens + 2 * MAX_DRAFT).min(context) * n;
    if s.kv.is_some() && need > s.cfg.max_kv_tokens {
        return fail(
            &s,
            ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "the request may need {need} KV-cache tokens; the server's budget is {}: lower max_tokens or n",
                    s.cfg.max_kv_tokens
                ),
                kind: "invalid_request_error",
                param: Some("max_tokens".into()),
                code: Some("kv_budget_exceeded"),
            },
        );
    }
    let slot = match admit(&s).await {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    // With a budget, wait (holding the slot) until the cache fits; a client that goes away
    // while waiting drops this future and both reservations.
    let kv = match &s.kv {
        Some(k) => match k.clone().acquire_many_owned(need as u32).await {
            Ok(p) => Some(p),
            Err(_) => return fail(&s, internal("the KV budget is closed")),
        },
        None => None,
    };
    let permit = Admitted { _slot: slot, _kv: kv };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let prompt = Prompt::Ids(ids);
    if common.stream {
        return match s.scheduler.get() {
            Some(scheduler) => stream(
                s.clone(),
                scheduler,
                prompt,
                params,
                kind,
                include_usage,
                permit,
                id,
            ),
            None => fail(&s, loading()),
        };
    }
    let Some(scheduler) = s.scheduler.get() else {
        return fail(&s, loading());
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    watchdog(s.cfg.max_generation_seconds, cancel.clone(), timed_out.clone());
    let guard = CancelOnDrop(cancel.clone());
    // The n choices generate side by side; the slot is free once the last one is answered.
    let permit = Arc::new(permit);
    s.metrics.running.fetch_add(1, Ordering::Relaxed);
    let running = Running(s.clone());
    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = oneshot::channel();
        let (state, permit) = (s.clone(), permit.clone());
        let start = Instant::now();
        scheduler.submit(Job {
            prompt: prompt.clone(),
            params: GenerateParams {
                seed: params.seed.wrapping_add(i as u64),
                ..params.clone()
            },
            on_text: Box::new(|_| {}),
            cancel: cancel.clone(),
            done: Box::new(move |r| {
                if let Ok(g) = &r {
                    record(&state, g, start.elapsed().as_secs_f64(), None);
                }
                drop(permit);
                let _ = tx.send(r);
            }),
        });
        answers.push(rx);
    }
    drop(permit);
    let mut gens = Vec::with_capacity(n);
    for rx in answers {
        match rx.await {
            Ok(Ok(g)) => gens.push(g),
            Ok(Err(e)) => return fail(&s, e.into()),
            Err(_) => return fail(&s, internal("the generation ended without an answer")),
        }
    }
    drop(running);
    drop(guard);
    s.metrics.outcome("200");
    Json(full_response(&s.cfg.model_id, kind, id, &gens, &timed_out)).into_response()
}

/// What an admitted request holds until its last choice is answered: a generation slot and,
/// with a KV budget, its caches' worth of tokens.
struct Admitted {
    _slot: OwnedSemaphorePermit,
    _kv: Option<OwnedSemaphorePermit>,
}

/// Counts a request as running until dropped.
struct Running(Arc<AppState>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.metrics.running.fetch_sub(1, Ordering::Relaxed);
    }
}

fn internal(message: &str) -> ApiError {
    ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal",
        message,
    )
}

/// Counts a finished generation in the metrics.
fn record(s: &AppState, g: &Generation, seconds: f64, first_token: Option<f64>) {
    let m = &s.metrics;
    m.prompt_tokens
        .fetch_add(g.prompt_token_ids.len() as u64, Ordering::Relaxed);
    m.generated_tokens
        .fetch_add(g.token_ids.len() as u64, Ordering::Relaxed);
    m.target_forwards
        .fetch_add(g.stats.target_forwards as u64, Ordering::Relaxed);
    m.speculation(&g.stats.method, g.stats.drafted_tokens, g.stats.accepted_tokens);
    m.positions(&g.stats.acceptance_by_position);
    if let Some(t) = first_token {
        m.time_to_first_token.observe(t);
    }
    if !g.token_ids.is_empty() {
        m.time_per_output_token
            .observe(seconds / g.token_ids.len() as f64);
    }
}

fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

fn usage(gens: &[Generation]) -> Usage {
    let prompt = gens.first().map_or(0, |g| g.prompt_token_ids.len());
    let completion: usize = gens.iter().map(|g| g.token_ids.len()).sum();
    let (drafted, accepted, forwards) = gens.iter().fold((0, 0, 0), |a, g| {
        (
            a.0 + g.stats.drafted_tokens,
            a.1 + g.stats.accepted_tokens,
            a.2 + g.stats.target_forwards,
        )
    });
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        ahead: SpecUsage {
            method: gens.first().map(|g| g.stats.method.clone()).unwrap_or_default(),
            drafted_tokens: drafted,
            accepted_tokens: accepted,
            target_forwards: forwards,
            mean_accepted_length: if forwards > 0 {
                completion as f64 / forwards as f64
            } else {
                0.0
            },
        },
    }
}

fn response_id(kind: Kind, id: u64) -> String {
    match kind {
        Kind::Completion => format!("cmpl-{id}"),
        Kind::Chat => format!("chatcmpl-{id}"),
    }
}

fn full_response(model: &str, kind: Kind, id: u64, gens: &[Generation], timed_out: &AtomicBool) -> Value {
    let choices: Vec<Value> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| match kind {
            Kind::Completion => json!({"index": i, "text": g.text, "logprobs": null, "finish_reason": finish_for(g, timed_out)}),
            Kind::Chat => json!({"index": i, "message": {"role": "assistant", "content": g.text}, "logprobs": null, "finish_reason": finish_for(g, timed_out)}),
        })
        .collect();
    json!({
        "id": response_id(kind, id),
        "object": if kind == Kind::Chat { "chat.completion" } else { "text_completion" },
        "created": now(),
        "model": model,
        "choices": choices,
        "usage": usage(gens),
    })
}

/// One stream chunk: a text delta, or the final chunk with its finish reason.
fn chunk(model: &str, kind: Kind, id: u64, text: Option<&str>, reason: Option<&str>, first: bool) -> Value {
    let choice = match kind {
        Kind::Completion => {
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason})
        }
        Kind::Chat => {
            let mut delta = serde_json::Map::new();
            if first {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason})
        }
    };
    json!({
        "id": response_id(kind, id),
        "object": if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
        "created": now(),
        "model": model,
        "choices": [choice],
    })
}

/// Server-sent events: a chunk per piece of final text, the finish chunk, an optional usage
/// chunk, then `[DONE]`. An error after the headers is one error event, then `[DONE]`.
#[allow(clippy::too_many_arguments)] // one request's parts, handed to the batch worker
fn stream(
    s: Arc<AppState>,
    scheduler: &Scheduler,
    prompt: Prompt,
    params: GenerateParams,
    kind: Kind,
    include_usage: bool,
    permit: Admitted,
    id: u64,
) -> Response {
    // Unbounded: the worker must never wait on one slow client (a stream holds at most
    // max_tokens chunks).
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let model = s.cfg.model_id.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    watchdog(s.cfg.max_generation_seconds, cancel.clone(), timed_out.clone());
    s.metrics.running.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let first = Arc::new(OnceLock::<f64>::new());
    let on_text = {
        let (tx, model, cancel, first) = (tx.clone(), model.clone(), cancel.clone(), first.clone());
        move |delta: &str| {
            let is_first = first.get().is_none();
            first.get_or_init(|| start.elapsed().as_secs_f64());
            // A closed channel means the client went away: stop within a step.
            if tx
                .send(chunk(&model, kind, id, Some(delta), None, is_first).to_string())
                .is_err()
            {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    };
    let state = s.clone();
    let done = move |result: ahead_engine::Result<Generation>| {
        let _permit = permit;
        let send = |v: &Value| {
            let _ = tx.send(v.to_string());
        };
        let first = first.get().copied();
        match result {
            Ok(g) => {
                record(&state, &g, start.elapsed().as_secs_f64(), first);
                let reason = finish_for(&g, &timed_out);
                state
                    .metrics
                    .outcome(if reason == "cancelled" { "cancelled" } else { "200" });
                send(&chunk(&model, kind, id, None, Some(reason), first.is_none()));
                if include_usage {
                    let mut u = chunk(&model, kind, id, None, None, false);
                    u["choices"] = json!([]);
                    u["usage"] = json!(usage(std::slice::from_ref(&g)));
                    send(&u);
                }
            }
            Err(e) => {
                state.metrics.outcome("error_after_headers");
                send(&json!(ApiError::from(e).body()));
            }
        }
        let _ = tx.send("[DONE]".into());
        state.metrics.running.fetch_sub(1, Ordering::Relaxed);
    };
    scheduler.submit(Job {
        prompt,
        params,
        on_text: Box::new(on_text),
        cancel: cancel.clone(),
        done: Box::new(done),
    });
    // Dropping the event stream (a client that went away) cancels the generation.
    let guard = CancelOnDrop(cancel);
    let events = futures_util::stream::poll_fn(move |cx| {
        let _ = &guard;
        rx.poll_recv(cx)
            .map(|m| m.map(|data| Ok::<Event, Infallible>(Event::default().data(data))))
    });
    Sse::new(events).into_response()
}

/// Serves on `listener` until `shutdown` resolves, then drains: no new connections, `/health`
/// 503, in-flight requests and streams finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.cfg.http.clone();
    http::serve(listener, router(state.clone()), state, limits, shutdown).await
}
