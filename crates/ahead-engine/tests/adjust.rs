//! OpenAI's logit adjustments (presence and frequency penalties, logit bias, minimum length)
//! apply to the target at every position, so every method gives plain decoding's tokens with
//! them (greedy) and its distribution (sampled: chi-square over fixed seeds, alpha = 1e-4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_core::sampling::{warp, LogitAdjust};
use ahead_engine::Method;
use ahead_model::ForwardInput;
use ahead_testutil::{chi_square, chi_square_critical as critical};

fn adjust() -> LogitAdjust {
    LogitAdjust {
        presence_penalty: 0.8,
        frequency_penalty: 0.5,
        logit_bias: vec![(300, 4.0), (301, -100.0)],
        min_tokens: 0,
    }
}

fn adjusted(
    method: Method,
    k: Option<usize>,
    sampling: SamplingParams,
    seed: u64,
    n: usize,
    a: LogitAdjust,
) -> GenerateParams {
    GenerateParams {
        adjust: a,
        ..method_params(method, k, sampling, seed, n)
    }
}

#[test]
fn greedy_output_with_adjustments_is_plain_decodings_for_every_method() {
    let e = engine();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let want = gen(
        e,
        &prompt,
        &adjusted(Method::Vanilla, None, SamplingParams::greedy(), 0, 60, adjust()),
    );
    let unadjusted = gen(e, &prompt, &greedy_ignore_eos(60));
    assert_ne!(
        want.token_ids, unadjusted.token_ids,
        "the adjustments change the text"
    );
    assert!(!want.token_ids.contains(&301), "a -100 bias bans the token");
    for method in TOY_METHODS {
        for k in [None, Some(4)] {
            let got = gen(
                e,
                &prompt,
                &adjusted(method, k, SamplingParams::greedy(), 0, 60, adjust()),
            );
            assert_eq!(got.token_ids, want.token_ids, "{method:?} k={k:?}");
        }
    }
}

#[test]
fn a_minimum_length_holds_back_the_end_of_sequence() {
    let e = engine();
    let prompt = Prompt::from("Lily went home and slept. The end");
    let free = gen(e, &prompt, &greedy(300));
    assert_eq!(
        free.finish_reason,
        FinishReason::Stop,
        "the toy story ends by itself"
    );
    let n = free.token_ids.len() + 10;
    let a = LogitAdjust {
        min_tokens: n,
        ..LogitAdjust::default()
    };
    for method in [Method::Vanilla, Method::PromptLookup, Method::Draft] {
        let params = GenerateParams {
            ignore_eos: false,
            ..adjusted(method, Some(4), SamplingParams::greedy(), 0, 300, a.clone())
        };
        let g = gen(e, &prompt, &params);
        assert!(g.token_ids.len() >= n, "{method:?}: {} tokens", g.token_ids.len());
        assert!(
            !g.token_ids[..n - 1]
                .iter()
                .any(|t| e.tokenizer().eos_ids().contains(t)),
            "{method:?}"
        );
    }
}

/// The target's distribution after `ids` with `a` over the output `ids[prompt_len..]`.
fn expected(
    e: &Engine,
    ids: &[u32],
    prompt_len: usize,
    sampling: &SamplingParams,
    a: &LogitAdjust,
) -> Vec<f64> {
    let model = e.model();
    let pos: Vec<usize> = (0..ids.len()).collect();
    let mut cache = model.new_cache(ids.len()).unwrap();
    let out = model
        .forward(&ForwardInput::causal(ids, &pos), &mut cache)
        .unwrap();
    let mut logits = out.last().to_vec();
    a.apply(&mut logits, &ids[prompt_len..], e.tokenizer().eos_ids());
    warp(&logits, sampling, ids)
        .unwrap()
        .probs()
        .iter()
        .map(|&p| p as f64)
        .collect()
}

#[test]
fn sampled_tokens_with_adjustments_follow_the_adjusted_target() {
    let e = engine();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let ids = e.prompt_ids(&prompt).unwrap();
    let sampling = two_samplers()[0].clone();
    // Draft (the draft's own q, unadjusted) and prompt lookup (one-hot drafts).
    for method in [Method::Draft, Method::PromptLookup] {
        let c = sample_two_tokens(e, &prompt, 3000, |seed| {
            adjusted(method, Some(3), sampling.clone(), seed, 2, adjust())
        });
        assert!(c.drafted > 0, "{method:?}");
        let (s, dof) = chi_square(&c.first, &expected(e, &ids, ids.len(), &sampling, &adjust()));
        assert!(s < critical(dof), "{method:?} first token: chi2 {s}, dof {dof}");
        // The second token: the first now counts against itself.
        let (t1, counts) = c.commonest_second();
        let mut ctx = ids.clone();
        ctx.push(t1);
        let (s, dof) = chi_square(counts, &expected(e, &ctx, ids.len(), &sampling, &adjust()));
        assert!(s < critical(dof), "{method:?} second token: chi2 {s}, dof {dof}");
    }
}

#[test]
fn out_of_range_adjustments_are_refused() {
    let err = engine()
        .generate_one(
            &Prompt::from("Hi"),
            &adjusted(
                Method::Vanilla,
                None,
                SamplingParams::greedy(),
                0,
                4,
                LogitAdjust {
                    logit_bias: vec![(99_999, 1.0)],
                    ..LogitAdjust::default()
                },
            ),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
}
