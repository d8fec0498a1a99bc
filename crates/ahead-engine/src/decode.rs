//! The step loop: propose -> one verify forward with a tree mask -> exact acceptance -> compact
//! the cache to the accepted path -> commit tokens one at a time.
//!
//! Invariant between steps: `history` is the prompt plus every committed token, and the target
//! cache holds all of `history` but its last token (the "pending" token, fed at the start of the
//! next verify forward). Plain decoding is the same loop with empty drafts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ahead_core::sampling::{apply_repetition_penalty, argmax, warp, LogitAdjust};
use ahead_core::spec::{accept, accept_typical, Controller, DraftDist, TokenTree};
use ahead_core::{Distribution, Rng, SamplingParams};
use ahead_model::transformer::{run_tasks, Logits};
use ahead_model::{AttentionMask, ForwardInput, ForwardOutput, KvCache, Model, Tokenizer};

use crate::commit::{Committer, StopRules};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::grammar::Constraint;
use crate::learned::LearnedByMethod;
use crate::logprobs::{token_logprobs, TokenLogprobs};
use crate::output::{FinishReason, Generation, Stats};
use crate::params::{GenerateParams, MedusaAcceptance};
use crate::prefix::PrefixCache;
use crate::spec::{Features, Outcome, Proposer};
use llguidance::toktrie::SimpleVob;

/// Called after every step with the target cache and the committed history (tests check the
/// cache against a fresh prefill of `history` minus its pending last token).
pub type StepInspector<'a, 'f> = &'a mut (dyn FnMut(&KvCache, &[u32]) + 'f);

/// Counters kept while decoding.
#[derive(Default)]
struct Counters {
    forwards: usize,
    drafted: usize,
    accepted: usize,
    draft_seconds: f64,
    verify_seconds: f64,
    /// Per draft depth (1 = the token after the pending one): steps that drafted that deep,
    /// and steps whose accepted path reached it.
    by_depth: Vec<(usize, usize)>,
    /// Steps that verified a free offer (`auto`'s prompt lookup) instead of the proposer's own.
    free_steps: usize,
}

/// One generation in progress: its cache, proposer, controller and committed tokens. A step is
/// [`Sequence::plan`] (draft and lay out the verify rows), one target forward (alone, or
/// batched with other sequences' plans), then [`Sequence::complete`] (accept and commit).
pub(crate) struct Sequence<'a> {
    model: &'a Model,
    proposer: Box<dyn Proposer>,
    controller: Controller,
    /// How trees are verified when sampling (greedy is always exact).
    acceptance: MedusaAcceptance,
    /// Live timings and load may steer k: always at greedy, where output does not depend on
    /// k; under sampling only when the request need not be reproducible, because the tokens
    /// drawn depend on which positions had drafts.
    timed: bool,
    sampling: SamplingParams,
    cache: KvCache,
    committer: Committer<'a>,
    rng: Rng,
    history: Vec<u32>,
    prompt_len: usize,
    counters: Counters,
    max_new: usize,
    started: Instant,
    prefill: Duration,
    cancelled: bool,
    /// Prompt tokens (of all but the last) not yet in the cache: a sequence started in a batch
    /// prefills a chunk per step, beside the other sequences' rows.
    unfilled: usize,
    /// Where the controller's acceptance goes when the request finishes, and under which key.
    learning: Option<(&'a LearnedByMethod, String)>,
    /// The request's grammar, where its committed tokens have taken it.
    constraint: Option<Constraint>,
    /// Turns a grammar's forced text into draft tokens.
    tokenizer: &'a Tokenizer,
    /// OpenAI's logit adjustments, applied to every verify row before the warpers.
    adjust: LogitAdjust,
    /// The ids that end a sequence (what `LogitAdjust::min_tokens` holds back).
    model_eos: Vec<u32>,
    /// Alternatives per token when the request asked for log-probabilities.
    logprobs_top: Option<usize>,
    logprobs: Vec<TokenLogprobs>,
    /// Entries of `logprobs` already handed out with a step's text.
    logprobs_sent: usize,
    /// Where this sequence's cache goes when it finishes, for later requests to start from.
    prefix: Option<&'a PrefixCache>,
    /// Prompt tokens whose rows came from the prefix cache.
    cached: usize,
}

/// Most tokens a grammar's forced text drafts in one step.
const MAX_FORCED_DRAFT: usize = 16;

