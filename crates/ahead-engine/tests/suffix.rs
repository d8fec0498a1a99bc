//! Suffix decoding: a suffix tree of the request's own text and a store of earlier outputs
//! propose, the target decides. Greedy output is plain decoding's for every tree size, alone
//! and batched; sampled output follows the target's distribution (chi-square, fixed seeds,
//! alpha = 1e-4); the store learns each output at its request's end, stays consistent under
//! concurrent requests, keeps scopes apart, survives a restart through its file and refuses a
//! damaged one; another request's text is drafted but never emitted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::{EngineError, Method};

const PROMPTS: [&str; 3] = [
    "Once upon a time",
    "Lily and Ben went to the park. Lily and Ben went",
    "The dog",
];

fn greedy_suffix(k: Option<usize>, max_tokens: usize) -> GenerateParams {
    method_params(Method::Suffix, k, SamplingParams::greedy(), 0, max_tokens)
}

fn vanilla(max_tokens: usize) -> GenerateParams {
    method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, max_tokens)
}

#[test]
fn greedy_output_is_plain_decodings_for_every_tree_size() {
    let e = engine();
    assert_greedy_is_plain_decodings(
        e,
        &PROMPTS,
        Method::Suffix,
        &[None, Some(1), Some(4), Some(12)],
        80,
        "suffix",
    );
    // The toy model repeats itself within 80 tokens: its own text drafts.
    let got = gen(e, &Prompt::from(PROMPTS[1]), &greedy_suffix(Some(8), 80));
    assert!(got.stats.accepted_tokens > 0, "{:?}", got.stats);
}

#[test]
fn batched_sequences_give_plain_decodings_tokens() {
    let e = engine();
    let mut prompts: Vec<Prompt> = PROMPTS.iter().map(|p| Prompt::from(*p)).collect();
    let long = "Tom had a red ball. He played with it in the park every day. ".repeat(8);
    prompts.push(Prompt::from(long.as_str()));
    for (p, got) in prompts
        .iter()
        .zip(e.generate_batched(&prompts, &greedy_suffix(Some(6), 40)))
    {
        assert_eq!(got.unwrap().token_ids, gen(e, p, &vanilla(40)).token_ids, "{p:?}");
    }
}

#[test]
fn the_store_learns_each_output_when_its_request_ends() {
    let e = Engine::builder().build().unwrap();
    let prompt = Prompt::from("The dog");
    let first = gen(&e, &prompt, &greedy_suffix(Some(8), 60));
    {
        let store = e.suffix_store(None);
        let store = store.read().unwrap();
        let texts: Vec<&[u32]> = store.texts().collect();
        assert_eq!(texts, vec![first.token_ids.as_slice()]);
    }
    // The same question again: the first answer drafts the second.
    let second = gen(&e, &prompt, &greedy_suffix(Some(8), 60));
    assert_eq!(first.token_ids, second.token_ids);
    assert!(
        second.stats.accepted_tokens > first.stats.accepted_tokens + 10,
        "first {} accepted, second {}",
        first.stats.accepted_tokens,
        second.stats.accepted_tokens
    );
}

#[test]
fn another_requests_text_is_drafted_but_never_emitted() {
    // A "secret" continuation no plain decoding of this prompt produces, in one engine's store.
    let prompt = Prompt::from("Once upon a time");
    let params = greedy_suffix(Some(8), 40);
    let clean = Engine::builder().build().unwrap();
    let without = gen(&clean, &prompt, &params);
    let e = Engine::builder().build().unwrap();
    let mut secret = e.prompt_ids(&prompt).unwrap();
    secret.extend(
        e.prompt_ids(&Prompt::from("the secret code is 1234 and the password"))
            .unwrap(),
    );
    e.suffix_store(None).write().unwrap().insert(&secret);
    let got = gen(&e, &prompt, &params);
    // The store did propose the secret (more drafts than the request's own text gives)...
    assert!(
        got.stats.drafted_tokens > without.stats.drafted_tokens,
        "with the secret {} drafted, without {}",
        got.stats.drafted_tokens,
        without.stats.drafted_tokens
    );
    // ...and the output is plain decoding's all the same.
    assert_eq!(got.token_ids, gen(&clean, &prompt, &vanilla(40)).token_ids);
}

#[test]
fn scopes_keep_what_they_learn_apart() {
    let e = Engine::builder().build().unwrap();
    let scoped = GenerateParams {
        scope: Some("tenant a".into()),
        ..greedy_suffix(Some(8), 30)
    };
    let out = gen(&e, &Prompt::from("The dog"), &scoped);
    assert_eq!(
        e.suffix_store(Some("tenant a")).read().unwrap().texts().count(),
        1
    );
    assert_eq!(
        e.suffix_store(Some("tenant b")).read().unwrap().texts().count(),
        0
    );
    assert_eq!(e.suffix_store(None).read().unwrap().texts().count(), 0);
    assert_eq!(
        out.token_ids,
        gen(&e, &Prompt::from("The dog"), &vanilla(30)).token_ids
    );
}

#[test]
fn concurrent_requests_leave_the_store_consistent() {
    let e = Engine::builder().build().unwrap();
    let n = 12;
    std::thread::scope(|s| {
        for i in 0..n {
            let e = &e;
            s.spawn(move || {
                let prompt = Prompt::from(PROMPTS[i % PROMPTS.len()]);
                let out = gen(e, &prompt, &greedy_suffix(Some(6), 30 + i));
                assert_eq!(out.token_ids, gen(e, &prompt, &vanilla(30 + i)).token_ids);
            });
        }
    });
    let store = e.suffix_store(None);
    let store = store.read().unwrap();
    assert_eq!(store.texts().count(), n);
    assert!(store.is_consistent());
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let prompt = Prompt::from(PROMPTS[1]);
    for sampling in two_samplers() {
        assert_samples_follow_the_target(engine(), &prompt, Method::Suffix, 4, &sampling);
    }
}

#[test]
fn seeded_sampling_does_not_read_the_store() {
    assert_seeded_sampling_ignores_earlier_requests(Method::Suffix, &PROMPTS);
}

#[test]
fn the_store_survives_a_restart_through_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suffix.store");
    let e = Engine::builder().suffix_store(&path).build().unwrap();
    let out = gen(&e, &Prompt::from("The dog"), &greedy_suffix(Some(4), 30));
    e.save_suffix_store().unwrap();
    let again = Engine::builder().suffix_store(&path).build().unwrap();
    let store = again.suffix_store(None);
    let texts: Vec<Vec<u32>> = store.read().unwrap().texts().map(<[u32]>::to_vec).collect();
    assert_eq!(texts, vec![out.token_ids]);
}

#[test]
fn a_damaged_or_foreign_store_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suffix.store");
    let e = Engine::builder().suffix_store(&path).build().unwrap();
    gen(&e, &Prompt::from("The dog"), &greedy_suffix(Some(4), 30));
    e.save_suffix_store().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = Engine::builder().suffix_store(&path).build().unwrap_err();
    assert!(matches!(err, EngineError::SuffixStore { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Made for another vocabulary: the vocabulary size sits after the magic and version.
    let mut foreign = bytes;
    foreign[12..16].copy_from_slice(&32_000u32.to_le_bytes());
    std::fs::write(&path, &foreign).unwrap();
    let err = Engine::builder().suffix_store(&path).build().unwrap_err();
    assert!(err.to_string().contains("32000-token vocabulary"), "{err}");
}
