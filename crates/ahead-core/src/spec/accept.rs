//! Exact verification of a token tree against the target's distributions.
//!
//! One procedure serves greedy and sampling, chains and trees. At a node, with the target's
//! distribution p for the next token, the children are tried in order (multi-draft speculative
//! sampling, as in SpecInfer): child i, drafted from q_i, is accepted with probability
//! min(1, p(x_i) / q_i(x_i)); on rejection p becomes normalize(max(p - q_i, 0)) and the next
//! child is tried. When no child is accepted (or the node is a leaf) one token is drawn from the
//! current p: the correction or bonus token. Every emitted token is then distributed exactly as
//! the target's p. Greedy is the same procedure with p one-hot at the argmax: a child is
//! accepted iff it is the argmax, and the bonus is the argmax, so no randomness is consumed.

use super::tree::{DraftDist, TokenTree};
use crate::error::CoreError;
use crate::rng::Rng;
use crate::sampling::Distribution;

/// The outcome of verifying one tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Acceptance {
    /// Accepted nodes, root to deepest, as indices into the tree.
    pub nodes: Vec<usize>,
    /// The tokens to commit: the accepted nodes' tokens, then one target token.
    pub tokens: Vec<u32>,
}

/// Verifies `tree`. `target[0]` is the target's next-token distribution after the last committed
/// token; `target[1 + i]` the one after tree node i (computed with node i's ancestors in context).
pub fn accept(tree: &TokenTree, target: &[Distribution], rng: &mut Rng) -> Result<Acceptance, CoreError> {
    if !tree.is_well_formed() || target.len() != tree.len() + 1 {
        return Err(CoreError::InvalidParam {
            name: "tree",
            value: format!("{} nodes, {} target rows", tree.len(), target.len()),
            expected: "a well-formed tree and one target distribution per node plus one",
        });
    }
    let mut nodes = Vec::new();
    let mut tokens = Vec::new();
    let mut at: Option<usize> = None;
    loop {
        let row = at.map_or(0, |n| n + 1);
        if let Some(top) = target[row].one_hot_token() {
            // What the procedure below does with a one-hot p, without its passes over the
            // vocabulary: every other child is rejected, leaving p as it was, and the child
            // that is the token (there is at most one) accepted.
            let vocab = target[row].probs().len();
            let mut next = None;
            for child in tree.children(at) {
                draft_probability(tree.tokens[child], &tree.q[child], vocab)?;
                if tree.tokens[child] == top {
                    next = Some(child);
                    break;
                }
            }
            let Some(child) = next else {
                tokens.push(top);
                return Ok(Acceptance { nodes, tokens });
            };
            nodes.push(child);
            tokens.push(top);
            at = Some(child);
            continue;
        }
        let mut p = target[row].probs().to_vec();
        let mut next = None;
        for child in tree.children(at) {
            let x = tree.tokens[child];
            if try_child(&mut p, x, &tree.q[child], rng)? {
                next = Some(child);
                break;
            }
        }
        match next {
            Some(child) => {
                nodes.push(child);
                tokens.push(tree.tokens[child]);
                at = Some(child);
            }
            None => {
                tokens.push(draw(p, rng)?);
                return Ok(Acceptance { nodes, tokens });
            }
        }
    }
}

/// The probability `q` gives its own draft `x`, checked: a token of the vocabulary, drawn
/// from a distribution over it that gives it some mass.
fn draft_probability(x: u32, q: &DraftDist, vocab: usize) -> Result<f64, CoreError> {
    if x as usize >= vocab {
        return Err(CoreError::TokenOutOfRange { id: x, vocab });
    }
    let qx = match q {
        DraftDist::OneHot => 1.0,
        DraftDist::Sampled(d) => {
            if d.probs().len() != vocab {
                return Err(CoreError::InvalidParam {
                    name: "draft distribution",
                    value: d.probs().len().to_string(),
                    expected: "the target's vocabulary size",
                });
            }
            d.prob(x) as f64
        }
    };
    if qx <= 0.0 {
        return Err(CoreError::EmptyDistribution(
            "a draft token has zero probability under its own q",
        ));
    }
    Ok(qx)
}

