//! One LSTM layer's recurrence over a whole sequence as a single GPU kernel launch with its own
//! backward, on Burn's CubeCL backend (wgpu, and cuda where built), with or without Burn's
//! kernel fusion.
//!
//! Composed tensor ops launch several small kernels per time step and layer, so on a GPU the
//! step time is launch-bound. Here one cube (workgroup) per batch row runs the whole time loop:
//! `h_{t-1}` sits in shared memory, each unit computes its four gate sums against `W_hh^T`
//! (read coalesced across units), the nonlinearities and the cell update, and one barrier per
//! step hands `h_t` on. The backward is one launch of the same shape over time in reverse, with
//! the gate gradients of step `t + 1` in shared memory; `dW_hh` is then one matrix product
//! over every step, on the backend's own matmul. Under Burn's fusion the kernels run as opaque
//! custom ops in the fused stream.

use std::marker::PhantomData;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{Cube, CubeBackend, CubeDevice};
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, StreamId, TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};
use cubecl::prelude::{CubeCount, CubeDim};

use kernels::{backward_kernel, forward_kernel};

/// Units per cube at most; each strides over the hidden units.
const MAX_THREADS: u32 = 256;

/// Runs the recurrence as kernels when the tensors are `f32` on Burn's CubeCL backend (with or
/// without autodiff, without gradient checkpointing), the sequence has more than one step and
/// the backward's shared memory fits the device; `None` elsewhere. Inputs and output as in
/// [`crate::recurrence::fused_recurrence`]: the output is `h_1 .. h_T` as
/// `[batch, seq_len, hidden]` followed by the final cell state `c_T` as `[batch, hidden]`.
pub(crate) fn cube_recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> Option<Tensor<1>> {
    // One step at a time (generation) stays on composed ops: on an H100, sampling 32 streams
    // ran at 477 chars/s through the kernel and 2,982 through composed ops (one stream 233 and
    // 138), where training steps ran twice as fast through the kernel.
    if projected.dims()[1] < 2 {
        return None;
    }
    if projected.device().is_autodiff() {
        let p = projected.clone().autodiff();
        let p = p.try_into_primitive::<Autodiff<Cube>>().ok()?;
        let w = weight_hh.clone().autodiff();
        let w = w.try_into_primitive::<Autodiff<Cube>>().ok()?;
        let h = h0.clone().autodiff();
        let h = h.try_into_primitive::<Autodiff<Cube>>().ok()?;
        let c = c0.clone().autodiff();
        let c = c.try_into_primitive::<Autodiff<Cube>>().ok()?;
        if !applies(p.primitive(), w.primitive()) {
            return None;
        }
        let prep =
            RecurrenceNode.prepare::<NoCheckpointing>([p.node(), w.node(), h.node(), c.node()]);
        let inputs = Inputs {
            weight_hh: w.primitive().clone(),
            h0: h.primitive().clone(),
            c0: c.primitive().clone(),
        };
        let out = match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, activations) = forward(p.primitive().clone(), &inputs);
                prep.finish(
                    Saved {
                        inputs,
                        output: output.clone(),
                        activations,
                    },
                    output,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(p.primitive().clone(), &inputs).0),
        };
        Some(Tensor::from_primitive::<Autodiff<Cube>>(out))
    } else {
        let p = projected.clone().try_into_primitive::<Cube>().ok()?;
        let w = weight_hh.clone().try_into_primitive::<Cube>().ok()?;
        if !applies(&p, &w) {
            return None;
        }
        let inputs = Inputs {
            weight_hh: w,
            h0: h0.clone().try_into_primitive::<Cube>().ok()?,
            c0: c0.clone().try_into_primitive::<Cube>().ok()?,
        };
        Some(Tensor::from_primitive::<Cube>(forward(p, &inputs).0))
    }
}

/// `f32` only, and the backward's two `4 * hidden` rows of gate gradients must fit in shared
/// memory.
fn applies(projected: &FloatTensor<Cube>, weight_hh: &FloatTensor<Cube>) -> bool {
    let hidden = weight_hh.shape()[1];
    let shared = Cube::max_shared_memory(&projected.device());
    projected.dtype() == DType::F32 && weight_hh.dtype() == DType::F32 && 8 * hidden * 4 <= shared
}

/// A backend the recurrence runs on as kernels: Burn's CubeCL backend, and Burn's fusion over
/// it.
pub(crate) trait RecurrenceKernels: Backend {
    /// Bytes of shared memory one cube may use on `device`.
    fn max_shared_memory(device: &Self::Device) -> usize;

