//! Scaled dot-product attention of one sequence's new rows over its KV cache.
//!
//! Each (row, query head) attends to its *visible list*: the cache slots it may see, ascending,
//! as a contiguous prefix of committed tokens followed by its own tail (tree ancestors and
//! itself). The arithmetic depends only on the keys and values of that list, in order: not on
//! the rows computed beside it, nor on where the list splits into prefix and tail. So a verified
//! row gives the bits of the same token decoded alone, and no greedy choice can differ between
//! them. Per (row, head), with the query scaled by 1/sqrt(head_dim) first:
//! - score i: a chain of fused multiply-adds over the head's components, from zero;
//! - e_i = exp(score_i - max) by `lanes::exp`, one polynomial for every backend, and 0 where
//!   score_i - max < -64 (e_i < 1.7e-28: nothing a sum of at least 1 can hold, and products
//!   with values would otherwise go subnormal, which costs microcode assists on x86);
//! - sum: `LANES` partial sums by list index mod `LANES`, then a fixed pairwise reduction;
//! - out = (a chain of fused multiply-adds over i of e_i x value_i) x (1 / sum).
//!
//! Keys are stored in blocks of `KEY_BLOCK` slots (`kv_cache`), so one vector operation scores
//! `LANES` slots for one component whatever the head size. Rows that share a prefix (a
//! verify's chain or tree) and the query heads of one key/value head share every key and value
//! load: a k-row verify reads the cache once. The AVX2 backend and the portable one give the
//! same bits (tested); on AVX-512 the exponentials (element-wise) go 16 lanes at a time, with
//! the same bits again.

use std::cell::RefCell;
use std::ops::Range;

use super::kv_cache::{key_index, KEY_BLOCK};
use super::lanes::{exp, map_in_place, prefetch, Lanes, Portable, LANES};

const _: () = assert!(LANES == KEY_BLOCK, "a key block is one vector per component");
/// Value rows visited per pass: their values stay in L1 while every query head meets them.
const VALUE_SLOTS: usize = 64;
/// How many slots ahead a value pass asks for the value rows it will read: they are a cache
/// line from each of many rows, which the hardware's own prefetchers fetch too late.
const PREFETCH_SLOTS: usize = 16;
/// Scores this far below a row's maximum get weight 0 (see the module notes).
const EXP_FLOOR: f32 = -64.0;

/// The cache slots one row attends to: `prefix`, then `tail`, all ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visible {
    pub prefix: Range<usize>,
    pub tail: Vec<usize>,
}

impl Visible {
    pub fn len(&self) -> usize {
        self.prefix.len() + self.tail.len()
    }
}

/// One layer's cache as one key/value head's query heads see it.
pub(crate) struct GroupAttention<'a> {
    /// Keys in blocks (see `kv_cache`), values `[slot][kv_dim]`.
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub kv_dim: usize,
    pub head_dim: usize,
    /// Query heads per key/value head (grouped-query attention).
    pub group: usize,
    /// The key/value head: query heads `kv_head * group..` use it.
    pub kv_head: usize,
    pub scale: f32,
}

impl GroupAttention<'_> {
    /// Attention of this key/value head's query heads for every row. `q` holds each row's
    /// queries (`q_dim` apart, all heads), `visible` each row's slots; `fresh` are the slots the
    /// rows themselves were written to (most tail slots: scored together, a block at a time).
    /// `out` is `[row][group][head_dim]`.
    pub fn run(&self, q: &[f32], q_dim: usize, visible: &[Visible], fresh: Range<usize>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if super::lanes::has_avx512f() {
            // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
            unsafe { x86::run_avx512(self, q, q_dim, visible, fresh, out) };
            return;
        }
        if super::lanes::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { x86::run_avx2(self, q, q_dim, visible, fresh, out) };
            return;
        }
        self.run_portable(q, q_dim, visible, fresh, out);
    }

    /// The portable backend (also the reference the SIMD one is tested against).
    pub fn run_portable(
        &self,
        q: &[f32],
        q_dim: usize,
        visible: &[Visible],
        fresh: Range<usize>,
        out: &mut [f32],
    ) {
        run_with::<Portable, Portable>(self, q, q_dim, visible, fresh, out);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::ops::Range;

    use super::super::lanes::{Avx2, Avx512};
    use super::{GroupAttention, Visible};

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2(
        a: &GroupAttention<'_>,
        q: &[f32],
        q_dim: usize,
        visible: &[Visible],
        fresh: Range<usize>,
        out: &mut [f32],
    ) {
        super::run_with::<Avx2, Avx2>(a, q, q_dim, visible, fresh, out);
    }

    /// # Safety
    /// The CPU has AVX-512F, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn run_avx512(
        a: &GroupAttention<'_>,
        q: &[f32],
        q_dim: usize,
        visible: &[Visible],
        fresh: Range<usize>,
        out: &mut [f32],
    ) {
        super::run_with::<Avx2, Avx512>(a, q, q_dim, visible, fresh, out);
    }
}

