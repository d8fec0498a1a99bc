//! Multi-token commits equal one-at-a-time commits (EOS, stop strings, max_tokens, text).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// multi-token commits equal one-at-a-time commits

/// A small deterministic generator (64-bit LCG, high bits out).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn byte_ids(s: &str) -> Vec<u32> {
    s.bytes().map(|b| 3 + b as u32).collect()
}

/// A random token sequence: runs of golden ids, random pieces, whole multi-byte characters as
/// byte-fallback ids, and (unless `clean`) lone or truncated byte ids and control ids.
fn random_tokens(rng: &mut Lcg, clean: bool) -> Vec<u32> {
    let g = &stories().ids;
    let chars = ["☕", "é", "日本", "😀", "ß", "€", "\u{10FFFF}", "ü!", "中"];
    let len = 1 + rng.below(80);
    let mut out = Vec::new();
    while out.len() < len {
        match rng.below(if clean { 3 } else { 5 }) {
            0 => {
                let start = rng.below(g.len());
                let n = 1 + rng.below(12);
                out.extend(g.iter().skip(start).take(n));
            }
            1 => {
                for _ in 0..1 + rng.below(4) {
                    out.push(259 + rng.below((VOCAB - 259) as usize) as u32);
                }
            }
            2 => out.extend(byte_ids(chars[rng.below(chars.len())])),
            3 => {
                // A truncated character or a lone continuation byte.
                let c = byte_ids(chars[rng.below(chars.len())]);
                let keep = rng.below(c.len()).max(1);
                if rng.chance(50) {
                    out.extend(&c[..keep]);
                } else {
                    out.push(3 + 0x80 + rng.below(0x40) as u32);
                }
            }
            _ => out.push([0u32, 1, EOS, 3 + rng.below(256) as u32][rng.below(4)]),
        }
    }
    out
}

/// Random stop strings: substrings of the decoded text (also straddling token and chunk
/// boundaries), strings that never appear, and occasionally none.
fn random_stops(rng: &mut Lcg, text: &str) -> Vec<String> {
    let mut stops = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for _ in 0..rng.below(4) {
        if chars.is_empty() || rng.chance(20) {
            stops.push(["zq#", "never here", "☕☕☕", "xx"][rng.below(4)].to_string());
            continue;
        }
        let a = rng.below(chars.len());
        let n = 1 + rng.below(10);
        let end = chars.get(a + n).map_or(text.len(), |&(i, _)| i);
        let s = &text[chars[a].0..end];
        if !s.is_empty() && !s.contains('\u{FFFD}') {
            stops.push(s.to_string());
        }
    }
    stops
}

/// What the committer must produce, computed independently from whole-sequence decoding.
struct Expected {
    tokens: Vec<u32>,
    text: String,
    finished: Option<FinishReason>,
}

/// The text shown after `ids` were committed following `prompt`: decoded text with a
/// trailing incomplete character held back (the last point whose decoding does not end in
/// U+FFFD), or everything when `flush`.
fn shown_text(tok: &Tokenizer, prompt: &[u32], ids: &[u32], flush: bool) -> String {
    let prompt_text = tok.decode(prompt).unwrap();
    let after = |k: usize| {
        let mut all = prompt.to_vec();
        all.extend_from_slice(&ids[..k]);
        let full = tok.decode(&all).unwrap();
        full.strip_prefix(&prompt_text)
            .expect("prompt text is a prefix")
            .to_string()
    };
    if flush {
        return after(ids.len());
    }
    (0..=ids.len())
        .rev()
        .map(after)
        .find(|t| !t.ends_with('\u{FFFD}'))
        .unwrap_or_default()
}

