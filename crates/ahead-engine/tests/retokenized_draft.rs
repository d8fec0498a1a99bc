//! A draft with a different tokenizer: BabyLlama (character vocabulary of 105) verifies text
//! drafted by stories260K (vocabulary of 512), re-tokenized. Greedy output is token-identical
//! to plain decoding; sampled output follows the target's distribution (chi-square, fixed seeds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::{DraftMode, Method};
use ahead_model::{load, LoadOptions, ModelSource};
use ahead_testutil::{chi_square, chi_square_critical as critical};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let target = load(&ModelSource::parse(BABY_BIN).unwrap(), &LoadOptions::default()).unwrap();
        let draft = load(&ModelSource::parse(STORIES_BIN).unwrap(), &LoadOptions::default()).unwrap();
        Engine::from_loaded(target).with_draft_loaded(draft).unwrap()
    })
}

#[test]
fn the_mode_is_detected_at_load() {
    assert_eq!(engine().draft_mode(), Some(DraftMode::Retokenized));
    let same = load(&ModelSource::parse(STORIES_BIN).unwrap(), &LoadOptions::default()).unwrap();
    let e = Engine::from_loaded(same.clone()).with_draft_loaded(same).unwrap();
    assert_eq!(e.draft_mode(), Some(DraftMode::SharedVocabulary));
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
        let want = gen(
            e,
            &prompt,
            &method_params(Method::Vanilla, None, SamplingParams::greedy(), 0, 150),
        );
        for k in [Some(1), Some(2), Some(4), Some(8), None] {
            let got = gen(
                e,
                &prompt,
                &method_params(Method::Draft, k, SamplingParams::greedy(), 0, 150),
            );
            assert_eq!(got.token_ids, want.token_ids, "k={k:?} {prompt:?}");
            assert_eq!(got.text, want.text);
            let s = &got.stats;
            assert_eq!(s.generated_tokens, s.target_forwards + s.accepted_tokens);
            accepted += s.accepted_tokens;
        }
    }
    assert!(
        accepted > 100,
        "re-tokenized drafts were almost never accepted ({accepted})"
    );
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let e = engine();
    let prompt = Prompt::from("Once upon a time, there was a little girl named");
    let ids = e.prompt_ids(&prompt).unwrap();
    let vocab = e.model().config().vocab_size;
    for sampling in [
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            ..SamplingParams::greedy()
        },
    ] {
        let (mut first, mut second) = (vec![0u64; vocab], std::collections::HashMap::new());
        let mut drafted = 0;
        for seed in 0..3000 {
            let out = gen(
                e,
                &prompt,
                &method_params(Method::Draft, Some(3), sampling.clone(), seed, 2),
            );
            first[out.token_ids[0] as usize] += 1;
            second
                .entry(out.token_ids[0])
                .or_insert_with(|| vec![0u64; vocab])[out.token_ids[1] as usize] += 1;
            drafted += out.stats.drafted_tokens;
        }
        assert!(drafted > 0, "never drafted: the test would not test speculation");
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
