//! The sentencepiece-style "BPE by piece score" algorithm shared by the llama2.c `tokenizer.bin`
//! backend and the GGUF `llama` tokenizer.
//!
//! Encoding follows llama2.c `run.c` (and llama.cpp's SPM tokenizer, which is equivalent on
//! real vocabularies): the text, with a dummy-prefix space, is split into UTF-8 characters; then
//! the adjacent pair whose concatenation is a vocabulary piece with the highest score is merged,
//! leftmost first on ties, until no pair merges. Characters that never became a piece are
//! emitted as byte-fallback tokens (`<0xNN>`), or `<unk>` when the vocabulary has none.
//!
//! `run.c` rescans all pairs after every merge (O(n²)); here a binary heap with lazy
//! invalidation gives the same merge order in O(n log n), so prompts of megabytes are fine.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{ModelError, Result};

/// The sentencepiece space marker `▁` (U+2581).
pub(crate) const SPM_SPACE: &str = "\u{2581}";

/// Which decoding conventions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpmFlavor {
    /// llama2.c: pieces store spaces as `' '`; decode strips the leading space of the piece
    /// right after BOS only (exactly `run.c`'s `decode`).
    Llama2c,
    /// GGUF `llama`: pieces use `▁`; decode strips the leading space of the whole text when
    /// decoding from the start of a sequence (sentencepiece / Hugging Face convention).
    Gguf,
}

/// How a token decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceKind {
    /// Ordinary piece: its text (with the space marker turned into `' '`).
    Normal,
    /// Byte-fallback token `<0xNN>`: the raw byte.
    Byte(u8),
    /// Text copied verbatim (GGUF user-defined tokens).
    Verbatim,
    /// Produces no text (BOS, EOS, control and unknown tokens where the flavor skips them).
    Skip,
}

/// A piece vocabulary with scores.
#[derive(Debug, Clone)]
pub(crate) struct SpmVocab {
    pub(crate) pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    kinds: Vec<PieceKind>,
    lookup: HashMap<Vec<u8>, u32>,
    byte_ids: Box<[Option<u32>; 256]>,
    unk: Option<u32>,
    bos: Option<u32>,
    max_piece_len: usize,
    /// Pairs score at most this are never merged (`run.c` starts its search at -1e10).
    merge_floor: f32,
    space: &'static [u8],
    add_space_prefix: bool,
    flavor: SpmFlavor,
}

/// Everything [`SpmVocab::new`] needs.
pub(crate) struct SpmParts {
    pub pieces: Vec<Vec<u8>>,
    pub scores: Vec<f32>,
    pub kinds: Vec<PieceKind>,
    pub unk: Option<u32>,
    pub bos: Option<u32>,
    pub add_space_prefix: bool,
    pub flavor: SpmFlavor,
}

/// Parses a byte-fallback piece `<0xNN>` (upper- or lower-case hex, exactly two digits).
pub(crate) fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    if piece.len() != 6 || !piece.starts_with(b"<0x") || piece[5] != b'>' {
        return None;
    }
    let hex = std::str::from_utf8(&piece[3..5]).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

