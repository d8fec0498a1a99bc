//! Log-probabilities: every method reports, for every generated token, the numbers a plain
//! causal forward over the prompt and the generated tokens gives at that position (after the
//! repetition penalty and temperature), alone and batched, greedy and sampled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use ahead_core::sampling::apply_repetition_penalty;
use ahead_engine::{Method, TokenLogprobs};
use ahead_model::ForwardInput;

/// The log-softmax a plain forward gives after `prefix`, with the request's penalty and
/// temperature.
fn reference(e: &Engine, all: &[u32], prompt_len: usize, sampling: &SamplingParams) -> Vec<Vec<f32>> {
    let model = e.model();
    let pos: Vec<usize> = (0..all.len()).collect();
    let mut cache = model.new_cache(all.len()).unwrap();
    let out = model
        .forward(&ForwardInput::causal(all, &pos), &mut cache)
        .unwrap();
    (prompt_len - 1..all.len() - 1)
        .map(|r| {
            let mut l = out.row(r).to_vec();
            apply_repetition_penalty(&mut l, &all[..=r], sampling.repetition_penalty);
            let t = if sampling.temperature > 0.0 {
                sampling.temperature
            } else {
                1.0
            };
            l.iter_mut().for_each(|x| *x /= t);
            let max = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max + l.iter().map(|x| ((x - max) as f64).exp()).sum::<f64>().ln() as f32;
            l.iter().map(|x| x - lse).collect()
        })
        .collect()
}

fn check(
    e: &Engine,
    g: &Generation,
    lps: &[TokenLogprobs],
    sampling: &SamplingParams,
    top: usize,
    what: &str,
) {
    assert_eq!(lps.len(), g.token_ids.len(), "{what}");
    let mut all = g.prompt_token_ids.clone();
    all.extend(&g.token_ids);
    let want = reference(e, &all, g.prompt_token_ids.len(), sampling);
    for (j, (lp, row)) in lps.iter().zip(&want).enumerate() {
        assert_eq!(lp.token, g.token_ids[j], "{what} token {j}");
        assert!(
            (lp.logprob - row[lp.token as usize]).abs() < 1e-4,
            "{what} token {j}: {} vs {}",
            lp.logprob,
            row[lp.token as usize]
        );
        assert_eq!(lp.top.len(), top, "{what}");
        for &(t, l) in &lp.top {
            assert!(
                (l - row[t as usize]).abs() < 1e-4,
                "{what} token {j} alternative {t}"
            );
        }
        // The alternatives are the most likely tokens, best first.
        let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if top > 0 {
            assert!((lp.top[0].1 - best).abs() < 1e-4, "{what} token {j}");
        }
    }
}

#[test]
fn every_method_reports_plain_decodings_numbers_greedy_and_sampled() {
    let e = engine();
    let prompt = Prompt::from("Lily and Ben went to the park. Lily and Ben went");
    let samplers = [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.8,
            top_k: 20,
            repetition_penalty: 1.3,
            ..SamplingParams::greedy()
        },
    ];
    for sampling in samplers {
        for method in TOY_METHODS {
            for k in [None, Some(4)] {
                let params = GenerateParams {
                    logprobs: Some(3),
                    ..method_params(method, k, sampling.clone(), 7, 40)
                };
                let g = gen(e, &prompt, &params);
                let what = format!("{method:?} k={k:?} {sampling:?}");
                check(e, &g, &g.logprobs, &sampling, 3, &what);
                if sampling.is_greedy() {
                    assert_eq!(
                        g.logprobs.iter().map(|l| l.top[0].0).collect::<Vec<_>>(),
                        g.token_ids,
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn batched_jobs_hand_out_each_tokens_numbers_once_with_its_step() {
    let e = engine();
    let prompts = [Prompt::from("Once upon a time"), Prompt::from("The dog")];
    let params = GenerateParams {
        logprobs: Some(1),
        ..method_params(Method::PromptLookup, Some(4), SamplingParams::greedy(), 0, 30)
    };
    for (p, g) in prompts.iter().zip(e.generate_batched(&prompts, &params)) {
        let g = g.unwrap();
        check(
            e,
            &g,
            &g.logprobs,
            &SamplingParams::greedy(),
            1,
            &format!("{p:?}"),
        );
    }
    // Through the scheduler's job callback, as a server streams them.
    let streamed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let scheduler =
        ahead_engine::Scheduler::start(std::sync::Arc::new(Engine::builder().build().unwrap()), 1);
    let sink = streamed.clone();
    scheduler.submit(ahead_engine::Job {
        prompt: prompts[0].clone(),
        params: params.clone(),
        on_text: Box::new(move |_, lps| sink.lock().unwrap().extend_from_slice(lps)),
        cancel: Default::default(),
        done: Box::new(move |r| {
            let _ = tx.send(r);
        }),
        proposer: None,
    });
    let g = rx.recv().unwrap().unwrap();
    let streamed = streamed.lock().unwrap();
    assert_eq!(*streamed, g.logprobs);
    check(e, &g, &streamed, &SamplingParams::greedy(), 1, "streamed");
}

#[test]
fn too_many_alternatives_are_refused() {
    let params = GenerateParams {
        logprobs: Some(21),
        ..greedy(4)
    };
    let err = engine()
        .generate_one(&Prompt::from("Hi"), &params, &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("at most 20"), "{err}");
}
