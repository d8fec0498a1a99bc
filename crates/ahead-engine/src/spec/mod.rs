//! Proposers that draft tokens for the target to verify, and the measured costs the controller
//! needs. The pure parts (trees, acceptance, prompt lookup, controller) live in `ahead_core::spec`.

mod choosing;
pub mod cost;
pub mod draft;
pub mod eagle;
mod eagle_tree;
pub mod lookahead;
pub mod medusa;
pub mod merged;
pub mod oracle;
mod pair;
pub mod proposer;
pub mod recycling;
pub mod suffix;

pub use choosing::ChoosingProposer;
pub use draft::{DraftModel, RetokenizingDraft};
pub use eagle::EagleProposer;
pub use lookahead::LookaheadProposer;
pub use medusa::{HybridDraft, MedusaProposer};
pub use merged::MergedProposer;
pub use oracle::OracleProposer;
pub use proposer::{Features, Needs, NoDraft, Outcome, PromptLookupProposer, Proposal, Proposer, SideBranch};
pub use recycling::RecyclingProposer;
pub use suffix::SuffixProposer;