    /// The output (`h_1 .. h_T` then `c_T`, flat) and the [`Activations`] `gates` and `cells`,
    /// from `projected`, `W_hh`, `h_0` and `c_0`.
    fn recurrence_forward(
        projected: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];

    /// `[d_projected, d_h0, d_c0]` from `W_hh`, the forward's gates and cells, `c_0` and the
    /// gradient of the forward's output.
    fn recurrence_backward(
        weight_hh: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

impl RecurrenceKernels for CubeBackend {
    fn max_shared_memory(device: &CubeDevice) -> usize {
        device.client().properties().hardware.max_shared_memory_size
    }

    fn recurrence_forward(
        projected: CubeTensor,
        weight_hh: CubeTensor,
        h0: CubeTensor,
        c0: CubeTensor,
    ) -> [CubeTensor; 3] {
        let [batch, steps, hidden] = dims(&projected);
        let projected = into_contiguous(projected);
        // `W_hh^T`, `[hidden, 4 * hidden]`: unit `j` of gate `q` reads column `q * hidden + j`,
        // so neighbouring units read neighbouring addresses.
        let weight_t = into_contiguous(CubeBackend::float_transpose(weight_hh));
        let output = empty_like(&projected, [batch * (steps + 1) * hidden]);
        let gates = empty_like(&projected, [batch, steps, 4 * hidden]);
        let cells = empty_like(&projected, [batch, steps, hidden]);
        let (count, dim) = launch_shape(&projected, batch, hidden);
        forward_kernel::launch(
            &projected.client.clone(),
            count,
            dim,
            projected.into_tensor_arg(),
            weight_t.into_tensor_arg(),
            into_contiguous(h0).into_tensor_arg(),
            into_contiguous(c0).into_tensor_arg(),
            output.clone().into_tensor_arg(),
            gates.clone().into_tensor_arg(),
            cells.clone().into_tensor_arg(),
            steps as u32,
            hidden as u32,
        );
        [output, gates, cells]
    }

    fn recurrence_backward(
        weight_hh: CubeTensor,
        gates: CubeTensor,
        cells: CubeTensor,
        c0: CubeTensor,
        d_output: CubeTensor,
    ) -> [CubeTensor; 3] {
        let [batch, steps, hidden] = dims(&gates);
        let d_output = into_contiguous(d_output);
        let d_projected = empty_like(&d_output, [batch, steps, 4 * hidden]);
        let d_h0 = empty_like(&d_output, [batch, hidden]);
        let d_c0 = empty_like(&d_output, [batch, hidden]);
        let (count, dim) = launch_shape(&d_output, batch, hidden);
        backward_kernel::launch(
            &d_output.client.clone(),
            count,
            dim,
            into_contiguous(weight_hh).into_tensor_arg(),
            into_contiguous(gates).into_tensor_arg(),
            into_contiguous(cells).into_tensor_arg(),
            into_contiguous(c0).into_tensor_arg(),
            d_output.into_tensor_arg(),
            d_projected.clone().into_tensor_arg(),
            d_h0.clone().into_tensor_arg(),
            d_c0.clone().into_tensor_arg(),
            steps as u32,
            hidden as u32,
        );
        [d_projected, d_h0, d_c0]
    }
}

/// The ids of the two custom ops in a fused stream.
const FORWARD: &str = "lstm::recurrence_forward";
const BACKWARD: &str = "lstm::recurrence_backward";

impl<B: FusionBackend + RecurrenceKernels> RecurrenceKernels for Fusion<B> {
    fn max_shared_memory(device: &Self::Device) -> usize {
        B::max_shared_memory(device)
    }

    fn recurrence_forward(
        projected: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let [batch, steps, gates] = projected.shape.dims();
        let hidden = gates / 4;
        let outputs = [
            Shape::new([batch * (steps + 1) * hidden]),
            Shape::new([batch, steps, gates]),
            Shape::new([batch, steps, hidden]),
        ];
        register::<B, 4>(FORWARD, [projected, weight_hh, h0, c0], outputs)
    }

    fn recurrence_backward(
        weight_hh: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let [batch, steps, g4] = gates.shape.dims();
        let hidden = g4 / 4;
        let outputs = [
            Shape::new([batch, steps, g4]),
            Shape::new([batch, hidden]),
            Shape::new([batch, hidden]),
        ];
        register::<B, 5>(BACKWARD, [weight_hh, gates, cells, c0, d_output], outputs)
    }
}

/// Queues the custom op `id` with these inputs and outputs of these shapes (all `f32`) in the
/// fused stream.
fn register<B: FusionBackend + RecurrenceKernels, const N: usize>(
    id: &'static str,
    inputs: [FloatTensor<Fusion<B>>; N],
    outputs: [Shape; 3],
) -> [FloatTensor<Fusion<B>>; 3] {
    let client = inputs[0].client.clone();
    let outputs =
        outputs.map(|shape| TensorIr::uninit(client.create_empty_handle(), shape, DType::F32));
    let desc = CustomOpIr::new(id, &inputs.map(|t| t.into_ir()), &outputs);
    let op = KernelOp::<B> {
        desc: desc.clone(),
        backend: PhantomData,
    };
    client
        .register(StreamId::current(), OperationIr::Custom(desc), op)
        .try_into()
        .unwrap_or_else(|_| unreachable!("three outputs were registered"))
}

/// One of the custom ops, run by the fused stream on the backend under it.
#[derive(Debug)]
struct KernelOp<B> {
    desc: CustomOpIr,
    backend: PhantomData<fn() -> B>,
}

impl<B: FusionBackend + RecurrenceKernels> Operation<B::FusionRuntime> for KernelOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) -> Result<(), ExecutionError> {
        let mut inputs = self
            .desc
            .inputs
            .iter()
            .map(|ir| handles.get_float_tensor::<B>(ir));
        let mut next = || inputs.next().expect("as many inputs as registered");
        let results = match self.desc.id.as_str() {
            FORWARD => B::recurrence_forward(next(), next(), next(), next()),
            BACKWARD => B::recurrence_backward(next(), next(), next(), next(), next()),
            id => unreachable!("no recurrence op {id}"),
        };
        for (ir, tensor) in self.desc.outputs.iter().zip(results) {
            handles.register_float_tensor::<B>(&ir.id, tensor);
        }
        Ok(())
    }
}

