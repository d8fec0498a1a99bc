//! `ahead bench cost`: the verify-cost curve. One forward of k rows (a chain, k = 1..32) and of
//! Medusa-style trees, after a fixed context, on a real model or on random weights of a real model's shapes.
//! Speculation pays when T(k)/T(1) stays near 1: then k drafted tokens cost about one step.

use std::time::Instant;

use ahead_core::spec::MedusaTree;
use ahead_model::{AttentionMask, ForwardInput};
use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Model to measure (default: the embedded stories260K). Ignored with --synthetic.
    #[arg(long)]
    pub model: Option<String>,
    /// Measure random weights of a known model's shapes instead: tinyllama-1.1b, qwen2.5-0.5b,
    /// llama-3.2-1b.
    #[arg(long)]
    pub synthetic: Option<String>,
    /// Layers to build (default: all; fewer keep the run short, and the ratio T(k)/T(1) barely
    /// depends on it).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Weight dtype of the synthetic model: any GGUF type ahead reads (f32, f16, bf16, q8_0,
    /// q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs), or q4_k_m
    /// (llama.cpp's mix: q6_k for the output and some attn_v and ffn_down, q4_k elsewhere).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Tokens already in the cache when the rows are verified.
    #[arg(long, default_value_t = 128)]
    pub context: usize,
    /// Timed repetitions per width; the best is kept (the machine is shared and noisy).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

/// Widths timed.
const WIDTHS: [usize; 6] = [1, 2, 4, 8, 16, 32];

#[derive(Debug, Serialize)]
struct Point {
    k: usize,
    ms: f64,
    /// T(k) / T(1).
    ratio: f64,
    /// k / (T(k)/T(1)): the speedup over plain decoding if the k - 1 drafts of every step were
    /// right and free (a forward's cost only; a step adds sampling and bookkeeping). No drafter
    /// can beat it at this width.
    ceiling: f64,
}

#[derive(Debug, Serialize)]
struct TreePoint {
    /// Tree nodes verified, plus the pending row.
    nodes: usize,
    ms: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    layers: usize,
    dtype: String,
    context: usize,
    threads: usize,
    points: Vec<Point>,
    trees: Vec<TreePoint>,
    /// The best `ceiling` over the widths.
    best_ceiling: f64,
}

pub fn run(a: CostArgs) -> Result<()> {
    let (model, name, dtype) =
        super::bench_model(a.model.as_deref(), a.synthetic.as_deref(), a.layers, &a.dtype)?;
    let context = a.context.min(model.config().max_seq_len.saturating_sub(64));
    let mut cache = model.new_cache(context + 64)?;
    // Token ids stay inside the smallest vocabulary (stories260K's 512).
    let vocab = model.config().vocab_size.clamp(2, 1001) as u32;
    let prefix: Vec<u32> = (0..context as u32).map(|i| 1 + i % (vocab - 1)).collect();
    if !prefix.is_empty() {
        let pos: Vec<usize> = (0..context).collect();
        model.forward(&ForwardInput::causal(&prefix, &pos), &mut cache)?;
    }
    // Every input shape: k-row chains, then the trees (pending row + nodes).
    let chains: Vec<(Vec<u32>, Vec<usize>)> = WIDTHS
        .iter()
        .map(|&k| {
            (
                (0..k as u32).map(|i| 7 + i).collect(),
                (context..context + k).collect(),
            )
        })
        .collect();
    let trees: Vec<_> = [MedusaTree::default_cpu(), paper_tree()]
        .iter()
        .map(|t| tree_rows(t, context))
        .collect();
    let inputs: Vec<ForwardInput<'_>> = chains
        .iter()
        .map(|(t, p)| ForwardInput::causal(t, p))
        .chain(trees.iter().map(|(tokens, parents, positions)| ForwardInput {
            tokens,
            positions,
            mask: AttentionMask::Tree(parents),
            want_hidden: false,
            taps: &[],
            logits: ahead_model::transformer::Logits::All,
        }))
        .collect();
    // Repetitions go round all shapes, so a noisy moment of the shared machine does not hit
    // one width's every run; the best time of each shape is kept.
    let mut best = vec![f64::INFINITY; inputs.len()];
    for _ in 0..a.runs.max(1) {
        for (input, b) in inputs.iter().zip(&mut best) {
            let start = Instant::now();
            model.forward(input, &mut cache)?;
            *b = b.min(start.elapsed().as_secs_f64() * 1e3);
            cache.truncate(context)?;
        }
    }
    let one = best[0].max(1e-9);
    let points: Vec<Point> = WIDTHS
        .iter()
        .zip(&best)
        .map(|(&k, &ms)| Point {
            k,
            ms,
            ratio: ms / one,
            ceiling: k as f64 * one / ms.max(1e-9),
        })
        .collect();
    let best_ceiling = points.iter().map(|p| p.ceiling).fold(0.0, f64::max);
    let trees: Vec<TreePoint> = inputs[WIDTHS.len()..]
        .iter()
        .zip(&best[WIDTHS.len()..])
        .map(|(input, &ms)| TreePoint {
            nodes: input.tokens.len(),
            ms,
            ratio: ms / one,
        })
        .collect();
    let r = Report {
        model: name,
        layers: model.config().n_layers,
        dtype,
        context,
        threads: rayon::current_num_threads(),
        points,
        trees,
        best_ceiling,
    };
    print(&r, a.json)
}

