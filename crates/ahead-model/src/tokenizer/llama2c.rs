//! llama2.c `tokenizer.bin`: `i32 max_token_length`, then `vocab_size` records of
//! `(f32 score, i32 len, len bytes)`, all little-endian. Every length is checked against the
//! bytes that remain.

use super::spm::{parse_byte_piece, PieceKind, SpmFlavor, SpmParts, SpmVocab};
use crate::error::{ModelError, Result};

/// llama2.c's fixed special ids.
pub(crate) const BOS: u32 = 1;
pub(crate) const EOS: u32 = 2;
const UNK: u32 = 0;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    label: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                ModelError::format(
                    self.label,
                    field,
                    format!(
                        "needs {n} bytes at offset {} but the file has {}",
                        self.pos,
                        self.bytes.len()
                    ),
                )
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn four(&mut self, field: &str) -> Result<[u8; 4]> {
        let s = self.take(4, field)?;
        Ok([s[0], s[1], s[2], s[3]])
    }
}

/// Parses a llama2.c tokenizer file into a piece vocabulary.
pub(crate) fn parse(bytes: &[u8], vocab_size: usize, label: &str) -> Result<SpmVocab> {
    if vocab_size == 0 {
        return Err(ModelError::format(label, "vocab_size", "must be positive"));
    }
    if vocab_size <= EOS as usize {
        return Err(ModelError::format(
            label,
            "vocab_size",
            format!("{vocab_size} leaves no room for BOS (1) and EOS (2)"),
        ));
    }
    // Each record needs at least 8 bytes: reject absurd sizes before allocating.
    if vocab_size > bytes.len() / 8 {
        return Err(ModelError::format(
            label,
            "vocab_size",
            format!("{vocab_size} records cannot fit in {} bytes", bytes.len()),
        ));
    }
    let mut r = Reader { bytes, pos: 0, label };
    let max_len = i32::from_le_bytes(r.four("max_token_length")?);
    if max_len < 0 {
        return Err(ModelError::format(
            label,
            "max_token_length",
            format!("negative ({max_len})"),
        ));
    }
    let mut pieces = Vec::with_capacity(vocab_size);
    let mut scores = Vec::with_capacity(vocab_size);
    let mut kinds = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        let score = f32::from_le_bytes(r.four(&format!("token {i} score"))?);
        let len = i32::from_le_bytes(r.four(&format!("token {i} length"))?);
        let len = usize::try_from(len).map_err(|_| {
            ModelError::format(label, format!("token {i} length"), format!("negative ({len})"))
        })?;
        let piece = r.take(len, &format!("token {i} bytes"))?.to_vec();
        let kind = if i as u32 == BOS || i as u32 == EOS {
            PieceKind::Skip
        } else if let Some(b) = parse_byte_piece(&piece) {
            PieceKind::Byte(b)
        } else {
            PieceKind::Normal
        };
        pieces.push(piece);
        scores.push(score);
        kinds.push(kind);
    }
    SpmVocab::new(SpmParts {
        pieces,
        scores,
        kinds,
        unk: Some(UNK),
        bos: Some(BOS),
        add_space_prefix: true,
        flavor: SpmFlavor::Llama2c,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record(score: f32, piece: &[u8]) -> Vec<u8> {
        let mut v = score.to_le_bytes().to_vec();
        v.extend_from_slice(&(piece.len() as i32).to_le_bytes());
        v.extend_from_slice(piece);
        v
    }

    fn tiny() -> Vec<u8> {
        let mut b = 4i32.to_le_bytes().to_vec();
        for p in [&b"<unk>"[..], b"\n<s>\n", b"\n</s>\n", b" ", b"a", b" a"] {
            b.extend(record(0.0, p));
        }
        b
    }

    #[test]
    fn parses_and_encodes_tiny_vocab() {
        let v = parse(&tiny(), 6, "tiny").unwrap();
        assert_eq!(v.encode("a a").unwrap(), vec![5, 5]);
    }

    #[test]
    fn rejects_truncated_and_bad_lengths() {
        let full = tiny();
        for cut in [0, 3, 4, 9, 12, full.len() - 1] {
            assert!(parse(&full[..cut], 6, "cut").is_err(), "cut at {cut}");
        }
        // More records than present.
        assert!(parse(&full, 7, "more").is_err());
        // A negative length.
        let mut bad = full.clone();
        bad[8..12].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(parse(&bad, 6, "neg").is_err());
        // A huge length.
        let mut huge = full;
        huge[8..12].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(parse(&huge, 6, "huge").is_err());
        assert!(parse(&tiny(), usize::MAX, "max").is_err());
        assert!(parse(&tiny(), 0, "zero").is_err());
    }
}
