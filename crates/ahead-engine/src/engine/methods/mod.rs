//! Each method's home on an engine ([`MethodHome`]): what it needs loaded and which settings
//! it accepts, the proposer a request gets, what a drafted token costs, whether free drafts
//! ride beside its own (`auto`), the rows a step adds besides its drafts, and the settings its learned acceptance is kept under. A new method is
//! a module here and an arm in [`home`]; what is common to all of them (the controller, the
//! learning key, the KV slots, which method `Auto` stands for) is below.

mod auto;
mod draft;
mod eagle;
mod lookahead;
mod lookup;
mod medusa;

use ahead_core::spec::Controller;

use super::costs::Costs;
use super::{Engine, MAX_DRAFT};
use crate::error::Result;
use crate::params::{GenerateParams, Method};
use crate::spec::{NoDraft, Proposer};

/// One method's parts on an engine.
trait MethodHome: Sync {
    /// The error a request would meet at its start (its drafter not loaded, its settings
    /// invalid), without starting it.
    fn check(&self, _engine: &Engine, _params: &GenerateParams) -> Result<()> {
        Ok(())
    }

    /// The proposer of a request with `params`, with room for `capacity` positions.
    fn proposer(
        &self,
        engine: &Engine,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>>;

    /// What drafting one token costs on `engine`, in target steps.
    fn draft_cost(&self, _engine: &Engine, _costs: &Costs) -> f64 {
        0.0
    }

    /// Whether its proposer offers free drafts beside its own (`Proposer::free_offer`), for
    /// the controller to weigh against them every step.
    fn offers_free_drafts(&self) -> bool {
        false
    }

    /// Rows every drafting step adds besides its drafts (lookahead's window).
    fn side_rows(&self, _engine: &Engine, _params: &GenerateParams) -> Result<usize> {
        Ok(0)
    }

    /// The settings that change its acceptance (its learned acceptance is kept per setting).
    fn settings(&self, _params: &GenerateParams) -> String {
        String::new()
    }
}

/// Plain decoding: never drafts.
struct Vanilla;

impl MethodHome for Vanilla {
    fn proposer(&self, _: &Engine, _: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(NoDraft))
    }
}

/// The home of `method` (`Auto` resolved first: see [`Engine::resolved_method`]).
fn home(method: Method) -> &'static dyn MethodHome {
    match method {
        Method::Draft => &draft::DraftHome,
        Method::PromptLookup => &lookup::PromptLookupHome,
        Method::Medusa => &medusa::MedusaHome,
        Method::Lookahead => &lookahead::LookaheadHome,
        Method::Eagle => &eagle::EagleHome,
        Method::Hybrid => &eagle::HybridHome,
        Method::Recycling => &lookup::RecyclingHome,
        Method::Suffix => &lookup::SuffixHome,
        Method::Auto => &auto::AutoHome,
        Method::Vanilla => &Vanilla,
    }
}

impl Engine {
    /// The proposer of `method` (resolved) for a request with `params`, with room for
    /// `capacity` positions.
    pub(super) fn proposer_for(
        &self,
        method: Method,
        params: &GenerateParams,
        capacity: usize,
    ) -> Result<Box<dyn Proposer>> {
        home(method).proposer(self, params, capacity)
    }

    /// Whether `params`' method can run on this engine (its drafter is loaded, its settings
    /// valid): the error a request would meet at its start, without starting it.
    pub fn method_available(&self, params: &GenerateParams) -> Result<()> {
        home(self.resolved_method(params)).check(self, params)
    }

    /// The controller that sizes `method`'s drafts: fixed when `params` fixes k, else the cost
    /// model over this machine's measured costs (side rows included).
    pub(super) fn controller_for(
        &self,
        method: Method,
        params: &GenerateParams,
        proposer: &dyn Proposer,
    ) -> Result<Controller> {
        Ok(match (method, params.num_draft) {
            (Method::Vanilla, _) => Controller::fixed(0),
            (_, Some(k)) => Controller::fixed(k),
            (m, None) => {
                let home = home(m);
                let draft_cost = home.draft_cost(self, self.costs_for(params)?);
                let c = self
                    .cost_controller(params, draft_cost, proposer)?
                    .with_side_rows(home.side_rows(self, params)?);
                if home.offers_free_drafts() {
                    c.with_free_offers()
                } else {
                    c
                }
            }
        })
    }

    /// Under which key a request's controller learns from (and for) the method's other
    /// requests: `None` for a fixed draft length, plain decoding, and seeded sampling (whose
    /// tokens depend on the drafting schedule, which must then not depend on other requests).
    /// The key holds what changes acceptance: the method, its settings, greedy or sampling.
    pub(super) fn learning_key(&self, method: Method, params: &GenerateParams) -> Option<String> {
        if method == Method::Vanilla || params.num_draft.is_some() || params.seeded_sampling() {
            return None;
        }
        let mode = if params.sampling.is_greedy() {
            "greedy"
        } else {
            "sampled"
        };
        Some(format!(
            "{} {mode} {}",
            method.name(),
            home(method).settings(params)
        ))
    }

    /// The target's KV-cache slots a request with a `prompt_len`-token prompt allocates: the
    /// prompt, the completion, the most drafts a step verifies and the method's side rows
    /// (lookahead's window), at most the context (what a server's KV budget must reserve).
    pub fn cache_slots(&self, prompt_len: usize, params: &GenerateParams) -> Result<usize> {
        let method = self.resolved_method(params);
        let drafts = match (method, params.num_draft) {
            (Method::Vanilla, _) => 0,
            (_, Some(k)) => k,
            (_, None) => MAX_DRAFT,
        };
        let side = home(method).side_rows(self, params)?;
        let context = self.loaded.model.config().max_seq_len;
        let completion = params.max_tokens.min(context.saturating_sub(prompt_len));
        Ok((prompt_len + completion + drafts + side).min(context))
    }

    /// The method a request with `params` runs on this engine: `Auto` is itself (prompt
    /// lookup beside a model drafter, see `methods::auto`) when a draft model given by the
    /// user or an EAGLE head is loaded, else prompt lookup. Seeded sampling's `Auto` is prompt
    /// lookup too: its schedule follows nominal costs, which overrate every model drafter
    /// under sampling (each measured 0.94-0.97x of plain decoding on Spec-Bench), while
    /// lookup's drafts cost nothing to make.
    pub fn resolved_method(&self, params: &GenerateParams) -> Method {
        match params.method {
            Method::Auto if auto::model_drafter(self).is_some() && !params.seeded_sampling() => Method::Auto,
            Method::Auto => Method::PromptLookup,
            m => m,
        }
    }
}
