//! ahead-core: the pure, deterministic parts of ahead.
//!
//! Distributions and the sampling warpers (temperature, top-k, top-p, min-p, repetition
//! penalty), and a small seeded RNG the caller owns. No tensors, no I/O, no async: everything
//! here is plain slices in, plain values out, so it can be tested exhaustively.

pub mod error;
pub mod rng;
pub mod sampling;
pub mod spec;

pub use error::CoreError;
pub use rng::Rng;
pub use sampling::{Distribution, SamplingParams};
