//! Token recycling (Luo et al., 2024, "Turning Trash into Treasure"): every verify forward ranks
//! the whole vocabulary after each token it reads, and decoding keeps only the argmax of the
//! rows it accepts. Kept instead, per token (the latest row wins), those rankings form an
//! adjacency table: after token t, the target recently preferred these few tokens. Drafts are
//! trees grown from it best-first, so they cost no model at all and improve as the target
//! talks. Deterministic drafts: their q is one-hot.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::tree::{DraftDist, TokenTree};
use crate::sampling::top_logits;

/// Marks an empty slot of the table.
const NONE: u32 = u32::MAX;

/// For every token, the `width` tokens the target ranked highest the last time it read it,
/// best first, with weights: the target's softmax over those candidates (over them only, so
/// an over-estimate of the true probability, and exact in order).
#[derive(Debug, Clone)]
pub struct Adjacency {
    width: usize,
    tokens: Vec<u32>,
    weights: Vec<f32>,
}

impl Adjacency {
    /// An empty table for a `vocab`-token vocabulary keeping `width` candidates per token.
    pub fn new(vocab: usize, width: usize) -> Self {
        let width = width.max(1);
        Self {
            width,
            tokens: vec![NONE; vocab * width],
            weights: vec![0.0; vocab * width],
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// The tokens it holds rows for.
    pub fn vocab(&self) -> usize {
        self.tokens.len() / self.width
    }

    /// Replaces `token`'s row with the top of `logits` (the target's scores for the token
    /// after it). Tokens outside the table are ignored: a draft can only lose from it.
    pub fn record(&mut self, token: u32, logits: &[f32]) {
        let t = token as usize;
        if t >= self.vocab() {
            return;
        }
        let top = top_logits(logits, self.width);
        let Some(&(_, best)) = top.first() else {
            return;
        };
        let exp: Vec<f32> = top.iter().map(|&(_, l)| (l - best).exp()).collect();
        let total: f32 = exp.iter().sum();
        let row = t * self.width..(t + 1) * self.width;
        self.tokens[row.clone()].fill(NONE);
        self.weights[row.clone()].fill(0.0);
        for (i, (&(id, _), e)) in top.iter().zip(exp).enumerate() {
            self.tokens[row.start + i] = id;
            self.weights[row.start + i] = e / total;
        }
    }

    /// Seeds rows the target has not filled yet with `tokens`' own successors (each row with
    /// the successors it has in `tokens`, most frequent first, weighted by `weight` times
    /// their share): before the first verify rows, the prompt is the best guess there is.
    pub fn seed(&mut self, tokens: &[u32], weight: f32) {
        let mut successors: std::collections::HashMap<u32, Vec<(u32, u32)>> = Default::default();
        for pair in tokens.windows(2) {
            let list = successors.entry(pair[0]).or_default();
            match list.iter_mut().find(|(t, _)| *t == pair[1]) {
                Some((_, count)) => *count += 1,
                None => list.push((pair[1], 1)),
            }
        }
        for (token, mut list) in successors {
            let t = token as usize;
            if t >= self.vocab() || self.tokens[t * self.width] != NONE {
                continue;
            }
            // Most frequent first; among equals, the smaller id (a fixed order).
            list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            list.truncate(self.width);
            let total: u32 = list.iter().map(|&(_, c)| c).sum();
            for (i, (next, count)) in list.into_iter().enumerate() {
                self.tokens[t * self.width + i] = next;
                self.weights[t * self.width + i] = weight * count as f32 / total as f32;
            }
        }
    }

    /// `token`'s candidates, best first (none for a token never seen).
    pub fn candidates(&self, token: u32) -> impl Iterator<Item = (u32, f32)> + '_ {
        let t = token as usize;
        let row = if t < self.vocab() {
            t * self.width..(t + 1) * self.width
        } else {
            0..0
        };
        self.tokens[row.clone()]
            .iter()
            .zip(&self.weights[row])
            .take_while(|(&id, _)| id != NONE)
            .map(|(&id, &w)| (id, w))
    }
}

/// A candidate waiting to join the tree: its path score, where it hangs, its token, and the
/// order it was found in (ties go to the earlier, so trees are deterministic).
struct Frontier {
    score: f32,
    parent: Option<usize>,
    token: u32,
    order: usize,
}

impl PartialEq for Frontier {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Frontier {}

impl PartialOrd for Frontier {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frontier {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.order.cmp(&self.order))
    }
}

/// Grows a tree of at most `k` nodes best-first: a node's score is the product of its path's
/// weights, and the highest-scoring candidate joins next while it scores at least
/// `min_score`. `expand(path)` gives the weighted candidates after `path` (the tokens from the
/// last committed one to the node, so `path[0]` is that token). Nodes come in the order they
/// joined, so every prefix of the tree is the best tree of its size.
pub fn grow_tree(
    last: u32,
    k: usize,
    min_score: f32,
    mut expand: impl FnMut(&[u32]) -> Vec<(u32, f32)>,
) -> TokenTree {
    let mut tree = TokenTree::empty();
    let mut heap = BinaryHeap::new();
    let mut order = 0;
    let mut push = |heap: &mut BinaryHeap<Frontier>, parent, base: f32, path: &[u32]| {
        for (token, w) in expand(path) {
            heap.push(Frontier {
                score: base * w,
                parent,
                token,
                order,
            });
            order += 1;
        }
    };
    push(&mut heap, None, 1.0, &[last]);
    while tree.len() < k {
        let Some(next) = heap.pop() else { break };
        if next.score < min_score {
            break;
        }
        let node = tree.len();
        tree.tokens.push(next.token);
        tree.parents.push(next.parent);
        tree.q.push(DraftDist::OneHot);
        if tree.len() < k {
            let mut path = vec![next.token];
            let mut at = next.parent;
            while let Some(p) = at {
                path.push(tree.tokens[p]);
                at = tree.parents[p];
            }
            path.push(last);
            path.reverse();
            push(&mut heap, Some(node), next.score, &path);
        }
    }
    tree
}

#[cfg(test)]
mod tests;
