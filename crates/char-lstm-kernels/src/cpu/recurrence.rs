//! One LSTM layer's recurrence over a whole sequence as a single op with its own backward, on
//! Burn's flex CPU backend.
//!
//! The forward loops over time inside the op (one `[batch, H] x [H, 4H]` product per step on
//! `W_hh^T` packed once for the sequence, gates and cell update fused in one pass) and keeps the
//! gate activations and cells. The backward runs backpropagation through time inside the op,
//! with one `[batch, 4H] x [4H, H]` product per step, and computes `dW_hh` after the loop as
//! one product over every step. The per-step products read the packed weight's panels in
//! alternating directions from one step to the next ([`step_matmul`]). Batch rows are split
//! into one block per core, each running the whole time loop without synchronising per step.
//! The input projection is a separate op
//! (`projection.rs`), so autodiff carries the gradient on to `W_ih`, the biases and the input.
//! With zoneout, [`ZonedRecurrence`] takes every step's keep weights as one more input and runs
//! the same loops with the zoned cell update and its gradients. With multiplicative integration
//! each step's product goes to a buffer of its own, which the gates take as [`integrate`] says
//! and the backward keeps for the gradients.

use burn::backend::Flex;
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::cpu::buffer;
use crate::cpu::flex_op::{self, FlexOp, HostedOp};
use crate::cpu::gates::{
    Keep, cell_update, gate_gradients, integrate, integration_gradients, zoned_cell_update,
    zoned_gate_gradients,
};
use crate::cpu::matmul::{Operand, Rhs, Sweep, Threads, Write, matmul, step_matmul};
use crate::custom_op;

/// The sizes of one recurrence, and how its gates take the recurrent product.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    steps: usize,
    hidden: usize,
    /// Multiplicative integration ([`integrate`]) instead of adding the product to the gates.
    multiplicative: bool,
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
    let (dims, inputs) = prepared(projected, weight_hh, h0, c0);
    flex_op::run(Recurrence(dims), inputs)
}

/// The sizes of a recurrence, and its four inputs flattened for the op.
fn prepared(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> (Dims, [Tensor<1>; 4]) {
    let [batch, steps, gates] = projected.dims();
    let dims = Dims {
        batch,
        steps,
        hidden: gates / 4,
        multiplicative: false,
    };
    let inputs = [
        flex_op::flatten(projected),
        flex_op::flatten(weight_hh),
        flex_op::flatten(h0),
        flex_op::flatten(c0),
    ];
    (dims, inputs)
}

/// [`recurrence`]'s variants, on flex only: with zoneout, `keep` (`[batch, seq_len,
/// 2 * hidden]`) holds, for every step, how much of the previous cell state (the first `hidden`
/// values) and hidden state (the rest) each element keeps (see [`zoned_cell_update`]); when
/// `multiplicative`, the gates take each step's recurrent product by [`integrate`].
pub(crate) fn variant_recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    keep: Option<&Tensor<3>>,
    multiplicative: bool,
) -> Option<Tensor<1>> {
    let (mut dims, inputs) = prepared(projected, weight_hh, h0, c0);
    dims.multiplicative = multiplicative;
    let Some(keep) = keep else {
        return custom_op::run::<Flex, _, 4>(Recurrence(dims), inputs);
    };
    assert_eq!(
        keep.dims(),
        [dims.batch, dims.steps, 2 * dims.hidden],
        "zoneout's keep weights"
    );
    let [projected, weight_hh, h0, c0] = inputs;
    let inputs = [projected, weight_hh, h0, c0, flex_op::flatten(keep)];
    custom_op::run::<Flex, _, 5>(ZonedRecurrence(dims), inputs)
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
            ..
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
    /// With multiplicative integration, every step's recurrent product `h_{t-1} W_hh^T`,
    /// `[batch, steps, 4 * hidden]`; empty otherwise.
    recurrent: Vec<f32>,
}

impl FlexOp<4> for Recurrence {
    const NAME: &'static str = "recurrence";

    type Saved = Activations;

    fn forward(&self, [projected, weight, h0, c0]: [&[f32]; 4]) -> (Vec<f32>, Activations) {
        forward(projected, weight, h0, c0, None, self.0)
    }

    fn backward(
        &self,
        [projected, weight, h0, c0]: [&[f32]; 4],
        output: &[f32],
        saved: &Activations,
        d_output: &[f32],
    ) -> [Vec<f32>; 4] {
        let inputs = [projected, weight, h0, c0];
        backward(self.0, inputs, None, output, saved, d_output)
    }
}

