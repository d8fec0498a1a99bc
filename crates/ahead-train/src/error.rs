//! Errors of training: bad options or corpora, model errors, tensor errors.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("invalid training option: {0}")]
    Options(String),
    #[error("corpus: {0}")]
    Corpus(String),
    #[error("training data: {0}")]
    Data(String),
    #[error(transparent)]
    Model(#[from] ahead_model::ModelError),
    #[error(transparent)]
    Core(#[from] ahead_core::CoreError),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, TrainError>;
