//! An EAGLE head for a chat target, trained on the target's own greedy answers (`chat_data`).
//!
//! The target runs once over every record and gives its final (normed) hidden state at every
//! position: the features. Head row j reads feature j and the embedding of token j + 1 (the
//! target's embedding, frozen) and is trained to predict feature j + 1 (smooth L1, EAGLE's
//! regression loss) and, through the target's classifier restricted to the `vocab_subset`
//! tokens most frequent in the answers (frozen; FR-Spec), token j + 2 (cross-entropy on the
//! target's answer tokens, which are its argmax). Both losses are taken where token j + 2 is an
//! answer token. Held-out records are then drafted from as decoding does: the inference head
//! over the real features of the prefix, chaining on its own predicted features, and each
//! chain is compared with the target's answer.
//!
//! With `feature_layers` the head is fused (EAGLE-3): a real row reads the outputs of those
//! target layers, each RMS-normalized, through a trained `fuse` map, and there is no feature to
//! regress to, so only the token loss trains it, on the real rows and on every chain step (the
//! training-time test, which is what teaches the head to chain on its own outputs).

use std::time::Instant;

use ahead_core::Rng;
use ahead_model::eagle::EagleHead;
use ahead_model::transformer::Linear;
use ahead_model::{ForwardInput, Model, TensorDType};
use candle_core::{Device, Tensor, Var, D};
use candle_nn::Optimizer;
use serde::Serialize;

use crate::chat_data::ChatRecord;
use crate::chat_draft::{examples, runs_of, Example};
use crate::distill::{adamw, cosine_lr, shuffled, Progress};
use crate::error::{Result, TrainError};
use crate::medusa::{frequent_tokens, row_of};
use crate::student::{linear, DraftShape, Student};

/// How to train.
#[derive(Debug, Clone)]
pub struct EagleOptions {
    pub hidden_dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// The classifier scores this many tokens, the most frequent in the training answers.
    pub vocab_subset: usize,
    /// The type the head's matrices are stored and run in (F32 or F16).
    pub dtype: TensorDType,
    pub epochs: usize,
    /// Records per optimizer step.
    pub batch: usize,
    pub learning_rate: f64,
    /// Weight of the token loss beside the feature loss (EAGLE uses 0.1).
    pub token_weight: f64,
    /// Share of the token loss taken against the target's own distribution over the subset
    /// (its logits there, from its features), the rest against its answer token (EAGLE
    /// learns from the distribution; the answer token is what greedy verification accepts).
    pub soft_labels: f64,
    /// Chain steps trained beyond the first (EAGLE-3's training-time test): step s reads the
    /// head's own predicted features, as drafting does; its losses weigh 0.8^s.
    pub chain_steps: usize,
    /// EAGLE-3's fusion: the target layers whose outputs a real row reads (`None`: the
    /// target's final hidden state, EAGLE-1).
    pub feature_layers: Option<Vec<usize>>,
    /// The last share of records, held out and measured on.
    pub held_out: f64,
    /// Longest record trained on (the prompt is cut from its start to fit).
    pub max_len: usize,
    pub seed: u64,
}

impl Default for EagleOptions {
    fn default() -> Self {
        Self {
            hidden_dim: 1536,
            heads: 9,
            kv_heads: 3,
            vocab_subset: 4096,
            dtype: TensorDType::F16,
            epochs: 4,
            batch: 4,
            learning_rate: 1e-3,
            token_weight: 0.1,
            soft_labels: 0.0,
            chain_steps: 1,
            feature_layers: None,
            held_out: 0.05,
            max_len: 768,
            seed: 1,
        }
    }
}

/// What training did and how the head drafts on held-out answers.
#[derive(Debug, Clone, Serialize)]
pub struct EagleReport {
    pub parameters: usize,
    pub train_records: usize,
    pub held_out_records: usize,
    /// Answer positions trained on (labels outside the subset are left out).
    pub train_tokens: usize,
    pub held_out_tokens: usize,
    pub steps: usize,
    /// Seconds for the target's features, and in all.
    pub feature_seconds: f64,
    pub seconds: f64,
    pub vocab_subset: usize,
    /// Held-out share of answer positions where the head's first draft is the target's token.
    pub top1_agreement: f64,
    /// Held-out tokens per greedy verify step with a chain of k drafts, k = 1..=8, each chain
    /// drafted as decoding drafts it (on the head's own predicted features).
    pub expected_accepted_length: Vec<(usize, f64)>,
    /// Mean losses of the last training step: the feature loss and the token cross-entropy.
    pub final_feature_loss: f64,
    pub final_token_loss: f64,
}

