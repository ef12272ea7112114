//! An affine map `x W^T + b` as one op with its own backward on flex: the LSTM's input
//! projections as three matrix products and a bias sum, without the transposes, broadcasts and
//! graph nodes of the composed tensor ops.

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::flex_op::{self, FlexOp};
use crate::matmul::{Operand, Rhs, matmul};

/// `input W^T + bias` with the fused op when the tensors live on flex; `None` elsewhere.
///
/// - `input`: `[rows, input_size]`; `weight`: `[output_size, input_size]`;
///   `bias`: `[output_size]`.
///
/// Returns `[rows, output_size]`.
pub(crate) fn fused_projection(
    input: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
) -> Option<Tensor<2>> {
    let [rows, input_size] = input.dims();
    let [output_size, _] = weight.dims();
    let op = Projection {
        rows,
        input_size,
        output_size,
    };
    let inputs = [
        flex_op::flatten(input),
        flex_op::flatten(weight),
        bias.clone(),
    ];
    Some(flex_op::run(op, inputs)?.reshape([rows, output_size]))
}

/// The sizes of one projection; inputs `x`, `W`, `b`.
#[derive(Debug)]
struct Projection {
    rows: usize,
    input_size: usize,
    output_size: usize,
}

impl FlexOp<3> for Projection {
    type Saved = ();

    fn forward(&self, [input, weight, bias]: [&[f32]; 3]) -> (Vec<f32>, ()) {
        let Projection {
            rows,
            input_size,
            output_size,
        } = *self;
        let mut output = vec![0.0f32; rows * output_size];
        output
            .par_chunks_mut(output_size)
            .for_each(|row| row.copy_from_slice(bias));
        matmul(
            &mut output,
            output_size,
            true,
            Operand::rows(input, rows, input_size, input_size),
            &Rhs::plain(Operand::transposed(
                weight,
                input_size,
                output_size,
                input_size,
            )),
            true,
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
        } = *self;
        // dx = dy W
        let mut d_input = vec![0.0f32; rows * input_size];
        matmul(
            &mut d_input,
            input_size,
            false,
            Operand::rows(d_output, rows, output_size, output_size),
            &Rhs::plain(Operand::rows(weight, output_size, input_size, input_size)),
            true,
        );
        // dW = dy^T x
        let mut d_weight = vec![0.0f32; output_size * input_size];
        matmul(
            &mut d_weight,
            input_size,
            false,
            Operand::transposed(d_output, output_size, rows, output_size),
            &Rhs::plain(Operand::rows(input, rows, input_size, input_size)),
            true,
        );
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
