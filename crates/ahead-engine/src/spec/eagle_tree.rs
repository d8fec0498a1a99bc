//! EAGLE-2's dynamic draft trees from an EAGLE head: candidates are expanded best-first by
//! their path probability under the head, a batch per head forward (each row on its parent's
//! predicted feature, seeing the committed rows and its ancestors' rows:
//! `AttentionMask::Branches`).
//!
//! Greedy trees keep the `k` best candidates of all the head proposed ([`DynamicTree`]).
//! Sampled trees must keep rejection sampling exact, so nothing drafted is ever dropped for its
//! own value: a node's children are drawn from the head's warped distribution one after
//! another without replacement (each carrying the distribution it was drawn from: the
//! head's, less its earlier siblings, renormalized), and whether another sibling is drawn
//! depends only on those drawn before it; which nodes get children depends on their own
//! path's probability. Verification tries siblings in drawing order, taking the residual after
//! each rejection (`ahead_core::spec::accept`), which gives the target's distribution for any
//! such tree (recursive rejection sampling).

use ahead_core::sampling::{top_logits, warp, Distribution};
use ahead_core::spec::{DraftDist, DynamicTree, TokenTree};
use ahead_core::{Rng, SamplingParams};
use ahead_model::eagle::EagleHead;
use ahead_model::transformer::AttentionMask;
use ahead_model::{ForwardOutput, KvCache};

use super::draft::vocabulary_logits;
use crate::error::{EngineError, Result};

/// Children drafted per expanded node, and the most nodes one head forward expands. A forward
/// reads the head's weights once for all its rows, so expanding candidates together costs less
/// than one at a time; EAGLE-2 expands 10 on a GPU, where rows are nearly free, and a CPU's
/// verify budget (4-8 nodes) has room for few alternatives. Measured on Spec-Bench with the
/// vendored SmolLM2 head (BENCHMARKS.md), tokens a step at 4 / 8 nodes: width 2 1.52 / 1.58,
/// 4 1.56 / 1.67, 8 1.56 / 1.71.
pub(super) const TREE_WIDTH: usize = 4;

/// A sampled node stops drawing siblings once those drawn hold this much of the head's mass:
/// a further one is unlikely to be the token the target samples.
const SIBLING_MASS: f32 = 0.8;

/// Where the tree's head rows are: the state a tree grows from and the rows run so far.
pub(super) struct TreeHead<'a> {
    pub head: &'a EagleHead,
    pub cache: &'a mut KvCache,
    /// Committed positions (rows of `cache` made from the target's features).
    pub fed: usize,
    /// The last real row's predicted feature: what every root's row reads.
    pub root_feature: Vec<f32>,
    /// Per candidate, once expanded: its row's cache slot and index in `predicted`.
    rows: Vec<Option<(usize, usize)>>,
    predicted: Vec<f32>,
}

impl<'a> TreeHead<'a> {
    pub fn new(head: &'a EagleHead, cache: &'a mut KvCache, fed: usize, root_feature: Vec<f32>) -> Self {
        Self {
            head,
            cache,
            fed,
            root_feature,
            rows: Vec::new(),
            predicted: Vec::new(),
        }
    }

    /// Rows the cache has room for.
    fn room(&self) -> usize {
        self.cache.capacity() - self.cache.len()
    }

    /// One head forward over `frontier`: (candidate, token, its ancestors root first). Returns
    /// each row's logits in frontier order.
    fn expand(&mut self, frontier: &[(usize, u32, Vec<usize>)]) -> Result<ForwardOutput> {
        let d = self.head.config().dim;
        let mut features = Vec::with_capacity(frontier.len() * d);
        let (mut tokens, mut positions, mut ancestors) = (Vec::new(), Vec::new(), Vec::new());
        for (_, token, path) in frontier {
            match path.last().and_then(|&p| self.row(p)) {
                Some((_, r)) => features.extend_from_slice(&self.predicted[r * d..(r + 1) * d]),
                None => features.extend_from_slice(&self.root_feature),
            }
            tokens.push(*token);
            positions.push(self.fed + path.len());
            ancestors.push(
                path.iter()
                    .filter_map(|&a| self.row(a))
                    .map(|(slot, _)| slot)
                    .collect(),
            );
        }
        let base = self.cache.len();
        let mask = AttentionMask::Branches {
            committed: self.fed,
            ancestors: &ancestors,
        };
        let out = self
            .head
            .forward_masked(&features, &tokens, &positions, mask, self.cache)?;
        let hidden = out
            .hidden
            .as_ref()
            .ok_or_else(|| EngineError::Internal("the EAGLE head returned no features".into()))?;
        for (r, (c, _, _)) in frontier.iter().enumerate() {
            if self.rows.len() <= *c {
                self.rows.resize(c + 1, None);
            }
            self.rows[*c] = Some((base + r, self.predicted.len() / d));
            self.predicted.extend_from_slice(&hidden[r * d..(r + 1) * d]);
        }
        Ok(out)
    }

    fn row(&self, candidate: usize) -> Option<(usize, usize)> {
        self.rows.get(candidate).copied().flatten()
    }

