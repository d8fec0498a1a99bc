//! Statistical and property tests of exact acceptance (invariants I2, I3, I4 of RELIABILITY.md).
//! Fixed seeds: deterministic, never flaky. Critical values at alpha = 1e-4.

use super::*;
use crate::sampling::{warp, SamplingParams};
use ahead_testutil::{chi_square, chi_square_critical as critical};

const V: usize = 8;

fn dist(w: &[f32]) -> Distribution {
    Distribution::from_weights(w.to_vec()).unwrap()
}

/// A Markov target: the next-token distribution depends on the previous token.
fn target(prev: u32) -> Distribution {
    let w: Vec<f32> = (0..V)
        .map(|x| 0.2 + ((x as u32 * 7 + prev * 3) % 5) as f32)
        .collect();
    let mut w = w;
    w[(prev as usize + 1) % V] = 0.0; // exact zeros in p
    dist(&w)
}

/// A draft that disagrees with the target, with its own zeros (supports differ both ways).
fn draft(prev: u32) -> Distribution {
    let mut w: Vec<f32> = (0..V).map(|x| 1.0 + ((x as u32 * 5 + prev) % 3) as f32).collect();
    w[(prev as usize + 3) % V] = 0.0;
    dist(&w)
}

/// Drafts a chain of `k` tokens after `prev` from the draft model, returns the tree and the
/// target rows (row 0 after `prev`, row i+1 after node i).
fn chain(
    prev: u32,
    k: usize,
    q: impl Fn(u32) -> Distribution,
    rng: &mut Rng,
) -> (TokenTree, Vec<Distribution>) {
    let mut tokens = Vec::new();
    let mut qs = Vec::new();
    let mut rows = vec![target(prev)];
    let mut last = prev;
    for _ in 0..k {
        let d = q(last);
        let x = d.sample(rng);
        tokens.push(x);
        qs.push(DraftDist::Sampled(d));
        rows.push(target(x));
        last = x;
    }
    (TokenTree::chain(tokens, qs), rows)
}

#[test]
fn first_two_committed_tokens_follow_the_target_for_k_1_2_8() {
    for k in [1, 2, 8] {
        let mut rng = Rng::new(1000 + k as u64);
        let mut first = vec![0u64; V];
        let mut pair = vec![0u64; V * V];
        let n = 200_000;
        for _ in 0..n {
            let (tree, rows) = chain(0, k, draft, &mut rng);
            let out = accept(&tree, &rows, &mut rng).unwrap();
            first[out.tokens[0] as usize] += 1;
            if out.tokens.len() >= 2 {
                pair[out.tokens[0] as usize * V + out.tokens[1] as usize] += 1;
            } else {
                // One token this step: the second comes from the target itself, as it would
                // next step.
                let b = target(out.tokens[0]).sample(&mut rng);
                pair[out.tokens[0] as usize * V + b as usize] += 1;
            }
            assert!(out.nodes.len() <= k);
        }
        let p0 = target(0);
        let want1: Vec<f64> = p0.probs().iter().map(|&p| p as f64).collect();
        let (s, dof) = chi_square(&first, &want1);
        assert!(s < critical(dof), "k={k}: first token chi2 {s} dof {dof}");
        let want2: Vec<f64> = (0..V * V)
            .map(|c| want1[c / V] * target((c / V) as u32).prob((c % V) as u32) as f64)
            .collect();
        let (s, dof) = chi_square(&pair, &want2);
        assert!(s < critical(dof), "k={k}: token pair chi2 {s} dof {dof}");
    }
}

#[test]
fn acceptance_rate_is_one_minus_total_variation() {
    let (p, q) = (target(0), draft(0));
    let expected: f64 = p
        .probs()
        .iter()
        .zip(q.probs())
        .map(|(&a, &b)| a.min(b) as f64)
        .sum();
    let mut rng = Rng::new(5);
    let n = 100_000;
    let mut hits = 0;
    for _ in 0..n {
        let (tree, rows) = chain(0, 1, draft, &mut rng);
        hits += accept(&tree, &rows, &mut rng).unwrap().nodes.len();
    }
    let rate = hits as f64 / n as f64;
    let sd = (expected * (1.0 - expected) / n as f64).sqrt();
    assert!((rate - expected).abs() < 4.5 * sd, "rate {rate} vs {expected}");
}

