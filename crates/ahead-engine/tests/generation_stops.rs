//! Stop strings and end-of-sequence tokens end generation exactly where they should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// stop strings

#[test]
fn stop_string_spanning_tokens() {
    let g = stories();
    let tok = engine().tokenizer();
    // Make sure the stop string really spans several tokens.
    let (ids, text) = expected_stop("Lily. She");
    assert_eq!(text, "Once upon a time, there was a little girl named ");
    let before = text_after_bos(tok, &ids[..ids.len() - 1]);
    assert!(!before.contains("Lily. She"));
    let start_tok = (1..ids.len())
        .rev()
        .find(|&k| !text_after_bos(tok, &ids[..k]).contains("Lily"))
        .unwrap();
    assert!(
        ids.len() - start_tok >= 3,
        "'Lily. She' should span at least 3 tokens"
    );

    let params = GenerateParams {
        stop: vec!["Lily. She".into()],
        ..greedy_ignore_eos(256)
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, text);
    assert_eq!(
        out.token_ids, ids,
        "token ids end at the token that completed the stop string"
    );
    assert!(g.text.starts_with(&out.text));
}

#[test]
fn stop_string_inside_tokens() {
    // Stop strings that start and end in the middle of tokens.
    let g = stories();
    let tok = engine().tokenizer();
    let mut checked = 0;
    for stop in [
        "ime, th",
        "e was a l",
        "ittle",
        "y. Sh",
        "park.\" L",
        "\nLily's",
        "n't kn",
        "o",
        ",",
        "\"I'm s",
    ] {
        let (ids, text) = expected_stop(stop);
        let params = GenerateParams {
            stop: vec![stop.into()],
            ..greedy_ignore_eos(256)
        };
        let (out, deltas) = gen_streamed(engine(), &bos(), &params);
        assert_eq!(out.finish_reason, FinishReason::Stop, "{stop:?}");
        assert_eq!(out.text, text, "{stop:?}");
        assert_eq!(out.token_ids, ids, "{stop:?}");
        assert_eq!(deltas.concat(), out.text, "{stop:?}: streamed text");
        assert!(!text_after_bos(tok, &ids[..ids.len() - 1]).contains(stop));
        assert!(g.text.starts_with(&out.text));
        checked += 1;
    }
    assert_eq!(checked, 10);
}

#[test]
fn earliest_of_several_stop_strings_wins() {
    let (ids_a, text_a) = expected_stop("red ball");
    let (ids_b, _) = expected_stop("too high");
    assert!(ids_a.len() < ids_b.len());
    let params = GenerateParams {
        stop: vec!["too high".into(), "red ball".into(), "never appears XYZ".into()],
        ..greedy_ignore_eos(256)
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, text_a);
    assert_eq!(out.token_ids, ids_a);
}

#[test]
fn stop_string_never_appearing_gives_length() {
    let params = GenerateParams {
        stop: vec!["zebra quantum".into(), "☕".into()],
        ..greedy_ignore_eos(100)
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.token_ids, stories().ids[..100]);
    assert_eq!(
        out.text,
        text_after_bos(engine().tokenizer(), &stories().ids[..100])
    );
}

#[test]
fn stop_string_at_the_very_first_token() {
    // "Once" is the first generated token: the text is empty, one token generated.
    let params = GenerateParams {
        stop: vec!["Once".into()],
        ..greedy_ignore_eos(256)
    };
    let (out, deltas) = gen_streamed(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, "");
    assert_eq!(out.token_ids, stories().ids[..1]);
    assert_eq!(deltas.concat(), "");
}

#[test]
fn stop_string_completed_by_last_allowed_token_is_stop() {
    let (ids, text) = expected_stop("Lily. She");
    let params = GenerateParams {
        stop: vec!["Lily. She".into()],
        ..greedy_ignore_eos(ids.len())
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, text);
    assert_eq!(out.token_ids, ids);
    // One token fewer: the stop string is never completed.
    let params = GenerateParams {
        stop: vec!["Lily. She".into()],
        ..greedy_ignore_eos(ids.len() - 1)
    };
    let out = gen(engine(), &bos(), &params);
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.token_ids, ids[..ids.len() - 1]);
    assert_eq!(
        out.text,
        text_after_bos(engine().tokenizer(), &ids[..ids.len() - 1])
    );
}

// ---------------------------------------------------------------------------------------------
// EOS
//
// stories260K (like every llama2.c TinyStories model) never emits EOS (id 2): its training data
// delimits stories with BOS (id 1), and llama2.c's run.c stops on BOS. To exercise the engine's
// EOS handling on a real model, the HF copy of the weights gets a `generation_config.json` that
// declares `eos_token_id: [2, 1]`, as many Hugging Face models list several end ids.

const EOS_CANDIDATES: &[&str] = &[
    "Once upon a time",
    "The end.",
    "Lily was happy.",
    "The cat sat on the mat.",
    "One day",
    "The sun was shining. The bird sang a song. The girl smiled.",
    "Once upon a time, there was a little dog. The dog was happy.",
];