/// [`Recurrence`] with zoneout: inputs `projected`, `W_hh`, `h_0`, `c_0` and the keep weights.
/// On flex only: remote servers do not host it (a layer with zoneout there runs composed ops).
#[derive(Debug, Clone)]
pub(crate) struct ZonedRecurrence(Dims);

impl FlexOp<5> for ZonedRecurrence {
    const NAME: &'static str = "zoned_recurrence";

    type Saved = Activations;

    fn forward(&self, [projected, weight, h0, c0, keep]: [&[f32]; 5]) -> (Vec<f32>, Activations) {
        forward(projected, weight, h0, c0, Some(keep), self.0)
    }

    fn backward(
        &self,
        [projected, weight, h0, c0, keep]: [&[f32]; 5],
        output: &[f32],
        saved: &Activations,
        d_output: &[f32],
    ) -> [Vec<f32>; 5] {
        let inputs = [projected, weight, h0, c0];
        let [projected, weight, h0, c0] =
            backward(self.0, inputs, Some(keep), output, saved, d_output);
        // The keep weights are drawn, never trained.
        [projected, weight, h0, c0, Vec::new()]
    }
}

/// A remote server hosts the plain recurrence only ([`variant_recurrence`] runs on flex).
impl HostedOp<4> for Recurrence {
    fn settings(&self) -> Vec<u64> {
        let Dims {
            batch,
            steps,
            hidden,
            multiplicative,
        } = self.0;
        assert!(!multiplicative, "a hosted recurrence adds its product");
        [batch, steps, hidden].map(|n| n as u64).to_vec()
    }

    fn from_settings(settings: &[u64]) -> Self {
        let [batch, steps, hidden] = [0, 1, 2].map(|i| settings[i] as usize);
        Recurrence(Dims {
            batch,
            steps,
            hidden,
            multiplicative: false,
        })
    }

    fn output_lens(&self, _: [usize; 4]) -> Vec<usize> {
        let Dims {
            batch,
            steps,
            hidden,
            ..
        } = self.0;
        let (output, gates, cells) = (batch * (steps + 1), batch * steps * 4, batch * steps);
        [output, gates, cells].map(|rows| rows * hidden).to_vec()
    }

    fn saved_buffers(saved: Activations) -> Vec<Vec<f32>> {
        vec![saved.gates, saved.cells]
    }

    fn saved_from(buffers: Vec<Vec<f32>>) -> Activations {
        let [gates, cells] = <[Vec<f32>; 2]>::try_from(buffers).expect("gates and cells");
        Activations {
            gates,
            cells,
            recurrent: Vec::new(),
        }
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
    keep: Option<&[f32]>,
    d: Dims,
) -> (Vec<f32>, Activations) {
    let Dims {
        batch,
        steps,
        hidden,
        multiplicative,
    } = d;
    let mut output = buffer::zeros(batch * (steps + 1) * hidden);
    // Starts as the input projections, `[batch, steps, 4 * hidden]` like them, and becomes the
    // gate activations.
    let mut gates = buffer::copied(projected);
    let mut cells = buffer::zeros(batch * steps * hidden);
    let mut recurrent = match multiplicative {
        true => buffer::zeros(batch * steps * 4 * hidden),
        false => Vec::new(),
    };
    // `W_hh^T`, `[hidden, 4 * hidden]`, packed once for every step.
    let weight_t = Operand::transposed(weight, hidden, 4 * hidden, hidden);
    let weight_t = Rhs::for_rows(weight_t, batch * steps);
    let rows = rows_per_block(batch);
    let blocks = batch.div_ceil(rows);
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
        .zip(block_keeps(keep, blocks, rows * steps * 2 * hidden))
        .zip(blocks_of(&mut recurrent, blocks, rows * steps * 4 * hidden))
        .for_each(
            |((((((h_out, c_out), gates), cells), (h0, c0)), keep), recurrent)| {
                let state = State {
                    h_out,
                    c_out,
                    gates,
                    cells,
                };
                forward_rows(&weight_t, h0, c0, keep, recurrent, state, steps, hidden)
            },
        );
    let activations = Activations {
        gates,
        cells,
        recurrent,
    };
    (output, activations)
}

/// The keep weights of each of `blocks` blocks of batch rows (`len` values each), or `None` for
/// every block.
fn block_keeps(keep: Option<&[f32]>, blocks: usize, len: usize) -> Vec<Option<&[f32]>> {
    match keep {
        Some(keep) => keep.chunks(len).map(Some).collect(),
        None => vec![None; blocks],
    }
}

/// Each of `blocks` blocks of batch rows' part (`len` values) of a buffer that only
/// multiplicative integration fills, or `None` for every block where it is empty.
fn blocks_of(buffer: &mut [f32], blocks: usize, len: usize) -> Vec<Option<&mut [f32]>> {
    if buffer.is_empty() {
        return (0..blocks).map(|_| None).collect();
    }
    buffer.chunks_mut(len).map(Some).collect()
}

/// What a block's forward writes: `h_1 .. h_T` (`[rows, steps, hidden]`), `c_T`
/// (`[rows, hidden]`), the gates (the input projections coming in, the activations going out;
/// `[rows, steps, 4 * hidden]`) and the cells (`[rows, steps, hidden]`).
struct State<'a> {
    h_out: &'a mut [f32],
    c_out: &'a mut [f32],
    gates: &'a mut [f32],
    cells: &'a mut [f32],
}

