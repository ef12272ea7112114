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
    /// Gate activations `i, f, g, o`, `[steps, batch, 4 * hidden]`.
    gates: Vec<f32>,
    /// Cell states `c_1 .. c_T`, `[steps, batch, hidden]`.
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

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k >= PARALLEL_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
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
            parallelism(m, n, k),
        );
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn forward(
    projected: &FlexTensor,
    weight: &FlexTensor,
    h0: &FlexTensor,
    c0: &FlexTensor,
    d: Dims,
) -> ForwardPass {
    let (projected, weight, h0, c0) = (values(projected), values(weight), values(h0), values(c0));
    let Dims {
        batch,
        steps,
        hidden,
    } = d;
    let g4 = 4 * hidden;
    let out_rs = (steps + 1) * hidden;
    let mut output = vec![0.0f32; batch * out_rs];
    let mut gates = vec![0.0f32; steps * batch * g4];
    let mut cells = vec![0.0f32; steps * batch * hidden];
    for t in 0..steps {
        let (done_cells, cells_rest) = cells.split_at_mut(t * batch * hidden);
        let cell_t = &mut cells_rest[..batch * hidden];
        let gates_t = &mut gates[t * batch * g4..(t + 1) * batch * g4];
        for b in 0..batch {
            let row = (b * steps + t) * g4;
            gates_t[b * g4..(b + 1) * g4].copy_from_slice(&projected[row..row + g4]);
        }
        // gates_t += h_{t-1} W_hh^T
        let (h_prev, h_rs): (&[f32], usize) = if t == 0 {
            (&h0, hidden)
        } else {
            (&output[(t - 1) * hidden..], out_rs)
        };
        matmul(
            gates_t,
            g4,
            true,
            h_prev,
            h_rs,
            1,
            &weight,
            1,
            hidden,
            (batch, g4, hidden),
        );
        for b in 0..batch {
            let a = &mut gates_t[b * g4..(b + 1) * g4];
            let c_prev: &[f32] = if t == 0 {
                &c0[b * hidden..(b + 1) * hidden]
            } else {
                &done_cells[((t - 1) * batch + b) * hidden..((t - 1) * batch + b + 1) * hidden]
            };
            let h_out = &mut output[b * out_rs + t * hidden..b * out_rs + (t + 1) * hidden];
            for j in 0..hidden {
                let i = sigmoid(a[j]);
                let f = sigmoid(a[hidden + j]);
                let g = a[2 * hidden + j].tanh();
                let o = sigmoid(a[3 * hidden + j]);
                let c = f * c_prev[j] + i * g;
                a[j] = i;
                a[hidden + j] = f;
                a[2 * hidden + j] = g;
                a[3 * hidden + j] = o;
                cell_t[b * hidden + j] = c;
                h_out[j] = o * c.tanh();
            }
        }
    }
    for b in 0..batch {
        let last =
            &cells[((steps - 1) * batch + b) * hidden..((steps - 1) * batch + b + 1) * hidden];
        output[b * out_rs + steps * hidden..(b + 1) * out_rs].copy_from_slice(last);
    }
    ForwardPass {
        output,
        gates,
        cells,
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
    let mut dh_next = vec![0.0f32; batch * hidden];
    let mut dc_next = vec![0.0f32; batch * hidden];
    for b in 0..batch {
        let start = b * out_rs + steps * hidden;
        dc_next[b * hidden..(b + 1) * hidden].copy_from_slice(&d_output[start..start + hidden]);
    }
    for t in (0..steps).rev() {
        for b in 0..batch {
            let a = &gates[(t * batch + b) * g4..(t * batch + b + 1) * g4];
            let c = &cells[(t * batch + b) * hidden..(t * batch + b + 1) * hidden];
            let c_prev: &[f32] = if t == 0 {
                &c0[b * hidden..(b + 1) * hidden]
            } else {
                &cells[((t - 1) * batch + b) * hidden..((t - 1) * batch + b + 1) * hidden]
            };
            let d_out = &d_output[b * out_rs + t * hidden..b * out_rs + (t + 1) * hidden];
            let da = &mut d_projected[(b * steps + t) * g4..(b * steps + t + 1) * g4];
            for j in 0..hidden {
                let (i, f, g, o) = (a[j], a[hidden + j], a[2 * hidden + j], a[3 * hidden + j]);
                let tc = c[j].tanh();
                let dh = d_out[j] + dh_next[b * hidden + j];
                let dc = dc_next[b * hidden + j] + dh * o * (1.0 - tc * tc);
                da[j] = dc * g * i * (1.0 - i);
                da[hidden + j] = dc * c_prev[j] * f * (1.0 - f);
                da[2 * hidden + j] = dc * i * (1.0 - g * g);
                da[3 * hidden + j] = dh * tc * o * (1.0 - o);
                dc_next[b * hidden + j] = dc * f;
            }
        }
        // dh_{t-1} = dA_t W_hh
        matmul(
            &mut dh_next,
            hidden,
            false,
            &d_projected[t * g4..],
            steps * g4,
            1,
            &weight,
            hidden,
            1,
            (batch, hidden, g4),
        );
    }
    // H_prev: h_{t-1} for every (b, t), h_0 first.
    let mut h_prev = vec![0.0f32; batch * steps * hidden];
    for b in 0..batch {
        for t in 0..steps {
            let src = if t == 0 {
                &h0[b * hidden..(b + 1) * hidden]
            } else {
                &output[b * out_rs + (t - 1) * hidden..b * out_rs + t * hidden]
            };
            h_prev[(b * steps + t) * hidden..(b * steps + t + 1) * hidden].copy_from_slice(src);
        }
    }
    // dW_hh = dA^T H_prev, over all (b, t) at once.
    let mut d_weight = vec![0.0f32; g4 * hidden];
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
    );
    BackwardPass {
        projected: d_projected,
        weight: d_weight,
        h0: dh_next,
        c0: dc_next,
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
