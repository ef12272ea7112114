//! One LSTM layer's recurrence over a whole sequence as a single op with its own backward, on
//! Burn's flex CPU backend.
//!
//! The forward loops over time inside the op (one `[batch, H] x [H, 4H]` product per step on
//! `W_hh^T` packed once for the sequence, gates and cell update fused in one pass) and keeps the
//! gate activations and cells. The backward runs backpropagation through time inside the op,
//! with one `[batch, 4H] x [4H, H]` product per step, and computes `dW_hh` after the loop as
//! one product over every step. The per-step products read the packed weight's panels in
//! alternating directions from one step to the next ([`step_matmul`]). Batch rows are split into one block per core, each running the
//! whole time loop without synchronising per step. The input projection is a separate op
//! (`projection.rs`), so autodiff carries the gradient on to `W_ih`, the biases and the input.

use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::cpu::buffer;
use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::cpu::gates::{cell_update, gate_gradients};
use crate::cpu::matmul::{Operand, Rhs, Sweep, Threads, Write, matmul, step_matmul};

/// The sizes of one recurrence.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    steps: usize,
    hidden: usize,
}

/// Runs the recurrence with the fused op when the tensors live on flex (with or without
/// autodiff, without gradient checkpointing).
///
/// - `projected`: `x W_ih^T + b_ih + b_hh` for every step, `[batch, seq_len, 4 * hidden]`.
/// - `weight_hh`: `[4 * hidden, hidden]`; `h0`, `c0`: `[batch, hidden]`.
///
/// Returns `batch * (seq_len + 1) * hidden` values: `h_1 .. h_T` as `[batch, seq_len, hidden]`,
/// then the final cell state `c_T` as `[batch, hidden]` (so that the hidden states are one
/// contiguous block that later layers read without a copy); `None` on any other backend.
pub(crate) fn recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> Option<Tensor<1>> {
    let [batch, steps, gates] = projected.dims();
    let dims = Dims {
        batch,
        steps,
        hidden: gates / 4,
    };
    let inputs = [
        flex_op::flatten(projected),
        flex_op::flatten(weight_hh),
        flex_op::flatten(h0),
        flex_op::flatten(c0),
    ];
    flex_op::run(Recurrence(dims), inputs)
}

/// The recurrence of one layer over a sequence: inputs `projected`, `W_hh`, `h_0`, `c_0`.
#[derive(Debug, Clone)]
pub(crate) struct Recurrence(Dims);

impl Recurrence {
    /// `[batch, steps, hidden]`, for the GPU op a remote server runs in its place.
    #[cfg(all(feature = "gpu", feature = "remote"))]
    pub(crate) fn sizes(&self) -> [usize; 3] {
        let Dims {
            batch,
            steps,
            hidden,
        } = self.0;
        [batch, steps, hidden]
    }
}

/// What the backward needs from the forward besides its output.
pub(crate) struct Activations {
    /// Gate activations `i, f, g, o`, `[batch, steps, 4 * hidden]`.
    gates: Vec<f32>,
    /// Cell states `c_1 .. c_T`, `[batch, steps, hidden]`.
    cells: Vec<f32>,
}

impl FlexOp<4> for Recurrence {
    const NAME: &'static str = "recurrence";

    type Saved = Activations;

    fn forward(&self, [projected, weight, h0, c0]: [&[f32]; 4]) -> (Vec<f32>, Activations) {
        forward(projected, weight, h0, c0, self.0)
    }

    fn backward(
        &self,
        [_, weight, h0, c0]: [&[f32]; 4],
        output: &[f32],
        saved: &Activations,
        d_output: &[f32],
    ) -> [Vec<f32>; 4] {
        backward(self.0, weight, h0, c0, output, saved, d_output)
    }
}

impl HostedOp<4> for Recurrence {
    fn settings(&self) -> Vec<u64> {
        let Dims {
            batch,
            steps,
            hidden,
        } = self.0;
        [batch, steps, hidden].map(|n| n as u64).to_vec()
    }

    fn from_settings(settings: &[u64]) -> Self {
        let [batch, steps, hidden] = [0, 1, 2].map(|i| settings[i] as usize);
        Recurrence(Dims {
            batch,
            steps,
            hidden,
        })
    }

