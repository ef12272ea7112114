//! Ops with their own forward and backward on one Burn backend, with or without autodiff: the
//! one place where the CPU and GPU ops meet Burn's autodiff graph.
//!
//! An op takes and returns flat (one-dimensional) tensors; callers flatten before and reshape
//! after, so one adapter serves ops of every rank.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::Backend;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::tensor::Tensor;

/// A backend whose tensors the ops here can take out of and put back into Burn's dispatching
/// [`Tensor`], with and without autodiff.
pub(crate) trait OpBackend: Backend {
    /// The primitive of `tensor` when it lives on this backend without autodiff.
    fn plain(tensor: Tensor<1>) -> Option<FloatTensor<Self>>;
    /// The primitive of `tensor` when it lives on this backend with autodiff (and no gradient
    /// checkpointing).
    fn tracked(tensor: Tensor<1>) -> Option<FloatTensor<Autodiff<Self>>>;
    /// A tensor of this backend, without autodiff.
    fn from_plain(primitive: FloatTensor<Self>) -> Tensor<1>;
    /// A tensor of this backend, with autodiff.
    fn from_tracked(primitive: FloatTensor<Autodiff<Self>>) -> Tensor<1>;
}

/// Implements [`OpBackend`] for a concrete backend type.
macro_rules! op_backend {
    ($backend:ty) => {
        impl $crate::custom_op::OpBackend for $backend {
            fn plain(
                tensor: burn::tensor::Tensor<1>,
            ) -> Option<burn::backend::tensor::FloatTensor<Self>> {
                tensor.try_into_primitive::<Self>().ok()
            }

            fn tracked(
                tensor: burn::tensor::Tensor<1>,
            ) -> Option<burn::backend::tensor::FloatTensor<burn::backend::autodiff::Autodiff<Self>>>
            {
                tensor
                    .try_into_primitive::<burn::backend::autodiff::Autodiff<Self>>()
                    .ok()
            }

            fn from_plain(
                primitive: burn::backend::tensor::FloatTensor<Self>,
            ) -> burn::tensor::Tensor<1> {
                burn::tensor::Tensor::from_primitive::<Self>(primitive)
            }

            fn from_tracked(
                primitive: burn::backend::tensor::FloatTensor<
                    burn::backend::autodiff::Autodiff<Self>,
                >,
            ) -> burn::tensor::Tensor<1> {
                burn::tensor::Tensor::from_primitive::<burn::backend::autodiff::Autodiff<Self>>(
                    primitive,
                )
            }
        }
    };
}

pub(crate) use op_backend;

/// An op on `N` flat input tensors of backend `B`, with one flat output.
pub(crate) trait CustomOp<B: Backend, const N: usize>:
    Send + Sync + Debug + Sized + 'static
{
    /// What the backward needs from the forward besides the inputs and the output.
    type Saved: Send + Sync + 'static;

    /// The output, and what the backward needs.
    fn forward(&self, inputs: &[FloatTensor<B>; N]) -> (FloatTensor<B>, Self::Saved);

    /// The gradient of every input, from the gradient of the output.
    fn backward(
        &self,
        inputs: &[FloatTensor<B>; N],
        output: &FloatTensor<B>,
        saved: &Self::Saved,
        d_output: FloatTensor<B>,
    ) -> [FloatTensor<B>; N];
}

/// Runs `op` when every input lives on `B` (with or without autodiff, as the first input
/// says); `None` when one does not, so the caller can fall back to composed ops.
pub(crate) fn run<B: OpBackend, O: CustomOp<B, N>, const N: usize>(
    op: O,
    inputs: [Tensor<1>; N],
) -> Option<Tensor<1>> {
    if !inputs[0].device().is_autodiff() {
        let inputs = all(inputs.map(|t| B::plain(t)))?;
        return Some(B::from_plain(op.forward(&inputs).0));
    }
    let inputs = all(inputs.map(|t| B::tracked(t.autodiff())))?;
    let prep =
        Node::<O>(PhantomData).prepare::<NoCheckpointing>(inputs.each_ref().map(|t| t.node()));
    let primitives = inputs.each_ref().map(|t| t.primitive().clone());
    let output = match prep.compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (output, saved) = op.forward(&primitives);
            let cache = Cache {
                op,
                inputs: primitives,
                output: output.clone(),
                saved,
            };
            prep.finish(Arc::new(cache), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(op.forward(&primitives).0),
    };
    Some(B::from_tracked(output))
}

/// Every value, or `None` if one is missing.
fn all<T, const N: usize>(values: [Option<T>; N]) -> Option<[T; N]> {
    if values.iter().any(Option::is_none) {
        return None;
    }
    Some(values.map(|v| v.expect("checked above")))
}

/// What the autodiff node keeps.
struct Cache<B: Backend, O: CustomOp<B, N>, const N: usize> {
    op: O,
    inputs: [FloatTensor<B>; N],
    output: FloatTensor<B>,
    saved: O::Saved,
}

impl<B: Backend, O: CustomOp<B, N>, const N: usize> Debug for Cache<B, O, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({:?})", self.op)
    }
}

/// The autodiff node of a [`CustomOp`].
#[derive(Debug)]
struct Node<O>(PhantomData<fn() -> O>);

impl<B: Backend, O: CustomOp<B, N>, const N: usize> Backward<B, N> for Node<O> {
    type State = Arc<Cache<B, O, N>>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let d_output = grads.consume::<B>(&ops.node);
        let cache = ops.state;
        let gradients = cache
            .op
            .backward(&cache.inputs, &cache.output, &cache.saved, d_output);
        for (parent, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, gradient);
            }
        }
    }
}
