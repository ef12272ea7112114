//! One LSTM layer's recurrence over a whole sequence as an op with its own backward, on Burn's
//! CubeCL backend (wgpu, and cuda where built), with or without Burn's kernel fusion.
//!
//! Composed tensor ops launch several small kernels per time step and layer, so on a GPU the
//! step time is launch-bound. Here each step is one kernel over the whole GPU
//! ([`GpuRecurrence::PerStep`]): every cube computes the four gate sums of a few hidden units
//! for a block of batch rows (`h_{t-1}` and the slice of `W_hh^T` staged through shared
//! memory), then their nonlinearities and cell update; the kernel boundary hands `h_t` on. The
//! backward mirrors it in reverse time, reading step `t + 1`'s gate gradients. `dW_hh` is then
//! one matrix product over every step, on the backend's own matmul.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::Cube;

use crate::custom_op::{self, CustomOp, op_backend};
use crate::gpu::fusion::CubeKernels;
use crate::gpu::layout::GpuRecurrence;

op_backend!(Cube);

/// Runs the recurrence as kernels when the tensors are `f32` on Burn's CubeCL backend (with or
/// without autodiff, without gradient checkpointing), the sequence has more than one step and
/// the backward's shared memory fits the device; `None` elsewhere. Inputs and output as in
/// [`crate::fused_recurrence`].
pub(crate) fn recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> Option<Tensor<1>> {
    // One step at a time (generation) stays on composed ops, which were faster there.
    let [batch, steps, gates] = projected.dims();
    if steps < 2 {
        return None;
    }
    let weight = weight_hh.clone().without_autodiff();
    if !applies(&weight.try_into_primitive::<Cube>().ok()?) {
        return None;
    }
    let op = Recurrence {
        batch,
        steps,
        hidden: gates / 4,
    };
    let inputs = [
        projected.clone().reshape([batch * steps * gates]),
        weight_hh.clone().reshape([gates * gates / 4]),
        h0.clone().reshape([batch * gates / 4]),
        c0.clone().reshape([batch * gates / 4]),
    ];
    custom_op::run::<Cube, _, 4>(op, inputs)
}

/// `f32` only; per row, the backward's two `4 * hidden` rows of gate gradients must fit in
/// shared memory.
fn applies(weight_hh: &FloatTensor<Cube>) -> bool {
    let hidden = weight_hh.shape()[1];
    let fits = || 8 * hidden * 4 <= Cube::max_shared_memory(&weight_hh.device());
    weight_hh.dtype() == DType::F32 && (GpuRecurrence::active() == GpuRecurrence::PerStep || fits())
}

/// The recurrence of one layer over a sequence: inputs `projected`, `W_hh`, `h_0`, `c_0`, flat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recurrence {
    batch: usize,
    steps: usize,
    hidden: usize,
}

impl Recurrence {
    fn shaped<const D: usize>(tensor: &FloatTensor<Cube>, shape: [usize; D]) -> FloatTensor<Cube> {
        Cube::float_reshape(tensor.clone(), Shape::new(shape))
    }

    fn flat(tensor: FloatTensor<Cube>) -> FloatTensor<Cube> {
        let len = tensor.shape().num_elements();
        Cube::float_reshape(tensor, Shape::new([len]))
    }
}

/// What the forward keeps for the backward: gate activations `i, f, g, o`
/// (`[batch, steps, 4 * hidden]`) and cell states `c_1 .. c_T` (`[batch, steps, hidden]`).
#[derive(Debug)]
pub(crate) struct Activations {
    gates: FloatTensor<Cube>,
    cells: FloatTensor<Cube>,
}

impl CustomOp<Cube, 4> for Recurrence {
    type Saved = Activations;

    fn forward(
        &self,
        [projected, weight, h0, c0]: &[FloatTensor<Cube>; 4],
    ) -> (FloatTensor<Cube>, Activations) {
        let Recurrence {
            batch,
            steps,
            hidden,
        } = *self;
        let [output, gates, cells] = Cube::recurrence_forward(
            GpuRecurrence::active(),
            Self::shaped(projected, [batch, steps, 4 * hidden]),
            Self::shaped(weight, [4 * hidden, hidden]),
            Self::shaped(h0, [batch, hidden]),
            Self::shaped(c0, [batch, hidden]),
        );
        (output, Activations { gates, cells })
    }

    fn backward(
        &self,
        [_, weight, h0, c0]: &[FloatTensor<Cube>; 4],
        output: &FloatTensor<Cube>,
        saved: &Activations,
        d_output: FloatTensor<Cube>,
    ) -> [FloatTensor<Cube>; 4] {
        let Recurrence {
            batch,
            steps,
            hidden,
        } = *self;
        let [d_projected, d_h0, d_c0] = Cube::recurrence_backward(
            GpuRecurrence::active(),
            Self::shaped(weight, [4 * hidden, hidden]),
            saved.gates.clone(),
            saved.cells.clone(),
            Self::shaped(c0, [batch, hidden]),
            d_output,
        );
        // dW_hh = dA^T H_prev over every (b, t), with H_prev = h_0 .. h_{T-1}.
        let h0 = Tensor::<2>::from_primitive::<Cube>(Self::shaped(h0, [batch, hidden]))
            .unsqueeze_dim::<3>(1);
        let h_prev = if steps == 1 {
            h0
        } else {
            let earlier = Tensor::<1>::from_primitive::<Cube>(output.clone())
                .narrow(0, 0, batch * steps * hidden)
                .reshape([batch, steps, hidden])
                .narrow(1, 0, steps - 1);
            Tensor::cat(vec![h0, earlier], 1)
        };
        let h_prev = h_prev.reshape([batch * steps, hidden]);
        let d_a = Tensor::<3>::from_primitive::<Cube>(d_projected.clone())
            .reshape([batch * steps, 4 * hidden]);
        let d_weight = d_a
            .transpose()
            .matmul(h_prev)
            .try_into_primitive::<Cube>()
            .unwrap_or_else(|_| unreachable!("made on the same backend"));
        [d_projected, d_weight, d_h0, d_c0].map(Self::flat)
    }
}

/// On a remote server's GPU devices, the recurrence clients send as the CPU op: the same
/// settings, and the same buffers kept for the backward (gates and cells, flat).
#[cfg(feature = "remote")]
impl crate::remote::ServedOp<Cube, 4> for Recurrence {
    type Sent = crate::cpu::recurrence::Recurrence;

    fn served(sent: Self::Sent) -> Self {
        let [batch, steps, hidden] = sent.sizes();
        Recurrence {
            batch,
            steps,
            hidden,
        }
    }

    fn saved_buffers(saved: Activations) -> Vec<FloatTensor<Cube>> {
        vec![Self::flat(saved.gates), Self::flat(saved.cells)]
    }

    fn saved_from(&self, buffers: Vec<FloatTensor<Cube>>) -> Activations {
        let Recurrence {
            batch,
            steps,
            hidden,
        } = *self;
        let [gates, cells] = <[_; 2]>::try_from(buffers).expect("gates and cells");
        Activations {
            gates: Self::shaped(&gates, [batch, steps, 4 * hidden]),
            cells: Self::shaped(&cells, [batch, steps, hidden]),
        }
    }
}
