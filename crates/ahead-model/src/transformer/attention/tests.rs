//! The attention kernel's contract, tested: a row's bits depend on its visible list alone
//! (not on the rows beside it, the split into prefix and tail, or the backend), and they match
//! softmax attention computed in f64.

use super::*;
use crate::transformer::kv_cache::KvCache;

/// A one-layer cache of `n` slots with deterministic, varied keys and values.
fn cache(kv_dim: usize, n: usize) -> KvCache {
    let mut c = KvCache::new(1, kv_dim, n).unwrap();
    c.grow(n).unwrap();
    let f = |i: usize| ((i * 7919) % 1009) as f32 / 337.0 - 1.5;
    for s in 0..n {
        let key: Vec<f32> = (0..kv_dim).map(|j| f(s * kv_dim + j)).collect();
        let value: Vec<f32> = (0..kv_dim).map(|j| f(s * kv_dim + j + 5000)).collect();
        c.write(0, s, &key, &value);
    }
    c
}

struct Case {
    head_dim: usize,
    group: usize,
    kv_heads: usize,
}

impl Case {
    fn q_dim(&self) -> usize {
        self.head_dim * self.group * self.kv_heads
    }

    fn queries(&self, rows: usize) -> Vec<f32> {
        (0..rows * self.q_dim())
            .map(|i| ((i * 104_729) % 613) as f32 / 97.0 - 3.0)
            .collect()
    }

    /// Every backend's output for kv head 1 (the last when there is one), `[row][group][hd]`.
    fn run(&self, c: &KvCache, q: &[f32], visible: &[Visible], fresh: Range<usize>) -> [Vec<f32>; 2] {
        let (keys, values) = c.layer(0);
        let a = GroupAttention {
            keys,
            values,
            kv_dim: self.head_dim * self.kv_heads,
            head_dim: self.head_dim,
            group: self.group,
            kv_head: self.kv_heads - 1,
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        };
        let n = visible.len() * self.group * self.head_dim;
        let (mut fast, mut portable) = (vec![0f32; n], vec![0f32; n]);
        a.run(q, self.q_dim(), visible, fresh.clone(), &mut fast);
        a.run_portable(q, self.q_dim(), visible, fresh.clone(), &mut portable);
        // `run` takes the widest backend this CPU has: the narrower one must agree too.
        #[cfg(target_arch = "x86_64")]
        if crate::transformer::lanes::has_avx2_fma() {
            let mut avx2 = vec![0f32; n];
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { x86::run_avx2(&a, q, self.q_dim(), visible, fresh, &mut avx2) };
            assert_eq!(bits(&avx2), bits(&portable), "AVX2 against portable");
        }
        [fast, portable]
    }

    /// Runs `visible`'s rows together (their own slots `fresh`), then each row alone with
    /// its list as `alone` lays it out, and asserts the same bits.
    fn each_row_as_alone(
        &self,
        c: &KvCache,
        visible: &[Visible],
        fresh: Range<usize>,
        alone: impl Fn(&Visible) -> Visible,
    ) {
        let q = self.queries(visible.len());
        let together = self.run(c, &q, visible, fresh);
        assert_eq!(bits(&together[0]), bits(&together[1]), "hd {}", self.head_dim);
        let span = self.group * self.head_dim;
        for (r, v) in visible.iter().enumerate() {
            let q = &q[r * self.q_dim()..][..self.q_dim()];
            let by_itself = self.run(c, q, &[alone(v)], 0..0);
            assert_eq!(
                bits(&together[0][r * span..][..span]),
                bits(&by_itself[0]),
                "hd {} row {r}",
                self.head_dim
            );
        }
    }
}

