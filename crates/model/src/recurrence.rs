//! One LSTM layer's recurrence over a whole sequence as a single op with its own backward, on
//! Burn's flex CPU backend.
//!
//! The forward loops over time inside the op (one `[batch, H] x [H, 4H]` product per step,
//! gates and cell update fused in one pass) and keeps the gate activations and cells. The
//! backward runs backpropagation through time inside the op, with one `[batch, 4H] x [4H, H]`
//! product per step, and computes `dW_hh` after the loop as one product over every step.
//! The input projection stays an ordinary Burn op, so autodiff carries the gradient on to
//! `W_ih`, the biases and the layer's input.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};
use gemm::Parallelism;
use rayon::prelude::*;

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
/// Returns `[batch, seq_len + 1, hidden]`: `h_1 .. h_T` followed by the final cell state `c_T`,
/// or `None` on any other backend.
pub(crate) fn fused_recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> Option<Tensor<3>> {
    let [batch, steps, gates] = projected.dims();
    let dims = Dims {
        batch,
        steps,
        hidden: gates / 4,
    };
    if projected.device().is_autodiff() {
        let p = projected
            .clone()
            .try_into_primitive::<Autodiff<Flex>>()
            .ok()?;
        let w = weight_hh
            .clone()
            .autodiff()
            .try_into_primitive::<Autodiff<Flex>>()
            .ok()?;
        let h = h0
            .clone()
            .autodiff()
            .try_into_primitive::<Autodiff<Flex>>()
            .ok()?;
        let c = c0
            .clone()
            .autodiff()
            .try_into_primitive::<Autodiff<Flex>>()
            .ok()?;
        let state =
            RecurrenceBackward.prepare::<NoCheckpointing>([p.node(), w.node(), h.node(), c.node()]);
        let out = match state.compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (weight, h0, c0) = (
                    w.primitive().clone(),
                    h.primitive().clone(),
                    c.primitive().clone(),
                );
                let forward = forward(p.primitive(), &weight, &h0, &c0, dims);
                let output = flex(forward.output.clone(), [batch, steps + 1, dims.hidden]);
                let cache = Cache {
                    dims,
                    weight,
                    h0,
                    c0,
                    forward,
                };
                prep.finish(Arc::new(cache), output)
            }
            OpsKind::UnTracked(prep) => {
                let forward = forward(
                    p.primitive(),
                    w.primitive(),
                    h.primitive(),
                    c.primitive(),
                    dims,
                );
                prep.finish(flex(forward.output, [batch, steps + 1, dims.hidden]))
            }
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    } else {
        let p = projected.clone().try_into_primitive::<Flex>().ok()?;
        let w = weight_hh.clone().try_into_primitive::<Flex>().ok()?;
        let h = h0.clone().try_into_primitive::<Flex>().ok()?;
        let c = c0.clone().try_into_primitive::<Flex>().ok()?;
        let forward = forward(&p, &w, &h, &c, dims);
        Some(Tensor::from_primitive::<Flex>(flex(
            forward.output,
            [batch, steps + 1, dims.hidden],
        )))
    }
}

/// A float tensor on flex from a row-major buffer.
fn flex<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A contiguous f32 view of a flex tensor, copying only when its layout needs it.
fn values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => std::borrow::Cow::Borrowed(slice),
        None => std::borrow::Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("an f32 tensor")
                .to_vec(),
        ),
    }
}

/// What the forward computed.
struct ForwardPass {
    /// `[batch, steps + 1, hidden]`: `h_1 .. h_T`, then `c_T`.
    output: Vec<f32>,
    /// Gate activations `i, f, g, o`, `[batch, steps, 4 * hidden]`.
    gates: Vec<f32>,
    /// Cell states `c_1 .. c_T`, `[batch, steps, hidden]`.
    cells: Vec<f32>,
}

/// What the backward needs from the forward.
struct Cache {
    dims: Dims,
    weight: FlexTensor,
    h0: FlexTensor,
    c0: FlexTensor,
    forward: ForwardPass,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LstmRecurrenceCache({:?})", self.dims)
    }
}

