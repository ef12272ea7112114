//! The GPU kernels, on Burn's CubeCL backend (wgpu; cuda where built).

pub(crate) mod adam;
pub(crate) mod cube_backend;
mod fusion;
mod kernels;
pub(crate) mod launches;
pub(crate) mod layout;
pub(crate) mod recurrence;

use burn::backend::TensorMetadata;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Tensor};
use burn_cubecl::Cube;

/// The primitive of `tensor` when it is `f32` on Burn's CubeCL backend (a GPU), without
/// autodiff; `None` elsewhere.
pub(crate) fn gpu_primitive<const D: usize>(tensor: &Tensor<D>) -> Option<FloatTensor<Cube>> {
    let primitive = tensor.clone().try_into_primitive::<Cube>().ok()?;
    (primitive.dtype() == DType::F32).then_some(primitive)
}
