//! Ops on flat `f32` buffers, run on Burn's flex CPU backend through [`crate::custom_op`].

use std::borrow::Cow;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};

use crate::custom_op::{self, CustomOp, op_backend};

op_backend!(Flex);

/// An op on flat `f32` buffers.
pub(crate) trait FlexOp<const N: usize>:
    Send + Sync + std::fmt::Debug + Sized + 'static
{
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
        let values = inputs.each_ref().map(values);
        let (output, saved) = FlexOp::forward(self, values.each_ref().map(|v| v.as_ref()));
        (flat(output), saved)
    }

    fn backward(
        &self,
        inputs: &[FlexTensor; N],
        output: &FlexTensor,
        saved: &O::Saved,
        d_output: FlexTensor,
    ) -> [FlexTensor; N] {
        let inputs = inputs.each_ref().map(values);
        FlexOp::backward(
            self,
            inputs.each_ref().map(|v| v.as_ref()),
            &values(output),
            saved,
            &values(&d_output),
        )
        .map(flat)
    }
}

/// Runs `op` on flat tensors that live on flex (with or without autodiff, without gradient
/// checkpointing); `None` on any other backend.
pub(crate) fn run<const N: usize, O: FlexOp<N>>(
    op: O,
    inputs: [Tensor<1>; N],
) -> Option<Tensor<1>> {
    custom_op::run::<Flex, O, N>(op, inputs)
}

/// `tensor` as one dimension, for [`run`].
pub(crate) fn flatten<const D: usize>(tensor: &Tensor<D>) -> Tensor<1> {
    tensor.clone().reshape([tensor.shape().num_elements()])
}

/// Whether `tensor` lives on flex, with or without autodiff: where [`run`] runs ops.
pub(crate) fn lives_on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
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
