//! A draft model for a chat target, trained on the target's own greedy answers (`chat_data`).
//!
//! The draft reads and scores tokens through the target's own embedding and classifier
//! (frozen; tied when the target's are), starts from the target's final norm, and learns fresh layers of
//! the target's width. Its loss is the cross-entropy of the target's next answer token (the
//! answers are the target's argmax, so these hard labels are exactly what greedy verification
//! accepts) over the `vocab_subset` tokens most frequent in the training answers (FR-Spec): the
//! classifier it drafts with. Held-out answers measure it as decoding will: how often its top
//! token is the target's, and the run of agreements from each position (a chain of k drafts
//! yields 1 + min(run, k) tokens at greedy).

use std::time::Instant;

use ahead_core::Rng;
use ahead_model::{Model, TensorDType};
use candle_core::{Device, Tensor, D};
use candle_nn::Optimizer;
use serde::Serialize;

use crate::chat_data::ChatRecord;
use crate::distill::{adamw, cosine_lr, shuffled, Progress};
use crate::error::{Result, TrainError};
use crate::medusa::{frequent_tokens, row_of};
use crate::student::{DraftShape, Student};

/// How to train.
#[derive(Debug, Clone)]
pub struct ChatDraftOptions {
    pub layers: usize,
    pub hidden_dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// The classifier scores this many tokens, the most frequent in the training answers
    /// (at most the vocabulary).
    pub vocab_subset: usize,
    /// The type the embedding is written in: training sees its values after that rounding,
    /// the values the draft will run with.
    pub embedding_dtype: TensorDType,
    pub epochs: usize,
    /// Records per optimizer step.
    pub batch: usize,
    pub learning_rate: f64,
    /// The last share of records, held out and measured on.
    pub held_out: f64,
    /// Longest record trained on (the prompt is cut from its start to fit).
    pub max_len: usize,
    pub seed: u64,
}

impl Default for ChatDraftOptions {
    fn default() -> Self {
        Self {
            layers: 1,
            hidden_dim: 1536,
            heads: 9,
            kv_heads: 3,
            vocab_subset: 4096,
            embedding_dtype: TensorDType::Q8_0,
            epochs: 2,
            batch: 8,
            learning_rate: 1e-3,
            held_out: 0.05,
            max_len: 768,
            seed: 1,
        }
    }
}

/// What training did and what the draft achieves on held-out answers.
#[derive(Debug, Clone, Serialize)]
pub struct ChatDraftReport {
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub train_records: usize,
    pub held_out_records: usize,
    /// Answer positions trained on (labels outside the subset are left out).
    pub train_tokens: usize,
    pub held_out_tokens: usize,
    pub steps: usize,
    pub seconds: f64,
    pub vocab_subset: usize,
    /// Share of held-out answer tokens the subset holds.
    pub subset_coverage: f64,
    /// Held-out share of answer positions where the draft's top token is the target's.
    pub top1_agreement: f64,
    /// Held-out tokens per greedy verify step with a chain of k drafts, k = 1..=8, from the
    /// measured runs of agreement (not assuming independent positions).
    pub expected_accepted_length: Vec<(usize, f64)>,
    /// The same held-out measures with the classifier cut to the most frequent part of the
    /// subset (the last entry is the whole subset): a smaller classifier costs less per
    /// drafted token and misses more tokens.
    pub by_subset: Vec<SubsetScore>,
    /// Mean cross-entropy of the last training step, nats.
    pub final_loss: f64,
}

/// Held-out measures of the draft with its classifier over the `tokens` most frequent tokens.
#[derive(Debug, Clone, Serialize)]
pub struct SubsetScore {
    pub tokens: usize,
    pub top1_agreement: f64,
    /// Tokens per greedy verify step with a chain of k drafts, k = 1..=8.
    pub expected_accepted_length: Vec<(usize, f64)>,
}

