//! Streaming detokenization that never emits a broken UTF-8 character.
//!
//! The generic prefix/read-offset scheme of TGI and vLLM, for every backend: the decoder keeps
//! the ids of a small window; on each new id it decodes `ids[prefix..read]` (text already
//! emitted) and `ids[prefix..]`, and emits the difference only when the latter does not end with
//! U+FFFD, i.e. when no character is left incomplete (byte-fallback pieces `<0xE2><0x98>` ...
//! are held back until their character is complete). Decoding a window that starts one chunk
//! back keeps the sentencepiece leading-space rules right: a space is only stripped when the
//! window is the start of the sequence.

use super::Tokenizer;
use crate::error::Result;

/// How many prompt ids are kept as left context by [`IncrementalDecoder::with_prompt`].
const PROMPT_CONTEXT: usize = 6;
/// Drop consumed ids once this many have accumulated before the window.
const COMPACT_AT: usize = 64;

/// Turns a stream of token ids into a stream of text deltas.
///
/// The concatenation of every [`push`](Self::push) delta and the final
/// [`finish`](Self::finish) equals `tokenizer.decode(all ids)`.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    /// The window; `ids[0]` is the sequence's id number `base`.
    ids: Vec<u32>,
    base: usize,
    /// Start of the decode window (in `ids`).
    prefix: usize,
    /// End of the text already emitted (in `ids`).
    read: usize,
}

impl IncrementalDecoder {
    /// A decoder for a sequence that starts with the first pushed id.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for text generated after `prompt_ids` (whose text is not emitted): the last
    /// few prompt ids give the context the leading-space rules need (e.g. BOS, or a word
    /// before the first generated token).
    pub fn with_prompt(prompt_ids: &[u32]) -> Self {
        let keep = prompt_ids.len().min(PROMPT_CONTEXT);
        let base = prompt_ids.len() - keep;
        let ids = prompt_ids[base..].to_vec();
        let read = ids.len();
        Self {
            ids,
            base,
            prefix: 0,
            read,
        }
    }

    fn at_start(&self) -> bool {
        self.base + self.prefix == 0
    }

    /// Adds one id; returns the text it completes (possibly empty). Errors on an id outside
    /// the vocabulary (the id is then not added).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        // Validate first so a bad id leaves the state untouched.
        tok.decode_window(&[id], false)?;
        self.ids.push(id);
        let at_start = self.at_start();
        let old = tok.decode_window(&self.ids[self.prefix..self.read], at_start)?;
        let new = tok.decode_window(&self.ids[self.prefix..], at_start)?;
        if new.len() <= old.len() || new.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let delta = suffix_after(&new, &old);
        self.prefix = self.read;
        self.read = self.ids.len();
        if self.prefix >= COMPACT_AT {
            self.ids.drain(..self.prefix);
            self.base += self.prefix;
            self.read -= self.prefix;
            self.prefix = 0;
        }
        Ok(delta)
    }

    /// Emits whatever is still held back (an incomplete character at the very end becomes
    /// U+FFFD). The decoder can keep going afterwards.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let at_start = self.at_start();
        let old = tok.decode_window(&self.ids[self.prefix..self.read], at_start)?;
        let new = tok.decode_window(&self.ids[self.prefix..], at_start)?;
        if new.len() <= old.len() {
            return Ok(String::new());
        }
        let delta = suffix_after(&new, &old);
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(delta)
    }
}

/// `new` minus its prefix `old`; if `old` is not a prefix (a held character changed the
/// text before it), everything after the longest common prefix.
fn suffix_after(new: &str, old: &str) -> String {
    if let Some(rest) = new.strip_prefix(old) {
        return rest.to_owned();
    }
    let common = new
        .char_indices()
        .zip(old.chars())
        .find(|((_, a), b)| a != b)
        .map_or(old.len().min(new.len()), |((i, _), _)| i);
    new.get(common..).unwrap_or_default().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn suffix_after_handles_changed_tail() {
        assert_eq!(suffix_after("hello world", "hello"), " world");
        assert_eq!(suffix_after("ab☕c", "ab\u{FFFD}"), "☕c");
    }
}
