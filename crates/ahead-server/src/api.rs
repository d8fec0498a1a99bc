//! The OpenAI wire format: requests (unknown fields accepted, known-but-unsupported values
//! refused), responses, stream chunks, and the error body.

use serde::{Deserialize, Serialize};

/// `prompt` as OpenAI accepts it: a string, or token ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Ids(Vec<u32>),
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// ahead's extension field: speculation per request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AheadOptions {
    /// One of `Method::names`.
    pub method: Option<String>,
    pub num_draft: Option<usize>,
    /// Generate through end-of-sequence up to `max_tokens` (benchmarks; as vLLM's `ignore_eos`).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// Sampling and limits shared by both endpoints.
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    /// The newer name of `max_tokens` in chat requests.
    pub max_completion_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Extensions most OpenAI-compatible servers take (vLLM's names; `top_k` -1 is off).
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Token id (as a string) -> bias in [-100, 100].
    pub logit_bias: Option<std::collections::BTreeMap<String, f32>>,
    pub min_tokens: Option<usize>,
    /// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"schema": ...}}`.
    pub response_format: Option<serde_json::Value>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    /// A number of alternatives (completions) or a boolean (chat).
    pub logprobs: Option<serde_json::Value>,
    pub top_logprobs: Option<u64>,
    pub ahead: Option<AheadOptions>,
    /// OpenAI parameters ahead does not serve yet: refused when they ask for something.
    #[serde(flatten)]
    pub unserved: Unserved,
}

/// Parameters that change what a client gets back and that ahead does not implement yet. A
/// request that asks for any of them is refused by name (never silently served without it);
/// values that ask for nothing (`null`, `false`, `1`, `[]`, `"none"`) are accepted.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Unserved {
    pub best_of: Option<u64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub tools: Option<Vec<serde_json::Value>>,
    pub tool_choice: Option<serde_json::Value>,
    pub functions: Option<Vec<serde_json::Value>>,
    pub function_call: Option<serde_json::Value>,
}

impl Unserved {
    /// The first parameter that asks for something unserved, and why it is refused.
    pub fn first_asked(&self) -> Option<(&'static str, String)> {
        let unsupported =
            |name: &'static str| Some((name, format!("{name} is not supported by this server")));
        let no_choice = |v: &serde_json::Value| v.is_null() || matches!(v.as_str(), Some("none" | "auto"));
        let asked = [
            ("best_of", self.best_of.is_some_and(|n| n > 1)),
            ("echo", self.echo == Some(true)),
            ("suffix", self.suffix.as_ref().is_some_and(|s| !s.is_empty())),
            ("tools", self.tools.as_ref().is_some_and(|t| !t.is_empty())),
            (
                "tool_choice",
                self.tool_choice.as_ref().is_some_and(|v| !no_choice(v)),
            ),
            (
                "functions",
                self.functions.as_ref().is_some_and(|t| !t.is_empty()),
            ),
            (
                "function_call",
                self.function_call.as_ref().is_some_and(|v| !no_choice(v)),
            ),
        ];
        asked
            .into_iter()
            .find(|(_, a)| *a)
            .and_then(|(name, _)| unsupported(name))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub prompt: PromptInput,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    pub role: String,
    /// `null` in an assistant turn that only called tools (what clients send back).
    pub content: Option<MessageContent>,
    /// An assistant turn's calls (OpenAI's shape), rendered by templates that know them.
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A tool turn's call.
    pub tool_call_id: Option<String>,
}

/// A message's content: a string, or OpenAI's list of parts (only text parts are served).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl MessageContent {
    /// The text, or the kind of the first part that is not text.
    pub fn text(&self) -> Result<String, String> {
        match self {
            Self::Text(t) => Ok(t.clone()),
            Self::Parts(parts) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    (kind, _) => Err(kind.to_string()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| t.concat()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessageIn>,
    #[serde(flatten)]
    pub common: Common,
}

/// Token counts, plus ahead's speculation counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
    pub ahead: SpecUsage,
}

/// OpenAI's breakdown of the prompt: the tokens served from the prefix cache.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SpecUsage {
    pub method: String,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    pub target_forwards: usize,
    pub mean_accepted_length: f64,
}

/// `{"error": {...}}`, the OpenAI error body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}
