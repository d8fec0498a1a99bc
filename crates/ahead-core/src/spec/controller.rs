//! Picks the draft length each step from the measured cost of verifying k tokens and the live
//! acceptance per draft position, down to 0 (plain decoding) when speculation does not pay.
//!
//! Expected tokens per step with k drafts: E(k) = 1 + sum_{i<=k} prod_{j<=i} a_j, where a_j is
//! the acceptance rate of position j given its predecessors were accepted. Cost in units of a
//! plain decoding step: C(k) = verify(k+1 rows) / verify(1 row) + k * draft_cost. The controller
//! maximises E(k) / C(k); k = 0 scores exactly 1.
//!
//! The costs start from a measurement made once per engine (at a short context) and then follow
//! the request: the decoder reports the time of every verify forward and draft. Each is divided
//! by the current 1-row time (plain steps, and a calibrating plain step after 32 speculative
//! ones, keep it measured); a moving average of T(w)/T(1) per width scales the startup curve's
//! extra cost, T(w)/T(1) = 1 + s (startup(w) - 1), so the curve keeps its measured shape. The startup curve stays only as a weak anchor. As the context grows, attention makes every row dearer, and
//! the controller sees it.
//!
//! A proposer whose drafts are as long as the match they copy and free to propose (prompt
//! lookup with an n-gram cache, suffix decoding) is asked every step for all it will offer,
//! and the cost model then picks how much of the offer to verify from the acceptance its
//! offers of that length met: its long offers come from long matches and are accepted far
//! more often than its short ones, which an acceptance averaged over every length hides
//! (suffix decoding's controller drafted too little and lost 5% to a fixed k = 4 on
//! Spec-Bench).
//!
//! A model drafter may also have a free second source beside it (`auto`: prompt lookup next
//! to a draft model or an EAGLE head). Each step the free source's offer is judged by its
//! length as above, against the model's own best k, and the step verifies whichever promises
//! more tokens per unit of time; the model is not run on a step its rival wins.
//!
//! A request's acceptance starts from what the method's earlier requests measured
//! ([`Learned`]), where the engine keeps that: starting every request from an optimistic prior
//! re-learns, every request, that a method does not pay on this workload, and that slow start
//! is most of what a method that does not pay costs over a 256-token answer.

mod learned;
pub use learned::Learned;

/// Acceptance statistics and cost curve of one request.
#[derive(Debug, Clone)]
pub struct Controller {
    /// `verify_cost[r]`: time of an r-row forward over a 1-row forward (index 0 unused).
    verify_cost: Vec<f64>,
    /// Cost of drafting one token, in units of a 1-row target forward.
    draft_cost: f64,
    /// Acceptance rate per draft position (exponential moving average).
    accept: Vec<f64>,
    /// Steps since the last speculative one, for periodic probing when k = 0.
    idle: usize,
    /// A fixed draft length (`--num-draft`), bypassing the cost model.
    fixed: Option<usize>,
    /// Plain steps between probes; `probing` is set while a probe's outcome is awaited.
    probe_interval: usize,
    probing: bool,
    /// Longest draft allowed now: starts at 1, doubles after a fully accepted draft, halves
    /// after a fully rejected one (slow start), so learning a poor acceptance costs little.
    ramp: usize,
    timing: Timing,
    /// Speculative steps since the last plain one: a plain step now and then measures the
    /// 1-row cost, which a line fitted to drafted widths alone cannot tell.
    since_plain: usize,
    /// Rows every drafting step adds besides its drafts (lookahead's window); plain steps
    /// carry none.
    side_rows: usize,
    /// The proposer stops each draft where its own confidence runs out (prompt lookup with an
    /// n-gram cache, suffix decoding, a confident draft model), so its drafts are short when it
    /// is unsure: the cost model's k is offered at once, as a cap, without the slow start.
    proposer_limits_length: bool,
    /// The deepest draft position observed, so that only measured positions are learned.
    drafted_positions: usize,
    /// The proposer's drafts are as long as its match and free to propose (see
    /// `with_offers_judged_by_length`).
    judge_offers: bool,
    /// For such a proposer: per length n it offers (index n), the acceptance per draft
    /// position of its n-node offers.
    offers: Vec<Offer>,
    /// The length of the offer this step verifies part of (see `keep_offer`).
    offered: Option<usize>,
    /// The offers come from a free source beside the proposer's own drafts (see
    /// `with_free_offers`).
    free_offers: bool,
    /// This step verifies a free offer: what it measures is the offer's, not the model's.
    offer_is_free: bool,
    /// This step's k is 0 to measure a plain step's time, whatever anything offers.
    calibrating: bool,
}

