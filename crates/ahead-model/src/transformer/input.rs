//! What one forward call is asked to compute.

use crate::error::{ModelError, Result};

/// Which earlier rows each input row may attend to (besides everything already in the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMask<'a> {
    /// Row i sees rows 0..=i: ordinary prefill and chain verification.
    Causal,
    /// A token tree: `parents[i]` is the input row of node i's parent (`None` for a root, whose
    /// parent is the last cached token). Parents come before children. Row i sees its ancestors
    /// and itself.
    Tree(&'a [Option<usize>]),
    /// Any pattern: `rows[i]` lists the earlier input rows row i sees (ascending, each below i);
    /// row i always sees itself. Lookahead decoding's branches, which are not a tree.
    Rows(&'a [Vec<usize>]),
    /// Rows that extend a tree drafted over several forwards (EAGLE-2 grows its draft a depth
    /// per forward): each row sees only the first `committed` cache slots, the cached slots in
    /// `ancestors[i]` (its ancestors from earlier forwards: ascending, from `committed` on)
    /// and itself. Rows of one forward do not see one another.
    Branches {
        committed: usize,
        ancestors: &'a [Vec<usize>],
    },
}

/// Which rows' logits a forward computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Logits {
    /// Every row's (verification).
    #[default]
    All,
    /// The last row's only (a draft model catching up).
    Last,
    /// None: a prefill, whose rows only fill the cache.
    None,
}

/// The input rows of one forward: token ids, their RoPE positions and the mask between them.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInput<'a> {
    pub tokens: &'a [u32],
    pub positions: &'a [usize],
    pub mask: AttentionMask<'a>,
    /// Also return the final (normed) hidden state of every row, e.g. for Medusa heads.
    pub want_hidden: bool,
    /// With `want_hidden`: the layers (ascending) whose outputs, the residual stream after
    /// each, make a row's hidden state, concatenated, in place of the final state (EAGLE-3's
    /// low, middle and high features). Empty: the final state.
    pub taps: &'a [usize],
    /// The rows whose logits to compute; `ForwardOutput` holds only theirs, in order.
    pub logits: Logits,
}

impl<'a> ForwardInput<'a> {
    /// Causal rows at consecutive positions starting at `start`.
    pub fn causal(tokens: &'a [u32], positions: &'a [usize]) -> Self {
        Self {
            tokens,
            positions,
            mask: AttentionMask::Causal,
            want_hidden: false,
            taps: &[],
            logits: Logits::All,
        }
    }

    /// For every row, the input rows it attends to, ascending.
    pub(crate) fn visible_rows(&self) -> Result<Vec<Vec<usize>>> {
        let n = self.tokens.len();
        if self.positions.len() != n {
            return Err(ModelError::Input(format!(
                "{n} tokens but {} positions",
                self.positions.len()
            )));
        }
        match self.mask {
            AttentionMask::Causal => Ok((0..n).map(|i| (0..=i).collect()).collect()),
            AttentionMask::Rows(rows) => {
                if rows.len() != n {
                    return Err(ModelError::Input(format!(
                        "{n} tokens but {} mask rows",
                        rows.len()
                    )));
                }
                rows.iter()
                    .enumerate()
                    .map(|(i, seen)| {
                        if seen.windows(2).any(|w| w[0] >= w[1]) || seen.last().is_some_and(|&j| j >= i) {
                            return Err(ModelError::Input(format!(
                                "mask row {i} must list earlier rows in ascending order, got {seen:?}"
                            )));
                        }
                        let mut v = seen.clone();
                        v.push(i);
                        Ok(v)
                    })
                    .collect()
            }
            AttentionMask::Branches { ancestors, .. } => {
                if ancestors.len() != n {
                    return Err(ModelError::Input(format!(
                        "{n} tokens but {} ancestor lists",
                        ancestors.len()
                    )));
                }
                Ok((0..n).map(|i| vec![i]).collect())
            }
            AttentionMask::Tree(parents) => {
                if parents.len() != n {
                    return Err(ModelError::Input(format!(
                        "{n} tokens but {} tree parents",
                        parents.len()
                    )));
                }
                let mut visible: Vec<Vec<usize>> = Vec::with_capacity(n);
                for (i, p) in parents.iter().enumerate() {
                    let mut rows = match *p {
                        None => Vec::new(),
                        Some(p) if p < i => visible[p].clone(),
                        Some(p) => {
                            return Err(ModelError::Input(format!(
                                "tree node {i} has parent {p}, not an earlier row"
                            )))
                        }
                    };
                    rows.push(i);
                    visible.push(rows);
                }
                Ok(visible)
            }
        }
    }
}

impl ForwardInput<'_> {
    /// The cache slots every row sees (all of a cache of `cached` rows unless the mask says
    /// otherwise) and, per row, the later cached slots it also sees; checked against the cache.
    pub(crate) fn cached_view(&self, cached: usize) -> Result<(usize, Option<&[Vec<usize>]>)> {
        let AttentionMask::Branches { committed, ancestors } = self.mask else {
            return Ok((cached, None));
        };
        let valid = |a: &Vec<usize>| {
            a.windows(2).all(|w| w[0] < w[1]) && a.iter().all(|&s| (committed..cached).contains(&s))
        };
        match ancestors.iter().position(|a| !valid(a)) {
            _ if committed > cached => Err(ModelError::Input(format!(
                "{committed} committed slots, but the cache holds {cached}"
            ))),
            Some(i) => Err(ModelError::Input(format!(
                "row {i}'s ancestors {:?} are not ascending cached slots in {committed}..{cached}",
                ancestors[i]
            ))),
            None => Ok((committed, Some(ancestors))),
        }
    }
}

/// Logits of the rows asked for (every input row unless `ForwardInput::logits` says otherwise)
/// and optionally every row's hidden state, row-major.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    pub logits: Vec<f32>,
    pub vocab_size: usize,
    pub hidden: Option<Vec<f32>>,
    pub hidden_dim: usize,
}

impl ForwardOutput {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.logits.len() / self.vocab_size.max(1)
    }

    /// Logits of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.vocab_size..(i + 1) * self.vocab_size]
    }

    /// Logits of the last row.
    pub fn last(&self) -> &[f32] {
        self.row(self.rows().saturating_sub(1))
    }
}
