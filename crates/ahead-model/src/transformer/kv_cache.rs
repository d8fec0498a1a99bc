//! The per-sequence key/value cache: preallocated, with O(1) `truncate` and an exact `compact`.
//!
//! Slot s of every layer holds the key and value of the s-th token fed to the model (in feed
//! order, not position order: tree nodes are fed flattened). `positions[s]` remembers its RoPE
//! position for sliding-window masks. Both length operations refuse impossible requests with
//! an error instead of silently keeping rejected tokens.
//!
//! Values are stored a row per slot (`[slot][kv_dim]`). Keys are stored in blocks of
//! `KEY_BLOCK` slots, each component's `KEY_BLOCK` values side by side
//! (`[slot / KEY_BLOCK][kv_dim][slot % KEY_BLOCK]`), so attention scores `KEY_BLOCK` slots per
//! vector operation whatever the head size (see `attention`).

use crate::error::{ModelError, Result};

/// Slots per key block: the lanes of one f32 vector in `attention`.
pub(crate) const KEY_BLOCK: usize = 8;

/// Where component `c` of slot `slot`'s key lives in a layer's key buffer.
#[inline(always)]
pub(crate) fn key_index(kv_dim: usize, slot: usize, c: usize) -> usize {
    ((slot / KEY_BLOCK) * kv_dim + c) * KEY_BLOCK + slot % KEY_BLOCK
}

