//! The sampler's softmax weights over a whole vocabulary in one vectorized pass: a libm `exp`
//! per token was most of a draw's time at thousands of tokens.

use crate::simd::per_simd_path;

/// `e^x` in f64 for `x <= 0`, in plain arithmetic that the compiler vectorizes: `x = n ln 2 +
/// r` with `|r| <= ln 2 / 2` (Cody and Waite's two-part `ln 2`, exact in `n ln 2` for the
/// `n` here), a degree-12 Taylor polynomial for `e^r` (relative error below 1e-14, far below
/// what the f32 logits themselves carry), and `2^n` put straight into the exponent bits. Below
/// -708, where `e^x` leaves the normal f64 range, 0.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // Adding 1.5 * 2^52 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // `ln 2`'s leading 32 bits (its low mantissa bits zero, so `n * LN2_HI` is exact) and the
    // rest, as fdlibm splits it.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const LOWEST: f64 = -708.0;
    let clamped = x.max(LOWEST);
    let shifted = clamped * std::f64::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut poly = 1.0 / 479_001_600.0;
    for factorial in [
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        poly = poly * r + 1.0 / factorial;
    }
    let exponent = shifted.to_bits() as i64 - ROUND.to_bits() as i64 + 1023;
    let scaled = poly * f64::from_bits((exponent << 52) as u64);
    if x < LOWEST { 0.0 } else { scaled }
}

per_simd_path! {
    /// The softmax's weights before normalizing, `e^((l - max) / temperature)` for every logit
    /// `l` in order, into `weights` (resized to match); their largest is 1. `temperature` > 0.
    pub fn softmax_weights(logits: &[f32], temperature: f64, weights: &mut Vec<f64>) {
        weights.resize(logits.len(), 0.0);
        let max = largest(logits) as f64;
        let inverse = 1.0 / temperature;
        for (w, &l) in weights.iter_mut().zip(logits) {
            *w = exp_nonpositive((l as f64 - max) * inverse);
        }
    }
}

/// The largest value (NaNs ignored), in 16 lanes so the loop vectorizes.
#[inline(always)]
fn largest(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = values.chunks_exact(16);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;

    #[test]
    fn exp_matches_libm_to_1e_14() {
        let mut worst = 0.0f64;
        for i in 0..=2_000_000 {
            let x = -708.0 * f64::from(i) / 2_000_000.0;
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((ours - libm) / libm).abs());
        }
        assert!(worst < 1e-14, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-709.0), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
    }

    /// Every path gives libm's softmax weights to 1e-14, the largest exactly 1, at a length
    /// that leaves a remainder past the lanes.
    #[test]
    fn weights_match_libm_on_every_path() {
        let logits: Vec<f32> = (0..6_001)
            .map(|i| ((i * 7_919) % 6_007) as f32 * 0.01 - 40.0)
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        for temperature in [1.0, 0.8, 0.05] {
            let expected: Vec<f64> = logits
                .iter()
                .map(|&l| ((l as f64 - max) / temperature).exp())
                .collect();
            for simd in Simd::supported() {
                let mut weights = vec![9.0; 3];
                simd.run(|| softmax_weights(&logits, temperature, &mut weights));
                assert_eq!(weights.len(), logits.len());
                assert_eq!(weights.iter().copied().fold(0.0, f64::max), 1.0);
                for (i, (&ours, &libm)) in weights.iter().zip(&expected).enumerate() {
                    let close = (ours - libm).abs() <= 1e-14 * libm;
                    assert!(
                        close || (libm < 1e-300 && ours == 0.0),
                        "{simd:?} {i}: {ours:e} vs {libm:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_largest_ignores_nans_and_reads_every_value() {
        let mut values = vec![-3.0f32; 37];
        values[5] = f32::NAN;
        values[36] = 2.5;
        assert_eq!(largest(&values), 2.5);
        values[36] = -3.0;
        values[16] = 1.0;
        assert_eq!(largest(&values), 1.0);
    }
}
