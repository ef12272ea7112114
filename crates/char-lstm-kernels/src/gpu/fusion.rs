//! How the recurrence's kernels are launched: directly on Burn's CubeCL backend, and as opaque
//! custom ops in the fused stream under Burn's kernel fusion.

use std::marker::PhantomData;

use burn::backend::Backend;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeDevice};
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, StreamId, TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};
use cubecl::prelude::{CubeCount, CubeDim};

use crate::gpu::kernels::{backward_kernel, forward_kernel};

/// Units per cube at most; each strides over the hidden units.
const MAX_THREADS: u32 = 256;

/// A backend the recurrence runs on as kernels: Burn's CubeCL backend, and Burn's fusion over
/// it.
pub(crate) trait RecurrenceKernels: Backend {
    /// Bytes of shared memory one cube may use on `device`.
    fn max_shared_memory(device: &Self::Device) -> usize;

    /// The output (`h_1 .. h_T` then `c_T`, flat) and the gate activations `gates` and cell states `cells`,
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