/// The trained head and the report.
pub struct TrainedEagle {
    pub head: EagleHead,
    pub report: EagleReport,
}

/// The target's features of one record: its final normed hidden state at every position and,
/// for a fused head, the fused layers' outputs there (`[t, layers x dim]`).
struct Featured {
    ex: Example,
    features: Vec<f32>,
    taps: Option<Vec<f32>>,
}

impl Featured {
    /// What the head reads at real rows `rows` from the target, as decoding hands it over.
    fn target_rows(&self, rows: std::ops::Range<usize>, d: usize) -> &[f32] {
        match &self.taps {
            Some(t) => {
                let w = t.len() / self.ex.tokens.len();
                &t[rows.start * w..rows.end * w]
            }
            None => &self.features[rows.start * d..rows.end * d],
        }
    }
}

/// Trains an EAGLE head for `target` on its chat answers.
pub fn train_eagle(
    target: &Model,
    records: &[ChatRecord],
    opts: &EagleOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainedEagle> {
    let start = Instant::now();
    let tcfg = target.config();
    if opts.batch == 0 || opts.epochs == 0 || opts.vocab_subset == 0 || opts.max_len < 3 {
        return Err(TrainError::Options(
            "need batch, epochs and vocab_subset above 0, and max_len of at least 3".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.soft_labels) {
        return Err(TrainError::Options(format!(
            "the soft-label share must be in [0, 1], not {}",
            opts.soft_labels
        )));
    }
    if !matches!(opts.dtype, TensorDType::F32 | TensorDType::F16) {
        return Err(TrainError::Options(format!(
            "an EAGLE head is stored as f32 or f16, not {:?}",
            opts.dtype
        )));
    }
    let cfg = DraftShape {
        dim: tcfg.dim,
        hidden_dim: opts.hidden_dim,
        n_layers: 1,
        n_heads: opts.heads,
        n_kv_heads: opts.kv_heads,
    }
    .config(tcfg)?;
    let (train_records, held_records) = crate::chat_data::split_held_out(records, opts.held_out)?;
    let subset = frequent_tokens(train_records, opts.vocab_subset, tcfg.vocab_size);
    let rows = row_of(&subset, tcfg.vocab_size);
    let layers = opts.feature_layers.as_deref();
    if let Some(l) = layers {
        if l.is_empty() || l.windows(2).any(|w| w[0] >= w[1]) || l.iter().any(|&x| x >= tcfg.n_layers) {
            return Err(TrainError::Options(format!(
                "fused layers {l:?} must be ascending layers of the target's {}",
                tcfg.n_layers
            )));
        }
    }
    let train = featured(target, examples(train_records, &rows, opts.max_len), layers)?;
    let held_out = featured(target, examples(held_records, &rows, opts.max_len), layers)?;
    let feature_seconds = start.elapsed().as_secs_f64();

    // The head reads tokens and scores them with the target's own tables, exactly as stored.
    let w = target.weights();
    let student = Student::over_embedding(
        cfg.clone(),
        w.embedding.to_f32()?,
        w.lm_head.as_ref().map(Linear::to_f32).transpose()?,
        w.norm.clone(),
        opts.seed,
    )?;
    let classifier = student.classifier_rows(&subset)?;
    let d = tcfg.dim;
    let fc = fc_init(d, 2 * d, opts.seed)?;
    let fuse = layers
        .map(|l| fc_init(d, l.len() * d, opts.seed ^ 0xf05e))
        .transpose()?;
    let mut vars = student.vars();
    vars.push(fc.clone());
    vars.extend(fuse.clone());
    let parameters = vars.iter().map(|v| v.elem_count()).sum();
    let mut optimizer = adamw(vars, opts.learning_rate)?;
    let steps = train.len().div_ceil(opts.batch) * opts.epochs;
    let mut rng = Rng::new(opts.seed);
    let (mut step, mut last) = (0, (f64::NAN, f64::NAN));
    for _ in 0..opts.epochs {
        for chunk in shuffled(train.len(), &mut rng).chunks(opts.batch) {
            optimizer.set_learning_rate(cosine_lr(opts.learning_rate, step, steps));
            let mut losses = Vec::with_capacity(chunk.len());
            let (mut feature_sum, mut token_sum) = (0.0, 0.0);
            for &i in chunk {
                let passes = losses_of(&student, &fc, fuse.as_ref(), &classifier, &train[i], d, opts)?;
                let Some((feature, token)) = passes.first() else {
                    continue;
                };
                feature_sum += f64::from(feature.to_scalar::<f32>()?);
                token_sum += f64::from(token.to_scalar::<f32>()?);
                let mut loss = Tensor::new(0f32, &Device::Cpu)?;
                for (s, (feature, token)) in passes.into_iter().enumerate() {
                    // A fused head has no feature to regress to: the tokens alone train it.
                    let step = match fuse {
                        Some(_) => token,
                        None => (feature + (token * opts.token_weight)?)?,
                    };
                    loss = (loss + (step * CHAIN_DECAY.powi(s as i32))?)?;
                }
                losses.push(loss);
            }
            if losses.is_empty() {
                continue;
            }
            let n = losses.len() as f64;
            let loss = Tensor::stack(&losses, 0)?.mean_all()?;
            optimizer.backward_step(&loss)?;
            step += 1;
            last = (feature_sum / n, token_sum / n);
            on_progress(Progress {
                step,
                steps,
                kl: last.1,
                elapsed_s: start.elapsed().as_secs_f64(),
            });
        }
    }
    let mut head = to_head(target, &student, &fc, &subset, opts.dtype)?;
    if let (Some(layers), Some(fuse)) = (layers, &fuse) {
        head = head.with_fusion(target, layers.to_vec(), to_linear(fuse, opts.dtype)?)?;
    }
    let runs = chain_runs(&head, &held_out, 8)?;
    let report = EagleReport {
        parameters,
        train_records: train_records.len(),
        held_out_records: held_records.len(),
        train_tokens: train.iter().map(|f| f.ex.labels.len()).sum(),
        held_out_tokens: held_records.iter().map(|r| r.answer_ids.len()).sum(),
        steps: step,
        feature_seconds,
        seconds: start.elapsed().as_secs_f64(),
        vocab_subset: subset.len(),
        top1_agreement: runs.iter().filter(|&&r| r > 0).count() as f64 / runs.len().max(1) as f64,
        expected_accepted_length: (1..=8)
            .map(|k| {
                let sum: usize = runs.iter().map(|&r| 1 + r.min(k)).sum();
                (k, sum as f64 / runs.len().max(1) as f64)
            })
            .collect(),
        final_feature_loss: last.0,
        final_token_loss: last.1,
    };
    Ok(TrainedEagle { head, report })
}

/// Each example with the target's features at every position (and the outputs of `layers`).
fn featured(target: &Model, examples: Vec<Example>, layers: Option<&[usize]>) -> Result<Vec<Featured>> {
    let cfg = target.config();
    let last = cfg.n_layers - 1;
    // The final state is the last layer's output normed: tapping it gives both in one forward.
    let taps: Vec<usize> = match layers {
        Some(l) if l.last() == Some(&last) => l.to_vec(),
        Some(l) => l.iter().copied().chain([last]).collect(),
        None => Vec::new(),
    };
    let d = cfg.dim;
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let n = ex.tokens.len();
        let positions: Vec<usize> = (0..n).collect();
        let mut cache = target.new_cache(n)?;
        let input = ForwardInput {
            want_hidden: true,
            taps: &taps,
            logits: ahead_model::transformer::Logits::None,
            ..ForwardInput::causal(&ex.tokens, &positions)
        };
        let hidden = target
            .forward(&input, &mut cache)?
            .hidden
            .ok_or_else(|| TrainError::Data("the target returned no hidden states".into()))?;
        let Some(layers) = layers else {
            out.push(Featured {
                ex,
                features: hidden,
                taps: None,
            });
            continue;
        };
        let w = taps.len() * d;
        let mut features = vec![0f32; n * d];
        let mut fused = Vec::with_capacity(n * layers.len() * d);
        for (row, f) in hidden.chunks_exact(w).zip(features.chunks_exact_mut(d)) {
            ahead_model::transformer::kernels::rms_norm(
                &row[w - d..],
                &target.weights().norm,
                cfg.rms_eps,
                f,
            );
            fused.extend_from_slice(&row[..layers.len() * d]);
        }
        out.push(Featured {
            ex,
            features,
            taps: Some(fused),
        });
    }
    Ok(out)
}

/// A `[rows, cols]` map, uniform by fan-in, reproducible from `seed` (`fc`: `[dim, 2 dim]`;
/// a fused head's `fuse`: `[dim, layers x dim]`).
fn fc_init(rows: usize, cols: usize, seed: u64) -> Result<Var> {
    let mut rng = Rng::new(seed ^ 0xfc);
    let bound = (3.0 / cols as f64).sqrt();
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Var::from_tensor(&Tensor::from_vec(
        v,
        (rows, cols),
        &Device::Cpu,
    )?)?)
}

/// A trained matrix as the inference head stores it.
fn to_linear(v: &Var, dtype: TensorDType) -> Result<Linear> {
    let (rows, cols) = v.dims2()?;
    Ok(Linear::quantize(
        &v.flatten_all()?.to_vec1::<f32>()?,
        rows,
        cols,
        dtype,
    )?)
}

/// Real rows' features of a fused head: each layer's output RMS-normalized (no weight, as
/// `EagleHead::real_features`), then `fuse`.
fn fused_features(taps: &[f32], t: usize, d: usize, fuse: &Var, eps: f32) -> Result<Tensor> {
    let n = taps.len() / (t * d);
    let x = Tensor::from_slice(taps, (t, n, d), &Device::Cpu)?;
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + f64::from(eps))?.sqrt()?;
    let normed = x.broadcast_div(&rms)?.reshape((t, n * d))?;
    Ok(normed.matmul(&fuse.t()?)?)
}

