//! Golden outputs from every model format through the library facade, exact `max_tokens`,
//! and streaming.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// golden outputs, every format

#[test]
fn golden_embedded_default() {
    assert_golden(engine(), stories(), 256, "embedded default");
}

#[test]
fn golden_llama2c_bin() {
    let e = Engine::builder().model(STORIES_BIN).build().unwrap();
    assert_golden(&e, stories(), 256, "stories260K.bin");
}

#[test]
fn golden_gguf() {
    let e = Engine::builder().model(STORIES_GGUF).build().unwrap();
    assert_golden(&e, stories(), 256, "stories260K.gguf");
}

#[test]
fn golden_hf_folder() {
    let e = Engine::builder().model(STORIES_HF).build().unwrap();
    assert_golden(&e, stories(), 256, "stories260K-hf");
}

#[test]
fn golden_babyllama_tok105() {
    let e = Engine::builder()
        .model(BABY_BIN)
        .tokenizer(BABY_TOK)
        .build()
        .unwrap();
    let g = golden("babyllama_tok105_greedy_bos_200.json");
    assert_golden(&e, &g, 200, "babyllama model5000.bin + tok105.bin");
}

#[test]
fn golden_babyllama_tokenizer_found_beside_checkpoint() {
    // tok105.bin is the single tok*.bin beside model5000.bin.
    let e = Engine::builder().model(BABY_BIN).build().unwrap();
    let g = golden("babyllama_tok105_greedy_bos_200.json");
    assert_golden(&e, &g, 200, "babyllama model5000.bin (tokenizer beside it)");
}

#[test]
fn generate_batch_matches_generate_one() {
    let e = engine();
    let prompts = [bos(), Prompt::from("Once upon a time"), Prompt::Ids(vec![1, 403])];
    let params = greedy_ignore_eos(40);
    let batch = e.generate(&prompts, &params).unwrap();
    assert_eq!(batch.len(), prompts.len());
    for (p, b) in prompts.iter().zip(&batch) {
        let one = gen(e, p, &params);
        assert_eq!(one.token_ids, b.token_ids);
        assert_eq!(one.text, b.text);
        assert_eq!(one.finish_reason, b.finish_reason);
    }
    assert_eq!(batch[0].token_ids, stories().ids[..40]);
}

#[test]
fn text_prompt_gets_bos() {
    let out = gen(engine(), &Prompt::from("Once upon a time"), &greedy(5));
    assert_eq!(
        out.prompt_token_ids.first(),
        Some(&1),
        "llama2.c prompts start with BOS"
    );
    assert_eq!(
        out.prompt_token_ids,
        engine().tokenizer().encode("Once upon a time", true).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// max_tokens

#[test]
fn max_tokens_is_exact() {
    for n in [1usize, 2, 7, 50] {
        let params = GenerateParams {
            method: ahead_engine::Method::Vanilla,
            ..greedy_ignore_eos(n)
        };
        let (out, deltas) = gen_streamed(engine(), &bos(), &params);
        assert_eq!(out.token_ids.len(), n, "max_tokens {n}");
        assert_eq!(out.token_ids, stories().ids[..n]);
        assert_eq!(out.finish_reason, FinishReason::Length);
        assert_eq!(out.stats.generated_tokens, n);
        assert_eq!(deltas.concat(), out.text);
        // Vanilla: one target forward per generated token (the prefill yields the first).
        assert_eq!(out.stats.target_forwards, n);
        assert!((out.stats.mean_accepted_length - 1.0).abs() < 1e-9);
        assert_eq!(out.stats.drafted_tokens, 0);
        assert_eq!(out.stats.accepted_tokens, 0);

        let sampled_out = gen(
            engine(),
            &Prompt::from("Once upon a time"),
            &GenerateParams {
                ignore_eos: true,
                ..sampled(1.0, 7, n)
            },
        );
        assert_eq!(sampled_out.token_ids.len(), n);
        assert_eq!(sampled_out.finish_reason, FinishReason::Length);
    }
}

#[test]
fn max_tokens_zero_generates_nothing() {
    let out = gen(engine(), &bos(), &greedy_ignore_eos(0));
    assert!(out.token_ids.is_empty());
    assert_eq!(out.text, "");
    assert_eq!(out.finish_reason, FinishReason::Length);
}

// ---------------------------------------------------------------------------------------------
// streaming

#[test]
fn streamed_deltas_concatenate_to_text() {
    let e = engine();
    let prompts = [
        bos(),
        Prompt::from("Once upon a time"),
        Prompt::from("Lily saw a ☕ and said"),
    ];
    let stops: [Vec<String>; 4] = [
        vec![],
        vec!["Lily. She".into()],
        vec![". ".into(), "\n".into()],
        vec!["park".into(), "ball".into(), "zzz".into()],
    ];
    for prompt in &prompts {
        for stop in &stops {
            for (temperature, seed) in [(0.0, 0), (1.0, 1), (0.8, 42), (1.5, 3)] {
                for ignore_eos in [false, true] {
                    let params = GenerateParams {
                        stop: stop.clone(),
                        ignore_eos,
                        ..sampled(temperature, seed, 120)
                    };
                    let (out, deltas) = gen_streamed(e, prompt, &params);
                    let what = format!(
                        "{prompt:?} stop {stop:?} t {temperature} seed {seed} ignore_eos {ignore_eos}"
                    );
                    assert_eq!(deltas.concat(), out.text, "{what}");
                    assert!(
                        deltas.iter().all(|d| !d.is_empty()),
                        "{what}: empty delta handed out"
                    );
                    for s in stop {
                        assert!(
                            !out.text.contains(s.as_str()),
                            "{what}: text contains stop string {s:?}"
                        );
                    }
                    if !out.text.contains('\u{FFFD}') {
                        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{what}");
                    }
                    // The same request without streaming gives the same result.
                    let plain = gen(e, prompt, &params);
                    assert_eq!(plain.token_ids, out.token_ids, "{what}");
                    assert_eq!(plain.text, out.text, "{what}");
                }
            }
        }
    }
}

#[test]
fn stream_never_shows_stop_string_prefix_that_completes() {
    // Streaming with a stop string: no delta may contain text that is later cut.
    let (_, text) = expected_stop("Lily. She");
    let params = GenerateParams {
        stop: vec!["Lily. She".into()],
        ..greedy_ignore_eos(256)
    };
    let mut streamed = String::new();
    let out = engine()
        .generate_one(&bos(), &params, &mut |d| {
            streamed.push_str(d);
            assert!(
                text.starts_with(&streamed),
                "streamed {streamed:?} is not a prefix of {text:?}"
            );
        })
        .unwrap();
    assert_eq!(streamed, out.text);
}