/// What a proposer's offers of one length returned.
#[derive(Debug, Clone)]
struct Offer {
    /// Acceptance per draft position (moving averages), as `Controller::accept`.
    accept: Vec<f64>,
    /// Offers of this length declined since the last one verified.
    declined: usize,
    /// Offers of this length verified (what a request learned of them).
    verified: usize,
}

/// Live timings, as ratios to the current 1-row forward time: the context grows during a
/// request and every row gets dearer, so a width timed long ago is compared with the 1-row time
/// of its day, not with today's.
#[derive(Debug, Clone, Default)]
struct Timing {
    /// Moving average of the seconds of a 1-row forward (plain steps and calibration steps).
    one: Option<f64>,
    /// `one` is only inferred from a wider forward and the startup curve, not measured yet.
    one_inferred: bool,
    /// Per width observed: moving average of T(w) / T(1), and its weight in the fit (1 when
    /// just observed, fading while other widths are observed, so old ratios count less).
    ratio: Vec<Option<(f64, f64)>>,
    /// Moving average of the seconds per drafted token over T(1).
    draft_ratio: Option<f64>,
    /// The costs fitted at the last observation: verify curve and draft cost per token.
    fitted: Option<(Vec<f64>, f64)>,
}

/// Weight of the newest timing in its width's moving average.
const TIMING_RATE: f64 = 0.3;
/// Weight a width's ratio keeps in the fit at each observation of another width.
const STALE_DECAY: f64 = 0.9;
/// Weight of each startup-curve point in the line fit (a width just observed weighs 1).
const ANCHOR_WEIGHT: f64 = 0.01;
/// Startup-curve points whose extra rows cost less than this (of a step) say nothing of how
/// the live timings scale it.
const MIN_ROW_COST: f64 = 1e-3;
/// Speculative steps between two plain (calibrating) ones.
const CALIBRATE_EVERY: usize = 32;

/// Weight of the newest observation in the moving averages.
const RATE: f64 = 0.15;
/// Starting acceptance estimate: optimistic, so speculation is tried before it is judged.
const PRIOR: f64 = 0.7;
/// After this many plain steps, draft one token to re-measure acceptance. The interval doubles
/// after every failed probe (up to `PROBE_MAX`), so a method that does not pay costs almost
/// nothing, and returns to the start after a probe that is accepted.
const PROBE_EVERY: usize = 16;
const PROBE_MAX: usize = 1024;

impl Controller {
    /// `verify_cost[r]` for r = 1..=max_k+1 (index 0 ignored), `draft_cost` per drafted token.
    pub fn new(verify_cost: Vec<f64>, draft_cost: f64) -> Self {
        let max_k = verify_cost.len().saturating_sub(2);
        Self {
            verify_cost,
            draft_cost,
            accept: vec![PRIOR; max_k],
            idle: 0,
            fixed: None,
            probe_interval: PROBE_EVERY,
            probing: false,
            ramp: 1,
            timing: Timing::default(),
            since_plain: 0,
            side_rows: 0,
            proposer_limits_length: false,
            drafted_positions: 0,
            offers: (0..=max_k)
                .map(|n| Offer {
                    accept: vec![PRIOR; n],
                    declined: 0,
                    verified: 0,
                })
                .collect(),
            offered: None,
            judge_offers: false,
            free_offers: false,
            offer_is_free: false,
            calibrating: false,
        }
    }

    /// Starts from the acceptance earlier requests of the same method measured, instead of
    /// the optimistic prior (positions they never drafted keep the prior).
    pub fn starting_from(mut self, learned: &Learned) -> Self {
        if self.fixed.is_none() {
            for (a, l) in self.accept.iter_mut().zip(&learned.accept) {
                *a = *l;
            }
            for (offer, learned) in self.offers.iter_mut().zip(&learned.offers) {
                offer.declined = learned.declined;
                if learned.requests > 0 {
                    for (a, l) in offer.accept.iter_mut().zip(&learned.accept) {
                        *a = *l;
                    }
                }
            }
            self.idle = learned.idle;
        }
        self
    }

    /// For proposers that end each draft where their confidence runs out (see the field).
    pub fn with_proposer_limiting_length(mut self) -> Self {
        self.proposer_limits_length = true;
        self
    }

    /// For a proposer whose drafts are as long as the match they copy and free to propose
    /// (prompt lookup with a cache, suffix decoding): it is asked every step for all it
    /// offers, and `keep_offer` judges how much of an offer to verify by its length. Not for
    /// a model drafter (drafting all it could costs a forward per token) nor for one that
    /// fills whatever budget it is given (token recycling).
    pub fn with_offers_judged_by_length(mut self) -> Self {
        self.proposer_limits_length = true;
        self.judge_offers = true;
        self
    }

