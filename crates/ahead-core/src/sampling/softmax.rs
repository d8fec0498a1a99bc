//! The arithmetic of a softmax over a whole vocabulary, written to vectorize: a speculative
//! step warps every row it verifies, so this runs once per row beside the forward. With the
//! scalar f64 `exp` and single running sums, SmolLM2's 49,152 tokens took 0.23-0.49 ms a row,
//! as much as a verify row's share of the forward; now 18 µs (`cargo bench -p ahead-core
//! --bench sampling`).

/// `e^((x - max) / temperature)` for every logit, into `out`: `max` is the largest logit, so
/// every exponent is at most 0 and no value overflows, however small the temperature.
pub(super) fn scaled_exp(logits: &[f32], max: f32, temperature: f32, out: &mut Vec<f32>) {
    // A temperature below f32's reciprocal range scales like the smallest one that has a
    // reciprocal: the top logit still gets e^0 = 1 and every other one 0.
    let inv_t = (1.0 / temperature as f64).min(f32::MAX as f64) as f32;
    out.clear();
    out.extend(logits.iter().map(|&x| exp_nonpositive((x - max) * inv_t)));
}

/// Below this, `e^x` is under 2^-124 and taken as 0: such a token is at least 10^37 times less
/// likely than the top one.
const EXP_FLOOR: f32 = -86.0;

/// `e^x` for `x <= 0` (and `-inf`), to within 2 ulp, branch-free so that it vectorizes:
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^x = 2^n e^r`, `e^r` by its Taylor series to r^7.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 * 2^23 rounds to an integer (ties to even) and leaves it in the low
    // mantissa bits, where an integer subtraction reads it: no float-to-int conversion, whose
    // saturating form does not vectorize.
    // Plain multiplies and adds, not `mul_add`: without FMA in the target (a portable
    // build) that is a library call per operation. n ln2_hi is exact (ln2_hi has 16 trailing
    // zero bits, |n| < 2^7), so the reduction loses nothing to the missing fusion.
    const ROUNDER: f32 = 12_582_912.0;
    let clamped = x.max(EXP_FLOOR);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let mut p: f32 = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    // 2^n from its exponent bits, n + 127: n >= -124 here, so a normal number.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    let two_n = f32::from_bits(biased << 23);
    if x < EXP_FLOOR {
        0.0
    } else {
        p * two_n
    }
}

/// The largest of `logits`, and whether any is NaN or +inf (which no distribution can hold;
/// -inf is a token ruled out). Per-lane maxima and flags, so that it vectorizes.
pub(super) fn max_and_invalid(logits: &[f32]) -> (f32, bool) {
    let mut max = [f32::NEG_INFINITY; 16];
    let mut invalid = [0u32; 16];
    let chunks = logits.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for ((m, bad), &x) in max.iter_mut().zip(&mut invalid).zip(chunk) {
            *m = if x > *m { x } else { *m };
            *bad |= u32::from(x.is_nan() | (x == f32::INFINITY));
        }
    }
    let max = max
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let invalid = invalid.iter().any(|&b| b != 0) || rest.iter().any(|&x| x.is_nan() || x == f32::INFINITY);
    (max, invalid)
}

/// The smallest of `values` (NaN aside), over per-lane minima so that it vectorizes.
pub(super) fn min(values: &[f32]) -> f32 {
    let mut min = [f32::INFINITY; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in min.iter_mut().zip(chunk) {
            *m = if x < *m { x } else { *m };
        }
    }
    min.iter()
        .chain(rest)
        .fold(f32::INFINITY, |m, &x| if x < m { x } else { m })
}

/// The sum of `values` in f64, over 8 independent partial sums (so it vectorizes; a single
/// running sum is one long dependency chain).
pub(crate) fn sum(values: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc += v as f64;
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|&v| v as f64).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64s_and_exactly_zero_far_below() {
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
        let mut x = 0.0f32;
        while x > EXP_FLOOR {
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            assert!((got - want).abs() <= 2.0 * ulp, "e^{x}: {got} against {want}");
            x -= 0.000_37;
        }
    }

    #[test]
    fn tiny_temperatures_keep_the_top_logit_alone() {
        let mut out = Vec::new();
        scaled_exp(&[1.0, 1.001, 0.5, f32::NEG_INFINITY], 1.001, 1e-45, &mut out);
        assert_eq!(out, [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn invalid_values_are_found_in_every_lane_and_the_remainder() {
        for len in [1, 15, 16, 17, 40] {
            for at in 0..len {
                let mut v = vec![-1.0f32; len];
                v[at] = 2.0;
                assert_eq!(max_and_invalid(&v), (2.0, false));
                v[at] = f32::NEG_INFINITY;
                assert!(!max_and_invalid(&v).1);
                for bad in [f32::NAN, f32::INFINITY] {
                    v[at] = bad;
                    assert!(max_and_invalid(&v).1, "{bad} at {at} of {len}");
                }
                v.iter_mut().for_each(|w| *w = 0.5);
                v[at] = -0.25;
                assert_eq!(min(&v), -0.25);
            }
        }
    }

    #[test]
    fn the_sum_is_the_f64_sum() {
        let v: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.1).sin().abs()).collect();
        let want: f64 = v.iter().map(|&x| x as f64).sum();
        assert!((sum(&v) - want).abs() < 1e-9);
    }
}
