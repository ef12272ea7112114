//! The GPU kernels, on Burn's CubeCL backend (wgpu; cuda where built).

pub(crate) mod adam;
mod cube_backend;
mod fusion;
mod kernels;
pub(crate) mod launches;
pub(crate) mod layout;
pub(crate) mod recurrence;