/// How much less each later chain step's losses weigh (EAGLE-3's 0.8).
const CHAIN_DECAY: f64 = 0.8;

/// Per pass (the real rows, then `chain_steps` chain steps), the feature loss (smooth L1, mean
/// over values) and the token cross-entropy of one record, over rows whose predicted token is a
/// labelled answer token; passes with no such row are left out.
fn losses_of(
    student: &Student,
    fc: &Var,
    fuse: Option<&Var>,
    classifier: &Tensor,
    f: &Featured,
    d: usize,
    opts: &EagleOptions,
) -> Result<Vec<(Tensor, Tensor)>> {
    let chain_steps = opts.chain_steps;
    let ex = &f.ex;
    let t = ex.tokens.len();
    let dev = Device::Cpu;
    let features = Tensor::from_slice(&f.features, (t, d), &dev)?;
    let real = match (fuse, &f.taps) {
        (Some(fuse), Some(taps)) => fused_features(taps, t, d, fuse, student.config().rms_eps)?,
        _ => features.clone(),
    };
    let mut kv = Vec::new();
    let mut previous = real.narrow(0, 0, t.saturating_sub(1))?.unsqueeze(0)?;
    let mut out = Vec::new();
    // Pass s has row j at position j + s: it reads the feature predicted for j + s (the real
    // one in pass 0) and token j + s + 1, and predicts feature j + s + 1 and token j + s + 2.
    for s in 0..=chain_steps {
        let n = t.saturating_sub(1 + s);
        if n == 0 {
            break;
        }
        let next = Tensor::from_slice(&ex.tokens[s + 1..s + 1 + n], (1, n), &dev)?;
        let input = Tensor::cat(&[previous.narrow(1, 0, n)?, student.embed(&next)?], 2)?;
        let predicted = student.blocks_pass(linear(&input, fc)?, &mut kv)?;
        // Label position p - 1 holds the real feature predicting token p; row p - s - 2 of this
        // pass predicts both.
        let (rows, labels): (Vec<u32>, Vec<u32>) = ex
            .positions
            .iter()
            .zip(&ex.labels)
            .filter(|(&p, _)| p as usize > s)
            .map(|(&p, &l)| (p - 1 - s as u32, l))
            .unzip();
        if !rows.is_empty() {
            let at = Tensor::from_slice(&rows, rows.len(), &dev)?;
            let after: Vec<u32> = rows.iter().map(|r| r + 1 + s as u32).collect();
            let chosen = predicted.squeeze(0)?.index_select(&at, 0)?;
            let wanted = features.index_select(&Tensor::from_vec(after, rows.len(), &dev)?, 0)?;
            let diff = (chosen.clone() - &wanted)?.abs()?;
            let small = diff.clamp(0.0, 1.0)?;
            // Smooth L1: d^2 / 2 below 1, d - 1/2 above.
            let feature = ((small.sqr()? * 0.5)? + (diff - small)?)?.mean_all()?;
            let logits = chosen.matmul(&classifier.t()?)?;
            let labels = Tensor::from_slice(&labels, labels.len(), &dev)?;
            let hard = candle_nn::loss::cross_entropy(&logits, &labels)?;
            let token = if opts.soft_labels > 0.0 {
                // The target's logits on the subset, from the feature that produced its token.
                let target = candle_nn::ops::softmax(&wanted.matmul(&classifier.t()?)?, D::Minus1)?;
                let log_q = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                let soft = (target * log_q)?.sum(D::Minus1)?.mean_all()?.neg()?;
                ((hard * (1.0 - opts.soft_labels))? + (soft * opts.soft_labels)?)?
            } else {
                hard
            };
            out.push((feature, token));
        }
        previous = predicted;
    }
    Ok(out)
}

