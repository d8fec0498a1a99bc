//! Medusa-1 training: the base model is frozen; its final hidden states over a corpus (or over
//! its own generations: self-distillation) are computed once, and K heads learn to predict the
//! token i + 2 places ahead from them (cross-entropy, head i weighted 0.8^i as in the paper).
//! Each head starts as the base's own classifier (residual blocks at zero), so training starts
//! from "repeat the base's next-token guess". Held-out windows give per-head rank accuracies.

use std::time::Instant;

use ahead_core::sampling::argmax;
use ahead_core::Rng;
use ahead_model::medusa::{MedusaHead, MedusaHeads, ResBlock};
use ahead_model::transformer::Linear;
use ahead_model::{ForwardInput, Model, Tokenizer};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer};
use serde::Serialize;

use crate::chat_data::ChatRecord;
use crate::corpus;
use crate::distill::{adamw, batch, continuations, cosine_lr, label, shuffled, soft_cross_entropy, Progress};
use crate::error::{Result, TrainError};
use crate::student::Student;

/// How to train Medusa heads.
#[derive(Debug, Clone)]
pub struct MedusaOptions {
    pub heads: usize,
    /// Residual blocks per head.
    pub layers: usize,
    pub seq_len: usize,
    /// Windows per optimizer step.
    pub batch: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub held_out: f64,
    /// Train on the base's own continuations of this many training prompts instead of the
    /// corpus text (self-distillation); 0 trains on the corpus.
    pub self_distill: usize,
    /// Medusa-2: train the base with the heads. The base keeps its own loss (KL to the
    /// original base's distributions, weight `base_weight`) at `base_lr_scale` times the heads'
    /// learning rate, so its output stays close to the original's.
    pub joint: bool,
    pub base_weight: f64,
    pub base_lr_scale: f64,
    pub seed: u64,
    /// FR-Spec: the heads score only this many tokens, the most frequent in the training
    /// targets; 0 scores the whole vocabulary.
    pub vocab_subset: usize,
}

impl Default for MedusaOptions {
    fn default() -> Self {
        Self {
            heads: 3,
            layers: 1,
            seq_len: 128,
            batch: 16,
            epochs: 3,
            learning_rate: 3e-3,
            held_out: 0.1,
            self_distill: 0,
            joint: false,
            base_weight: 1.0,
            base_lr_scale: 0.01,
            seed: 1,
            vocab_subset: 0,
        }
    }
}

/// Ranks whose accuracy is measured per head (top-1 .. top-5).
pub const RANKS: usize = 5;

/// What training did and how good each head is on held-out text.
#[derive(Debug, Clone, Serialize)]
pub struct MedusaReport {
    pub parameters: usize,
    pub train_tokens: usize,
    pub held_out_tokens: usize,
    pub steps: usize,
    pub seconds: f64,
    /// Per head: top-1 and top-5 accuracy on held-out positions.
    pub top1: Vec<f64>,
    pub top5: Vec<f64>,
    /// Per head: the chance that its rank-r token is right, r < 5.
    pub rank_accuracy: Vec<Vec<f64>>,
    /// Medusa-2 only: held-out top-1 agreement of the trained base with the original, and
    /// KL(original || trained) per token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_kl: Option<f64>,
    /// Pruned heads: tokens scored, and the share of held-out targets among them (no head can
    /// be right on the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_subset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset_coverage: Option<f64>,
}

/// Tokens of every window and the base's hidden states from position `from` on (`[t - from][dim]`):
/// heads learn from those positions only (a chat's answer, not its prompt).
struct Features {
    hidden: Vec<Vec<f32>>,
    tokens: Vec<Vec<u32>>,
    from: Vec<usize>,
}

/// What training returns: the heads, the base they read (the original for Medusa-1, the jointly
/// trained one for Medusa-2) and the report.
pub struct TrainedMedusa {
    pub heads: MedusaHeads,
    /// `Some` for Medusa-2: use this base with the heads.
    pub base: Option<Model>,
    pub report: MedusaReport,
}