/// Most prompt rows a batched sequence feeds per step: a long prompt then delays the other
/// sequences' steps by a chunk, not by its whole prefill.
pub(crate) const PREFILL_CHUNK: usize = 64;

/// The verify rows of one step: made by [`Sequence::plan`], fed to a forward (the `input`), and
/// handed back to [`Sequence::complete`] with that forward's output.
pub(crate) struct Plan {
    tokens: Vec<u32>,
    positions: Vec<usize>,
    parents: Vec<Option<usize>>,
    /// Non-empty when a side branch rides along (the mask is then not a tree).
    rows_mask: Vec<Vec<usize>>,
    /// The hidden states the proposer reads.
    features: Features,
    tree: TokenTree,
    n_side: usize,
    draft_seconds: f64,
    /// A chunk of the prompt, not a verify step.
    prefill: bool,
    /// With a grammar: the tokens the pending row and each tree node's row may produce.
    masks: Vec<SimpleVob>,
    /// The tree is text the grammar forced, not the proposer's draft.
    forced: bool,
    /// The tree is a free offer (`Proposer::free_offer`), not the proposer's own draft.
    free: bool,
}

impl Plan {
    /// The forward input of this step.
    pub fn input(&self) -> ForwardInput<'_> {
        ForwardInput {
            tokens: &self.tokens,
            positions: &self.positions,
            mask: if self.rows_mask.is_empty() {
                AttentionMask::Tree(&self.parents)
            } else {
                AttentionMask::Rows(&self.rows_mask)
            },
            want_hidden: self.features.any(),
            taps: self.features.taps(),
            // A prompt chunk only fills the cache.
            logits: if self.prefill { Logits::None } else { Logits::All },
        }
    }

    /// Input rows.
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }

    /// Input row of tree node `n`.
    fn node_row(&self, n: usize) -> usize {
        1 + self.n_side + n
    }
}

impl<'a> Sequence<'a> {
    /// Prefills the prompt (all but its last token, which the first step feeds), now or, when
    /// `chunked`, a chunk per step (`plan` then returns prompt rows until it is all in).
    pub fn start(
        engine: &'a Engine,
        mut proposer: Box<dyn Proposer>,
        controller: Controller,
        prompt_ids: Vec<u32>,
        params: &GenerateParams,
        chunked: bool,
    ) -> Result<Self> {
        let (model, tokenizer) = (engine.model(), engine.tokenizer());
        let context = model.config().max_seq_len;
        let n = prompt_ids.len();
        if n == 0 || n >= context {
            return Err(EngineError::InvalidRequest(format!(
                "the prompt has {n} tokens; it must have at least 1 and leave room in the context of {context}"
            )));
        }
        // Prompt plus completion never exceed the context.
        let max_new = params.max_tokens.min(context - n);
        let capacity = (n + max_new + controller.max_k() + proposer.max_side_rows()).min(context);
        let mut cache = model.new_cache(capacity)?;
        let rules = StopRules {
            eos: tokenizer.eos_ids().to_vec(),
            ignore_eos: params.ignore_eos,
            stop: params.stop.clone(),
            max_tokens: max_new,
        };
        let committer = Committer::new(tokenizer, &prompt_ids, rules);
        let started = Instant::now();
        // Rows an earlier request computed for the same first tokens are copied, not computed
        // (not for a proposer that reads every prompt row's hidden state).
        let prefix = engine.prefix_cache().filter(|_| !proposer.needs().hidden.any());
        let cached = match prefix.and_then(|p| p.lookup(&prompt_ids)) {
            Some((src, shared)) => {
                cache.copy_prefix(&src, shared)?;
                shared
            }
            None => 0,
        };
        if n - 1 > cached && !chunked {
            let pos: Vec<usize> = (cached..n - 1).collect();
            let features = proposer.needs().hidden;
            let input = ForwardInput {
                want_hidden: features.any(),
                taps: features.taps(),
                logits: Logits::None,
                ..ForwardInput::causal(&prompt_ids[cached..n - 1], &pos)
            };
            let out = model.forward(&input, &mut cache)?;
            proposer.observe(&Outcome {
                hidden: hidden_rows(&out, 0..n - 1 - cached),
                ..Outcome::default()
            })?;
        }
        let unfilled = if chunked { n - 1 - cached } else { 0 };
        if unfilled == 0 && controller.max_k() > 0 {
            proposer.prefill(&prompt_ids)?;
        }
        Ok(Self {
            model,
            proposer,
            controller,
            acceptance: params.medusa_acceptance,
            timed: params.sampling.is_greedy() || !params.reproducible,
            sampling: params.sampling.clone(),
            cache,
            committer,
            rng: Rng::new(params.seed),
            prompt_len: n,
            history: prompt_ids,
            counters: Counters::default(),
            max_new,
            prefill: started.elapsed(),
            started,
            cancelled: false,
            unfilled,
            learning: None,
            adjust: params.adjust.clone(),
            tokenizer,
            constraint: match &params.grammar {
                Some(g) => Some(engine.grammar_env()?.constraint(g)?),
                None => None,
            },
            model_eos: tokenizer.eos_ids().to_vec(),
            logprobs_top: params.logprobs,
            logprobs: Vec::new(),
            logprobs_sent: 0,
            prefix,
            cached,
        })
    }