/// Per-thread buffers, reused so that a forward allocates nothing per head.
#[derive(Default)]
struct Scratch {
    /// Scaled queries, `[pair][head_dim]` (pair = row x group + head).
    q: Vec<f32>,
    /// Scores, then e_i, `[pair][stride]`.
    scores: Vec<f32>,
    /// Scores against the fresh slots' blocks, `[pair][fresh width]`.
    fresh: Vec<f32>,
    inv_sums: Vec<f32>,
    /// Where each row's list sits in its score rows.
    layout: Vec<ScoreRow>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// Where one row's list sits in its score rows: list index i at `offset + i`. The prefix is
/// scored a whole key block at a time, so `offset` aligns its slots to blocks.
struct ScoreRow {
    offset: usize,
    len: usize,
    /// Values written, garbage lanes of the prefix's last block included.
    width: usize,
}

impl ScoreRow {
    fn new(v: &Visible) -> Self {
        let offset = v.prefix.start % KEY_BLOCK;
        let blocks = if v.prefix.is_empty() {
            0
        } else {
            v.prefix.end.next_multiple_of(KEY_BLOCK) - (v.prefix.start - offset)
        };
        Self {
            offset,
            len: v.len(),
            width: blocks.max(offset + v.len()),
        }
    }
}

/// `V` is the backend of `LANES` lanes; `W` the one for element-wise work (the exponentials),
/// perhaps wider.
#[inline(always)]
fn run_with<V: Lanes, W: Lanes>(
    a: &GroupAttention<'_>,
    q: &[f32],
    q_dim: usize,
    visible: &[Visible],
    fresh: Range<usize>,
    out: &mut [f32],
) {
    let (hd, group) = (a.head_dim, a.group);
    let pairs = visible.len() * group;
    assert!(out.len() >= pairs * hd && q.len() >= visible.len() * q_dim);
    SCRATCH.with_borrow_mut(|s| {
        s.q.clear();
        for r in 0..visible.len() {
            let heads = &q[r * q_dim + a.kv_head * group * hd..][..group * hd];
            s.q.extend(heads.iter().map(|x| x * a.scale));
        }
        s.layout.clear();
        s.layout.extend(visible.iter().map(ScoreRow::new));
        let layout = &s.layout;
        let stride = layout.iter().map(|l| l.width).max().unwrap_or(0);
        s.scores.resize(pairs * stride, 0.0);
        for rows in same_prefix_runs(visible) {
            let prefix = visible[rows.start].prefix.clone();
            prefix_scores::<V, W>(
                a,
                &s.q,
                rows.start * group..rows.end * group,
                prefix.clone(),
                |_| prefix.end,
                &mut s.scores,
                stride,
            );
        }
        // Every pair against every fresh slot, then each row's tail picked from them.
        let fresh_stride = ScoreRow::new(&Visible {
            prefix: fresh.clone(),
            tail: Vec::new(),
        })
        .width;
        s.fresh.resize(pairs * fresh_stride, 0.0);
        // A row needs the fresh slots up to its last tail slot among them.
        let needed = |p: usize| {
            let tail = &visible[p / group].tail;
            tail.iter().rev().find(|s| fresh.contains(s)).map_or(0, |s| s + 1)
        };
        prefix_scores::<V, W>(
            a,
            &s.q,
            0..pairs,
            fresh.clone(),
            needed,
            &mut s.fresh,
            fresh_stride,
        );
        let fresh_first = fresh.start - fresh.start % KEY_BLOCK;
        s.inv_sums.clear();
        for (p, qp) in s.q.chunks_exact(hd).enumerate() {
            let (v, l) = (&visible[p / group], &layout[p / group]);
            let row = &mut s.scores[p * stride..][..stride];
            let at = l.offset + v.prefix.len();
            if let Some(run) = fresh_run(&v.tail, &fresh) {
                // A chain's or a prefill's tail: one copy instead of a lookup per slot.
                let from = p * fresh_stride + run.start - fresh_first;
                row[at..][..run.len()].copy_from_slice(&s.fresh[from..][..run.len()]);
            } else {
                for (j, &slot) in v.tail.iter().enumerate() {
                    row[at + j] = if fresh.contains(&slot) {
                        s.fresh[p * fresh_stride + slot - fresh_first]
                    } else {
                        tail_score(a, qp, slot)
                    };
                }
            }
            s.inv_sums
                .push(1.0 / exp_and_sum::<V, W>(&mut row[l.offset..][..l.len]));
        }
        let out = &mut out[..pairs * hd];
        out.fill(0.0);
        for rows in same_prefix_runs(visible) {
            let prefix = visible[rows.start].prefix.clone();
            let offset = layout[rows.start].offset;
            prefix_values::<V>(
                a,
                &s.scores,
                stride,
                offset,
                rows.start * group..rows.end * group,
                prefix,
                out,
            );
        }
        for (p, o) in out.chunks_exact_mut(hd).enumerate() {
            let (v, l) = (&visible[p / group], &layout[p / group]);
            let e = &s.scores[p * stride + l.offset + v.prefix.len()..][..v.tail.len()];
            tail_values::<V>(a, e, &v.tail, o);
            let inv = s.inv_sums[p];
            o.iter_mut().for_each(|x| *x *= inv);
        }
    });
}

/// The slots of `tail` as one range inside `fresh`, when they are consecutive and all fresh.
fn fresh_run(tail: &[usize], fresh: &Range<usize>) -> Option<Range<usize>> {
    let (&first, &last) = (tail.first()?, tail.last()?);
    let run = first..last + 1;
    (run.len() == tail.len() && fresh.start <= first && last < fresh.end).then_some(run)
}

/// Maximal runs of consecutive rows with the same prefix (they share its loads).
fn same_prefix_runs(visible: &[Visible]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= visible.len() {
            return None;
        }
        let p = &visible[start].prefix;
        let end = start + visible[start..].iter().take_while(|v| v.prefix == *p).count();
        let run = start..end;
        start = end;
        Some(run)
    })
}

