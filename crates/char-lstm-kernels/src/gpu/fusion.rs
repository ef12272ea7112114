//! The backends the recurrence's kernels run on: Burn's CubeCL backend (launched in
//! `cube_backend.rs`), and Burn's fusion over it, where they are opaque custom ops in the fused
//! stream.

use std::marker::PhantomData;

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, StreamId, TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};

use crate::gpu::layout::GpuRecurrence;

/// A backend the recurrence runs on as kernels: Burn's CubeCL backend, and Burn's fusion over
/// it.
pub(crate) trait RecurrenceKernels: Backend {
    /// Bytes of shared memory one cube may use on `device`.
    fn max_shared_memory(device: &Self::Device) -> usize;

    /// The output (`h_1 .. h_T` then `c_T`, flat) and the gate activations `gates` and cell
    /// states `cells`, from `projected`, `W_hh`, `h_0` and `c_0`, in `layout`.
    fn recurrence_forward(
        layout: GpuRecurrence,
        projected: FloatTensor<Self>,
        weight_hh: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];

    /// `[d_projected, d_h0, d_c0]` from `W_hh`, the forward's gates and cells, `c_0` and the
    /// gradient of the forward's output, in `layout`.
    fn recurrence_backward(
        layout: GpuRecurrence,
        weight_hh: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        c0: FloatTensor<Self>,
        d_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// The ids of the two custom ops in a fused stream.
const FORWARD: &str = "lstm::recurrence_forward";
const BACKWARD: &str = "lstm::recurrence_backward";

impl<B: FusionBackend + RecurrenceKernels> RecurrenceKernels for Fusion<B> {
    fn max_shared_memory(device: &Self::Device) -> usize {
        B::max_shared_memory(device)
    }

    fn recurrence_forward(
        layout: GpuRecurrence,
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
        register::<B, 4>(FORWARD, layout, [projected, weight_hh, h0, c0], outputs)
    }

    fn recurrence_backward(
        layout: GpuRecurrence,
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
        register::<B, 5>(
            BACKWARD,
            layout,
            [weight_hh, gates, cells, c0, d_output],
            outputs,
        )
    }
}

/// Queues the custom op `id` with these inputs and outputs of these shapes (all `f32`) in the
/// fused stream.
fn register<B: FusionBackend + RecurrenceKernels, const N: usize>(
    id: &'static str,
    layout: GpuRecurrence,
    inputs: [FloatTensor<Fusion<B>>; N],
    outputs: [Shape; 3],
) -> [FloatTensor<Fusion<B>>; 3] {
    let client = inputs[0].client.clone();
    let outputs =
        outputs.map(|shape| TensorIr::uninit(client.create_empty_handle(), shape, DType::F32));
    let desc = CustomOpIr::new(id, &inputs.map(|t| t.into_ir()), &outputs);
    let op = KernelOp::<B> {
        desc: desc.clone(),
        layout,
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
    layout: GpuRecurrence,
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
            FORWARD => B::recurrence_forward(self.layout, next(), next(), next(), next()),
            BACKWARD => B::recurrence_backward(self.layout, next(), next(), next(), next(), next()),
            id => unreachable!("no recurrence op {id}"),
        };
        for (ir, tensor) in self.desc.outputs.iter().zip(results) {
            handles.register_float_tensor::<B>(&ir.id, tensor);
        }
        Ok(())
    }
}
