//! A token tree: what a proposer drafts. A chain is a tree with one child per node.

use crate::sampling::Distribution;

/// The distribution a draft token was drawn from: verification needs exactly this q.
#[derive(Debug, Clone, PartialEq)]
pub enum DraftDist {
    /// A deterministic draft (argmax, n-gram, lookahead): q puts all mass on the token.
    OneHot,
    /// The warped distribution the drafter sampled the token from.
    Sampled(Distribution),
}

/// Draft tokens with their parents. Node `i`'s parent is `parents[i]` (`None`: a child of the
/// last committed token). Parents come before children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenTree {
    pub tokens: Vec<u32>,
    pub parents: Vec<Option<usize>>,
    pub q: Vec<DraftDist>,
}

impl TokenTree {
    /// No draft: plain decoding.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A chain of tokens, each the child of the previous.
    pub fn chain(tokens: Vec<u32>, q: Vec<DraftDist>) -> Self {
        let parents = (0..tokens.len()).map(|i| i.checked_sub(1)).collect();
        Self { tokens, parents, q }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Depth of every node (roots have depth 1: one past the last committed token).
    pub fn depths(&self) -> Vec<usize> {
        let mut d: Vec<usize> = Vec::with_capacity(self.len());
        for p in &self.parents {
            let depth = p.and_then(|p| d.get(p).copied()).unwrap_or(0) + 1;
            d.push(depth);
        }
        d
    }

    /// Children of `node` (`None`: the roots), in order.
    pub fn children(&self, node: Option<usize>) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.parents[i] == node).collect()
    }

    /// Whether the structure is valid: equal lengths and parents before children.
    pub fn is_well_formed(&self) -> bool {
        self.parents.len() == self.tokens.len()
            && self.q.len() == self.tokens.len()
            && self
                .parents
                .iter()
                .enumerate()
                .all(|(i, p)| p.is_none_or(|p| p < i))
    }
}