/// The trained draft (full classifier, tied to the target's embedding), the subset its
/// classifier is meant to score, and the report.
pub struct TrainedChatDraft {
    pub model: Model,
    pub token_subset: Vec<u32>,
    pub report: ChatDraftReport,
}

/// Trains a draft for `target` on its chat answers.
pub fn train_draft_on_chat(
    target: &Model,
    records: &[ChatRecord],
    opts: &ChatDraftOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<TrainedChatDraft> {
    let start = Instant::now();
    let tcfg = target.config();
    if opts.layers == 0 || opts.batch == 0 || opts.epochs == 0 || opts.vocab_subset == 0 || opts.max_len < 2 {
        return Err(TrainError::Options(
            "need layers, batch, epochs and vocab_subset above 0, and max_len of at least 2".into(),
        ));
    }
    // The target's width (the draft shares its tables), vocabulary, context and RoPE base;
    // interleaved RoPE (GGUF's llama layout) of its own.
    let cfg = DraftShape {
        dim: tcfg.dim,
        hidden_dim: opts.hidden_dim,
        n_layers: opts.layers,
        n_heads: opts.heads,
        n_kv_heads: opts.kv_heads,
    }
    .config(tcfg)?;
    let (train_records, held_records) = crate::chat_data::split_held_out(records, opts.held_out)?;
    let subset = frequent_tokens(train_records, opts.vocab_subset, tcfg.vocab_size);
    let rows = row_of(&subset, tcfg.vocab_size);

    // The draft reads and scores tokens as the target does: its embedding and classifier
    // (tied or not), rounded as the draft's file will store them.
    let w = target.weights();
    let round = |m: &ahead_model::transformer::Linear| {
        rounded(&m.to_f32()?, tcfg.vocab_size, tcfg.dim, opts.embedding_dtype)
    };
    let embedding = round(&w.embedding)?;
    let lm_head = w.lm_head.as_ref().map(round).transpose()?;
    let tied = lm_head.is_none();
    let student = Student::over_embedding(cfg.clone(), embedding, lm_head, w.norm.clone(), opts.seed)?;
    let classifier = student.classifier_rows(&subset)?;
    let vars = student.vars();
    let trainable_parameters = vars.iter().map(|v| v.elem_count()).sum();
    let mut optimizer = adamw(vars, opts.learning_rate)?;
    let train = examples(train_records, &rows, opts.max_len);
    let held_out = examples(held_records, &rows, opts.max_len);
    let steps = train.len().div_ceil(opts.batch) * opts.epochs;
    let mut rng = Rng::new(opts.seed);
    let (mut step, mut final_loss) = (0, f64::NAN);
    for _ in 0..opts.epochs {
        for chunk in shuffled(train.len(), &mut rng).chunks(opts.batch) {
            optimizer.set_learning_rate(cosine_lr(opts.learning_rate, step, steps));
            let mut losses = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let ex = &train[i];
                if ex.labels.is_empty() {
                    continue;
                }
                let logits = answer_logits(&student, &classifier, ex)?;
                let labels = Tensor::from_vec(ex.labels.clone(), ex.labels.len(), &Device::Cpu)?;
                losses.push(candle_nn::loss::cross_entropy(&logits, &labels)?);
            }
            if losses.is_empty() {
                continue;
            }
            let loss = (Tensor::stack(&losses, 0)?.mean_all())?;
            optimizer.backward_step(&loss)?;
            step += 1;
            final_loss = f64::from(loss.to_scalar::<f32>()?);
            on_progress(Progress {
                step,
                steps,
                kl: final_loss,
                elapsed_s: start.elapsed().as_secs_f64(),
            });
        }
    }
    let by_subset = measure(&student, &classifier, &held_out, &candidate_sizes(subset.len()))?;
    let full = by_subset
        .last()
        .cloned()
        .ok_or_else(|| TrainError::Data("nothing was measured".into()))?;
    let answer_tokens = |r: &[ChatRecord]| r.iter().map(|r| r.answer_ids.len()).sum::<usize>();
    let inside = held_records
        .iter()
        .flat_map(|r| &r.answer_ids)
        .filter(|&&t| rows[t as usize] >= 0)
        .count();
    let model = student.to_model()?;
    let report = ChatDraftReport {
        // The frozen embedding (and classifier) count as the draft's too: they are in the file.
        parameters: trainable_parameters + tcfg.vocab_size * tcfg.dim * if tied { 1 } else { 2 },
        trainable_parameters,
        train_records: train_records.len(),
        held_out_records: held_records.len(),
        train_tokens: train.iter().map(|e| e.labels.len()).sum(),
        held_out_tokens: answer_tokens(held_records),
        steps: step,
        seconds: start.elapsed().as_secs_f64(),
        vocab_subset: subset.len(),
        subset_coverage: inside as f64 / answer_tokens(held_records).max(1) as f64,
        top1_agreement: full.top1_agreement,
        expected_accepted_length: full.expected_accepted_length,
        by_subset,
        final_loss,
    };
    Ok(TrainedChatDraft {
        model,
        token_subset: subset,
        report,
    })
}

