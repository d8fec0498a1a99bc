//! The speculation framework's pure parts: token trees, exact acceptance, prompt lookup and the
//! controller that picks the draft length.

pub mod accept;
pub mod controller;
pub mod lookup;
pub mod tree;

pub use accept::{accept, Acceptance};
pub use controller::Controller;
pub use lookup::{IndexedLookup, PromptLookup};
pub use tree::{DraftDist, TokenTree};
