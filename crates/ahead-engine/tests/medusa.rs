//! Medusa on the real stories260K with its vendored heads: greedy output is token-identical to
//! plain decoding for several trees and draft sizes; exact acceptance follows the target's
//! distribution (chi-square, fixed seeds); typical acceptance runs, is exact at greedy, and is
//! reported as lossy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_core::spec::MedusaTree;
use ahead_engine::{MedusaAcceptance, Method};
use ahead_testutil::{chi_square, chi_square_critical as critical};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::builder().build().unwrap())
}

fn params(
    tree: Option<MedusaTree>,
    k: Option<usize>,
    sampling: SamplingParams,
    seed: u64,
    n: usize,
) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        sampling,
        seed,
        method: Method::Medusa,
        num_draft: k,
        medusa_tree: tree,
        ignore_eos: true,
        ..Default::default()
    }
}

fn trees() -> Vec<Option<MedusaTree>> {
    vec![
        None,
        Some(MedusaTree::default_cpu()),
        Some(MedusaTree::parse("[[0]]").unwrap()),
        Some(MedusaTree::parse("[[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 1]]").unwrap()),
        // Deeper than the heads: the extra depth is dropped.
        Some(MedusaTree::parse("[[0], [0, 0], [0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0, 0]]").unwrap()),
    ]
}

#[test]
fn greedy_output_is_token_identical_to_plain_decoding() {
    let e = engine();
    let mut accepted = 0;
    for prompt in [
        "Once upon a time",
        "Lily wanted to play with her ball, but",
        "The little dog was sad.",
        "Tom and Sue went to the park. They saw",
    ] {
        let prompt = Prompt::from(prompt);
        let vanilla = GenerateParams {
            method: Method::Vanilla,
            ..params(None, None, SamplingParams::greedy(), 0, 120)
        };
        let want = gen(e, &prompt, &vanilla);
        for tree in trees() {
            for k in [Some(1), Some(4), Some(8), None] {
                let got = gen(
                    e,
                    &prompt,
                    &params(tree.clone(), k, SamplingParams::greedy(), 0, 120),
                );
                assert_eq!(got.token_ids, want.token_ids, "{tree:?} k={k:?} {prompt:?}");
                let s = &got.stats;
                assert_eq!(s.method, "medusa");
                assert_eq!(s.generated_tokens, s.target_forwards + s.accepted_tokens);
                accepted += s.accepted_tokens;
            }
            // Typical acceptance is exact at greedy too.
            let typical = GenerateParams {
                medusa_acceptance: MedusaAcceptance::typical(),
                ..params(tree.clone(), Some(8), SamplingParams::greedy(), 0, 120)
            };
            assert_eq!(gen(e, &prompt, &typical).token_ids, want.token_ids);
        }
    }
    assert!(
        accepted > 200,
        "Medusa candidates were almost never accepted ({accepted})"
    );
}

#[test]
fn exact_acceptance_follows_the_target_distribution() {
    let e = engine();
    // Medusa needs a hidden state, which the prefill of a prompt of two or more tokens gives,
    // so the first generated token already comes from a verified tree.
    let prompt = Prompt::from("Once upon a time, there was a little girl named");
    let ids = e.prompt_ids(&prompt).unwrap();
    let vocab = e.model().config().vocab_size;
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
        SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.2,
            min_p: 0.05,
            repetition_penalty: 1.1,
            ..SamplingParams::greedy()
        },
    ] {
        let (mut first, mut second) = (vec![0u64; vocab], std::collections::HashMap::new());
        let mut drafted = 0;
        for seed in 0..4000 {
            let p = params(
                Some(MedusaTree::default_cpu()),
                Some(6),
                sampling.clone(),
                seed,
                2,
            );
            let out = gen(e, &prompt, &p);
            first[out.token_ids[0] as usize] += 1;
            second
                .entry(out.token_ids[0])
                .or_insert_with(|| vec![0u64; vocab])[out.token_ids[1] as usize] += 1;
            drafted += out.stats.drafted_tokens;
        }
        assert!(drafted > 0, "never drafted: the test would not test Medusa");
        let (s, dof) = chi_square(&first, &target_dist(e, &ids, &sampling));
        assert!(s < critical(dof), "{sampling:?}: first token chi2 {s}, dof {dof}");
        let (&t1, counts) = second.iter().max_by_key(|(_, c)| c.iter().sum::<u64>()).unwrap();
        let mut ctx = ids.clone();
        ctx.push(t1);
        let (s, dof) = chi_square(counts, &target_dist(e, &ctx, &sampling));
        assert!(
            s < critical(dof),
            "{sampling:?}: second token chi2 {s}, dof {dof}"
        );
    }
}

