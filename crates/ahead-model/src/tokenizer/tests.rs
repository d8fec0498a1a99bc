//! Fixture tests: llama2.c `tok512.bin` / `tok105.bin`, the stories260K GGUF and HF tokenizers,
//! golden greedy outputs of llama2.c `run.c`.

use std::path::{Path, PathBuf};

use super::*;
use crate::format::gguf::parse_gguf;

fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/")).join(rel)
}

fn tok512() -> Tokenizer {
    Tokenizer::from_llama2c_file(&fixture("stories260K/tok512.bin"), 512).unwrap()
}

fn tok105() -> Tokenizer {
    Tokenizer::from_llama2c_file(&fixture("babyllama-tok105/tok105.bin"), 105).unwrap()
}

fn hf() -> Tokenizer {
    Tokenizer::from_hf_files(
        &fixture("stories260K-hf/tokenizer.json"),
        Some(&fixture("stories260K-hf/tokenizer_config.json")),
        None,
    )
    .unwrap()
}

fn gguf() -> Tokenizer {
    let bytes = std::fs::read(fixture("stories260K/stories260K.gguf")).unwrap();
    Tokenizer::from_gguf(&parse_gguf(&bytes, "stories260K.gguf").unwrap()).unwrap()
}

/// (generated ids, text) of a golden run from BOS.
fn golden(name: &str) -> (Vec<u32>, String) {
    let text = std::fs::read_to_string(fixture(&format!("golden/{name}"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = v["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    (ids, v["text"].as_str().unwrap().to_owned())
}

fn with_bos(ids: &[u32]) -> Vec<u32> {
    std::iter::once(1).chain(ids.iter().copied()).collect()
}

const PROMPTS: &[&str] = &[
    "Once upon a time",
    "Hello world",
    "café ☕",
    "Lily said, \"I'm sorry.\"\nThe end.\n\n",
    "  two leading spaces and trailing  ",
    "<s> is literal text </s>",
    "日本語のテキスト 🚀 ok",
    "x",
];

/// `run.c`'s encode, literally (O(n²) rescans), as an independent reference.
fn run_c_encode(pieces: &[Vec<u8>], scores: &[f32], text: &str) -> Vec<u32> {
    let find = |p: &[u8]| pieces.iter().position(|q| q.as_slice() == p).map(|i| i as u32);
    let mut toks: Vec<u32> = Vec::new();
    if !text.is_empty() {
        toks.push(find(b" ").unwrap());
    }
    for ch in text.chars() {
        let mut buf = [0u8; 4];
        let s = ch.encode_utf8(&mut buf).as_bytes();
        match find(s) {
            Some(id) => toks.push(id),
            None => toks.extend(s.iter().map(|&b| b as u32 + 3)),
        }
    }
    loop {
        let mut best = (-1e10f32, None);
        for i in 0..toks.len().saturating_sub(1) {
            let cat = [pieces[toks[i] as usize].as_slice(), &pieces[toks[i + 1] as usize]].concat();
            if let Some(id) = find(&cat) {
                if scores[id as usize] > best.0 {
                    best = (scores[id as usize], Some((i, id)));
                }
            }
        }
        let Some((i, id)) = best.1 else { break };
        toks[i] = id;
        toks.remove(i + 1);
    }
    toks
}

#[test]
fn llama2c_encode_matches_run_c_reference() {
    let bytes = std::fs::read(fixture("stories260K/tok512.bin")).unwrap();
    let v = llama2c::parse(&bytes, 512, "tok512").unwrap();
    let scores: Vec<f32> = {
        let mut pos = 4;
        (0..512)
            .map(|_| {
                let s = f32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
                let len = i32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
                pos += 8 + len;
                s
            })
            .collect()
    };
    // Some varied real text: this file's own source lines.
    let corpus = include_str!("tests.rs");
    let mut samples: Vec<&str> = PROMPTS.to_vec();
    samples.extend(corpus.lines().filter(|l| !l.trim().is_empty()).take(120));
    let tok = tok512();
    for s in samples {
        let expected = run_c_encode(&v.pieces, &scores, s);
        assert_eq!(tok.encode(s, false).unwrap(), expected, "{s:?}");
    }
}

#[test]
fn llama2c_encode_known_ids_and_roundtrip() {
    let tok = tok512();
    assert_eq!(tok.kind(), "llama2c");
    assert_eq!(
        (tok.vocab_size(), tok.bos_id(), tok.eos_ids(), tok.add_bos()),
        (512, Some(1), &[2, 1][..], true)
    );
    // The golden text starts with these very ids.
    assert_eq!(
        tok.encode("Once upon a time", true).unwrap(),
        [1, 403, 407, 261, 378]
    );
    assert_eq!(tok.encode("", true).unwrap(), [1]);
    assert!(tok.encode("", false).unwrap().is_empty());
    for p in PROMPTS {
        let ids = tok.encode(p, true).unwrap();
        assert_eq!(
            ids.iter().filter(|&&i| i == 1).count(),
            1,
            "{p:?}: literal <s> must not become BOS"
        );
        assert_eq!(tok.decode(&ids).unwrap(), *p, "{p:?}");
    }
    assert_eq!(tok.id_to_piece(259).as_deref(), Some(" t"));
    assert_eq!(tok.piece_to_id(" t"), Some(259));
}

#[test]
fn llama2c_decodes_golden_text() {
    let (ids, text) = golden("stories260K_greedy_bos_256.json");
    let tok = tok512();
    assert_eq!(tok.decode(&with_bos(&ids)).unwrap(), text);
    // run.c only strips the space right after BOS.
    assert_eq!(tok.decode(&ids).unwrap(), format!(" {text}"));
    let (ids, text) = golden("babyllama_tok105_greedy_bos_200.json");
    let tok = tok105();
    assert_eq!(tok.decode(&with_bos(&ids)).unwrap(), text);
    assert_eq!(tok.decode(&tok.encode(&text, true).unwrap()).unwrap(), text);
}

#[test]
fn three_backends_agree_on_stories260k() {
    let (l2c, hf, gg) = (tok512(), hf(), gguf());
    assert_eq!((hf.kind(), gg.kind()), ("huggingface", "sentencepiece-gguf"));
    // The HF and GGUF files declare EOS = 2 only; llama2.c's tokenizer also ends at BOS (run.c).
    for t in [&hf, &gg] {
        assert_eq!(
            (t.vocab_size(), t.bos_id(), t.eos_ids(), t.add_bos()),
            (512, Some(1), &[2][..], true)
        );
    }
    for p in PROMPTS {
        let want = l2c.encode(p, true).unwrap();
        assert_eq!(gg.encode(p, true).unwrap(), want, "gguf {p:?}");
        assert_eq!(gg.decode(&want).unwrap(), *p, "gguf {p:?}");
        // HF's Metaspace adds no dummy prefix to text that already starts with a space
        // (sentencepiece and run.c always do), and its decoder strips one leading space.
        if !p.starts_with(' ') {
            assert_eq!(hf.encode(p, true).unwrap(), want, "hf {p:?}");
            assert_eq!(hf.encode(p, false).unwrap(), want[1..], "hf no bos {p:?}");
            assert_eq!(hf.decode(&want).unwrap(), *p, "hf {p:?}");
        }
    }
    let (ids, text) = golden("stories260K_greedy_bos_256.json");
    for t in [&hf, &gg] {
        assert_eq!(t.decode(&with_bos(&ids)).unwrap(), text, "{}", t.kind());
        assert_eq!(t.decode(&ids).unwrap(), text, "{}", t.kind());
        assert_eq!(t.id_to_piece(259).as_deref(), Some("▁t"));
    }
    assert!(hf.chat_template().is_none() && gg.chat_template().is_none());
}

fn stream(tok: &Tokenizer, dec: &mut IncrementalDecoder, ids: &[u32]) -> Vec<String> {
    let mut out: Vec<String> = ids.iter().map(|&i| dec.push(tok, i).unwrap()).collect();
    out.push(dec.finish(tok).unwrap());
    out
}

#[test]
fn incremental_decoding_matches_full_decode() {
    let (ids, text) = golden("stories260K_greedy_bos_256.json");
    for tok in [tok512(), hf(), gguf()] {
        let all = with_bos(&ids);
        let deltas = stream(&tok, &mut IncrementalDecoder::new(), &all);
        assert_eq!(deltas.concat(), text, "{}", tok.kind());
        let deltas = stream(&tok, &mut IncrementalDecoder::with_prompt(&[1]), &ids);
        assert_eq!(deltas.concat(), text, "{} after prompt", tok.kind());
        // A prompt that ends mid-text: the first generated piece keeps its space.
        let prompt = tok.encode("Once upon a", true).unwrap();
        let gen = tok.encode("time there was", false).unwrap(); // dummy prefix: " time"
        let deltas = stream(&tok, &mut IncrementalDecoder::with_prompt(&prompt), &gen);
        assert_eq!(deltas.concat(), " time there was", "{}", tok.kind());
        for p in PROMPTS {
            let ids = tok.encode(p, true).unwrap();
            let deltas = stream(&tok, &mut IncrementalDecoder::new(), &ids);
            assert_eq!(deltas.concat(), tok.decode(&ids).unwrap(), "{} {p:?}", tok.kind());
            assert!(
                deltas.iter().all(|d| !d.contains('\u{FFFD}')),
                "{} {p:?}: {deltas:?}",
                tok.kind()
            );
        }
    }
    let (ids, text) = golden("babyllama_tok105_greedy_bos_200.json");
    let tok = tok105();
    assert_eq!(
        stream(&tok, &mut IncrementalDecoder::new(), &with_bos(&ids)).concat(),
        text
    );
}

#[test]
fn incremental_decoder_holds_partial_characters() {
    // "☕" = E2 98 95 as three byte-fallback tokens (id = byte + 3).
    let cup: Vec<u32> = "☕".bytes().map(|b| b as u32 + 3).collect();
    let hi = tok512().encode("hi", false).unwrap();
    for tok in [tok512(), hf(), gguf()] {
        let mut dec = IncrementalDecoder::with_prompt(&[1]);
        let mut deltas = Vec::new();
        for &id in hi.iter().chain(&cup).chain(&hi) {
            deltas.push(dec.push(&tok, id).unwrap());
        }
        assert_eq!(deltas.concat(), "hi☕ hi", "{}", tok.kind());
        assert_eq!(deltas[hi.len()..hi.len() + 3], ["", "", "☕"], "{}", tok.kind());
        assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')));
        // A dangling partial character is flushed (lossily) only by finish().
        let mut dec = IncrementalDecoder::with_prompt(&[1]);
        assert_eq!(dec.push(&tok, cup[0]).unwrap(), "");
        assert_eq!(dec.push(&tok, cup[1]).unwrap(), "");
        // (one U+FFFD per byte for HF's ByteFallback, one per sequence otherwise)
        let tail = dec.finish(&tok).unwrap();
        assert!(
            !tail.is_empty() && tail.chars().all(|c| c == '\u{FFFD}'),
            "{}: {tail:?}",
            tok.kind()
        );
        // Bad ids are refused without disturbing the stream.
        assert!(dec.push(&tok, 512).is_err());
        assert!(tok.decode(&[1, 512]).is_err());
        assert!(tok.decode(&[u32::MAX]).is_err());
    }
}

#[test]
fn hf_config_variants() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tokenizer_config.json");
    let gen = dir.path().join("generation_config.json");
    std::fs::write(
        &cfg,
        r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "add_bos_token": false,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D"}]}"#,
    )
    .unwrap();
    std::fs::write(&gen, r#"{"eos_token_id": [0, 2]}"#).unwrap();
    let json = fixture("stories260K-hf/tokenizer.json");
    let t = Tokenizer::from_hf_files(&json, Some(&cfg), Some(&gen)).unwrap();
    assert_eq!(
        (t.bos_id(), t.eos_ids(), t.add_bos()),
        (Some(1), &[0, 2][..], false)
    );
    assert_eq!(
        t.chat_template()
            .unwrap()
            .render(&[], false, "<s>", "</s>")
            .unwrap(),
        "<s>D"
    );
    // No config: BOS and add_bos come from the post-processor.
    let t = Tokenizer::from_hf_files(&json, None, None).unwrap();
    assert_eq!((t.bos_id(), t.add_bos()), (Some(1), true));
    assert_eq!(t.encode("hi", true).unwrap()[..1], [1]);
    assert_eq!(
        t.encode("hi", true).unwrap().len(),
        t.encode("hi", false).unwrap().len() + 1
    );
    // Errors, not panics.
    std::fs::write(&cfg, r#"{"bos_token": "<nope>"}"#).unwrap();
    assert!(Tokenizer::from_hf_files(&json, Some(&cfg), None).is_err());
    std::fs::write(&gen, r#"{"eos_token_id": "x"}"#).unwrap();
    assert!(Tokenizer::from_hf_files(&json, None, Some(&gen)).is_err());
    std::fs::write(&cfg, "{not json").unwrap();
    assert!(Tokenizer::from_hf_files(&json, Some(&cfg), None).is_err());
    assert!(Tokenizer::from_hf_files(&dir.path().join("missing.json"), None, None).is_err());
}

#[test]
fn long_inputs_encode_quickly_and_roundtrip() {
    // ~250 KB in one piece: the heap-based merge is O(n log n), run.c's loop would be O(n²).
    let text = PROMPTS.join(" ").repeat(1500);
    for tok in [tok512(), gguf()] {
        let start = std::time::Instant::now();
        let ids = tok.encode(&text, true).unwrap();
        assert!(
            start.elapsed().as_secs() < 10,
            "{}: {:?}",
            tok.kind(),
            start.elapsed()
        );
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn tokenizer_is_send_sync() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Tokenizer>();
    check::<IncrementalDecoder>();
    check::<ChatTemplate>();
}

#[test]
fn token_bytes_spell_each_tokens_text_and_leave_control_tokens_out() {
    for (name, tok) in [("llama2c", tok512()), ("hf", hf()), ("gguf", gguf())] {
        let bytes = tok.token_bytes();
        assert_eq!(bytes.len(), tok.vocab_size(), "{name}");
        for &id in tok.eos_ids().iter().chain(tok.bos_id().iter()) {
            assert_eq!(bytes[id as usize], None, "{name}: control token {id}");
        }
        // Concatenated, a sentence's tokens spell its text (after the first token's space).
        let ids = tok.encode("Lily saw a big dog.", false).unwrap();
        let spelled: Vec<u8> = ids
            .iter()
            .flat_map(|&i| bytes[i as usize].clone().unwrap())
            .collect();
        let text = String::from_utf8(spelled).unwrap();
        assert_eq!(text.trim_start(), "Lily saw a big dog.", "{name}");
    }
}

#[test]
fn a_template_renders_tool_calls_and_refuses_control_text_inside_them() {
    let mut tok = hf();
    let template = "{% for m in messages %}<s>{{ m.role }}: {{ m.content }}{% if m.tool_calls %}{% for c in m.tool_calls %}<call {{ c.function.name }} {{ c.function.arguments }}>{% endfor %}{% endif %}</s>{% endfor %}";
    tok.set_chat_template(Some(ChatTemplate::new(template.into()).unwrap()));
    let call = serde_json::json!([{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]);
    let messages = [
        ChatMessage::new("user", "Weather?"),
        ChatMessage {
            tool_calls: Some(call),
            ..ChatMessage::new("assistant", "")
        },
        ChatMessage {
            tool_call_id: Some("c1".into()),
            ..ChatMessage::new("tool", "cold")
        },
    ];
    let chat = tok.encode_chat(&messages, false).unwrap();
    assert!(
        chat.text.contains("<call weather {\"city\": \"Oslo\"}>"),
        "{}",
        chat.text
    );
    let sneaky = serde_json::json!([{"function": {"name": "f", "arguments": "</s>"}}]);
    let bad = [ChatMessage {
        tool_calls: Some(sneaky),
        ..ChatMessage::new("assistant", "")
    }];
    let err = tok.encode_chat(&bad, false).unwrap_err();
    assert!(err.to_string().contains("control-token text"), "{err}");
}
