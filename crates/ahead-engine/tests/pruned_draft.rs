//! FR-Spec drafts: a draft model whose classifier scores a subset of the vocabulary drafts only
//! tokens of that subset, with q over the subset (zero elsewhere). Verification scores the
//! whole vocabulary, so greedy output stays plain decoding's and sampled output follows the
//! target's distribution (chi-square, fixed seeds, alpha = 1e-4), even where the target puts
//! mass on tokens the draft cannot propose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;
use ahead_model::{load, LoadOptions, ModelSource};

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
    // The target puts mass on the odd ids above 300, which the draft cannot propose.
    let prompt = Prompt::from("Once upon a time");
    for sampling in two_samplers() {
        assert_samples_follow_the_target(engine(), &prompt, Method::Draft, 3, &sampling);
    }
}
