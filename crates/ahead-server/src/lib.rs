//! ahead-server: the OpenAI-compatible HTTP API over an [`ahead_engine::Engine`].
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
//!
//! Here: the routes and the request pipeline. `http`: connections, body reading, the API key.
//! `params`: request fields to generation parameters. `admission`: slots, queue, KV
//! reservations and lifetime guards. `respond`: response and chunk shapes, usage, metrics per
//! generation. `state`: configuration and shared state.

mod admission;
pub mod api;
pub mod error;
pub mod http;
mod log;
mod logprobs;
pub mod metrics;
mod params;
mod parse;
mod respond;
mod state;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ahead_engine::{Engine, GenerateParams, Generation, Job, Prompt, Scheduler, TokenLogprobs};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::admission::{
    admit, queue_deadline, queue_timeout, watchdog, Admitted, CancelOnDrop, Running, Unanswered,
};
use crate::api::{ChatRequest, Common, CompletionRequest, PromptInput};
use crate::error::ApiError;
pub use crate::http::HttpLimits;
use crate::log::Logged;
use crate::params::{params, render_chat};
use crate::parse::typed;
use crate::respond::{chunk, finish_for, full_response, now, record, usage, Kind};
pub use crate::state::{AppState, LogFormat, ServerConfig};

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

async fn completions(State(s): State<Arc<AppState>>, body: Result<Json<Value>, JsonRejection>) -> Response {
    logged(s.clone(), Kind::Completion, completion(s, body)).await
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Json<Value>, JsonRejection>) -> Response {
    logged(s.clone(), Kind::Chat, chat_completion(s, body)).await
}

/// Runs a request's handler and logs its response. A client that goes away before its answer
/// (or its stream's headers) drops this future, waiting in the queue or generating: it then
/// counts as cancelled.
async fn logged(
    s: Arc<AppState>,
    kind: Kind,
    handler: impl std::future::Future<Output = Response>,
) -> Response {
    let started = Instant::now();
    let mut unanswered = Unanswered {
        state: Some(s.clone()),
        kind,
        started,
    };
    let response = handler.await;
    unanswered.state = None;
    log::response(&s, kind, &response, started);
    response
}

