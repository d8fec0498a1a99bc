//! Errors of the pure algorithms.

/// Errors from sampling and distributions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A sampling parameter is out of range; names the parameter and the bound.
    #[error("invalid sampling parameter {name}: {value} ({expected})")]
    InvalidParam {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Logits or probabilities contain NaN or infinity where a finite number is required.
    #[error("non-finite value in {what} at index {index}")]
    NonFinite { what: &'static str, index: usize },
    /// A distribution has no probability mass left to sample from.
    #[error("empty distribution: {0}")]
    EmptyDistribution(&'static str),
    /// A token id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
}
