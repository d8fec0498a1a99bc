//! The step loop: propose -> one verify forward with a tree mask -> exact acceptance -> compact
//! the cache to the accepted path -> commit tokens one at a time.
//!
//! Invariant between steps: `history` is the prompt plus every committed token, and the target
//! cache holds all of `history` but its last token (the "pending" token, fed at the start of the
//! next verify forward). Plain decoding is the same loop with empty drafts.

use std::time::Instant;

use ahead_core::sampling::{apply_repetition_penalty, argmax, warp};
use ahead_core::spec::{accept, accept_typical, Controller, TokenTree};
use ahead_core::{Distribution, Rng, SamplingParams};
use ahead_model::{AttentionMask, ForwardInput, KvCache, Model, Tokenizer};

use crate::commit::{Committer, StopRules};
use crate::error::{EngineError, Result};
use crate::output::{FinishReason, Generation, Stats};
use crate::params::{GenerateParams, MedusaAcceptance};
use crate::spec::Proposer;

/// Called after every step with the target cache and the committed history (tests check the
/// cache against a fresh prefill of `history` minus its pending last token).
pub type StepInspector<'a, 'f> = &'a mut (dyn FnMut(&KvCache, &[u32]) + 'f);

/// What one generation runs with.
pub(crate) struct Decoder<'a, 'f> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    pub proposer: &'a mut dyn Proposer,
    pub controller: Controller,
    /// How trees are verified when sampling (greedy is always exact).
    pub acceptance: MedusaAcceptance,
    pub inspect: Option<StepInspector<'a, 'f>>,
    /// Checked before every step: set, generation ends with `FinishReason::Cancelled`.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Counters kept while decoding.
#[derive(Default)]
struct Counters {
    forwards: usize,
    drafted: usize,
    accepted: usize,
    /// Per draft depth (1 = the token after the pending one): steps that drafted that deep,
    /// and steps whose accepted path reached it.
    by_depth: Vec<(usize, usize)>,
}

