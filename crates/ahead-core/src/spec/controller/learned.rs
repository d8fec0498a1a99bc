//! What a method's finished requests measured, where its next request's controller starts
//! (`Controller::starting_from`).

use super::Controller;

/// What one method's finished requests measured: the acceptance per draft position (only the
/// positions some request drafted; deeper ones keep the prior), and for a proposer whose
/// offers are judged by their length (or a free source's), the acceptance of its offers of
/// each length some request verified. Also where the last request left its probes' count
/// of declined steps: a request shorter than the probe interval would otherwise never probe,
/// and a method that an early estimate (or a startup cost measured under load) judged
/// unprofitable would stay unmeasured for good on a server of short requests. (The interval
/// itself, which doubles after each failed probe, starts afresh with each request: carried
/// over, it kept token recycling off through whole Spec-Bench categories where it pays.)
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Learned {
    pub(super) accept: Vec<f64>,
    /// Requests folded in so far.
    requests: usize,
    /// Per offer length n (index n): what requests measured of such offers.
    pub(super) offers: Vec<LearnedOffer>,
    /// The proposer's own probe: steps idle since the last one.
    pub(super) idle: usize,
}

/// What requests measured of a proposer's offers of one length.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct LearnedOffer {
    /// Acceptance per position.
    pub(super) accept: Vec<f64>,
    /// Requests that verified such an offer (0: never measured, the prior stays).
    pub(super) requests: usize,
    /// Offers of this length declined since one was last verified.
    pub(super) declined: usize,
}

impl Learned {
    /// Folds in one more request's final estimates: the mean of every request so far, with
    /// the older ones fading once there are `LEARNED_WINDOW` of them (workloads drift).
    pub fn fold(&mut self, finished: &Controller) {
        // A fixed draft length measured acceptance, but is not this method's controller.
        if finished.fixed.is_some() {
            return;
        }
        self.fold_offers(finished);
        self.idle = finished.idle;
        let seen = finished.drafted_positions.min(finished.accept.len());
        if seen == 0 {
            return;
        }
        self.requests += 1;
        let weight = 1.0 / self.requests.min(LEARNED_WINDOW) as f64;
        if self.accept.len() < seen {
            let old = self.accept.len();
            self.accept.extend_from_slice(&finished.accept[old..seen]);
        }
        for (mine, theirs) in self.accept.iter_mut().zip(&finished.accept[..seen]) {
            *mine += weight * (theirs - *mine);
        }
    }

    /// Folds in the offers of each length the finished request verified, as `accept`.
    fn fold_offers(&mut self, finished: &Controller) {
        if self.offers.len() < finished.offers.len() {
            self.offers.resize(finished.offers.len(), LearnedOffer::default());
        }
        for (mine, theirs) in self.offers.iter_mut().zip(&finished.offers) {
            mine.declined = theirs.declined;
            if theirs.verified == 0 {
                continue;
            }
            if mine.requests == 0 {
                mine.accept = theirs.accept.clone();
            }
            mine.requests += 1;
            let weight = 1.0 / mine.requests.min(LEARNED_WINDOW) as f64;
            for (m, t) in mine.accept.iter_mut().zip(&theirs.accept) {
                *m += weight * (t - *m);
            }
        }
    }

    /// Whether any request measured anything to start from.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.offers.iter().all(|o| o.requests == 0)
    }

    /// Acceptance per draft position, as far as measured.
    pub fn acceptance(&self) -> &[f64] {
        &self.accept
    }

    /// Requests folded in.
    pub fn requests(&self) -> usize {
        self.requests
    }
}

/// Requests over which `Learned` averages before older ones fade.
const LEARNED_WINDOW: usize = 16;