/// A 12-node tree of the shape the Medusa paper puts at its top (top-1 chains and siblings).
fn paper_tree() -> MedusaTree {
    let paths = vec![
        vec![0],
        vec![1],
        vec![2],
        vec![0, 0],
        vec![0, 1],
        vec![0, 2],
        vec![1, 0],
        vec![2, 0],
        vec![0, 0, 0],
        vec![0, 0, 1],
        vec![0, 1, 0],
        vec![1, 0, 0],
    ];
    MedusaTree::new(paths).unwrap_or_else(|_| MedusaTree::default_cpu())
}

/// The pending row plus the tree's nodes: tokens, parent rows and positions after `context`.
fn tree_rows(tree: &MedusaTree, context: usize) -> (Vec<u32>, Vec<Option<usize>>, Vec<usize>) {
    let top: Vec<Vec<u32>> = (0..tree.depth())
        .map(|d| (0..8).map(|r| 100 + 10 * d as u32 + r).collect())
        .collect();
    let t = tree.build(&top);
    let tokens = std::iter::once(7).chain(t.tokens.iter().copied()).collect();
    let parents = std::iter::once(None)
        .chain(t.parents.iter().map(|p| Some(p.map_or(0, |p| p + 1))))
        .collect();
    let positions = std::iter::once(context)
        .chain(t.depths().iter().map(|d| context + d))
        .collect();
    (tokens, parents, positions)
}

fn print(r: &Report, json: bool) -> Result<()> {
    super::emit(r, json, |out| {
        writeln!(
            out,
            "{} ({} layers, {}), context {}, {} threads",
            r.model, r.layers, r.dtype, r.context, r.threads
        )?;
        writeln!(out, "| rows | ms | T(k)/T(1) | ceiling: k / (T(k)/T(1)) |")?;
        writeln!(out, "|---|---|---|---|")?;
        for p in &r.points {
            writeln!(
                out,
                "| {} | {:.3} | {:.2} | {:.2}x |",
                p.k, p.ms, p.ratio, p.ceiling
            )?;
        }
        for t in &r.trees {
            writeln!(out, "| tree of {} | {:.3} | {:.2} | |", t.nodes, t.ms, t.ratio)?;
        }
        writeln!(
            out,
            "\nWith every draft right and drafting free, k rows give k tokens: no drafter beats \
             {:.2}x plain decoding on this forward.",
            r.best_ceiling
        )?;
        Ok(())
    })
}
