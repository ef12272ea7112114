//! Dropout as one op on flex.
//!
//! Burn's `Dropout` draws a Bernoulli tensor from one locked generator, an element at a time,
//! and adds two multiplications to the graph. Here whether element `i` is kept is a hash of
//! `(seed, i)`: the mask is drawn in parallel and as wide as the SIMD path allows, and the
//! backward recomputes it instead of storing it. The seed comes from the
//! device's generator, so `device.seed(..)` still makes a run reproducible.

use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor};
use rayon::prelude::*;

use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::simd::per_simd_path;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `dropout.forward(input)` as one op, when it draws a mask (training, with autodiff, `prob`
/// above 0) and `input` lives on flex: each element zeroed with probability `dropout.prob`, the
/// others scaled by `1 / (1 - prob)` (the mask differs from Burn's for the same seed, its
/// distribution does not). `None` otherwise, for Burn's `Dropout` to handle.
pub fn fused_dropout<const D: usize>(dropout: &Dropout, input: Tensor<D>) -> Option<Tensor<D>> {
    let device = input.device();
    let active = dropout.training.is_enabled() && device.is_autodiff() && dropout.prob > 0.0;
    if !active || !flex_op::runs_op(&input, Mask::NAME) {
        return None;
    }
    let draws = Tensor::<1>::random([2], Distribution::Default, &device.without_autodiff())
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 values");
    let keep = 1.0 - dropout.prob;
    let mask = Mask {
        seed: (u64::from(draws[0].to_bits()) << 32) | u64::from(draws[1].to_bits()),
        threshold: (keep * f64::from(1u32 << 24)).round() as u64,
        scale: (1.0 / keep) as f32,
    };
    let shape = input.shape();
    Some(flex_op::run(mask, [flex_op::flatten(&input)])?.reshape(shape))
}

/// Keeps element `i` when the top 24 bits of `hash(seed, i)` fall below `threshold`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mask {
    seed: u64,
    /// `(1 - prob) * 2^24`.
    threshold: u64,
    /// `1 / (1 - prob)`.
    scale: f32,
}

impl Mask {
    /// SplitMix64's finalizer of `seed + i * golden ratio`: consecutive indices give
    /// independent-looking bits.
    #[inline(always)]
    fn keeps(self, index: u64) -> bool {
        let mut z = self
            .seed
            .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) < self.threshold
    }

    /// `values` masked and scaled, in parallel.
    fn apply(self, values: &[f32]) -> Vec<f32> {
        let mut output = vec![0.0f32; values.len()];
        output
            .par_chunks_mut(CHUNK)
            .zip(values.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(part, (output, values))| {
                masked(self, (part * CHUNK) as u64, values, output)
            });
        output
    }
}

per_simd_path! {
    /// `output[j] = values[j] * scale` where element `first + j` is kept, 0 elsewhere.
    fn masked(mask: Mask, first: u64, values: &[f32], output: &mut [f32]) {
        let n = output.len();
        let values = &values[..n];
        for j in 0..n {
            let kept = mask.keeps(first + j as u64);
            output[j] = if kept { values[j] * mask.scale } else { 0.0 };
        }
    }
}

impl HostedOp<1> for Mask {
    fn settings(&self) -> Vec<u64> {
        vec![self.seed, self.threshold, u64::from(self.scale.to_bits())]
    }

    fn from_settings(settings: &[u64]) -> Self {
        Mask {
            seed: settings[0],
            threshold: settings[1],
            scale: f32::from_bits(settings[2] as u32),
        }
    }

    fn output_lens(&self, [input]: [usize; 1]) -> Vec<usize> {
        vec![input]
    }

    fn saved_buffers((): ()) -> Vec<Vec<f32>> {
        Vec::new()
    }

    fn saved_from(_: Vec<Vec<f32>>) {}
}

impl FlexOp<1> for Mask {
    const NAME: &'static str = "dropout";

    type Saved = ();

    fn forward(&self, [input]: [&[f32]; 1]) -> (Vec<f32>, ()) {
        (self.apply(input), ())
    }