/// Parallel matrix products only pay off above this many multiply-adds (flex's own threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// The batch rows each worker thread takes. The rows of an LSTM never interact, so each block
/// runs its whole time loop on its own, with no synchronisation per step.
fn rows_per_block(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().clamp(1, batch.max(1)))
}

/// Row-major `dst[m, n] (+)= lhs[m, k] * rhs[k, n]`, each operand given by its row and column
/// strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    (m, n, k): (usize, usize, usize),
    parallelism: Parallelism,
) {
    assert!(m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len());
    assert!(m == 0 || k == 0 || (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len());
    assert!(k == 0 || n == 0 || (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len());
    // SAFETY: the asserts above keep every element gemm touches inside the three slices, and
    // `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `e^x` in plain arithmetic that the compiler vectorizes (libm's `expf` is a call per
/// element): `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-7 Taylor polynomial for `e^r`
/// (relative error below 1e-7), and `2^n` put straight into the exponent bits. Clamped to
/// `[-87, 88]`, where `e^x` is a normal f32.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let exponent = shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127;
    poly * f32::from_bits((exponent << 23) as u32)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 - 2 / (e^{2x} + 1)`; its absolute error stays near f32's epsilon.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// The four gate blocks `i, f, g, o` of one row of `[4 * hidden]` pre-activations.
fn gate_blocks(row: &mut [f32]) -> [&mut [f32]; 4] {
    let hidden = row.len() / 4;
    let (i, rest) = row.split_at_mut(hidden);
    let (f, rest) = rest.split_at_mut(hidden);
    let (g, o) = rest.split_at_mut(hidden);
    [i, f, g, o]
}

/// Gate nonlinearities and the cell update of one row, in one pass: the pre-activations in
/// `gates` become the activations; writes `c_t` and `h_t`.
fn cell_update(gates: &mut [f32], c_prev: &[f32], c: &mut [f32], h: &mut [f32]) {
    let [gi, gf, gg, go] = gate_blocks(gates);
    let rows = gi
        .iter_mut()
        .zip(gf.iter_mut())
        .zip(gg.iter_mut())
        .zip(go.iter_mut());
    for ((((i, f), g), o), ((c, &c_prev), h)) in
        rows.zip(c.iter_mut().zip(c_prev).zip(h.iter_mut()))
    {
        *i = sigmoid(*i);
        *f = sigmoid(*f);
        *g = tanh(*g);
        *o = sigmoid(*o);
        *c = *f * c_prev + *i * *g;
        *h = *o * tanh(*c);
    }
}

fn forward(
    projected: &FlexTensor,
    weight: &FlexTensor,
    h0: &FlexTensor,
    c0: &FlexTensor,
    d: Dims,
) -> ForwardPass {
    let (weight, h0, c0) = (values(weight), values(h0), values(c0));
    let Dims {
        batch,
        steps,
        hidden,
    } = d;
    let out_rs = (steps + 1) * hidden;
    let mut output = vec![0.0f32; batch * out_rs];
    // Starts as the input projections, `[batch, steps, 4 * hidden]` like them, and becomes the
    // gate activations.
    let mut gates = values(projected).into_owned();
    let mut cells = vec![0.0f32; batch * steps * hidden];
    let rows = rows_per_block(batch);
    output
        .par_chunks_mut(rows * out_rs)
        .zip(gates.par_chunks_mut(rows * steps * 4 * hidden))
        .zip(cells.par_chunks_mut(rows * steps * hidden))
        .zip(
            h0.par_chunks(rows * hidden)
                .zip(c0.par_chunks(rows * hidden)),
        )
        .for_each(|(((output, gates), cells), (h0, c0))| {
            forward_rows(&weight, h0, c0, output, gates, cells, steps, hidden)
        });
    ForwardPass {
        output,
        gates,
        cells,
    }
}

/// The forward of a block of batch rows over every step.
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    weight: &[f32],
    h0: &[f32],
    c0: &[f32],
    output: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    steps: usize,
    hidden: usize,
) {
    let rows = h0.len() / hidden;
    let g4 = 4 * hidden;
    let out_rs = (steps + 1) * hidden;
    for t in 0..steps {
        // gates[:, t] += h_{t-1} W_hh^T
        let (h_prev, h_rs): (&[f32], usize) = if t == 0 {
            (h0, hidden)
        } else {
            (&output[(t - 1) * hidden..], out_rs)
        };
        matmul(
            &mut gates[t * g4..],
            steps * g4,
            true,
            h_prev,
            h_rs,
            1,
            weight,
            1,
            hidden,
            (rows, g4, hidden),
            Parallelism::None,
        );
        for b in 0..rows {
            let (before, after) = cells.split_at_mut((b * steps + t) * hidden);
            let c_prev = if t == 0 {
                &c0[b * hidden..(b + 1) * hidden]
            } else {
                &before[before.len() - hidden..]
            };
            let h = &mut output[b * out_rs + t * hidden..b * out_rs + (t + 1) * hidden];
            let row = &mut gates[(b * steps + t) * g4..(b * steps + t + 1) * g4];
            cell_update(row, c_prev, &mut after[..hidden], h);
        }
    }
    for b in 0..rows {
        let last = &cells[(b * steps + steps - 1) * hidden..(b * steps + steps) * hidden];
        output[b * out_rs + steps * hidden..(b + 1) * out_rs].copy_from_slice(last);
    }
}

/// Gradients of the recurrence's four inputs.
struct BackwardPass {
    projected: Vec<f32>,
    weight: Vec<f32>,
    h0: Vec<f32>,
    c0: Vec<f32>,
}

fn backward(cache: &Cache, d_output: &[f32]) -> BackwardPass {
    let Dims {
        batch,
        steps,
        hidden,
    } = cache.dims;
    let (weight, h0, c0) = (values(&cache.weight), values(&cache.h0), values(&cache.c0));
    let ForwardPass {
        output,
        gates,
        cells,
    } = &cache.forward;
    let g4 = 4 * hidden;
    let out_rs = (steps + 1) * hidden;
    let mut d_projected = vec![0.0f32; batch * steps * g4];
    let mut dh = vec![0.0f32; batch * hidden];
    let mut dc = vec![0.0f32; batch * hidden];
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
                .zip(d_output.par_chunks(rows * out_rs)),
        )
        .for_each(
            |(((d_projected, (dh, dc)), (gates, cells)), (c0, d_output))| {
                backward_rows(
                    &weight,
                    gates,
                    cells,
                    c0,
                    d_output,
                    d_projected,
                    dh,
                    dc,
                    steps,
                    hidden,
                )
            },
        );

    // H_prev: h_{t-1} for every (b, t), h_0 first.
    let mut h_prev = vec![0.0f32; batch * steps * hidden];
    for b in 0..batch {
        h_prev[b * steps * hidden..(b * steps + 1) * hidden]
            .copy_from_slice(&h0[b * hidden..(b + 1) * hidden]);
        h_prev[(b * steps + 1) * hidden..(b + 1) * steps * hidden]
            .copy_from_slice(&output[b * out_rs..b * out_rs + (steps - 1) * hidden]);
    }
    // dW_hh = dA^T H_prev, over all (b, t) at once.
    let mut d_weight = vec![0.0f32; g4 * hidden];
    let parallelism = if g4 * hidden * batch * steps >= PARALLEL_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    matmul(
        &mut d_weight,
        hidden,
        false,
        &d_projected,
        1,
        g4,
        &h_prev,
        hidden,
        1,
        (g4, hidden, batch * steps),
        parallelism,
    );
    BackwardPass {
        projected: d_projected,
        weight: d_weight,
        h0: dh,
        c0: dc,
    }
}

/// Backpropagation through time for a block of batch rows. `dh` and `dc` come in as zeros and
/// leave as the gradients of `h_0` and `c_0`.
#[allow(clippy::too_many_arguments)]
fn backward_rows(
    weight: &[f32],
    gates: &[f32],
    cells: &[f32],
    c0: &[f32],
    d_output: &[f32],
    d_projected: &mut [f32],
    dh: &mut [f32],
    dc: &mut [f32],
    steps: usize,
    hidden: usize,
) {
    let rows = dh.len() / hidden;
    let g4 = 4 * hidden;
    let out_rs = (steps + 1) * hidden;
    for b in 0..rows {
        dc[b * hidden..(b + 1) * hidden]
            .copy_from_slice(&d_output[b * out_rs + steps * hidden..(b + 1) * out_rs]);
    }
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
            let d_out = &d_output[b * out_rs + t * hidden..b * out_rs + (t + 1) * hidden];
            let da = &mut d_projected[at(g4, t)];
            let [di, df, dg, d_o] = gate_blocks(da);
            let (ai, rest) = a.split_at(hidden);
            let (af, rest) = rest.split_at(hidden);
            let (ag, ao) = rest.split_at(hidden);
            let dh = &dh[b * hidden..(b + 1) * hidden];
            let dc = &mut dc[b * hidden..(b + 1) * hidden];
            for j in 0..hidden {
                let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
                let tc = tanh(c[j]);
                let dh_j = d_out[j] + dh[j];
                let dc_j = dc[j] + dh_j * o * (1.0 - tc * tc);
                di[j] = dc_j * g * i * (1.0 - i);
                df[j] = dc_j * c_prev[j] * f * (1.0 - f);
                dg[j] = dc_j * i * (1.0 - g * g);
                d_o[j] = dh_j * tc * o * (1.0 - o);
                dc[j] = dc_j * f;
            }
        }
        // dh_{t-1} = dA_t W_hh
        matmul(
            dh,
            hidden,
            false,
            &d_projected[t * g4..],
            steps * g4,
            1,
            weight,
            hidden,
            1,
            (rows, hidden, g4),
            Parallelism::None,
        );
    }
}

/// The autodiff node of the fused recurrence.
#[derive(Debug)]
struct RecurrenceBackward;

impl Backward<Flex, 4> for RecurrenceBackward {
    type State = Arc<Cache>;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let d_output = grads.consume::<Flex>(&ops.node);
        let cache = ops.state;
        let Dims {
            batch,
            steps,
            hidden,
        } = cache.dims;
        let result = backward(&cache, &values(&d_output));
        let [projected, weight, h0, c0] = ops.parents;
        if let Some(node) = projected {
            grads.register::<Flex>(node.id, flex(result.projected, [batch, steps, 4 * hidden]));
        }
        if let Some(node) = weight {
            grads.register::<Flex>(node.id, flex(result.weight, [4 * hidden, hidden]));
        }
        if let Some(node) = h0 {
            grads.register::<Flex>(node.id, flex(result.h0, [batch, hidden]));
        }
        if let Some(node) = c0 {
            grads.register::<Flex>(node.id, flex(result.c0, [batch, hidden]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1024 from -100 to 100, against libm, within a few f32 ulps.
    #[test]
    fn fast_transcendentals_match_libm() {
        for k in -102_400..=102_400 {
            let x = k as f32 / 1024.0;
            if x.abs() < 87.0 {
                let (ours, libm) = (exp(x), x.exp());
                assert!(
                    (ours - libm).abs() <= 3e-7 * libm,
                    "exp({x}): {ours} vs {libm}"
                );
            }
            let libm_sigmoid = 1.0 / (1.0 + (-x).exp());
            assert!(
                (sigmoid(x) - libm_sigmoid).abs() <= 3e-7,
                "sigmoid({x}): {} vs {libm_sigmoid}",
                sigmoid(x)
            );
            assert!(
                (tanh(x) - x.tanh()).abs() <= 3e-7,
                "tanh({x}): {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
    }
}
