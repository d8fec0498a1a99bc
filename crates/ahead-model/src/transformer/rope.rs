//! Rotary position embeddings with per-token positions (tree nodes share depths, not slots).

use super::config::{Llama3RopeScaling, ModelConfig, RopeScaling, RopeStyle, YarnRopeScaling};

/// Inverse frequencies of one head, with the configured scaling and GGUF frequency factors
/// applied, and YaRN's cos/sin scale.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    scale: f32,
    style: RopeStyle,
}

impl Rope {
    /// The model's (global) RoPE: `rope_theta` with its scaling and frequency factors.
    pub fn new(cfg: &ModelConfig) -> Self {
        let half = cfg.head_dim / 2;
        // As transformers: theta^(2i/d) in f32, then its reciprocal.
        let base: Vec<f32> = (0..half)
            .map(|i| cfg.rope_theta.powf((2 * i) as f32 / cfg.head_dim as f32))
            .collect();
        let mut inv_freq: Vec<f32> = base.iter().map(|b| 1.0 / b).collect();
        let mut scale = 1.0;
        match cfg.rope_scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv_freq.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3(s) => llama3(&mut inv_freq, s),
            RopeScaling::Yarn(y) => {
                inv_freq = yarn(&base, cfg.rope_theta, cfg.head_dim, y);
                scale = y.attention_factor;
            }
        }
        if let Some(factors) = &cfg.rope_freq_factors {
            for (f, d) in inv_freq.iter_mut().zip(factors) {
                *f /= d;
            }
        }
        Self {
            inv_freq,
            scale,
            style: cfg.rope_style,
        }
    }

    /// Sliding layers' own RoPE (Gemma 3): base `theta`, unscaled, no frequency factors.
    pub fn local(cfg: &ModelConfig, theta: f32) -> Self {
        Self::new(&ModelConfig {
            rope_theta: theta,
            rope_scaling: RopeScaling::None,
            rope_freq_factors: None,
            ..cfg.clone()
        })
    }

    /// cos and sin of every frequency at `pos`, as `[cos..., sin...]` (len head_dim).
    pub fn angles(&self, pos: usize, out: &mut [f32]) {
        let half = self.inv_freq.len();
        for (i, &f) in self.inv_freq.iter().enumerate() {
            let a = pos as f32 * f;
            out[i] = a.cos() * self.scale;
            out[half + i] = a.sin() * self.scale;
        }
    }

    /// Rotates every head in `x` (heads of `head_dim` laid end to end) by precomputed `angles`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, angles: &[f32]) {
        let half = head_dim / 2;
        let (cos, sin) = angles.split_at(half);
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Half => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band between is
/// interpolated smoothly.
fn llama3(inv_freq: &mut [f32], s: Llama3RopeScaling) {
    let old = s.original_max_position_embeddings as f32;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    for f in inv_freq {
        let wavelen = 2.0 * std::f32::consts::PI / *f;
        if wavelen > low_wavelen {
            *f /= s.factor;
        } else if wavelen >= high_wavelen {
            let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
        }
    }
}

/// YaRN's frequencies (transformers' `_compute_yarn_parameters`): dimensions below the
/// correction range keep their frequency, those above are interpolated, with a linear ramp
/// between. `base` holds theta^(2i/d).
fn yarn(base: &[f32], theta: f32, head_dim: usize, y: YarnRopeScaling) -> Vec<f32> {
    let (theta, dim) = (f64::from(theta), head_dim as f64);
    let original = y.original_max_position_embeddings as f64;
    // The dimension whose wavelength makes `rotations` turns over the original context.
    let correction = |rotations: f32| {
        dim * (original / (f64::from(rotations) * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (correction(y.beta_fast), correction(y.beta_slow));
    if y.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0) as f32, high.min(dim - 1.0) as f32);
    if low == high {
        high += 0.001;
    }
    base.iter()
        .enumerate()
        .map(|(i, &b)| {
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation = 1.0 - ramp;
            let (kept, interpolated) = (1.0 / b, 1.0 / (y.factor * b));
            interpolated * (1.0 - extrapolation) + kept * extrapolation
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transformer::config::Architecture;
    use crate::transformer::synthetic::tinyllama_config;

    /// Llama 3.1's scaled frequencies, head_dim 64, theta 500000, factor 8, low 1, high 4,
    /// original context 8192: the values of transformers' `_compute_llama3_parameters`.
    #[test]
    fn llama3_scaling_matches_the_reference_frequencies() {
        let cfg = ModelConfig {
            architecture: Architecture::Llama,
            rope_theta: 500000.0,
            rope_scaling: RopeScaling::Llama3(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            ..tinyllama_config()
        };
        let rope = Rope::new(&cfg);
        let want = [
            (0, 1.0),
            (14, 0.0032114459947525913), // short wavelength: kept
            (15, 0.0013718935677611381), // between: interpolated
            (16, 0.0005248461609929547),
            (17, 0.00017850781276799638),
            (18, 7.78465527393245e-05), // long wavelength: divided by the factor
            (31, 3.7673226901739635e-07),
        ];
        for (i, w) in want {
            let got = rope.inv_freq[i] as f64;
            assert!((got - w).abs() <= 1e-5 * w, "frequency {i}: {got} vs {w}");
        }
    }

    #[test]
    fn rotation_preserves_length_and_position_zero_is_identity() {
        for style in [RopeStyle::Interleaved, RopeStyle::Half] {
            let cfg = ModelConfig {
                rope_style: style,
                ..tinyllama_config()
            };
            let rope = Rope::new(&cfg);
            let x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut angles = vec![0.0; 64];
            rope.angles(0, &mut angles);
            let mut y = x.clone();
            rope.apply(&mut y, 64, &angles);
            assert_eq!(x, y);
            rope.angles(777, &mut angles);
            rope.apply(&mut y, 64, &angles);
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
            assert!((norm(&x) - norm(&y)).abs() < 1e-3);
        }
    }
}