/// The forward of a block of batch rows over every step into `state`, from the block's initial
/// state (`[rows, hidden]` each) and, with zoneout, its keep weights
/// (`[rows, steps, 2 * hidden]`); with multiplicative integration, each step's recurrent product
/// goes to `recurrent` (`[rows, steps, 4 * hidden]`).
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    weight_t: &Rhs<'_>,
    h0: &[f32],
    c0: &[f32],
    keep: Option<&[f32]>,
    mut recurrent: Option<&mut [f32]>,
    state: State<'_>,
    steps: usize,
    hidden: usize,
) {
    let State {
        h_out,
        c_out,
        gates,
        cells,
    } = state;
    let rows = h0.len() / hidden;
    let g4 = 4 * hidden;
    for t in 0..steps {
        // gates[:, t] += h_{t-1} W_hh^T, or that product alone for the integration below.
        let (h_prev, h_rs): (&[f32], usize) = if t == 0 {
            (h0, hidden)
        } else {
            (&h_out[(t - 1) * hidden..], steps * hidden)
        };
        let (dst, write) = match recurrent.as_deref_mut() {
            Some(recurrent) => (recurrent, Write::Replace),
            None => (&mut *gates, Write::Add),
        };
        step_matmul(
            &mut dst[t * g4..],
            steps * g4,
            write,
            Operand::rows(h_prev, rows, hidden, h_rs),
            weight_t,
            Sweep::of_step(t),
        );
        for b in 0..rows {
            let at = (b * steps + t) * hidden;
            let (c_before, c_after) = cells.split_at_mut(at);
            let (h_before, h_after) = h_out.split_at_mut(at);
            let (c_prev, h_prev) = if t == 0 {
                let row = b * hidden..(b + 1) * hidden;
                (&c0[row.clone()], &h0[row])
            } else {
                (&c_before[at - hidden..], &h_before[at - hidden..])
            };
            let (c, h) = (&mut c_after[..hidden], &mut h_after[..hidden]);
            let at_row = (b * steps + t) * g4..(b * steps + t + 1) * g4;
            let row = &mut gates[at_row.clone()];
            if let Some(recurrent) = recurrent.as_deref() {
                integrate(row, &recurrent[at_row]);
            }
            match keep {
                None => cell_update(row, c_prev, c, h),
                Some(keep) => {
                    let keep = Keep::halves(&keep[2 * at..2 * (at + hidden)]);
                    zoned_cell_update(row, c_prev, h_prev, keep, c, h)
                }
            }
        }
    }
    for (b, c_last) in c_out.chunks_exact_mut(hidden).enumerate() {
        c_last.copy_from_slice(
            &cells[(b * steps + steps - 1) * hidden..(b * steps + steps) * hidden],
        );
    }
}

