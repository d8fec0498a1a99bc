//! What a client receives: full responses, stream chunks, usage with the speculation
//! counters, finish reasons, and the metrics recorded for each generation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ahead_engine::{Engine, FinishReason, Generation};
use serde_json::{json, Value};

use crate::api::{PromptTokensDetails, SpecUsage, Usage};
use crate::logprobs;
use crate::state::AppState;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which endpoint a request came through (response and chunk shapes differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Completion,
    Chat,
}

impl Kind {
    /// The request field that carries the prompt.
    pub(crate) fn prompt_field(self) -> &'static str {
        match self {
            Self::Completion => "prompt",
            Self::Chat => "messages",
        }
    }
}

/// The finish reason a client sees: a generation stopped by the time limit was cut short.
pub(crate) fn finish_for(g: &Generation, timed_out: &AtomicBool) -> &'static str {
    if g.finish_reason == FinishReason::Cancelled && timed_out.load(Ordering::Relaxed) {
        "length"
    } else {
        finish(g.finish_reason)
    }
}

/// Counts a finished generation in the metrics.
pub(crate) fn record(s: &AppState, g: &Generation, seconds: f64, first_token: Option<f64>) {
    let m = &s.metrics;
    m.prompt_tokens
        .fetch_add(g.prompt_token_ids.len() as u64, Ordering::Relaxed);
    m.cached_prompt_tokens
        .fetch_add(g.stats.cached_prompt_tokens as u64, Ordering::Relaxed);
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

pub(crate) fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

pub(crate) fn usage(gens: &[Generation]) -> Usage {
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
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: gens.first().map_or(0, |g| g.stats.cached_prompt_tokens),
        },
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

pub(crate) fn response_id(kind: Kind, id: u64) -> String {
    match kind {
        Kind::Completion => format!("cmpl-{id}"),
        Kind::Chat => format!("chatcmpl-{id}"),
    }
}

pub(crate) fn full_response(
    model: &str,
    engine: &Engine,
    kind: Kind,
    id: u64,
    gens: &[Generation],
    timed_out: &AtomicBool,
    with_logprobs: bool,
) -> Value {
    let choices: Vec<Value> = gens
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let lp = if with_logprobs {
                logprobs::shaped(engine, kind, &g.logprobs, 0)
            } else {
                Value::Null
            };
            match kind {
                Kind::Completion => json!({"index": i, "text": g.text, "logprobs": lp, "finish_reason": finish_for(g, timed_out)}),
                Kind::Chat => json!({"index": i, "message": {"role": "assistant", "content": g.text}, "logprobs": lp, "finish_reason": finish_for(g, timed_out)}),
            }
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
pub(crate) fn chunk(
    model: &str,
    kind: Kind,
    id: u64,
    text: Option<&str>,
    reason: Option<&str>,
    first: bool,
    logprobs: Option<Value>,
) -> Value {
    let logprobs = logprobs.unwrap_or(Value::Null);
    let choice = match kind {
        Kind::Completion => {
            json!({"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": reason})
        }
        Kind::Chat => {
            let mut delta = serde_json::Map::new();
            if first {
                delta.insert("role".into(), json!("assistant"));
            }
            if let Some(t) = text {
                delta.insert("content".into(), json!(t));
            }
            json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason})
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
