//! Request bodies into typed requests, naming the field a value does not fit (serde names no
//! field inside a flattened struct, so the flattened parts are checked on their own first), and
//! chat messages into the engine's.

use ahead_model::tokenizer::ChatMessage;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ChatMessageIn, Common, Unserved};
use crate::error::ApiError;
use crate::params::{truncated, ROLES};

/// `value` as `T`; a value of the wrong type is a 400 naming its field (`param`, and in the
/// message).
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, Unserved>(&value).map_err(field_error)?;
    serde_path_to_error::deserialize::<_, Common>(&value).map_err(field_error)?;
    serde_path_to_error::deserialize(value).map_err(field_error)
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    if path.is_empty() || path == "." {
        return ApiError::invalid(format!("the request body: {inner}"), None);
    }
    ApiError::invalid(format!("{path}: {inner}"), Some(&path))
}

/// The engine's messages: known roles, text content (an assistant turn may have none), an
/// assistant's tool calls and a tool turn's call id, for the template.
pub(crate) fn messages(input: &[ChatMessageIn]) -> Result<Vec<ChatMessage>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::invalid("messages is empty", Some("messages")));
    }
    let mut out = Vec::with_capacity(input.len());
    for (i, m) in input.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::invalid(
                format!("unknown role {:?}: one of {ROLES:?}", truncated(&m.role)),
                Some("messages"),
            ));
        }
        let calls = m.tool_calls.as_ref().filter(|c| !c.is_empty());
        if let Some(calls) = calls {
            if m.role != "assistant" {
                return Err(ApiError::invalid(
                    "only assistant messages carry tool calls",
                    Some(&format!("messages[{i}].tool_calls")),
                ));
            }
            if let Some(bad) = calls
                .iter()
                .position(|c| c["function"]["name"].as_str().is_none())
            {
                return Err(ApiError::invalid(
                    "a tool call needs function.name",
                    Some(&format!("messages[{i}].tool_calls[{bad}]")),
                ));
            }
        }
        let text = match &m.content {
            Some(content) => content.text().map_err(|kind| {
                ApiError::invalid(
                    format!(
                        "content parts of type {:?} are not supported; only text",
                        truncated(&kind)
                    ),
                    Some("messages"),
                )
            })?,
            None if m.role == "assistant" => String::new(),
            None => {
                return Err(ApiError::invalid(
                    format!("a {} message needs content", m.role),
                    Some(&format!("messages[{i}].content")),
                ))
            }
        };
        out.push(ChatMessage {
            tool_calls: calls.map(|c| serde_json::Value::Array(c.clone())),
            tool_call_id: m.tool_call_id.clone(),
            ..ChatMessage::new(&m.role, &text)
        });
    }
    Ok(out)
}