/// The inference head of the trained weights, its matrices stored as `dtype`.
fn to_head(
    target: &Model,
    student: &Student,
    fc: &Var,
    subset: &[u32],
    dtype: TensorDType,
) -> Result<EagleHead> {
    let model = student.to_model()?;
    let convert =
        |l: &Linear| -> Result<Linear> { Ok(Linear::quantize(&l.to_f32()?, l.rows(), l.cols(), dtype)?) };
    let l = &model.weights().layers[0];
    let layer = ahead_model::transformer::LayerWeights {
        wq: convert(&l.wq)?,
        wk: convert(&l.wk)?,
        wv: convert(&l.wv)?,
        wo: convert(&l.wo)?,
        w1: convert(&l.w1)?,
        w2: convert(&l.w2)?,
        w3: convert(&l.w3)?,
        ..l.clone()
    };
    Ok(EagleHead::new(
        target,
        student.config(),
        to_linear(fc, dtype)?,
        layer,
        model.weights().norm.clone(),
        Some(subset),
    )?)
}

/// For every answer position of every record, how many tokens a greedy chain of up to `k`
/// drafts from the head matches, drafted as decoding does: the head's cache holds the real
/// rows of the prefix, and each chain step reads the previous step's predicted feature.
fn chain_runs(head: &EagleHead, records: &[Featured], k: usize) -> Result<Vec<usize>> {
    let d = head.config().dim;
    let subset = head.classifier_tokens();
    let token_of = |row: u32| subset.map_or(row, |s| s[row as usize]);
    let mut runs = Vec::new();
    for f in records {
        let tokens = &f.ex.tokens;
        let t = tokens.len();
        let answer_start = t - f.ex.all_labels.len();
        if answer_start < 2 {
            continue;
        }
        let mut cache = head.new_cache(t + k)?;
        // Real rows 0..m-1 are in the cache when the pending token sits at position m.
        let first = answer_start - 1;
        let fed: Vec<usize> = (0..first - 1).collect();
        if !fed.is_empty() {
            let real = head.real_features(f.target_rows(0..fed.len(), d))?;
            head.forward(&real, &tokens[1..first], &fed, &mut cache)?;
        }
        for m in first..t - 1 {
            let row = m - 1;
            let out = head.forward(
                &head.real_features(f.target_rows(row..row + 1, d))?,
                &tokens[m..=m],
                &[row],
                &mut cache,
            )?;
            let real = cache.len();
            let (mut logits, mut feature) = (out.last().to_vec(), hidden_of(&out)?);
            let mut hits = Vec::new();
            for i in 0..k.min(t - 1 - m) {
                let draft = token_of(ahead_core::sampling::argmax(&logits)?);
                hits.push(draft == tokens[m + 1 + i]);
                if draft != tokens[m + 1 + i] {
                    break;
                }
                let out = head.forward(&feature, &[draft], &[m + i], &mut cache)?;
                logits = out.last().to_vec();
                feature = hidden_of(&out)?;
            }
            cache.truncate(real)?;
            runs.push(runs_of(&hits).first().copied().unwrap_or(0));
        }
    }
    Ok(runs)
}

