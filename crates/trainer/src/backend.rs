//! Choosing the device a command runs on.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;

use crate::remote;

/// Where a command computes: the backend, and for `--backend remote` the server and its token.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// With `--backend remote`: the `trainer serve` to compute on, as `ws://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// With `--backend remote`: a file holding the server's token (else the environment
    /// variable `CHAR_LSTM_TOKEN`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl DeviceArgs {
    /// The server's URL, where the command computes on `--backend remote`.
    pub fn server(&self) -> Option<&str> {
        self.remote
            .as_deref()
            .filter(|_| self.backend == BackendKind::Remote)
    }

    /// The device to compute on, without autodiff.
    pub fn device(&self) -> Result<Device> {
        Ok(self.devices(1)?.remove(0))
    }

    /// `count` devices to train on, without autodiff: the local backend's
    /// ([`BackendKind::devices`]) or the server's devices `0 .. count`, each connected.
    pub fn devices(&self, count: usize) -> Result<Vec<Device>> {
        match (self.backend, &self.remote) {
            (BackendKind::Remote, Some(url)) => {
                let token = remote::token(self.token_file.as_deref())?;
                remote::devices(url, token, count.max(1))
            }
            (BackendKind::Remote, None) => bail!(
                "--backend remote: name the server with --remote ws://HOST:PORT (one started there with `trainer serve`)"
            ),
            (_, Some(url)) => bail!("--remote {url}: only with --backend remote"),
            (_, None) if self.token_file.is_some() => {
                bail!("--token-file: only with --backend remote")
            }
            (kind, None) => kind.devices(count),
        }
    }
}

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
    /// The devices of a `trainer serve` on another machine (or this one), at `--remote`.
    Remote,
}

impl BackendKind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Remote => "remote",
        }
    }

    /// The name Burn's `BURN_DEVICE` gives this backend; records of a remote run load on the
    /// CPU first.
    pub fn burn_device(self) -> &'static str {
        match self {
            BackendKind::Remote => BackendKind::Flex.name(),
            local => local.name(),
        }
    }

    /// Whether it runs on a GPU through CubeCL, launching kernels.
    pub fn is_gpu(self) -> bool {
        matches!(self, BackendKind::Wgpu | BackendKind::Cuda)
    }

    /// Whether its devices all-reduce gradients with Burn's collective (NCCL), which Burn
    /// 0.22.1 implements on CUDA alone (the other backends panic).
    pub fn all_reduces(self) -> bool {
        self == BackendKind::Cuda
    }

    /// Whether reading a value back waits for the work queued on a device (a GPU, or a
    /// server's device over the network), where on the CPU backends it waits for nothing.
    pub fn reads_wait(self) -> bool {
        !matches!(self, BackendKind::Flex | BackendKind::Ndarray)
    }

    /// This machine's device of this backend, without autodiff.
    ///
    /// Asking for a backend that this build lacks, or that the machine cannot run, is an
    /// error that says how to get it.
    fn device(self) -> Result<Device> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            BackendKind::Ndarray => ndarray_device(),
            BackendKind::Wgpu => wgpu_device(WgpuDevice::Default),
            BackendKind::Cuda => cuda_device(0),
            BackendKind::Remote => bail!(
                "--backend remote: a server serves this machine's own devices (flex, wgpu or cuda)"
            ),
        }
    }

    /// `count` of this machine's devices, without autodiff: [`BackendKind::device`] alone for
    /// one; for more, the CPU backends' one device that many times (each worker thread its own
    /// shard) and the GPU backends' devices `0 .. count` (wgpu's discrete GPUs), each checked.
    pub fn devices(self, count: usize) -> Result<Vec<Device>> {
        if count <= 1 {
            return Ok(vec![self.device()?]);
        }
        (0..count)
            .map(|index| match self {
                BackendKind::Flex | BackendKind::Ndarray | BackendKind::Remote => self.device(),
                BackendKind::Wgpu => wgpu_device(WgpuDevice::Discrete(index)),
                BackendKind::Cuda => cuda_device(index),
            })
            .collect()
    }
}

/// The device `open` makes, once a tensor round trip on it works; `Err` where it panics (as
/// Burn's GPU backends do when the device is missing), without the panic's message on stderr.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
fn probe(open: impl FnOnce() -> Device + std::panic::UnwindSafe) -> Result<Device, ()> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| {
        let device = open();
        let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
        device
    });
    std::panic::set_hook(quiet);
    opened.map_err(|_| ())
}

/// Which wgpu adapter to open.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
enum WgpuDevice {
    /// The one wgpu prefers (a high-power GPU, else lavapipe).
    Default,
    /// The discrete GPU of this index.
    Discrete(usize),
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
fn wgpu_device(which: WgpuDevice) -> Result<Device> {
    use burn::tensor::DeviceKind;
    let kind = match which {
        WgpuDevice::Default => DeviceKind::DefaultDevice,
        WgpuDevice::Discrete(index) => DeviceKind::DiscreteGpu(index),
    };
    // wgpu panics when no adapter exists; turn that into an error.
    probe(|| Device::wgpu(kind)).map_err(|()| match which {
        WgpuDevice::Default => anyhow::anyhow!(
            "--backend wgpu: no GPU adapter found (on Linux install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for the CPU's lavapipe); available here: flex"
        ),
        WgpuDevice::Discrete(index) => anyhow::anyhow!(
            "training.devices: wgpu has no discrete GPU {index} here (devices are discrete GPUs 0 .. training.devices - 1)"
        ),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(_: WgpuDevice) -> Result<Device> {
    bail!(
        "--backend wgpu: this build has no wgpu support; rebuild with `--features wgpu`; available: flex"
    )
}

#[cfg(feature = "cuda")]
fn cuda_device(index: usize) -> Result<Device> {
    probe(|| Device::cuda(index)).map_err(|()| {
        anyhow::anyhow!(
            "--backend cuda: no CUDA device {index} or no driver on this machine; available: flex, wgpu"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_: usize) -> Result<Device> {
    bail!(
        "--backend cuda: this build has no CUDA support; rebuild with `cargo build --release -p trainer --features cuda` (its build downloads an LLVM bundle, so it needs internet); available: flex, wgpu"
    )
}