/// Keys and values of one sequence, for every layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer, in key blocks (see the module notes).
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    positions: Vec<usize>,
    kv_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// A cache for `n_layers` layers of width `kv_dim`, room for `capacity` tokens, allocated now.
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize) -> Result<Self> {
        let overflow = || ModelError::Cache(format!("capacity {capacity} x width {kv_dim} overflows"));
        let per_layer = kv_dim.checked_mul(capacity).ok_or_else(overflow)?;
        // Keys fill whole blocks; the padding slots are never read as keys.
        let key_len = kv_dim
            .checked_mul(capacity.div_ceil(KEY_BLOCK) * KEY_BLOCK)
            .ok_or_else(overflow)?;
        Ok(Self {
            keys: (0..n_layers).map(|_| vec![0.0; key_len]).collect(),
            values: (0..n_layers).map(|_| vec![0.0; per_layer]).collect(),
            positions: vec![0; capacity],
            kv_dim,
            capacity,
            len: 0,
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Free slots.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Keeps the first `len` tokens. O(1). Errors if `len` is longer than what is held.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(ModelError::Cache(format!(
                "cannot truncate {} tokens to {len}",
                self.len
            )));
        }
        self.len = len;
        Ok(())
    }

    /// Keeps the first `base` tokens, then the tokens at `base + rows[i]` moved to `base + i`
    /// (the accepted path of a verified tree). `rows` must be strictly increasing and inside the
    /// cache. Worked example: base 10, a tree fed as slots 10..15, accepted nodes [0, 2, 3] ->
    /// slots 10, 12, 13 become 10, 11, 12 and the length is 13.
    pub fn compact(&mut self, base: usize, rows: &[usize]) -> Result<()> {
        if base > self.len {
            return Err(ModelError::Cache(format!(
                "compact base {base} beyond length {}",
                self.len
            )));
        }
        let fed = self.len - base;
        let mut prev: Option<usize> = None;
        for &r in rows {
            if r >= fed || prev.is_some_and(|p| r <= p) {
                return Err(ModelError::Cache(format!(
                    "compact rows {rows:?} must be strictly increasing and below {fed}"
                )));
            }
            prev = Some(r);
        }
        let d = self.kv_dim;
        for (i, &r) in rows.iter().enumerate() {
            let (dst, src) = (base + i, base + r);
            if dst == src {
                continue;
            }
            for layer in &mut self.values {
                layer.copy_within(src * d..(src + 1) * d, dst * d);
            }
            for layer in &mut self.keys {
                for c in 0..d {
                    layer[key_index(d, dst, c)] = layer[key_index(d, src, c)];
                }
            }
            self.positions[dst] = self.positions[src];
        }
        self.len = base + rows.len();
        Ok(())
    }

    /// A copy of the first `len` tokens, with room for exactly those: what a prefix cache keeps.
    pub fn prefix(&self, len: usize) -> Result<KvCache> {
        if len > self.len {
            return Err(ModelError::Cache(format!(
                "a prefix of {len} tokens from a cache holding {}",
                self.len
            )));
        }
        let mut out = KvCache::new(self.n_layers(), self.kv_dim, len)?;
        out.copy_prefix(self, len)?;
        Ok(out)
    }

    /// Fills this empty cache with the first `len` tokens of `src` (same layers and width):
    /// their keys, values and positions, as if they had been fed here.
    pub fn copy_prefix(&mut self, src: &KvCache, len: usize) -> Result<()> {
        if self.len != 0 || len > src.len || len > self.capacity {
            return Err(ModelError::Cache(format!(
                "cannot copy {len} of {} tokens into a cache holding {} of {}",
                src.len, self.len, self.capacity
            )));
        }
        if src.n_layers() != self.n_layers() || src.kv_dim != self.kv_dim {
            return Err(ModelError::Cache(format!(
                "a cache of {} layers x {} copied into one of {} x {}",
                src.n_layers(),
                src.kv_dim,
                self.n_layers(),
                self.kv_dim
            )));
        }
        let d = self.kv_dim;
        // Whole key blocks: the slots past `len` in the last one are never read as keys.
        let key_len = (len.div_ceil(KEY_BLOCK) * KEY_BLOCK * d).min(self.keys.first().map_or(0, Vec::len));
        for (dst, from) in self.keys.iter_mut().zip(&src.keys) {
            dst[..key_len].copy_from_slice(&from[..key_len]);
        }
        for (dst, from) in self.values.iter_mut().zip(&src.values) {
            dst[..len * d].copy_from_slice(&from[..len * d]);
        }
        self.positions[..len].copy_from_slice(&src.positions[..len]);
        self.len = len;
        Ok(())
    }

    /// Reserves `n` slots at the end and returns the first. Errors when they do not fit.
    pub(crate) fn grow(&mut self, n: usize) -> Result<usize> {
        if n > self.remaining() {
            return Err(ModelError::Cache(format!(
                "{n} new tokens do not fit: {} of {} slots used",
                self.len, self.capacity
            )));
        }
        let start = self.len;
        self.len += n;
        Ok(start)
    }

    /// Writes one token's key and value for `layer` at `slot`.
    pub(crate) fn write(&mut self, layer: usize, slot: usize, key: &[f32], value: &[f32]) {
        let d = self.kv_dim;
        let keys = &mut self.keys[layer];
        for (c, &k) in key.iter().enumerate() {
            keys[key_index(d, slot, c)] = k;
        }
        self.values[layer][slot * d..(slot + 1) * d].copy_from_slice(value);
    }

    pub(crate) fn set_position(&mut self, slot: usize, pos: usize) {
        self.positions[slot] = pos;
    }

    /// One layer's keys (in key blocks) and values (`[slot][kv_dim]`).
    pub(crate) fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Keys and values of `layer` for the filled slots, `[len][kv_dim]` each (for checks that a
    /// cache equals a fresh prefill).
    pub fn filled(&self, layer: usize) -> Option<(Vec<f32>, &[f32])> {
        let (d, n) = (self.kv_dim, self.len);
        let keys = self.keys.get(layer)?;
        let rows = (0..n)
            .flat_map(|s| (0..d).map(move |c| keys[key_index(d, s, c)]))
            .collect();
        Some((rows, self.values.get(layer)?.get(..n * d)?))
    }

    pub(crate) fn positions(&self) -> &[usize] {
        &self.positions[..self.len]
    }

    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    pub(crate) fn n_layers(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_and_compact_refuse_impossible_requests() {
        let mut c = KvCache::new(1, 2, 8).unwrap();
        assert!(c.truncate(1).is_err());
        c.grow(5).unwrap();
        assert!(c.grow(4).is_err());
        assert!(c.compact(6, &[]).is_err());
        assert!(c.compact(2, &[1, 1]).is_err());
        assert!(c.compact(2, &[3]).is_err());
        assert_eq!(c.len(), 5, "failed operations change nothing");
    }

    #[test]
    fn keys_written_in_blocks_read_back_as_rows() {
        let (d, n) = (3, 2 * KEY_BLOCK + 3);
        let mut c = KvCache::new(1, d, n).unwrap();
        c.grow(n).unwrap();
        let key = |s: usize| -> Vec<f32> { (0..d).map(|j| (s * 10 + j) as f32).collect() };
        for s in 0..n {
            c.write(0, s, &key(s), &key(s + 100));
        }
        let (keys, values) = c.filled(0).unwrap();
        assert_eq!(keys, (0..n).flat_map(key).collect::<Vec<_>>());
        assert_eq!(values, (100..100 + n).flat_map(key).collect::<Vec<_>>());
        c.compact(KEY_BLOCK - 1, &[2, 4]).unwrap();
        let keys = c.filled(0).unwrap().0;
        assert_eq!(
            &keys[(KEY_BLOCK - 1) * d..],
            [key(KEY_BLOCK + 1), key(KEY_BLOCK + 3)].concat()
        );
    }

    #[test]
    fn a_prefix_copy_holds_the_same_rows_and_refuses_what_does_not_fit() {
        let (d, n) = (3, KEY_BLOCK + 5);
        let mut c = KvCache::new(2, d, n + 4).unwrap();
        c.grow(n).unwrap();
        for s in 0..n {
            for l in 0..2 {
                c.write(l, s, &[s as f32, l as f32, 1.0], &[-(s as f32), 0.5, l as f32]);
            }
            c.set_position(s, 7 * s);
        }
        let p = c.prefix(KEY_BLOCK + 2).unwrap();
        assert_eq!((p.len(), p.capacity()), (KEY_BLOCK + 2, KEY_BLOCK + 2));
        for l in 0..2 {
            let (pk, pv) = p.filled(l).unwrap();
            let (ck, cv) = c.filled(l).unwrap();
            assert_eq!(pk, ck[..(KEY_BLOCK + 2) * d]);
            assert_eq!(pv, &cv[..(KEY_BLOCK + 2) * d]);
        }
        assert_eq!(p.positions(), &c.positions()[..KEY_BLOCK + 2]);
        assert!(c.prefix(n + 1).is_err());
        let mut other = KvCache::new(2, d, 4).unwrap();
        assert!(other.copy_prefix(&c, 5).is_err(), "no room");
        let mut wide = KvCache::new(2, d + 1, n).unwrap();
        assert!(wide.copy_prefix(&c, 2).is_err(), "another width");
    }

    #[test]
    fn compact_moves_the_accepted_rows() {
        let mut c = KvCache::new(2, 1, 8).unwrap();
        c.grow(6).unwrap();
        for s in 0..6 {
            c.write(0, s, &[s as f32], &[10.0 + s as f32]);
            c.write(1, s, &[20.0 + s as f32], &[30.0 + s as f32]);
            c.set_position(s, 100 + s);
        }
        c.compact(2, &[1, 3]).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.filled(0).unwrap().0, [0.0, 1.0, 3.0, 5.0]);
        assert_eq!(c.filled(1).unwrap().1, [30.0, 31.0, 33.0, 35.0]);
        assert_eq!(c.positions(), &[100, 101, 103, 105]);
    }
}
