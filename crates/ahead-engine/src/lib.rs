//! ahead-engine: generation on top of `ahead-model`.
//!
//! [`Engine`] is the facade: build it from a model source, then [`Engine::generate`] over a
//! batch of prompts with [`GenerateParams`], getting text, ids and [`Stats`] back.
//! Stop conditions live in [`commit`]: every token, even from a multi-token step, is committed
//! one at a time.

pub mod batch;
pub mod builder;
pub mod commit;
mod decode;
pub use decode::StepInspector;
pub mod engine;
pub mod error;
pub mod grammar;
mod learned;
pub mod logprobs;
pub mod output;
pub mod params;
pub mod prefix;
pub mod spec;

pub use ahead_core::SamplingParams;
pub use batch::{Job, Scheduler};
pub use builder::{default_ngram_cache, EngineBuilder};
pub use engine::{DraftMode, Engine, MAX_DRAFT};
pub use error::{EngineError, Result};
pub use grammar::Grammar;
pub use logprobs::TokenLogprobs;
pub use output::{FinishReason, Generation, Stats};
pub use params::{GenerateParams, MedusaAcceptance, Method, Prompt};
