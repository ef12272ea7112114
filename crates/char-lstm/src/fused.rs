//! The seam to `char-lstm-kernels`, the one module that calls it: every fused op the model
//! uses, each `None` where the `kernels` feature is off or the tensors live where no kernel
//! runs, so that the model falls back to composed tensor ops.

use burn::nn::{Dropout, Linear};
use burn::tensor::{Int, Tensor};

/// The body for builds with the kernels, and the fallback for builds without.
macro_rules! with_kernels {
    ($kernels:expr, $fallback:expr) => {{
        #[cfg(feature = "kernels")]
        {
            $kernels
        }
        #[cfg(not(feature = "kernels"))]
        {
            $fallback
        }
    }};
}

/// One layer's recurrence as one op: `h_1 .. h_T` (`[batch, seq_len, hidden]`) then `c_T`
/// (`[batch, hidden]`), flat; inputs as [`char_lstm_kernels::fused_recurrence`] takes them, and
/// with zoneout's keep weights or multiplicative integration as
/// [`char_lstm_kernels::fused_variant_recurrence`] does.
pub(crate) fn recurrence(
    projected: &Tensor<3>,
    weight_hh: &Tensor<2>,
    h0: &Tensor<2>,
    c0: &Tensor<2>,
    keep: Option<&Tensor<3>>,
    multiplicative: bool,
) -> Option<Tensor<1>> {
    with_kernels!(
        if keep.is_none() && !multiplicative {
            char_lstm_kernels::fused_recurrence(projected, weight_hh, h0, c0)
        } else {
            char_lstm_kernels::fused_variant_recurrence(
                projected,
                weight_hh,
                h0,
                c0,
                keep,
                multiplicative,
            )
        },
        {
            let _ = (projected, weight_hh, h0, c0, keep, multiplicative);
            None
        }
    )
}

/// `rows W^T + bias` for a weight in PyTorch's `[output, input]` layout, as one op.
pub(crate) fn projection(
    rows: &Tensor<2>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
) -> Option<Tensor<2>> {
    with_kernels!(
        char_lstm_kernels::fused_projection(
            rows,
            weight,
            bias,
            char_lstm_kernels::WeightLayout::OutputMajor
        ),
        {
            let _ = (rows, weight, bias);
            None
        }
    )
}

/// Burn's `Linear` over every position of `[batch, seq_len, d_input]`, as one op.
pub(crate) fn linear(linear: &Linear, input: &Tensor<3>) -> Option<Tensor<3>> {
    with_kernels!(char_lstm_kernels::fused_linear(linear, input), {
        let _ = (linear, input);
        None
    })
}

/// Burn's mean cross-entropy of `logits` (`[rows, vocab]`) against `targets` (`[rows]`), as
/// one op.
pub(crate) fn cross_entropy(logits: &Tensor<2>, targets: &Tensor<1, Int>) -> Option<Tensor<1>> {
    with_kernels!(char_lstm_kernels::fused_cross_entropy(logits, targets), {
        let _ = (logits, targets);
        None
    })
}

/// `dropout.forward(input)`, as one op where a mask is drawn on flex.
pub(crate) fn dropout<const D: usize>(dropout: &Dropout, input: Tensor<D>) -> Tensor<D> {
    with_kernels!(
        char_lstm_kernels::fused_dropout(dropout, input.clone())
            .unwrap_or_else(|| dropout.forward(input)),
        dropout.forward(input)
    )
}

/// The sum of the squares of `tensor`'s values in `f64`, in one parallel pass.
#[cfg(feature = "train")]
pub(crate) fn sum_of_squares<const D: usize>(tensor: &Tensor<D>) -> Option<f64> {
    with_kernels!(char_lstm_kernels::fused_sum_of_squares(tensor), {
        let _ = tensor;
        None
    })
}

/// Adam (AdamW with `weight_decay`) with PyTorch's defaults, one fused pass per parameter on
/// flex.
#[cfg(feature = "train")]
pub(crate) fn adam(weight_decay: f32) -> burn::optim::ModuleOptimizer {
    with_kernels!(
        char_lstm_kernels::FusedAdamConfig::new()
            .with_weight_decay(weight_decay)
            .init(),
        if weight_decay == 0.0 {
            burn::optim::AdamConfig::new().with_epsilon(1e-8).init()
        } else {
            burn::optim::AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(weight_decay)
                .init()
        }
    )
}

/// Runs `generation`, a loop that draws tokens ([`crate::TokenGenerator::next_tokens`],
/// [`crate::CharStream`]), where drawing costs least, and returns what it returns: with the
/// kernels on a worker of their thread pool, so that each of the decoder's steps starts among
/// threads that are awake instead of waking the pool and then this thread again
/// ([`char_lstm_kernels::on_decoder_threads`]); without them, here.
pub fn on_decoder_threads<R: Send>(generation: impl FnOnce() -> R + Send) -> R {
    with_kernels!(
        char_lstm_kernels::on_decoder_threads(generation),
        generation()
    )
}

#[cfg(feature = "kernels")]
pub(crate) use char_lstm_kernels::{Decoder, DecoderWeights, LayerTensors};