/// The gradients of the inputs `projected`, `W_hh`, `h_0` and `c_0`.
fn backward(
    dims: Dims,
    [projected, weight, h0, c0]: [&[f32]; 4],
    keep: Option<&[f32]>,
    output: &[f32],
    saved: &Activations,
    d_output: &[f32],
) -> [Vec<f32>; 4] {
    let Dims {
        batch,
        steps,
        hidden,
        multiplicative,
    } = dims;
    let Activations {
        gates,
        cells,
        recurrent,
    } = saved;
    let g4 = 4 * hidden;
    // With multiplicative integration, the gradients of the recurrent products.
    let mut d_recurrent = match multiplicative {
        true => buffer::zeros(batch * steps * g4),
        false => Vec::new(),
    };
    // The gradients of `h_1 .. h_T` and of `c_T`, as the output lays them out.
    let (d_h, d_c) = d_output.split_at(batch * steps * hidden);
    let mut d_projected = buffer::zeros(batch * steps * g4);
    let mut dh = vec![0.0f32; batch * hidden];
    let mut dc = d_c.to_vec();
    // `W_hh`, `[4 * hidden, hidden]`, packed once for every step.
    let weight = Operand::rows(weight, g4, hidden, hidden);
    let weight = Rhs::for_rows(weight, batch * steps);
    let rows = rows_per_block(batch);
    let blocks = batch.div_ceil(rows);
    let block_len = rows * steps * g4;
    let integrations: Vec<Option<Integration>> = if multiplicative {
        let inputs = projected.chunks(block_len).zip(recurrent.chunks(block_len));
        let gradients = d_recurrent.chunks_mut(block_len);
        let blocks = inputs
            .zip(gradients)
            .map(|((projected, recurrent), d_recurrent)| {
                Some(Integration {
                    projected,
                    recurrent,
                    d_recurrent,
                })
            });
        blocks.collect()
    } else {
        (0..blocks).map(|_| None).collect()
    };
    d_projected
        .par_chunks_mut(block_len)
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
        .zip(block_keeps(keep, blocks, rows * steps * 2 * hidden))
        .zip(integrations)
        .for_each(
            |(((((d_projected, (dh, dc)), (gates, cells)), (c0, d_h)), keep), integration)| {
                backward_rows(
                    &weight,
                    gates,
                    cells,
                    c0,
                    keep,
                    integration,
                    d_h,
                    d_projected,
                    dh,
                    dc,
                    steps,
                    hidden,
                )
            },
        );

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
    // dW_hh = dU^T H_prev over all (b, t) at once, where dU, the recurrent products'
    // gradients, is dA without multiplicative integration.
    let d_recurrent = if multiplicative {
        &d_recurrent
    } else {
        &d_projected
    };
    let mut d_weight = buffer::zeros(g4 * hidden);
    matmul(
        &mut d_weight,
        hidden,
        Write::Replace,
        Operand::transposed(d_recurrent, g4, batch * steps, g4),
        &Rhs::for_rows(Operand::rows(&h_prev, batch * steps, hidden, hidden), g4),
        Threads::All,
    );
    [d_projected, d_weight, dh, dc]
}

/// A block's part of multiplicative integration's backward, each `[rows, steps, 4 * hidden]`.
struct Integration<'a> {
    /// The input projections.
    projected: &'a [f32],
    /// The recurrent products the forward kept.
    recurrent: &'a [f32],
    /// Their gradients, written here.
    d_recurrent: &'a mut [f32],
}

/// Backpropagation through time for a block of batch rows, from the gradients `d_h` of
/// `h_1 .. h_T` (`[rows, steps, hidden]`). `dh` comes in as zeros and `dc` as the gradient of
/// `c_T`; they leave as the gradients of `h_0` and `c_0`. `keep`: the block's keep weights,
/// with zoneout; `integration`: its inputs and products, with multiplicative integration.
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    weight: &Rhs<'_>,
    gates: &[f32],
    cells: &[f32],
    c0: &[f32],
    keep: Option<&[f32]>,
    mut integration: Option<Integration<'_>>,
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
            let dh = &mut dh[b * hidden..(b + 1) * hidden];
            let dc = &mut dc[b * hidden..(b + 1) * hidden];
            let da = &mut d_projected[at(g4, t)];
            match keep {
                None => gate_gradients(a, c, c_prev, d_out, dh, dc, da),
                Some(keep) => {
                    let keep = Keep::halves(&keep[at(2 * hidden, t)]);
                    zoned_gate_gradients(a, c_prev, keep, d_out, dh, dc, da)
                }
            }
            if let Some(Integration {
                projected,
                recurrent,
                d_recurrent,
            }) = integration.as_mut()
            {
                let row = at(g4, t);
                let (projected, recurrent) = (&projected[row.clone()], &recurrent[row.clone()]);
                integration_gradients(da, &mut d_recurrent[row], projected, recurrent);
            }
        }
        // dh_{t-1} = dU_t W_hh (dU = dA without multiplicative integration), plus what
        // zoneout carried past the gates.
        let write = if keep.is_some() {
            Write::Add
        } else {
            Write::Replace
        };
        let d_recurrent = match integration.as_ref() {
            Some(integration) => &*integration.d_recurrent,
            None => &*d_projected,
        };
        step_matmul(
            dh,
            hidden,
            write,
            Operand::rows(&d_recurrent[t * g4..], rows, g4, steps * g4),
            weight,
            Sweep::of_step(t),
        );
    }
}
