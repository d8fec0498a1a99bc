//! Sampling, context limits and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// sampling

#[test]
fn same_seed_same_tokens() {
    let prompt = Prompt::from("Once upon a time");
    for seed in [0u64, 1, 12345, u64::MAX] {
        let params = GenerateParams {
            ignore_eos: true,
            ..sampled(1.0, seed, 80)
        };
        let a = gen(engine(), &prompt, &params);
        let b = gen(engine(), &prompt, &params);
        assert_eq!(a.token_ids, b.token_ids, "seed {seed}");
        assert_eq!(a.text, b.text, "seed {seed}");
    }
}

#[test]
fn different_seeds_differ() {
    let prompt = Prompt::from("Once upon a time");
    let runs: Vec<Vec<u32>> = (0..6u64)
        .map(|seed| {
            gen(
                engine(),
                &prompt,
                &GenerateParams {
                    ignore_eos: true,
                    ..sampled(1.0, seed, 64)
                },
            )
            .token_ids
        })
        .collect();
    let distinct: std::collections::HashSet<&Vec<u32>> = runs.iter().collect();
    assert!(
        distinct.len() >= 4,
        "6 seeds at temperature 1 gave only {} distinct outputs",
        distinct.len()
    );
    // Sampling is not greedy.
    let greedy_ids = gen(engine(), &prompt, &greedy_ignore_eos(64)).token_ids;
    assert!(runs.iter().any(|r| *r != greedy_ids));
}

#[test]
fn all_warpers_together_run() {
    let prompt = Prompt::from("Once upon a time");
    let sampling = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        repetition_penalty: 1.1,
    };
    for seed in 0..4 {
        let params = GenerateParams {
            sampling: sampling.clone(),
            seed,
            max_tokens: 100,
            ..GenerateParams::default()
        };
        let (out, deltas) = gen_streamed(engine(), &prompt, &params);
        assert!(!out.token_ids.is_empty());
        assert!(out.token_ids.len() <= 100);
        assert!(out.token_ids.iter().all(|&t| t < VOCAB));
        assert_eq!(deltas.concat(), out.text);
        let again = gen(engine(), &prompt, &params);
        assert_eq!(again.token_ids, out.token_ids, "seeded sampling is reproducible");
    }
    // top_k 1 is greedy whatever the temperature.
    let params = GenerateParams {
        sampling: SamplingParams {
            temperature: 1.3,
            top_k: 1,
            ..SamplingParams::greedy()
        },
        seed: 9,
        ..greedy_ignore_eos(60)
    };
    assert_eq!(gen(engine(), &bos(), &params).token_ids, stories().ids[..60]);
}

#[test]
fn repetition_penalty_changes_greedy_output() {
    let params = GenerateParams {
        sampling: SamplingParams {
            repetition_penalty: 1.5,
            ..SamplingParams::greedy()
        },
        ..greedy_ignore_eos(256)
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.token_ids.len(), 256);
    assert_ne!(
        out.token_ids,
        stories().ids,
        "a strong repetition penalty must change the greedy output"
    );
}

// ---------------------------------------------------------------------------------------------
// context limit

#[test]
fn prompt_longer_than_context_is_an_error() {
    for n in [600usize, CONTEXT] {
        let err = engine().generate_one(&Prompt::Ids(vec![1; n]), &greedy(10), &mut |_| {});
        assert!(
            err.is_err(),
            "a {n}-token prompt must be refused (context {CONTEXT})"
        );
    }
    let long_text = "Once upon a time there was a dog. ".repeat(100);
    assert!(engine().tokenizer().encode(&long_text, true).unwrap().len() > CONTEXT);
    assert!(engine()
        .generate_one(&Prompt::from(long_text.as_str()), &greedy(10), &mut |_| {})
        .is_err());
}