/// `values` after a round trip through `dtype` (what a file of that type gives back).
fn rounded(values: &[f32], rows: usize, cols: usize, dtype: TensorDType) -> Result<Vec<f32>> {
    Ok(ahead_model::transformer::Linear::quantize(values, rows, cols, dtype)?.to_f32()?)
}

/// One record as the trainer sees it: its tokens (cut to fit), the positions whose next token
/// is an answer token inside the subset, and those tokens' subset rows.
pub(crate) struct Example {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    pub labels: Vec<u32>,
    /// Every answer position's label row, or `None` outside the subset (for measuring runs).
    pub all_labels: Vec<Option<u32>>,
}

pub(crate) fn examples(records: &[ChatRecord], rows: &[i32], max_len: usize) -> Vec<Example> {
    records
        .iter()
        .filter(|r| !r.answer_ids.is_empty())
        .map(|r| {
            let (mut seq, mut answer_start) = r.sequence();
            if seq.len() > max_len {
                let cut = (seq.len() - max_len).min(answer_start.saturating_sub(1));
                seq.drain(..cut);
                answer_start -= cut;
                seq.truncate(max_len);
            }
            let (mut positions, mut labels, mut all_labels) = (Vec::new(), Vec::new(), Vec::new());
            for p in answer_start.max(1)..seq.len() {
                let row = rows[seq[p] as usize];
                all_labels.push((row >= 0).then_some(row as u32));
                if row >= 0 {
                    positions.push((p - 1) as u32);
                    labels.push(row as u32);
                }
            }
            Example {
                tokens: seq,
                positions,
                labels,
                all_labels,
            }
        })
        .collect()
}

/// Subset logits `[positions, subset]` at the example's labelled positions.
fn answer_logits(student: &Student, classifier: &Tensor, ex: &Example) -> Result<Tensor> {
    let ids = Tensor::from_vec(ex.tokens.clone(), (1, ex.tokens.len()), &Device::Cpu)?;
    let hidden = student.hidden(&ids)?.squeeze(0)?;
    let at = Tensor::from_vec(ex.positions.clone(), ex.positions.len(), &Device::Cpu)?;
    Ok(hidden.index_select(&at, 0)?.matmul(&classifier.t()?)?)
}

