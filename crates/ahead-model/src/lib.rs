//! ahead-model: load Llama-family models from llama2.c, GGUF, safetensors folders and the hub;
//! tokenize and detokenize; run the forward pass speculative decoding needs.
//!
//! The model is immutable ([`Model`]); all per-sequence state lives in a [`KvCache`] the caller
//! owns. `Model::forward` returns logits for every input row, with explicit positions and a
//! causal or token-tree mask.

pub mod eagle;
pub mod error;
pub mod format;
pub mod load;
pub mod medusa;
pub mod tensor;
pub mod tokenizer;
pub mod transformer;

pub use error::{ModelError, Result};
pub use load::{load, Format, LoadOptions, LoadedModel, ModelInfo, ModelSource};
pub use tensor::{RawTensor, TensorDType};
pub use tokenizer::Tokenizer;
pub use transformer::{AttentionMask, BatchItem, ForwardInput, ForwardOutput, KvCache, Model, ModelConfig};
