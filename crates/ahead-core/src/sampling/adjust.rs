//! OpenAI's logit adjustments, applied to the target's logits before the warpers: presence and
//! frequency penalties over the generated tokens (as vLLM counts them: the prompt does not
//! count), a bias per token id, and a minimum length (end-of-sequence tokens are masked until
//! it is reached).

use crate::error::CoreError;

/// Largest bias OpenAI accepts, either sign (+-100 bans or forces a token in practice).
pub const MAX_LOGIT_BIAS: f32 = 100.0;

/// The adjustments of one request; the default changes nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogitAdjust {
    /// Subtracted once from every token the output already holds. Range [-2, 2].
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the output. Range [-2, 2].
    pub frequency_penalty: f32,
    /// Added to the token's logit. Range [-100, 100]; ids inside the vocabulary.
    pub logit_bias: Vec<(u32, f32)>,
    /// End-of-sequence tokens are impossible until the output holds this many tokens.
    pub min_tokens: usize,
}

impl LogitAdjust {
    /// Whether it changes nothing (then the engine skips it).
    pub fn is_identity(&self) -> bool {
        self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
            && self.logit_bias.is_empty()
            && self.min_tokens == 0
    }

    /// Checks the ranges and that every biased id is a token of a `vocab`-token model.
    pub fn validate(&self, vocab: usize) -> Result<(), CoreError> {
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(v.is_finite() && (-2.0..=2.0).contains(&v)) {
                return Err(CoreError::InvalidParam {
                    name,
                    value: v.to_string(),
                    expected: "-2 <= penalty <= 2",
                });
            }
        }
        for &(id, bias) in &self.logit_bias {
            if id as usize >= vocab {
                return Err(CoreError::TokenOutOfRange { id, vocab });
            }
            if !(bias.is_finite() && bias.abs() <= MAX_LOGIT_BIAS) {
                return Err(CoreError::InvalidParam {
                    name: "logit_bias",
                    value: bias.to_string(),
                    expected: "-100 <= bias <= 100",
                });
            }
        }
        Ok(())
    }

    /// Adjusts `logits` for the token after `output` (the generated tokens so far); `eos` are
    /// the end-of-sequence ids `min_tokens` holds back.
    pub fn apply(&self, logits: &mut [f32], output: &[u32], eos: &[u32]) {
        if self.presence_penalty != 0.0 || self.frequency_penalty != 0.0 {
            let mut counts: Vec<(u32, u32)> = Vec::new();
            for &t in output {
                match counts.iter_mut().find(|(x, _)| *x == t) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((t, 1)),
                }
            }
            for (t, n) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= self.presence_penalty + self.frequency_penalty * n as f32;
                }
            }
        }
        for &(t, bias) in &self.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += bias;
            }
        }
        if output.len() < self.min_tokens {
            for &t in eos {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_count_the_output_bias_adds_and_min_tokens_masks_eos() {
        let adjust = LogitAdjust {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            logit_bias: vec![(3, 2.0)],
            min_tokens: 3,
        };
        let mut l = vec![1.0; 5];
        adjust.apply(&mut l, &[1, 1, 2], &[4]);
        // Token 1 twice: 0.5 + 2 x 0.25; token 2 once: 0.5 + 0.25; token 3 biased.
        assert_eq!(l, vec![1.0, 0.0, 0.25, 3.0, 1.0], "three tokens out: EOS allowed");
        let mut l = vec![1.0; 5];
        adjust.apply(&mut l, &[1], &[4]);
        assert_eq!(l[4], f32::NEG_INFINITY, "one token out: EOS masked");
        assert!(LogitAdjust::default().is_identity());
    }

    #[test]
    fn out_of_range_values_and_ids_are_refused() {
        let bad = |a: LogitAdjust| a.validate(10).is_err();
        assert!(bad(LogitAdjust {
            presence_penalty: 2.5,
            ..Default::default()
        }));
        assert!(bad(LogitAdjust {
            frequency_penalty: f32::NAN,
            ..Default::default()
        }));
        assert!(bad(LogitAdjust {
            logit_bias: vec![(10, 1.0)],
            ..Default::default()
        }));
        assert!(bad(LogitAdjust {
            logit_bias: vec![(1, 101.0)],
            ..Default::default()
        }));
        assert!(LogitAdjust {
            logit_bias: vec![(9, -100.0)],
            ..Default::default()
        }
        .validate(10)
        .is_ok());
    }
}
