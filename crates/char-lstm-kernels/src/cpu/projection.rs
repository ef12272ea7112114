//! An affine map `x W^T + b` (or `x W + b`) as one op with its own backward on flex: the LSTM's
//! input projections and the output layer as three matrix products and a bias sum, without the
//! transposes, broadcasts and graph nodes of the composed tensor ops.

use burn::nn::Linear;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::cpu::buffer;
use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::cpu::matmul::{Operand, Rhs, Threads, Write, matmul};

/// How the weight of a projection is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[output_size, input_size]`, as PyTorch and the LSTM's weights: `x W^T + b`.
    OutputMajor,
    /// `[input_size, output_size]`, as Burn's `Linear`: `x W + b`.
    InputMajor,
}

/// The affine map with the fused op when the tensors live on flex; `None` elsewhere.
///
/// - `input`: `[rows, input_size]`; `weight`: laid out as `layout` says; `bias`:
///   `[output_size]`.
///
/// Returns `[rows, output_size]`.
pub fn fused_projection(
    input: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
    layout: WeightLayout,
) -> Option<Tensor<2>> {
    let [rows, input_size] = input.dims();
    let output_size = bias.dims()[0];
    let op = Projection {
        rows,
        input_size,
        output_size,
        layout,
    };
    let inputs = [
        flex_op::flatten(input),
        flex_op::flatten(weight),
        bias.clone(),
    ];
    Some(flex_op::run(op, inputs)?.reshape([rows, output_size]))
}

/// Burn's `Linear` over every position of `input`, `[batch, seq_len, d_input]` in,
/// `[batch, seq_len, d_output]` out, as one fused product over all positions where the tensors
/// live on flex; `None` elsewhere.
pub fn fused_linear(linear: &Linear, input: &Tensor<3>) -> Option<Tensor<3>> {
    let [batch, seq_len, input_size] = input.dims();
    let weight = linear.weight.val();
    let output_size = weight.dims()[1];
    let bias = match &linear.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([output_size], &weight.device()),
    };
    let rows = input.clone().reshape([batch * seq_len, input_size]);
    let output = fused_projection(&rows, &weight, &bias, WeightLayout::InputMajor)?;
    Some(output.reshape([batch, seq_len, output_size]))
}

/// The sizes and weight layout of one projection; inputs `x`, `W`, `b`.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    rows: usize,
    input_size: usize,
    output_size: usize,
    layout: WeightLayout,
}

impl Projection {
    /// The weight as the forward product's right-hand side, `[input_size, output_size]`.
    fn weight_by_outputs<'a>(&self, weight: &'a [f32]) -> Operand<'a> {
        let (input_size, output_size) = (self.input_size, self.output_size);
        match self.layout {
            WeightLayout::OutputMajor => {
                Operand::transposed(weight, input_size, output_size, input_size)
            }
            WeightLayout::InputMajor => Operand::rows(weight, input_size, output_size, output_size),
        }
    }

    /// The weight as the right-hand side of `dx = dy W`, `[output_size, input_size]`.
    fn weight_by_inputs<'a>(&self, weight: &'a [f32]) -> Operand<'a> {
        let (input_size, output_size) = (self.input_size, self.output_size);
        match self.layout {
            WeightLayout::OutputMajor => Operand::rows(weight, output_size, input_size, input_size),
            WeightLayout::InputMajor => {
                Operand::transposed(weight, output_size, input_size, output_size)
            }
        }
    }
}

impl HostedOp<3> for Projection {
    fn settings(&self) -> Vec<u64> {
        let layout = match self.layout {
            WeightLayout::OutputMajor => 0,
            WeightLayout::InputMajor => 1,
        };
        let sizes = [self.rows, self.input_size, self.output_size].map(|n| n as u64);
        [&sizes[..], &[layout]].concat()
    }

    fn from_settings(settings: &[u64]) -> Self {
        let [rows, input_size, output_size] = [0, 1, 2].map(|i| settings[i] as usize);
        let layout = match settings[3] {
            0 => WeightLayout::OutputMajor,
            _ => WeightLayout::InputMajor,
        };
        Projection {
            rows,
            input_size,
            output_size,
            layout,
        }
    }

    fn output_lens(&self, _: [usize; 3]) -> Vec<usize> {
        vec![self.rows * self.output_size]
    }

    fn saved_buffers((): ()) -> Vec<Vec<f32>> {
        Vec::new()
    }

    fn saved_from(_: Vec<Vec<f32>>) {}
}

impl FlexOp<3> for Projection {
    const NAME: &'static str = "projection";

    type Saved = ();

    fn forward(&self, [input, weight, bias]: [&[f32]; 3]) -> (Vec<f32>, ()) {
        let Projection {
            rows,
            input_size,
            output_size,
            ..
        } = *self;
        let mut output = buffer::repeated(bias, rows);
        matmul(
            &mut output,
            output_size,
            Write::Add,
            Operand::rows(input, rows, input_size, input_size),
            &Rhs::for_rows(self.weight_by_outputs(weight), rows),
            Threads::All,
        );
        (output, ())
    }

