//! Batched generation: sequences stepping together in one forward give what each gives alone
//! (greedy for every method; seeded sampling too, since its draft schedule ignores load), a
//! failing or cancelled job touches no other, and the scheduler answers every job once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use ahead_engine::{Job, Method, Scheduler};

const PROMPTS: [&str; 6] = [
    "Once upon a time",
    "Lily and Tom went to the park. They saw a big dog.",
    "The little bird",
    "One day, a girl named Sue found a shiny red ball in the garden. She",
    "Tim",
    "The sun was hot and the children wanted to swim in the lake, so",
];

fn prompts() -> Vec<Prompt> {
    PROMPTS.iter().map(|p| Prompt::Text((*p).into())).collect()
}

fn with(method: Method, params: GenerateParams) -> GenerateParams {
    GenerateParams { method, ..params }
}

const METHODS: [Method; 6] = [
    Method::Vanilla,
    Method::PromptLookup,
    Method::Draft,
    Method::Medusa,
    Method::Lookahead,
    Method::Auto,
];

#[test]
fn greedy_batched_output_equals_each_sequence_alone_for_every_method() {
    let e = engine();
    for method in METHODS {
        // Different lengths, so sequences leave the batch at different steps.
        let params = with(method, greedy_ignore_eos(40));
        let batched = e.generate_batched(&prompts(), &params);
        for (p, got) in prompts().iter().zip(batched) {
            let got = got.unwrap();
            let want = gen(e, p, &params);
            assert_eq!(got.token_ids, want.token_ids, "{method:?} {p:?}");
            assert_eq!(got.text, want.text, "{method:?} {p:?}");
            assert_eq!(got.finish_reason, want.finish_reason, "{method:?} {p:?}");
            assert_eq!(got.prompt_token_ids, want.prompt_token_ids);
        }
    }
    // Fixed draft lengths, and sequences stopping on EOS at their own time.
    for k in [1, 4] {
        let params = GenerateParams {
            num_draft: Some(k),
            ..with(Method::Draft, greedy(120))
        };
        for (p, got) in prompts().iter().zip(e.generate_batched(&prompts(), &params)) {
            assert_eq!(
                got.unwrap().token_ids,
                gen(e, p, &params).token_ids,
                "k={k} {p:?}"
            );
        }
    }
}

#[test]
fn seeded_sampling_in_a_batch_equals_sampling_alone() {
    let e = engine();
    for method in [
        Method::Vanilla,
        Method::PromptLookup,
        Method::Draft,
        Method::Medusa,
    ] {
        let mut params = with(method, sampled(0.8, 11, 30));
        params.sampling.top_p = 0.9;
        let batched = e.generate_batched(&prompts(), &params);
        for (p, got) in prompts().iter().zip(batched) {
            assert_eq!(
                got.unwrap().token_ids,
                gen(e, p, &params).token_ids,
                "{method:?} {p:?}"
            );
        }
    }
}

#[test]
fn a_job_that_cannot_start_fails_alone() {
    let e = engine();
    let mut ps = prompts();
    ps.insert(2, Prompt::Ids(vec![1, 100_000]));
    let out = e.generate_batched(&ps, &greedy(10));
    assert!(out[2].is_err(), "token outside the vocabulary");
    for (i, r) in out.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(
            r.as_ref().unwrap().token_ids,
            gen(e, &ps[i], &greedy(10)).token_ids
        );
    }
}

/// A job whose result and streamed text arrive on channels.
fn job(
    prompt: &str,
    params: GenerateParams,
    cancel: Arc<AtomicBool>,
) -> (
    Job,
    mpsc::Receiver<Result<Generation, String>>,
    mpsc::Receiver<String>,
) {
    let (done_tx, done_rx) = mpsc::channel();
    let (text_tx, text_rx) = mpsc::channel();
    let job = Job {
        prompt: Prompt::Text(prompt.into()),
        params,
        on_text: Box::new(move |t, _| {
            let _ = text_tx.send(t.to_string());
        }),
        cancel,
        done: Box::new(move |r| {
            let _ = done_tx.send(r.map_err(|e| e.to_string()));
        }),
        proposer: None,
    };
    (job, done_rx, text_rx)
}

#[test]
fn the_scheduler_answers_every_job_once_and_a_cancelled_job_stops_alone() {
    let e = Arc::new(Engine::builder().build().unwrap());
    let scheduler = Scheduler::start(e.clone(), 2);
    let mut waiting = Vec::new();
    for (i, p) in PROMPTS.iter().enumerate() {
        let method = METHODS[i % METHODS.len()];
        let params = with(method, greedy_ignore_eos(30));
        let (j, done, text) = job(p, params.clone(), Arc::new(AtomicBool::new(false)));
        scheduler.submit(j);
        waiting.push((p, params, done, text));
    }
    // A long job, cancelled once its first text has arrived.
    let cancel = Arc::new(AtomicBool::new(false));
    let (j, long_done, long_text) = job("Once", greedy_ignore_eos(400), cancel.clone());
    scheduler.submit(j);
    long_text.recv().unwrap();
    cancel.store(true, Ordering::Relaxed);
    let long = long_done.recv().unwrap().unwrap();
    assert_eq!(long.finish_reason, FinishReason::Cancelled);
    assert!(long.token_ids.len() < 400);

    for (p, params, done, text) in waiting {
        let got = done.recv().unwrap().unwrap();
        let want = gen(&e, &Prompt::Text((*p).into()), &params);
        assert_eq!(got.token_ids, want.token_ids, "{p}");
        let streamed: String = text.try_iter().collect();
        assert_eq!(streamed, got.text, "streamed text of {p}");
        assert!(done.try_recv().is_err(), "answered once");
    }
    assert_eq!(scheduler.load(), 0, "nothing left in flight");
}

