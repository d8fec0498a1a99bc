//! Distillation: the draft learns the target's next-token distributions on a corpus.
//!
//! The target labels every training window once (its softmax, stored as f16), then the draft
//! trains on them with AdamW under a warm-up and cosine learning-rate schedule. Held-out windows
//! measure what speculative decoding will see: how often the draft's top token is the target's
//! (greedy acceptance per position) and the KL divergence (sampling acceptance falls with it).

use std::time::Instant;

use ahead_core::{Rng, SamplingParams};
use ahead_model::{ForwardInput, Model, Tokenizer};
use candle_core::{Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use half::f16;
use serde::Serialize;

use crate::corpus;
use crate::error::{Result, TrainError};
use crate::student::{DraftShape, Student};

/// How to train.
#[derive(Debug, Clone)]
pub struct DistillOptions {
    pub shape: DraftShape,
    /// Tokens per training window.
    pub seq_len: usize,
    /// Windows per optimizer step.
    pub batch: usize,
    /// Passes over the training windows.
    pub epochs: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of the corpus (its tail) held out for evaluation.
    pub held_out: f64,
    /// Also train on the target's own continuations of this many training-split prompts
    /// (alternately greedy and sampled at temperature 1): the text a draft meets when it
    /// serves this target.
    pub generated: usize,
    pub seed: u64,
}

impl Default for DistillOptions {
    fn default() -> Self {
        Self {
            shape: DraftShape {
                dim: 32,
                hidden_dim: 64,
                n_layers: 1,
                n_heads: 4,
                n_kv_heads: 4,
            },
            seq_len: 128,
            batch: 16,
            epochs: 4,
            learning_rate: 4e-3,
            held_out: 0.1,
            generated: 0,
            seed: 1,
        }
    }
}

/// Reported after every optimizer step.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    /// This step's loss per token, in nats: KL(target || draft) when distilling on a corpus,
    /// cross-entropy when training on chat answers (heads, drafts).
    pub kl: f64,
    pub elapsed_s: f64,
}

/// What training did and what the draft achieves on held-out text.
#[derive(Debug, Clone, Serialize)]
pub struct DistillReport {
    pub parameters: usize,
    pub train_tokens: usize,
    pub held_out_tokens: usize,
    pub steps: usize,
    pub seconds: f64,
    /// Mean KL(target || draft) per held-out token, nats.
    pub held_out_kl: f64,
    /// Fraction of held-out positions where the draft's argmax is the target's.
    pub top1_agreement: f64,
    /// Expected tokens per verify step at greedy for k = 1..=8 drafts, if positions were
    /// independent with the measured agreement: 1 + a + a^2 + ... + a^k.
    pub expected_accepted_length: Vec<(usize, f64)>,
}

/// Windows and the target's distributions after each of their tokens.
pub(crate) struct Labelled {
    pub(crate) windows: Vec<Vec<u32>>,
    /// Per window, `[seq_len][vocab]` probabilities.
    pub(crate) probs: Vec<Vec<f16>>,
}