#[test]
fn generation_stops_at_the_context() {
    let g = stories();
    // A 500-token prompt: golden ids repeated after BOS.
    let mut prompt = vec![1u32];
    while prompt.len() < 500 {
        prompt.extend_from_slice(&g.ids);
    }
    prompt.truncate(500);
    for (max_tokens, ignore_eos) in [(100usize, true), (13, true), (12, true), (300, false)] {
        let (out, deltas) = gen_streamed(
            engine(),
            &Prompt::Ids(prompt.clone()),
            &GenerateParams {
                ignore_eos,
                ..greedy(max_tokens)
            },
        );
        let total = out.prompt_token_ids.len() + out.token_ids.len();
        assert!(
            total <= CONTEXT,
            "prompt + generated = {total} > context {CONTEXT}"
        );
        assert!(!out.token_ids.is_empty());
        assert!(out.token_ids.len() <= max_tokens);
        if ignore_eos {
            assert_eq!(out.finish_reason, FinishReason::Length, "max_tokens {max_tokens}");
        }
        if out.finish_reason == FinishReason::Length {
            assert!(
                out.token_ids.len() == max_tokens || total >= CONTEXT - 1,
                "max_tokens {max_tokens}: stopped early at {total}"
            );
        } else {
            assert_eq!(out.token_ids.last(), Some(&EOS));
        }
        if max_tokens > 12 && ignore_eos {
            assert!(
                total >= CONTEXT - 1,
                "max_tokens {max_tokens}: the context should be filled, got {total}"
            );
        }
        assert_eq!(deltas.concat(), out.text);
    }
    // The last position: a 511-token prompt still generates one token.
    let out = gen(
        engine(),
        &Prompt::Ids(prompt.iter().copied().cycle().take(CONTEXT - 1).collect()),
        &greedy_ignore_eos(50),
    );
    assert_eq!(out.token_ids.len(), 1);
    assert_eq!(out.finish_reason, FinishReason::Length);
}

#[test]
fn babyllama_context_is_256() {
    let e = Engine::builder()
        .model(BABY_BIN)
        .tokenizer(BABY_TOK)
        .build()
        .unwrap();
    let out = gen(&e, &bos(), &greedy_ignore_eos(1000));
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert!(
        out.token_ids.len() < 256,
        "1 + {} tokens exceed the context of 256",
        out.token_ids.len()
    );
    assert!(out.token_ids.len() >= 254);
    assert!(e
        .generate_one(&Prompt::Ids(vec![1; 300]), &greedy(5), &mut |_| {})
        .is_err());
}

// ---------------------------------------------------------------------------------------------
// bad input

#[test]
fn out_of_vocabulary_prompt_id_is_an_error() {
    for bad in [VOCAB, VOCAB + 1, u32::MAX] {
        let r = engine().generate_one(&Prompt::Ids(vec![1, 403, bad]), &greedy(5), &mut |_| {});
        let err = r.expect_err("id outside the vocabulary");
        assert!(
            err.to_string().contains(&bad.to_string()),
            "the error names the id: {err}"
        );
    }
    assert!(engine()
        .generate_one(&Prompt::Ids(vec![VOCAB - 1]), &greedy(3), &mut |_| {})
        .is_ok());
}

#[test]
fn empty_prompt_ids_is_an_error() {
    assert!(engine()
        .generate_one(&Prompt::Ids(vec![]), &greedy(5), &mut |_| {})
        .is_err());
    assert!(engine().generate(&[Prompt::Ids(vec![])], &greedy(5)).is_err());
}

#[test]
fn invalid_sampling_params_are_errors() {
    let bad = [
        SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: f32::NAN,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: f32::INFINITY,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 0.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 1.5,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            min_p: -0.1,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 1.0,
            repetition_penalty: 0.0,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            repetition_penalty: -1.0,
            ..SamplingParams::greedy()
        },
    ];
    for sampling in bad {
        let params = GenerateParams {
            sampling: sampling.clone(),
            ..greedy(5)
        };
        let mut called = false;
        let r = engine().generate_one(&bos(), &params, &mut |_| called = true);
        assert!(r.is_err(), "{sampling:?} must be refused");
        assert!(!called, "{sampling:?}: no text before the error");
    }
}

/// A cancelled generation stops before its next step and says so.
#[test]
fn cancellation_stops_generation_within_a_step() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let e = Engine::builder().build().unwrap();
    let cancel = AtomicBool::new(false);
    let mut pieces = 0;
    let params = GenerateParams {
        max_tokens: 200,
        ignore_eos: true,
        ..Default::default()
    };
    let out = e
        .generate_cancellable(
            &Prompt::from("Once upon a time"),
            &params,
            &mut |_| {
                pieces += 1;
                if pieces == 5 {
                    cancel.store(true, Ordering::Relaxed);
                }
            },
            &cancel,
        )
        .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    // Text arrives once per step (a speculative step can commit many tokens): the fifth piece
    // cancels, and no step runs after it.
    assert!(
        out.stats.target_forwards <= 5 && out.token_ids.len() < 200,
        "{} steps, {} tokens after cancelling",
        out.stats.target_forwards,
        out.token_ids.len()
    );
}
