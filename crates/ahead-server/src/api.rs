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
    /// vanilla | draft | medusa | lookahead | prompt-lookup | auto
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
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    pub ahead: Option<AheadOptions>,
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
    pub content: MessageContent,
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
    pub ahead: SpecUsage,
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
