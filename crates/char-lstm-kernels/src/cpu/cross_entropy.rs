//! The mean cross-entropy of logits against target ids as one op with its own backward, on
//! flex: one pass over each row for the log-sum-exp forward, one for the gradient
//! `(softmax - one_hot) / rows` backward, where Burn's composed loss runs a log-softmax,
//! a gather and their backward through several `[rows, vocab]` tensors.

use burn::tensor::{Int, Tensor};
use rayon::prelude::*;

use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::cpu::gates::exp;
use crate::simd::per_simd_path;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Burn's `CrossEntropyLoss` (no smoothing, no padding, mean over rows) of `logits`
/// (`[rows, vocab]`) against `targets` (`[rows]`), as one op when `logits` lives on flex and
/// every target is a valid id; `None` otherwise. Returns `[1]`.
pub fn fused_cross_entropy(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Option<Tensor<1>> {
    let [rows, vocab] = logits.dims();
    if rows == 0 || !flex_op::runs_op(logits, CrossEntropy::NAME) {
        return None;
    }
    let targets: Vec<u32> = targets
        .clone()
        .into_data()
        .iter::<i64>()
        .map(|t| u32::try_from(t).ok().filter(|&t| (t as usize) < vocab))
        .collect::<Option<_>>()?;
    let op = CrossEntropy { vocab, targets };
    flex_op::run(op, [flex_op::flatten(logits)])
}

/// The loss of rows of `vocab` logits against `targets`, one per row.
#[derive(Debug, Clone)]
pub(crate) struct CrossEntropy {
    vocab: usize,
    targets: Vec<u32>,
}

impl HostedOp<1> for CrossEntropy {
    fn settings(&self) -> Vec<u64> {
        let targets = self.targets.iter().map(|&t| u64::from(t));
        std::iter::once(self.vocab as u64).chain(targets).collect()
    }

    fn from_settings(settings: &[u64]) -> Self {
        CrossEntropy {
            vocab: settings[0] as usize,
            targets: settings[1..].iter().map(|&t| t as u32).collect(),
        }
    }

    fn output_lens(&self, _: [usize; 1]) -> Vec<usize> {
        vec![1, self.targets.len()]
    }

    fn saved_buffers(lse: Vec<f32>) -> Vec<Vec<f32>> {
        vec![lse]
    }

    fn saved_from(buffers: Vec<Vec<f32>>) -> Vec<f32> {
        let [lse] = <[Vec<f32>; 1]>::try_from(buffers).expect("the log-sum-exps");
        lse
    }
}

impl FlexOp<1> for CrossEntropy {
    const NAME: &'static str = "cross-entropy";

    /// Each row's log-sum-exp.
    type Saved = Vec<f32>;

    fn forward(&self, [logits]: [&[f32]; 1]) -> (Vec<f32>, Vec<f32>) {
        let mut lse = vec![0.0f32; self.targets.len()];
        let losses: Vec<f64> = logits
            .par_chunks(ROWS_PER_TASK * self.vocab)
            .zip(lse.par_chunks_mut(ROWS_PER_TASK))
            .zip(self.targets.par_chunks(ROWS_PER_TASK))
            .map(|((rows, lse), targets)| {
                let mut total = 0.0f64;
                for ((row, lse), &target) in rows.chunks(self.vocab).zip(lse).zip(targets) {
                    *lse = log_sum_exp(row);
                    total += f64::from(*lse - row[target as usize]);
                }
                total
            })
            .collect();
        let mean = losses.iter().sum::<f64>() / self.targets.len() as f64;
        (vec![mean as f32], lse)
    }

    fn backward(
        &self,
        [logits]: [&[f32]; 1],
        _output: &[f32],
        lse: &Vec<f32>,
        d_output: &[f32],
    ) -> [Vec<f32>; 1] {
        let scale = d_output[0] / self.targets.len() as f32;
        let mut d_logits = vec![0.0f32; logits.len()];
        d_logits
            .par_chunks_mut(ROWS_PER_TASK * self.vocab)
            .zip(logits.par_chunks(ROWS_PER_TASK * self.vocab))
            .zip(
                lse.par_chunks(ROWS_PER_TASK)
                    .zip(self.targets.par_chunks(ROWS_PER_TASK)),
            )
            .for_each(|((d_rows, rows), (lse, targets))| {
                let rows = rows.chunks(self.vocab).zip(d_rows.chunks_mut(self.vocab));
                for (((row, d_row), &lse), &target) in rows.zip(lse).zip(targets) {
                    softmax_scaled(row, lse, scale, d_row);
                    d_row[target as usize] -= scale;
                }
            });
        [d_logits]
    }
}

per_simd_path! {
    /// `ln(sum(exp(row)))`, from the row's maximum so no term overflows; the sum over eight
    /// running partial sums, which vectorize.
    fn log_sum_exp(row: &[f32]) -> f32 {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sums = [0.0f32; 8];
        let blocks = row.chunks_exact(8);
        let rest: f32 = blocks.remainder().iter().map(|&x| exp(x - max)).sum();
        for block in blocks {
            for (sum, &x) in sums.iter_mut().zip(block) {
                *sum += exp(x - max);
            }
        }
        max + (sums.iter().sum::<f32>() + rest).ln()
    }
}

per_simd_path! {
    /// `out = exp(row - lse) * scale`: the softmax of the row, scaled.
    fn softmax_scaled(row: &[f32], lse: f32, scale: f32, out: &mut [f32]) {
        for (out, &x) in out.iter_mut().zip(row) {
            *out = exp(x - lse) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Simd;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    /// Against Burn's `CrossEntropyLoss` in the loss and the gradient of the logits, for a
    /// small and a large vocabulary, on every path; targets out of range are left to Burn.
    #[test]
    fn matches_burn_cross_entropy_in_loss_and_gradient() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(6);
        for (rows, vocab) in [(1, 3), (37, 65), (50, 6001)] {
            let logits =
                Tensor::<2>::random([rows, vocab], Distribution::Uniform(-8.0, 8.0), &device);
            let ids: Vec<i64> = (0..rows as i64)
                .map(|r| (r * 7919) % vocab as i64)
                .collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(ids, [rows]), &device);
            let run = |fused: bool| {
                let x = logits.clone().detach().require_grad();
                let loss = if fused {
                    fused_cross_entropy(&x, &targets).expect("on flex")
                } else {
                    CrossEntropyLossConfig::new()
                        .init(&device)
                        .forward(x.clone(), targets.clone())
                };
                let grads = (loss.clone() * 3.0).backward();
                let d: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
                (loss.into_scalar::<f64>(), d)
            };
            let (loss, d) = run(false);
            for simd in Simd::supported() {
                let (ours, d_ours) = simd.run(|| run(true));
                assert!(
                    (ours - loss).abs() <= 1e-6 * (1.0 + loss),
                    "{simd:?} {rows}x{vocab}: {ours} vs {loss}"
                );
                for (a, b) in d_ours.iter().zip(&d) {
                    assert!(
                        (a - b).abs() <= 1e-6,
                        "{simd:?} {rows}x{vocab}: d {a} vs {b}"
                    );
                }
            }
        }
        let logits = Tensor::<2>::zeros([2, 3], &device);
        let outside = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3], [2]), &device);
        assert!(fused_cross_entropy(&logits, &outside).is_none());
    }
}