const CASES: [Case; 4] = [
    Case {
        head_dim: 8,
        group: 2,
        kv_heads: 4,
    },
    Case {
        head_dim: 64,
        group: 8,
        kv_heads: 2,
    },
    Case {
        head_dim: 12,
        group: 1,
        kv_heads: 3,
    },
    Case {
        head_dim: 20,
        group: 3,
        kv_heads: 1,
    },
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every way of splitting the list 0..n into a contiguous prefix and a tail.
fn splits(n: usize) -> Vec<Visible> {
    (0..=n)
        .map(|b| Visible {
            prefix: 0..b,
            tail: (b..n).collect(),
        })
        .collect()
}

#[test]
fn the_bits_depend_on_the_list_alone_and_every_backend_agrees() {
    for case in &CASES {
        let n = 21;
        let c = cache(case.head_dim * case.kv_heads, n + 3);
        let q = case.queries(1);
        let mut want: Option<Vec<u32>> = None;
        for (i, v) in splits(n).into_iter().enumerate() {
            // Tails come from fresh blocks in even splits, slot by slot in odd ones.
            let fresh = if i % 2 == 0 {
                v.prefix.end.min(n - 1)..n
            } else {
                0..0
            };
            let [fast, portable] = case.run(&c, &q, std::slice::from_ref(&v), fresh);
            assert_eq!(bits(&fast), bits(&portable), "hd {} split {i}", case.head_dim);
            let w = want.get_or_insert_with(|| bits(&fast));
            assert_eq!(&bits(&fast), w, "hd {} split {i}", case.head_dim);
        }
    }
}

#[test]
fn rows_computed_together_give_the_bits_of_each_row_alone() {
    for case in &CASES {
        // A 5-row chain after 13 cached slots, then a tree row that skips slots 14 and 15.
        let (base, rows) = (13, 5);
        let c = cache(case.head_dim * case.kv_heads, base + rows + 1);
        let mut visible: Vec<Visible> = (0..rows)
            .map(|r| Visible {
                prefix: 0..base,
                tail: (base..=base + r).collect(),
            })
            .collect();
        visible.push(Visible {
            prefix: 0..base,
            tail: vec![base, base + 3, base + 5],
        });
        case.each_row_as_alone(&c, &visible, base..base + rows + 1, Clone::clone);
    }
}

#[test]
fn a_prefill_gives_each_row_the_bits_of_that_row_alone() {
    // A prompt fed at once: every row's list is its own tail, the fresh slots up to itself,
    // across several key blocks (scored only as far as each tile of rows needs).
    for case in &CASES {
        let rows = 3 * KEY_BLOCK + 5;
        let c = cache(case.head_dim * case.kv_heads, rows);
        let visible: Vec<Visible> = (0..rows)
            .map(|r| Visible {
                prefix: 0..0,
                tail: (0..=r).collect(),
            })
            .collect();
        // Alone, each row's list is read as a prefix (a decode step after the prompt).
        case.each_row_as_alone(&c, &visible, 0..rows, |v| Visible {
            prefix: 0..v.tail.len(),
            tail: Vec::new(),
        });
    }
}

#[test]
fn long_lists_give_the_same_bits_in_every_backend() {
    // 150 slots are 19 key blocks: every tile shape, narrow and wide, is visited.
    for case in &CASES {
        let n = 150;
        let c = cache(case.head_dim * case.kv_heads, n + 2);
        for rows in [1, 3] {
            let q = case.queries(rows);
            let visible: Vec<Visible> = (0..rows)
                .map(|r| Visible {
                    prefix: 5 * r..n - rows + r,
                    tail: vec![n - rows + r],
                })
                .collect();
            let [fast, portable] = case.run(&c, &q, &visible, n - rows..n);
            assert_eq!(bits(&fast), bits(&portable), "hd {} rows {rows}", case.head_dim);
        }
    }
}

#[test]
fn a_slot_far_below_the_maximum_weighs_exactly_nothing() {
    let case = &CASES[2];
    let (hd, kv_dim, n) = (case.head_dim, case.head_dim * case.kv_heads, 20);
    let mut c = cache(kv_dim, n);
    let q = case.queries(1);
    // The last slot's key points away from the query: its score is about -1000.
    let c0 = (case.kv_heads - 1) * hd;
    let mut key = vec![0f32; kv_dim];
    for d in 0..hd {
        key[c0 + d] = -100.0 * q[c0 + d];
    }
    // A huge value: any weight above 0 would show in the output.
    c.write(0, n - 1, &key, &vec![1e30; kv_dim]);
    let with = case.run(
        &c,
        &q,
        &[Visible {
            prefix: 0..n,
            tail: vec![],
        }],
        0..0,
    );
    let without = case.run(
        &c,
        &q,
        &[Visible {
            prefix: 0..n - 1,
            tail: vec![],
        }],
        0..0,
    );
    assert_eq!(bits(&with[0]), bits(&without[0]));
    assert_eq!(bits(&with[1]), bits(&without[1]));
}

#[test]
fn matches_softmax_attention_computed_in_f64() {
    for case in &CASES {
        let n = 37;
        let kv_dim = case.head_dim * case.kv_heads;
        let c = cache(kv_dim, n);
        let q = case.queries(1);
        let v = Visible {
            prefix: 3..30,
            tail: vec![31, 36],
        };
        let slots: Vec<usize> = v.prefix.clone().chain(v.tail.iter().copied()).collect();
        let got = &case.run(&c, &q, std::slice::from_ref(&v), 0..0)[0];
        let (keys, values) = c.filled(0).unwrap();
        let hd = case.head_dim;
        let c0 = (case.kv_heads - 1) * hd;
        for h in 0..case.group {
            let qh = &q[(case.kv_heads - 1) * case.group * hd + h * hd..][..hd];
            let scores: Vec<f64> = slots
                .iter()
                .map(|&s| {
                    (0..hd)
                        .map(|d| qh[d] as f64 * keys[s * kv_dim + c0 + d] as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for d in 0..hd {
                let want: f64 = slots
                    .iter()
                    .zip(&e)
                    .map(|(&s, w)| w * values[s * kv_dim + c0 + d] as f64)
                    .sum::<f64>()
                    / sum;
                let g = got[h * hd + d] as f64;
                assert!(
                    (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "hd {hd} head {h} d {d}: {g} vs {want}"
                );
            }
        }
    }
}