    /// For a proposer with a free second source of drafts (`Proposer::free_offer`): each step
    /// `take_free_offer` weighs that source's offer, by its length, against the k `choose`
    /// gave the proposer's own drafts.
    pub fn with_free_offers(mut self) -> Self {
        self.free_offers = true;
        self
    }

    /// Every drafting step also carries `rows` rows that are not drafts (lookahead's Jacobi
    /// window): k drafts then cost a forward of 1 + rows + k, a plain step still one row.
    pub fn with_side_rows(mut self, rows: usize) -> Self {
        self.side_rows = rows;
        self
    }

    /// Rows of a step drafting `k`, with `others` rows of other sequences in the forward.
    fn width(&self, k: usize, others: usize) -> usize {
        others + 1 + k + if k > 0 { self.side_rows } else { 0 }
    }

    /// A controller that always drafts `k` (fixed `--num-draft`).
    pub fn fixed(k: usize) -> Self {
        let mut c = Self::new(vec![1.0; k + 2], 0.0);
        c.fixed = Some(k);
        c
    }

    /// The most tokens this controller may ask for.
    pub fn max_k(&self) -> usize {
        self.accept.len()
    }

    /// Expected tokens per step when drafting `k`: E(k).
    fn expected(&self, k: usize) -> f64 {
        1.0 + chain_expectation(&self.accept[..k])
    }

    /// Tokens per unit of time when drafting `k` in a forward that also carries `others` rows
    /// of other sequences (each yielding about one token): (others + E(k)) / C(others + 1 + k)
    /// (plus the side rows when k > 0).
    /// With `others` = 0 this is E(k) / C(k + 1); a busy batch makes a draft row dearer
    /// relative to what the step yields already, so k falls as load rises.
    fn score(&self, k: usize, others: usize, verify_cost: &[f64], draft_cost: f64) -> f64 {
        let verify = cost_at(verify_cost, self.width(k, others));
        (others as f64 + self.expected(k)) / (verify + k as f64 * draft_cost)
    }

    /// Verify cost per width and draft cost per token, relative to a 1-row forward, fitted to
    /// the live timings; `None` before there are any (or if the fit is degenerate).
    fn fit(&self) -> Option<(Vec<f64>, f64)> {
        let t = &self.timing;
        t.one?;
        // The live timings scale the startup curve, T(w)/T(1) = 1 + s (startup(w) - 1), s by
        // least squares through the origin over the observed widths, with the startup curve's
        // own points (s = 1) as weak anchors. The curve keeps its measured shape: the first
        // extra rows cost more than later ones, which the few widths a request verifies cannot
        // show (a line through them priced a 5-row verify like 1 + 4 x the 2-row step's row and
        // cut prompt lookup's offers short: 0.92 of its fixed k = 4 on Spec-Bench's math).
        let observed = t
            .ratio
            .iter()
            .enumerate()
            .filter_map(|(w, r)| r.map(|(r, weight)| (w, r, weight)));
        let anchors = self
            .verify_cost
            .iter()
            .enumerate()
            .skip(2)
            .map(|(w, &c)| (w, c, ANCHOR_WEIGHT));
        let (mut num, mut den) = (0.0, 0.0);
        for (w, r, weight) in observed.chain(anchors) {
            let base = cost_at(&self.verify_cost, w) - 1.0;
            if base > MIN_ROW_COST {
                num += weight * base * (r - 1.0);
                den += weight * base * base;
            }
        }
        if den <= 0.0 {
            return None;
        }
        let scale = (num / den).max(0.0);
        let curve = (0..self.verify_cost.len())
            .map(|w| match w {
                0 => 0.0,
                _ => 1.0 + scale * (self.verify_cost[w] - 1.0),
            })
            .collect();
        Some((curve, t.draft_ratio.unwrap_or(self.draft_cost)))
    }

