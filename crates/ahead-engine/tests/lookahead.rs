//! Lookahead decoding on the real stories260K: greedy output is token-identical to plain
//! decoding across prompts and (W, N, G) settings, including the paper's W=15, N=5, G=15, with
//! the window and pool actually producing accepted candidates; sampled output follows the
//! target's distribution (chi-square, fixed seeds).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_engine::Method;
use ahead_testutil::{chi_square, chi_square_critical as critical};

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| Engine::builder().build().unwrap())
}

fn params(
    wng: Option<(usize, usize, usize)>,
    k: Option<usize>,
    sampling: SamplingParams,
    seed: u64,
    n: usize,
) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        sampling,
        seed,
        method: Method::Lookahead,
        num_draft: k,
        lookahead_window: wng.map(|c| c.0),
        lookahead_ngram: wng.map(|c| c.1),
        lookahead_guesses: wng.map(|c| c.2),
        ignore_eos: true,
        ..Default::default()
    }
}

#[test]
fn greedy_output_is_token_identical_for_every_setting() {
    let e = engine();
    let mut hits = 0;
    for prompt in [
        "Once upon a time",
        "The cat sat on the mat. The cat sat on the mat. The cat",
        "Lily wanted to play with her ball, but",
        "Tom and Sue went to the park. They saw a big dog. Tom and Sue",
    ] {
        let prompt = Prompt::from(prompt);
        let vanilla = GenerateParams {
            method: Method::Vanilla,
            ..params(None, None, SamplingParams::greedy(), 0, 150)
        };
        let want = gen(e, &prompt, &vanilla);
        for (wng, k) in [
            (Some((15, 5, 15)), Some(16)),
            (Some((4, 3, 4)), Some(8)),
            (Some((2, 2, 1)), Some(1)),
            (Some((7, 4, 7)), None),
            (None, None),
        ] {
            let got = gen(e, &prompt, &params(wng, k, SamplingParams::greedy(), 0, 150));
            assert_eq!(got.token_ids, want.token_ids, "{wng:?} k={k:?} {prompt:?}");
            let s = &got.stats;
            assert_eq!(s.method, "lookahead");
            assert_eq!(s.generated_tokens, s.target_forwards + s.accepted_tokens);
            hits += s.pool_hits.unwrap();
        }
    }
    assert!(
        hits > 50,
        "the pool's candidates were almost never accepted ({hits})"
    );
}

#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let e = engine();
    // Repetitive text so that the prompt-seeded pool has candidates for the first tokens.
    let prompt = Prompt::from("The cat sat on the mat. The cat sat on the mat. The cat");
    let ids = e.prompt_ids(&prompt).unwrap();
    let vocab = e.model().config().vocab_size;
    for sampling in [
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            min_p: 0.02,
            ..SamplingParams::greedy()
        },
    ] {
        let (mut first, mut second) = (vec![0u64; vocab], std::collections::HashMap::new());
        let mut drafted = 0;
        for seed in 0..4000 {
            let out = gen(
                e,
                &prompt,
                &params(Some((3, 3, 3)), Some(4), sampling.clone(), seed, 2),
            );
            first[out.token_ids[0] as usize] += 1;
            second
                .entry(out.token_ids[0])
                .or_insert_with(|| vec![0u64; vocab])[out.token_ids[1] as usize] += 1;
            drafted += out.stats.drafted_tokens;
        }
        assert!(drafted > 0, "never drafted: the test would not test lookahead");
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
fn bad_settings_are_clear_errors() {
    let e = engine();
    let prompt = Prompt::from("Once");
    for wng in [(0, 3, 2), (2, 1, 2), (2, 3, 0), (100, 3, 2)] {
        let err = e
            .generate_one(
                &prompt,
                &params(Some(wng), Some(2), SamplingParams::greedy(), 0, 5),
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("lookahead"), "{err}");
    }
}

#[test]
fn cache_slots_are_what_a_request_allocates_window_included() {
    let e = engine();
    let prompt = Prompt::from("Once upon a time");
    let n = e.prompt_ids(&prompt).unwrap().len();
    for (method, k, window) in [
        (Method::Lookahead, None, Some(15)),
        (Method::Lookahead, Some(4), Some(3)),
        (Method::Draft, None, None),
        (Method::Vanilla, None, None),
    ] {
        let params = GenerateParams {
            method,
            num_draft: k,
            max_tokens: 30,
            lookahead_window: window,
            lookahead_ngram: window.map(|_| 5),
            lookahead_guesses: window,
            ..GenerateParams::default()
        };
        let mut capacity = 0;
        let mut inspect = |cache: &ahead_model::KvCache, _: &[u32]| capacity = cache.capacity();
        e.generate_inspected(&prompt, &params, &mut |_| {}, Some(&mut inspect), None)
            .unwrap();
        let slots = e.cache_slots(n, &params).unwrap();
        assert_eq!(slots, capacity, "{method:?} {k:?} {window:?}");
    }
    let lookahead = GenerateParams {
        method: Method::Lookahead,
        max_tokens: 30,
        lookahead_window: Some(15),
        lookahead_ngram: Some(5),
        lookahead_guesses: Some(15),
        ..GenerateParams::default()
    };
    assert_eq!(e.cache_slots(n, &lookahead).unwrap(), n + 30 + 16 + 60);
}
