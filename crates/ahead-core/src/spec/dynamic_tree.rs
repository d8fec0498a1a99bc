//! EAGLE-2's dynamic draft tree (Li et al., 2024, "EAGLE-2: Faster Inference of Language
//! Models with Dynamic Draft Trees"): a drafter's own confidence decides the tree's shape. Each
//! candidate's score is the product of the drafter's probabilities along its path, which
//! approximates the chance that the target accepts it; the nodes verified are the `budget`
//! best-scoring candidates (a set closed under ancestry, since a child never outscores its
//! parent). Growing it, the drafter expands in batches (one forward each) the best candidates
//! not yet expanded that could still be among the `budget` best, so a confident drafter grows a
//! deep chain and an unsure one a bushy tree, with no forward spent on nodes that cannot be
//! verified.
//!
//! Deterministic (greedy) drafts only: which sampled candidates are kept would depend on their
//! values, and exact rejection sampling needs each verified child drawn from its stated q.

use std::cmp::Ordering;

use super::tree::{DraftDist, TokenTree};

/// One drafted candidate.
#[derive(Debug, Clone)]
struct Candidate {
    token: u32,
    parent: Option<usize>,
    /// The product of the drafter's probabilities along the path.
    score: f32,
    expanded: bool,
}

/// A draft tree being grown; candidates are numbered in the order they were added.
#[derive(Debug, Clone)]
pub struct DynamicTree {
    candidates: Vec<Candidate>,
    /// The most nodes verified.
    budget: usize,
    /// Candidates scoring below this are never verified (0: any).
    min_score: f32,
}

impl DynamicTree {
    /// An empty tree verifying at most `budget` nodes, none scoring below `min_score`.
    pub fn new(budget: usize, min_score: f32) -> Self {
        Self {
            candidates: Vec::new(),
            budget,
            min_score,
        }
    }

    /// Adds `parent`'s children (`None`: the roots, after the last committed token) with the
    /// drafter's probability of each; marks `parent` expanded.
    pub fn add_children(&mut self, parent: Option<usize>, children: impl IntoIterator<Item = (u32, f32)>) {
        let base = match parent {
            Some(p) => match self.candidates.get_mut(p) {
                Some(c) => {
                    c.expanded = true;
                    c.score
                }
                None => return,
            },
            None => 1.0,
        };
        for (token, p) in children {
            self.candidates.push(Candidate {
                token,
                parent,
                score: base * p.clamp(0.0, 1.0),
                expanded: false,
            });
        }
    }

    /// The token of candidate `i`.
    pub fn token(&self, i: usize) -> u32 {
        self.candidates[i].token
    }

    /// Candidate `i`'s ancestors, root first (not itself).
    pub fn ancestors(&self, i: usize) -> Vec<usize> {
        let mut path = Vec::new();
        let mut at = self.candidates[i].parent;
        while let Some(p) = at {
            path.push(p);
            at = self.candidates[p].parent;
        }
        path.reverse();
        path
    }

    /// Candidate `i`'s depth (roots: 1).
    pub fn depth(&self, i: usize) -> usize {
        self.ancestors(i).len() + 1
    }

    /// Up to `width` candidates to expand next, best first: those not yet expanded, among the
    /// `budget` best (so their children could be verified) and scoring at least `min_score`,
    /// whose depth is below `max_depth`.
    pub fn frontier(&self, width: usize, max_depth: usize) -> Vec<usize> {
        self.best()
            .into_iter()
            .filter(|&i| !self.candidates[i].expanded && self.depth(i) < max_depth)
            .take(width)
            .collect()
    }

    /// The candidates that would be verified now, best first: the `budget` best scoring at
    /// least `min_score` (ties go to the earlier candidate, so a parent precedes its child).
    fn best(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.candidates.len())
            .filter(|&i| self.candidates[i].score >= self.min_score && self.candidates[i].score > 0.0)
            .collect();
        order.sort_by(|&a, &b| {
            let (sa, sb) = (self.candidates[a].score, self.candidates[b].score);
            sb.partial_cmp(&sa).unwrap_or(Ordering::Equal).then(a.cmp(&b))
        });
        order.truncate(self.budget);
        order
    }

    /// The tree to verify (parents before children, one-hot q) and, for each of its nodes, the
    /// candidate it came from.
    pub fn finish(&self) -> (TokenTree, Vec<usize>) {
        let mut chosen = self.best();
        // Candidates are numbered after their parents, so this order puts parents first.
        chosen.sort_unstable();
        let mut node_of = vec![None; self.candidates.len()];
        let mut tree = TokenTree::empty();
        for (n, &c) in chosen.iter().enumerate() {
            node_of[c] = Some(n);
            let cand = &self.candidates[c];
            tree.tokens.push(cand.token);
            tree.parents.push(cand.parent.and_then(|p| node_of[p]));
            tree.q.push(DraftDist::OneHot);
        }
        (tree, chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confident_drafter_grows_a_chain_and_an_unsure_one_a_bush() {
        // Confident: each expansion's best child has p = 0.9.
        let mut t = DynamicTree::new(4, 0.0);
        t.add_children(None, [(1, 0.9), (2, 0.05)]);
        for _ in 0..3 {
            let f = t.frontier(1, 16);
            assert_eq!(f.len(), 1);
            t.add_children(Some(f[0]), [(7, 0.9), (8, 0.05)]);
        }
        let (tree, _) = t.finish();
        assert_eq!(tree.tokens, vec![1, 7, 7, 7]);
        assert_eq!(tree.depths(), vec![1, 2, 3, 4]);
        // Unsure: four roots of 0.2 beat any grandchild.
        let mut t = DynamicTree::new(4, 0.0);
        t.add_children(None, [(1, 0.2), (2, 0.2), (3, 0.2), (4, 0.2)]);
        let f = t.frontier(4, 16);
        assert_eq!(f, vec![0, 1, 2, 3]);
        for p in f {
            t.add_children(Some(p), [(9, 0.5)]);
        }
        let (tree, _) = t.finish();
        assert_eq!(tree.tokens, vec![1, 2, 3, 4]);
        assert!(tree.parents.iter().all(Option::is_none));
    }

    #[test]
    fn the_chosen_nodes_are_closed_under_ancestry_and_respect_the_floor() {
        let mut t = DynamicTree::new(5, 0.1);
        t.add_children(None, [(1, 0.6), (2, 0.3), (3, 0.05)]);
        t.add_children(Some(0), [(4, 1.0), (5, 0.4)]); // 0.6 (tie with its parent), 0.24
        t.add_children(Some(2), [(6, 1.0)]); // 0.05: below the floor
        let (tree, from) = t.finish();
        assert!(tree.is_well_formed());
        assert_eq!(from, vec![0, 1, 3, 4]);
        assert_eq!(tree.parents, vec![None, None, Some(0), Some(0)]);
        // Nothing below the floor, nothing already expanded, nothing past the depth cap.
        assert_eq!(t.frontier(8, 16), vec![3, 1, 4]);
        assert_eq!(t.frontier(8, 2), vec![1]);
    }
}
