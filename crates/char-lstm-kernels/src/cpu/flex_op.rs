//! Ops on flat `f32` buffers, run on Burn's flex CPU backend through [`crate::custom_op`].

use std::borrow::Cow;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};

use crate::cpu::op_times;
use crate::custom_op::{self, CustomOp, op_backend};

op_backend!(Flex);

/// An op on flat `f32` buffers.
pub(crate) trait FlexOp<const N: usize>:
    Send + Sync + std::fmt::Debug + Sized + 'static
{
    /// The op's name, in the ids of its custom operations (see `crate::remote`) and in
    /// [`crate::time_cpu_ops`]'s timings.
    const NAME: &'static str;

    /// What the backward needs from the forward besides the inputs and the output.
    type Saved: Send + Sync + 'static;

    /// The output, and what the backward needs.
    fn forward(&self, inputs: [&[f32]; N]) -> (Vec<f32>, Self::Saved);

    /// The gradient of every input, from the gradient of the output.
    fn backward(
        &self,
        inputs: [&[f32]; N],
        output: &[f32],
        saved: &Self::Saved,
        d_output: &[f32],
    ) -> [Vec<f32>; N];
}

impl<O: FlexOp<N>, const N: usize> CustomOp<Flex, N> for O {
    type Saved = O::Saved;

    fn forward(&self, inputs: &[FlexTensor; N]) -> (FlexTensor, O::Saved) {
        op_times::timed(O::NAME, "forward", || {
            let values = inputs.each_ref().map(values);
            let (output, saved) = FlexOp::forward(self, values.each_ref().map(|v| v.as_ref()));
            (flat(output), saved)
        })
    }

    fn backward(
        &self,
        inputs: &[FlexTensor; N],
        output: &FlexTensor,
        saved: &O::Saved,
        d_output: FlexTensor,
    ) -> [FlexTensor; N] {
        op_times::timed(O::NAME, "backward", || {
            let inputs = inputs.each_ref().map(values);
            FlexOp::backward(
                self,
                inputs.each_ref().map(|v| v.as_ref()),
                &values(output),
                saved,
                &values(&d_output),
            )
            .map(flat)
        })
    }
}

/// A [`FlexOp`] that the flex devices of a Burn remote server run for its clients
/// (`crate::remote`): rebuilt there from its settings, with what its backward needs kept there
/// as buffers.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) trait HostedOp<const N: usize>: FlexOp<N> + Clone {
    /// What the server needs besides the inputs to rebuild the op.
    fn settings(&self) -> Vec<u64>;

    /// The op from its [`HostedOp::settings`].
    fn from_settings(settings: &[u64]) -> Self;

    /// The lengths of the output, then of each buffer the backward needs, from the inputs'.
    fn output_lens(&self, input_lens: [usize; N]) -> Vec<usize>;

    /// What the backward needs, as buffers.
    fn saved_buffers(saved: Self::Saved) -> Vec<Vec<f32>>;

    /// What the backward needs, from its buffers.
    fn saved_from(buffers: Vec<Vec<f32>>) -> Self::Saved;
}

/// Runs `op` on flat tensors that live on flex, or on a remote server that hosts it (with or
/// without autodiff, without gradient checkpointing); `None` anywhere else.
pub(crate) fn run<const N: usize, O: HostedOp<N>>(
    op: O,
    inputs: [Tensor<1>; N],
) -> Option<Tensor<1>> {
    #[cfg(feature = "remote")]
    if crate::remote::hosts(&inputs[0], O::NAME) {
        return crate::remote::run(op, inputs);
    }
    custom_op::run::<Flex, O, N>(op, inputs)
}

/// `tensor` as one dimension, for [`run`].
pub(crate) fn flatten<const D: usize>(tensor: &Tensor<D>) -> Tensor<1> {
    tensor.clone().reshape([tensor.shape().num_elements()])
}

/// Whether [`run`] runs op `name` on `tensor`: it lives on flex (with or without autodiff), or
/// on a remote server that hosts the op.
#[cfg_attr(not(feature = "remote"), allow(unused_variables))]
pub(crate) fn runs_op<const D: usize>(tensor: &Tensor<D>, name: &str) -> bool {
    #[cfg(feature = "remote")]
    if crate::remote::hosts(tensor, name) {
        return true;
    }
    let tensor = flatten(tensor);
    if tensor.device().is_autodiff() {
        <Flex as custom_op::OpBackend>::tracked(tensor.autodiff()).is_some()
    } else {
        <Flex as custom_op::OpBackend>::plain(tensor).is_some()
    }
}

/// A flat float tensor on flex.
pub(crate) fn flat(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    FlexTensor::from_data(TensorData::new(values, [len]))
}

/// A contiguous f32 view of a flex tensor, copying only when its layout needs it.
pub(crate) fn values(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("an f32 tensor")
                .to_vec(),
        ),
    }
}
