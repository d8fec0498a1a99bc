//! Errors of the engine.

use ahead_core::spec::{NgramCacheError, SuffixStoreError};
use ahead_core::CoreError;
use ahead_model::ModelError;

/// Errors from building an engine or generating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] CoreError),
    /// A request is invalid (empty prompt, too long, bad parameter); names what and why.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The requested method is not available in this build or for this model.
    #[error("method {method} is not available: {reason}")]
    MethodUnavailable { method: &'static str, reason: String },
    /// An n-gram cache file is unreadable or malformed.
    #[error("n-gram cache {path}: {source}")]
    NgramCache {
        path: String,
        #[source]
        source: NgramCacheError,
    },
    /// A suffix store file is malformed or made for another vocabulary.
    #[error("suffix store {path}: {source}")]
    SuffixStore {
        path: String,
        #[source]
        source: SuffixStoreError,
    },
    /// A file the engine keeps (a suffix store) could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The engine itself failed (a batch worker stopped, a step panicked); not the request's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;