fn cut_at_earliest(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

fn expected_commit(tok: &Tokenizer, prompt: &[u32], seq: &[u32], rules: &StopRules) -> Expected {
    if rules.max_tokens == 0 {
        return Expected {
            tokens: vec![],
            text: String::new(),
            finished: Some(FinishReason::Length),
        };
    }
    // Ids fed to the decoder: every committed id except an EOS that ends the sequence.
    for k in 1..=seq.len() {
        let t = seq[k - 1];
        if !rules.ignore_eos && rules.eos.contains(&t) {
            let text = shown_text(tok, prompt, &seq[..k - 1], true);
            return match cut_at_earliest(&text, &rules.stop) {
                Some(at) => Expected {
                    tokens: seq[..k].to_vec(),
                    text: text[..at].to_string(),
                    finished: Some(FinishReason::Stop),
                },
                None => Expected {
                    tokens: seq[..k].to_vec(),
                    text,
                    finished: Some(FinishReason::Stop),
                },
            };
        }
        let text = shown_text(tok, prompt, &seq[..k], false);
        if let Some(at) = cut_at_earliest(&text, &rules.stop) {
            return Expected {
                tokens: seq[..k].to_vec(),
                text: text[..at].to_string(),
                finished: Some(FinishReason::Stop),
            };
        }
        if k >= rules.max_tokens {
            let text = shown_text(tok, prompt, &seq[..k], true);
            return match cut_at_earliest(&text, &rules.stop) {
                Some(at) => Expected {
                    tokens: seq[..k].to_vec(),
                    text: text[..at].to_string(),
                    finished: Some(FinishReason::Stop),
                },
                None => Expected {
                    tokens: seq[..k].to_vec(),
                    text,
                    finished: Some(FinishReason::Length),
                },
            };
        }
    }
    Expected {
        tokens: seq.to_vec(),
        text: shown_text(tok, prompt, seq, false),
        finished: None,
    }
}

/// Commits `seq` one token at a time, taking a delta after each.
fn one_at_a_time<'t>(
    tok: &'t Tokenizer,
    prompt: &[u32],
    seq: &[u32],
    rules: &StopRules,
) -> (Committer<'t>, Vec<String>) {
    let mut c = Committer::new(tok, prompt, rules.clone());
    let mut deltas = vec![c.take_delta()];
    for &t in seq {
        if c.finished().is_some() {
            break;
        }
        c.push(t).unwrap();
        deltas.push(c.take_delta());
    }
    (c, deltas)
}

/// Commits `seq` in random chunks, taking a delta after each.
fn chunked<'t>(
    tok: &'t Tokenizer,
    prompt: &[u32],
    seq: &[u32],
    rules: &StopRules,
    rng: &mut Lcg,
) -> (Committer<'t>, Vec<String>, usize) {
    let mut c = Committer::new(tok, prompt, rules.clone());
    let mut deltas = vec![c.take_delta()];
    let mut i = 0;
    let mut taken_total = 0;
    while i < seq.len() {
        let n = (1 + rng.below(9)).min(seq.len() - i);
        let before = c.tokens().len();
        let taken = c.commit(&seq[i..i + n]).unwrap();
        assert!(taken <= n);
        assert_eq!(
            c.tokens().len(),
            before + taken,
            "commit reports how many tokens it took"
        );
        if c.finished().is_none() {
            assert_eq!(taken, n, "an unfinished commit takes every token");
        }
        taken_total += taken;
        deltas.push(c.take_delta());
        i += n;
    }
    (c, deltas, taken_total)
}

fn check_commit_case(
    tok: &Tokenizer,
    case: u64,
    prompt: &[u32],
    seq: &[u32],
    rules: &StopRules,
    clean: bool,
    rng: &mut Lcg,
) {
    let what = format!("case {case}: prompt {prompt:?} seq {seq:?} rules {rules:?}");
    let (single, single_deltas) = one_at_a_time(tok, prompt, seq, rules);
    let (mut multi, multi_deltas, taken) = chunked(tok, prompt, seq, rules, rng);

    assert_eq!(multi.tokens(), single.tokens(), "{what}: tokens");
    assert_eq!(multi.text(), single.text(), "{what}: text");
    assert_eq!(multi.finished(), single.finished(), "{what}: finished");
    assert_eq!(taken, multi.tokens().len(), "{what}: taken");
    assert_eq!(
        multi_deltas.concat(),
        single_deltas.concat(),
        "{what}: streamed text"
    );

    let expected = expected_commit(tok, prompt, seq, rules);
    assert_eq!(single.tokens(), expected.tokens, "{what}: tokens vs reference");
    assert_eq!(
        single.finished(),
        expected.finished,
        "{what}: finish vs reference"
    );
    assert_eq!(single.text(), expected.text, "{what}: text vs reference");

    // Streamed text is always a prefix of the text, never retracted, and complete at the end.
    for deltas in [&single_deltas, &multi_deltas] {
        let mut so_far = String::new();
        for d in deltas.iter() {
            so_far.push_str(d);
            assert!(
                multi.text().starts_with(&so_far),
                "{what}: streamed {so_far:?} is not a prefix of {:?}",
                multi.text()
            );
        }
        if multi.finished().is_some() {
            assert_eq!(so_far, multi.text(), "{what}: streamed text at the end");
        }
    }
    if clean {
        // Only whole characters were committed: no replacement character ever streams, except
        // where max_tokens or EOS cut a character in half at the very end.
        let streamed = single_deltas.concat();
        assert!(
            !streamed.trim_end_matches('\u{FFFD}').contains('\u{FFFD}'),
            "{what}: U+FFFD in {streamed:?}"
        );
        if multi.finished().is_none() {
            assert!(!streamed.contains('\u{FFFD}'), "{what}: U+FFFD in {streamed:?}");
        }
    }
    // Finishing an unfinished sequence flushes the rest; the stream then equals the text.
    if multi.finished().is_none() {
        let mut streamed = multi_deltas.concat();
        multi.finish(FinishReason::Length).unwrap();
        streamed.push_str(&multi.take_delta());
        assert!(multi.finished().is_some());
        assert_eq!(streamed, multi.text(), "{what}: after finish");
        let full = shown_text(tok, prompt, multi.tokens(), true);
        match cut_at_earliest(&full, &rules.stop) {
            Some(at) => {
                assert_eq!(multi.text(), &full[..at], "{what}");
                assert_eq!(multi.finished(), Some(FinishReason::Stop), "{what}");
            }
            None => {
                assert_eq!(multi.text(), full, "{what}");
                assert_eq!(multi.finished(), Some(FinishReason::Length), "{what}");
            }
        }
        // Nothing more is taken once finished.
        let n = multi.tokens().len();
        assert_eq!(multi.commit(&[403, 407]).unwrap(), 0);
        multi.push(403).unwrap();
        assert_eq!(multi.tokens().len(), n);
        assert_eq!(multi.take_delta(), "");
    }
}

