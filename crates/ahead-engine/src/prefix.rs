//! Prefix reuse: the KV cache of finished requests' tokens, kept within a byte budget (least
//! recently used evicted first), so that a request starting with the same tokens (the next
//! turn of a conversation, a shared system prompt) copies those rows instead of computing
//! them again. The rows are the ones a fresh prefill would compute (every forward row is
//! batch-invariant), so output is identical with and without it. Matches compare token ids,
//! not hashes: nothing can collide.

use std::sync::{Arc, Mutex};

use ahead_model::KvCache;

/// Fewer shared tokens than this are computed afresh: copying is not worth a lookup.
const MIN_REUSE: usize = 16;

struct Entry {
    tokens: Vec<u32>,
    cache: Arc<KvCache>,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    list: Vec<Entry>,
    bytes: usize,
    clock: u64,
}

/// Finished sequences' caches, by their tokens.
pub struct PrefixCache {
    budget: usize,
    bytes_per_token: usize,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for PrefixCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache")
            .field("budget", &self.budget)
            .finish()
    }
}

impl PrefixCache {
    /// At most `budget` bytes of caches whose tokens take `bytes_per_token` each.
    pub fn new(budget: usize, bytes_per_token: usize) -> Self {
        Self {
            budget,
            bytes_per_token: bytes_per_token.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cache sharing the longest start with `prompt`, and how many of its tokens to reuse:
    /// at most all of the prompt but its last token (which the first step feeds).
    pub fn lookup(&self, prompt: &[u32]) -> Option<(Arc<KvCache>, usize)> {
        let most = prompt.len().saturating_sub(1);
        let mut e = self.entries();
        e.clock += 1;
        let clock = e.clock;
        let best = e
            .list
            .iter_mut()
            .map(|entry| {
                let shared = entry
                    .tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (shared.min(most), entry)
            })
            .max_by_key(|(shared, _)| *shared)?;
        let (shared, entry) = best;
        if shared < MIN_REUSE {
            return None;
        }
        entry.last_used = clock;
        Some((entry.cache.clone(), shared))
    }

    /// Keeps the first `len` tokens of `cache`, which holds `tokens`' keys and values; a cache
    /// whose tokens another entry already starts with is not kept twice (the longer one stays).
    pub fn insert(&self, tokens: &[u32], cache: &KvCache) {
        let len = tokens.len().min(cache.len());
        let bytes = len * self.bytes_per_token;
        if len < MIN_REUSE || bytes > self.budget {
            return;
        }
        let mut e = self.entries();
        if e.list
            .iter()
            .any(|x| x.tokens.len() >= len && x.tokens[..len] == tokens[..len])
        {
            return;
        }
        let Ok(copy) = cache.prefix(len) else { return };
        // Entries this one extends are superseded.
        let before = e.list.len();
        e.list
            .retain(|x| !(x.tokens.len() <= len && tokens[..x.tokens.len()] == x.tokens[..]));
        if e.list.len() != before {
            e.bytes = e.list.iter().map(|x| x.bytes).sum();
        }
        while e.bytes + bytes > self.budget {
            let Some(oldest) = (0..e.list.len()).min_by_key(|&i| e.list[i].last_used) else {
                break;
            };
            let gone = e.list.swap_remove(oldest);
            e.bytes -= gone.bytes;
        }
        e.clock += 1;
        let last_used = e.clock;
        e.bytes += bytes;
        e.list.push(Entry {
            tokens: tokens[..len].to_vec(),
            cache: Arc::new(copy),
            bytes,
            last_used,
        });
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }
}
