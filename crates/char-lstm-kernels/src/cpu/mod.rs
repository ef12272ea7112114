//! The CPU kernels, on Burn's flex backend.

pub(crate) mod adam;
pub(crate) mod buffer;
pub(crate) mod cross_entropy;
pub(crate) mod decoder;
pub(crate) mod dropout;
pub(crate) mod flex_op;
pub(crate) mod gates;
pub(crate) mod grad_norm;
pub(crate) mod matmul;
pub(crate) mod op_times;
pub(crate) mod projection;
pub(crate) mod recurrence;
pub(crate) mod softmax;
mod tile;