/// The recurrence's inputs other than `projected`, which the backward does not need.
#[derive(Debug, Clone)]
struct Inputs {
    weight_hh: FloatTensor<Cube>,
    h0: FloatTensor<Cube>,
    c0: FloatTensor<Cube>,
}

/// What the forward keeps for the backward: gate activations `i, f, g, o`
/// (`[batch, steps, 4 * hidden]`) and cell states `c_1 .. c_T` (`[batch, steps, hidden]`).
#[derive(Debug, Clone)]
struct Activations {
    gates: FloatTensor<Cube>,
    cells: FloatTensor<Cube>,
}

/// The autodiff node's state.
#[derive(Debug, Clone)]
struct Saved {
    inputs: Inputs,
    output: FloatTensor<Cube>,
    activations: Activations,
}

/// The output (`h_1 .. h_T` then `c_T`, flat) and the activations.
fn forward(projected: FloatTensor<Cube>, inputs: &Inputs) -> (FloatTensor<Cube>, Activations) {
    let [output, gates, cells] = Cube::recurrence_forward(
        projected,
        inputs.weight_hh.clone(),
        inputs.h0.clone(),
        inputs.c0.clone(),
    );
    (output, Activations { gates, cells })
}

/// The gradients of `projected`, `W_hh`, `h_0` and `c_0` from that of the output.
fn backward(saved: &Saved, d_output: FloatTensor<Cube>) -> [FloatTensor<Cube>; 4] {
    let Saved {
        inputs,
        output,
        activations,
    } = saved;
    let [d_projected, d_h0, d_c0] = Cube::recurrence_backward(
        inputs.weight_hh.clone(),
        activations.gates.clone(),
        activations.cells.clone(),
        inputs.c0.clone(),
        d_output,
    );
    // dW_hh = dA^T H_prev over every (b, t), with H_prev = h_0 .. h_{T-1}.
    let [batch, steps, gates] = d_projected.shape().dims();
    let hidden = gates / 4;
    let h0 = Tensor::<2>::from_primitive::<Cube>(inputs.h0.clone()).unsqueeze_dim::<3>(1);
    let h_prev = if steps > 1 {
        let earlier = Tensor::<1>::from_primitive::<Cube>(output.clone())
            .narrow(0, 0, batch * steps * hidden)
            .reshape([batch, steps, hidden])
            .narrow(1, 0, steps - 1);
        Tensor::cat(vec![h0, earlier], 1)
    } else {
        h0
    };
    let d_a =
        Tensor::<3>::from_primitive::<Cube>(d_projected.clone()).reshape([batch * steps, gates]);
    let d_weight = d_a
        .transpose()
        .matmul(h_prev.reshape([batch * steps, hidden]))
        .try_into_primitive::<Cube>()
        .unwrap_or_else(|_| unreachable!("made on the same backend"));
    [d_projected, d_weight, d_h0, d_c0]
}

