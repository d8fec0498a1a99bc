//! Lookahead decoding: Jacobi iterations in a window beside each step's verification, whose
//! n-grams become the next steps' candidates. The window's rows ride along in every drafting
//! step, so they are its side rows; their size is chosen for this machine's verify cost.

use ahead_core::spec::{cost_at, LookaheadConfig};

use super::MethodHome;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::params::GenerateParams;
use crate::spec::{LookaheadProposer, Proposer};

pub(super) struct LookaheadHome;

impl MethodHome for LookaheadHome {
    fn check(&self, engine: &Engine, params: &GenerateParams) -> Result<()> {
        engine.lookahead_config(params).map(|_| ())
    }

    fn proposer(&self, engine: &Engine, params: &GenerateParams, _: usize) -> Result<Box<dyn Proposer>> {
        Ok(Box::new(LookaheadProposer::new(engine.lookahead_config(params)?)))
    }

    /// Every drafting step also carries the window's rows: k candidates cost the forward of
    /// 1 + window rows + k, a plain step one row.
    fn side_rows(&self, engine: &Engine, params: &GenerateParams) -> Result<usize> {
        Ok(engine.lookahead_config(params)?.branch_rows())
    }

    fn settings(&self, params: &GenerateParams) -> String {
        format!(
            "{:?}",
            (
                params.lookahead_window,
                params.lookahead_ngram,
                params.lookahead_guesses
            )
        )
    }
}

impl Engine {
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
}