/// Calls `f(first_pair, n)` over `pairs` in tiles of 8, 4, 2 and 1 pairs.
#[inline(always)]
fn tiles(pairs: Range<usize>, mut f: impl FnMut(usize, usize)) {
    let mut p = pairs.start;
    for n in [8, 4, 2, 1] {
        while p + n <= pairs.end {
            f(p, n);
            p += n;
        }
    }
}

/// Scores of `pairs` over the `prefix` slots, a key block at a time: list index i of pair p at
/// `scores[p * stride + prefix.start % KEY_BLOCK + i]`. Pair p needs the slots below
/// `needed(p)` only (a prefill's row sees no later row); the blocks past a tile's need are left
/// unscored.
#[inline(always)]
fn prefix_scores<V: Lanes, W: Lanes>(
    a: &GroupAttention<'_>,
    q: &[f32],
    pairs: Range<usize>,
    prefix: Range<usize>,
    needed: impl Fn(usize) -> usize,
    scores: &mut [f32],
    stride: usize,
) {
    if prefix.is_empty() {
        return;
    }
    let hd = a.head_dim;
    let first = prefix.start / KEY_BLOCK;
    // Scores pairs p0..p0 + n against blocks from b; returns how many blocks it took. Up to 8
    // accumulators: few pairs take several blocks at once, so that enough independent chains
    // hide the FMA latency (each lane's chain is the same whatever the tile).
    let tile = |b: usize, end: usize, p0: usize, n: usize, scores: &mut [f32]| {
        let at = (b - first) * KEY_BLOCK;
        let key = key_index(a.kv_dim, b * KEY_BLOCK, a.kv_head * hd);
        let args = (&a.keys[key..], a.kv_dim * KEY_BLOCK, q, hd, p0, stride, at);
        // A wide backend takes two blocks per vector where two are left.
        if W::N == 2 * KEY_BLOCK && end - b >= 2 {
            return match (n, end - b) {
                (8, _) => score_tile_wide::<W, 8, 1>(args, scores),
                (4, 4..) => score_tile_wide::<W, 4, 2>(args, scores),
                (4, _) => score_tile_wide::<W, 4, 1>(args, scores),
                (2, 8..) => score_tile_wide::<W, 2, 4>(args, scores),
                (2, _) => score_tile_wide::<W, 2, 1>(args, scores),
                (_, 16..) => score_tile_wide::<W, 1, 8>(args, scores),
                _ => score_tile_wide::<W, 1, 1>(args, scores),
            };
        }
        match (n, end - b) {
            (8, _) => score_tile::<V, 8, 1>(args, scores),
            (4, 2..) => score_tile::<V, 4, 2>(args, scores),
            (4, _) => score_tile::<V, 4, 1>(args, scores),
            (2, 4..) => score_tile::<V, 2, 4>(args, scores),
            (2, _) => score_tile::<V, 2, 1>(args, scores),
            (_, 8..) => score_tile::<V, 1, 8>(args, scores),
            _ => score_tile::<V, 1, 1>(args, scores),
        }
    };
    tiles(pairs, |p0, n| {
        let need = (p0..p0 + n).map(&needed).max().unwrap_or(0);
        let end = need.min(prefix.end).div_ceil(KEY_BLOCK);
        let mut b = first;
        while b < end {
            b += tile(b, end, p0, n, scores);
        }
    });
}