/// The stories260K HF folder, copied with a generation_config.json whose EOS ids include 1.
fn engine_with_bos_as_eos() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(format!("{STORIES_HF}/{f}"), dir.path().join(f)).unwrap();
        }
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"bos_token_id": 1, "eos_token_id": [2, 1]}"#,
        )
        .unwrap();
        let e = Engine::builder()
            .model(dir.path().to_str().unwrap())
            .build()
            .unwrap();
        let mut eos = e.tokenizer().eos_ids().to_vec();
        eos.sort_unstable();
        assert_eq!(eos, [1, 2], "eos ids from generation_config.json");
        e
    })
}

/// The first candidate prompt whose greedy continuation emits an EOS id within 256 tokens,
/// with that continuation (generated with ignore_eos).
fn eos_prompt(e: &Engine) -> (Prompt, Generation, usize) {
    for p in EOS_CANDIDATES {
        let prompt = Prompt::from(*p);
        let out = gen(e, &prompt, &greedy_ignore_eos(256));
        if let Some(at) = out
            .token_ids
            .iter()
            .position(|t| e.tokenizer().eos_ids().contains(t))
        {
            return (prompt, out, at);
        }
    }
    panic!("none of the candidate prompts emits an EOS id within 256 greedy tokens");
}

/// The text generated after `prompt_ids` for `ids`.
fn text_after(tok: &Tokenizer, prompt_ids: &[u32], ids: &[u32]) -> String {
    let prompt_text = tok.decode(prompt_ids).unwrap();
    let mut all = prompt_ids.to_vec();
    all.extend_from_slice(ids);
    let full = tok.decode(&all).unwrap();
    full.strip_prefix(&prompt_text)
        .expect("prompt text is a prefix")
        .to_string()
}

#[test]
fn eos_stops_generation() {
    let e = engine_with_bos_as_eos();
    let (prompt, long, at) = eos_prompt(e);
    let (out, deltas) = gen_streamed(e, &prompt, &greedy(256));
    assert_eq!(out.finish_reason, FinishReason::Stop, "{prompt:?}");
    assert!(
        e.tokenizer().eos_ids().contains(out.token_ids.last().unwrap()),
        "the EOS that ended generation is in token_ids"
    );
    assert_eq!(
        out.token_ids,
        long.token_ids[..=at],
        "the same prefix as with ignore_eos"
    );
    assert_eq!(out.stats.generated_tokens, at + 1);
    assert_eq!(
        out.text,
        text_after(e.tokenizer(), &out.prompt_token_ids, &out.token_ids[..at]),
        "text excludes the EOS"
    );
    assert_eq!(deltas.concat(), out.text);

    // With ignore_eos the same prefix goes on past EOS to max_tokens.
    assert_eq!(long.finish_reason, FinishReason::Length);
    assert_eq!(long.token_ids.len(), 256);
    assert!(long.text.starts_with(&out.text));

    // A stop string that would only complete after the EOS does not matter.
    let params = GenerateParams {
        stop: vec!["zebra".into()],
        ..greedy(256)
    };
    assert_eq!(gen(e, &prompt, &params).token_ids, out.token_ids);
}

#[test]
fn eos_as_last_allowed_token_is_stop() {
    let e = engine_with_bos_as_eos();
    let (prompt, long, at) = eos_prompt(e);
    let out = gen(e, &prompt, &greedy(at + 1));
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.token_ids, long.token_ids[..=at]);
    let out = gen(e, &prompt, &greedy(at));
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.token_ids, long.token_ids[..at]);
}

#[test]
fn eos_ids_of_each_format() {
    assert_eq!(
        engine().tokenizer().eos_ids(),
        [EOS, 1],
        "llama2.c: EOS, and BOS as run.c"
    );
    for src in [STORIES_GGUF, STORIES_HF] {
        let e = Engine::builder().model(src).build().unwrap();
        assert!(
            e.tokenizer().eos_ids().contains(&EOS),
            "{src}: {:?}",
            e.tokenizer().eos_ids()
        );
        assert_eq!(e.tokenizer().bos_id(), Some(1), "{src}");
    }
}

/// llama2.c's run.c ends a story when the model emits BOS (id 1), the TinyStories delimiter;
/// stories260K never emits EOS (id 2). Greedy from "The cat sat on the mat." emits BOS after
/// about 145 tokens.
#[test]
fn llama2c_story_ends_at_bos() {
    let prompt = Prompt::from("The cat sat on the mat.");
    let long = gen(engine(), &prompt, &greedy_ignore_eos(256));
    let at = long
        .token_ids
        .iter()
        .position(|&t| t == 1)
        .expect("the model ends the story with BOS");
    let out = gen(engine(), &prompt, &greedy(256));
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.token_ids, long.token_ids[..=at]);
}
