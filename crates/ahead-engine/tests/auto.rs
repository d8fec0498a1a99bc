//! `auto` with a model drafter loaded: prompt lookup's free offers beside an EAGLE head, the
//! controller verifying whichever promises more each step. Greedy output is plain decoding's,
//! alone and batched; sampled output follows the target's distribution when lookup's offers
//! are verified (chi-square, fixed seeds, alpha = 1e-4); and lookup's long matches are taken
//! where the head (random here) is never right.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;
use ahead_model::transformer::synthetic::random_eagle_head;
use ahead_model::{load, LoadOptions, ModelSource};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let head = random_eagle_head(&loaded.model, 11, None).unwrap();
        Engine::from_loaded(loaded).with_eagle(head)
    })
}

/// Text that repeats, so prompt lookup has matches to offer.
const REPEATING: &str = "Lily and Ben went to the park. They saw a big red ball. Lily and Ben went";

const PROMPTS: [&str; 3] = ["Once upon a time", REPEATING, "The dog"];

#[test]
fn greedy_output_is_plain_decodings_alone_and_batched() {
    let e = engine();
    assert_greedy_is_plain_decodings(e, &PROMPTS, Method::Auto, &[None, Some(3)], 80, "auto");
    let prompts: Vec<Prompt> = PROMPTS.iter().map(|p| Prompt::from(*p)).collect();
    let params = method_params(Method::Auto, None, SamplingParams::greedy(), 0, 60);
    let vanilla = method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 60);
    for (p, got) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        assert_eq!(got.unwrap().token_ids, gen(e, p, &vanilla).token_ids, "{p:?}");
    }
}

#[test]
fn lookups_matches_are_verified_where_the_model_drafter_is_never_right() {
    let e = engine();
    let prompt = Prompt::from(REPEATING);
    let run = |method| {
        gen(
            e,
            &prompt,
            &method_params(method, None, SamplingParams::greedy(), 0, 80),
        )
        .stats
    };
    let (auto, eagle, lookup) = (run(Method::Auto), run(Method::Eagle), run(Method::PromptLookup));
    assert!(lookup.accepted_tokens > 10, "the text repeats: {lookup:?}");
    // The random head is almost never right (how often it drafts follows the machine's
    // timings); auto takes lookup's matches all the same.
    assert!(
        auto.accepted_tokens > eagle.accepted_tokens,
        "auto {auto:?}\neagle {eagle:?}"
    );
    assert!(
        auto.accepted_tokens * 4 >= lookup.accepted_tokens * 3,
        "auto {auto:?}\nlookup {lookup:?}"
    );
    assert!(auto.free_offer_steps > 0, "{auto:?}");
    assert_eq!(
        eagle.free_offer_steps + lookup.free_offer_steps,
        0,
        "only auto has free offers"
    );
}

#[test]
fn sampled_tokens_follow_the_target_when_lookups_offers_are_verified() {
    let prompt = Prompt::from(REPEATING);
    for sampling in two_samplers() {
        // Under the controller, timed as when reproducibility is not asked for: the toy's
        // nominal row cost (a whole step) would never let anything draft.
        let c = assert_samples_follow_the_target_with(engine(), &prompt, &sampling, |seed| GenerateParams {
            reproducible: false,
            ..method_params(Method::Auto, None, sampling.clone(), seed, 2)
        });
        assert!(c.free_offer_steps > 0, "lookup's offers were never verified");
    }
}

#[test]
fn without_a_model_drafter_or_under_seeded_sampling_auto_is_prompt_lookup() {
    let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
    let e = Engine::from_loaded(loaded);
    let prompt = Prompt::from("The dog");
    let params = method_params(Method::Auto, None, SamplingParams::greedy(), 0, 8);
    assert_eq!(gen(&e, &prompt, &params).stats.method, "prompt-lookup");
    assert_eq!(gen(engine(), &prompt, &params).stats.method, "auto");
    // A seeded sampled request's schedule follows nominal costs, which overrate a model
    // drafter under sampling: lookup alone. Unseeded, the pair.
    let seeded = method_params(Method::Auto, None, two_samplers()[0].clone(), 3, 8);
    assert_eq!(gen(engine(), &prompt, &seeded).stats.method, "prompt-lookup");
    let unseeded = GenerateParams {
        reproducible: false,
        ..seeded
    };
    assert_eq!(gen(engine(), &prompt, &unseeded).stats.method, "auto");
}