#[test]
fn typical_acceptance_runs_when_sampling_and_accepts_more() {
    let e = engine();
    let prompt = Prompt::from("Once upon a time");
    let sampling = SamplingParams {
        temperature: 0.7,
        ..SamplingParams::greedy()
    };
    let (mut exact, mut typical) = (0usize, 0usize);
    for seed in 0..20 {
        let p = params(
            Some(MedusaTree::default_cpu()),
            Some(6),
            sampling.clone(),
            seed,
            60,
        );
        let a = gen(e, &prompt, &p);
        let t = gen(
            e,
            &prompt,
            &GenerateParams {
                medusa_acceptance: MedusaAcceptance::typical(),
                ..p
            },
        );
        assert_eq!(t.token_ids.len(), 60);
        exact += a.stats.accepted_tokens;
        typical += t.stats.accepted_tokens;
    }
    assert!(typical > 0 && exact > 0);
    assert!(typical >= exact, "typical {typical} < exact {exact}");
}

/// The hybrid: a draft (here the target's own weights) carrying Medusa heads drafts a tree in
/// one step; greedy output is token-identical and most depth-1 guesses are accepted.
#[test]
fn a_draft_with_medusa_heads_drafts_trees_losslessly() {
    let target = ahead_model::load(&ahead_model::ModelSource::Default, &Default::default()).unwrap();
    let draft = target.model.clone();
    let e = Engine::from_loaded(target)
        .with_draft(draft)
        .with_draft_medusa(ahead_model::load::default_medusa().unwrap())
        .unwrap();
    let mut accepted = 0;
    for prompt in ["Once upon a time", "The little dog was sad."] {
        let prompt = Prompt::from(prompt);
        let vanilla = GenerateParams {
            method: Method::Vanilla,
            ..params(None, None, SamplingParams::greedy(), 0, 100)
        };
        let want = gen(&e, &prompt, &vanilla);
        for k in [Some(2), Some(6)] {
            let p = GenerateParams {
                method: Method::Draft,
                ..params(
                    Some(MedusaTree::default_cpu()),
                    k,
                    SamplingParams::greedy(),
                    0,
                    100,
                )
            };
            let got = gen(&e, &prompt, &p);
            assert_eq!(got.token_ids, want.token_ids, "k={k:?}");
            accepted += got.stats.accepted_tokens;
            assert!(got.stats.target_forwards < 100);
        }
    }
    assert!(accepted > 100, "{accepted}");
}

/// FR-Spec: heads that score only part of the vocabulary draft only those tokens, and
/// verification over the whole vocabulary keeps the output plain decoding's.
#[test]
fn heads_pruned_to_a_token_subset_stay_lossless() {
    let full = engine().medusa_heads().unwrap();
    // Every other token of the vocabulary's first 400: many targets fall outside.
    let pruned = full.restricted_to((0..400).step_by(2).collect()).unwrap();
    let e = Engine::builder().build().unwrap().with_medusa(pruned).unwrap();
    let mut accepted = 0;
    for prompt in ["Once upon a time", "The little dog was sad."] {
        let prompt = Prompt::from(prompt);
        let vanilla = GenerateParams {
            method: Method::Vanilla,
            ..params(None, None, SamplingParams::greedy(), 0, 100)
        };
        let want = gen(&e, &prompt, &vanilla);
        for k in [Some(4), None] {
            let got = gen(
                &e,
                &prompt,
                &params(
                    Some(MedusaTree::default_cpu()),
                    k,
                    SamplingParams::greedy(),
                    0,
                    100,
                ),
            );
            assert_eq!(got.token_ids, want.token_ids, "k={k:?} {prompt:?}");
            accepted += got.stats.accepted_tokens;
        }
    }
    assert!(accepted > 0, "pruned heads never drafted an accepted token");
}
