//! Picks the draft length each step from the measured cost of verifying k tokens and the live
//! acceptance per draft position, down to 0 (plain decoding) when speculation does not pay.
//!
//! Expected tokens per step with k drafts: E(k) = 1 + sum_{i<=k} prod_{j<=i} a_j, where a_j is
//! the acceptance rate of position j given its predecessors were accepted. Cost in units of a
//! plain decoding step: C(k) = verify(k+1 rows) / verify(1 row) + k * draft_cost. The controller
//! maximises E(k) / C(k); k = 0 scores exactly 1.
//!
//! The costs start from a measurement made once per engine (at a short context) and then follow
//! the request: the decoder reports the time of every verify forward and draft; a moving average
//! per width, and a line T(w) = a + b*w fitted through those averages, replace the startup curve,
//! which stays only as a weak anchor for widths not seen yet. As the context grows, attention makes every row dearer, and
//! the controller sees it.

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
}

/// Live timings: a moving average of the seconds of a verify forward per width observed, and
/// of the seconds per drafted token.
#[derive(Debug, Clone, Default)]
struct Timing {
    verify: Vec<Option<f64>>,
    /// Seconds of a 1-row forward implied by the first observation and the startup curve.
    scale: Option<f64>,
    draft_per_token: Option<f64>,
    /// The costs fitted at the last observation: verify curve and draft cost per token.
    fitted: Option<(Vec<f64>, f64)>,
}

