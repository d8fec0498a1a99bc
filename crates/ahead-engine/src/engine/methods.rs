//! Each method's parts on an engine: which method `Auto` stands for, the proposer a request
//! gets and the controller that sizes its drafts, the key its acceptance is learned under, the
//! KV-cache slots it allocates, and the settings chosen for it on this machine (lookahead's
//! window, Medusa's tree). A new method is an arm in each of these.

use ahead_core::spec::{cost_at, Controller, LookaheadConfig, MedusaTree};
use ahead_model::medusa::MedusaHeads;

use super::{Engine, MAX_DRAFT};
use crate::error::{EngineError, Result};
use crate::params::{GenerateParams, Method};
use crate::spec::{
    draft::DRAFT_MIN_CONFIDENCE, DraftModel, EagleProposer, HybridDraft, LookaheadProposer, MedusaProposer,
    MergedProposer, NoDraft, PromptLookupProposer, Proposer, RecyclingProposer, RetokenizingDraft,
    SuffixProposer,
};

impl Engine {
    /// The proposer of `method` (resolved) for a request with `params`, with room for
    /// `capacity` positions.
    pub(super) fn proposer_for(
        &self,
        method: Method,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        let model = &self.loaded.model;
        Ok(match method {
            Method::Draft => {
                let draft = self
                    .draft
                    .as_ref()
                    .ok_or_else(|| EngineError::MethodUnavailable {
                        method: "draft",
                        reason: "no draft model is loaded (EngineBuilder::draft, --draft)".into(),
                    })?;
                match (&draft.tokenizers, &draft.medusa) {
                    (None, Some(heads)) => Box::new(HybridDraft::new(
                        DraftModel::new(draft.model.clone(), model.config().vocab_size, capacity)?,
                        heads.clone(),
                        params.medusa_tree.clone().unwrap_or_else(MedusaTree::default_cpu),
                    )),
                    (None, None) => {
                        // Under the controller a greedy draft also stops where it is unsure.
                        let confident = params.num_draft.is_none() && params.sampling.is_greedy();
                        Box::new(
                            DraftModel::new(draft.model.clone(), model.config().vocab_size, capacity)?
                                .with_min_confidence(if confident { DRAFT_MIN_CONFIDENCE } else { 0.0 }),
                        )
                    }
                    // Re-tokenized text can take more draft tokens than target tokens.
                    (Some((dt, tt)), _) => Box::new(RetokenizingDraft::new(
                        draft.model.clone(),
                        dt.clone(),
                        tt.clone(),
                        draft.model.config().max_seq_len,
                    )?),
                }
            }
            Method::PromptLookup => Box::new(PromptLookupProposer::with_cache(
                params.lookup,
                self.ngram_cache.clone(),
            )),
            Method::Medusa => {
                let tree = self.medusa_tree_for(params)?;
                let heads = self
                    .medusa
                    .clone()
                    .ok_or_else(|| EngineError::MethodUnavailable {
                        method: "medusa",
                        reason: "no Medusa heads are loaded".into(),
                    })?;
                Box::new(MedusaProposer::new(heads, tree))
            }
            Method::Lookahead => Box::new(LookaheadProposer::new(self.lookahead_config(params)?)),
            Method::Eagle => Box::new(self.eagle_proposer(params, capacity)?),
            Method::Recycling => Box::new(self.recycling_proposer(params)),
            Method::Hybrid => Box::new(MergedProposer::new(
                Box::new(self.eagle_proposer(params, capacity)?),
                Box::new(self.recycling_proposer(params)),
            )),
            // Seeded sampling's tokens depend on its drafts: it drafts from its own text only.
            Method::Suffix => Box::new(SuffixProposer::new(
                self.scopes.get(params.scope.as_deref()).suffix.store.clone(),
                !params.seeded_sampling(),
            )),
            _ => Box::new(NoDraft),
        })
    }