/// The autodiff node of the recurrence.
#[derive(Debug)]
struct RecurrenceNode;

impl Backward<Cube, 4> for RecurrenceNode {
    type State = Saved;

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let d_output = grads.consume::<Cube>(&ops.node);
        let gradients = backward(&ops.state, d_output);
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<Cube>(node.id, gradient);
            }
        }
    }
}

/// `[batch, steps, hidden]` sizes of `projected` or `gates` (`[batch, steps, 4 * hidden]`).
fn dims(gates: &CubeTensor) -> [usize; 3] {
    let [batch, steps, width] = gates.meta.shape().dims::<3>();
    [batch, steps, width / 4]
}

/// One cube per batch row, as many units as fit up to [`MAX_THREADS`] and the hidden size.
fn launch_shape(tensor: &CubeTensor, batch: usize, hidden: usize) -> (CubeCount, CubeDim) {
    let hardware = &tensor.client.properties().hardware;
    let max = hardware.max_cube_dim.0.min(hardware.max_units_per_cube);
    let threads = (hidden as u32).clamp(1, MAX_THREADS.min(max));
    (
        CubeCount::Static(batch as u32, 1, 1),
        CubeDim::new_1d(threads),
    )
}

/// An uninitialised `f32` tensor on `tensor`'s device.
fn empty_like<const D: usize>(tensor: &CubeTensor, shape: [usize; D]) -> CubeTensor {
    empty_device_dtype(
        tensor.client.clone(),
        tensor.device.clone(),
        Shape::new(shape),
        DType::F32,
    )
}

/// The kernels, apart from the host code: CubeCL's `Tensor` is not Burn's.
mod kernels {
    use cubecl::prelude::*;

    #[cube]
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    /// `tanh` through `exp`, which saturates to +-1 instead of overflowing to NaN for large `|x|`.
    #[cube]
    fn tanh_of(x: f32) -> f32 {
        1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
    }