/// Trains a draft for `target` on `text`; returns it as an inference model with a report.
pub fn distill_draft(
    target: &Model,
    tokenizer: &Tokenizer,
    text: &str,
    opts: &DistillOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(Model, DistillReport)> {
    let start = Instant::now();
    let tcfg = target.config();
    if opts.seq_len > tcfg.max_seq_len || opts.batch == 0 || opts.epochs == 0 {
        return Err(TrainError::Options(format!(
            "need 0 < batch, 0 < epochs and seq_len <= the target's context {}",
            tcfg.max_seq_len
        )));
    }
    let draft_config = opts.shape.config(tcfg)?;
    let split = corpus::split(text, opts.held_out)?;
    let mut train_windows = corpus::windows(tokenizer, split.train, opts.seq_len)?;
    if opts.generated > 0 {
        let prompts = corpus::prompts(tokenizer, split.train)?;
        train_windows.extend(continuations(
            target,
            &prompts,
            opts.seq_len,
            opts.generated,
            opts.seed,
        )?);
    }
    let train = label(target, train_windows)?;
    let held = label(target, corpus::windows(tokenizer, split.held_out, opts.seq_len)?)?;
    if train.windows.is_empty() {
        return Err(TrainError::Corpus(format!(
            "the training split has fewer than {} tokens",
            opts.seq_len
        )));
    }
    let student = Student::new(draft_config, opts.seed)?;
    let mut optimizer = adamw(student.vars(), opts.learning_rate)?;
    let per_epoch = train.windows.len().div_ceil(opts.batch);
    let steps = per_epoch * opts.epochs;
    let mut rng = Rng::new(opts.seed);
    let mut step = 0;
    for _ in 0..opts.epochs {
        let order = shuffled(train.windows.len(), &mut rng);
        for chunk in order.chunks(opts.batch) {
            optimizer.set_learning_rate(cosine_lr(opts.learning_rate, step, steps));
            let (tokens, probs) = batch(&train, chunk, tcfg.vocab_size)?;
            let logits = student.forward(&tokens)?;
            let loss = soft_cross_entropy(&logits, &probs)?;
            optimizer.backward_step(&loss)?;
            step += 1;
            let ce = f64::from(loss.to_scalar::<f32>()?);
            on_progress(Progress {
                step,
                steps,
                kl: ce - entropy(&train, chunk),
                elapsed_s: start.elapsed().as_secs_f64(),
            });
        }
    }
    let (held_out_kl, top1_agreement) = evaluate(&student, &held, tcfg.vocab_size)?;
    let expected_accepted_length = (1..=8)
        .map(|k| (k, (0..=k).map(|i| top1_agreement.powi(i as i32)).sum()))
        .collect();
    let report = DistillReport {
        parameters: student.parameters(),
        train_tokens: train.windows.len() * opts.seq_len,
        held_out_tokens: held.windows.len() * opts.seq_len,
        steps,
        seconds: start.elapsed().as_secs_f64(),
        held_out_kl,
        top1_agreement,
        expected_accepted_length,
    };
    Ok((student.to_model()?, report))
}

/// The learning rate at `step` of `steps`: linear warm-up over the first 5%, then a cosine
/// decay to 5% of the peak.
/// AdamW at `lr` without weight decay, over `vars` (what every trainer here uses).
pub(crate) fn adamw(vars: Vec<candle_core::Var>, lr: f64) -> candle_core::Result<AdamW> {
    AdamW::new(
        vars,
        ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
}

pub(crate) fn cosine_lr(peak: f64, step: usize, steps: usize) -> f64 {
    let warmup = (steps / 20).max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

/// `n` windows of `seq_len` tokens: `prompts` in turn, continued by `target` itself. With
/// several prompts every other continuation is greedy and the rest sampled at temperature 1;
/// with a single prompt (BOS alone, say) all are sampled, or they would all be the same.
pub(crate) fn continuations(
    target: &Model,
    prompts: &[Vec<u32>],
    seq_len: usize,
    n: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    let mut rng = Rng::new(seed ^ 0x6E6);
    let mut out = Vec::with_capacity(n);
    for (i, prompt) in prompts.iter().cycle().take(n).enumerate() {
        let mut ids = prompt.clone();
        ids.truncate(seq_len / 2);
        if ids.is_empty() {
            continue;
        }
        let sampling = SamplingParams {
            temperature: if i % 2 == 0 && prompts.len() > 1 { 0.0 } else { 1.0 },
            ..SamplingParams::greedy()
        };
        let mut cache = target.new_cache(seq_len)?;
        let pos: Vec<usize> = (0..ids.len()).collect();
        let mut logits = target
            .forward(&ForwardInput::causal(&ids, &pos), &mut cache)?
            .last()
            .to_vec();
        while ids.len() < seq_len {
            let next = ahead_core::sampling::choose(&logits, &sampling, &ids, &mut rng)?;
            ids.push(next);
            if ids.len() < seq_len {
                let pos = [ids.len() - 1];
                logits = target
                    .forward(&ForwardInput::causal(&[next], &pos), &mut cache)?
                    .last()
                    .to_vec();
            }
        }
        out.push(ids);
    }
    Ok(out)
}

/// The target's next-token distribution after every token of every window.
pub(crate) fn label(target: &Model, windows: Vec<Vec<u32>>) -> Result<Labelled> {
    let mut probs = Vec::with_capacity(windows.len());
    for w in &windows {
        let mut cache = target.new_cache(w.len())?;
        let pos: Vec<usize> = (0..w.len()).collect();
        let out = target.forward(&ForwardInput::causal(w, &pos), &mut cache)?;
        let vocab = target.config().vocab_size;
        let mut p = Vec::with_capacity(w.len() * vocab);
        for row in out.logits.chunks_exact(vocab) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|l| (l - max).exp()).sum();
            p.extend(row.iter().map(|l| f16::from_f32((l - max).exp() / sum)));
        }
        probs.push(p);
    }
    Ok(Labelled { windows, probs })
}

pub(crate) fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Token ids `[b, t]` and target probabilities `[b, t, vocab]` of the chosen windows.
pub(crate) fn batch(data: &Labelled, chosen: &[usize], vocab: usize) -> Result<(Tensor, Tensor)> {
    let t = data.windows[chosen[0]].len();
    let ids: Vec<u32> = chosen
        .iter()
        .flat_map(|&i| data.windows[i].iter().copied())
        .collect();
    let probs: Vec<f32> = chosen
        .iter()
        .flat_map(|&i| data.probs[i].iter().map(|p| p.to_f32()))
        .collect();
    let b = chosen.len();
    Ok((
        Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
        Tensor::from_vec(probs, (b, t, vocab), &Device::Cpu)?,
    ))
}

/// Mean over positions of -sum_v p(v) log q(v): KL(p || q) plus p's entropy.
pub(crate) fn soft_cross_entropy(logits: &Tensor, probs: &Tensor) -> Result<Tensor> {
    let logq = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let (b, t, _) = logits.dims3()?;
    Ok((probs.mul(&logq)?.sum_all()?.neg()? / (b * t) as f64)?)
}

/// Mean entropy (nats) of the target's distributions in the chosen windows.
fn entropy(data: &Labelled, chosen: &[usize]) -> f64 {
    let (mut h, mut n) = (0.0f64, 0usize);
    for &i in chosen {
        for p in &data.probs[i] {
            let p = f64::from(p.to_f32());
            if p > 0.0 {
                h -= p * p.ln();
            }
        }
        n += data.windows[i].len();
    }
    h / n.max(1) as f64
}

/// Held-out KL per token and top-1 agreement with the target.
pub(crate) fn evaluate(student: &Student, held: &Labelled, vocab: usize) -> Result<(f64, f64)> {
    let (mut kl, mut agree, mut n) = (0.0f64, 0usize, 0usize);
    let all: Vec<usize> = (0..held.windows.len()).collect();
    for chunk in all.chunks(16) {
        let (tokens, probs) = batch(held, chunk, vocab)?;
        let logits = student.forward(&tokens)?;
        let ce = f64::from(soft_cross_entropy(&logits, &probs)?.to_scalar::<f32>()?);
        let rows = chunk.len() * held.windows[chunk[0]].len();
        kl += (ce - entropy(held, chunk)) * rows as f64;
        let draft_top = logits.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?;
        let target_top = probs.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?;
        agree += draft_top.iter().zip(&target_top).filter(|(a, b)| a == b).count();
        n += rows;
    }
    if n == 0 {
        return Err(TrainError::Corpus("the held-out split has no full window".into()));
    }
    Ok((kl / n as f64, agree as f64 / n as f64))
}