    /// EAGLE-2's greedy tree of at most `k` nodes, none under `min_score`, from the last real
    /// row's `logits`.
    pub fn grow_greedy(mut self, k: usize, min_score: f32, logits: &[f32]) -> Result<TokenTree> {
        let subset = self.head.classifier_tokens();
        let mut tree = DynamicTree::new(k, min_score);
        tree.add_children(None, best_children(logits, subset));
        loop {
            let frontier: Vec<(usize, u32, Vec<usize>)> = tree
                .frontier(TREE_WIDTH.min(self.room()), k)
                .into_iter()
                .map(|c| (c, tree.token(c), tree.ancestors(c)))
                .collect();
            if frontier.is_empty() {
                break;
            }
            let out = self.expand(&frontier)?;
            for (r, (c, _, _)) in frontier.iter().enumerate() {
                tree.add_children(Some(*c), best_children(out.row(r), subset));
            }
        }
        Ok(tree.finish().0)
    }

    /// A sampled tree of at most `k` nodes from the last real row's `logits`, after `history`
    /// (for the warpers' repetition penalty): see the module's notes for why it is exact.
    pub fn grow_sampled(
        mut self,
        k: usize,
        logits: &[f32],
        history: &[u32],
        vocab: usize,
        sampling: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<TokenTree> {
        let mut t = Sampled {
            tree: TokenTree::empty(),
            score: Vec::new(),
            expanded: Vec::new(),
            k,
        };
        let subset = self.head.classifier_tokens();
        let warped = |t: &Sampled, parent: Option<usize>, logits: &[f32]| -> Result<Distribution> {
            let mut seen = history.to_vec();
            seen.extend(path_of(&t.tree, parent).into_iter().map(|n| t.tree.tokens[n]));
            Ok(warp(&vocabulary_logits(logits, subset, vocab), sampling, &seen)?)
        };
        let q = warped(&t, None, logits)?;
        t.draw(None, q, rng);
        while t.tree.len() < k {
            // The most probable nodes without children yet, shallower than k.
            let depths = t.tree.depths();
            let mut open: Vec<usize> = (0..t.tree.len())
                .filter(|&n| !t.expanded[n] && depths[n] < k)
                .collect();
            open.sort_by(|&a, &b| t.score[b].total_cmp(&t.score[a]).then(a.cmp(&b)));
            open.truncate(TREE_WIDTH.min(self.room()));
            if open.is_empty() {
                break;
            }
            let frontier: Vec<(usize, u32, Vec<usize>)> = open
                .iter()
                .map(|&n| (n, t.tree.tokens[n], path_of(&t.tree, t.tree.parents[n])))
                .collect();
            let out = self.expand(&frontier)?;
            for (r, &n) in open.iter().enumerate() {
                t.expanded[n] = true;
                let q = warped(&t, Some(n), out.row(r))?;
                t.draw(Some(n), q, rng);
            }
        }
        Ok(t.tree)
    }
}

/// A sampled tree being grown: per node, its path's probability under the head and whether it
/// has children yet.
struct Sampled {
    tree: TokenTree,
    score: Vec<f32>,
    expanded: Vec<bool>,
    /// The most nodes.
    k: usize,
}

impl Sampled {
    /// Draws `parent`'s children from the head's warped `head_q` without replacement, until
    /// `TREE_WIDTH`, `SIBLING_MASS` or the node budget; each carries the distribution it was
    /// drawn from.
    fn draw(&mut self, parent: Option<usize>, head_q: Distribution, rng: &mut Rng) {
        let base = parent.map_or(1.0, |p| self.score[p]);
        let (mut q, mut mass) = (head_q.clone(), 0.0);
        for _ in 0..TREE_WIDTH {
            if self.tree.len() >= self.k || mass >= SIBLING_MASS {
                break;
            }
            let x = q.sample(rng);
            self.tree.tokens.push(x);
            self.tree.parents.push(parent);
            self.tree.q.push(DraftDist::Sampled(q.clone()));
            self.score.push(base * head_q.prob(x));
            self.expanded.push(false);
            mass += head_q.prob(x);
            // The next sibling is drawn from what is left.
            let mut rest = q.probs().to_vec();
            rest[x as usize] = 0.0;
            match Distribution::from_weights(rest) {
                Ok(r) => q = r,
                Err(_) => break,
            }
        }
    }
}

/// The nodes from a root down to `node` (empty for `None`).
fn path_of(tree: &TokenTree, node: Option<usize>) -> Vec<usize> {
    let mut path = Vec::new();
    let mut at = node;
    while let Some(n) = at {
        path.push(n);
        at = tree.parents[n];
    }
    path.reverse();
    path
}

/// The head's `TREE_WIDTH` best next tokens after one row and their probabilities.
pub(super) fn best_children(logits: &[f32], subset: Option<&[u32]>) -> Vec<(u32, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    if !(sum > 0.0 && sum.is_finite()) {
        return Vec::new();
    }
    top_logits(logits, TREE_WIDTH)
        .into_iter()
        .filter_map(|(i, l)| {
            let token = match subset {
                Some(s) => *s.get(i as usize)?,
                None => i,
            };
            Some((token, (l - max).exp() / sum))
        })
        .collect()
}
