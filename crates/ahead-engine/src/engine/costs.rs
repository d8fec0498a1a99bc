//! What drafting costs on this engine, in plain decoding steps of the target: the verify
//! curve T(r)/T(1) and each drafter's cost per drafted token, measured once per engine, or
//! nominal (from the models' sizes) for seeded sampling.

use ahead_core::spec::MedusaTree;
use ahead_model::eagle::EagleHead;
use ahead_model::medusa::MedusaHeads;
use ahead_model::Model;

use super::{Engine, MAX_DRAFT};
use crate::error::Result;
use crate::params::GenerateParams;
use crate::spec::cost;

impl Engine {
    /// The costs that steer a request's drafting. Measured on this machine, except for seeded
    /// sampling, whose tokens must be the same in every run: there, which positions get drafts
    /// changes which random numbers are drawn where, so the drafting schedule must not depend
    /// on timings (measured once per process, under whatever else the machine is doing).
    /// Those requests use nominal costs, a function of the models' sizes alone.
    pub(super) fn costs_for(&self, params: &GenerateParams) -> Result<&Costs> {
        if params.reproducible && !params.sampling.is_greedy() {
            return Ok(self.nominal.get_or_init(|| {
                Costs::nominal(
                    &self.loaded.model,
                    self.drafters.draft.as_ref().map(|d| d.model.weight_bytes()),
                    self.drafters.medusa.as_deref().map(MedusaHeads::weight_bytes),
                    self.drafters.eagle.as_deref().map(EagleHead::weight_bytes),
                )
            }));
        }
        self.costs()
    }

    /// The verify cost curve (and the draft's step cost), measured once per engine.
    fn costs(&self) -> Result<&Costs> {
        if let Some(c) = self.costs.get() {
            return Ok(c);
        }
        let model = &self.loaded.model;
        let verify = cost::verify_cost_curve(model, MAX_DRAFT + 1)?;
        let draft_step = match &self.drafters.draft {
            Some(d) => cost::step_seconds(&d.model)? / cost::step_seconds(model)?.max(1e-9),
            None => 0.0,
        };
        // Medusa's heads run once per step, for the whole tree: charged per drafted token as
        // if spread over the default tree.
        let medusa_step = match &self.drafters.medusa {
            Some(h) => {
                cost::medusa_seconds(h)?
                    / cost::step_seconds(model)?.max(1e-9)
                    / MedusaTree::default_cpu().len() as f64
            }
            None => 0.0,
        };
        let eagle_step = match &self.drafters.eagle {
            Some(h) => cost::eagle_seconds(h)? / cost::step_seconds(model)?.max(1e-9),
            None => 0.0,
        };
        Ok(self.costs.get_or_init(|| Costs {
            verify,
            draft_step,
            medusa_step,
            eagle_step,
        }))
    }
}

/// Costs relative to one plain decoding step of the target.
#[derive(Debug, Clone)]
pub(super) struct Costs {
    /// `T(r) / T(1)` for r = 1..=MAX_DRAFT + 1 (index 0 unused).
    pub verify: Vec<f64>,
    pub draft_step: f64,
    pub medusa_step: f64,
    /// One EAGLE chain step over a target step.
    pub eagle_step: f64,
}

impl Costs {
    /// Costs from sizes alone. A model whose weights fit in cache pays about a step per verify
    /// row (its forward is per-row work); a larger one streams its weights once for all rows,
    /// so a row adds a share of a step that falls with the model's size (`nominal_row_cost`).
    /// Drafting costs its weights' share of the target's.
    fn nominal(
        model: &Model,
        draft_bytes: Option<usize>,
        medusa_bytes: Option<usize>,
        eagle_bytes: Option<usize>,
    ) -> Self {
        let bytes = model.weight_bytes().max(1) as f64;
        let per_row = nominal_row_cost(bytes);
        let mut verify: Vec<f64> = (0..=MAX_DRAFT + 1)
            .map(|r| 1.0 + (r as f64 - 1.0) * per_row)
            .collect();
        verify[0] = 0.0;
        Self {
            verify,
            draft_step: draft_bytes.map_or(0.0, |b| b as f64 / bytes),
            medusa_step: medusa_bytes
                .map_or(0.0, |b| b as f64 / bytes / MedusaTree::default_cpu().len() as f64),
            eagle_step: eagle_bytes.map_or(0.0, |b| b as f64 / bytes),
        }
    }
}

/// A verify row's nominal share of a step for a model of `bytes` of weights: a step per row in
/// cache, else 0.15 at 100 MB falling with the square root of the size. Fitted to measured
/// points (BENCHMARKS.md): SmolLM2-135M Q4_1 (98 MB) adds 0.07-0.14 of a step per row at 128
/// tokens of context and 0.15-0.33 at 512-1,024 on 2 cores (a chat's context lies between; at
/// 0.1 seeded sampling drafted where it lost: the draft model and lookahead at 0.92x on
/// Spec-Bench, 0.95x at 0.15), TinyLlama-1.1B shapes (1.1 GB) 0.01-0.06.
fn nominal_row_cost(bytes: f64) -> f64 {
    if bytes <= NOMINAL_CACHE_BYTES {
        return 1.0;
    }
    (0.15 * (100e6 / bytes).sqrt()).clamp(0.02, 1.0)
}

/// Weights up to this size are taken to sit in cache when costs are nominal.
const NOMINAL_CACHE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::params::GenerateParams;
    use crate::Engine;
    use ahead_core::sampling::SamplingParams;
    use ahead_model::{load, LoadOptions, ModelSource};

    #[test]
    fn seeded_sampling_is_steered_by_nominal_costs_and_greedy_by_measured_ones() {
        let loaded = load(&ModelSource::Default, &LoadOptions::default()).unwrap();
        let engine = Engine::from_loaded(loaded);
        let sampled = GenerateParams {
            sampling: SamplingParams {
                temperature: 0.8,
                ..SamplingParams::greedy()
            },
            reproducible: true,
            ..Default::default()
        };
        let nominal = engine.costs_for(&sampled).unwrap();
        let expected = Costs::nominal(&engine.loaded.model, None, None, None);
        assert_eq!(nominal.verify, expected.verify);
        // stories260K fits in cache: each verify row costs a step.
        assert_eq!(nominal.verify[1..4], [1.0, 2.0, 3.0]);
        // Larger models pay less per row, the less the larger.
        assert_eq!(nominal_row_cost(100e6), 0.15);
        assert!((nominal_row_cost(1.1e9) - 0.045).abs() < 0.001);
        assert_eq!(nominal_row_cost(1e12), 0.02);
        let measured = engine.costs_for(&GenerateParams::default()).unwrap();
        assert!(std::ptr::eq(measured, engine.costs.get().unwrap()));
        let unseeded = GenerateParams {
            reproducible: false,
            ..sampled
        };
        assert!(std::ptr::eq(engine.costs_for(&unseeded).unwrap(), measured));
    }
}