/// Weight of the newest timing in its width's moving average.
const TIMING_RATE: f64 = 0.3;
/// Weight of each startup-curve point in the line fit (each observed width weighs 1).
const ANCHOR_WEIGHT: f64 = 0.05;
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
        }
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

    /// Expected tokens per step and cost of drafting `k`.
    fn score(&self, k: usize, verify_cost: &[f64], draft_cost: f64) -> f64 {
        let mut expected = 1.0;
        let mut run = 1.0;
        for a in &self.accept[..k] {
            run *= a;
            expected += run;
        }
        let verify = verify_cost.get(k + 1).copied().unwrap_or(f64::INFINITY);
        expected / (verify + k as f64 * draft_cost)
    }

    /// Verify cost per width and draft cost per token, relative to a 1-row forward, fitted to
    /// the live timings; `None` before there are any (or if the fit is degenerate).
    fn fit(&self) -> Option<(Vec<f64>, f64)> {
        let t = &self.timing;
        let scale = t.scale?;
        // Weighted least squares through the observed widths, with the startup curve (scaled
        // to seconds) as weak anchor points for widths not seen yet.
        let observed = t
            .verify
            .iter()
            .enumerate()
            .filter_map(|(w, v)| v.map(|v| (w, v, 1.0)));
        let anchors = self
            .verify_cost
            .iter()
            .enumerate()
            .skip(1)
            .map(|(w, c)| (w, c * scale, ANCHOR_WEIGHT));
        let (mut n, mut sw, mut sww, mut st, mut swt) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (w, y, weight) in observed.chain(anchors) {
            let w = w as f64;
            n += weight;
            sw += weight * w;
            sww += weight * w * w;
            st += weight * y;
            swt += weight * w * y;
        }
        let det = n * sww - sw * sw;
        if det <= 0.0 {
            return None;
        }
        let b = ((n * swt - sw * st) / det).max(0.0);
        let a = (st - b * sw) / n;
        let one = (a + b).max(1e-12);
        let curve = (0..self.verify_cost.len())
            .map(|w| {
                if w == 0 {
                    0.0
                } else {
                    ((a + b * w as f64) / one).max(1.0)
                }
            })
            .collect();
        let draft = t.draft_per_token.map_or(self.draft_cost, |d| d / one);
        Some((curve, draft))
    }

    /// Records the time of a verify forward of `width` rows, and of drafting `drafted` tokens.
    pub fn observe_time(&mut self, width: usize, verify_seconds: f64, drafted: usize, draft_seconds: f64) {
        if self.fixed.is_some() || width == 0 || !verify_seconds.is_finite() {
            return;
        }
        let t = &mut self.timing;
        let prior = self.verify_cost.get(width).copied().unwrap_or(width as f64);
        t.scale.get_or_insert(verify_seconds / prior.max(1e-9));
        if t.verify.len() <= width {
            t.verify.resize(width + 1, None);
        }
        let slot = &mut t.verify[width];
        *slot = Some(slot.map_or(verify_seconds, |old| old + TIMING_RATE * (verify_seconds - old)));
        if drafted > 0 && draft_seconds.is_finite() {
            let d = draft_seconds / drafted as f64;
            t.draft_per_token = Some(t.draft_per_token.map_or(d, |old| old + RATE * (d - old)));
        }
        self.timing.fitted = self.fit();
    }

    /// The draft length for the next step (0: plain decoding).
    pub fn choose(&mut self) -> usize {
        if let Some(k) = self.fixed {
            return k;
        }
        let (verify, draft) = match &self.timing.fitted {
            Some((v, d)) => (v.as_slice(), *d),
            None => (self.verify_cost.as_slice(), self.draft_cost),
        };
        let score = |k| self.score(k, verify, draft);
        let best = (0..=self.max_k())
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0);
        if best > 0 {
            self.idle = 0;
            self.since_plain += 1;
            if self.since_plain > CALIBRATE_EVERY {
                self.since_plain = 0;
                return 0;
            }
            return best.min(self.ramp);
        }
        self.since_plain = 0;
        self.idle += 1;
        if self.idle >= self.probe_interval && self.max_k() > 0 {
            self.idle = 0;
            self.probing = true;
            return 1;
        }
        0
    }

    /// Records a step: `accepted` of `drafted` tokens were accepted (a prefix of the chain).
    pub fn observe(&mut self, drafted: usize, accepted: usize) {
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
        for (i, a) in self.accept.iter_mut().enumerate().take(drafted) {
            if i < accepted {
                *a += RATE * (1.0 - *a);
            } else {
                *a -= RATE * *a;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_long_when_verification_is_cheap_and_acceptance_high() {
        let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.02);
        assert_eq!(c.choose(), 1, "starts small");
        for _ in 0..50 {
            c.observe(4, 4);
        }
        assert_eq!(c.choose(), 4);
        // A fully rejected draft halves the allowed length.
        c.observe(4, 0);
        assert_eq!(c.choose(), 2);
    }

    #[test]
    fn stops_speculating_when_it_does_not_pay_and_probes_later() {
        // Verification cost grows linearly: no draft length can beat plain decoding at low
        // acceptance.
        let mut c = Controller::new(vec![0.0, 1.0, 2.0, 3.0, 4.0], 0.1);
        for _ in 0..50 {
            c.observe(3, 0);
        }
        let picks: Vec<usize> = (0..PROBE_EVERY).map(|_| c.choose()).collect();
        assert!(picks[..PROBE_EVERY - 1].iter().all(|&k| k == 0), "{picks:?}");
        assert_eq!(picks[PROBE_EVERY - 1], 1, "probes after a while");
        // A failed probe doubles the wait before the next one.
        c.observe(1, 0);
        let picks: Vec<usize> = (0..2 * PROBE_EVERY).map(|_| c.choose()).collect();
        assert_eq!(picks.iter().position(|&k| k == 1), Some(2 * PROBE_EVERY - 1));
    }

    #[test]
    fn live_timings_override_an_optimistic_startup_curve() {
        // The startup curve says verification is nearly free; the forwards actually observed
        // cost in proportion to their width, and drafting is dear: speculation stops.
        let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.05);
        for _ in 0..80 {
            let k = c.choose();
            c.observe(k, k.min(1));
            c.observe_time(k + 1, 1e-3 * (k + 1) as f64, k, 5e-4 * k as f64);
        }
        // Plain decoding, but for an occasional one-token probe.
        let picks: Vec<usize> = (0..PROBE_EVERY).map(|_| c.choose()).collect();
        assert!(picks.iter().filter(|&&k| k > 0).count() <= 1, "{picks:?}");
        // The same acceptance with the cheap verification the curve promised keeps drafting.
        let mut c = Controller::new(vec![0.0, 1.0, 1.05, 1.1, 1.15, 1.2], 0.05);
        for _ in 0..30 {
            let k = c.choose();
            c.observe(k, k.min(1));
            c.observe_time(k + 1, 1e-3 * (1.0 + 0.05 * k as f64), k, 5e-5 * k as f64);
        }
        assert!(c.choose() > 0);
    }

    #[test]
    fn fixed_always_drafts_k() {
        let mut c = Controller::fixed(3);
        c.observe(3, 0);
        assert_eq!(c.choose(), 3);
    }
}
