//! Medusa's candidate tree: `medusa_choices`, a list of paths of top-k ranks. Path `[0, 1]`
//! means "head 0's best token, then head 1's second best after it". Every prefix of a path is
//! itself a path, so the paths form a tree; nodes are ordered by depth, then by ranks, so that
//! keeping the first n nodes keeps a tree (the controller shrinks it that way).

use super::tree::{DraftDist, TokenTree};
use crate::error::CoreError;

/// A validated set of paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedusaTree {
    paths: Vec<Vec<usize>>,
    /// Index of each path's parent path (`None` for depth 1).
    parents: Vec<Option<usize>>,
}

impl MedusaTree {
    /// Checks and orders `paths`: non-empty, no duplicates, every prefix present.
    pub fn new(mut paths: Vec<Vec<usize>>) -> Result<Self, CoreError> {
        let invalid = |value: String| CoreError::InvalidParam {
            name: "medusa_choices",
            value,
            expected: "distinct non-empty paths whose every prefix is also a path",
        };
        paths.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        paths.dedup();
        let mut parents = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            if p.is_empty() {
                return Err(invalid("[]".into()));
            }
            let parent = if p.len() == 1 {
                None
            } else {
                let prefix = &p[..p.len() - 1];
                Some(
                    paths[..i]
                        .iter()
                        .position(|q| q.as_slice() == prefix)
                        .ok_or_else(|| invalid(format!("{p:?} without {prefix:?}")))?,
                )
            };
            parents.push(parent);
        }
        Ok(Self { paths, parents })
    }

    /// Parses JSON such as `[[0], [0, 0], [1]]`.
    pub fn parse(json: &str) -> Result<Self, CoreError> {
        let paths: Vec<Vec<usize>> = serde_json::from_str(json).map_err(|e| CoreError::InvalidParam {
            name: "medusa_choices",
            value: e.to_string(),
            expected: "a JSON list of lists of ranks, e.g. [[0], [0, 0], [1]]",
        })?;
        Self::new(paths)
    }

    /// A small tree for CPUs, where every extra verify row costs (depth 3, 6 nodes).
    pub fn default_cpu() -> Self {
        Self {
            paths: vec![
                vec![0],
                vec![1],
                vec![0, 0],
                vec![0, 1],
                vec![1, 0],
                vec![0, 0, 0],
            ],
            parents: vec![None, None, Some(0), Some(0), Some(1), Some(2)],
        }
    }

    /// The tree with the most expected accepted tokens per unit of verify time, built greedily
    /// from per-head top-k accuracies (`accuracy[d][r]`: the chance that head d's rank-r token
    /// is right, assumed independent across heads) and the verify cost of `w` rows
    /// (`verify_cost[w]`, relative to one row). At most `max_nodes` nodes.
    pub fn optimal(accuracy: &[Vec<f64>], verify_cost: &[f64], max_nodes: usize) -> Result<Self, CoreError> {
        let mut paths: Vec<(Vec<usize>, f64)> = Vec::new();
        let (mut best, mut best_score) = (Vec::new(), 1.0 / verify_cost.get(1).copied().unwrap_or(1.0));
        let mut expected = 1.0;
        for n in 1..=max_nodes {
            // The candidate with the highest path probability: a new sibling rank at any
            // depth-0 position, or a child of an existing path.
            let mut cand: Option<(Vec<usize>, f64)> = None;
            let parents: Vec<(Vec<usize>, f64)> = std::iter::once((Vec::new(), 1.0))
                .chain(paths.iter().cloned())
                .collect();
            for (parent, prob) in parents {
                let depth = parent.len();
                let Some(acc) = accuracy.get(depth) else { continue };
                for (rank, a) in acc.iter().enumerate() {
                    let mut p = parent.clone();
                    p.push(rank);
                    if paths.iter().any(|(q, _)| *q == p) {
                        continue;
                    }
                    let score = prob * a;
                    if cand.as_ref().is_none_or(|c| score > c.1) {
                        cand = Some((p, score));
                    }
                }
            }
            let Some((p, prob)) = cand else { break };
            expected += prob;
            paths.push((p, prob));
            let Some(&cost) = verify_cost.get(n + 1) else {
                break;
            };
            if expected / cost > best_score {
                best_score = expected / cost;
                best = paths.iter().map(|(p, _)| p.clone()).collect();
            }
        }
        if best.is_empty() {
            best.push(vec![0]);
        }
        Self::new(best)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The deepest path: heads needed.
    pub fn depth(&self) -> usize {
        self.paths.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The largest rank asked of head `d`, plus one: how many top tokens it must supply.
    pub fn top_k(&self, d: usize) -> usize {
        self.paths
            .iter()
            .filter_map(|p| p.get(d).filter(|_| p.len() == d + 1))
            .max()
            .map_or(0, |r| r + 1)
    }

    pub fn paths(&self) -> &[Vec<usize>] {
        &self.paths
    }

    /// The token tree for heads' ranked tokens `top[d]` (best first), one-hot drafts: the
    /// candidates are deterministic, so exact verification tries siblings in turn. Paths that
    /// need more heads or ranks than given are left out (with their descendants).
    pub fn build(&self, top: &[Vec<u32>]) -> TokenTree {
        let mut tree = TokenTree::empty();
        let mut index: Vec<Option<usize>> = vec![None; self.paths.len()];
        for (i, p) in self.paths.iter().enumerate() {
            let d = p.len() - 1;
            let Some(&token) = top.get(d).and_then(|t| t.get(p[d])) else {
                continue;
            };
            let parent = match self.parents[i] {
                None => None,
                Some(pi) => match index[pi] {
                    Some(node) => Some(node),
                    None => continue,
                },
            };
            index[i] = Some(tree.tokens.len());
            tree.tokens.push(token);
            tree.parents.push(parent);
            tree.q.push(DraftDist::OneHot);
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_ordered_and_checked() {
        let t = MedusaTree::parse("[[1], [0, 0], [0]]").unwrap();
        assert_eq!(t.paths(), &[vec![0], vec![1], vec![0, 0]]);
        assert_eq!((t.depth(), t.top_k(0), t.top_k(1)), (2, 2, 1));
        assert!(MedusaTree::parse("[[0, 1]]").is_err(), "missing prefix");
        assert!(MedusaTree::parse("[[]]").is_err());
        assert!(MedusaTree::parse("not json").is_err());
        assert_eq!(
            MedusaTree::default_cpu(),
            MedusaTree::new(MedusaTree::default_cpu().paths().to_vec()).unwrap()
        );
    }

    #[test]
    fn builds_a_well_formed_tree_and_any_prefix_is_one() {
        let t = MedusaTree::default_cpu();
        let tree = t.build(&[vec![10, 11], vec![20, 21], vec![30]]);
        assert!(tree.is_well_formed());
        assert_eq!(tree.tokens, vec![10, 11, 20, 21, 20, 30]);
        assert_eq!(tree.parents, vec![None, None, Some(0), Some(0), Some(1), Some(2)]);
        for n in 0..tree.len() {
            assert!(tree.parents[..n].iter().all(|p| p.is_none_or(|p| p < n)));
        }
        // Fewer heads: deeper paths drop out.
        let short = t.build(&[vec![10, 11]]);
        assert_eq!(short.tokens, vec![10, 11]);
    }

    #[test]
    fn the_optimal_tree_grows_with_accuracy_and_shrinks_with_cost() {
        let acc = vec![vec![0.8, 0.1], vec![0.7, 0.1], vec![0.6]];
        let flat: Vec<f64> = (0..12)
            .map(|w| if w == 0 { 0.0 } else { 1.0 + 0.02 * w as f64 })
            .collect();
        let steep: Vec<f64> = (0..12).map(|w| w as f64).collect();
        let big = MedusaTree::optimal(&acc, &flat, 10).unwrap();
        let small = MedusaTree::optimal(&acc, &steep, 10).unwrap();
        assert!(big.len() > small.len(), "{big:?} vs {small:?}");
        assert_eq!(big.paths()[0], vec![0]);
        assert_eq!(small.len(), 1);
    }
}