    /// Records the time of a verify forward of `width` rows, and of drafting `drafted` tokens.
    pub fn observe_time(&mut self, width: usize, verify_seconds: f64, drafted: usize, draft_seconds: f64) {
        if self.fixed.is_some() || width == 0 || !verify_seconds.is_finite() {
            return;
        }
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + TIMING_RATE * (new - o)));
        let t = &mut self.timing;
        if width == 1 {
            // A plain step measured the 1-row time: no calibrating step is due for a while.
            self.since_plain = 0;
            t.one = if t.one_inferred {
                Some(verify_seconds)
            } else {
                ema(t.one, verify_seconds)
            };
            t.one_inferred = false;
        }
        // Before any plain step, the startup curve gives the 1-row time to compare with.
        if t.one.is_none() {
            let prior = self.verify_cost.get(width).copied().unwrap_or(width as f64);
            t.one = Some(verify_seconds / prior.max(1e-9));
            t.one_inferred = true;
        }
        let one = t.one.unwrap_or(verify_seconds);
        for (_, weight) in t.ratio.iter_mut().flatten() {
            *weight *= STALE_DECAY;
        }
        if width > 1 {
            if t.ratio.len() <= width {
                t.ratio.resize(width + 1, None);
            }
            let r = ema(t.ratio[width].map(|(r, _)| r), verify_seconds / one).unwrap_or(1.0);
            t.ratio[width] = Some((r, 1.0));
        }
        if drafted > 0 && draft_seconds.is_finite() {
            t.draft_ratio = ema(t.draft_ratio, draft_seconds / drafted as f64 / one);
        }
        self.timing.fitted = self.fit();
    }

    /// The draft length for the next step (0: plain decoding).
    pub fn choose(&mut self) -> usize {
        self.choose_under_load(0)
    }

    /// The draft length for the next step when `others` rows of other sequences share its
    /// forward (batched serving): the k that maximises the whole forward's tokens per second.
    pub fn choose_under_load(&mut self, others: usize) -> usize {
        self.calibrating = false;
        if let Some(k) = self.fixed {
            return k;
        }
        let (verify, draft) = match &self.timing.fitted {
            Some((v, d)) => (v.as_slice(), *d),
            None => (self.verify_cost.as_slice(), self.draft_cost),
        };
        let score = |k| self.score(k, others, verify, draft);
        let best = (0..=self.max_k())
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0);
        // A proposer that limits its own length is asked every step for as much as it will
        // offer; `keep_offer` then judges how much of the offer to verify by its length.
        let best = if self.judge_offers && self.could_pay(others, verify, draft) {
            self.max_k()
        } else {
            best
        };
        if best > 0 {
            self.idle = 0;
            self.since_plain += 1;
            // Only a controller steered by live timings needs the 1-row time re-measured (a
            // seeded sampled request's follows nominal costs: a plain step would be pure loss).
            if self.since_plain > CALIBRATE_EVERY && self.timing.one.is_some() {
                self.since_plain = 0;
                self.calibrating = true;
                return 0;
            }
            if self.proposer_limits_length {
                return best;
            }
            return best.min(self.ramp);
        }
        // With free offers this step may still draft (`take_free_offer` counts it).
        if !self.free_offers {
            self.since_plain = 0;
        }
        self.idle += 1;
        if self.could_pay(others, verify, draft) && self.idle >= self.probe_interval && self.max_k() > 0 {
            self.idle = 0;
            self.probing = true;
            return 1;
        }
        0
    }

    /// Whether drafting could pay at all: with every draft accepted, k drafts give k + 1
    /// tokens, in a forward that also carries the side rows. When even that loses to plain
    /// decoding, a probe is pure cost.
    fn could_pay(&self, others: usize, verify: &[f64], draft: f64) -> bool {
        let plain = (others + 1) as f64 / cost_at(verify, self.width(0, others));
        (1..=self.max_k()).any(|k| {
            (others + k + 1) as f64 / (cost_at(verify, self.width(k, others)) + k as f64 * draft) > plain
        })
    }

    /// How many nodes (a prefix) of the `nodes`-node draft that a proposer limiting its own
    /// length offered are worth verifying, by the acceptance its offers of that length met
    /// (every other proposer's drafts were sized beforehand: all of them). An offer length
    /// that does not pay is still verified whole every `PROBE_EVERY`-th time, so that its
    /// estimates can recover.
    pub fn keep_offer(&mut self, nodes: usize, others: usize) -> usize {
        self.offered = None;
        if !self.judge_offers || self.fixed.is_some() || nodes == 0 {
            return nodes;
        }
        let Some(offer) = self.offers.get(nodes) else {
            return nodes;
        };
        let (verify, draft) = match &self.timing.fitted {
            Some((v, d)) => (v.as_slice(), *d),
            None => (self.verify_cost.as_slice(), self.draft_cost),
        };
        let score = |m: usize| {
            let expected = 1.0 + chain_expectation(&offer.accept[..m]);
            (others as f64 + expected) / (cost_at(verify, self.width(m, others)) + m as f64 * draft)
        };
        let best = (0..=nodes)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0);
        let Some(offer) = self.offers.get_mut(nodes) else {
            return nodes;
        };
        let keep = if best > 0 {
            best
        } else if offer.declined + 1 >= PROBE_EVERY {
            nodes
        } else {
            offer.declined += 1;
            return 0;
        };
        offer.declined = 0;
        self.offered = Some(nodes);
        keep
    }

    /// How many nodes (a prefix) of the free source's `nodes`-node offer to verify this step
    /// instead of the proposer's own `k` drafts (what `choose_under_load(others)` just gave):
    /// the prefix with the most tokens per unit of time, if that beats `k` drafts of the
    /// proposer's own; else 0, and the proposer drafts its `k`. Free offers of a length that
    /// never wins are still verified every `PROBE_EVERY`-th time, so that their estimates can
    /// recover; none is taken on a calibrating step.
    pub fn take_free_offer(&mut self, nodes: usize, k: usize, others: usize) -> usize {
        self.offered = None;
        self.offer_is_free = false;
        let nodes = nodes.min(self.max_k());
        if !self.free_offers || self.fixed.is_some() || self.calibrating || nodes == 0 {
            return 0;
        }
        let (verify, draft) = match &self.timing.fitted {
            Some((v, d)) => (v.as_slice(), *d),
            None => (self.verify_cost.as_slice(), self.draft_cost),
        };
        let own = self.score(k, others, verify, draft);
        let accept = &self.offers[nodes].accept;
        // The offer costs only its rows (no side rows: those ride with the proposer's drafts).
        let score = |m: usize| {
            (others as f64 + 1.0 + chain_expectation(&accept[..m])) / cost_at(verify, others + 1 + m)
        };
        let best = (1..=nodes)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(1);
        let wins = score(best) > own;
        let offer = &mut self.offers[nodes];
        let keep = if wins {
            best
        } else if offer.declined + 1 >= PROBE_EVERY {
            nodes
        } else {
            offer.declined += 1;
            if k == 0 {
                // A plain step after all.
                self.since_plain = 0;
            }
            return 0;
        };
        offer.declined = 0;
        if k == 0 {
            // A drafting step `choose` did not count.
            self.since_plain += 1;
        }
        self.offered = Some(nodes);
        self.offer_is_free = true;
        keep
    }

    /// Records a step: `accepted` of `drafted` tokens were accepted (a prefix of the chain).
    pub fn observe(&mut self, drafted: usize, accepted: usize) {
        if let Some(offer) = self.offered.take().and_then(|n| self.offers.get_mut(n)) {
            learn(&mut offer.accept, drafted, accepted);
            offer.verified += 1;
        }
        // A free offer's outcome says nothing of the proposer's own drafts.
        if std::mem::take(&mut self.offer_is_free) {
            return;
        }
        // A rejection ends the chain: positions past it were not measured.
        self.drafted_positions = self.drafted_positions.max(drafted.min(accepted + 1));
        if drafted > 0 && accepted == drafted {
            self.ramp = (self.ramp * 2).min(self.max_k().max(1));
        } else if drafted > 0 && accepted == 0 {
            self.ramp = (self.ramp / 2).max(1);
        }
        if self.probing && drafted > 0 {
            self.probing = false;
            self.probe_interval = if accepted > 0 {
                PROBE_EVERY
            } else {
                (self.probe_interval * 2).min(PROBE_MAX)
            };
        }
        learn(&mut self.accept, drafted, accepted);
    }
}

/// Folds one step into acceptance per position: the first `accepted` of `drafted` positions
/// were accepted, the next one rejected, and those after it not measured.
fn learn(accept: &mut [f64], drafted: usize, accepted: usize) {
    for (i, a) in accept.iter_mut().enumerate().take(drafted) {
        if i < accepted {
            *a += RATE * (1.0 - *a);
        } else {
            *a -= RATE * *a;
            break;
        }
    }
}

/// Expected accepted drafts of a chain with acceptance `accept` per position (each given its
/// predecessors accepted): sum over i of prod_{j <= i} accept[j].
fn chain_expectation(accept: &[f64]) -> f64 {
    let mut run = 1.0;
    accept
        .iter()
        .map(|a| {
            run *= a;
            run
        })
        .sum()
}

/// `curve[w]`, extended past its end along its last segment (a batch can be wider than the
/// widths one sequence measured).
pub fn cost_at(curve: &[f64], w: usize) -> f64 {
    match curve.len() {
        0..=1 => w as f64,
        n if w < n => curve[w],
        n => {
            let (a, b) = (curve[n - 2], curve[n - 1]);
            b + (b - a).max(0.0) * (w - (n - 1)) as f64
        }
    }
}

#[cfg(test)]
mod tests;
