//! The GPU kernels, on Burn's CubeCL backend (wgpu; cuda where built).

mod fusion;
mod kernels;
pub(crate) mod launches;
pub(crate) mod recurrence;
