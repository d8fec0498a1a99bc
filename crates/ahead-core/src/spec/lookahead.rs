//! Lookahead decoding's pure parts (Fu et al., ICML 2024): the 2-D Jacobi window, the n-gram
//! pool it fills, and the attention pattern of the lookahead branch.
//!
//! The window holds N-1 levels of W guessed tokens. Relative to the pending token at position
//! p, token (level l, column i) sits at p + 1 + i + l and belongs to the sequence level0[0..=i],
//! level1[i], .., level(l-1)[i]: it sees exactly those (the mask below). Each step the model's
//! prediction after (N-2, i) becomes the new top level; column i then reads as an n-gram of N
//! consecutive guesses (level0[i], .., level(N-2)[i], new[i]), which goes into the pool keyed
//! by its first token. Candidates for verification are the pool's n-grams that start with the
//! pending token. The guesses never affect the output, only how many tokens are accepted.

use std::collections::{HashMap, VecDeque};

use super::tree::{DraftDist, TokenTree};

/// Window size W, n-gram size N, and at most G verified candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookaheadConfig {
    pub window: usize,
    pub ngram: usize,
    pub guesses: usize,
}

impl LookaheadConfig {
    /// Rows of the lookahead branch: W x (N - 1).
    pub fn branch_rows(&self) -> usize {
        self.window * self.ngram.saturating_sub(1)
    }

    /// For each lookahead row (level-major: row l*W + i), the earlier lookahead rows it sees.
    pub fn branch_mask(&self) -> Vec<Vec<usize>> {
        let w = self.window;
        let mut rows = Vec::with_capacity(self.branch_rows());
        for l in 0..self.ngram.saturating_sub(1) {
            for i in 0..w {
                let mut seen: Vec<usize> = if l == 0 {
                    (0..i).collect()
                } else {
                    (0..=i).collect()
                };
                seen.extend((1..l).map(|lv| lv * w + i));
                rows.push(seen);
            }
        }
        rows
    }

    /// Position of each lookahead row after the pending token's (level-major).
    pub fn branch_offsets(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.branch_rows());
        for l in 0..self.ngram.saturating_sub(1) {
            for i in 0..self.window {
                out.push(1 + i + l);
            }
        }
        out
    }
}

/// N-grams seen so far, keyed by their first token; each key keeps its most recent
/// `per_key` continuations (most recent first), so memory stays bounded per sequence.
#[derive(Debug, Clone, Default)]
pub struct NgramPool {
    map: HashMap<u32, VecDeque<Vec<u32>>>,
    per_key: usize,
}

impl NgramPool {
    pub fn new(per_key: usize) -> Self {
        Self {
            map: HashMap::new(),
            per_key: per_key.max(1),
        }
    }

    /// Adds `ngram` (first token, then its continuation); a repeat moves to the front.
    pub fn insert(&mut self, ngram: &[u32]) {
        let Some((&first, rest)) = ngram.split_first() else {
            return;
        };
        if rest.is_empty() {
            return;
        }
        let list = self.map.entry(first).or_default();
        if let Some(i) = list.iter().position(|c| c.as_slice() == rest) {
            list.remove(i);
        }
        list.push_front(rest.to_vec());
        list.truncate(self.per_key);
    }

    /// Every n-gram of `tokens` (to seed the pool from the prompt).
    pub fn insert_all(&mut self, tokens: &[u32], n: usize) {
        for w in tokens.windows(n.max(2)) {
            self.insert(w);
        }
    }

    /// Up to `g` continuations of `first`, most recent first.
    pub fn candidates(&self, first: u32, g: usize) -> Vec<&[u32]> {
        self.map
            .get(&first)
            .map(|l| l.iter().take(g).map(Vec::as_slice).collect())
            .unwrap_or_default()
    }

    /// Number of stored continuations.
    pub fn len(&self) -> usize {
        self.map.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Merges candidate continuations into a token tree (shared prefixes become one path); nodes
/// are added parent first. One-hot drafts: the candidates are deterministic.
pub fn candidate_tree(candidates: &[&[u32]]) -> TokenTree {
    let mut tree = TokenTree::empty();
    for cand in candidates {
        let mut parent: Option<usize> = None;
        for &t in *cand {
            let existing = (0..tree.len()).find(|&n| tree.parents[n] == parent && tree.tokens[n] == t);
            parent = Some(match existing {
                Some(n) => n,
                None => {
                    tree.tokens.push(t);
                    tree.parents.push(parent);
                    tree.q.push(DraftDist::OneHot);
                    tree.len() - 1
                }
            });
        }
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_mask_gives_each_row_its_own_sequence() {
        let c = LookaheadConfig {
            window: 3,
            ngram: 4,
            guesses: 2,
        };
        let (mask, off) = (c.branch_mask(), c.branch_offsets());
        assert_eq!(mask.len(), 9);
        // Level 0 is a sequence of guesses: column i sees columns before it.
        assert_eq!(mask[0], Vec::<usize>::new());
        assert_eq!(mask[2], vec![0, 1]);
        // Level 2, column 1 (row 7): level 0 columns 0..=1, level 1 column 1 (row 4).
        assert_eq!(mask[7], vec![0, 1, 4]);
        // Every row's visible rows plus itself sit at consecutive positions after the pending one.
        for (r, seen) in mask.iter().enumerate() {
            let mut pos: Vec<usize> = seen.iter().map(|&s| off[s]).collect();
            pos.push(off[r]);
            assert_eq!(pos, (1..=pos.len()).collect::<Vec<_>>(), "row {r}");
        }
    }

    #[test]
    fn the_pool_is_bounded_and_recent_first() {
        let mut p = NgramPool::new(2);
        p.insert_all(&[1, 2, 3, 1, 2, 4, 1, 5, 6], 3);
        assert_eq!(p.candidates(1, 5), vec![&[5, 6][..], &[2, 4][..]]);
        p.insert(&[1, 2, 4]);
        assert_eq!(p.candidates(1, 1), vec![&[2, 4][..]]);
        assert!(p.candidates(9, 3).is_empty());
        assert_eq!(p.len(), 2 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn candidates_merge_into_a_tree() {
        let t = candidate_tree(&[&[5, 6, 7], &[5, 6, 8], &[9, 1]]);
        assert_eq!(t.tokens, vec![5, 6, 7, 8, 9, 1]);
        assert_eq!(t.parents, vec![None, Some(0), Some(1), Some(1), None, Some(4)]);
        assert!(t.is_well_formed());
    }
}
