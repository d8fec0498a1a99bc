//! Picks the draft length each step from the measured cost of verifying k tokens and the live
//! acceptance per draft position, down to 0 (plain decoding) when speculation does not pay.
//!
//! Expected tokens per step with k drafts: E(k) = 1 + sum_{i<=k} prod_{j<=i} a_j, where a_j is
//! the acceptance rate of position j given its predecessors were accepted. Cost in units of a
//! plain decoding step: C(k) = verify(k+1 rows) / verify(1 row) + k * draft_cost. The controller
//! maximises E(k) / C(k); k = 0 scores exactly 1.

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
}

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
    fn score(&self, k: usize) -> f64 {
        let mut expected = 1.0;
        let mut run = 1.0;
        for a in &self.accept[..k] {
            run *= a;
            expected += run;
        }
        let verify = self.verify_cost.get(k + 1).copied().unwrap_or(f64::INFINITY);
        expected / (verify + k as f64 * self.draft_cost)
    }

    /// The draft length for the next step (0: plain decoding).
    pub fn choose(&mut self) -> usize {
        if let Some(k) = self.fixed {
            return k;
        }
        let best = (0..=self.max_k())
            .max_by(|&a, &b| self.score(a).total_cmp(&self.score(b)).then(b.cmp(&a)))
            .unwrap_or(0);
        if best > 0 {
            self.idle = 0;
            return best.min(self.ramp);
        }
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
    fn fixed_always_drafts_k() {
        let mut c = Controller::fixed(3);
        c.observe(3, 0);
        assert_eq!(c.choose(), 3);
    }
}
