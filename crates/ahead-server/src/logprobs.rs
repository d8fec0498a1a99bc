//! Log-probabilities in OpenAI's two shapes: the completions endpoint's parallel lists
//! (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) and chat's `content` entries
//! (`token`, `logprob`, `bytes`, `top_logprobs`). A token's text is its own decoding (a piece of
//! a character decodes to U+FFFD; `bytes` are that text's bytes).

use ahead_engine::{Engine, TokenLogprobs};
use serde_json::{json, Map, Value};

use crate::api::Common;
use crate::error::ApiError;
use crate::respond::Kind;

/// Most alternatives per token: OpenAI's limits (5 for completions, 20 for chat).
const MAX_COMPLETION_LOGPROBS: u64 = 5;
const MAX_CHAT_TOP_LOGPROBS: u64 = 20;

/// How many alternatives per token the request asks for, if it asks for log-probabilities:
/// completions take `logprobs: N`, chat `logprobs: true` with `top_logprobs: N`.
pub(crate) fn requested(kind: Kind, c: &Common) -> Result<Option<usize>, ApiError> {
    let bad = |m: String, p: &str| Err(ApiError::invalid(m, Some(p)));
    match (kind, &c.logprobs) {
        (Kind::Completion, None | Some(Value::Null)) => Ok(None),
        (Kind::Completion, Some(v)) => match v.as_u64() {
            Some(n) if n <= MAX_COMPLETION_LOGPROBS => Ok(Some(n as usize)),
            _ => bad(
                format!("logprobs must be an integer from 0 to {MAX_COMPLETION_LOGPROBS}, got {v}"),
                "logprobs",
            ),
        },
        (Kind::Chat, l) => {
            let on = match l {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return bad(format!("logprobs must be true or false, got {v}"), "logprobs"),
            };
            match (on, c.top_logprobs) {
                (_, Some(n)) if n > MAX_CHAT_TOP_LOGPROBS => bad(
                    format!("top_logprobs must be from 0 to {MAX_CHAT_TOP_LOGPROBS}, got {n}"),
                    "top_logprobs",
                ),
                (false, Some(n)) if n > 0 => bad("top_logprobs needs logprobs: true".into(), "top_logprobs"),
                (false, _) => Ok(None),
                (true, n) => Ok(Some(n.unwrap_or(0) as usize)),
            }
        }
    }
}

/// The `logprobs` of a choice (or of a stream chunk) holding `entries`; `offset` is the text
/// offset of the first (completions' `text_offset`).
pub(crate) fn shaped(engine: &Engine, kind: Kind, entries: &[TokenLogprobs], offset: usize) -> Value {
    let tok = engine.tokenizer();
    let text = |t: u32| tok.token_text(t).unwrap_or_default();
    match kind {
        Kind::Completion => {
            let mut at = offset;
            let (mut tokens, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
            for e in entries {
                let t = text(e.token);
                offsets.push(at);
                at += t.len();
                tokens.push(t);
                lps.push(e.logprob);
                let top: Map<String, Value> = e.top.iter().map(|&(id, lp)| (text(id), json!(lp))).collect();
                tops.push(top);
            }
            json!({"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
        }
        Kind::Chat => {
            let entry = |id: u32, lp: f32| {
                let t = text(id);
                json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
            };
            let content: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = entry(e.token, e.logprob);
                    v["top_logprobs"] = e.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
                    v
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
    }
}