/// Held-out top-1 agreement over every answer position (outside the subset: a miss), and the
/// run of consecutive agreements starting at each answer position.
fn measure(
    student: &Student,
    classifier: &Tensor,
    held_out: &[Example],
    sizes: &[usize],
) -> Result<Vec<SubsetScore>> {
    // Per candidate size: agreements, positions, runs.
    let mut tallies: Vec<(usize, usize, Vec<usize>)> = vec![(0, 0, Vec::new()); sizes.len()];
    for ex in held_out {
        if ex.all_labels.is_empty() {
            continue;
        }
        let ids = Tensor::from_vec(ex.tokens.clone(), (1, ex.tokens.len()), &Device::Cpu)?;
        let hidden = student.hidden(&ids)?.squeeze(0)?;
        let first = ex.tokens.len() - ex.all_labels.len() - 1;
        let n = ex.all_labels.len();
        let logits = hidden.narrow(0, first, n)?.matmul(&classifier.t()?)?;
        for (&size, tally) in sizes.iter().zip(tallies.iter_mut()) {
            // The subset's rows are most frequent first: the first `size` are that subset.
            let top: Vec<u32> = logits.narrow(1, 0, size)?.argmax(D::Minus1)?.to_vec1()?;
            let hits: Vec<bool> = top
                .iter()
                .zip(&ex.all_labels)
                .map(|(t, l)| Some(*t) == *l)
                .collect();
            tally.0 += hits.iter().filter(|&&h| h).count();
            tally.1 += n;
            tally.2.extend(runs_of(&hits));
        }
    }
    Ok(sizes
        .iter()
        .zip(tallies)
        .map(|(&tokens, (agree, total, runs))| SubsetScore {
            tokens,
            top1_agreement: agree as f64 / total.max(1) as f64,
            expected_accepted_length: (1..=8)
                .map(|k| {
                    let sum: usize = runs.iter().map(|&r| 1 + r.min(k)).sum();
                    (k, sum as f64 / runs.len().max(1) as f64)
                })
                .collect(),
        })
        .collect())
}

/// The classifier sizes measured: the trained subset and its most frequent half, quarter and
/// eighth (at least 64 tokens).
fn candidate_sizes(subset: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = [8, 4, 2, 1]
        .iter()
        .map(|d| subset / d)
        .filter(|&n| n >= 64.min(subset))
        .collect();
    sizes.dedup();
    sizes
}

/// For each position, how many consecutive hits start there.
pub(crate) fn runs_of(hits: &[bool]) -> Vec<usize> {
    let mut run = 0;
    let mut from_end: Vec<usize> = hits
        .iter()
        .rev()
        .map(|&h| {
            run = if h { run + 1 } else { 0 };
            run
        })
        .collect();
    from_end.reverse();
    from_end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_sizes_halve_down_to_an_eighth() {
        assert_eq!(candidate_sizes(4096), vec![512, 1024, 2048, 4096]);
        assert_eq!(candidate_sizes(256), vec![64, 128, 256]);
        assert_eq!(candidate_sizes(10), vec![10]);
    }

    #[test]
    fn runs_count_consecutive_agreements_from_each_position() {
        assert_eq!(runs_of(&[true, true, false, true]), vec![2, 1, 0, 1]);
        assert_eq!(runs_of(&[]), Vec::<usize>::new());
    }

    #[test]
    fn a_long_record_loses_its_prompt_start_and_keeps_its_answer() {
        let record = ChatRecord {
            kind: "x".into(),
            prompt_ids: (0..10).collect(),
            answer_ids: vec![20, 21, 22],
        };
        // Token 21 is outside the subset: trained on nowhere, a miss when measuring.
        let mut rows = vec![-1; 32];
        for (r, t) in [20usize, 22].iter().enumerate() {
            rows[*t] = r as i32;
        }
        let ex = &examples(&[record], &rows, 8)[0];
        assert_eq!(ex.tokens, vec![5, 6, 7, 8, 9, 20, 21, 22]);
        // The hidden state at position 4 (token 9) predicts 20, at 6 (token 21) predicts 22.
        assert_eq!(ex.positions, vec![4, 6]);
        assert_eq!(ex.labels, vec![0, 1]);
        assert_eq!(ex.all_labels, vec![Some(0), None, Some(1)]);
    }
}
