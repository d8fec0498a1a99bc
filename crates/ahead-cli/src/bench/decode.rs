//! `ahead bench decode`: plain-decoding speed set against the memory-bandwidth limit.
//!
//! Decoding one token reads every weight once, so tokens/s can not exceed
//! copy bandwidth / weight bytes. The report gives both and their ratio.

use std::io::Write;
use std::time::Instant;

use ahead_core::sampling::argmax;
use ahead_model::{ForwardInput, Model};
use anyhow::Result;
use clap::Args;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Model to measure (default: the embedded stories260K). Ignored with --synthetic.
    #[arg(long)]
    pub model: Option<String>,
    /// Measure a random-weight model of a known shape instead: tinyllama-1.1b, qwen2.5-0.5b,
    /// llama-3.2-1b.
    #[arg(long)]
    pub synthetic: Option<String>,
    /// Layers of the synthetic model (default: all).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Weight dtype of the synthetic model: any GGUF type ahead reads (f32, f16, bf16, q8_0,
    /// q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs), or q4_k_m
    /// (llama.cpp's mix: q6_k for the output and some attn_v and ffn_down, q4_k elsewhere).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Runs; the best is reported (the machine is shared and noisy).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    dtype: String,
    tokens: usize,
    tokens_per_second: f64,
    ms_per_token: f64,
    weight_bytes_per_token: usize,
    copy_bandwidth_gb_s: f64,
    bandwidth_bound_tokens_per_second: f64,
    fraction_of_bound: f64,
    threads: usize,
}

pub fn run(a: DecodeArgs) -> Result<()> {
    let (model, mut name, dtype) =
        super::bench_model(a.model.as_deref(), a.synthetic.as_deref(), a.layers, &a.dtype)?;
    if a.synthetic.is_some() {
        name = format!("{name} ({} layers)", model.config().n_layers);
    }
    let tokens = a.tokens.min(model.config().max_seq_len.saturating_sub(2)).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..a.runs.max(1) {
        best = best.min(decode_seconds(&model, tokens)?);
    }
    let bandwidth = copy_bandwidth();
    let bytes = model.weight_bytes();
    let tps = tokens as f64 / best;
    let bound = bandwidth / bytes as f64;
    let r = Report {
        model: name,
        dtype,
        tokens,
        tokens_per_second: tps,
        ms_per_token: best * 1e3 / tokens as f64,
        weight_bytes_per_token: bytes,
        copy_bandwidth_gb_s: bandwidth / 1e9,
        bandwidth_bound_tokens_per_second: bound,
        fraction_of_bound: tps / bound,
        threads: rayon_threads(),
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
    } else {
        writeln!(out, "model            {} ({})", r.model, r.dtype)?;
        writeln!(
            out,
            "plain decoding   {:.1} tok/s ({:.3} ms/token, best of {} runs of {} tokens)",
            r.tokens_per_second, r.ms_per_token, a.runs, r.tokens
        )?;
        writeln!(out, "weights/token    {:.2} MB", bytes as f64 / 1e6)?;
        writeln!(out, "copy bandwidth   {:.1} GB/s", r.copy_bandwidth_gb_s)?;
        writeln!(
            out,
            "bandwidth bound  {:.1} tok/s  (achieved {:.0}%)",
            bound,
            r.fraction_of_bound * 100.0
        )?;
    }
    Ok(())
}

/// Seconds to prefill one token and decode `tokens` more, greedily.
fn decode_seconds(model: &Model, tokens: usize) -> Result<f64> {
    let mut cache = model.new_cache(tokens + 1)?;
    let mut token = 1u32;
    let start = Instant::now();
    for pos in 0..tokens {
        let out = model.forward(&ForwardInput::causal(&[token], &[pos]), &mut cache)?;
        token = argmax(out.last())?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Bytes per second of a large parallel memcpy (read + written), best of 5.
fn copy_bandwidth() -> f64 {
    use rayon::prelude::*;
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        dst.par_chunks_mut(1 << 20)
            .zip(src.par_chunks(1 << 20))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * n as f64 / best
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}