    fn backward(
        &self,
        [input, weight, _]: [&[f32]; 3],
        _output: &[f32],
        _saved: &(),
        d_output: &[f32],
    ) -> [Vec<f32>; 3] {
        let Projection {
            rows,
            input_size,
            output_size,
            layout,
        } = *self;
        // dx = dy W
        let mut d_input = buffer::zeros(rows * input_size);
        matmul(
            &mut d_input,
            input_size,
            Write::Replace,
            Operand::rows(d_output, rows, output_size, output_size),
            &Rhs::for_rows(self.weight_by_inputs(weight), rows),
            Threads::All,
        );
        // dW = dy^T x (output-major) or x^T dy (input-major). The product packs the narrower of
        // x and dy as its right-hand side, and is transposed into place when that gives the
        // other layout: a large vocabulary's dy is many times the size of x.
        let dy = Operand::rows(d_output, rows, output_size, output_size);
        let x = Operand::rows(input, rows, input_size, input_size);
        let (lhs, rhs, product_layout) = if input_size <= output_size {
            (dy, x, WeightLayout::OutputMajor)
        } else {
            (x, dy, WeightLayout::InputMajor)
        };
        let mut d_weight = buffer::zeros(output_size * input_size);
        matmul(
            &mut d_weight,
            rhs.cols,
            Write::Replace,
            Operand::transposed(lhs.data, lhs.cols, rows, lhs.cols),
            &Rhs::for_rows(rhs, lhs.cols),
            Threads::All,
        );
        if product_layout != layout {
            d_weight = buffer::transposed(&d_weight, lhs.cols, rhs.cols);
        }
        // Column sums, each thread over its own columns.
        let mut d_bias = vec![0.0f32; output_size];
        let columns = output_size.div_ceil(rayon::current_num_threads());
        d_bias
            .par_chunks_mut(columns)
            .enumerate()
            .for_each(|(part, sums)| {
                let first = part * columns;
                for row in d_output.chunks(output_size) {
                    let row = &row[first..first + sums.len()];
                    for (sum, &value) in sums.iter_mut().zip(row) {
                        *sum += value;
                    }
                }
            });
        [d_input, d_weight, d_bias]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The fused op's output and gradients (input, weight, then bias where there is one)
    /// against the composed ops', to 1e-5 relative.
    fn assert_close(fused: &[Vec<f32>], composed: &[Vec<f32>], case: &str) {
        for (what, (a, b)) in ["output", "d_input", "d_weight", "d_bias"]
            .iter()
            .zip(fused.iter().zip(composed))
        {
            assert_eq!(a.len(), b.len(), "{what} {case}");
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{what} {case}: {x} vs {y}"
                );
            }
        }
    }

    /// Burn's `Linear` against the fused op on the same weights: outputs and the gradients of
    /// the input, the weight and the bias, with and without a bias, one position and several, and
    /// enough positions for the packed products.
    #[test]
    fn fused_linear_matches_burn_linear_in_values_and_gradients() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(5);
        for (batch, seq_len, d_input, d_output, bias) in [
            (1, 1, 3, 2, true),
            (4, 7, 33, 65, true),
            (3, 5, 40, 9, false),
            // Enough rows for the packed kernel; the weight's gradient computed as its
            // transpose (more outputs than inputs) and directly.
            (8, 10, 70, 100, true),
            (8, 10, 100, 70, true),
        ] {
            let linear = LinearConfig::new(d_input, d_output)
                .with_bias(bias)
                .init(&device);
            let input = Tensor::<3>::random(
                [batch, seq_len, d_input],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let weights = Tensor::<3>::random(
                [batch, seq_len, d_output],
                Distribution::Uniform(-1.0, 1.0),
                &device,
            );
            let run = |fused: bool| {
                // Fresh parameters and input per run, so each has its own gradients.
                let input = input.clone().detach().require_grad();
                let mut linear = linear.clone();
                linear.weight = Param::from_tensor(linear.weight.val().detach().require_grad());
                linear.bias = linear
                    .bias
                    .map(|b| Param::from_tensor(b.val().detach().require_grad()));
                let output = if fused {
                    fused_linear(&linear, &input).expect("flex tensors")
                } else {
                    linear.forward(input.clone())
                };
                let grads = (output.clone() * weights.clone()).sum().backward();
                let mut all = vec![
                    values(output),
                    values(input.grad(&grads).unwrap()),
                    values(linear.weight.val().grad(&grads).unwrap()),
                ];
                all.extend(linear.bias.map(|b| values(b.val().grad(&grads).unwrap())));
                all
            };
            let (fused, composed) = (run(true), run(false));
            assert_eq!(fused.len(), composed.len());
            let case = format!("({batch},{seq_len},{d_input},{d_output},{bias})");
            assert_close(&fused, &composed, &case);
        }
    }

    /// The op with an output-major weight (the LSTM's layout) against composed tensor ops, in
    /// values and every gradient, with more inputs than outputs and fewer, so that the weight's
    /// gradient is computed directly and as its transpose.
    #[test]
    fn output_major_projection_matches_composed_ops_in_values_and_gradients() {
        let _rng = crate::testing::device_rng();
        let device = Device::flex().autodiff();
        device.seed(11);
        for (rows, input_size, output_size) in [(70, 48, 20), (70, 20, 48), (5, 9, 4)] {
            let random = |shape: [usize; 2]| {
                Tensor::<2>::random(shape, Distribution::Uniform(-1.0, 1.0), &device)
            };
            let (input, weight) = (
                random([rows, input_size]),
                random([output_size, input_size]),
            );
            let bias = random([1, output_size]).reshape([output_size]);
            let scale = random([rows, output_size]);
            let run = |fused: bool| {
                let [x, w] = [&input, &weight].map(|t| t.clone().detach().require_grad());
                let b = bias.clone().detach().require_grad();
                let output = if fused {
                    fused_projection(&x, &w, &b, WeightLayout::OutputMajor).expect("flex")
                } else {
                    x.clone().matmul(w.clone().transpose()) + b.clone().unsqueeze_dim(0)
                };
                let grads = (output.clone() * scale.clone()).sum().backward();
                let (dx, dw) = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
                [
                    values(output),
                    values(dx),
                    values(dw),
                    values(b.grad(&grads).unwrap()),
                ]
            };
            let (fused, composed) = (run(true), run(false));
            let case = format!("({rows},{input_size},{output_size})");
            assert_close(&fused, &composed, &case);
        }
    }
}