#[test]
fn trees_with_sampled_and_one_hot_siblings_follow_the_target() {
    // Root: two independent draws from q plus one deterministic candidate; each with a child.
    let mut rng = Rng::new(77);
    let mut first = vec![0u64; V];
    let mut second_after_3 = vec![0u64; V];
    for _ in 0..200_000 {
        let q = draft(0);
        let (a, b) = (q.sample(&mut rng), q.sample(&mut rng));
        let c = 3;
        let tokens = vec![a, b, c, 3, 1];
        let parents = vec![None, None, None, Some(2), Some(0)];
        let qs = vec![
            DraftDist::Sampled(q.clone()),
            DraftDist::Sampled(q.clone()),
            DraftDist::OneHot,
            DraftDist::OneHot,
            DraftDist::OneHot,
        ];
        let tree = TokenTree {
            tokens: tokens.clone(),
            parents,
            q: qs,
        };
        let mut rows = vec![target(0)];
        rows.extend(tokens.iter().map(|&t| target(t)));
        let out = accept(&tree, &rows, &mut rng).unwrap();
        first[out.tokens[0] as usize] += 1;
        if out.tokens[0] == 3 {
            let second = out
                .tokens
                .get(1)
                .copied()
                .unwrap_or_else(|| target(3).sample(&mut rng));
            second_after_3[second as usize] += 1;
        }
    }
    let want: Vec<f64> = target(0).probs().iter().map(|&p| p as f64).collect();
    let (s, dof) = chi_square(&first, &want);
    assert!(s < critical(dof), "first token chi2 {s}");
    let want: Vec<f64> = target(3).probs().iter().map(|&p| p as f64).collect();
    let (s, dof) = chi_square(&second_after_3, &want);
    assert!(s < critical(dof), "second token chi2 {s}");
}

#[test]
fn warped_target_and_draft_keep_the_warped_target_distribution() {
    // The verifier sees p and q after the same warpers; the output follows the warped p.
    let logits_p: Vec<f32> = (0..V).map(|i| (i as f32 * 0.9).sin() * 2.0).collect();
    let logits_q: Vec<f32> = (0..V).map(|i| (i as f32 * 0.5).cos() * 2.0).collect();
    for params in [
        SamplingParams {
            temperature: 0.7,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 4,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 0.7,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.2,
            min_p: 0.2,
            ..SamplingParams::greedy()
        },
    ] {
        let p = warp(&logits_p, &params, &[]).unwrap();
        let q = warp(&logits_q, &params, &[]).unwrap();
        let mut rng = Rng::new(9);
        let mut counts = vec![0u64; V];
        for _ in 0..100_000 {
            let x = q.sample(&mut rng);
            let tree = TokenTree::chain(vec![x], vec![DraftDist::Sampled(q.clone())]);
            let out = accept(&tree, &[p.clone(), p.clone()], &mut rng).unwrap();
            counts[out.tokens[0] as usize] += 1;
        }
        let want: Vec<f64> = p.probs().iter().map(|&v| v as f64).collect();
        let (s, dof) = chi_square(&counts, &want);
        assert!(s < critical(dof.max(1)), "{params:?}: chi2 {s}");
    }
}

#[test]
fn greedy_accepts_exactly_the_argmax_path_without_randomness() {
    let p = |t: u32| Distribution::one_hot((t * 3 + 1) % V as u32, V).unwrap();
    // argmax after 0 is 1, after 1 is 4, after 4 is 5.
    let tree = TokenTree::chain(vec![1, 4, 6], vec![DraftDist::OneHot; 3]);
    let rows = vec![p(0), p(1), p(4), p(6)];
    let mut rng = Rng::new(1);
    let before = rng.clone();
    let out = accept(&tree, &rows, &mut rng).unwrap();
    assert_eq!(out.nodes, vec![0, 1]);
    assert_eq!(out.tokens, vec![1, 4, 5]);
    assert_eq!(rng, before, "greedy verification draws no random numbers");
    // All accepted: the bonus comes from the last row.
    let tree = TokenTree::chain(vec![1, 4], vec![DraftDist::OneHot; 2]);
    let out = accept(&tree, &rows[..3], &mut rng).unwrap();
    assert_eq!(out.tokens, vec![1, 4, 5]);
    // Empty tree: plain decoding.
    let out = accept(&TokenTree::empty(), &rows[..1], &mut rng).unwrap();
    assert_eq!(out.tokens, vec![1]);
}