/// Scores of pairs p0..p0+T against key blocks b..b+B (`step` floats apart from `keys`), the
/// T x B accumulators in registers.
#[inline(always)]
fn score_tile<V: Lanes, const T: usize, const B: usize>(
    (keys, step, q, hd, p0, stride, at): (&[f32], usize, &[f32], usize, usize, usize, usize),
    scores: &mut [f32],
) -> usize {
    let q = &q[p0 * hd..][..T * hd];
    let mut acc = [[V::zero(); B]; T];
    for d in 0..hd {
        let k: [V; B] = std::array::from_fn(|j| V::load(&keys[j * step + d * LANES..]));
        for (t, acc) in acc.iter_mut().enumerate() {
            let qd = V::splat(q[t * hd + d]);
            for (acc, k) in acc.iter_mut().zip(&k) {
                *acc = qd.fma(*k, *acc);
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        for (j, acc) in acc.iter().enumerate() {
            acc.store(&mut scores[(p0 + t) * stride + at + j * KEY_BLOCK..]);
        }
    }
    B
}

/// `score_tile` for a backend of two key blocks per vector: pairs p0..p0+T against key blocks
/// b..b+2B, the T x B accumulators in registers. Each lane is the same chain as in `score_tile`.
#[inline(always)]
fn score_tile_wide<W: Lanes, const T: usize, const B: usize>(
    (keys, step, q, hd, p0, stride, at): (&[f32], usize, &[f32], usize, usize, usize, usize),
    scores: &mut [f32],
) -> usize {
    let q = &q[p0 * hd..][..T * hd];
    let mut acc = [[W::zero(); B]; T];
    for d in 0..hd {
        let k: [W; B] = std::array::from_fn(|j| {
            W::load_halves(
                &keys[2 * j * step + d * LANES..],
                &keys[(2 * j + 1) * step + d * LANES..],
            )
        });
        for (t, acc) in acc.iter_mut().enumerate() {
            let qd = W::splat(q[t * hd + d]);
            for (acc, k) in acc.iter_mut().zip(&k) {
                *acc = qd.fma(*k, *acc);
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        for (j, acc) in acc.iter().enumerate() {
            acc.store(&mut scores[(p0 + t) * stride + at + 2 * j * KEY_BLOCK..]);
        }
    }
    2 * B
}

/// One pair's score for a slot outside the blocks: the same fused chain as a block lane.
fn tail_score(a: &GroupAttention<'_>, q: &[f32], slot: usize) -> f32 {
    let c0 = a.kv_head * a.head_dim;
    q.iter().enumerate().fold(0.0, |acc, (d, &x)| {
        x.mul_add(a.keys[key_index(a.kv_dim, slot, c0 + d)], acc)
    })
}

/// Replaces scores with e_i = exp(score_i - max) (0 below `EXP_FLOOR`) and returns their sum
/// (see the module notes). The exponentials are element-wise, so `W` may be any width; the sum
/// goes `LANES` at a time in list order.
#[inline(always)]
fn exp_and_sum<V: Lanes, W: Lanes>(e: &mut [f32]) -> f32 {
    let mut chunks = e.chunks_exact(LANES);
    let m = chunks
        .by_ref()
        .fold(V::splat(f32::NEG_INFINITY), |m, c| V::load(c).max(m));
    let mut lanes = [0f32; LANES];
    m.store(&mut lanes);
    let max = lanes
        .iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let (m, floor) = (W::splat(max), W::splat(EXP_FLOOR));
    map_in_place::<W>(e, |x| {
        let d = x.sub(m);
        exp(d).zero_below(d, floor)
    });
    let mut chunks = e.chunks_exact(LANES);
    let mut sum = chunks.by_ref().fold(V::zero(), |s, c| s.add(V::load(c)));
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0f32; LANES];
        buf[..rest.len()].copy_from_slice(rest);
        sum = sum.add(V::load(&buf));
    }
    sum.store(&mut lanes);
    let l = lanes;
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// `out[p] += sum over the prefix of e_i x value_i` for `pairs`, `VALUE_SLOTS` slots at a time
/// (each lane's chain still runs in list order).
#[inline(always)]
fn prefix_values<V: Lanes>(
    a: &GroupAttention<'_>,
    scores: &[f32],
    stride: usize,
    offset: usize,
    pairs: Range<usize>,
    prefix: Range<usize>,
    out: &mut [f32],
) {
    let hd = a.head_dim;
    let c0 = a.kv_head * hd;
    let whole = hd / LANES * LANES;
    let mut s0 = prefix.start;
    while s0 < prefix.end {
        let slots = s0..(s0 + VALUE_SLOTS).min(prefix.end);
        let i0 = s0 - prefix.start;
        tiles(pairs.clone(), |p0, n| {
            let mut d = 0;
            while d < whole {
                let args = (a, scores, stride, offset + i0, slots.clone(), c0 + d);
                let out = &mut out[p0 * hd + d..];
                // About eight accumulators a pass: enough independent chains to hide the FMA
                // latency, few pairs taking several vectors of each slot's value row at once.
                d += LANES
                    * match (n, (whole - d) / LANES) {
                        (8, _) => value_tile::<V, 8, 1>(args, p0, out),
                        (4, 2..) => value_tile::<V, 4, 2>(args, p0, out),
                        (4, _) => value_tile::<V, 4, 1>(args, p0, out),
                        (2, 4..) => value_tile::<V, 2, 4>(args, p0, out),
                        (2, 2..) => value_tile::<V, 2, 2>(args, p0, out),
                        (2, _) => value_tile::<V, 2, 1>(args, p0, out),
                        (_, 8..) => value_tile::<V, 1, 8>(args, p0, out),
                        (_, 4..) => value_tile::<V, 1, 4>(args, p0, out),
                        (_, 2..) => value_tile::<V, 1, 2>(args, p0, out),
                        _ => value_tile::<V, 1, 1>(args, p0, out),
                    };
            }
        });
        for p in pairs.clone() {
            let e = &scores[p * stride + offset + i0..][..slots.len()];
            for j in whole..hd {
                let o = &mut out[p * hd + j];
                *o = slots
                    .clone()
                    .zip(e)
                    .fold(*o, |acc, (s, &w)| w.mul_add(a.values[s * a.kv_dim + c0 + j], acc));
            }
        }
        s0 = slots.end;
    }
}

/// Adds `C x LANES` value components (from column `col`) of `slots` to pairs p0..p0+T, whose
/// e_i start at `scores[p * stride + at]`; `out` starts at pair p0's first such component,
/// `head_dim` apart. Returns `C`.
#[inline(always)]
fn value_tile<V: Lanes, const T: usize, const C: usize>(
    (a, scores, stride, at, slots, col): (&GroupAttention<'_>, &[f32], usize, usize, Range<usize>, usize),
    p0: usize,
    out: &mut [f32],
) -> usize {
    let hd = a.head_dim;
    let mut acc: [[V; C]; T] =
        std::array::from_fn(|t| std::array::from_fn(|c| V::load(&out[t * hd + c * LANES..])));
    let e: [&[f32]; T] = std::array::from_fn(|t| &scores[(p0 + t) * stride + at..][..slots.len()]);
    for (i, s) in slots.enumerate() {
        prefetch(a.values, (s + PREFETCH_SLOTS) * a.kv_dim + col);
        let row = &a.values[s * a.kv_dim + col..];
        let v: [V; C] = std::array::from_fn(|c| V::load(&row[c * LANES..]));
        for (acc, e) in acc.iter_mut().zip(&e) {
            let w = V::splat(e[i]);
            for (acc, v) in acc.iter_mut().zip(&v) {
                *acc = w.fma(*v, *acc);
            }
        }
    }
    for (t, acc) in acc.iter().enumerate() {
        for (c, acc) in acc.iter().enumerate() {
            acc.store(&mut out[t * hd + c * LANES..]);
        }
    }
    C
}

/// Continues one pair's value chains over its tail slots (weights `e`), up to eight vectors of
/// components at once (independent chains: a long prefill's tails are this loop).
#[inline(always)]
fn tail_values<V: Lanes>(a: &GroupAttention<'_>, e: &[f32], tail: &[usize], out: &mut [f32]) {
    let c0 = a.kv_head * a.head_dim;
    let whole = a.head_dim / LANES * LANES;
    let mut d = 0;
    while d < whole {
        let col = c0 + d;
        let out = &mut out[d..];
        d += LANES
            * match (whole - d) / LANES {
                8.. => tail_tile::<V, 8>(a, e, tail, col, out),
                4.. => tail_tile::<V, 4>(a, e, tail, col, out),
                2.. => tail_tile::<V, 2>(a, e, tail, col, out),
                _ => tail_tile::<V, 1>(a, e, tail, col, out),
            };
    }
    for (j, o) in out.iter_mut().enumerate().skip(whole) {
        *o = tail.iter().zip(e).fold(*o, |acc, (&s, &w)| {
            w.mul_add(a.values[s * a.kv_dim + c0 + j], acc)
        });
    }
}

/// `C x LANES` components of one pair's tail chains, from column `col`. Returns `C`.
#[inline(always)]
fn tail_tile<V: Lanes, const C: usize>(
    a: &GroupAttention<'_>,
    e: &[f32],
    tail: &[usize],
    col: usize,
    out: &mut [f32],
) -> usize {
    let mut acc: [V; C] = std::array::from_fn(|c| V::load(&out[c * LANES..]));
    for (&s, &w) in tail.iter().zip(e) {
        let (w, row) = (V::splat(w), &a.values[s * a.kv_dim + col..]);
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = w.fma(V::load(&row[c * LANES..]), *acc);
        }
    }
    for (c, acc) in acc.iter().enumerate() {
        acc.store(&mut out[c * LANES..]);
    }
    C
}

#[cfg(test)]
mod tests;
