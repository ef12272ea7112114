//! The sum of squares of a gradient, for global gradient-norm clipping.

use burn::backend::Flex;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::cpu::flex_op::values;
use crate::cpu::op_times;
use crate::simd::per_simd_path;

/// The sum of the squares of the values of `tensor`, in `f64` and over every core, when it
/// lives on flex (without autodiff); `None` elsewhere. The same sum for the same values every
/// time, on every path: each chunk's partial sum is added in order.
pub fn fused_sum_of_squares<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    let primitive = tensor.clone().try_into_primitive::<Flex>().ok()?;
    op_times::timed("grad-norm", "step", || {
        let partial: Vec<f64> = values(&primitive)
            .par_chunks(1 << 14)
            .map(chunk_sum_of_squares)
            .collect();
        Some(partial.iter().sum())
    })
}

per_simd_path! {
    /// The sum of the squares of `values` in `f64`, over eight running sums (one chain of
    /// dependent additions would not vectorize).
    fn chunk_sum_of_squares(values: &[f32]) -> f64 {
        let mut sums = [0.0f64; 8];
        let blocks = values.chunks_exact(8);
        let rest: f64 = blocks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        for block in blocks {
            for (sum, &x) in sums.iter_mut().zip(block) {
                *sum += f64::from(x) * f64::from(x);
            }
        }
        sums.iter().sum::<f64>() + rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use burn::tensor::{Device, TensorData};

    /// Against a plain f64 sum, the same bits on every path; `None` off flex.
    #[test]
    fn sums_squares_on_every_path() {
        let values: Vec<f32> = (0..100_003)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 5.0)
            .collect();
        let expected: f64 = values.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let tensor = Tensor::<1>::from_data(TensorData::new(values, [100_003]), &Device::flex());
        let sums: Vec<f64> = Simd::supported()
            .into_iter()
            .map(|simd| simd.run(|| fused_sum_of_squares(&tensor).expect("on flex")))
            .collect();
        assert!(
            (sums[0] - expected).abs() <= 1e-9 * expected,
            "{} vs {expected}",
            sums[0]
        );
        assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:?}");
    }
}
