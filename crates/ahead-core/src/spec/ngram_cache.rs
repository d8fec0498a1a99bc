//! A static n-gram cache for lookup decoding: for contexts of 1..=`max_n` tokens seen in a
//! corpus (best: the target's own generations), the token that most often came next and how
//! often it did. Drafts from it are verified like any other, so the cache only decides how many
//! tokens a step accepts, never which ones come out; a wrong or colliding entry costs speed,
//! not exactness.
//!
//! Contexts are stored as 64-bit hashes built from the newest token backwards, so one pass over
//! a history's tail gives the keys of every context length. The table keeps a context only if
//! it was seen at least `min_count` times and says something its nearest shorter kept suffix
//! does not (another token, or a confidence that differs by `CONFIDENCE_STEP`): longer contexts
//! that agree with their suffix add size, not information.

use std::collections::HashMap;

/// The file's first bytes.
const MAGIC: &[u8; 8] = b"AHEADNG1";
/// Header: magic, vocabulary size, max_n, entry count.
const HEADER: usize = 8 + 4 + 4 + 8;
/// Longest context a cache may use (a sanity bound on a file's header).
pub const MAX_CONTEXT: usize = 64;
/// Tokens are stored in 24 bits (beside an 8-bit confidence): ids from here on are never
/// predicted (no real vocabulary comes near 16.7 million).
const TOKEN_LIMIT: u32 = 1 << 24;
/// A longer context is kept when its confidence differs from its suffix's by at least this.
const CONFIDENCE_STEP: f32 = 0.15;

/// Errors reading a cache file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NgramCacheError {
    #[error("not an n-gram cache (bad magic bytes)")]
    BadMagic,
    #[error("n-gram cache is truncated: {needed} bytes needed, {len} present")]
    Truncated { needed: usize, len: usize },
    #[error("n-gram cache is malformed: {0}")]
    Malformed(String),
}

/// What the cache predicts after a history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheHit {
    pub token: u32,
    /// How often the token followed this context: count / (total + 1), in [0, 1).
    pub confidence: f32,
    /// Length of the context that matched.
    pub n: usize,
}

/// The table: sorted context keys and, for each, `token << 8 | confidence x 255`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramCache {
    vocab_size: usize,
    max_n: usize,
    keys: Vec<u64>,
    values: Vec<u32>,
    /// `buckets[b]..buckets[b + 1]`: the keys whose top `bucket_bits` bits are b (keys are
    /// uniform hashes, so each bucket holds a few).
    buckets: Vec<u32>,
    bucket_bits: u32,
}

