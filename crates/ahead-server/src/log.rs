//! One line per request on stderr, as text (`key=value`) or JSON: endpoint, status, method,
//! token counts, time to first token and total time; a client that went away is logged as such.
//! Handlers leave what they know in the response's extensions ([`Logged`]); a stream logs when
//! it ends.

use std::time::Instant;

use axum::response::Response;
use serde::Serialize;

use crate::respond::Kind;
use crate::state::{AppState, LogFormat};

/// What a response tells the log beyond its status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logged {
    pub id: Option<u64>,
    pub method: Option<String>,
    pub prompt_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    pub accepted_tokens: Option<usize>,
    pub error: Option<String>,
    /// A stream: its line is written when it ends, not with its headers.
    pub later: bool,
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    endpoint: &'static str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<f64>,
    total_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn endpoint(kind: Kind) -> &'static str {
    match kind {
        Kind::Completion => "/v1/completions",
        Kind::Chat => "/v1/chat/completions",
    }
}

/// Writes one request's line.
pub(crate) fn write(s: &AppState, kind: Kind, status: &str, l: &Logged, started: Instant, ttft: Option<f64>) {
    let line = Line {
        endpoint: endpoint(kind),
        status,
        id: l.id,
        method: l.method.as_deref(),
        prompt_tokens: l.prompt_tokens,
        completion_tokens: l.completion_tokens,
        accepted_tokens: l.accepted_tokens,
        ttft_ms: ttft.map(|t| (t * 1e4).round() / 10.0),
        total_ms: (started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        error: l.error.as_deref(),
    };
    let out = match s.cfg.log {
        LogFormat::Off => return,
        LogFormat::Json => serde_json::to_string(&line).unwrap_or_default(),
        LogFormat::Text => text(&line),
    };
    match s.captured_logs.get() {
        Some(lines) => {
            if let Ok(mut lines) = lines.lock() {
                lines.push(out);
            }
        }
        None => eprintln!("{out}"),
    }
}

/// `request endpoint=... status=...` with the fields that are known, in `Line`'s order.
fn text(l: &Line<'_>) -> String {
    let mut out = format!("request endpoint={} status={}", l.endpoint, l.status);
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!(" {k}={v}"));
        }
    };
    add("id", l.id.map(|v| v.to_string()));
    add("method", l.method.map(str::to_string));
    add("prompt_tokens", l.prompt_tokens.map(|v| v.to_string()));
    add("completion_tokens", l.completion_tokens.map(|v| v.to_string()));
    add("accepted_tokens", l.accepted_tokens.map(|v| v.to_string()));
    add("ttft_ms", l.ttft_ms.map(|v| v.to_string()));
    add("total_ms", Some(l.total_ms.to_string()));
    add("error", l.error.map(|e| format!("{e:?}")));
    out
}

/// Logs a finished response (not a stream's: it logs at its end).
pub(crate) fn response(s: &AppState, kind: Kind, response: &Response, started: Instant) {
    let logged = response.extensions().get::<Logged>().cloned().unwrap_or_default();
    if !logged.later {
        write(s, kind, response.status().as_str(), &logged, started, None);
    }
}
