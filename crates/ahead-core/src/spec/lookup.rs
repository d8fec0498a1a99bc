//! Prompt lookup: draft the tokens that followed the most recent earlier occurrence of the
//! context's last n-gram (in the prompt or the output). Deterministic, so its q is one-hot.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::ngram_cache::{context_keys, MAX_CONTEXT};

/// n-gram sizes and draft length of prompt lookup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptLookup {
    /// Longest n-gram tried first; shorter ones down to `min_ngram` if it has no match.
    pub max_ngram: usize,
    pub min_ngram: usize,
    /// With an n-gram cache: a draft stops before the token at which the product of the
    /// cache's confidences along it falls below this.
    pub min_confidence: f32,
}

impl Default for PromptLookup {
    fn default() -> Self {
        Self {
            max_ngram: 3,
            min_ngram: 1,
            min_confidence: 0.5,
        }
    }
}

impl PromptLookup {
    /// Up to `k` tokens continuing `history`, or none when no n-gram matches.
    pub fn propose(&self, history: &[u32], k: usize) -> Vec<u32> {
        if k == 0 {
            return Vec::new();
        }
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if history.len() <= n {
                continue;
            }
            let tail = &history[history.len() - n..];
            // Most recent earlier occurrence whose continuation is non-empty.
            for start in (0..history.len() - n).rev() {
                if &history[start..start + n] == tail {
                    let from = start + n;
                    let to = (from + k).min(history.len());
                    return history[from..to].to_vec();
                }
            }
        }
        Vec::new()
    }
}

/// Prompt lookup with an incremental index: each step costs O(n) instead of a scan of the
/// whole context. Between calls the history may only grow (one sequence per index); a shorter
/// history is taken as a new sequence and resets the index. N-grams are keyed by their 64-bit
/// hash (the n-gram cache's, so no allocation per n-gram): a collision could only change a
/// draft, never the output.
#[derive(Debug, Clone, Default)]
pub struct IndexedLookup {
    pub config: PromptLookup,
    /// For each n-gram size (index n - min_ngram): n-gram hash -> start of its latest
    /// continuation.
    index: Vec<HashMap<u64, usize, BuildHasherDefault<KeyIsHash>>>,
    /// Length of the history the index was built from.
    seen: usize,
}

impl IndexedLookup {
    pub fn new(config: PromptLookup) -> Self {
        Self {
            config,
            index: Vec::new(),
            seen: 0,
        }
    }

    /// Same result as [`PromptLookup::propose`].
    pub fn propose(&mut self, history: &[u32], k: usize) -> Vec<u32> {
        if k == 0 {
            return Vec::new();
        }
        self.update(history);
        match self.find(history, history) {
            Some((from, _)) => history[from..(from + k).min(history.len())].to_vec(),
            None => Vec::new(),
        }
    }

    /// The token that followed the latest earlier occurrence of the longest n-gram ending
    /// `tail` (committed tokens, perhaps followed by drafts), with that n; `history` is the
    /// committed sequence.
    pub fn next_after(&mut self, history: &[u32], tail: &[u32]) -> Option<(u32, usize)> {
        self.update(history);
        self.find(history, tail).map(|(from, n)| (history[from], n))
    }

    /// Indexes every n-gram of `history` not indexed yet that ends before its last token.
    fn update(&mut self, history: &[u32]) {
        let (lo, hi) = (self.config.min_ngram.max(1), self.config.max_ngram);
        if hi < lo {
            return;
        }
        if history.len() < self.seen {
            self.index.clear();
            self.seen = 0;
        }
        self.index.resize_with(hi - lo + 1, Default::default);
        // Continuation start = end + 1.
        let done = self.seen.saturating_sub(1);
        for end in done..history.len().saturating_sub(1) {
            for (n, key) in context_keys(&history[..=end], hi).skip(lo - 1) {
                self.index[n - lo].insert(key, end + 1);
            }
        }
        self.seen = history.len();
    }

    /// Start of the continuation of the longest indexed n-gram ending `tail`, and that n. An
    /// n-gram must leave a token before it (as in the scan), so n < `tail.len()`.
    fn find(&self, history: &[u32], tail: &[u32]) -> Option<(usize, usize)> {
        let lo = self.config.min_ngram.max(1);
        let mut keys = [0u64; MAX_CONTEXT];
        for (n, key) in context_keys(tail, self.config.max_ngram.min(MAX_CONTEXT)) {
            keys[n - 1] = key;
        }
        (lo..=self.config.max_ngram.min(MAX_CONTEXT)).rev().find_map(|n| {
            if tail.len() <= n || history.len() <= n {
                return None;
            }
            let from = *self.index.get(n - lo)?.get(&keys[n - 1])?;
            Some((from, n))
        })
    }
}

/// A hasher for keys that are already uniform 64-bit hashes.
#[derive(Debug, Clone, Copy, Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is folded in, so the hasher stays correct.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_the_most_recent_match_of_the_longest_ngram() {
        let l = PromptLookup {
            max_ngram: 2,
            min_ngram: 1,
            ..PromptLookup::default()
        };
        // "a b c d a b" -> the bigram "a b" occurred at 0, followed by "c d a b".
        assert_eq!(l.propose(&[1, 2, 3, 4, 1, 2], 3), vec![3, 4, 1]);
        // The most recent occurrence wins: "1 2 7 .. 1 2 9 .. 1 2".
        assert_eq!(l.propose(&[1, 2, 7, 5, 1, 2, 9, 5, 1, 2], 2), vec![9, 5]);
        // Falls back to a unigram.
        assert_eq!(l.propose(&[5, 6, 8, 6], 2), vec![8, 6]);
        assert!(l.propose(&[1, 2, 3], 4).is_empty());
        assert!(l.propose(&[1, 1], 0).is_empty());
        assert!(l.propose(&[], 3).is_empty());
    }

    #[test]
    fn the_index_agrees_with_the_scan_as_the_history_grows() {
        let config = PromptLookup {
            max_ngram: 3,
            min_ngram: 1,
            min_confidence: 0.5,
        };
        let mut indexed = IndexedLookup::new(config);
        let mut state = 7u64;
        let mut history = Vec::new();
        for step in 0..400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            history.push(((state >> 33) % 6) as u32);
            let k = step % 5;
            assert_eq!(
                indexed.propose(&history, k),
                config.propose(&history, k),
                "step {step}"
            );
            // One token at a time, with drafts after the committed tokens: the same as a scan
            // of the committed history for the n-gram that ends the drafts.
            let drafts = [((state >> 40) % 6) as u32];
            let mut tail = history.clone();
            tail.extend(drafts);
            let scan = (1..=3).rev().find_map(|n| {
                (history.len() > n).then_some(())?;
                let gram = &tail[tail.len() - n..];
                (0..history.len() - n)
                    .rev()
                    .find(|&s| &history[s..s + n] == gram)
                    .map(|s| (history[s + n], n))
            });
            assert_eq!(indexed.next_after(&history, &tail), scan, "step {step}");
        }
        // A shorter history is another sequence: the index starts again.
        assert_eq!(indexed.propose(&[4, 5, 4], 2), config.propose(&[4, 5, 4], 2));
    }
}
