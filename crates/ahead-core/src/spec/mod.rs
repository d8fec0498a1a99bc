//! The speculation framework's pure parts: token trees (and EAGLE-2's dynamic ones), exact
//! acceptance, prompt lookup, token recycling's table and the controller that picks the draft length.

pub mod accept;
pub mod controller;
pub mod dynamic_tree;
pub mod lookahead;
pub mod lookup;
pub mod medusa_tree;
pub mod ngram_cache;
pub mod recycling;
pub mod suffix;
pub mod tree;

pub use accept::{accept, accept_typical, Acceptance};
pub use controller::{cost_at, Controller, Learned};
pub use dynamic_tree::DynamicTree;
pub use lookahead::{candidate_tree, LookaheadConfig, NgramPool};
pub use lookup::{IndexedLookup, PromptLookup};
pub use medusa_tree::MedusaTree;
pub use ngram_cache::{CacheHit, NgramCache, NgramCacheError, NgramCounter};
pub use recycling::{grow_tree, Adjacency};
pub use suffix::{suffix_tree, Match, SuffixStore, SuffixStoreError, SuffixTrie, SUFFIX_DEPTH};
pub use tree::{DraftDist, TokenTree};
