//! Prompt lookup with a static n-gram cache: it drafts where the context has nothing to copy,
//! stays exact, and bad cache files are clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_core::spec::{NgramCounter, PromptLookup};
use ahead_engine::{default_ngram_cache, EngineError, Method};
use ahead_model::{load, LoadOptions, ModelSource};

fn bare() -> Engine {
    Engine::from_loaded(load(&ModelSource::Default, &LoadOptions::default()).unwrap())
}

fn lookup(num_draft: Option<usize>) -> GenerateParams {
    GenerateParams {
        method: Method::PromptLookup,
        num_draft,
        ignore_eos: true,
        ..greedy(100)
    }
}

#[test]
fn the_vendored_cache_drafts_what_the_context_cannot_and_output_is_unchanged() {
    let with_cache = bare().with_ngram_cache(default_ngram_cache().unwrap()).unwrap();
    let without = bare();
    // No n-gram of these openings repeats early on: plain prompt lookup finds less to copy.
    let (mut cached, mut context_only) = (0, 0);
    for text in [
        "Once upon a time",
        "Tom had a red ball.",
        "def parse(self, data):",
    ] {
        let prompt = Prompt::from(text);
        let want = without
            .generate_one(
                &prompt,
                &GenerateParams {
                    method: Method::Vanilla,
                    ..lookup(None)
                },
                &mut |_| {},
            )
            .unwrap();
        let plain = without
            .generate_one(&prompt, &lookup(Some(4)), &mut |_| {})
            .unwrap();
        for k in [Some(4), Some(8), None] {
            let got = with_cache.generate_one(&prompt, &lookup(k), &mut |_| {}).unwrap();
            assert_eq!(got.token_ids, want.token_ids, "{text:?} k={k:?}");
            if k == Some(4) {
                cached += got.stats.accepted_tokens;
                context_only += plain.stats.accepted_tokens;
            }
        }
    }
    assert!(
        cached as f64 > 1.3 * context_only as f64,
        "at k = 4 the cache accepted {cached} tokens, the context alone {context_only}"
    );
}

#[test]
fn only_prompt_lookup_with_a_cache_stops_its_own_drafts() {
    use ahead_engine::spec::{PromptLookupProposer, Proposer};
    let cache = std::sync::Arc::new(default_ngram_cache().unwrap());
    assert!(PromptLookupProposer::with_cache(PromptLookup::default(), Some(cache)).stops_own_drafts());
    assert!(!PromptLookupProposer::new(PromptLookup::default()).stops_own_drafts());
}

#[test]
fn a_higher_confidence_bar_drafts_less() {
    let e = bare().with_ngram_cache(default_ngram_cache().unwrap()).unwrap();
    let prompt = Prompt::from("Once upon a time");
    let drafted = |min_confidence| {
        let params = GenerateParams {
            lookup: PromptLookup {
                min_confidence,
                ..PromptLookup::default()
            },
            ..lookup(Some(8))
        };
        e.generate_one(&prompt, &params, &mut |_| {})
            .unwrap()
            .stats
            .drafted_tokens
    };
    let (low, high) = (drafted(0.0), drafted(0.9));
    assert!(high < low, "drafted {high} at 0.9, {low} at 0.0");
}

#[test]
fn bad_cache_files_and_other_vocabularies_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cache.bin");
    std::fs::write(&path, b"not a cache at all, just bytes").unwrap();
    let err = Engine::builder().ngram_cache(&path).build().unwrap_err();
    assert!(matches!(err, EngineError::NgramCache { .. }), "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
    let err = Engine::builder()
        .ngram_cache(tmp.path().join("missing.bin"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("missing.bin"), "{err}");
    // A cache for a vocabulary of 1000 does not fit stories260K's 512.
    let mut counter = NgramCounter::new(1000, 3);
    counter.add(&[5, 900, 7, 5, 900], 0);
    let err = bare().with_ngram_cache(counter.build(1)).unwrap_err();
    assert!(matches!(err, EngineError::MethodUnavailable { .. }), "{err}");
}
