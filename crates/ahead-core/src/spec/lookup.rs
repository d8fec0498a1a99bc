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
}
