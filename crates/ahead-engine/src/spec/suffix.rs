//! Suffix decoding: drafts from a suffix tree of the request's own prompt and output and from
//! the engine's store of earlier requests' outputs (see `ahead_core::spec::suffix`). The store
//! learns each output when its request finishes. Another request's text can only ever be
//! proposed, never emitted: every draft is verified by the target.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ahead_core::spec::{suffix_tree, SuffixStore, SuffixTrie, SUFFIX_DEPTH};
use ahead_core::{Rng, SamplingParams};

use super::proposer::{Proposal, Proposer};
use crate::error::{EngineError, Result};

/// Draft nodes per matched token: a match of n tokens drafts at most n (SuffixDecoding's
/// default factor).
const SIZE_PER_MATCHED_TOKEN: f32 = 1.0;

/// Nodes whose path share falls below this are not drafted (SuffixDecoding's default).
const MIN_SCORE: f32 = 0.1;

/// Nodes a store holds by default: about 50 MB (some 100,000 tokens of outputs).
pub const SUFFIX_STORE_NODES: usize = 1 << 20;

/// The store an engine's requests share.
pub type SharedSuffixStore = Arc<RwLock<SuffixStore>>;

/// An engine's store, and the file it is kept in between runs, if any.
#[derive(Debug, Clone)]
pub struct SuffixState {
    pub store: SharedSuffixStore,
    pub path: Option<PathBuf>,
}

impl SuffixState {
    /// An empty store for a `vocab_size`-token model, kept in memory only.
    pub fn in_memory(vocab_size: usize) -> Self {
        Self {
            store: Arc::new(RwLock::new(SuffixStore::new(vocab_size, SUFFIX_STORE_NODES))),
            path: None,
        }
    }

    /// The store kept in `path`: read from it when it exists (a damaged file or one made for
    /// another vocabulary is an error, never silently emptied), else empty.
    pub fn from_file(path: &Path, vocab_size: usize) -> Result<Self> {
        let store = match std::fs::read(path) {
            Ok(bytes) => {
                SuffixStore::from_bytes(&bytes, vocab_size, SUFFIX_STORE_NODES).map_err(|source| {
                    EngineError::SuffixStore {
                        path: path.display().to_string(),
                        source,
                    }
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                SuffixStore::new(vocab_size, SUFFIX_STORE_NODES)
            }
            Err(source) => return Err(io_error(path, source)),
        };
        Ok(Self {
            store: Arc::new(RwLock::new(store)),
            path: Some(path.to_path_buf()),
        })
    }

    /// Writes the store to its file, if it has one: to a temporary file beside it, then
    /// renamed over it, so a crash mid-write leaves the old file whole.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = self
            .store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .to_bytes();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::Io {
        what: "suffix store",
        path: path.display().to_string(),
        source,
    }
}

pub struct SuffixProposer {
    /// This request's prompt and output so far.
    local: SuffixTrie,
    /// Tokens of the history pushed into `local`.
    fed: usize,
    store: SharedSuffixStore,
    /// Whether drafts read the store (not for seeded sampling, whose tokens would then depend
    /// on other requests).
    read_store: bool,
}

impl SuffixProposer {
    pub fn new(store: SharedSuffixStore, read_store: bool) -> Self {
        Self {
            local: SuffixTrie::new(SUFFIX_DEPTH),
            fed: 0,
            store,
            read_store,
        }
    }

    fn feed(&mut self, history: &[u32]) {
        if history.len() < self.fed {
            // A new sequence: start over.
            self.local = SuffixTrie::new(SUFFIX_DEPTH);
            self.fed = 0;
        }
        for &t in &history[self.fed..] {
            self.local.push(t);
        }
        self.fed = history.len();
    }
}

impl Proposer for SuffixProposer {
    fn name(&self) -> &'static str {
        "suffix"
    }

    fn prefill(&mut self, prompt: &[u32]) -> Result<()> {
        self.feed(prompt);
        Ok(())
    }

    /// Its trees stop where their shares run out and where the match is short.
    fn stops_own_drafts(&self) -> bool {
        true
    }

    fn offers_as_long_as_its_match(&self) -> bool {
        true
    }

    fn finish(&mut self, output: &[u32]) {
        let mut store = self
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        store.insert(output);
    }

    fn propose(&mut self, history: &[u32], k: usize, _: &SamplingParams, _: &mut Rng) -> Result<Proposal> {
        let Some(&last) = history.last() else {
            return Ok(Proposal::default());
        };
        self.feed(history);
        let context = &history[history.len().saturating_sub(SUFFIX_DEPTH)..];
        let store = self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut sources = Vec::with_capacity(2);
        if let Some(m) = self.local.longest_match(context) {
            sources.push((&self.local, m));
        }
        if self.read_store {
            if let Some(m) = store.trie().longest_match(context) {
                sources.push((store.trie(), m));
            }
        }
        Ok(Proposal::from(suffix_tree(
            last,
            &sources,
            k,
            SIZE_PER_MATCHED_TOKEN,
            MIN_SCORE,
        )))
    }
}
