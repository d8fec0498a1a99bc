//! Turns a text corpus into training windows: paragraphs are tokenized as prompts are (with the
//! tokenizer's BOS rule), concatenated, and cut into fixed-length windows. The held-out split is
//! the corpus's tail, cut at a paragraph boundary, so evaluation text is never trained on.

use ahead_model::Tokenizer;

use crate::error::{Result, TrainError};

/// Training and held-out text.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<'a> {
    pub train: &'a str,
    pub held_out: &'a str,
}

/// Splits `text` so the last `held_out` fraction (at a blank line) is held out.
pub fn split(text: &str, held_out: f64) -> Result<Split<'_>> {
    if !(0.0..1.0).contains(&held_out) {
        return Err(TrainError::Options(format!(
            "held-out fraction {held_out} is not in [0, 1)"
        )));
    }
    let mut cut = ((text.len() as f64) * (1.0 - held_out)) as usize;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    // Move the cut to the next paragraph boundary so no paragraph is split between the two.
    let cut = if held_out == 0.0 {
        text.len()
    } else {
        text[cut..].find("\n\n").map_or(text.len(), |i| cut + i)
    };
    Ok(Split {
        train: &text[..cut],
        held_out: &text[cut..],
    })
}

/// The non-empty paragraphs (separated by blank lines) of `text`.
pub fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
}

/// Tokenizes every paragraph of `text` and cuts the concatenation into windows of `len` tokens
/// (the remainder is dropped).
pub fn windows(tokenizer: &Tokenizer, text: &str, len: usize) -> Result<Vec<Vec<u32>>> {
    if len < 2 {
        return Err(TrainError::Options(
            "the sequence length must be at least 2".into(),
        ));
    }
    let mut stream = Vec::new();
    for p in paragraphs(text) {
        stream.extend(tokenizer.encode(p, tokenizer.add_bos())?);
    }
    Ok(stream.chunks_exact(len).map(<[u32]>::to_vec).collect())
}

/// The first sentence of every paragraph of `text`, tokenized as a prompt.
pub fn prompts(tokenizer: &Tokenizer, text: &str) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    for p in paragraphs(text) {
        let first = p.split(". ").next().unwrap_or(p);
        let ids = tokenizer.encode(first, tokenizer.add_bos())?;
        if !ids.is_empty() {
            out.push(ids);
        }
    }
    Ok(out)
}

/// Up to `max` openings of `text` for self-distillation: text from the start of a line or a
/// sentence to the end of the first line or sentence that reaches `min_chars`, at most
/// `max_chars` long. With more candidates than `max`, evenly spaced ones are taken.
pub fn openings(text: &str, min_chars: usize, max_chars: usize, max: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let is_end = |i: usize| match bytes[i] {
        b'\n' => true,
        b'.' | b'!' | b'?' => bytes.get(i + 1).is_none_or(u8::is_ascii_whitespace),
        _ => false,
    };
    // Starts: the text's, and the first non-blank byte after every line or sentence end.
    let mut starts = vec![0];
    for i in 0..bytes.len() {
        if is_end(i) {
            let next = (i + 1..bytes.len()).find(|&j| !bytes[j].is_ascii_whitespace());
            if let Some(j) = next.filter(|j| starts.last() != Some(j)) {
                starts.push(j);
            }
        }
    }
    let stride = starts.len().div_ceil(max.max(1)).max(1);
    starts
        .into_iter()
        .step_by(stride)
        .take(max)
        .filter_map(|s| {
            let from = (s + min_chars).min(bytes.len());
            let mut end = (from..bytes.len())
                .find(|&i| is_end(i))
                .map_or(bytes.len(), |i| i + 1);
            end = end.min(s + max_chars).min(bytes.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let piece = text[s..end].trim();
            (piece.len() >= 8).then_some(piece)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_start_at_lines_and_sentences() {
        let text = "One day a cat sat. It was happy! Then it ran away.\n\ndef f(x):\n    return x + 1\n";
        let o = openings(text, 10, 300, 100);
        assert_eq!(
            o,
            [
                "One day a cat sat.",
                "It was happy!",
                "Then it ran away.",
                "def f(x):\n    return x + 1",
                "return x + 1"
            ]
        );
        assert!(openings(text, 10, 12, 100).iter().all(|p| p.len() <= 12));
        // Five candidates, two wanted: every third.
        assert_eq!(
            openings(text, 10, 300, 2),
            ["One day a cat sat.", "def f(x):\n    return x + 1"]
        );
        assert!(openings("", 10, 300, 5).is_empty());
    }

    #[test]
    fn the_held_out_tail_starts_at_a_paragraph() {
        let text = "one two.\n\nthree four.\n\nfive six.";
        let s = split(text, 0.4).unwrap();
        assert_eq!(s.train.len() + s.held_out.len(), text.len());
        assert!(s.held_out.starts_with("\n\n"), "{s:?}");
        assert!(split(text, 1.0).is_err());
        assert_eq!(split(text, 0.0).unwrap().held_out, "");
        assert_eq!(paragraphs(text).count(), 3);
    }
}