    /// At its finish, folds what the controller measured into `store` under `key`.
    pub(crate) fn learning_into(mut self, store: &'a LearnedByMethod, key: String) -> Self {
        self.learning = Some((store, key));
        self
    }

    /// The next chunk of the prompt, as causal rows after what the cache holds.
    fn plan_prefill(&self) -> Plan {
        let start = self.prompt_len - 1 - self.unfilled;
        let rows = self.unfilled.min(PREFILL_CHUNK);
        Plan {
            tokens: self.history[start..start + rows].to_vec(),
            positions: (start..start + rows).collect(),
            // A chain: each row's parent is the row before it.
            parents: (0..rows).map(|r| r.checked_sub(1)).collect(),
            rows_mask: Vec::new(),
            features: self.proposer.needs().hidden,
            tree: TokenTree::empty(),
            n_side: 0,
            draft_seconds: 0.0,
            prefill: true,
            masks: Vec::new(),
            forced: false,
            free: false,
        }
    }

    /// Takes a prefill chunk's output; after the last chunk, the proposer sees the prompt.
    fn complete_prefill(&mut self, plan: &Plan, out: &ForwardOutput) -> Result<String> {
        self.unfilled -= plan.rows();
        self.proposer.observe(&Outcome {
            hidden: hidden_rows(out, 0..plan.rows()),
            ..Outcome::default()
        })?;
        if self.unfilled == 0 {
            if self.controller.max_k() > 0 {
                self.proposer.prefill(&self.history)?;
            }
            self.prefill = self.started.elapsed();
        }
        Ok(String::new())
    }

    /// Whether generation has ended (finished or cancelled).
    pub fn done(&self) -> bool {
        self.cancelled || self.committer.finished().is_some()
    }

