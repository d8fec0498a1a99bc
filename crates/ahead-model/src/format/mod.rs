//! File formats: each module turns bytes into validated metadata and raw tensors.

pub mod convert;
pub mod gguf;
pub mod gguf_draft;
pub mod gguf_write;
pub mod hf_write;
pub mod llama2c_write;
pub mod safetensors;
pub mod safetensors_write;