    /// Whether `params`' method can run on this engine (its drafter is loaded, its settings
    /// valid): the error a request would meet at its start, without starting it.
    pub fn method_available(&self, params: &GenerateParams) -> Result<()> {
        let missing = |method: &'static str, what: &str| {
            Err(EngineError::MethodUnavailable {
                method,
                reason: format!("no {what} is loaded"),
            })
        };
        match self.resolved_method(params.method) {
            Method::Draft if self.draft.is_none() => missing("draft", "draft model (--draft)"),
            Method::Medusa => self.medusa_tree_for(params).map(|_| ()),
            Method::Eagle if self.eagle.is_none() => missing("eagle", "EAGLE head (--eagle)"),
            Method::Hybrid if self.eagle.is_none() => missing("hybrid", "EAGLE head (--eagle)"),
            Method::Lookahead => self.lookahead_config(params).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The controller that sizes `method`'s drafts: fixed when `params` fixes k, else the cost
    /// model over this machine's measured costs (lookahead's window rows included).
    pub(super) fn controller_for(
        &self,
        method: Method,
        params: &GenerateParams,
        proposer: &dyn Proposer,
    ) -> Result<Controller> {
        Ok(match (method, params.num_draft) {
            (Method::Vanilla, _) => Controller::fixed(0),
            (_, Some(k)) => Controller::fixed(k),
            (Method::Lookahead, None) => {
                // Every drafting step also carries the window's rows: k candidates cost the
                // forward of 1 + window rows + k, a plain step one row.
                let cfg = self.lookahead_config(params)?;
                Controller::new(self.costs_for(params)?.verify.clone(), 0.0).with_side_rows(cfg.branch_rows())
            }
            (m, None) => {
                let costs = self.costs_for(params)?;
                let draft_cost = match m {
                    Method::Draft => costs.draft_step,
                    Method::Medusa => costs.medusa_step,
                    Method::Eagle | Method::Hybrid => costs.eagle_step,
                    _ => 0.0,
                };
                self.cost_controller(params, draft_cost, proposer)?
            }
        })
    }

    /// Token recycling from the request's scope's table (seeded sampling: a table of its own,
    /// since its tokens depend on its drafts).
    fn recycling_proposer(&self, params: &GenerateParams) -> RecyclingProposer {
        let vocab = self.loaded.model.config().vocab_size;
        let table = if params.seeded_sampling() {
            RecyclingProposer::private_table(vocab)
        } else {
            self.scopes.get(params.scope.as_deref()).recycled(vocab)
        };
        RecyclingProposer::new(table, params.lookup, self.ngram_cache.clone())
    }

    /// A chain from the loaded EAGLE head with room for `capacity` positions; under the
    /// controller a greedy chain also stops where it is unsure.
    pub(super) fn eagle_proposer(&self, params: &GenerateParams, capacity: usize) -> Result<EagleProposer> {
        let head = self.eagle.clone().ok_or_else(|| EngineError::MethodUnavailable {
            method: "eagle",
            reason: "no EAGLE head is loaded (EngineBuilder::eagle, --eagle)".into(),
        })?;
        let confident = params.num_draft.is_none() && params.sampling.is_greedy();
        Ok(
            EagleProposer::new(head, capacity)?.with_min_confidence(if confident {
                DRAFT_MIN_CONFIDENCE
            } else {
                0.0
            }),
        )
    }

    /// Under which key a request's controller learns from (and for) the method's other
    /// requests: `None` for a fixed draft length, plain decoding, and seeded sampling (whose
    /// tokens depend on the drafting schedule, which must then not depend on other requests).
    /// The key holds what changes acceptance: the method, its settings, greedy or sampling.
    pub(super) fn learning_key(&self, method: Method, params: &GenerateParams) -> Option<String> {
        let greedy = params.sampling.is_greedy();
        if method == Method::Vanilla || params.num_draft.is_some() || params.seeded_sampling() {
            return None;
        }
        let settings = match method {
            Method::Medusa => format!("{:?}", params.medusa_tree),
            Method::Lookahead => format!(
                "{:?}",
                (
                    params.lookahead_window,
                    params.lookahead_ngram,
                    params.lookahead_guesses
                )
            ),
            Method::PromptLookup | Method::Recycling | Method::Hybrid => format!("{:?}", params.lookup),
            _ => String::new(),
        };
        let mode = if greedy { "greedy" } else { "sampled" };
        Some(format!("{} {mode} {settings}", method.name()))
    }

    /// The target's KV-cache slots a request with a `prompt_len`-token prompt allocates: the
    /// prompt, the completion, the most drafts a step verifies and the method's side rows
    /// (lookahead's window), at most the context (what a server's KV budget must reserve).
    pub fn cache_slots(&self, prompt_len: usize, params: &GenerateParams) -> Result<usize> {
        let method = self.resolved_method(params.method);
        let drafts = match (method, params.num_draft) {
            (Method::Vanilla, _) => 0,
            (_, Some(k)) => k,
            (_, None) => MAX_DRAFT,
        };
        let side = match method {
            Method::Lookahead => self.lookahead_config(params)?.branch_rows(),
            _ => 0,
        };
        let context = self.loaded.model.config().max_seq_len;
        let completion = params.max_tokens.min(context.saturating_sub(prompt_len));
        Ok((prompt_len + completion + drafts + side).min(context))
    }

    /// The method `Auto` stands for on this engine.
    pub(super) fn resolved_method(&self, method: Method) -> Method {
        match method {
            Method::Auto if self.draft.as_ref().is_some_and(|d| !d.embedded) => Method::Draft,
            Method::Auto => Method::PromptLookup,
            m => m,
        }
    }

    /// Lookahead's (W, N, G) for `params`: given values, else the largest of a few settings
    /// (from the paper's W=15, N=5, G=15 down) whose step costs at most two plain steps on
    /// this machine, else the smallest.
    pub fn lookahead_config(&self, params: &GenerateParams) -> Result<LookaheadConfig> {
        let given = (
            params.lookahead_window,
            params.lookahead_ngram,
            params.lookahead_guesses,
        );
        let chosen = match given {
            (Some(window), Some(ngram), Some(guesses)) => LookaheadConfig {
                window,
                ngram,
                guesses,
            },
            _ => {
                let verify = &self.costs_for(params)?.verify;
                let fits = |c: &LookaheadConfig| {
                    cost_at(verify, 1 + c.branch_rows() + c.guesses * (c.ngram - 1)) <= 2.0
                };
                let ladder = [
                    (15, 5, 15),
                    (10, 4, 10),
                    (7, 4, 7),
                    (5, 3, 5),
                    (3, 3, 3),
                    (2, 3, 2),
                ];
                let mut pick = ladder
                    .iter()
                    .map(|&(window, ngram, guesses)| LookaheadConfig {
                        window,
                        ngram,
                        guesses,
                    })
                    .find(fits)
                    .unwrap_or(LookaheadConfig {
                        window: 2,
                        ngram: 3,
                        guesses: 2,
                    });
                pick.window = params.lookahead_window.unwrap_or(pick.window);
                pick.ngram = params.lookahead_ngram.unwrap_or(pick.ngram);
                pick.guesses = params.lookahead_guesses.unwrap_or(pick.guesses);
                pick
            }
        };
        if chosen.window == 0
            || chosen.ngram < 2
            || chosen.guesses == 0
            || chosen.window > 64
            || chosen.ngram > 16
        {
            return Err(EngineError::InvalidRequest(format!(
                "lookahead needs 1 <= window <= 64, 2 <= ngram <= 16 and guesses >= 1, got {chosen:?}"
            )));
        }
        Ok(chosen)
    }

    /// The Medusa tree a request with `params` would use.
    pub fn medusa_tree_for(&self, params: &GenerateParams) -> Result<MedusaTree> {
        let heads = self
            .medusa
            .as_ref()
            .ok_or_else(|| EngineError::MethodUnavailable {
                method: "medusa",
                reason: "no Medusa heads are loaded (EngineBuilder::medusa, --medusa)".into(),
            })?;
        match &params.medusa_tree {
            Some(t) => Ok(t.clone()),
            None => self.medusa_tree(heads, params),
        }
    }

    /// The candidate tree for `heads`: chosen from their measured accuracy and this machine's
    /// verify cost when known, else a small default.
    pub(super) fn medusa_tree(&self, heads: &MedusaHeads, params: &GenerateParams) -> Result<MedusaTree> {
        Ok(match heads.accuracy() {
            Some(acc) => MedusaTree::optimal(acc, &self.costs_for(params)?.verify, MAX_DRAFT)?,
            None => MedusaTree::default_cpu(),
        })
    }
}
