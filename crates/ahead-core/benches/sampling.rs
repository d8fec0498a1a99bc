//! What sampling costs per row at a real vocabulary (SmolLM2's 49,152 tokens): warping the
//! target's logits, drawing a token, and accepting a sampled draft chain. A speculative step
//! warps every verified row, so this is paid per row, beside the forward.
//! `cargo bench -p ahead-core --bench sampling`.

#![allow(clippy::expect_used)]

use ahead_core::sampling::warp;
use ahead_core::spec::{accept, DraftDist, TokenTree};
use ahead_core::{Rng, SamplingParams};
use criterion::{criterion_group, criterion_main, Criterion};

const VOCAB: usize = 49_152;

/// Logits shaped like a language model's: a few tokens well above a long, low tail.
fn logits(seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..VOCAB)
        .map(|_| {
            let u = rng.next_f64() as f32;
            -12.0 + 10.0 * u.powi(8) + if u > 0.9995 { 8.0 } else { 0.0 }
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let row = logits(1);
    let settings = [
        (
            "temperature 0.7",
            SamplingParams {
                temperature: 0.7,
                ..SamplingParams::greedy()
            },
        ),
        (
            "top-p 0.9",
            SamplingParams {
                temperature: 0.7,
                top_p: 0.9,
                ..SamplingParams::greedy()
            },
        ),
        (
            "top-k 40",
            SamplingParams {
                temperature: 0.7,
                top_k: 40,
                ..SamplingParams::greedy()
            },
        ),
    ];
    let mut group = c.benchmark_group("sampling");
    for (name, params) in &settings {
        group.bench_function(format!("warp {name}"), |b| {
            b.iter(|| warp(&row, params, &[]).expect("warp"))
        });
    }
    let params = &settings[0].1;
    let target = warp(&row, params, &[]).expect("warp");
    group.bench_function("sample", |b| {
        let mut rng = Rng::new(2);
        b.iter(|| target.sample(&mut rng))
    });
    // A chain of 3 sampled drafts against 4 target rows: the acceptance a step runs.
    let rows: Vec<_> = (0..4)
        .map(|s| warp(&logits(10 + s), params, &[]).expect("warp"))
        .collect();
    let mut draft_rng = Rng::new(3);
    let drafts: Vec<_> = (0..3)
        .map(|s| warp(&logits(20 + s), params, &[]).expect("warp"))
        .collect();
    let tree = TokenTree::chain(
        drafts.iter().map(|d| d.sample(&mut draft_rng)).collect(),
        drafts.into_iter().map(DraftDist::Sampled).collect(),
    );
    group.bench_function("accept a chain of 3", |b| {
        let mut rng = Rng::new(4);
        b.iter(|| accept(&tree, &rows, &mut rng).expect("accept"))
    });
    // The same chain checked against greedy rows (one-hot at each row's argmax).
    let greedy: Vec<_> = rows
        .iter()
        .map(|d| {
            let top = ahead_core::sampling::argmax(d.probs()).expect("argmax");
            ahead_core::Distribution::one_hot(top, VOCAB).expect("one-hot")
        })
        .collect();
    let one_hot_tree = TokenTree::chain(tree.tokens.clone(), vec![DraftDist::OneHot; 3]);
    group.bench_function("accept a chain of 3, greedy", |b| {
        let mut rng = Rng::new(4);
        b.iter(|| accept(&one_hot_tree, &greedy, &mut rng).expect("accept"))
    });
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