impl Decoder<'_, '_> {
    pub fn run(
        &mut self,
        prompt_ids: Vec<u32>,
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let context = self.model.config().max_seq_len;
        let n = prompt_ids.len();
        if n == 0 || n >= context {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {n} tokens; it must have at least 1 and leave room in the context of {context}"
            )));
        }
        // Prompt plus completion never exceed the context.
        let max_new = params.max_tokens.min(context - n);
        let capacity = (n + max_new + self.controller.max_k() + self.proposer.max_side_rows()).min(context);
        let mut cache = self.model.new_cache(capacity)?;
        let rules = StopRules {
            eos: self.tokenizer.eos_ids().to_vec(),
            ignore_eos: params.ignore_eos,
            stop: params.stop.clone(),
            max_tokens: max_new,
        };
        let mut committer = Committer::new(self.tokenizer, &prompt_ids, rules);
        let mut rng = Rng::new(params.seed);
        let mut history = prompt_ids.clone();
        let mut counters = Counters::default();

        let start = Instant::now();
        let want_hidden = self.proposer.wants_hidden();
        if n > 1 {
            let pos: Vec<usize> = (0..n - 1).collect();
            let input = ForwardInput {
                want_hidden,
                ..ForwardInput::causal(&prompt_ids[..n - 1], &pos)
            };
            let out = self.model.forward(&input, &mut cache)?;
            if let Some(h) = hidden_row(&out, n - 2) {
                self.proposer.observe_hidden(h);
            }
        }
        if self.controller.max_k() > 0 {
            self.proposer.prefill(&prompt_ids)?;
        }
        let prefill = start.elapsed();
        let mut cancelled = false;
        while committer.finished().is_none() {
            if self
                .cancel
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                cancelled = true;
                break;
            }
            let tokens = self.step(
                &mut cache,
                &history,
                &params.sampling,
                &mut rng,
                &mut counters,
                max_new - committer.tokens().len(),
            )?;
            let taken = committer.commit(&tokens)?;
            history.extend_from_slice(&tokens[..taken]);
            let delta = committer.take_delta();
            if !delta.is_empty() {
                on_text(&delta);
            }
            if let (Some(inspect), None) = (self.inspect.as_mut(), committer.finished()) {
                inspect(&cache, &history);
            }
        }
        let total = start.elapsed();
        let decode_s = (total - prefill).as_secs_f64();
        let generated = committer.tokens().len();
        let stats = Stats {
            method: self.proposer.name().into(),
            target_forwards: counters.forwards,
            generated_tokens: generated,
            drafted_tokens: counters.drafted,
            accepted_tokens: counters.accepted,
            mean_accepted_length: if counters.forwards > 0 {
                generated as f64 / counters.forwards as f64
            } else {
                0.0
            },
            tokens_per_second: if decode_s > 0.0 {
                generated as f64 / decode_s
            } else {
                0.0
            },
            elapsed_ms: total.as_secs_f64() * 1e3,
            prefill_ms: prefill.as_secs_f64() * 1e3,
            pool_hits: self.proposer.pool_hits(),
            acceptance_by_position: counters.by_depth,
        };
        Ok(Generation {
            text: committer.text().to_string(),
            token_ids: committer.tokens().to_vec(),
            prompt_token_ids: prompt_ids,
            finish_reason: if cancelled {
                FinishReason::Cancelled
            } else {
                committer.finished().unwrap_or(FinishReason::Length)
            },
            stats,
        })
    }

    /// One target forward: returns the tokens it yields (accepted drafts and one target token).
    fn step(
        &mut self,
        cache: &mut KvCache,
        history: &[u32],
        sampling: &SamplingParams,
        rng: &mut Rng,
        counters: &mut Counters,
        remaining: usize,
    ) -> Result<Vec<u32>> {
        let base = cache.len();
        // Room: the pending token and the drafts must fit the cache and the context, and no
        // more drafts than tokens still wanted (the last token comes from the target).
        let room = cache.remaining().saturating_sub(1);
        let k = self
            .controller
            .choose()
            .min(room)
            .min(remaining.saturating_sub(1));
        let drafting = Instant::now();
        let mut tree = if k > 0 {
            self.proposer.propose(history, k, sampling, rng)?
        } else {
            TokenTree::empty()
        };
        let draft_seconds = drafting.elapsed().as_secs_f64();
        truncate_tree(&mut tree, k);
        let pending = *history
            .last()
            .ok_or_else(|| EngineError::InvalidRequest("empty history".into()))?;
        // A side branch (lookahead) rides along on drafting steps when it fits the cache and
        // the context.
        let context = self.model.config().max_seq_len;
        let side = if k > 0 { self.proposer.side_branch() } else { None }.filter(|s| {
            s.tokens.len() + tree.len() < cache.remaining() && s.offsets.iter().all(|&o| base + o < context)
        });
        let n_side = side.as_ref().map_or(0, |s| s.tokens.len());
        let depths = tree.depths();
        let mut tokens = Vec::with_capacity(1 + n_side + tree.len());
        tokens.push(pending);
        let mut positions = vec![base];
        if let Some(s) = &side {
            tokens.extend_from_slice(&s.tokens);
            positions.extend(s.offsets.iter().map(|o| base + o));
        }
        tokens.extend_from_slice(&tree.tokens);
        positions.extend(depths.iter().map(|d| base + d));
        // Tree node n is input row 1 + n_side + n; its parent row, or the pending row.
        let node_row = |n: usize| 1 + n_side + n;
        let parents: Vec<Option<usize>> = std::iter::once(None)
            .chain(tree.parents.iter().map(|p| Some(p.map_or(0, node_row))))
            .collect();
        let rows_mask: Vec<Vec<usize>> = match &side {
            None => Vec::new(),
            Some(s) => {
                let mut m = vec![Vec::new()];
                m.extend(
                    s.visible
                        .iter()
                        .map(|v| std::iter::once(0).chain(v.iter().map(|&r| 1 + r)).collect()),
                );
                for n in 0..tree.len() {
                    let mut seen = vec![0];
                    seen.extend(path(&tree, n).iter().filter(|&&a| a != n).map(|&a| node_row(a)));
                    m.push(seen);
                }
                m
            }
        };
        let input = ForwardInput {
            tokens: &tokens,
            positions: &positions,
            mask: if side.is_some() {
                AttentionMask::Rows(&rows_mask)
            } else {
                AttentionMask::Tree(&parents)
            },
            want_hidden: self.proposer.wants_hidden(),
        };
        let verifying = Instant::now();
        let out = self.model.forward(&input, cache)?;
        let verify_seconds = verifying.elapsed().as_secs_f64();
        counters.forwards += 1;
        if n_side > 0 {
            let side_logits: Vec<&[f32]> = (1..=n_side).map(|r| out.row(r)).collect();
            self.proposer.observe_side(&side_logits)?;
        }
        // The target's distribution after the pending row and every tree node, with the
        // node's own path as context.
        let mut rows = Vec::with_capacity(tree.len() + 1);
        // Only the repetition penalty reads the context: skip copying it otherwise (per token).
        let needs_context = sampling.repetition_penalty != 1.0;
        for r in 0..=tree.len() {
            let mut seen = Vec::new();
            if needs_context {
                seen.extend_from_slice(history);
                if r > 0 {
                    seen.extend(path(&tree, r - 1).iter().map(|&i| tree.tokens[i]));
                }
            }
            let row = if r == 0 { 0 } else { node_row(r - 1) };
            rows.push(target_distribution(out.row(row), sampling, &seen)?);
        }
        let acc = match self.acceptance {
            MedusaAcceptance::Typical {
                posterior_threshold,
                posterior_alpha,
            } if !sampling.is_greedy() => {
                accept_typical(&tree, &rows, posterior_threshold, posterior_alpha, rng)?
            }
            _ => accept(&tree, &rows, rng)?,
        };
        let kept: Vec<usize> = acc.nodes.iter().map(|&n| n_side + n).collect();
        cache.compact(base + 1, &kept)?;
        if let Some(h) = hidden_row(&out, acc.nodes.last().map_or(0, |&n| node_row(n))) {
            self.proposer.observe_hidden(h);
        }
        self.proposer.observe_accepted(acc.nodes.len());
        let deepest = depths.iter().copied().max().unwrap_or(0);
        if counters.by_depth.len() < deepest {
            counters.by_depth.resize(deepest, (0, 0));
        }
        for (d, slot) in counters.by_depth.iter_mut().enumerate().take(deepest) {
            slot.0 += 1;
            if acc.nodes.len() > d {
                slot.1 += 1;
            }
        }
        counters.drafted += tree.len();
        counters.accepted += acc.nodes.len();
        self.controller.observe(tree.len(), acc.nodes.len());
        // Live timings steer k only at greedy, where output does not depend on k. Under
        // sampling, the tokens drawn depend on which positions had drafts, so k must not follow
        // the clock, or one seed would give different text from run to run.
        // Side rows ride along with every drafting step, so the controller's curve is indexed
        // by tree width: a step's time is recorded under 1 + tree nodes.
        if sampling.is_greedy() {
            self.controller
                .observe_time(1 + tree.len(), verify_seconds, tree.len(), draft_seconds);
        }
        Ok(acc.tokens)
    }
}

