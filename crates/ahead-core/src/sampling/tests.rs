use super::*;
use ahead_testutil::{chi_square, chi_square_critical};

fn params(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        ..SamplingParams::greedy()
    }
}

#[test]
fn argmax_takes_the_lowest_id_on_ties_and_rejects_nan() {
    assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), Ok(1));
    assert!(argmax(&[0.0, f32::NAN]).is_err());
    assert!(matches!(
        argmax(&[f32::NAN, 9.0, f32::NAN]),
        Err(CoreError::NonFinite { index: 0, .. })
    ));
    assert!(argmax(&[]).is_err());
    assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), Ok(0));
    assert_eq!(argmax(&[1.0, f32::INFINITY, f32::INFINITY]), Ok(1));
}

#[test]
fn temperature_one_is_softmax() {
    let d = warp(&[0.0, (2f32).ln(), (5f32).ln()], &params(1.0), &[]).unwrap();
    let want = [1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0];
    for (p, w) in d.probs().iter().zip(want) {
        assert!((p - w).abs() < 1e-6, "{:?}", d.probs());
    }
}

#[test]
fn top_k_top_p_and_min_p_cut_the_tail() {
    let logits: Vec<f32> = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.ln()).collect();
    let top_k = warp(
        &logits,
        &SamplingParams {
            top_k: 2,
            ..params(1.0)
        },
        &[],
    )
    .unwrap();
    assert_eq!(top_k.probs().iter().filter(|&&p| p > 0.0).count(), 2);
    assert!((top_k.prob(0) - 4.0 / 7.0).abs() < 1e-6);
    // top-p 0.75 keeps 0.4 + 0.3 + 0.2 (0.7 < 0.75).
    let top_p = warp(
        &logits,
        &SamplingParams {
            top_p: 0.75,
            ..params(1.0)
        },
        &[],
    )
    .unwrap();
    assert_eq!(top_p.prob(3), 0.0);
    assert!((top_p.prob(2) - 2.0 / 9.0).abs() < 1e-6);
    // min-p 0.6: floor 0.24 keeps 0.4 and 0.3.
    let min_p = warp(
        &logits,
        &SamplingParams {
            min_p: 0.6,
            ..params(1.0)
        },
        &[],
    )
    .unwrap();
    assert_eq!(min_p.probs().iter().filter(|&&p| p > 0.0).count(), 2);
}

#[test]
fn repetition_penalty_lowers_seen_tokens_once() {
    let mut l = vec![2.0, -2.0, 2.0];
    apply_repetition_penalty(&mut l, &[0, 0, 1], 2.0);
    assert_eq!(l, vec![1.0, -4.0, 2.0]);
    let greedy = SamplingParams {
        repetition_penalty: 4.0,
        ..SamplingParams::greedy()
    };
    assert_eq!(choose(&[3.0, 2.0], &greedy, &[0], &mut Rng::new(0)), Ok(1));
}