    /// Ends generation before the next step (a client that went away).
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    /// Drafts this step's tree and lays out its verify rows. `others` is how many rows other
    /// sequences add to the same forward: the busier the batch, the less a draft row pays.
    pub fn plan(&mut self, others: usize) -> Result<Plan> {
        if self.unfilled > 0 {
            return Ok(self.plan_prefill());
        }
        let cache = &self.cache;
        let history = &self.history;
        let base = cache.len();
        // Room: the pending token and the drafts must fit the cache and the context, and no
        // more drafts than tokens still wanted (the last token comes from the target).
        let room = cache.remaining().saturating_sub(1);
        let remaining = self.max_new - self.committer.tokens().len();
        let load = if self.timed { others } else { 0 };
        let k = self
            .controller
            .choose_under_load(load)
            .min(room)
            .min(remaining.saturating_sub(1));
        let drafting = Instant::now();
        // Text the grammar forces (a schema's keys and punctuation) is drafted whatever the
        // controller chose this step: the constrained target all but surely accepts it. Not
        // for plain decoding (a controller that never drafts), the reference.
        let forced = match &mut self.constraint {
            Some(c) if self.controller.max_k() > 0 => {
                let most = room.min(remaining.saturating_sub(1)).min(MAX_FORCED_DRAFT);
                let mut t = c.forced_tokens(self.tokenizer)?;
                t.truncate(most);
                t
            }
            _ => Vec::new(),
        };
        let was_forced = !forced.is_empty();
        let mut took_free = false;
        let (mut tree, side) = if was_forced {
            let q = vec![DraftDist::OneHot; forced.len()];
            (TokenTree::chain(forced, q), None)
        } else {
            // A free second source (`auto`'s prompt lookup) offers first; the controller
            // verifies its offer instead of the proposer's own k drafts when it promises more.
            let most = room.min(remaining.saturating_sub(1)).min(self.controller.max_k());
            let free = match most {
                0 => None,
                _ => {
                    let offer = self
                        .proposer
                        .free_offer(history, most, &self.sampling, &mut self.rng)?;
                    offer.map(|mut t| {
                        truncate_tree(&mut t, most);
                        let take = self.controller.take_free_offer(t.len(), k, load);
                        truncate_tree(&mut t, take);
                        t
                    })
                }
            };
            match free {
                Some(t) if !t.is_empty() => {
                    took_free = true;
                    (t, None)
                }
                _ if k > 0 => {
                    let mut p = self.proposer.propose(history, k, &self.sampling, &mut self.rng)?;
                    truncate_tree(&mut p.tree, k);
                    match self.controller.keep_offer(p.tree.len(), load) {
                        0 => (TokenTree::empty(), None),
                        keep => {
                            truncate_tree(&mut p.tree, keep);
                            (p.tree, p.side)
                        }
                    }
                }
                _ => (TokenTree::empty(), None),
            }
        };
        let masks = match &mut self.constraint {
            Some(c) => c.prune(&mut tree)?,
            None => Vec::new(),
        };
        let draft_seconds = drafting.elapsed().as_secs_f64();
        let pending = *history
            .last()
            .ok_or_else(|| EngineError::InvalidRequest("empty history".into()))?;
        // A side branch (lookahead) rides along on drafting steps when it fits the cache and
        // the context.
        let context = self.model.config().max_seq_len;
        let side = side.filter(|s| {
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
        Ok(Plan {
            tokens,
            positions,
            parents,
            rows_mask,
            features: self.proposer.needs().hidden,
            tree,
            n_side,
            draft_seconds,
            prefill: false,
            masks,
            forced: was_forced,
            free: took_free,
        })
    }

    /// The cache this sequence's rows go into.
    pub fn cache_mut(&mut self) -> &mut KvCache {
        &mut self.cache
    }

    /// Accepts from the forward's output for `plan`, rolls the cache back to the accepted path
    /// and commits the tokens; returns the new final text. `verify_seconds` is the forward's
    /// time and `width` its rows (all sequences' when batched).
    pub fn complete(
        &mut self,
        plan: Plan,
        out: &ForwardOutput,
        verify_seconds: f64,
        width: usize,
    ) -> Result<String> {
        if plan.prefill {
            return self.complete_prefill(&plan, out);
        }
        // The controller weighs a step's whole cost: the forward and the acceptance that reads
        // every row (when sampling, each row's distribution over the vocabulary).
        let accepting = Instant::now();
        let tree = &plan.tree;
        let base = self.cache.len() - plan.rows();
        self.counters.forwards += 1;
        self.counters.draft_seconds += plan.draft_seconds;
        self.counters.verify_seconds += verify_seconds;
        // The target's distribution after the pending row and every tree node, with the
        // node's own path as context.
        let sampling = &self.sampling;
        let mut rows = Vec::with_capacity(tree.len() + 1);
        let context = RowContext {
            history: &self.history,
            tree,
            sampling,
            adjust: &self.adjust,
            prompt_len: self.prompt_len,
            eos: self.model_eos.as_slice(),
            grammar: self.constraint.as_ref().map(|c| (c, plan.masks.as_slice())),
        };
        let distribution = |r: usize| {
            let seen = context.seen(r);
            let row = if r == 0 { 0 } else { plan.node_row(r - 1) };
            target_distribution(&context.logits(r, out.row(row), &seen), sampling, &seen)
        };
        if sampling.is_greedy() || tree.is_empty() {
            for r in 0..=tree.len() {
                rows.push(distribution(r)?);
            }
        } else {
            // Warping a row reads the whole vocabulary (20-45 µs for 49k tokens): the rows are
            // independent, so they split over the decoding threads, each row's numbers its own.
            let slots: Vec<Mutex<Option<Result<Distribution>>>> =
                (0..=tree.len()).map(|_| Mutex::new(None)).collect();
            run_tasks(slots.len(), &|r| {
                if let Ok(mut slot) = slots[r].lock() {
                    *slot = Some(distribution(r));
                }
            });
            for slot in slots {
                let d = slot.into_inner().ok().flatten();
                rows.push(d.ok_or_else(|| {
                    EngineError::Internal("a row's distribution was not computed".into())
                })??);
            }
        }
        let acc = match self.acceptance {
            MedusaAcceptance::Typical {
                posterior_threshold,
                posterior_alpha,
            } if !sampling.is_greedy() => {
                accept_typical(tree, &rows, posterior_threshold, posterior_alpha, &mut self.rng)?
            }
            _ => accept(tree, &rows, &mut self.rng)?,
        };
        let kept: Vec<usize> = acc.nodes.iter().map(|&n| plan.n_side + n).collect();
        self.cache.compact(base + 1, &kept)?;
        // Hidden states: the pending row, then each accepted node's.
        let accepted_rows = std::iter::once(0).chain(acc.nodes.iter().map(|&n| plan.node_row(n)));
        let verified = if self.proposer.needs().row_logits {
            let pending = self.history.last().copied().unwrap_or(0);
            std::iter::once((pending, out.row(0)))
                .chain((0..tree.len()).map(|n| (tree.tokens[n], out.row(plan.node_row(n)))))
                .collect()
        } else {
            Vec::new()
        };
        self.proposer.observe(&Outcome {
            accepted: Some(acc.nodes.len()),
            hidden: accepted_rows.filter_map(|r| hidden_row(out, r)).collect(),
            side_logits: (1..=plan.n_side).map(|r| out.row(r)).collect(),
            verified,
        })?;
        let deepest = tree.depths().iter().copied().max().unwrap_or(0);
        let by_depth = &mut self.counters.by_depth;
        if by_depth.len() < deepest {
            by_depth.resize(deepest, (0, 0));
        }
        for (d, slot) in by_depth.iter_mut().enumerate().take(deepest) {
            slot.0 += 1;
            if acc.nodes.len() > d {
                slot.1 += 1;
            }
        }
        self.counters.drafted += tree.len();
        self.counters.free_steps += usize::from(plan.free);
        self.counters.accepted += acc.nodes.len();
        // Text a grammar forced says nothing of the method's acceptance.
        if !plan.forced {
            self.controller.observe(tree.len(), acc.nodes.len());
        }
        // Recorded under the forward's true width (side rows included): the controller adds a
        // drafting step's side rows itself when it weighs k.
        if self.timed {
            let step_seconds = verify_seconds + accepting.elapsed().as_secs_f64();
            self.controller
                .observe_time(width, step_seconds, tree.len(), plan.draft_seconds);
        }
        let taken = self.committer.commit(&acc.tokens)?;
        if let Some(top) = self.logprobs_top {
            // Token j was drawn at the pending row (j = 0) or after accepted node j - 1.
            for (j, &token) in acc.tokens[..taken].iter().enumerate() {
                let node = j.checked_sub(1).map(|i| acc.nodes[i]);
                let seen = context.seen(node.map_or(0, |n| n + 1));
                let row = node.map_or(0, |n| plan.node_row(n));
                let logits = context.logits(node.map_or(0, |n| n + 1), out.row(row), &seen);
                self.logprobs
                    .push(token_logprobs(&logits, sampling, &seen, token, top)?);
            }
        }
        if let Some(c) = &mut self.constraint {
            c.commit(&acc.tokens[..taken])?;
        }
        self.history.extend_from_slice(&acc.tokens[..taken]);
        Ok(self.committer.take_delta())
    }

    /// Log-probabilities of the tokens committed since the last call (empty unless asked for).
    pub fn take_new_logprobs(&mut self) -> Vec<TokenLogprobs> {
        let new = self.logprobs[self.logprobs_sent..].to_vec();
        self.logprobs_sent = self.logprobs.len();
        new
    }

    /// Runs to the end on its own: plan, forward, complete, until finished or `cancel` is set.
    pub fn run(
        &mut self,
        on_text: &mut dyn FnMut(&str),
        mut inspect: Option<StepInspector<'_, '_>>,
        cancel: Option<&AtomicBool>,
    ) -> Result<()> {
        while !self.done() {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                self.cancel();
                break;
            }
            let plan = self.plan(0)?;
            let verifying = Instant::now();
            let out = self.model.forward(&plan.input(), &mut self.cache)?;
            let seconds = verifying.elapsed().as_secs_f64();
            let width = plan.rows();
            let delta = self.complete(plan, &out, seconds, width)?;
            if !delta.is_empty() {
                on_text(&delta);
            }
            if let (Some(inspect), false) = (inspect.as_mut(), self.done()) {
                inspect(&self.cache, &self.history);
            }
        }
        Ok(())
    }

    /// The result, once done.
    pub fn finish(mut self) -> Generation {
        if let Some((store, key)) = &self.learning {
            store.fold(key, &self.controller);
        }
        if let Some(prefix) = self.prefix {
            prefix.insert(&self.history, &self.cache);
        }
        self.proposer.finish(self.committer.tokens());
        let total = self.started.elapsed();
        let decode_s = (total - self.prefill).as_secs_f64();
        let generated = self.committer.tokens().len();
        let c = &self.counters;
        let stats = Stats {
            method: self.proposer.name().into(),
            target_forwards: c.forwards,
            generated_tokens: generated,
            drafted_tokens: c.drafted,
            accepted_tokens: c.accepted,
            mean_accepted_length: if c.forwards > 0 {
                generated as f64 / c.forwards as f64
            } else {
                0.0
            },
            tokens_per_second: if decode_s > 0.0 {
                generated as f64 / decode_s
            } else {
                0.0
            },
            elapsed_ms: total.as_secs_f64() * 1e3,
            prefill_ms: self.prefill.as_secs_f64() * 1e3,
            draft_ms: c.draft_seconds * 1e3,
            verify_ms: c.verify_seconds * 1e3,
            pool_hits: self.proposer.pool_hits(),
            cached_prompt_tokens: self.cached,
            acceptance_by_position: self.counters.by_depth,
            free_offer_steps: self.counters.free_steps,
        };
        let mut prompt_token_ids = self.history;
        prompt_token_ids.truncate(self.prompt_len);
        Generation {
            text: self.committer.text().to_string(),
            token_ids: self.committer.tokens().to_vec(),
            prompt_token_ids,
            finish_reason: if self.cancelled {
                FinishReason::Cancelled
            } else {
                self.committer.finished().unwrap_or(FinishReason::Length)
            },
            stats,
            logprobs: self.logprobs,
        }
    }
}

/// Hidden state of row `r`, if the forward returned hidden states.
fn hidden_row(out: &ahead_model::ForwardOutput, r: usize) -> Option<&[f32]> {
    let d = out.hidden_dim;
    out.hidden.as_ref()?.get(r * d..(r + 1) * d)
}

/// Hidden states of `rows`, if the forward returned hidden states.
fn hidden_rows(out: &ahead_model::ForwardOutput, rows: std::ops::Range<usize>) -> Vec<&[f32]> {
    rows.filter_map(|r| hidden_row(out, r)).collect()
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

/// What the target's distribution at a verify row depends on besides the row's logits.
struct RowContext<'s> {
    history: &'s [u32],
    tree: &'s TokenTree,
    sampling: &'s SamplingParams,
    adjust: &'s LogitAdjust,
    prompt_len: usize,
    eos: &'s [u32],
    /// The request's grammar and the step's row masks.
    grammar: Option<(&'s Constraint, &'s [SimpleVob])>,
}

impl RowContext<'_> {
    /// The tokens before row `r` (0: the pending token's row; else tree node r - 1's, whose
    /// path is in context): empty when nothing reads them (per row and token, a copy saved).
    fn seen(&self, r: usize) -> Vec<u32> {
        let mut seen = Vec::new();
        if self.sampling.repetition_penalty != 1.0 || !self.adjust.is_identity() {
            seen.extend_from_slice(self.history);
            if r > 0 {
                seen.extend(path(self.tree, r - 1).iter().map(|&i| self.tree.tokens[i]));
            }
        }
        seen
    }

    /// Row `r`'s logits after the request's adjustments (penalties over the output, biases,
    /// the minimum length) and its grammar.
    fn logits<'o>(&self, r: usize, raw: &'o [f32], seen: &[u32]) -> std::borrow::Cow<'o, [f32]> {
        if self.adjust.is_identity() && self.grammar.is_none() {
            return std::borrow::Cow::Borrowed(raw);
        }
        let mut logits = raw.to_vec();
        let output = seen.get(self.prompt_len..).unwrap_or(&[]);
        self.adjust.apply(&mut logits, output, self.eos);
        if let Some((c, mask)) = self.grammar.and_then(|(c, m)| m.get(r).map(|m| (c, m))) {
            c.apply(mask, &mut logits);
        }
        std::borrow::Cow::Owned(logits)
    }
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
