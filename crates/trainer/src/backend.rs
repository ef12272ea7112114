//! Choosing the device a command runs on.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// A compute backend this program can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (the default).
    Flex,
    /// Burn's ndarray CPU backend (deprecated upstream; kept for comparison, built with
    /// `--features ndarray`).
    Ndarray,
    /// wgpu: Vulkan, Metal or DirectX GPUs (on Linux without a GPU, Mesa's lavapipe).
    Wgpu,
    /// NVIDIA CUDA (build with `--features cuda`).
    Cuda,
}

impl BackendKind {
    /// The name Burn's `BURN_DEVICE` gives this backend.
    pub fn burn_device(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether it runs on a GPU through CubeCL, launching kernels.
    pub fn is_gpu(self) -> bool {
        matches!(self, BackendKind::Wgpu | BackendKind::Cuda)
    }

    /// The device to compute on, without autodiff.
    ///
    /// Asking for a backend that this build lacks, or that the machine cannot run, is an
    /// error that says how to get it.
    pub fn device(self) -> Result<Device> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            BackendKind::Ndarray => ndarray_device(),
            BackendKind::Wgpu => wgpu_device(),
            BackendKind::Cuda => cuda_device(),
        }
    }
}

/// Deprecated upstream in favour of flex; offered for comparison while it exists.
#[cfg(feature = "ndarray")]
#[allow(deprecated)]
fn ndarray_device() -> Result<Device> {
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device> {
    bail!(
        "--backend ndarray: this build has no ndarray support; rebuild with `cargo build --release -p trainer --features ndarray`; available: flex, wgpu"
    )
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    use burn::tensor::{DeviceKind, Tensor};
    // wgpu panics when no adapter exists; turn that into an error.
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let _ = Tensor::<1>::zeros([1], &device).into_data();
        device
    });
    probe.map_err(|_| {
        anyhow::anyhow!(
            "--backend wgpu: no GPU adapter found (on Linux install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the CPU's lavapipe); available here: flex"
        )
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    bail!(
        "--backend wgpu: this build has no wgpu support; rebuild with `--features wgpu`; available: flex"
    )
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    use burn::tensor::Tensor;
    let probe = std::panic::catch_unwind(|| {
        let device = Device::cuda(0);
        let _ = Tensor::<1>::zeros([1], &device).into_data();
        device
    });
    probe.map_err(|_| {
        anyhow::anyhow!(
            "--backend cuda: no CUDA device or driver found on this machine; available: flex, wgpu"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!(
        "--backend cuda: this build has no CUDA support; rebuild with `cargo build --release -p trainer --features cuda` (its build downloads an LLVM bundle, so it needs internet); available: flex, wgpu"
    )
}
