//! The GPU kernels, on Burn's CubeCL backend (wgpu; cuda where built).

pub(crate) mod adam;
mod cube_backend;
mod fusion;
mod kernels;
pub(crate) mod launches;
pub(crate) mod layout;
pub(crate) mod recurrence;

use burn::tensor::{DType, Tensor};

/// Whether `tensor` is `f32` on Burn's CubeCL backend (a GPU), without autodiff.
pub(crate) fn on_gpu<const D: usize>(tensor: &Tensor<D>) -> bool {
    use burn::backend::TensorMetadata;
    tensor
        .clone()
        .try_into_primitive::<burn_cubecl::Cube>()
        .is_ok_and(|t| t.dtype() == DType::F32)
}
