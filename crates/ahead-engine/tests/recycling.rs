//! Token recycling: trees from the target's own recent rankings propose, the target decides.
//! Greedy output is plain decoding's for every tree size, alone and batched (where requests
//! share the table while they run); sampled output follows the target's distribution
//! (chi-square, fixed seeds, alpha = 1e-4) with a private table and with the shared one; the
//! table carries what one request taught to the next, and never into seeded sampling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;
use ahead_model::{load, LoadOptions, ModelSource};

const PROMPTS: [&str; 3] = [
    "Once upon a time",
    "Lily and Ben went to the park. Lily and Ben went",
    "The dog",
];

fn greedy_recycling(k: Option<usize>, max_tokens: usize) -> GenerateParams {
    method_params(Method::Recycling, k, SamplingParams::greedy(), 0, max_tokens)
}

#[test]
fn greedy_output_is_plain_decodings_for_every_tree_size() {
    let ks = [None, Some(1), Some(4), Some(12)];
    let stats = assert_greedy_is_plain_decodings(engine(), &PROMPTS, Method::Recycling, &ks, 80, "recycling");
    // Fixed sizes always draft (where the table knows the token).
    for (s, k) in stats.iter().zip(ks.iter().cycle()) {
        assert!(k.is_none() || s.drafted_tokens > 0, "k {k:?}: {s:?}");
    }
}

#[test]
fn batched_sequences_sharing_the_table_give_plain_decodings_tokens() {
    let e = engine();
    let mut prompts: Vec<Prompt> = PROMPTS.iter().map(|p| Prompt::from(*p)).collect();
    let long = "Tom had a red ball. He played with it in the park every day. ".repeat(8);
    prompts.push(Prompt::from(long.as_str()));
    let vanilla = method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 40);
    for (p, got) in prompts
        .iter()
        .zip(e.generate_batched(&prompts, &greedy_recycling(Some(6), 40)))
    {
        let got = got.unwrap();
        assert_eq!(got.token_ids, gen(e, p, &vanilla).token_ids, "{p:?}");
        assert!(got.stats.drafted_tokens > 0, "{p:?}");
    }
}

#[test]
fn what_one_request_verified_drafts_the_next() {
    // Without the vendored n-gram cache, which would draft from the first step on.
    let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
    let e = &Engine::from_loaded(loaded);
    let in_scope = |scope: &str, max_tokens| GenerateParams {
        scope: Some(scope.into()),
        ..greedy_recycling(Some(6), max_tokens)
    };
    // "dog" never has a successor in the prompt: a fresh table has nothing to draft from at
    // the first step...
    let prompt = Prompt::from("The dog");
    let cold = gen(e, &prompt, &in_scope("cold", 2));
    assert_eq!(cold.stats.drafted_tokens, 0, "{:?}", cold.stats);
    // ...and a table an earlier request of the scope filled drafts there, rightly.
    gen(e, &prompt, &in_scope("warm", 30));
    let warm = gen(e, &prompt, &in_scope("warm", 2));
    assert_eq!(cold.token_ids, warm.token_ids);
    assert_eq!(warm.stats.drafted_tokens, 1, "{:?}", warm.stats);
    assert_eq!(warm.stats.accepted_tokens, 1, "{:?}", warm.stats);
}

#[test]
fn seeded_sampling_does_not_depend_on_earlier_requests() {
    assert_seeded_sampling_ignores_earlier_requests(Method::Recycling, &PROMPTS);
}

#[test]
fn sampled_tokens_follow_the_target_distribution_with_a_private_table() {
    let prompt = Prompt::from(PROMPTS[1]);
    for sampling in two_samplers() {
        assert_samples_follow_the_target(engine(), &prompt, Method::Recycling, 4, &sampling);
    }
}

#[test]
fn sampled_tokens_follow_the_target_distribution_with_the_shared_table() {
    use ahead_testutil::{chi_square, chi_square_critical as critical};
    // Not reproducible: every request drafts from (and teaches) the engine's table.
    let e = Engine::builder().build().unwrap();
    let prompt = Prompt::from(PROMPTS[0]);
    let sampling = two_samplers()[1].clone();
    let counts = sample_two_tokens(&e, &prompt, 3000, |seed| GenerateParams {
        reproducible: false,
        ..method_params(Method::Recycling, Some(4), sampling.clone(), seed, 2)
    });
    assert!(counts.drafted > 0);
    let ids = e.prompt_ids(&prompt).unwrap();
    let (s, dof) = chi_square(&counts.first, &target_dist(&e, &ids, &sampling));
    assert!(s < critical(dof), "first token chi2 {s}, dof {dof}");
    let (t1, seconds) = counts.commonest_second();
    let mut ctx = ids;
    ctx.push(t1);
    let (s, dof) = chi_square(seconds, &target_dist(&e, &ctx, &sampling));
    assert!(s < critical(dof), "second token chi2 {s}, dof {dof}");
}