impl SpmVocab {
    pub(crate) fn new(parts: SpmParts) -> Result<Self> {
        let n = parts.pieces.len();
        if parts.scores.len() != n || parts.kinds.len() != n {
            return Err(ModelError::Tokenizer(format!(
                "{} pieces but {} scores and {} token types",
                n,
                parts.scores.len(),
                parts.kinds.len()
            )));
        }
        if u32::try_from(n).is_err() {
            return Err(ModelError::Tokenizer(format!(
                "vocabulary of {n} pieces is too large"
            )));
        }
        for (what, id) in [("unk", parts.unk), ("bos", parts.bos)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(ModelError::Tokenizer(format!("{what} id {id} >= vocab size {n}")));
                }
            }
        }
        let mut lookup = HashMap::with_capacity(n);
        let mut byte_ids = Box::new([None; 256]);
        let mut max_piece_len = 0;
        for (id, piece) in parts.pieces.iter().enumerate() {
            let id = id as u32;
            if let PieceKind::Byte(b) = parts.kinds[id as usize] {
                byte_ids[b as usize].get_or_insert(id);
            }
            // Duplicate pieces: the first id wins for encoding (as run.c's sorted search and
            // llama.cpp's token_to_id map do in practice); every id still decodes.
            lookup.entry(piece.clone()).or_insert(id);
            max_piece_len = max_piece_len.max(piece.len());
        }
        let merge_floor = match parts.flavor {
            SpmFlavor::Llama2c => -1e10,
            SpmFlavor::Gguf => f32::NEG_INFINITY,
        };
        let space: &'static [u8] = match parts.flavor {
            SpmFlavor::Llama2c => b" ",
            SpmFlavor::Gguf => SPM_SPACE.as_bytes(),
        };
        // -0.0 and 0.0 must compare equal, as C's `>` does.
        let scores = parts.scores.iter().map(|s| s + 0.0).collect();
        Ok(Self {
            pieces: parts.pieces,
            scores,
            kinds: parts.kinds,
            lookup,
            byte_ids,
            unk: parts.unk,
            bos: parts.bos,
            max_piece_len,
            merge_floor,
            space,
            add_space_prefix: parts.add_space_prefix,
            flavor: parts.flavor,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }

    pub(crate) fn piece_id(&self, piece: &[u8]) -> Option<u32> {
        self.lookup.get(piece).copied()
    }

    /// The text the merge loop works on: dummy prefix plus text, spaces as the space marker.
    fn normalize(&self, text: &str, space_prefix: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 4);
        if space_prefix && self.add_space_prefix {
            out.extend_from_slice(self.space);
        }
        for &b in text.as_bytes() {
            if b == b' ' {
                out.extend_from_slice(self.space);
            } else {
                out.push(b);
            }
        }
        out
    }

    /// Encodes `text` (no BOS). Empty text gives no tokens (no dummy prefix either, as run.c).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, true)
    }

    /// Encodes `text` with or without the dummy space prefix (without: text that continues a
    /// sequence).
    pub(crate) fn encode_with(&self, text: &str, space_prefix: bool) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let norm = self.normalize(text, space_prefix);
        let syms = self.merge(&norm);
        let mut out = Vec::with_capacity(syms.len());
        for (start, end) in syms {
            let span = &norm[start..end];
            if let Some(id) = self.piece_id(span) {
                out.push(id);
                continue;
            }
            for &b in span {
                match self.byte_ids[b as usize].or(self.unk) {
                    Some(id) => out.push(id),
                    None => {
                        return Err(ModelError::Tokenizer(format!(
                            "byte 0x{b:02X} has no piece, no byte-fallback token and no <unk>"
                        )))
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs the merge loop; returns the final symbols as byte spans of `norm`.
    fn merge(&self, norm: &[u8]) -> Vec<(usize, usize)> {
        let mut syms: Vec<Sym> = Vec::new();
        let mut i = 0;
        while i < norm.len() {
            let len = utf8_len(norm[i]).min(norm.len() - i);
            let idx = syms.len();
            syms.push(Sym {
                start: i,
                end: i + len,
                prev: idx.checked_sub(1),
                next: None,
            });
            if idx > 0 {
                syms[idx - 1].next = Some(idx);
            }
            i += len;
        }
        let mut heap = BinaryHeap::new();
        for left in 0..syms.len().saturating_sub(1) {
            self.push_pair(&syms, norm, left, left + 1, &mut heap);
        }
        while let Some(cand) = heap.pop() {
            let (l, r) = (cand.left, cand.right);
            let (sl, sr) = (syms[l], syms[r]);
            // Stale entry: a side was merged away or changed since it was pushed.
            if sl.end == sl.start || sr.end == sr.start || sl.next != Some(r) || sr.end - sl.start != cand.len
            {
                continue;
            }
            syms[l].end = sr.end;
            syms[l].next = sr.next;
            syms[r].end = syms[r].start; // dead
            if let Some(n) = sr.next {
                syms[n].prev = Some(l);
            }
            if let Some(p) = syms[l].prev {
                self.push_pair(&syms, norm, p, l, &mut heap);
            }
            if let Some(n) = syms[l].next {
                self.push_pair(&syms, norm, l, n, &mut heap);
            }
        }
        let mut out = Vec::new();
        let mut cur = if syms.is_empty() { None } else { Some(0) };
        while let Some(c) = cur {
            out.push((syms[c].start, syms[c].end));
            cur = syms[c].next;
        }
        out
    }

    fn push_pair(&self, syms: &[Sym], norm: &[u8], left: usize, right: usize, heap: &mut BinaryHeap<Cand>) {
        let (start, end) = (syms[left].start, syms[right].end);
        if end - start > self.max_piece_len {
            return;
        }
        if let Some(&id) = self.lookup.get(&norm[start..end]) {
            let score = self.scores[id as usize];
            if score > self.merge_floor {
                heap.push(Cand {
                    score,
                    start,
                    left,
                    right,
                    len: end - start,
                });
            }
        }
    }

    /// Every token's own bytes inside a sequence (`None` for tokens that produce no text:
    /// control, BOS, EOS, unknown).
    pub(crate) fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        (0..self.len() as u32)
            .map(|id| match self.kinds.get(id as usize) {
                Some(PieceKind::Skip) | None => None,
                _ => self.decode_bytes(&[id], false).ok(),
            })
            .collect()
    }

    /// Decodes to raw bytes. `at_start`: these ids begin the sequence (GGUF flavor strips the
    /// leading space then). Errors on ids outside the vocabulary.
    pub(crate) fn decode_bytes(&self, ids: &[u32], at_start: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut prev: Option<u32> = None;
        for &id in ids {
            let idx = id as usize;
            let (Some(piece), Some(kind)) = (self.pieces.get(idx), self.kinds.get(idx)) else {
                return Err(ModelError::Tokenizer(format!(
                    "token id {id} out of range (vocab size {})",
                    self.len()
                )));
            };
            match kind {
                PieceKind::Skip => {}
                PieceKind::Byte(b) => out.push(*b),
                PieceKind::Verbatim => out.extend_from_slice(piece),
                PieceKind::Normal => match self.flavor {
                    SpmFlavor::Llama2c => {
                        let after_bos = prev.is_some() && prev == self.bos;
                        let p = match piece.split_first() {
                            Some((b' ', rest)) if after_bos => rest,
                            _ => piece.as_slice(),
                        };
                        out.extend_from_slice(p);
                    }
                    SpmFlavor::Gguf => replace_marker(piece, &mut out),
                },
            }
            prev = Some(id);
        }
        if self.flavor == SpmFlavor::Gguf && at_start && self.add_space_prefix && out.first() == Some(&b' ') {
            out.remove(0);
        }
        Ok(out)
    }

    pub(crate) fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }
}

/// Appends `piece` with every `▁` turned into `' '`.
fn replace_marker(piece: &[u8], out: &mut Vec<u8>) {
    let marker = SPM_SPACE.as_bytes();
    let mut i = 0;
    while i < piece.len() {
        if piece[i..].starts_with(marker) {
            out.push(b' ');
            i += marker.len();
        } else {
            out.push(piece[i]);
            i += 1;
        }
    }
}

/// Length of the UTF-8 sequence a lead byte announces (1 for invalid lead bytes, as run.c).
fn utf8_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: usize,
    /// `end == start` marks a symbol merged into its left neighbour.
    end: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A merge candidate: highest score first, then leftmost.
struct Cand {
    score: f32,
    start: usize,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.start.cmp(&self.start))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn vocab(pieces: &[(&str, f32)]) -> SpmVocab {
        let mut all: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
        let mut scores = vec![0.0; 3];
        let mut kinds = vec![PieceKind::Skip; 3];
        for b in 0..=255u8 {
            all.push(format!("<0x{b:02X}>").into_bytes());
            scores.push(0.0);
            kinds.push(PieceKind::Byte(b));
        }
        for (p, s) in pieces {
            all.push(p.as_bytes().to_vec());
            scores.push(*s);
            kinds.push(PieceKind::Normal);
        }
        SpmVocab::new(SpmParts {
            pieces: all,
            scores,
            kinds,
            unk: Some(0),
            bos: Some(1),
            add_space_prefix: true,
            flavor: SpmFlavor::Llama2c,
        })
        .unwrap()
    }

    #[test]
    fn merges_highest_score_leftmost_first() {
        // "aaa": pairs (a,a) twice with equal score -> leftmost merges first: [aa, a].
        let v = vocab(&[(" ", -10.0), ("a", -10.0), ("aa", -1.0)]);
        let ids = v.encode("aaa").unwrap();
        let pieces: Vec<_> = ids
            .iter()
            .map(|&i| String::from_utf8_lossy(v.piece(i).unwrap()).into_owned())
            .collect();
        assert_eq!(pieces, [" ", "aa", "a"]);
    }

    #[test]
    fn unknown_chars_fall_back_to_bytes() {
        let v = vocab(&[(" ", -1.0)]);
        assert_eq!(v.encode("é").unwrap(), vec![259, 0xC3 + 3, 0xA9 + 3]);
        assert_eq!(
            v.decode_bytes(&[0xC3 + 3, 0xA9 + 3], true).unwrap(),
            "é".as_bytes()
        );
    }

    #[test]
    fn parse_byte_pieces() {
        assert_eq!(parse_byte_piece(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0xff>"), Some(255));
        assert_eq!(parse_byte_piece(b"<0x0A"), None);
        assert_eq!(parse_byte_piece(b"<0xZZ>"), None);
    }
}
