//! EAGLE: a head drafting in the target's feature space proposes, the target decides. With a
//! random head (classifier restricted to a subset, so q is zero on some tokens) greedy output
//! is plain decoding's for every draft length, batched or alone, and sampled output follows the
//! target's distribution (chi-square, fixed seeds, alpha = 1e-4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;
use ahead_model::transformer::synthetic::{random_eagle_head, random_fused_eagle_head};
use ahead_model::{load, LoadOptions, ModelSource};

/// Every id below 300, and the even ones above.
fn subset() -> Vec<u32> {
    (0..512u32).filter(|&t| t < 300 || t % 2 == 0).collect()
}

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let head = random_eagle_head(&loaded.model, 11, Some(&subset())).unwrap();
        Engine::from_loaded(loaded).with_eagle(head)
    })
}

const PROMPTS: [&str; 3] = [
    "Once upon a time",
    "Lily and Ben went to the park. Lily and Ben went",
    "The dog",
];

#[test]
fn greedy_output_is_plain_decodings_for_every_draft_length() {
    let ks = [None, Some(1), Some(3), Some(6)];
    let stats = assert_greedy_is_plain_decodings(engine(), &PROMPTS, Method::Eagle, &ks, 80, "eagle");
    for (s, k) in stats.iter().zip(ks.iter().cycle()) {
        assert!(k.is_none() || s.drafted_tokens > 0, "k {k:?}: {s:?}");
    }
}

#[test]
fn batched_sequences_with_chunked_prompts_draft_as_they_do_alone() {
    let e = engine();
    let mut prompts: Vec<Prompt> = PROMPTS.iter().map(|p| Prompt::from(*p)).collect();
    // A prompt of several prefill chunks: the head is fed a chunk's features at a time.
    let long = "Tom had a red ball. He played with it in the park every day. ".repeat(8);
    prompts.push(Prompt::from(long.as_str()));
    assert!(e.prompt_ids(&prompts[3]).unwrap().len() > 2 * 64);
    let params = method_params(Method::Eagle, Some(4), SamplingParams::greedy(), 0, 40);
    for (p, got) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        let got = got.unwrap();
        let alone = gen(e, p, &params);
        assert_eq!(got.token_ids, alone.token_ids, "{p:?}");
        // It drafted every step, as alone (a head missing a chunk's features drafts nothing),
        // and the same drafts were accepted: it saw the same features.
        assert!(got.stats.drafted_tokens > 0, "{p:?}");
        assert_eq!(got.stats.drafted_tokens, alone.stats.drafted_tokens, "{p:?}");
        assert_eq!(got.stats.accepted_tokens, alone.stats.accepted_tokens, "{p:?}");
    }
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let prompt = Prompt::from("Once upon a time");
    for sampling in two_samplers() {
        assert_samples_follow_the_target(engine(), &prompt, Method::Eagle, 3, &sampling);
    }
    // Wider trees: siblings drawn without replacement, tried in turn on the residual.
    assert_samples_follow_the_target(engine(), &prompt, Method::Eagle, 8, &two_samplers()[1]);
}

/// A fused head (EAGLE-3) reads the first and last layers' outputs at every committed row.
fn fused_engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let last = loaded.model.config().n_layers - 1;
        let head = random_fused_eagle_head(&loaded.model, 13, Some(&subset()), &[0, last]).unwrap();
        Engine::from_loaded(loaded).with_eagle(head)
    })
}

#[test]
fn a_fused_head_gives_plain_decodings_tokens_alone_and_batched_and_follows_the_target() {
    let e = fused_engine();
    let ks = [None, Some(2), Some(5)];
    let stats = assert_greedy_is_plain_decodings(e, &PROMPTS, Method::Eagle, &ks, 60, "eagle");
    assert!(stats.iter().any(|s| s.drafted_tokens > 0), "{stats:?}");
    let long = "Tom had a red ball. He played with it in the park every day. ".repeat(8);
    let prompts = [Prompt::from(PROMPTS[0]), Prompt::from(long.as_str())];
    let params = method_params(Method::Eagle, Some(4), SamplingParams::greedy(), 0, 30);
    for (p, got) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        let (got, alone) = (got.unwrap(), gen(e, p, &params));
        assert_eq!(got.token_ids, alone.token_ids, "{p:?}");
        assert_eq!(got.stats.accepted_tokens, alone.stats.accepted_tokens, "{p:?}");
    }
    assert_samples_follow_the_target(
        e,
        &Prompt::from("Once upon a time"),
        Method::Eagle,
        3,
        &two_samplers()[0],
    );
}

#[test]
fn without_a_head_eagle_is_refused_with_the_reason() {
    let e = Engine::builder().build().unwrap();
    let err = e
        .generate_one(
            &Prompt::from("Hi"),
            &method_params(Method::Eagle, None, SamplingParams::greedy(), 0, 4),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("no EAGLE head"), "{err}");
}

/// The hybrid: the head's chain filled out with token recycling's tree (greedy), the head
/// alone under sampling.
#[test]
fn the_hybrid_gives_plain_decodings_tokens_and_follows_the_target_when_sampling() {
    let e = engine();
    assert_greedy_is_plain_decodings(
        e,
        &PROMPTS,
        Method::Hybrid,
        &[None, Some(4), Some(8)],
        80,
        "hybrid",
    );
    let prompts: Vec<Prompt> = PROMPTS.iter().map(|p| Prompt::from(*p)).collect();
    let params = method_params(Method::Hybrid, Some(6), SamplingParams::greedy(), 0, 40);
    for (p, got) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        let vanilla = method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 40);
        assert_eq!(got.unwrap().token_ids, gen(e, p, &vanilla).token_ids, "{p:?}");
    }
    assert_samples_follow_the_target(
        e,
        &Prompt::from("Once upon a time"),
        Method::Hybrid,
        3,
        &two_samplers()[1],
    );
}