/// Hash state after one more (older) token: contexts that share their newest tokens share the
/// start of the chain, so the keys of all lengths come from one pass.
fn extend(state: u64, token: u32) -> u64 {
    (state ^ u64::from(token))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

/// The key of a context of `n` tokens whose chain state is `state` (splitmix64's finaliser, so
/// keys are uniform whatever the tokens).
fn finish(state: u64, n: usize) -> u64 {
    let mut z = state ^ (n as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chain state before any token.
const SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// Keys of the contexts ending at the end of `history`, for n = 1..=max_n (as far as it goes).
pub(crate) fn context_keys(history: &[u32], max_n: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
    history
        .iter()
        .rev()
        .take(max_n)
        .scan(SEED, |state, &t| {
            *state = extend(*state, t);
            Some(*state)
        })
        .enumerate()
        .map(|(i, state)| (i + 1, finish(state, i + 1)))
}

impl NgramCache {
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Longest context looked up.
    pub fn max_n(&self) -> usize {
        self.max_n
    }

    /// Contexts stored.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The prediction of the longest stored context that ends `history`.
    pub fn lookup(&self, history: &[u32]) -> Option<CacheHit> {
        let mut keys = [0u64; MAX_CONTEXT];
        let mut n = 0;
        for (len, key) in context_keys(history, self.max_n) {
            keys[len - 1] = key;
            n = len;
        }
        (1..=n).rev().find_map(|len| {
            self.find(keys[len - 1]).map(|v| CacheHit {
                token: v >> 8,
                confidence: (v & 0xFF) as f32 / 255.0,
                n: len,
            })
        })
    }

    fn find(&self, key: u64) -> Option<u32> {
        let b = (key >> (64 - self.bucket_bits)) as usize;
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        let i = self.keys[lo..hi].binary_search(&key).ok()?;
        Some(self.values[lo + i])
    }

    fn from_sorted(vocab_size: usize, max_n: usize, keys: Vec<u64>, values: Vec<u32>) -> Self {
        // About four keys per bucket.
        let bucket_bits = (keys.len() / 4).max(1).ilog2().clamp(1, 30);
        let n_buckets = 1usize << bucket_bits;
        let mut buckets = Vec::with_capacity(n_buckets + 1);
        let mut i = 0;
        for b in 0..=n_buckets {
            while i < keys.len() && ((keys[i] >> (64 - bucket_bits)) as usize) < b {
                i += 1;
            }
            buckets.push(i as u32);
        }
        Self {
            vocab_size,
            max_n,
            keys,
            values,
            buckets,
            bucket_bits,
        }
    }

    /// The file's bytes (little-endian; see `from_bytes`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.keys.len() * 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.vocab_size as u32).to_le_bytes());
        out.extend_from_slice(&(self.max_n as u32).to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        self.keys
            .iter()
            .for_each(|k| out.extend_from_slice(&k.to_le_bytes()));
        self.values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out
    }

    /// Reads a cache written by `to_bytes`: magic, vocabulary size (u32), max_n (u32), entry
    /// count (u64), the keys (u64, strictly ascending), the values (u32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NgramCacheError> {
        if bytes.len() < HEADER {
            return Err(NgramCacheError::Truncated {
                needed: HEADER,
                len: bytes.len(),
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(NgramCacheError::BadMagic);
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let vocab_size = u32_at(8) as usize;
        let max_n = u32_at(12) as usize;
        let count = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
        if !(1..=MAX_CONTEXT).contains(&max_n) {
            return Err(NgramCacheError::Malformed(format!(
                "context length {max_n} is not in 1..={MAX_CONTEXT}"
            )));
        }
        let needed = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(12))
            .and_then(|b| b.checked_add(HEADER))
            .filter(|&n| n <= u32::MAX as usize * 12)
            .ok_or_else(|| NgramCacheError::Malformed(format!("{count} entries")))?;
        if bytes.len() < needed {
            return Err(NgramCacheError::Truncated {
                needed,
                len: bytes.len(),
            });
        }
        if bytes.len() > needed {
            return Err(NgramCacheError::Malformed(format!(
                "{} bytes after the last entry",
                bytes.len() - needed
            )));
        }
        let count = count as usize;
        let body = &bytes[HEADER..];
        let keys: Vec<u64> = body[..count * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let values: Vec<u32> = body[count * 8..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if let Some(i) = keys.windows(2).position(|w| w[0] >= w[1]) {
            return Err(NgramCacheError::Malformed(format!(
                "keys are not strictly ascending at entry {}",
                i + 1
            )));
        }
        if let Some(v) = values.iter().find(|&&v| (v >> 8) as usize >= vocab_size) {
            return Err(NgramCacheError::Malformed(format!(
                "token {} is outside the vocabulary of {vocab_size}",
                v >> 8
            )));
        }
        Ok(Self::from_sorted(vocab_size, max_n, keys, values))
    }
}

/// One context's counts while building.
#[derive(Debug, Default)]
struct Counts {
    n: u8,
    /// Key of the same context without its oldest token (0 for n = 1).
    suffix: u64,
    next: Vec<(u32, u32)>,
}

/// Counts what follows each context in token sequences, then prunes into an [`NgramCache`].
#[derive(Debug)]
pub struct NgramCounter {
    vocab_size: usize,
    max_n: usize,
    contexts: HashMap<u64, Counts>,
}

impl NgramCounter {
    /// `max_n` is clamped to 1..=`MAX_CONTEXT`.
    pub fn new(vocab_size: usize, max_n: usize) -> Self {
        Self {
            vocab_size,
            max_n: max_n.clamp(1, MAX_CONTEXT),
            contexts: HashMap::new(),
        }
    }

    /// Counts the tokens of `sequence` from index `from` on (earlier ones, e.g. a prompt, only
    /// serve as context). Tokens outside the vocabulary (or past `TOKEN_LIMIT`) are skipped as
    /// predictions.
    pub fn add(&mut self, sequence: &[u32], from: usize) {
        for j in from.max(1)..sequence.len() {
            let next = sequence[j];
            if next as usize >= self.vocab_size || next >= TOKEN_LIMIT {
                continue;
            }
            let mut suffix = 0;
            for (n, key) in context_keys(&sequence[..j], self.max_n) {
                let c = self.contexts.entry(key).or_insert_with(|| Counts {
                    n: n as u8,
                    suffix,
                    next: Vec::new(),
                });
                match c.next.iter_mut().find(|(t, _)| *t == next) {
                    Some((_, count)) => *count += 1,
                    None => c.next.push((next, 1)),
                }
                suffix = key;
            }
        }
    }

    /// The table: contexts seen at least `min_count` times (every single token is kept) that
    /// predict differently from their nearest kept suffix.
    pub fn build(&self, min_count: u32) -> NgramCache {
        let mut order: Vec<(&u64, &Counts)> = self.contexts.iter().collect();
        order.sort_unstable_by_key(|(k, c)| (c.n, **k));
        let mut kept: HashMap<u64, (u32, f32)> = HashMap::new();
        for (&key, c) in order {
            let total: u32 = c.next.iter().map(|&(_, n)| n).sum();
            if c.n > 1 && total < min_count {
                continue;
            }
            // Most frequent, the smaller id on ties (deterministic).
            let Some(&(token, count)) = c.next.iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))) else {
                continue;
            };
            let confidence = count as f32 / (total + 1) as f32;
            let mut s = c.suffix;
            let parent = loop {
                if let Some(&p) = kept.get(&s) {
                    break Some(p);
                }
                match self.contexts.get(&s) {
                    Some(sc) if sc.n > 1 => s = sc.suffix,
                    _ => break None,
                }
            };
            if c.n > 1
                && parent.is_some_and(|(t, conf)| t == token && (conf - confidence).abs() < CONFIDENCE_STEP)
            {
                continue;
            }
            kept.insert(key, (token, confidence));
        }
        let mut entries: Vec<(u64, u32)> = kept
            .into_iter()
            .map(|(k, (t, conf))| (k, t << 8 | (conf * 255.0).round() as u32))
            .collect();
        entries.sort_unstable_by_key(|e| e.0);
        let (keys, values) = entries.into_iter().unzip();
        NgramCache::from_sorted(self.vocab_size, self.max_n, keys, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(sequences: &[&[u32]], max_n: usize, min_count: u32) -> NgramCache {
        let mut c = NgramCounter::new(16, max_n);
        for s in sequences {
            c.add(s, 0);
        }
        c.build(min_count)
    }

    #[test]
    fn the_longest_matching_context_predicts() {
        // After 3 comes 4, except after "2 3", which is followed by 5.
        let c = cache(&[&[1, 3, 4], &[6, 3, 4], &[2, 3, 5], &[2, 3, 5]], 3, 1);
        let hit = c.lookup(&[9, 3]).unwrap();
        assert_eq!((hit.token, hit.n), (4, 1));
        let hit = c.lookup(&[7, 2, 3]).unwrap();
        assert_eq!((hit.token, hit.n), (5, 2));
        // 2 of 2: confidence 2 / 3.
        assert!((hit.confidence - 2.0 / 3.0).abs() < 1.0 / 255.0, "{hit:?}");
        assert_eq!(c.lookup(&[8]), None, "8 was never seen");
        assert_eq!(c.lookup(&[]), None);
    }

    #[test]
    fn contexts_that_agree_with_their_suffix_or_are_rare_are_pruned() {
        // "1 2 -> 3" four times: the bigram context says what the unigram "2" says.
        let c = cache(&[&[1, 2, 3], &[1, 2, 3], &[1, 2, 3], &[1, 2, 3]], 2, 1);
        assert_eq!(c.len(), 2, "only the unigram contexts 1 and 2");
        assert_eq!(c.lookup(&[1, 2]).map(|h| (h.token, h.n)), Some((3, 1)));
        // A context seen once is dropped when min_count is 2, except single tokens.
        let c = cache(&[&[4, 2, 7], &[1, 2, 3], &[1, 2, 3]], 2, 2);
        assert_eq!(c.lookup(&[4, 2]).map(|h| (h.token, h.n)), Some((3, 1)));
        assert_eq!(c.lookup(&[4]).map(|h| h.token), Some(2));
    }

    #[test]
    fn a_prompt_is_context_but_not_counted() {
        let mut c = NgramCounter::new(16, 2);
        c.add(&[5, 6, 7, 8], 2);
        let c = c.build(1);
        assert_eq!(c.lookup(&[5]), None, "6 after 5 is in the prompt");
        assert_eq!(c.lookup(&[6]).map(|h| h.token), Some(7));
    }

    #[test]
    fn bytes_round_trip_and_bad_files_are_errors() {
        let c = cache(&[&[1, 2, 3, 1, 2, 4, 2, 3, 9, 9, 1]], 4, 1);
        let bytes = c.to_bytes();
        assert_eq!(NgramCache::from_bytes(&bytes).unwrap(), c);
        assert_eq!(
            NgramCache::from_bytes(b"short"),
            Err(NgramCacheError::Truncated {
                needed: HEADER,
                len: 5
            })
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(NgramCache::from_bytes(&bad), Err(NgramCacheError::BadMagic));
        assert!(matches!(
            NgramCache::from_bytes(&bytes[..bytes.len() - 1]),
            Err(NgramCacheError::Truncated { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            NgramCache::from_bytes(&longer),
            Err(NgramCacheError::Malformed(_))
        ));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&3u32.to_le_bytes()); // vocabulary of 3: token 9 is outside
        assert!(matches!(
            NgramCache::from_bytes(&bad),
            Err(NgramCacheError::Malformed(_))
        ));
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            NgramCache::from_bytes(&bad),
            Err(NgramCacheError::Malformed(_))
        ));
        let mut bad = bytes.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            NgramCache::from_bytes(&bad),
            Err(NgramCacheError::Malformed(_))
        ));
        // Two keys swapped: not ascending.
        let mut bad = bytes;
        let (a, b) = (HEADER, HEADER + 8);
        let first: [u8; 8] = bad[a..a + 8].try_into().unwrap();
        bad.copy_within(b..b + 8, a);
        bad[b..b + 8].copy_from_slice(&first);
        assert!(matches!(
            NgramCache::from_bytes(&bad),
            Err(NgramCacheError::Malformed(_))
        ));
    }

    #[test]
    fn lookups_agree_with_a_plain_map_of_the_kept_contexts() {
        // Random sequences over a small alphabet: many contexts, many collisions of suffixes.
        let mut state = 11u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 5) as u32
        };
        let seqs: Vec<Vec<u32>> = (0..40).map(|_| (0..60).map(|_| next()).collect()).collect();
        let mut counter = NgramCounter::new(16, 5);
        seqs.iter().for_each(|s| counter.add(s, 0));
        let c = counter.build(1);
        assert!(c.len() > 100);
        // Every history's hit is the most frequent successor of its longest kept context, and
        // no kept context is longer than the hit.
        for s in &seqs {
            for end in 1..s.len() {
                let h = &s[..end];
                let hit = c.lookup(h).unwrap();
                let key = context_keys(h, 5).nth(hit.n - 1).unwrap().1;
                let counts = &counter.contexts[&key];
                let best = counts.next.iter().map(|&(_, n)| n).max().unwrap();
                assert!(counts.next.contains(&(hit.token, best)), "{h:?}");
                for (n, key) in context_keys(h, 5) {
                    assert!(n <= hit.n || c.find(key).is_none());
                }
            }
        }
    }
}