    fn backward(
        &self,
        _inputs: [&[f32]; 1],
        _output: &[f32],
        _saved: &(),
        d_output: &[f32],
    ) -> [Vec<f32>; 1] {
        [self.apply(d_output)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::DropoutConfig;
    use burn::tensor::Device;

    const SIZE: [usize; 3] = [8, 125, 1000];

    fn dropout(layer: &Dropout, input: Tensor<3>) -> Tensor<3> {
        fused_dropout(layer, input).expect("a mask drawn on flex")
    }

    /// Values in `[1, 2)`, so a zero in the output can only come from the mask.
    fn input(device: &Device) -> Tensor<3> {
        Tensor::random(SIZE, Distribution::Uniform(1.0, 2.0), device)
    }

    #[test]
    fn zeroes_a_fraction_prob_and_scales_the_rest() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(17);
        for prob in [0.1, 0.5, 0.8] {
            let layer = DropoutConfig::new(prob).init();
            let x = input(&device);
            let y = dropout(&layer, x.clone());
            let (x, y) = (
                x.into_data().try_to_vec::<f32>().unwrap(),
                y.into_data().try_to_vec::<f32>().unwrap(),
            );
            let n = x.len() as f64;
            let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64;
            // Four standard deviations of a binomial count.
            let tolerance = 4.0 * (n * prob * (1.0 - prob)).sqrt();
            assert!(
                (zeros - n * prob).abs() < tolerance,
                "prob {prob}: {zeros} zeros of {n}"
            );
            let scale = (1.0 / (1.0 - prob)) as f32;
            for (x, y) in x.iter().zip(&y) {
                assert!(*y == 0.0 || *y == x * scale, "{y} from {x}");
            }
        }
    }

    /// Neighbouring elements must not be correlated (a weak hash shows as runs).
    #[test]
    fn neighbouring_elements_are_independent() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(3);
        let layer = DropoutConfig::new(0.5).init();
        let y = dropout(&layer, input(&device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let kept: Vec<bool> = y.iter().map(|&v| v != 0.0).collect();
        let n = (kept.len() - 1) as f64;
        let both = kept.windows(2).filter(|w| w[0] && w[1]).count() as f64;
        let tolerance = 4.0 * (n * 0.25 * 0.75).sqrt();
        assert!(
            (both - n * 0.25).abs() < tolerance,
            "{both} kept pairs of {n}"
        );
    }

    #[test]
    fn gradient_is_the_same_mask_and_scale() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(5);
        let layer = DropoutConfig::new(0.3).init();
        let x = input(&device).require_grad();
        let r = Tensor::<3>::random(SIZE, Distribution::Uniform(-1.0, 1.0), &device);
        let y = dropout(&layer, x.clone());
        let grads = (y.clone() * r.clone()).sum().backward();
        let dx = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let (y, r) = (
            y.into_data().try_to_vec::<f32>().unwrap(),
            r.into_data().try_to_vec::<f32>().unwrap(),
        );
        let scale = (1.0f64 / 0.7) as f32;
        for ((dx, y), r) in dx.iter().zip(&y).zip(&r) {
            let expected = if *y == 0.0 { 0.0 } else { r * scale };
            assert_eq!(*dx, expected);
        }
    }

    /// The mask is a function of the seed alone (the backward relies on it), and seeds differ
    /// in it.
    #[test]
    fn the_mask_is_a_function_of_its_seed() {
        let ones = vec![1.0f32; 3 * CHUNK + 5];
        let mask = |seed| Mask {
            seed,
            threshold: 1 << 23,
            scale: 2.0,
        };
        assert_eq!(mask(9).apply(&ones), mask(9).apply(&ones));
        assert_ne!(mask(9).apply(&ones), mask(10).apply(&ones));
    }

    /// Every call draws a new mask: two calls on the same input agree on whether an element is
    /// kept about as often as two independent masks do (`p^2 + (1 - p)^2`).
    #[test]
    fn successive_calls_draw_independent_masks() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(8);
        let layer = DropoutConfig::new(0.5).init();
        let x = input(&device);
        let kept = |y: Tensor<3>| -> Vec<bool> {
            y.into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|&v| v != 0.0)
                .collect()
        };
        let first = kept(dropout(&layer, x.clone()));
        for _ in 0..3 {
            let next = kept(dropout(&layer, x.clone()));
            let n = first.len() as f64;
            let same = first.iter().zip(&next).filter(|(a, b)| a == b).count() as f64;
            let tolerance = 4.0 * (n * 0.25).sqrt();
            assert!((same - n * 0.5).abs() < tolerance, "{same} of {n} agree");
        }
    }

    #[test]
    fn identity_outside_training() {
        let _rng = crate::testing::device_rng();
        let layer = DropoutConfig::new(0.5).init();
        assert!(
            fused_dropout(&layer, input(&Device::flex())).is_none(),
            "no autodiff"
        );
        let device = Device::flex().autodiff();
        assert!(
            fused_dropout(&layer.clone().valid(), input(&device)).is_none(),
            "not training"
        );
        assert!(
            fused_dropout(&DropoutConfig::new(0.0).init(), input(&device)).is_none(),
            "p = 0"
        );
    }
}