/// Trains heads for `base` on `text` (or, with `self_distill`, on the base's continuations of its
/// openings, or of BOS without a text), with measured rank accuracies and a report.
pub fn train_medusa(
    base: &Model,
    tokenizer: &Tokenizer,
    text: Option<&str>,
    opts: &MedusaOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainedMedusa> {
    let start = Instant::now();
    let cfg = base.config();
    if opts.heads == 0 || opts.heads + 2 > opts.seq_len || opts.batch == 0 || opts.epochs == 0 {
        return Err(TrainError::Options(format!(
            "need 0 < heads < seq_len - 1 ({}), batch > 0 and epochs > 0",
            opts.seq_len
        )));
    }
    if opts.seq_len > cfg.max_seq_len {
        return Err(TrainError::Options(format!(
            "seq_len {} exceeds the base's context {}",
            opts.seq_len, cfg.max_seq_len
        )));
    }
    // Self-distillation continues the corpus's openings, or BOS alone without a corpus.
    let split = corpus::split(text.unwrap_or(""), opts.held_out)?;
    let bos_only = vec![tokenizer.bos_id().into_iter().collect::<Vec<u32>>()];
    let openings = |part: &str| -> Result<Vec<Vec<u32>>> {
        let p = corpus::prompts(tokenizer, part)?;
        Ok(if p.is_empty() { bos_only.clone() } else { p })
    };
    let (train_windows, held_windows) = match (text, opts.self_distill) {
        (Some(_), 0) => (
            corpus::windows(tokenizer, split.train, opts.seq_len)?,
            corpus::windows(tokenizer, split.held_out, opts.seq_len)?,
        ),
        (None, 0) => {
            return Err(TrainError::Options(
                "give a corpus, or --self-distill N to train on the base's own text".into(),
            ))
        }
        (_, n) => (
            continuations(base, &openings(split.train)?, opts.seq_len, n, opts.seed)?,
            // Held out: other openings (or other samples), never trained on.
            continuations(
                base,
                &openings(split.held_out)?,
                opts.seq_len,
                (n / 10).max(8),
                opts.seed ^ 0xE7A1,
            )?,
        ),
    };
    if train_windows.is_empty() || held_windows.is_empty() {
        return Err(TrainError::Corpus(format!(
            "need at least one {}-token window in both the training and held-out splits",
            opts.seq_len
        )));
    }
    if opts.vocab_subset > 0 {
        return Err(TrainError::Options(
            "a vocabulary subset is trained on chat data (--data); corpus windows use the whole vocabulary"
                .into(),
        ));
    }
    let dim = cfg.dim;
    let vocab = cfg.vocab_size;
    let (heads, vars) = init_heads(base, opts, None)?;
    let mut optimizer = adamw(vars.clone(), opts.learning_rate)?;
    let steps = train_windows.len().div_ceil(opts.batch) * opts.epochs;
    let mut rng = Rng::new(opts.seed);
    let mut step = 0;
    let trained_base = if opts.joint {
        // Medusa-2: the base trains too, held to the original's distributions.
        let student = Student::from_model(base)?;
        let mut base_opt = adamw(student.vars(), opts.learning_rate * opts.base_lr_scale)?;
        let labelled = label(base, train_windows.clone())?;
        for _ in 0..opts.epochs {
            for chunk in shuffled(labelled.windows.len(), &mut rng).chunks(opts.batch) {
                let lr = cosine_lr(opts.learning_rate, step, steps);
                optimizer.set_learning_rate(lr);
                base_opt.set_learning_rate(lr * opts.base_lr_scale);
                let (tokens, probs) = batch(&labelled, chunk, vocab)?;
                let (logits, hidden) = student.forward_hidden(&tokens)?;
                let mut loss = (soft_cross_entropy(&logits, &probs)? * opts.base_weight)?;
                let (b, t) = tokens.dims2()?;
                for (i, head) in heads.iter().enumerate() {
                    let n = t - i - 2;
                    let x = hidden.narrow(1, 0, n)?.reshape((b * n, dim))?;
                    let labels = tokens.narrow(1, i + 2, n)?.flatten_all()?;
                    let ce = candle_nn::loss::cross_entropy(&head_forward(head, &x)?, &labels)?;
                    loss = (loss + (ce * 0.8f64.powi(i as i32))?)?;
                }
                let grads = loss.backward()?;
                optimizer.step(&grads)?;
                base_opt.step(&grads)?;
                step += 1;
                on_progress(Progress {
                    step,
                    steps,
                    kl: f64::from(loss.to_scalar::<f32>()?),
                    elapsed_s: start.elapsed().as_secs_f64(),
                });
            }
        }
        Some(student.to_model()?)
    } else {
        // Medusa-1: the base is frozen, so its hidden states are computed once.
        let train = features(base, train_windows.clone())?;
        fit(&heads, &mut optimizer, &train, None, opts, start, on_progress)?;
        None
    };
    let final_base = trained_base.as_ref().unwrap_or(base);
    let held = features(final_base, held_windows.clone())?;
    let (base_agreement, base_kl) = match &trained_base {
        Some(m) => {
            let (kl, agreement) = evaluate_base(base, m, &held_windows)?;
            (Some(agreement), Some(kl))
        }
        None => (None, None),
    };
    let rank_accuracy = rank_accuracy(&heads, &held, None, dim)?;
    let mut report = report(
        &vars,
        &rank_accuracy,
        train_windows.len() * opts.seq_len,
        held.tokens.len() * opts.seq_len,
        steps,
        start,
    );
    report.base_agreement = base_agreement;
    report.base_kl = base_kl;
    let mut medusa = export(&heads, dim, vocab, None)?;
    medusa.set_accuracy(rank_accuracy);
    Ok(TrainedMedusa {
        heads: medusa,
        base: trained_base,
        report,
    })
}

/// Medusa-1 on a chat model's own answers (`chat_data`): the last `held_out` share of records
/// is held out; heads learn from every answer position (reading the hidden state before each
/// answer token, as decoding does). With `vocab_subset`, the heads score only the most frequent
/// tokens of the training answers (FR-Spec).
pub fn train_medusa_on_chat(
    base: &Model,
    records: &[ChatRecord],
    opts: &MedusaOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainedMedusa> {
    let start = Instant::now();
    let cfg = base.config();
    if opts.heads == 0 || opts.batch == 0 || opts.epochs == 0 || opts.joint {
        return Err(TrainError::Options(
            "chat data trains Medusa-1 heads: need heads > 0, batch > 0, epochs > 0 and no --joint".into(),
        ));
    }
    let (train_records, held_records) = crate::chat_data::split_held_out(records, opts.held_out)?;
    let subset =
        (opts.vocab_subset > 0).then(|| frequent_tokens(train_records, opts.vocab_subset, cfg.vocab_size));
    let rows = subset.as_ref().map(|s| row_of(s, cfg.vocab_size));
    let (heads, vars) = init_heads(base, opts, subset.as_deref())?;
    let mut optimizer = adamw(vars.clone(), opts.learning_rate)?;
    let train = chat_features(base, train_records, cfg.max_seq_len)?;
    let held_out = chat_features(base, held_records, cfg.max_seq_len)?;
    let steps = fit(
        &heads,
        &mut optimizer,
        &train,
        rows.as_deref(),
        opts,
        start,
        on_progress,
    )?;
    let rank_accuracy = rank_accuracy(&heads, &held_out, rows.as_deref(), cfg.dim)?;
    let positions = |f: &Features| f.hidden.iter().map(|h| h.len() / cfg.dim).sum::<usize>();
    let mut report = report(
        &vars,
        &rank_accuracy,
        positions(&train),
        positions(&held_out),
        steps,
        start,
    );
    if let Some(rows) = &rows {
        let targets: Vec<u32> = held_records
            .iter()
            .flat_map(|r| r.answer_ids.iter().copied())
            .collect();
        let inside = targets.iter().filter(|&&t| rows[t as usize] >= 0).count();
        report.vocab_subset = Some(opts.vocab_subset.min(cfg.vocab_size));
        report.subset_coverage = Some(inside as f64 / targets.len().max(1) as f64);
    }
    let mut medusa = export(&heads, cfg.dim, cfg.vocab_size, subset)?;
    medusa.set_accuracy(rank_accuracy);
    Ok(TrainedMedusa {
        heads: medusa,
        base: None,
        report,
    })
}

/// A head's trainable blocks and output layer.
type HeadVars = (Vec<(Var, Var)>, Var);

/// Heads that start as "repeat the base's next-token guess": residual blocks at zero, output
/// the base's classifier (its rows of `subset`, when pruned).
fn init_heads(
    base: &Model,
    opts: &MedusaOptions,
    subset: Option<&[u32]>,
) -> Result<(Vec<HeadVars>, Vec<Var>)> {
    let cfg = base.config();
    let dim = cfg.dim;
    let classifier = base
        .weights()
        .lm_head
        .as_ref()
        .unwrap_or(&base.weights().embedding)
        .to_f32()?;
    let (out, rows) = match subset {
        Some(s) => (
            s.iter()
                .flat_map(|&t| {
                    classifier[t as usize * dim..(t as usize + 1) * dim]
                        .iter()
                        .copied()
                })
                .collect(),
            s.len(),
        ),
        None => (classifier, cfg.vocab_size),
    };
    let dev = Device::Cpu;
    let mut vars = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..opts.heads {
        let mut blocks = Vec::new();
        for _ in 0..opts.layers {
            let w = Var::zeros((dim, dim), candle_core::DType::F32, &dev)?;
            let b = Var::zeros(dim, candle_core::DType::F32, &dev)?;
            vars.extend([w.clone(), b.clone()]);
            blocks.push((w, b));
        }
        let o = Var::from_tensor(&Tensor::from_vec(out.clone(), (rows, dim), &dev)?)?;
        vars.push(o.clone());
        heads.push((blocks, o));
    }
    Ok((heads, vars))
}

/// Medusa-1 epochs over frozen features (head i weighted 0.8^i); returns the steps taken.
fn fit(
    heads: &[HeadVars],
    optimizer: &mut AdamW,
    train: &Features,
    rows: Option<&[i32]>,
    opts: &MedusaOptions,
    start: Instant,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<usize> {
    let dim = heads.first().map_or(0, |h| h.1.dims()[1]);
    let steps = train.tokens.len().div_ceil(opts.batch) * opts.epochs;
    let mut rng = Rng::new(opts.seed);
    let mut step = 0;
    for _ in 0..opts.epochs {
        for chunk in shuffled(train.tokens.len(), &mut rng).chunks(opts.batch) {
            optimizer.set_learning_rate(cosine_lr(opts.learning_rate, step, steps));
            let mut loss = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu)?;
            for (i, head) in heads.iter().enumerate() {
                let (x, labels, _) = examples(train, chunk, i, dim, rows)?;
                if labels.dims1()? == 0 {
                    continue;
                }
                let logits = head_forward(head, &x)?;
                let ce = candle_nn::loss::cross_entropy(&logits, &labels)?;
                loss = (loss + (ce * 0.8f64.powi(i as i32))?)?;
            }
            optimizer.backward_step(&loss)?;
            step += 1;
            on_progress(Progress {
                step,
                steps,
                kl: f64::from(loss.to_scalar::<f32>()?),
                elapsed_s: start.elapsed().as_secs_f64(),
            });
        }
    }
    Ok(steps)
}

/// Held-out chance, per head, that its rank-r token is the target (targets a pruned head
/// cannot score count as misses).
fn rank_accuracy(
    heads: &[HeadVars],
    held: &Features,
    rows: Option<&[i32]>,
    dim: usize,
) -> Result<Vec<Vec<f64>>> {
    let all: Vec<usize> = (0..held.tokens.len()).collect();
    let mut out = Vec::with_capacity(heads.len());
    for (i, head) in heads.iter().enumerate() {
        let (x, labels, outside) = examples(held, &all, i, dim, rows)?;
        let labels = labels.to_vec1::<u32>()?;
        let logits = if labels.is_empty() {
            Vec::new()
        } else {
            head_forward(head, &x)?.to_vec2::<f32>()?
        };
        let mut hits = [0usize; RANKS];
        for (row, &label) in logits.iter().zip(&labels) {
            let l = row[label as usize];
            // Rank of the label: how many tokens score higher (ties count for the label).
            let rank = row.iter().filter(|&&v| v > l).count();
            if rank < RANKS {
                hits[rank] += 1;
            }
        }
        let n = (labels.len() + outside).max(1) as f64;
        out.push(hits.iter().map(|&h| h as f64 / n).collect::<Vec<f64>>());
    }
    Ok(out)
}

fn report(
    vars: &[Var],
    rank_accuracy: &[Vec<f64>],
    train_tokens: usize,
    held_out_tokens: usize,
    steps: usize,
    start: Instant,
) -> MedusaReport {
    MedusaReport {
        parameters: vars.iter().map(|v| v.elem_count()).sum(),
        train_tokens,
        held_out_tokens,
        steps,
        seconds: start.elapsed().as_secs_f64(),
        top1: rank_accuracy.iter().map(|r| r[0]).collect(),
        top5: rank_accuracy.iter().map(|r| r.iter().sum()).collect(),
        rank_accuracy: rank_accuracy.to_vec(),
        base_agreement: None,
        base_kl: None,
        vocab_subset: None,
        subset_coverage: None,
    }
}

/// The trained variables as inference heads.
fn export(heads: &[HeadVars], dim: usize, vocab: usize, subset: Option<Vec<u32>>) -> Result<MedusaHeads> {
    let rows = subset.as_ref().map_or(vocab, Vec::len);
    let mut out_heads = Vec::with_capacity(heads.len());
    for (blocks, out) in heads {
        let mut bs = Vec::with_capacity(blocks.len());
        for (w, b) in blocks {
            bs.push(ResBlock {
                w: Linear::from_f32(w.flatten_all()?.to_vec1::<f32>()?, dim, dim)?,
                b: b.to_vec1::<f32>()?,
            });
        }
        out_heads.push(MedusaHead {
            blocks: bs,
            out: Linear::from_f32(out.flatten_all()?.to_vec1::<f32>()?, rows, dim)?,
        });
    }
    Ok(match subset {
        Some(s) => MedusaHeads::pruned(out_heads, dim, vocab, s)?,
        None => MedusaHeads::new(out_heads, dim, vocab)?,
    })
}

/// The `n` most frequent tokens of the records' answers (ties: lower id), at most `vocab`.
pub(crate) fn frequent_tokens(records: &[ChatRecord], n: usize, vocab: usize) -> Vec<u32> {
    let mut counts = vec![0u64; vocab];
    for id in records.iter().flat_map(|r| &r.answer_ids) {
        counts[*id as usize] += 1;
    }
    let mut ids: Vec<u32> = (0..vocab as u32).collect();
    ids.sort_by(|a, b| counts[*b as usize].cmp(&counts[*a as usize]).then(a.cmp(b)));
    ids.truncate(n.min(vocab));
    ids
}

/// For each token, its row in `subset`, or -1.
pub(crate) fn row_of(subset: &[u32], vocab: usize) -> Vec<i32> {
    let mut rows = vec![-1; vocab];
    for (r, &t) in subset.iter().enumerate() {
        rows[t as usize] = r as i32;
    }
    rows
}

/// The base's hidden states over each record's prompt and answer, kept from the position
/// before the answer on (the state decoding reads before each answer token).
fn chat_features(base: &Model, records: &[ChatRecord], max_len: usize) -> Result<Features> {
    let mut features = Features {
        hidden: Vec::new(),
        tokens: Vec::new(),
        from: Vec::new(),
    };
    let dim = base.config().dim;
    for r in records {
        let (mut seq, answer_start) = r.sequence();
        seq.truncate(max_len);
        if answer_start == 0 || seq.len() <= answer_start {
            continue;
        }
        let from = answer_start - 1;
        let mut cache = base.new_cache(seq.len())?;
        let pos: Vec<usize> = (0..seq.len()).collect();
        let input = ForwardInput {
            want_hidden: true,
            logits: ahead_model::transformer::Logits::All,
            ..ForwardInput::causal(&seq, &pos)
        };
        let hidden = base.forward(&input, &mut cache)?.hidden.unwrap_or_default();
        features
            .hidden
            .push(hidden.get(from * dim..).unwrap_or_default().to_vec());
        features.tokens.push(seq);
        features.from.push(from);
    }
    if features.tokens.is_empty() {
        return Err(TrainError::Data("no record has an answer to learn from".into()));
    }
    Ok(features)
}

/// KL(original || trained) per token and top-1 agreement of two bases over `windows`.
fn evaluate_base(original: &Model, trained: &Model, windows: &[Vec<u32>]) -> Result<(f64, f64)> {
    let vocab = original.config().vocab_size;
    let (mut kl, mut agree, mut n) = (0.0f64, 0usize, 0usize);
    for w in windows {
        let pos: Vec<usize> = (0..w.len()).collect();
        let run = |m: &Model| -> Result<Vec<f32>> {
            let mut cache = m.new_cache(w.len())?;
            Ok(m.forward(&ForwardInput::causal(w, &pos), &mut cache)?.logits)
        };
        let (a, b) = (run(original)?, run(trained)?);
        for (ra, rb) in a.chunks_exact(vocab).zip(b.chunks_exact(vocab)) {
            let (pa, pb) = (softmax(ra), softmax(rb));
            kl += pa
                .iter()
                .zip(&pb)
                .filter(|(p, _)| **p > 0.0)
                .map(|(p, q)| p * (p / q.max(1e-30)).ln())
                .sum::<f64>();
            agree += usize::from(argmax(ra)? == argmax(rb)?);
            n += 1;
        }
    }
    Ok((kl / n.max(1) as f64, agree as f64 / n.max(1) as f64))
}

fn softmax(l: &[f32]) -> Vec<f64> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = l.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// The base's final (normalised) hidden state after every token of every window.
fn features(base: &Model, windows: Vec<Vec<u32>>) -> Result<Features> {
    let mut hidden = Vec::with_capacity(windows.len());
    for w in &windows {
        let mut cache = base.new_cache(w.len())?;
        let pos: Vec<usize> = (0..w.len()).collect();
        let input = ForwardInput {
            want_hidden: true,
            logits: ahead_model::transformer::Logits::All,
            ..ForwardInput::causal(w, &pos)
        };
        let out = base.forward(&input, &mut cache)?;
        hidden.push(out.hidden.unwrap_or_default());
    }
    Ok(Features {
        hidden,
        from: vec![0; windows.len()],
        tokens: windows,
    })
}

/// Inputs `[n, dim]` and labels `[n]` for head `i`: hidden state at t, token at t + i + 2 (as
/// its row, for pruned heads), and how many targets were left out for being outside the subset.
fn examples(
    data: &Features,
    chosen: &[usize],
    i: usize,
    dim: usize,
    rows: Option<&[i32]>,
) -> Result<(Tensor, Tensor, usize)> {
    let (mut xs, mut ys, mut outside) = (Vec::new(), Vec::new(), 0);
    for &w in chosen {
        let (tokens, from) = (&data.tokens[w], data.from[w]);
        for t in from..tokens.len().saturating_sub(i + 2) {
            let target = tokens[t + i + 2];
            let label = match rows {
                Some(rows) if rows[target as usize] < 0 => {
                    outside += 1;
                    continue;
                }
                Some(rows) => rows[target as usize] as u32,
                None => target,
            };
            let at = t - from;
            xs.extend_from_slice(&data.hidden[w][at * dim..(at + 1) * dim]);
            ys.push(label);
        }
    }
    let n = ys.len();
    Ok((
        Tensor::from_vec(xs, (n, dim), &Device::Cpu)?,
        Tensor::from_vec(ys, n, &Device::Cpu)?,
        outside,
    ))
}

/// One head on `[n, dim]` inputs: residual SiLU blocks, then the vocabulary projection.
fn head_forward(head: &HeadVars, x: &Tensor) -> candle_core::Result<Tensor> {
    let mut x = x.clone();
    for (w, b) in &head.0 {
        let z = x.matmul(&w.t()?)?.broadcast_add(b)?;
        x = (x + z.silu()?)?;
    }
    x.matmul(&head.1.t()?)
}
