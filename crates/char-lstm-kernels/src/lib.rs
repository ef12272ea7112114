//! Fast kernels for the `char-lstm` model crate: the LSTM recurrence, projections, dropout,
//! Adam and token-by-token decoding as single ops with their own backward, on Burn's flex CPU
//! backend (AVX-512 or AVX2 where the CPU has them, chosen at run time, see [`simd`]) and, with
//! the `gpu` feature, the recurrence (one launch per layer and step) and Adam (one launch per
//! parameter) as GPU kernels on Burn's CubeCL backend, whose models decode on the CPU from
//! their weights read back.
//!
//! This crate knows no model types: it takes and returns Burn tensors and Burn's `nn` modules.
//! Each entry point returns `None` (or falls back to Burn's own op) where its tensors do not
//! live on a backend it has a kernel for, so callers keep a composed path.
#![warn(missing_docs)]

mod cpu;
mod custom_op;
#[cfg(feature = "gpu")]
mod gpu;
#[cfg(feature = "remote")]
mod remote;
pub mod simd;
#[doc(hidden)]
pub mod testing;

use burn::tensor::Tensor;

pub use cpu::adam::{FusedAdam, FusedAdamConfig};
pub use cpu::cross_entropy::fused_cross_entropy;
pub use cpu::decoder::{Decoder, DecoderWeights, LayerTensors, on_decoder_threads};
pub use cpu::dropout::fused_dropout;
pub use cpu::grad_norm::fused_sum_of_squares;
pub use cpu::op_times::{OpTime, time_cpu_ops};
pub use cpu::projection::{WeightLayout, fused_linear, fused_projection};
pub use cpu::softmax::softmax_weights;
#[cfg(feature = "gpu")]
pub use gpu::launches::{KernelTime, count_launches, time_launches};
#[cfg(feature = "gpu")]
pub use gpu::layout::{GPU_RECURRENCE_ENV, GpuRecurrence, UnknownGpuRecurrence};
#[cfg(all(feature = "gpu", feature = "remote"))]
pub use remote::host_gpu_ops;
#[cfg(feature = "remote")]
pub use remote::{host_fused_ops, host_no_fused_ops};

/// One LSTM layer's recurrence over a whole sequence as one op with its own backward, where the
/// tensors live on a backend with a kernel (flex; CubeCL with the `gpu` feature); `None`
/// elsewhere.
///
/// - `projected`: `x W_ih^T + b_ih + b_hh` for every step, `[batch, seq_len, 4 * hidden]`.
/// - `weight_hh`: `[4 * hidden, hidden]`; `h0`, `c0`: `[batch, hidden]`.
///
/// Returns `batch * (seq_len + 1) * hidden` values: `h_1 .. h_T` as `[batch, seq_len, hidden]`,
/// then the final cell state `c_T` as `[batch, hidden]`, so that the hidden states are one
/// contiguous block that later layers read without a copy.
pub fn fused_recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
) -> Option<Tensor<1>> {
    let on_cpu = cpu::recurrence::recurrence(projected, weight_hh, h0, c0);
    #[cfg(feature = "gpu")]
    let on_cpu = on_cpu.or_else(|| gpu::recurrence::recurrence(projected, weight_hh, h0, c0));
    on_cpu
}

/// [`fused_recurrence`]'s variants, on flex only (`None` elsewhere, a GPU and a remote server
/// included).
///
/// - With zoneout (Krueger et al. 2016), `keep`, `[batch, seq_len, 2 * hidden]`, holds for every
///   step how much of the previous cell state (the first `hidden` values) and hidden state (the
///   rest) each element keeps: `c_t = k_c c_{t-1} + (1 - k_c) (f c_{t-1} + i g)` and
///   `h_t = k_h h_{t-1} + (1 - k_h) o tanh(f c_{t-1} + i g)`. In training each weight is 0 or 1
///   (a fresh draw per element and step); at test time, the zoneout probability. The keep
///   weights get no gradient.
/// - With `multiplicative` integration (Wu et al. 2016), the gates' pre-activations at each step
///   are `p + u ⊙ (1 + p)` for the input projection `p` (`projected`) and the recurrent product
///   `u = h_{t-1} W_hh^T`, instead of `p + u`.
pub fn fused_variant_recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    keep: Option<&Tensor<3>>,
    multiplicative: bool,
) -> Option<Tensor<1>> {
    cpu::recurrence::variant_recurrence(projected, weight_hh, h0, c0, keep, multiplicative)
}
