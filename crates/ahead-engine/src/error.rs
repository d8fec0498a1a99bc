//! Errors of the engine.

use ahead_core::spec::NgramCacheError;
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
    /// The engine itself failed (a batch worker stopped, a step panicked); not the request's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;
