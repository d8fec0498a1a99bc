//! The one error type of the model crate. Every variant names what went wrong and where.

use std::path::PathBuf;

/// Errors from loading, tokenizing and running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be opened or read. (The cause is in the message, not chained, so
    /// it is printed once.)
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// A header field or structure in a model file is invalid: names the file and the field.
    #[error("{file}: invalid {field}: {reason}")]
    Format {
        file: String,
        field: String,
        reason: String,
    },
    /// The file is valid but asks for something ahead does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Loading or using a tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rendering a chat template failed.
    #[error("chat template: {0}")]
    Template(String),
    /// A KV cache operation was refused (instead of silently doing nothing).
    #[error("kv cache: {0}")]
    Cache(String),
    /// A forward input is inconsistent (lengths, positions, mask, token ids).
    #[error("invalid forward input: {0}")]
    Input(String),
    /// A tensor's shape does not match what the architecture needs.
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor the architecture needs is missing from the file.
    #[error("{file}: missing tensor {name}")]
    MissingTensor { file: String, name: String },
}

impl ModelError {
    /// Shorthand for a [`ModelError::Format`].
    pub fn format(file: impl Into<String>, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Format {
            file: file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`ModelError::Io`].
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

/// Result alias of the model crate.
pub type Result<T> = std::result::Result<T, ModelError>;
