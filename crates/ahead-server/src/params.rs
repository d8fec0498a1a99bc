//! From a request to generation parameters: validation of the common fields, the method and
//! its tuned defaults, seeds, and chat messages rendered through the model's template.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ahead_core::sampling::{LogitAdjust, MAX_LOGIT_BIAS};
use ahead_engine::{Engine, GenerateParams, Grammar, Method, Prompt, SamplingParams};
use ahead_model::tokenizer::ChatMessage;
use axum::http::StatusCode;

use crate::api::{self, Common};
use crate::error::ApiError;
use crate::state::ServerConfig;

/// Roles a chat message may have.
pub(crate) const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// At most the first 64 characters of a client's string, for error messages.
pub(crate) fn truncated(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The chat as the model's template renders it, tokenized so that only the template's own text
/// yields control tokens (a client's `<|im_end|>` stays text); for base models without a
/// template, a plain transcript: `role: content` lines (an assistant's tool calls as
/// `[call name(arguments)]` after its content), then `assistant:`.
pub(crate) fn render_chat(engine: &Engine, messages: &[ChatMessage]) -> Result<Prompt, ApiError> {
    let tok = engine.tokenizer();
    if tok.chat_template().is_none() {
        let mut out = String::new();
        for m in messages {
            out.push_str(&format!("{}: {}", m.role, m.content));
            for call in m
                .tool_calls
                .iter()
                .flat_map(|c| c.as_array().into_iter().flatten())
            {
                let f = &call["function"];
                let args = f["arguments"]
                    .as_str()
                    .map_or_else(|| f["arguments"].to_string(), str::to_string);
                out.push_str(&format!(
                    " [call {}({args})]",
                    f["name"].as_str().unwrap_or_default()
                ));
            }
            out.push('\n');
        }
        out.push_str("assistant:");
        return Ok(Prompt::Text(out));
    }
    tok.encode_chat(messages, true)
        .map(|chat| Prompt::Ids(chat.ids))
        .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))
}

/// Checks and converts the common fields into generation parameters.
pub(crate) fn params(cfg: &ServerConfig, c: &Common) -> Result<(GenerateParams, usize, bool), ApiError> {
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
        Some(name) => Method::from_name(name).ok_or_else(|| {
            ApiError::invalid(
                format!("unknown method {:?}: {}", truncated(name), Method::names()),
                Some("ahead.method"),
            )
        })?,
    };
    if let Some((name, why)) = c.unserved.first_asked() {
        return Err(ApiError::invalid(why, Some(name)));
    }
    let sampling = sampling(c)?;
    let adjust = adjust(c, max_tokens)?;
    let grammar = grammar(c)?;
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
        lookup: tuned.map_or_else(|| GenerateParams::default().lookup, |t| t.lookup),
        adjust,
        grammar,
        ..GenerateParams::default()
    };
    let usage = c.stream_options.as_ref().is_some_and(|o| o.include_usage);
    Ok((params, n, usage))
}

/// The request's sampler: OpenAI's ranges for its own fields (temperature 0-2), the engine's
/// for the extensions; an error names the field.
fn sampling(c: &Common) -> Result<SamplingParams, ApiError> {
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and 2, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_k = match c.top_k {
        None | Some(-1) => 0,
        Some(k) => usize::try_from(k).map_err(|_| {
            ApiError::invalid(
                format!("top_k must be -1 (off) or at least 0, got {k}"),
                Some("top_k"),
            )
        })?,
    };
    let sampling = SamplingParams {
        temperature,
        top_p: c.top_p.unwrap_or(1.0),
        top_k,
        min_p: c.min_p.unwrap_or(0.0),
        repetition_penalty: c.repetition_penalty.unwrap_or(1.0),
    };
    sampling.validate().map_err(|e| {
        let name = match &e {
            ahead_core::CoreError::InvalidParam { name, .. } => Some(*name),
            _ => None,
        };
        ApiError::invalid(e.to_string(), name)
    })?;
    Ok(sampling)
}

/// OpenAI's logit adjustments, in its ranges (the token ids are checked against the model at
/// serve time).
fn adjust(c: &Common, max_tokens: usize) -> Result<LogitAdjust, ApiError> {
    let penalty = |name: &str, v: Option<f32>| match v {
        Some(p) if !(p.is_finite() && (-2.0..=2.0).contains(&p)) => Err(ApiError::invalid(
            format!("{name} must be between -2 and 2, got {p}"),
            Some(name),
        )),
        p => Ok(p.unwrap_or(0.0)),
    };
    let mut logit_bias = Vec::new();
    for (id, &bias) in c.logit_bias.iter().flatten() {
        let id: u32 = id.parse().map_err(|_| {
            ApiError::invalid(
                format!("logit_bias keys are token ids, got {:?}", truncated(id)),
                Some("logit_bias"),
            )
        })?;
        if !(bias.is_finite() && bias.abs() <= MAX_LOGIT_BIAS) {
            return Err(ApiError::invalid(
                format!("logit_bias values must be between -100 and 100, got {bias}"),
                Some("logit_bias"),
            ));
        }
        logit_bias.push((id, bias));
    }
    let min_tokens = c.min_tokens.unwrap_or(0);
    if min_tokens > max_tokens {
        return Err(ApiError::invalid(
            format!("min_tokens ({min_tokens}) must not exceed max_tokens ({max_tokens})"),
            Some("min_tokens"),
        ));
    }
    Ok(LogitAdjust {
        presence_penalty: penalty("presence_penalty", c.presence_penalty)?,
        frequency_penalty: penalty("frequency_penalty", c.frequency_penalty)?,
        logit_bias,
        min_tokens,
    })
}

/// The grammar `response_format` asks for: none for `text`, any JSON object, or JSON matching
/// `json_schema.schema`.
fn grammar(c: &Common) -> Result<Option<Grammar>, ApiError> {
    let Some(format) = c.response_format.as_ref().filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let bad = |m: &str| ApiError::invalid(m, Some("response_format"));
    match format.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::JsonObject)),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    bad("response_format json_schema needs json_schema.schema, a JSON schema object")
                })?;
            Ok(Some(Grammar::JsonSchema(schema.clone())))
        }
        _ => Err(bad(
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

/// A seed for a request that gave none.
pub(crate) fn fresh_seed() -> u64 {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ahead_engine::GenerateParams;

    fn request(body: serde_json::Value) -> Common {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn the_configured_methods_settings_reach_requests_that_name_no_method() {
        // A tuned prompt-lookup confidence stop (what `serve --config` puts in the defaults).
        let mut defaults = GenerateParams {
            method: Method::PromptLookup,
            ..GenerateParams::default()
        };
        defaults.lookup.min_confidence = 0.25;
        let cfg = ServerConfig {
            defaults,
            ..ServerConfig::default()
        };
        let (p, _, _) = params(&cfg, &request(serde_json::json!({"max_tokens": 4}))).unwrap();
        assert_eq!(p.method, Method::PromptLookup);
        assert_eq!(p.lookup.min_confidence, 0.25);
        // Another method named by the request gets its own defaults, not the tuned ones.
        let (p, _, _) = params(
            &cfg,
            &request(serde_json::json!({"max_tokens": 4, "ahead": {"method": "draft"}})),
        )
        .unwrap();
        assert_eq!(p.lookup, GenerateParams::default().lookup);
    }
}
