//! FR-Spec drafts: a draft model whose classifier scores a subset of the vocabulary drafts only
//! tokens of that subset, with q over the subset (zero elsewhere). Verification scores the
//! whole vocabulary, so greedy output stays plain decoding's and sampled output follows the
//! target's distribution (chi-square, fixed seeds, alpha = 1e-4), even where the target puts
//! mass on tokens the draft cannot propose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_core::sampling::warp;
use ahead_engine::Method;
use ahead_model::{load, ForwardInput, LoadOptions, ModelSource};
use ahead_testutil::{chi_square, chi_square_critical as critical};

/// Every id below 300, and the even ones above: the odd ids above 300 cannot be drafted.
fn subset() -> Vec<u32> {
    (0..512u32).filter(|&t| t < 300 || t % 2 == 0).collect()
}

/// stories260K with a Q8_0 copy of itself as the draft, its classifier restricted.
fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let draft = quantized_copy(&loaded.model).restricted_to(&subset()).unwrap();
        Engine::from_loaded(loaded).with_draft(draft)
    })
}

#[test]
fn greedy_output_is_plain_decodings_for_every_draft_length() {
    let e = engine();
    for prompt in [
        "Once upon a time",
        "Lily and Ben went to the park. Lily and Ben went",
        "The dog",
    ] {
        let prompt = Prompt::from(prompt);
        let want = gen(
            e,
            &prompt,
            &method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 80),
        );
        for k in [None, Some(1), Some(3), Some(6)] {
            let got = gen(
                e,
                &prompt,
                &method_params(Method::Draft, k, SamplingParams::greedy(), 0, 80),
            );
            assert_eq!(got.token_ids, want.token_ids, "k {k:?}");
            if k.is_some() {
                assert!(got.stats.drafted_tokens > 0);
            }
        }
    }
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let e = engine();
    let model = e.model();
    let prompt = Prompt::from("Once upon a time");
    let prompt_ids = e.prompt_ids(&prompt).unwrap();
    let drafted_from = subset();
    for sampling in [
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 20,
            ..SamplingParams::greedy()
        },
    ] {
        let dist = |ids: &[u32]| {
            let mut cache = model.new_cache(ids.len()).unwrap();
            let pos: Vec<usize> = (0..ids.len()).collect();
            let out = model
                .forward(&ForwardInput::causal(ids, &pos), &mut cache)
                .unwrap();
            warp(out.last(), &sampling, ids).unwrap()
        };
        let p1 = dist(&prompt_ids);
        // The test means something only if the target can pick what the draft cannot.
        let outside: f64 = (0..512u32)
            .filter(|t| !drafted_from.contains(t))
            .map(|t| p1.probs()[t as usize] as f64)
            .sum();
        let mut first = vec![0u64; 512];
        let mut seconds: std::collections::HashMap<u32, Vec<u64>> = Default::default();
        let mut drafted = 0;
        for seed in 0..3000 {
            let out = gen(
                e,
                &prompt,
                &method_params(Method::Draft, Some(3), sampling.clone(), seed, 2),
            );
            first[out.token_ids[0] as usize] += 1;
            seconds.entry(out.token_ids[0]).or_insert_with(|| vec![0; 512])[out.token_ids[1] as usize] += 1;
            drafted += out.stats.drafted_tokens;
        }
        assert!(drafted > 0);
        let probs: Vec<f64> = p1.probs().iter().map(|&p| p as f64).collect();
        let (s, dof) = chi_square(&first, &probs);
        assert!(
            s < critical(dof),
            "{sampling:?}: first token chi2 {s}, dof {dof} (outside mass {outside})"
        );
        let (&t1, counts) = seconds.iter().max_by_key(|(_, c)| c.iter().sum::<u64>()).unwrap();
        let mut ctx = prompt_ids.clone();
        ctx.push(t1);
        let p2: Vec<f64> = dist(&ctx).probs().iter().map(|&p| p as f64).collect();
        let (s, dof) = chi_square(counts, &p2);
        assert!(
            s < critical(dof),
            "{sampling:?}: second token chi2 {s}, dof {dof}"
        );
    }
}