/// The last row's predicted feature.
fn hidden_of(out: &ahead_model::ForwardOutput) -> Result<Vec<f32>> {
    let h = out
        .hidden
        .as_ref()
        .ok_or_else(|| TrainError::Data("the head returned no features".into()))?;
    Ok(h[h.len() - out.hidden_dim..].to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ahead_model::transformer::synthetic::{random_model, tiny_config};
    use ahead_model::transformer::Architecture;

    /// The training passes compute what drafting computes: pass 0 row j is the head's output
    /// after real rows 0..=j, and chain pass 1 row j is the chain row drafted after it (the
    /// predicted feature and the next token, one position on).
    #[test]
    fn training_passes_match_the_inference_head_row_for_row() {
        let target = random_model(&tiny_config(Architecture::Llama, 50), TensorDType::F32, 3).unwrap();
        let tcfg = target.config();
        let d = tcfg.dim;
        let cfg = DraftShape {
            dim: d,
            hidden_dim: 40,
            n_layers: 1,
            n_heads: 4,
            n_kv_heads: 2,
        }
        .config(tcfg)
        .unwrap();
        let w = target.weights();
        let student = Student::over_embedding(
            cfg,
            w.embedding.to_f32().unwrap(),
            w.lm_head.as_ref().map(|l| l.to_f32().unwrap()),
            w.norm.clone(),
            7,
        )
        .unwrap();
        let fc = fc_init(d, 2 * d, 7).unwrap();
        let tokens: Vec<u32> = vec![3, 17, 4, 42, 8, 8, 29, 1];
        let t = tokens.len();
        let features: Vec<f32> = (0..t * d).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let dev = Device::Cpu;
        let f = Tensor::from_slice(&features, (t, d), &dev).unwrap();
        let mut kv = Vec::new();
        let mut passes = Vec::new();
        let mut previous = f.narrow(0, 0, t - 1).unwrap().unsqueeze(0).unwrap();
        for s in 0..2 {
            let n = t - 1 - s;
            let next = Tensor::from_slice(&tokens[s + 1..s + 1 + n], (1, n), &dev).unwrap();
            let input = Tensor::cat(
                &[previous.narrow(1, 0, n).unwrap(), student.embed(&next).unwrap()],
                2,
            )
            .unwrap();
            let out = student
                .blocks_pass(linear(&input, &fc).unwrap(), &mut kv)
                .unwrap();
            passes.push(out.squeeze(0).unwrap().to_vec2::<f32>().unwrap());
            previous = out;
        }
        let all: Vec<u32> = (0..50).collect();
        let head = to_head(&target, &student, &fc, &all, TensorDType::F32).unwrap();
        for j in 0..t - 2 {
            let mut cache = head.new_cache(t).unwrap();
            let pos: Vec<usize> = (0..=j).collect();
            let real = head
                .forward(&features[..(j + 1) * d], &tokens[1..=j + 1], &pos, &mut cache)
                .unwrap();
            let predicted = hidden_of(&real).unwrap();
            ahead_testutil::assert_close(&predicted, &passes[0][j], ahead_testutil::F32, "pass 0");
            let chain = head
                .forward(&predicted, &[tokens[j + 2]], &[j + 1], &mut cache)
                .unwrap();
            ahead_testutil::assert_close(
                &hidden_of(&chain).unwrap(),
                &passes[1][j],
                ahead_testutil::F32,
                "pass 1",
            );
        }
    }

    /// Training fuses a real row's layer outputs as the inference head does.
    #[test]
    fn training_fuses_layer_outputs_as_the_inference_head() {
        let target = random_model(&tiny_config(Architecture::Llama, 50), TensorDType::F32, 3).unwrap();
        let d = target.config().dim;
        let head = ahead_model::transformer::synthetic::random_eagle_head(&target, 5, None).unwrap();
        let fuse = fc_init(d, 2 * d, 9).unwrap();
        let head = head
            .with_fusion(&target, vec![0, 1], to_linear(&fuse, TensorDType::F32).unwrap())
            .unwrap();
        let t = 3;
        let taps: Vec<f32> = (0..t * 2 * d)
            .map(|i| ((i * 13) % 29) as f32 * 3.0 - 40.0)
            .collect();
        let eps = head.config().rms_eps;
        let trained = fused_features(&taps, t, d, &fuse, eps)
            .unwrap()
            .flatten_all()
            .unwrap();
        let inference = head.real_features(&taps).unwrap();
        ahead_testutil::assert_close(
            &inference,
            &trained.to_vec1::<f32>().unwrap(),
            ahead_testutil::F32,
            "fused",
        );
    }
}