    fn output_lens(&self, _: [usize; 4]) -> Vec<usize> {
        let Dims {
            batch,
            steps,
            hidden,
        } = self.0;
        let (output, gates, cells) = (batch * (steps + 1), batch * steps * 4, batch * steps);
        [output, gates, cells].map(|rows| rows * hidden).to_vec()
    }

    fn saved_buffers(saved: Activations) -> Vec<Vec<f32>> {
        vec![saved.gates, saved.cells]
    }

    fn saved_from(buffers: Vec<Vec<f32>>) -> Activations {
        let [gates, cells] = <[Vec<f32>; 2]>::try_from(buffers).expect("gates and cells");
        Activations { gates, cells }
    }
}

/// The batch rows each worker thread takes. The rows of an LSTM never interact, so each block
/// runs its whole time loop on its own, with no synchronisation per step.
fn rows_per_block(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().clamp(1, batch.max(1)))
}

/// Returns `h_1 .. h_T` (`[batch, steps, hidden]`) then `c_T` (`[batch, hidden]`), and the
/// activations.
fn forward(
    projected: &[f32],
    weight: &[f32],
    h0: &[f32],
    c0: &[f32],
    d: Dims,
) -> (Vec<f32>, Activations) {
    let Dims {
        batch,
        steps,
        hidden,
    } = d;
    let mut output = buffer::zeros(batch * (steps + 1) * hidden);
    // Starts as the input projections, `[batch, steps, 4 * hidden]` like them, and becomes the
    // gate activations.
    let mut gates = buffer::copied(projected);
    let mut cells = buffer::zeros(batch * steps * hidden);
    // `W_hh^T`, `[hidden, 4 * hidden]`, packed once for every step.
    let weight_t = Operand::transposed(weight, hidden, 4 * hidden, hidden);
    let weight_t = Rhs::for_rows(weight_t, batch * steps);
    let rows = rows_per_block(batch);
    let (h_out, c_out) = output.split_at_mut(batch * steps * hidden);
    h_out
        .par_chunks_mut(rows * steps * hidden)
        .zip(c_out.par_chunks_mut(rows * hidden))
        .zip(gates.par_chunks_mut(rows * steps * 4 * hidden))
        .zip(cells.par_chunks_mut(rows * steps * hidden))
        .zip(
            h0.par_chunks(rows * hidden)
                .zip(c0.par_chunks(rows * hidden)),
        )
        .for_each(|((((h_out, c_out), gates), cells), (h0, c0))| {
            forward_rows(&weight_t, h0, c0, h_out, c_out, gates, cells, steps, hidden)
        });
    (output, Activations { gates, cells })
}

/// The forward of a block of batch rows over every step: writes `h_1 .. h_T` to `h_out`
/// (`[rows, steps, hidden]`) and `c_T` to `c_out` (`[rows, hidden]`).
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    weight_t: &Rhs<'_>,
    h0: &[f32],
    c0: &[f32],
    h_out: &mut [f32],
    c_out: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    steps: usize,
    hidden: usize,
) {
    let rows = h0.len() / hidden;
    let g4 = 4 * hidden;
    for t in 0..steps {
        // gates[:, t] += h_{t-1} W_hh^T
        let (h_prev, h_rs): (&[f32], usize) = if t == 0 {
            (h0, hidden)
        } else {
            (&h_out[(t - 1) * hidden..], steps * hidden)
        };
        step_matmul(
            &mut gates[t * g4..],
            steps * g4,
            Write::Add,
            Operand::rows(h_prev, rows, hidden, h_rs),
            weight_t,
            Sweep::of_step(t),
        );
        for b in 0..rows {
            let (before, after) = cells.split_at_mut((b * steps + t) * hidden);
            let c_prev = if t == 0 {
                &c0[b * hidden..(b + 1) * hidden]
            } else {
                &before[before.len() - hidden..]
            };
            let h = &mut h_out[(b * steps + t) * hidden..(b * steps + t + 1) * hidden];
            let row = &mut gates[(b * steps + t) * g4..(b * steps + t + 1) * g4];
            cell_update(row, c_prev, &mut after[..hidden], h);
        }
    }
    for (b, c_last) in c_out.chunks_exact_mut(hidden).enumerate() {
        c_last.copy_from_slice(
            &cells[(b * steps + steps - 1) * hidden..(b * steps + steps) * hidden],
        );
    }
}