async fn completion(s: Arc<AppState>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let req: CompletionRequest = match body.map_err(rejection).and_then(|Json(v)| typed(v)) {
        Ok(r) => r,
        Err(e) => return fail(&s, e),
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

async fn chat_completion(s: Arc<AppState>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let req: ChatRequest = match body.map_err(rejection).and_then(|Json(v)| typed(v)) {
        Ok(r) => r,
        Err(e) => return fail(&s, e),
    };
    let Some(engine) = s.engine.get().cloned() else {
        return fail(&s, loading());
    };
    let messages = match parse::messages(&req.messages) {
        Ok(m) => m,
        Err(e) => return fail(&s, e),
    };
    // Messages longer in bytes than any tokenization could fit are refused before the
    // template renders and tokenizes them.
    let bytes: usize = messages.iter().map(|m| m.content.len()).sum();
    if bytes > s.max_prompt_bytes(&engine) {
        let context = engine.model().config().max_seq_len;
        return fail(
            &s,
            ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(
                    format!("the messages have {bytes} bytes: more than {context} tokens of this tokenizer can hold"),
                    Some("messages"),
                )
            },
        );
    }
    let prompt = match render_chat(&engine, &messages) {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    serve(s, prompt, req.common, Kind::Chat).await
}

fn loading() -> ApiError {
    ApiError::status(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "loading",
        "the model is still loading",
    )
}

fn rejection(e: JsonRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
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
    }
}

pub(crate) fn fail(s: &AppState, e: ApiError) -> Response {
    s.metrics.outcome(&format!("{}", e.status.as_u16()));
    e.into_response()
}

async fn serve(s: Arc<AppState>, prompt: Prompt, common: Common, kind: Kind) -> Response {
    let Some(engine) = s.engine.get().cloned() else {
        return fail(&s, loading());
    };
    let (mut params, n, include_usage) = match params(&s.cfg, &common) {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    params.logprobs = match logprobs::requested(kind, &common) {
        Ok(l) => l,
        Err(e) => return fail(&s, e),
    };
    if let Some(&(id, _)) = params
        .adjust
        .logit_bias
        .iter()
        .find(|(id, _)| *id as usize >= engine.model().config().vocab_size)
    {
        return fail(
            &s,
            ApiError::invalid(
                format!("logit_bias names token {id}, outside the vocabulary"),
                Some("logit_bias"),
            ),
        );
    }
    // A method whose drafter is not loaded is refused before any slot or stream.
    if let Err(e) = engine.method_available(&params) {
        return fail(&s, e.into());
    }
    let context = engine.model().config().max_seq_len;
    let too_long = |what: String| ApiError {
        code: Some("context_length_exceeded"),
        ..ApiError::invalid(what, Some(kind.prompt_field()))
    };
    // A text no tokenization could fit in the context is refused without tokenizing it.
    if let Prompt::Text(text) = &prompt {
        let most = s.max_prompt_bytes(&engine);
        if text.len() > most {
            return fail(
                &s,
                too_long(format!(
                    "the prompt has {} bytes: more than {context} tokens of this tokenizer can hold ({most} bytes)",
                    text.len()
                )),
            );
        }
    }
    // Tokenizing takes a slot (so the number tokenizing at once is bounded) and a blocking
    // thread (so it never stalls the connections' threads).
    let slot = match admit(&s).await {
        Ok(p) => p,
        Err(e) => return fail(&s, e),
    };
    let tokenizing = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.prompt_ids(&prompt))
    };
    let ids = match tokenizing.await {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => return fail(&s, e.into()),
        Err(_) => return fail(&s, internal("tokenizing the prompt failed")),
    };
    if ids.len() >= context {
        return fail(
            &s,
            too_long(format!(
                "the prompt has {} tokens; the context is {context}",
                ids.len()
            )),
        );
    }
    // The cache each choice allocates: prompt, completion, draft slots and lookahead's window,
    // never more than the context.
    // Only a budget needs it (lookahead's default window is chosen from measured costs).
    let need = match s.kv.is_some().then(|| engine.cache_slots(ids.len(), &params)) {
        None => 0,
        Some(Ok(slots)) => slots * n,
        Some(Err(e)) => return fail(&s, ApiError::from(e)),
    };
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
    // With a budget, wait (holding the slot) until the cache fits; a client that goes away
    // while waiting drops this future and both reservations.
    let kv = match &s.kv {
        Some(k) => {
            match tokio::time::timeout(queue_deadline(&s), k.clone().acquire_many_owned(need as u32)).await {
                Ok(Ok(p)) => Some(p),
                Ok(Err(_)) => return fail(&s, internal("the KV budget is closed")),
                Err(_) => return fail(&s, queue_timeout(&s, "KV-cache budget")),
            }
        }
        None => None,
    };
    let permit = Admitted { _slot: slot, _kv: kv };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let prompt = Prompt::Ids(ids);
    if common.stream {
        return match s.scheduler.get() {
            Some(scheduler) => stream(
                s.clone(),
                engine.clone(),
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
            on_text: Box::new(|_, _| {}),
            cancel: cancel.clone(),
            done: Box::new(move |r| {
                if let Ok(g) = &r {
                    record(&state, g, start.elapsed().as_secs_f64(), None);
                }
                drop(permit);
                let _ = tx.send(r);
            }),
            proposer: None,
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
    let with_logprobs = params.logprobs.is_some();
    let mut response = Json(full_response(
        &s.cfg.model_id,
        &engine,
        kind,
        id,
        &gens,
        &timed_out,
        with_logprobs,
    ))
    .into_response();
    let u = usage(&gens);
    response.extensions_mut().insert(Logged {
        id: Some(id),
        method: gens.first().map(|g| g.stats.method.clone()),
        prompt_tokens: Some(u.prompt_tokens),
        completion_tokens: Some(u.completion_tokens),
        accepted_tokens: Some(u.ahead.accepted_tokens),
        ..Logged::default()
    });
    response
}

fn internal(message: &str) -> ApiError {
    ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "internal",
        message,
    )
}

/// Server-sent events: a chunk per piece of final text, the finish chunk, an optional usage
/// chunk, then `[DONE]`. An error after the headers is one error event, then `[DONE]`.
#[allow(clippy::too_many_arguments)] // one request's parts, handed to the batch worker
fn stream(
    s: Arc<AppState>,
    engine: Arc<Engine>,
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
    let with_logprobs = params.logprobs.is_some();
    let on_text = {
        let (tx, model, cancel, first) = (tx.clone(), model.clone(), cancel.clone(), first.clone());
        let engine = engine.clone();
        // Completions' text offsets run on from chunk to chunk.
        let mut offset = 0;
        move |delta: &str, lps: &[TokenLogprobs]| {
            let is_first = first.get().is_none();
            first.get_or_init(|| start.elapsed().as_secs_f64());
            let lp = with_logprobs.then(|| {
                let v = logprobs::shaped(&engine, kind, lps, offset);
                offset += lps
                    .iter()
                    .map(|l| engine.tokenizer().token_text(l.token).map_or(0, |t| t.len()))
                    .sum::<usize>();
                v
            });
            // A closed channel means the client went away: stop within a step.
            if tx
                .send(chunk(&model, kind, id, Some(delta), None, is_first, lp).to_string())
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
                let status = if reason == "cancelled" { "cancelled" } else { "200" };
                state.metrics.outcome(status);
                let line = Logged {
                    id: Some(id),
                    method: Some(g.stats.method.clone()),
                    prompt_tokens: Some(g.prompt_token_ids.len()),
                    completion_tokens: Some(g.token_ids.len()),
                    accepted_tokens: Some(g.stats.accepted_tokens),
                    error: (status == "cancelled").then(|| "the client went away".into()),
                    ..Logged::default()
                };
                log::write(&state, kind, status, &line, start, first);
                send(&chunk(
                    &model,
                    kind,
                    id,
                    None,
                    Some(reason),
                    first.is_none(),
                    None,
                ));
                if include_usage {
                    let mut u = chunk(&model, kind, id, None, None, false, None);
                    u["choices"] = json!([]);
                    u["usage"] = json!(usage(std::slice::from_ref(&g)));
                    send(&u);
                }
            }
            Err(e) => {
                state.metrics.outcome("error_after_headers");
                let e = ApiError::from(e);
                let line = Logged {
                    id: Some(id),
                    error: Some(e.message.clone()),
                    ..Logged::default()
                };
                log::write(&state, kind, "error_after_headers", &line, start, first);
                send(&json!(e.body()));
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
        proposer: None,
    });
    // Dropping the event stream (a client that went away) cancels the generation.
    let guard = CancelOnDrop(cancel);
    let events = futures_util::stream::poll_fn(move |cx| {
        let _ = &guard;
        rx.poll_recv(cx)
            .map(|m| m.map(|data| Ok::<Event, Infallible>(Event::default().data(data))))
    });
    let mut response = Sse::new(events).into_response();
    response.extensions_mut().insert(Logged {
        later: true,
        ..Logged::default()
    });
    response
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
