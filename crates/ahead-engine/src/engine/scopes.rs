//! What drafters learn across requests (token recycling's table, suffix decoding's store),
//! kept per scope: the requests of a scope teach each other, and no other scope drafts from
//! it. Requests that name no scope share the engine's default one, the one a suffix store
//! file persists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::spec::recycling::{RecyclingProposer, SharedAdjacency};
use crate::spec::suffix::SuffixState;

/// One scope's shared drafting state.
#[derive(Debug)]
pub(crate) struct Scope {
    /// Made at the scope's first recycling request.
    recycled: OnceLock<SharedAdjacency>,
    pub suffix: SuffixState,
}

impl Scope {
    fn new(suffix: SuffixState) -> Self {
        Self {
            recycled: OnceLock::new(),
            suffix,
        }
    }

    /// The scope's recycling table.
    pub fn recycled(&self, vocab_size: usize) -> SharedAdjacency {
        self.recycled
            .get_or_init(|| RecyclingProposer::private_table(vocab_size))
            .clone()
    }
}

#[derive(Debug)]
pub(crate) struct Scopes {
    vocab_size: usize,
    default: Arc<Scope>,
    named: Mutex<HashMap<String, Arc<Scope>>>,
}

impl Scopes {
    pub fn new(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            default: Arc::new(Scope::new(SuffixState::in_memory(vocab_size))),
            named: Mutex::new(HashMap::new()),
        }
    }

    /// The default scope, its suffix store kept in `suffix`.
    pub fn with_default_suffix(mut self, suffix: SuffixState) -> Self {
        self.default = Arc::new(Scope::new(suffix));
        self
    }

    pub fn default_scope(&self) -> &Scope {
        &self.default
    }

    /// The scope named `name` (made empty at its first request), or the default one.
    pub fn get(&self, name: Option<&str>) -> Arc<Scope> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let mut named = self.named.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        named
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Scope::new(SuffixState::in_memory(self.vocab_size))))
            .clone()
    }
}