    /// Cube `b` runs batch row `b` through every step; shapes as in
    /// [`super::cube_recurrence`], with `weight_t = W_hh^T` and `gates`, `cells` as in
    /// [`super::Activations`].
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_kernel(
        projected: &Tensor<f32>,
        weight_t: &Tensor<f32>,
        h0: &Tensor<f32>,
        c0: &Tensor<f32>,
        output: &mut Tensor<f32>,
        gates: &mut Tensor<f32>,
        cells: &mut Tensor<f32>,
        steps: u32,
        #[comptime] hidden: u32,
    ) {
        let b = CUBE_POS_X as usize;
        let threads = CUBE_DIM_X as usize;
        let steps = steps as usize;
        let hidden = hidden as usize;
        let g4 = 4 * hidden;
        // h_{t-1} in one half, h_t written to the other: one barrier per step.
        let mut h = Shared::new_slice(2 * hidden);
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            h[j] = h0[b * hidden + j];
            j += threads;
        }
        sync_cube();
        for t in 0..steps {
            let read = (t % 2) * hidden;
            let write = hidden - read;
            let row = (b * steps + t) * g4;
            let mut j = UNIT_POS_X as usize;
            while j < hidden {
                let mut a_i = projected[row + j];
                let mut a_f = projected[row + hidden + j];
                let mut a_g = projected[row + 2 * hidden + j];
                let mut a_o = projected[row + 3 * hidden + j];
                for k in 0..hidden {
                    let h_k = h[read + k];
                    let w = k * g4 + j;
                    a_i += h_k * weight_t[w];
                    a_f += h_k * weight_t[w + hidden];
                    a_g += h_k * weight_t[w + 2 * hidden];
                    a_o += h_k * weight_t[w + 3 * hidden];
                }
                let i = sigmoid(a_i);
                let f = sigmoid(a_f);
                let g = tanh_of(a_g);
                let o = sigmoid(a_o);
                let mut c_prev = c0[b * hidden + j];
                if t > 0 {
                    c_prev = cells[(b * steps + t - 1) * hidden + j];
                }
                let c = f * c_prev + i * g;
                let h_t = o * tanh_of(c);
                gates[row + j] = i;
                gates[row + hidden + j] = f;
                gates[row + 2 * hidden + j] = g;
                gates[row + 3 * hidden + j] = o;
                cells[(b * steps + t) * hidden + j] = c;
                output[(b * steps + t) * hidden + j] = h_t;
                h[write + j] = h_t;
                j += threads;
            }
            sync_cube();
        }
        // `c_T` after every row's hidden states.
        let tail = CUBE_COUNT_X as usize * steps * hidden;
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            output[tail + b * hidden + j] = cells[(b * steps + steps - 1) * hidden + j];
            j += threads;
        }
    }

    /// Backpropagation through time for batch row `b`: `weight` is `W_hh` (`[4 * hidden, hidden]`,
    /// so unit `j` reads column `j`), `d_output` the gradient of the forward's output; writes the
    /// gradient of `projected` and those of `h_0` and `c_0` (`[batch, hidden]`; `d_c0` carries
    /// the cell gradient from step to step on the way).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_kernel(
        weight: &Tensor<f32>,
        gates: &Tensor<f32>,
        cells: &Tensor<f32>,
        c0: &Tensor<f32>,
        d_output: &Tensor<f32>,
        d_projected: &mut Tensor<f32>,
        d_h0: &mut Tensor<f32>,
        d_c0: &mut Tensor<f32>,
        steps: u32,
        #[comptime] hidden: u32,
    ) {
        let b = CUBE_POS_X as usize;
        let threads = CUBE_DIM_X as usize;
        let steps = steps as usize;
        let hidden = hidden as usize;
        let g4 = 4 * hidden;
        // The gate gradients of step t + 1 in one half (zeros before the last step), step t's
        // written to the other.
        let mut d_a = Shared::new_slice(2 * g4);
        let mut r = UNIT_POS_X as usize;
        while r < g4 {
            d_a[r] = 0.0f32;
            r += threads;
        }
        let tail = CUBE_COUNT_X as usize * steps * hidden;
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            d_c0[b * hidden + j] = d_output[tail + b * hidden + j];
            j += threads;
        }
        sync_cube();
        for s in 0..steps {
            let t = steps - 1 - s;
            let read = (s % 2) * g4;
            let write = g4 - read;
            let row = (b * steps + t) * g4;
            let mut j = UNIT_POS_X as usize;
            while j < hidden {
                let mut d_h = d_output[(b * steps + t) * hidden + j];
                for r in 0..g4 {
                    d_h += d_a[read + r] * weight[r * hidden + j];
                }
                let i = gates[row + j];
                let f = gates[row + hidden + j];
                let g = gates[row + 2 * hidden + j];
                let o = gates[row + 3 * hidden + j];
                let tanh_c = tanh_of(cells[(b * steps + t) * hidden + j]);
                let d_c = d_c0[b * hidden + j] + d_h * o * (1.0 - tanh_c * tanh_c);
                let mut c_prev = c0[b * hidden + j];
                if t > 0 {
                    c_prev = cells[(b * steps + t - 1) * hidden + j];
                }
                let d_i = d_c * g * i * (1.0 - i);
                let d_f = d_c * c_prev * f * (1.0 - f);
                let d_g = d_c * i * (1.0 - g * g);
                let d_o = d_h * tanh_c * o * (1.0 - o);
                d_projected[row + j] = d_i;
                d_projected[row + hidden + j] = d_f;
                d_projected[row + 2 * hidden + j] = d_g;
                d_projected[row + 3 * hidden + j] = d_o;
                d_a[write + j] = d_i;
                d_a[write + hidden + j] = d_f;
                d_a[write + 2 * hidden + j] = d_g;
                d_a[write + 3 * hidden + j] = d_o;
                d_c0[b * hidden + j] = d_c * f;
                j += threads;
            }
            sync_cube();
        }
        // d h_0 = dA_1 W_hh, from the half written last.
        let last = (steps % 2) * g4;
        let mut j = UNIT_POS_X as usize;
        while j < hidden {
            let mut d_h = 0.0f32;
            for r in 0..g4 {
                d_h += d_a[last + r] * weight[r * hidden + j];
            }
            d_h0[b * hidden + j] = d_h;
            j += threads;
        }
    }
}