#[test]
fn multi_token_commit_equals_one_at_a_time() {
    let tok = engine().tokenizer();
    let g = &stories().ids;
    let mut cases = 0;
    for case in 0..600u64 {
        let mut rng = Lcg(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF);
        let clean = case % 2 == 0;
        let seq = random_tokens(&mut rng, clean);
        let prompt: Vec<u32> = match rng.below(3) {
            0 => vec![1],
            1 => {
                let n = 1 + rng.below(12);
                std::iter::once(1).chain(g.iter().copied().take(n)).collect()
            }
            _ => std::iter::once(1).chain(g.iter().copied().take(40)).collect(),
        };
        let full_text = shown_text(tok, &prompt, &seq, true);
        let stop = random_stops(&mut rng, &full_text);
        let rules = StopRules {
            eos: if rng.chance(80) { vec![EOS] } else { vec![EOS, 407] },
            ignore_eos: rng.chance(30),
            stop,
            max_tokens: match rng.below(4) {
                0 => usize::MAX,
                1 => rng.below(seq.len() + 3),
                _ => seq.len() + rng.below(3),
            },
        };
        check_commit_case(tok, case, &prompt, &seq, &rules, clean, &mut rng);
        cases += 1;
    }
    assert_eq!(cases, 600);
}

#[test]
fn multibyte_character_is_held_until_complete() {
    let tok = engine().tokenizer();
    let rules = StopRules {
        eos: vec![EOS],
        ignore_eos: false,
        stop: vec![],
        max_tokens: 100,
    };
    let mut c = Committer::new(tok, &[1], rules);
    let mut deltas = Vec::new();
    for id in byte_ids("☕") {
        c.push(id).unwrap();
        deltas.push(c.take_delta());
    }
    assert_eq!(deltas, ["", "", "☕"]);
    c.commit(&byte_ids("é☕")).unwrap();
    assert_eq!(c.take_delta(), "é☕");
    assert_eq!(c.text(), "☕é☕");
    // Cut in the middle by EOS: the half character is flushed as U+FFFD at the end.
    c.commit(&[3 + 0xE2, 3 + 0x98, EOS]).unwrap();
    assert_eq!(c.finished(), Some(FinishReason::Stop));
    assert_eq!(c.tokens().last(), Some(&EOS));
    assert_eq!(c.take_delta(), "\u{FFFD}");
}

#[test]
fn stop_string_made_of_byte_tokens() {
    let tok = engine().tokenizer();
    let rules = StopRules {
        eos: vec![EOS],
        ignore_eos: false,
        stop: vec!["☕!".into()],
        max_tokens: 100,
    };
    let mut seq = stories().ids[..10].to_vec();
    seq.extend(byte_ids("a☕!b"));
    let (single, deltas) = one_at_a_time(tok, &[1], &seq, &rules);
    assert_eq!(single.finished(), Some(FinishReason::Stop));
    assert_eq!(single.tokens().len(), 10 + 1 + 3 + 1, "ends at the '!' byte");
    let expected = format!("{}a", text_after_bos(tok, &stories().ids[..10]));
    assert_eq!(single.text(), expected);
    assert_eq!(deltas.concat(), expected);
    for chunk in 1..=seq.len() {
        let mut c = Committer::new(tok, &[1], rules.clone());
        let mut streamed = c.take_delta();
        for part in seq.chunks(chunk) {
            c.commit(part).unwrap();
            streamed.push_str(&c.take_delta());
        }
        assert_eq!(c.tokens(), single.tokens(), "chunk {chunk}");
        assert_eq!(c.text(), expected, "chunk {chunk}");
        assert_eq!(streamed, expected, "chunk {chunk}");
    }
}