#[test]
fn invalid_params_name_the_parameter() {
    for (bad, name) in [
        (params(-1.0), "temperature"),
        (params(f32::NAN), "temperature"),
        (
            SamplingParams {
                top_p: 0.0,
                ..params(1.0)
            },
            "top_p",
        ),
        (
            SamplingParams {
                min_p: 1.5,
                ..params(1.0)
            },
            "min_p",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..params(1.0)
            },
            "repetition_penalty",
        ),
    ] {
        match bad.validate() {
            Err(CoreError::InvalidParam { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn non_finite_logits_are_an_error_not_a_panic() {
    assert!(warp(&[0.0, f32::NAN], &params(1.0), &[]).is_err());
    assert!(warp(&[0.0, f32::INFINITY], &params(1.0), &[]).is_err());
    assert!(warp(&[f32::NEG_INFINITY; 3], &params(1.0), &[]).is_err());
    // -inf on some tokens is a mask, and fine.
    let d = warp(&[0.0, f32::NEG_INFINITY], &params(1.0), &[]).unwrap();
    assert_eq!(d.probs(), &[1.0, 0.0]);
}

#[test]
fn tiny_temperature_is_finite_and_near_greedy() {
    let d = warp(&[1.0, 1.001, 0.5], &params(1e-30), &[]).unwrap();
    assert_eq!(d.prob(1), 1.0);
}

#[test]
fn samples_follow_the_distribution_chi_square() {
    // Fixed seed: deterministic; alpha = 1e-4.
    let logits: Vec<f32> = (0..8).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    for p in [
        params(1.0),
        params(0.7),
        SamplingParams {
            top_k: 5,
            ..params(1.3)
        },
        SamplingParams {
            top_p: 0.8,
            ..params(1.0)
        },
        SamplingParams {
            min_p: 0.1,
            ..params(1.0)
        },
    ] {
        let d = warp(&logits, &p, &[]).unwrap();
        let mut rng = Rng::new(42);
        let mut counts = [0u64; 8];
        for _ in 0..200_000 {
            counts[choose(&logits, &p, &[], &mut rng).unwrap() as usize] += 1;
        }
        // chi_square also fails on any draw outside the support.
        let probs: Vec<f64> = d.probs().iter().map(|&q| q as f64).collect();
        let (stat, dof) = chi_square(&counts, &probs);
        assert!(
            stat < chi_square_critical(dof),
            "chi-square {stat} with {dof} dof for {p:?}"
        );
    }
}

#[test]
fn one_hot_checks_the_vocabulary() {
    assert!(Distribution::one_hot(3, 3).is_err());
    assert_eq!(Distribution::one_hot(1, 3).unwrap().probs(), &[0.0, 1.0, 0.0]);
}

#[test]
fn top_logits_are_the_highest_in_order_with_lower_ids_first_among_equals() {
    let logits = [0.5, 3.0, f32::NAN, 3.0, -1.0, 2.0];
    assert_eq!(top_logits(&logits, 3), vec![(1, 3.0), (3, 3.0), (5, 2.0)]);
    assert_eq!(top_logits(&logits, 10).len(), 5, "NaN is skipped");
    assert!(top_logits(&logits, 0).is_empty());
}

#[test]
fn top_logits_match_a_full_sort_across_many_blocks() {
    let mut rng = crate::Rng::new(7);
    // Coarse values, so ties are common and cross block boundaries.
    let logits: Vec<f32> = (0..1000).map(|_| (rng.next_u64() % 50) as f32).collect();
    let mut sorted: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for n in [1, 8, 40] {
        assert_eq!(top_logits(&logits, n), sorted[..n].to_vec(), "n = {n}");
    }
}

/// Sorting the whole vocabulary, as `truncate_tail` did before it sorted only a head of it.
fn truncate_by_full_sort(weights: &mut [f32], total: f64, params: &SamplingParams) {
    let vocab = weights.len();
    let top_k = if params.top_k == 0 {
        vocab
    } else {
        params.top_k.min(vocab)
    };
    let mut order: Vec<usize> = (0..vocab).collect();
    order.sort_unstable_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
    order.truncate(top_k);
    let mut keep = order.len();
    if params.top_p < 1.0 {
        let mass: f64 = if top_k < vocab {
            order.iter().map(|&i| weights[i] as f64).sum()
        } else {
            total
        };
        let mut cum = 0.0;
        if let Some(n) = order.iter().position(|&i| {
            cum += weights[i] as f64;
            cum >= params.top_p as f64 * mass
        }) {
            keep = keep.min(n + 1);
        }
    }
    if params.min_p > 0.0 {
        let floor = params.min_p * weights[order[0]];
        keep = keep.min(order.iter().take_while(|&&i| weights[i] >= floor).count().max(1));
    }
    let kept: std::collections::HashSet<usize> = order[..keep].iter().copied().collect();
    for (i, w) in weights.iter_mut().enumerate() {
        if !kept.contains(&i) {
            *w = 0.0;
        }
    }
}

#[test]
fn cutting_a_head_of_the_order_keeps_what_sorting_everything_keeps() {
    let mut rng = Rng::new(7);
    let settings = [
        (0, 0.9, 0.0),
        (0, 0.5, 0.0),
        (0, 0.999_999, 0.0),
        (0, 1.0, 0.05),
        (0, 1.0, 1e-9),
        (0, 0.95, 0.05),
        (40, 0.9, 0.0),
        (40, 1.0, 0.0),
        (2, 1.0, 0.0),
        (60, 0.95, 0.05),
        (5000, 0.99, 0.01),
    ];
    for case in 0..60 {
        let vocab = [3, 100, 5000][case % 3];
        // Peaked to flat logits, and some quantised so that ties happen.
        let spread = [0.1, 2.0, 8.0, 30.0][case % 4];
        let mut logits: Vec<f64> = (0..vocab)
            .map(|_| {
                let x = rng.next_f64() * spread;
                if case % 5 == 0 {
                    x.round()
                } else {
                    x
                }
            })
            .collect();
        // One token far above a flat tail: top-p's cut then falls below the first head.
        if case % 7 == 3 {
            logits[0] = 12.0;
        }
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f32> = logits.iter().map(|x| (x - max).exp() as f32).collect();
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        for (top_k, top_p, min_p) in settings {
            let params = SamplingParams {
                top_k,
                top_p,
                min_p,
                ..params(1.0)
            };
            let (mut fast, mut full) = (weights.clone(), weights.clone());
            tail::truncate_tail(&mut fast, total, &params);
            truncate_by_full_sort(&mut full, total, &params);
            assert_eq!(fast, full, "case {case}, vocab {vocab}, {params:?}");
        }
    }
}
