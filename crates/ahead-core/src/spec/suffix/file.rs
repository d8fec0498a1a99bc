//! A suffix store's file: the texts it holds, oldest first (the trie is rebuilt on load).
//!
//! Layout, little-endian: `AHEADSFX`, version (u32, 1), vocabulary size (u32), text count
//! (u64), then per text its length (u32) and its tokens (u32 each).

use super::SuffixStore;

const MAGIC: &[u8; 8] = b"AHEADSFX";
const VERSION: u32 = 1;
const HEADER: usize = 24;

/// Why a suffix store file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuffixStoreError {
    #[error("not a suffix store (bad magic bytes)")]
    BadMagic,
    #[error("suffix store version {0} is not supported (this build reads version {VERSION})")]
    Version(u32),
    #[error("suffix store is truncated: {needed} bytes needed, {len} present")]
    Truncated { needed: usize, len: usize },
    #[error("suffix store is malformed: {0}")]
    Malformed(String),
    #[error("suffix store was made for a {found}-token vocabulary; this model has {expected}")]
    Vocabulary { found: usize, expected: usize },
}

impl SuffixStore {
    pub fn to_bytes(&self) -> Vec<u8> {
        let tokens: usize = self.texts.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(HEADER + 4 * (self.texts.len() + tokens));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.vocab_size as u32).to_le_bytes());
        out.extend_from_slice(&(self.texts.len() as u64).to_le_bytes());
        for text in &self.texts {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            for t in text {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        out
    }

    /// A store for a `vocab_size`-token model from `bytes`, within `max_nodes` (older texts
    /// are evicted if the file holds more than that budget).
    pub fn from_bytes(bytes: &[u8], vocab_size: usize, max_nodes: usize) -> Result<Self, SuffixStoreError> {
        let truncated = |needed: usize| SuffixStoreError::Truncated {
            needed,
            len: bytes.len(),
        };
        if bytes.len() < HEADER {
            return Err(truncated(HEADER));
        }
        if &bytes[..8] != MAGIC {
            return Err(SuffixStoreError::BadMagic);
        }
        let u32_at = |i: usize| -> Result<u32, SuffixStoreError> {
            let b = bytes.get(i..i + 4).ok_or_else(|| truncated(i + 4))?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let version = u32_at(8)?;
        if version != VERSION {
            return Err(SuffixStoreError::Version(version));
        }
        let found = u32_at(12)? as usize;
        if found != vocab_size {
            return Err(SuffixStoreError::Vocabulary {
                found,
                expected: vocab_size,
            });
        }
        let count = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
        // Every text takes at least 8 bytes: a count beyond that is a lie, not an allocation.
        if count > (bytes.len() / 8) as u64 {
            return Err(SuffixStoreError::Malformed(format!(
                "{count} texts in {} bytes",
                bytes.len()
            )));
        }
        let mut store = SuffixStore::new(vocab_size, max_nodes);
        let mut at = HEADER;
        for i in 0..count {
            let len = u32_at(at)? as usize;
            at += 4;
            let end = len
                .checked_mul(4)
                .and_then(|b| b.checked_add(at))
                .ok_or_else(|| SuffixStoreError::Malformed(format!("text {i} has {len} tokens")))?;
            let body = bytes.get(at..end).ok_or_else(|| truncated(end))?;
            let text: Vec<u32> = body
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if len == 0 {
                return Err(SuffixStoreError::Malformed(format!("text {i} is empty")));
            }
            if let Some(t) = text.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(SuffixStoreError::Malformed(format!(
                    "text {i} holds token {t}, outside the {vocab_size}-token vocabulary"
                )));
            }
            store.insert(&text);
            at = end;
        }
        if at != bytes.len() {
            return Err(SuffixStoreError::Malformed(format!(
                "{} bytes after the last text",
                bytes.len() - at
            )));
        }
        Ok(store)
    }
}
