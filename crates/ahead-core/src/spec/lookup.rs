//! Prompt lookup: draft the tokens that followed the most recent earlier occurrence of the
//! context's last n-gram (in the prompt or the output). Deterministic, so its q is one-hot.

/// n-gram sizes and draft length of prompt lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLookup {
    /// Longest n-gram tried first; shorter ones down to `min_ngram` if it has no match.
    pub max_ngram: usize,
    pub min_ngram: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        Self {
            max_ngram: 3,
            min_ngram: 1,
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
/// history is taken as a new sequence and resets the index.
#[derive(Debug, Clone, Default)]
pub struct IndexedLookup {
    pub config: PromptLookup,
    /// For each n-gram size (index n - min_ngram): n-gram -> start of its latest continuation.
    index: Vec<std::collections::HashMap<Vec<u32>, usize>>,
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
        let (lo, hi) = (self.config.min_ngram.max(1), self.config.max_ngram);
        if k == 0 || hi < lo {
            return Vec::new();
        }
        if history.len() < self.seen {
            self.index.clear();
            self.seen = 0;
        }
        self.index.resize_with(hi - lo + 1, Default::default);
        // Index every n-gram that ends before the last token: continuation start = end + 1.
        let done = self.seen.saturating_sub(1);
        for end in done..history.len().saturating_sub(1) {
            for n in lo..=hi {
                if end + 1 >= n {
                    self.index[n - lo].insert(history[end + 1 - n..=end].to_vec(), end + 1);
                }
            }
        }
        self.seen = history.len();
        for n in (lo..=hi).rev() {
            if history.len() <= n {
                continue;
            }
            if let Some(&from) = self.index[n - lo].get(&history[history.len() - n..]) {
                let to = (from + k).min(history.len());
                return history[from..to].to_vec();
            }
        }
        Vec::new()
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
        }
        // A shorter history is another sequence: the index starts again.
        assert_eq!(indexed.propose(&[4, 5, 4], 2), config.propose(&[4, 5, 4], 2));
    }
}