/// Accepts `x` with probability min(1, p(x)/q(x)); on rejection turns `p` into the residual.
fn try_child(p: &mut [f32], x: u32, q: &DraftDist, rng: &mut Rng) -> Result<bool, CoreError> {
    let qx = draft_probability(x, q, p.len())?;
    let xi = x as usize;
    let ratio = p[xi] as f64 / qx;
    // Certain outcomes draw nothing, so greedy verification consumes no randomness.
    let accepted = if ratio >= 1.0 {
        true
    } else if ratio <= 0.0 {
        false
    } else {
        rng.next_f64() < ratio
    };
    if accepted {
        return Ok(true);
    }
    match q {
        DraftDist::OneHot => p[xi] = 0.0,
        DraftDist::Sampled(d) => {
            // p and q numerically equal: the residual has no mass; keep p (as mistral.rs does).
            let residual = |(pi, qi): (&f32, &f32)| (pi - qi).max(0.0);
            let mut lanes = [0f64; 8];
            for (n, v) in p.iter().zip(d.probs()).map(residual).enumerate() {
                lanes[n % 8] += v as f64;
            }
            if lanes.iter().sum::<f64>() > 1e-9 {
                for (pi, qi) in p.iter_mut().zip(d.probs()) {
                    *pi = (*pi - qi).max(0.0);
                }
            }
        }
    }
    // The next sibling's ratio needs the normalised residual.
    let total = crate::sampling::sum(p);
    if total > 0.0 {
        let inv = 1.0 / total;
        p.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
    }
    Ok(false)
}

/// Medusa's typical acceptance: LOSSY. A candidate x is accepted where the target's
/// distribution p (after the request's warpers) gives it p(x) > min(threshold, alpha * exp(-H(p))),
/// H the entropy of p; the longest accepted path wins (earliest on ties), then one token is
/// sampled from the row after it. Faster acceptance at higher temperatures, but the output no
/// longer follows the target's distribution exactly. Greedy callers should use [`accept`].
pub fn accept_typical(
    tree: &TokenTree,
    target: &[Distribution],
    threshold: f64,
    alpha: f64,
    rng: &mut Rng,
) -> Result<Acceptance, CoreError> {
    if !tree.is_well_formed() || target.len() != tree.len() + 1 {
        return Err(CoreError::InvalidParam {
            name: "tree",
            value: format!("{} nodes, {} target rows", tree.len(), target.len()),
            expected: "a well-formed tree and one target distribution per node plus one",
        });
    }
    let passes = |row: usize, x: u32| -> bool {
        let p = target[row].probs();
        let entropy: f64 = p
            .iter()
            .filter(|&&v| v > 0.0)
            .map(|&v| -(v as f64) * (v as f64).ln())
            .sum();
        (target[row].prob(x) as f64) > threshold.min(alpha * (-entropy).exp())
    };
    // Depth-first over accepted nodes; parents precede children, so one pass in index order
    // knows each parent's status before its children.
    let mut ok = vec![false; tree.len()];
    let mut depth = vec![0usize; tree.len()];
    let mut best: Option<usize> = None;
    for i in 0..tree.len() {
        let (row, parent_ok, d) = match tree.parents[i] {
            None => (0, true, 1),
            Some(p) => (p + 1, ok[p], depth[p] + 1),
        };
        ok[i] = parent_ok && passes(row, tree.tokens[i]);
        depth[i] = d;
        if ok[i] && best.is_none_or(|b| d > depth[b]) {
            best = Some(i);
        }
    }
    let mut nodes = Vec::new();
    let mut at = best;
    while let Some(n) = at {
        nodes.push(n);
        at = tree.parents[n];
    }
    nodes.reverse();
    let mut tokens: Vec<u32> = nodes.iter().map(|&n| tree.tokens[n]).collect();
    let last_row = nodes.last().map_or(0, |n| n + 1);
    tokens.push(draw(target[last_row].probs().to_vec(), rng)?);
    Ok(Acceptance { nodes, tokens })
}

/// Draws from unnormalised non-negative weights.
fn draw(p: Vec<f32>, rng: &mut Rng) -> Result<u32, CoreError> {
    let d = Distribution::from_weights(p)?;
    // One-hot: the answer needs no randomness (keeps greedy runs free of RNG use).
    let max = d.probs().iter().fold(0f32, |m, &v| if v > m { v } else { m });
    if max == 1.0 {
        if let Some(i) = d.probs().iter().position(|&v| v == 1.0) {
            return Ok(i as u32);
        }
    }
    Ok(d.sample(rng))
}

#[cfg(test)]
mod tests;
