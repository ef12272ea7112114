//! Ops with their own forward and backward on Burn's flex CPU backend, with or without autodiff.
//!
//! An op sees its inputs and output as flat `f32` slices; callers flatten tensors before and
//! reshape after, so one adapter serves ops of every rank.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

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

/// `tensor` as one dimension, for [`run`].
pub(crate) fn flatten<const D: usize>(tensor: &Tensor<D>) -> Tensor<1> {
    tensor.clone().reshape([tensor.shape().num_elements()])
}

/// Whether `tensor` lives on flex, with or without autodiff: where [`run`] runs ops.
pub(crate) fn lives_on_flex<const D: usize>(tensor: &Tensor<D>) -> bool {
    let tensor = tensor.clone();
    if tensor.device().is_autodiff() {
        tensor
            .autodiff()
            .try_into_primitive::<Autodiff<Flex>>()
            .is_ok()
    } else {
        tensor.try_into_primitive::<Flex>().is_ok()
    }
}

/// Runs `op` on flat tensors that live on flex (with or without autodiff, without gradient
/// checkpointing); `None` on any other backend.
pub(crate) fn run<const N: usize, O: FlexOp<N>>(
    op: O,
    inputs: [Tensor<1>; N],
) -> Option<Tensor<1>> {
    if inputs[0].device().is_autodiff() {
        let inputs = inputs.map(|t| t.autodiff().try_into_primitive::<Autodiff<Flex>>().ok());
        if inputs.iter().any(Option::is_none) {
            return None;
        }
        let inputs = inputs.map(|t| t.expect("checked above"));
        let prep =
            Node::<O>(PhantomData).prepare::<NoCheckpointing>(inputs.each_ref().map(|t| t.node()));
        let primitives = inputs.each_ref().map(|t| t.primitive().clone());
        let out = match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, saved) = forward(&op, &primitives);
                let cache = Cache {
                    op,
                    inputs: primitives,
                    output: output.clone(),
                    saved,
                };
                prep.finish(Arc::new(cache), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&op, &primitives).0),
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    } else {
        let inputs = inputs.map(|t| t.try_into_primitive::<Flex>().ok());
        if inputs.iter().any(Option::is_none) {
            return None;
        }
        let inputs = inputs.map(|t| t.expect("checked above"));
        Some(Tensor::from_primitive::<Flex>(forward(&op, &inputs).0))
    }
}

fn forward<const N: usize, O: FlexOp<N>>(
    op: &O,
    inputs: &[FlexTensor; N],
) -> (FlexTensor, O::Saved) {
    let values = inputs.each_ref().map(values);
    let (output, saved) = op.forward(values.each_ref().map(|v| v.as_ref()));
    (flat(output), saved)
}

/// The sum of the squares of the values of `tensor`, in `f64` and over every core, when it
/// lives on flex (without autodiff); `None` elsewhere. The same sum for the same values every
/// time: each chunk's partial sum is added in order.
pub(crate) fn sum_of_squares<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    let primitive = tensor.clone().try_into_primitive::<Flex>().ok()?;
    let partial: Vec<f64> = values(&primitive)
        .par_chunks(1 << 14)
        .map(chunk_sum_of_squares)
        .collect();
    Some(partial.iter().sum())
}

widened! {
    /// The sum of the squares of `values` in `f64`, over eight running sums (one chain of
    /// dependent additions would not vectorize).
    fn chunk_sum_of_squares(values: &[f32]) -> f64 {
        let mut sums = [0.0f64; 8];
        let blocks = values.chunks_exact(8);
        let rest: f64 = blocks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        for block in blocks {
            for (sum, &x) in sums.iter_mut().zip(block) {
                *sum += f64::from(x) * f64::from(x);
            }
        }
        sums.iter().sum::<f64>() + rest
    }
}

/// A flat float tensor on flex.
fn flat(values: Vec<f32>) -> FlexTensor {
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

/// What the autodiff node keeps.
struct Cache<O: FlexOp<N>, const N: usize> {
    op: O,
    inputs: [FlexTensor; N],
    output: FlexTensor,
    saved: O::Saved,
}

impl<O: FlexOp<N>, const N: usize> std::fmt::Debug for Cache<O, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({:?})", self.op)
    }
}

/// The autodiff node of a [`FlexOp`].
#[derive(Debug)]
struct Node<O>(PhantomData<fn() -> O>);

impl<O: FlexOp<N>, const N: usize> Backward<Flex, N> for Node<O> {
    type State = Arc<Cache<O, N>>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let d_output = grads.consume::<Flex>(&ops.node);
        let cache = ops.state;
        let inputs = cache.inputs.each_ref().map(values);
        let gradients = cache.op.backward(
            inputs.each_ref().map(|v| v.as_ref()),
            &values(&cache.output),
            &cache.saved,
            &values(&d_output),
        );
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flat(gradient));
            }
        }
    }
}
