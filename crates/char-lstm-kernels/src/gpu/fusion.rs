//! The backends our GPU kernels (the recurrence, Adam) run on: Burn's CubeCL backend (launched
//! in `cube_backend.rs` and `adam.rs`), and Burn's fusion over it, where they are opaque custom
//! ops in the fused stream.

use std::marker::PhantomData;

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, StreamId, TensorIr,
};
use burn_fusion::{ExecutionError, Fusion, FusionBackend, FusionRuntime};

use crate::cpu::adam::StepConstants;
use crate::gpu::layout::GpuRecurrence;

/// A backend our kernels run on: Burn's CubeCL backend, and Burn's fusion over it.
pub(crate) trait CubeKernels: Backend {
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

    /// One Adam step of a flat parameter: `[parameter, moment_1, moment_2]` after it, from the
    /// parameter, its gradient and the moments before it (not read at the first step).
    fn adam_step(
        constants: StepConstants,
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// The ids of the custom ops in a fused stream.
const FORWARD: &str = "lstm::recurrence_forward";
const BACKWARD: &str = "lstm::recurrence_backward";
const ADAM: &str = "lstm::adam_step";

/// What a custom op launches, with the settings its kernels take.
#[derive(Debug, Clone, Copy)]
enum Launch {
    Forward(GpuRecurrence),
    Backward(GpuRecurrence),
    Adam(StepConstants),
}

impl<B: FusionBackend + CubeKernels> CubeKernels for Fusion<B> {
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
        register::<B, 4>(
            FORWARD,
            Launch::Forward(layout),
            [projected, weight_hh, h0, c0],
            outputs,
        )
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
            Launch::Backward(layout),
            [weight_hh, gates, cells, c0, d_output],
            outputs,
        )
    }

    fn adam_step(
        constants: StepConstants,
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let shape = param.shape.clone();
        register::<B, 4>(
            ADAM,
            Launch::Adam(constants),
            [param, grad, moment_1, moment_2],
            [shape.clone(), shape.clone(), shape],
        )
    }
}

/// Queues the custom op `id` with these inputs and outputs of these shapes (all `f32`) in the
/// fused stream.
fn register<B: FusionBackend + CubeKernels, const N: usize>(
    id: &'static str,
    launch: Launch,
    inputs: [FloatTensor<Fusion<B>>; N],
    outputs: [Shape; 3],
) -> [FloatTensor<Fusion<B>>; 3] {
    let client = inputs[0].client.clone();
    let outputs =
        outputs.map(|shape| TensorIr::uninit(client.create_empty_handle(), shape, DType::F32));
    let desc = CustomOpIr::new(id, &inputs.map(|t| t.into_ir()), &outputs);
    let op = KernelOp::<B> {
        desc: desc.clone(),
        launch,
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
    launch: Launch,
    backend: PhantomData<fn() -> B>,
}

impl<B: FusionBackend + CubeKernels> Operation<B::FusionRuntime> for KernelOp<B> {
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
        let results = match self.launch {
            Launch::Forward(layout) => {
                B::recurrence_forward(layout, next(), next(), next(), next())
            }
            Launch::Backward(layout) => {
                B::recurrence_backward(layout, next(), next(), next(), next(), next())
            }
            Launch::Adam(constants) => B::adam_step(constants, next(), next(), next(), next()),
        };
        for (ir, tensor) in self.desc.outputs.iter().zip(results) {
            handles.register_float_tensor::<B>(&ir.id, tensor);
        }
        Ok(())
    }
}
