//! Each method's controller starts a request from the acceptance that the method's earlier
//! requests on the same engine measured: greedy and unseeded sampled requests learn and
//! use it, seeded ones neither (their tokens depend on the drafting schedule), and what was
//! learned never changes a greedy or seeded output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;

fn params(method: Method) -> GenerateParams {
    GenerateParams {
        method,
        max_tokens: 48,
        ..GenerateParams::default()
    }
}

const PROMPTS: [&str; 3] = [
    "Once upon a time",
    "Lily and Ben went to the park. Lily and Ben went to the",
    "One day, a little boy named Tim",
];

#[test]
fn greedy_requests_learn_each_method_and_keep_vanilla_tokens() {
    let fresh = || Engine::builder().build().unwrap();
    let learning = fresh();
    for method in [
        Method::Medusa,
        Method::Lookahead,
        Method::PromptLookup,
        Method::Draft,
    ] {
        let p = params(method);
        assert_eq!(
            learning.learned_acceptance(&p),
            None,
            "{method:?} before any request"
        );
        let mut drafted = 0;
        for prompt in PROMPTS {
            let prompt = Prompt::from(prompt);
            let got = learning.generate_one(&prompt, &p, &mut |_| {}).unwrap();
            drafted += got.stats.drafted_tokens;
            // A fresh engine's request (the prior) and plain decoding give the same tokens.
            let first = fresh().generate_one(&prompt, &p, &mut |_| {}).unwrap();
            let plain = learning
                .generate_one(&prompt, &params(Method::Vanilla), &mut |_| {})
                .unwrap();
            assert_eq!(got.token_ids, first.token_ids, "{method:?}");
            assert_eq!(got.token_ids, plain.token_ids, "{method:?}");
        }
        // Whether the controller drafted depends on this machine's timings; what it drafted,
        // it learned from.
        let learned = learning.learned_acceptance(&p);
        assert_eq!(learned.is_some(), drafted > 0, "{method:?}: {learned:?}");
        if let Some(learned) = learned {
            assert!(
                !learned.is_empty() && learned.iter().all(|a| (0.0..=1.0).contains(a)),
                "{learned:?}"
            );
        }
        // A fixed draft length is not the method's controller: it has nothing of its own.
        let fixed = GenerateParams {
            num_draft: Some(2),
            ..p.clone()
        };
        assert_eq!(learning.learned_acceptance(&fixed), None);
    }
    // `Auto` is prompt lookup here (the embedded draft is not chosen by auto): it shares what
    // prompt lookup learned.
    assert_eq!(
        learning.learned_acceptance(&params(Method::Auto)),
        learning.learned_acceptance(&params(Method::PromptLookup))
    );
    assert_eq!(learning.learned_acceptance(&params(Method::Vanilla)), None);
}

#[test]
fn seeded_sampling_neither_learns_nor_depends_on_what_others_learned() {
    let sampled = |reproducible| GenerateParams {
        sampling: SamplingParams {
            temperature: 0.8,
            ..SamplingParams::default()
        },
        seed: 7,
        reproducible,
        ..params(Method::PromptLookup)
    };
    let engine = Engine::builder().build().unwrap();
    let prompt = Prompt::from(PROMPTS[1]);
    let before = engine.generate_one(&prompt, &sampled(true), &mut |_| {}).unwrap();
    assert_eq!(engine.learned_acceptance(&sampled(true)), None);
    // Unseeded sampling and greedy requests may learn (as far as they drafted)...
    for _ in 0..3 {
        engine
            .generate_one(&prompt, &sampled(false), &mut |_| {})
            .unwrap();
        engine
            .generate_one(&prompt, &params(Method::PromptLookup), &mut |_| {})
            .unwrap();
    }
    // ...and a seeded request still gives the tokens it gave before any of them.
    let after = engine.generate_one(&prompt, &sampled(true), &mut |_| {}).unwrap();
    assert_eq!(before.token_ids, after.token_ids);
    assert_eq!(engine.learned_acceptance(&sampled(true)), None);
}