#[test]
fn residual_edge_cases_never_panic_and_stay_in_the_support() {
    let mut rng = Rng::new(3);
    // q == p: always accepted.
    let p = target(2);
    for _ in 0..1000 {
        let x = p.sample(&mut rng);
        let tree = TokenTree::chain(vec![x], vec![DraftDist::Sampled(p.clone())]);
        let out = accept(&tree, &[p.clone(), p.clone()], &mut rng).unwrap();
        assert_eq!(out.nodes, vec![0]);
    }
    // A one-hot draft outside supp(p) is rejected, and the correction is in supp(p), not x.
    let zero = (2 + 1) % V as u32;
    assert_eq!(p.prob(zero), 0.0);
    for _ in 0..1000 {
        let tree = TokenTree::chain(vec![zero], vec![DraftDist::OneHot]);
        let out = accept(&tree, &[p.clone(), p.clone()], &mut rng).unwrap();
        assert!(out.nodes.is_empty());
        assert!(p.prob(out.tokens[0]) > 0.0 && out.tokens[0] != zero);
    }
}

#[test]
fn malformed_inputs_are_errors() {
    let mut rng = Rng::new(0);
    let p = target(0);
    let q0 = dist(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    // The drafted token has zero probability under its own q.
    let tree = TokenTree::chain(vec![0], vec![DraftDist::Sampled(q0)]);
    assert!(accept(&tree, &[p.clone(), p.clone()], &mut rng).is_err());
    // Wrong number of target rows, a token outside the vocabulary, a child before its parent.
    let tree = TokenTree::chain(vec![1], vec![DraftDist::OneHot]);
    assert!(accept(&tree, std::slice::from_ref(&p), &mut rng).is_err());
    let tree = TokenTree::chain(vec![99], vec![DraftDist::OneHot]);
    assert!(accept(&tree, &[p.clone(), p.clone()], &mut rng).is_err());
    let tree = TokenTree {
        tokens: vec![1, 2],
        parents: vec![Some(1), None],
        q: vec![DraftDist::OneHot; 2],
    };
    assert!(accept(&tree, &[p.clone(), p.clone(), p.clone()], &mut rng).is_err());
    // A draft distribution over another vocabulary.
    let tree = TokenTree::chain(vec![1], vec![DraftDist::Sampled(dist(&[1.0, 1.0]))]);
    assert!(accept(&tree, &[p.clone(), p], &mut rng).is_err());
}

#[test]
fn typical_acceptance_takes_the_longest_plausible_path() {
    let mut rng = Rng::new(3);
    // Root row: token 1 likely (0.6), token 2 unlikely (0.01). Rows after node 0 and node 1.
    let root = dist(&[0.1, 0.6, 0.01, 0.29]);
    let after_1 = dist(&[0.05, 0.05, 0.85, 0.05]);
    let flat = dist(&[0.25, 0.25, 0.25, 0.25]);
    // Node 0 = token 2 (implausible), node 1 = token 1 (plausible), node 2 = child of 1: token 2.
    let tree = TokenTree {
        tokens: vec![2, 1, 2],
        parents: vec![None, None, Some(1)],
        q: vec![DraftDist::OneHot; 3],
    };
    let rows = [root, flat.clone(), after_1, flat];
    let out = accept_typical(&tree, &rows, 0.09, 0.3, &mut rng).unwrap();
    assert_eq!(out.nodes, vec![1, 2]);
    assert_eq!(&out.tokens[..2], &[1, 2]);
    assert_eq!(out.tokens.len(), 3);
    // Nothing plausible: only the sampled token.
    let tree = TokenTree::chain(vec![2], vec![DraftDist::OneHot]);
    let out = accept_typical(&tree, &rows[..2], 0.09, 0.3, &mut rng).unwrap();
    assert!(out.nodes.is_empty() && out.tokens.len() == 1);
}
