//! Micro-benchmarks of the matrix kernels at TinyLlama-1.1B's shapes, for 1 and 8 input rows:
//! the verify-cost question in isolation. `cargo bench -p ahead-model --bench kernels`.
//! A flat verify needs time(8 rows) close to time(1 row); the report's throughput is in
//! weight elements (one per multiply-add of one row). `forward/stories260K` times a whole
//! verify forward of the embedded model (attention over 128 cached tokens included), whose
//! rows cost per-row arithmetic rather than weight reads.

#![allow(clippy::expect_used)]

use ahead_model::transformer::Linear;
use ahead_model::{load, ForwardInput, LoadOptions, ModelSource, TensorDType};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 997) as f32 / 500.0 - 1.0).collect()
}

fn matmul(c: &mut Criterion) {
    // (name, rows, cols): attention and FFN shapes, and a small one that stays in cache.
    let shapes = [
        ("wq 2048x2048", 2048, 2048),
        ("w2 2048x5632", 2048, 5632),
        ("cached 256x2048", 256, 2048),
        // 4 FFN matrices' worth, past L3: the weights stream from memory as in a real model.
        ("streamed 8192x5632", 8192, 5632),
    ];
    for dtype in [
        TensorDType::F32,
        TensorDType::F16,
        TensorDType::BF16,
        TensorDType::Q8_0,
        TensorDType::Q4_0,
        TensorDType::Q4_1,
        TensorDType::Q5_0,
        TensorDType::Q5_1,
        TensorDType::Q4K,
        TensorDType::Q5K,
        TensorDType::Q6K,
    ] {
        let mut group = c.benchmark_group(format!("linear/{}", dtype.name()));
        group.sample_size(20);
        for (name, rows, cols) in shapes {
            let w = Linear::quantize(&values(rows * cols), rows, cols, dtype).expect("weights");
            for k in [1usize, 8] {
                let x = values(k * cols);
                let mut out = vec![0f32; k * rows];
                group.throughput(Throughput::Elements((k * rows * cols) as u64));
                group.bench_with_input(BenchmarkId::new(name, k), &k, |b, &k| {
                    b.iter(|| w.forward(&x, k, &mut out).expect("forward"))
                });
            }
        }
        group.finish();
    }
}

fn forward(c: &mut Criterion) {
    let model = load(&ModelSource::Default, &LoadOptions::default())
        .expect("embedded model")
        .model;
    let context = 128;
    let mut cache = model.new_cache(context + 16).expect("cache");
    let prefix: Vec<u32> = (0..context as u32).map(|i| 3 + i % 500).collect();
    let pos: Vec<usize> = (0..context).collect();
    model
        .forward(&ForwardInput::causal(&prefix, &pos), &mut cache)
        .expect("prefill");
    let mut group = c.benchmark_group("forward/stories260K");
    for k in [1usize, 2, 4, 8] {
        let tokens: Vec<u32> = (0..k as u32).map(|i| 7 + i).collect();
        let positions: Vec<usize> = (context..context + k).collect();
        group.bench_with_input(BenchmarkId::new("rows after 128", k), &k, |b, _| {
            b.iter(|| {
                model
                    .forward(&ForwardInput::causal(&tokens, &positions), &mut cache)
                    .expect("forward");
                cache.truncate(context).expect("truncate");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, forward);
criterion_main!(benches);