/// The gradients of `projected`, `W_hh`, `h_0` and `c_0`.
fn backward(
    dims: Dims,
    weight: &[f32],
    h0: &[f32],
    c0: &[f32],
    output: &[f32],
    saved: &Activations,
    d_output: &[f32],
) -> [Vec<f32>; 4] {
    let Dims {
        batch,
        steps,
        hidden,
    } = dims;
    let Activations { gates, cells } = saved;
    let g4 = 4 * hidden;
    // The gradients of `h_1 .. h_T` and of `c_T`, as the output lays them out.
    let (d_h, d_c) = d_output.split_at(batch * steps * hidden);
    let mut d_projected = buffer::zeros(batch * steps * g4);
    let mut dh = vec![0.0f32; batch * hidden];
    let mut dc = d_c.to_vec();
    // `W_hh`, `[4 * hidden, hidden]`, packed once for every step.
    let weight = Operand::rows(weight, g4, hidden, hidden);
    let weight = Rhs::for_rows(weight, batch * steps);
    let rows = rows_per_block(batch);
    d_projected
        .par_chunks_mut(rows * steps * g4)
        .zip(
            dh.par_chunks_mut(rows * hidden)
                .zip(dc.par_chunks_mut(rows * hidden)),
        )
        .zip(
            gates
                .par_chunks(rows * steps * g4)
                .zip(cells.par_chunks(rows * steps * hidden)),
        )
        .zip(
            c0.par_chunks(rows * hidden)
                .zip(d_h.par_chunks(rows * steps * hidden)),
        )
        .for_each(|(((d_projected, (dh, dc)), (gates, cells)), (c0, d_h))| {
            backward_rows(
                &weight,
                gates,
                cells,
                c0,
                d_h,
                d_projected,
                dh,
                dc,
                steps,
                hidden,
            )
        });

    // H_prev: h_{t-1} for every (b, t), h_0 first.
    let mut h_prev = buffer::zeros(batch * steps * hidden);
    h_prev
        .par_chunks_mut(steps * hidden)
        .zip(h0.par_chunks(hidden))
        .zip(output[..batch * steps * hidden].par_chunks(steps * hidden))
        .for_each(|((h_prev, h0), h)| {
            let (first, rest) = h_prev.split_at_mut(hidden);
            first.copy_from_slice(h0);
            rest.copy_from_slice(&h[..(steps - 1) * hidden]);
        });
    // dW_hh = dA^T H_prev, over all (b, t) at once.
    let mut d_weight = buffer::zeros(g4 * hidden);
    matmul(
        &mut d_weight,
        hidden,
        Write::Replace,
        Operand::transposed(&d_projected, g4, batch * steps, g4),
        &Rhs::for_rows(Operand::rows(&h_prev, batch * steps, hidden, hidden), g4),
        Threads::All,
    );
    [d_projected, d_weight, dh, dc]
}

/// Backpropagation through time for a block of batch rows, from the gradients `d_h` of
/// `h_1 .. h_T` (`[rows, steps, hidden]`). `dh` comes in as zeros and `dc` as the gradient of
/// `c_T`; they leave as the gradients of `h_0` and `c_0`.
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    weight: &Rhs<'_>,
    gates: &[f32],
    cells: &[f32],
    c0: &[f32],
    d_h: &[f32],
    d_projected: &mut [f32],
    dh: &mut [f32],
    dc: &mut [f32],
    steps: usize,
    hidden: usize,
) {
    let rows = dh.len() / hidden;
    let g4 = 4 * hidden;
    for t in (0..steps).rev() {
        for b in 0..rows {
            // Row (b, t) of a `[rows, steps, width]` buffer.
            let at = |width: usize, t: usize| (b * steps + t) * width..(b * steps + t + 1) * width;
            let a = &gates[at(g4, t)];
            let c = &cells[at(hidden, t)];
            let c_prev = if t == 0 {
                &c0[b * hidden..(b + 1) * hidden]
            } else {
                &cells[at(hidden, t - 1)]
            };
            let d_out = &d_h[at(hidden, t)];
            let dh = &dh[b * hidden..(b + 1) * hidden];
            let dc = &mut dc[b * hidden..(b + 1) * hidden];
            gate_gradients(a, c, c_prev, d_out, dh, dc, &mut d_projected[at(g4, t)]);
        }
        // dh_{t-1} = dA_t W_hh
        step_matmul(
            dh,
            hidden,
            Write::Replace,
            Operand::rows(&d_projected[t * g4..], rows, g4, steps * g4),
            weight,
            Sweep::of_step(t),
        );
    }
}
