//! ahead-train: trains what speculative decoding needs from a target model.
//!
//! `distill` trains a small Llama-shaped draft on a text corpus with the target's full next-token
//! distributions as soft labels (the loss is KL(target || draft) up to the target's entropy), and
//! reports how often the draft's top choice matches the target's on held-out text, which is what
//! greedy acceptance depends on. The draft is built with candle's autograd (`student`), then
//! copied into an inference [`ahead_model::Model`]. `medusa` trains Medusa heads on a frozen
//! base's hidden states (Medusa-1). `instructions` makes chat tasks from corpora, and
//! `chat_data` holds the target's own answers to them (self-distillation data for every trainer);
//! `chat_draft` trains a draft for a chat target on them, over the target's own embedding and a
//! vocabulary-pruned classifier.

pub mod chat_data;
pub mod chat_draft;
pub mod corpus;
pub mod distill;
pub mod eagle;
pub mod error;
pub mod instructions;
pub mod medusa;
pub mod student;

pub use chat_draft::{train_draft_on_chat, ChatDraftOptions, ChatDraftReport, SubsetScore, TrainedChatDraft};
pub use distill::{distill_draft, DistillOptions, DistillReport, Progress};
pub use eagle::{train_eagle, EagleOptions, EagleReport, TrainedEagle};
pub use error::{Result, TrainError};
pub use medusa::{train_medusa, train_medusa_on_chat, MedusaOptions, MedusaReport, TrainedMedusa};
pub use student::DraftShape;
