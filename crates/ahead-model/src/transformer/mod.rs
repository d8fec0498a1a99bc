//! The decoder-only transformer every supported architecture is: the architecture table,
//! config, kernels, KV cache, forward.

pub mod arch;
mod attention;
mod block;
pub mod config;
pub mod cpu;
pub mod input;
pub mod kernels;
pub mod kv_cache;
mod lanes;
pub mod linear;
pub mod model;
pub mod packed;
pub mod q8;
pub mod rope;
mod spin_pool;
pub mod synthetic;

pub use arch::{Activation, ArchSpec, SlidingPattern, ARCHITECTURES};
pub use config::{
    Architecture, LayerAttention, Llama3RopeScaling, ModelConfig, RopeScaling, RopeStyle, YarnRopeScaling,
};
pub use input::{AttentionMask, ForwardInput, ForwardOutput, Logits};
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use model::{BatchItem, LayerWeights, Model, ModelWeights};
pub use spin_pool::run_tasks;