/// Hidden state of row `r`, if the forward returned hidden states.
fn hidden_row(out: &ahead_model::ForwardOutput, r: usize) -> Option<&[f32]> {
    let d = out.hidden_dim;
    out.hidden.as_ref()?.get(r * d..(r + 1) * d)
}

/// Keeps at most `k` nodes (a proposer may return more than asked).
fn truncate_tree(tree: &mut TokenTree, k: usize) {
    tree.tokens.truncate(k);
    tree.parents.truncate(k);
    tree.q.truncate(k);
}

/// Node indices from the root to `node`.
fn path(tree: &TokenTree, node: usize) -> Vec<usize> {
    let mut p = vec![node];
    while let Some(parent) = p.last().and_then(|&n| tree.parents[n]) {
        p.push(parent);
    }
    p.reverse();
    p
}

/// The distribution the target samples from at a row: one-hot at the argmax for greedy.
fn target_distribution(logits: &[f32], sampling: &SamplingParams, seen: &[u32]) -> Result<Distribution> {
    if sampling.is_greedy() {
        let t = if sampling.repetition_penalty == 1.0 {
            argmax(logits)?
        } else {
            let mut l = logits.to_vec();
            apply_repetition_penalty(&mut l, seen, sampling.repetition_penalty);
            argmax(&l)?
        };
        return Ok(Distribution::one_hot(t, logits.len())?);
    }
    Ok(warp(logits, sampling, seen)?)
}
