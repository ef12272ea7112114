//! The part of `trainer bench` that times one LSTM layer's recurrence alone, without the
//! input projection and the rest of the model: the op the fused kernels replace.

use burn::tensor::{Device, Distribution, Tensor};
use char_lstm::{LstmConfig, LstmImplementation};
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::commands::bench::{median_step_time, round};

/// Median times of one layer's recurrence over one batch of sequences, with autodiff.
#[derive(Debug, Serialize)]
pub struct RecurrenceTimes {
    /// The forward, recording for the backward, in ms.
    pub forward_ms: f64,
    /// The backward alone (forward and backward, less the forward), in ms.
    pub backward_ms: f64,
}

/// Times a layer of `hidden` units over `[batch, seq_len, 4 * hidden]` random gate inputs on
/// `device` (an autodiff device), `--warmup` untimed and `--steps` timed rounds each.
pub fn time_recurrence(
    args: &BenchArgs,
    [batch, seq_len, hidden]: [usize; 3],
    implementation: LstmImplementation,
    device: &Device,
) -> RecurrenceTimes {
    let lstm = LstmConfig::new(hidden, hidden)
        .init(device)
        .with_implementation(implementation);
    let projected = Tensor::<3>::random(
        [batch, seq_len, 4 * hidden],
        Distribution::Uniform(-1.0, 1.0),
        device,
    )
    .require_grad();
    let forward = || lstm.forward_projected(projected.clone(), None).0;
    let forward_time = median_step_time(args, || {
        let _ = forward().sum().into_scalar::<f32>();
    });
    let both_time = median_step_time(args, || {
        let grads = forward().sum().backward();
        let d_projected = projected.grad(&grads).expect("the input takes part");
        let _ = d_projected.sum().into_scalar::<f32>();
    });
    RecurrenceTimes {
        forward_ms: round(forward_time.as_secs_f64() * 1e3, 3),
        backward_ms: round(
            both_time.saturating_sub(forward_time).as_secs_f64() * 1e3,
            3,
        ),
    }
}