#[test]
fn a_panic_in_a_step_fails_its_batch_with_an_error_and_the_worker_keeps_serving() {
    let e = Arc::new(Engine::builder().build().unwrap());
    let scheduler = Scheduler::start(e.clone(), 1);
    // A job whose text callback panics mid-generation (a fault inside a step), batched with a
    // healthy one.
    let (done_tx, faulty_done) = mpsc::channel();
    scheduler.submit(Job {
        prompt: Prompt::Text("Once upon a time".into()),
        params: greedy_ignore_eos(50),
        on_text: Box::new(|_, _| panic!("injected fault")),
        cancel: Arc::new(AtomicBool::new(false)),
        done: Box::new(move |r| {
            let _ = done_tx.send(r.map_err(|e| e.to_string()));
        }),
        proposer: None,
    });
    let (j, healthy_done, _) = job(
        "The little bird",
        greedy_ignore_eos(50),
        Arc::new(AtomicBool::new(false)),
    );
    scheduler.submit(j);
    let faulty = faulty_done.recv().unwrap();
    assert!(
        faulty.unwrap_err().contains("panicked"),
        "the faulty job gets a terminal error"
    );
    // The healthy job either finished before the fault or was failed with it: never hangs.
    let _ = healthy_done.recv().unwrap();
    // The worker survives and serves the next job exactly.
    let (j, done, _) = job("Tim", greedy(20), Arc::new(AtomicBool::new(false)));
    scheduler.submit(j);
    let got = done.recv().unwrap().unwrap();
    assert_eq!(
        got.token_ids,
        gen(&e, &Prompt::Text("Tim".into()), &greedy(20)).token_ids
    );
    assert_eq!(scheduler.load(), 0);
}

#[test]
fn long_prompts_prefilled_in_chunks_beside_other_sequences_give_the_same_output() {
    let e = engine();
    // Prompts of several prefill chunks (64 rows each) mixed with short ones.
    let long = "Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends. "
        .repeat(6);
    let mut prompts = vec![Prompt::Text(long.clone()), Prompt::Text("Tim".into())];
    prompts.push(Prompt::Text(format!("{long} The end. Then")));
    let n_long = e.prompt_ids(&prompts[0]).unwrap().len();
    assert!(
        n_long > 2 * 64,
        "the prompt spans several chunks ({n_long} tokens)"
    );
    for method in [
        Method::Vanilla,
        Method::Draft,
        Method::Medusa,
        Method::Lookahead,
        Method::PromptLookup,
    ] {
        let params = with(method, greedy_ignore_eos(30));
        let batched = e.generate_batched(&prompts, &params);
        for (p, got) in prompts.iter().zip(batched) {
            let got = got.unwrap();
            let want = gen(e, p, &params);
            assert_eq!(got.token_ids, want.token_ids, "{method:?}");
            if method == Method::Vanilla {
                // Prefill chunks are not counted as target forwards. (Drafting methods may take
                // more steps in a batch: their controllers draft less under load.)
                assert_eq!(got.stats.target_forwards, want.stats.target_forwards);
            }
        }
    }
}

#[test]
fn a_callers_proposer_is_batched_beside_the_methods_own() {
    // The perfect drafter (plain decoding's own output) rides in a scheduler's batch next to an
    // ordinary job: every draft is accepted, and the output is still plain decoding's.
    let e = Arc::new(Engine::builder().build().unwrap());
    let prompt = Prompt::from("Once upon a time");
    let want = gen(&e, &prompt, &greedy_ignore_eos(40));
    let prompt_len = e.prompt_ids(&prompt).unwrap().len();
    let scheduler = Scheduler::start(e.clone(), 1);
    let (mut oracle, oracle_done, _) = job(
        "Once upon a time",
        GenerateParams {
            num_draft: Some(4),
            ..greedy_ignore_eos(40)
        },
        Arc::new(AtomicBool::new(false)),
    );
    oracle.proposer = Some(Box::new(ahead_engine::spec::OracleProposer::new(
        prompt_len,
        want.token_ids.clone(),
    )));
    let (other, other_done, _) = job(
        "The little bird",
        greedy_ignore_eos(40),
        Arc::new(AtomicBool::new(false)),
    );
    scheduler.submit(oracle);
    scheduler.submit(other);
    let got = oracle_done.recv().unwrap().unwrap();
    assert_eq!(got.token_ids, want.token_ids);
    assert_eq!(got.stats.method, "oracle");
    assert!(got.stats.mean_accepted_length > 4.0, "{:?}", got.stats);
    assert!(other_done.recv().unwrap().is_ok());
}
