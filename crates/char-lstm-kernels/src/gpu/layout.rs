//! How the recurrence's work is laid out on the GPU, chosen once per process.
//!
//! Per step (the default) spreads every step over the whole GPU, one launch per layer and
//! step. Per row is the earlier layout (one cube per batch row for the whole sequence, one
//! launch per layer), kept so that `scripts/gpu-bench.sh` times both on the same GPU:
//! `CHAR_LSTM_GPU_RECURRENCE=per-row` selects it.

use std::sync::OnceLock;

/// The environment variable that picks the layout.
pub const GPU_RECURRENCE_ENV: &str = "CHAR_LSTM_GPU_RECURRENCE";

/// A layout of the GPU recurrence kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuRecurrence {
    /// One launch per layer and step: each cube owns the four gates of a few hidden units for
    /// a block of batch rows.
    PerStep,
    /// One launch per layer: one cube per batch row runs the whole time loop.
    PerRow,
}

/// A name `CHAR_LSTM_GPU_RECURRENCE` does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{GPU_RECURRENCE_ENV}={0:?}: expected per-step or per-row")]
pub struct UnknownGpuRecurrence(String);

impl GpuRecurrence {
    /// The name `CHAR_LSTM_GPU_RECURRENCE` takes and `bench` prints.
    pub fn name(self) -> &'static str {
        match self {
            GpuRecurrence::PerStep => "per-step",
            GpuRecurrence::PerRow => "per-row",
        }
    }

    /// The layout `CHAR_LSTM_GPU_RECURRENCE` asks for; per step when it is unset.
    pub fn from_env() -> Result<Self, UnknownGpuRecurrence> {
        match std::env::var(GPU_RECURRENCE_ENV) {
            Ok(name) if !name.trim().is_empty() => [Self::PerStep, Self::PerRow]
                .into_iter()
                .find(|layout| layout.name() == name.trim())
                .ok_or(UnknownGpuRecurrence(name)),
            _ => Ok(Self::PerStep),
        }
    }

    /// The layout the kernels run: [`GpuRecurrence::from_env`] as first read (per step, with
    /// a warning on stderr, when the variable names none; callers that want that as an error
    /// call `from_env` first).
    pub fn active() -> Self {
        static ACTIVE: OnceLock<GpuRecurrence> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            Self::from_env().unwrap_or_else(|e| {
                eprintln!("warning: {e}; using per-step");
                Self::PerStep
            })
        })
    }
}
