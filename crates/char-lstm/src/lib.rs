#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod batch;
mod fused;
mod network;
mod run;
mod text;
#[cfg(feature = "train")]
pub mod train;

#[cfg(test)]
mod test_support;

pub use batch::SequenceBatch;
pub use fused::on_decoder_threads;
pub use network::cell::{LstmCell, LstmCellConfig};
pub use network::language_model::{LstmLanguageModel, LstmLanguageModelConfig, ModelConfigError};
pub use network::lstm::{Lstm, LstmConfig, LstmImplementation};
pub use network::state::LstmState;
pub use run::atomic_write::{FileError, write_atomic, write_atomic_with};
pub use run::trained_model::{
    CONFIG_FILE, LoadError, TrainedModel, VOCAB_FILE, WEIGHTS_FILE, load_model_config,
};
pub use text::evaluation::{
    Evaluation, evaluate_ensemble_stream, evaluate_ensemble_windows, evaluate_stream,
    evaluate_windows,
};
pub use text::generation::{
    CharStream, GenerationConfig, GenerationError, TokenGenerator, generate,
};
pub use text::sampling::{Sampler, SamplingConfig, SamplingError};
pub use text::vocab::{CharVocab, VocabError};

/// The GPU kernels hosted by a Burn remote server's GPU devices (with `gpu` and `remote`).
#[cfg(all(feature = "gpu", feature = "remote"))]
pub use char_lstm_kernels::host_gpu_ops;
/// The fast kernels' instruction-set paths (with the `kernels` feature).
#[cfg(feature = "kernels")]
pub use char_lstm_kernels::simd;
/// The layout of the GPU recurrence kernels (with the `gpu` feature).
#[cfg(feature = "gpu")]
pub use char_lstm_kernels::{GPU_RECURRENCE_ENV, GpuRecurrence, UnknownGpuRecurrence};
/// Counts and times the GPU kernels some work launches (with the `gpu` feature).
#[cfg(feature = "gpu")]
pub use char_lstm_kernels::{KernelTime, count_launches, time_launches};
/// Times the fused CPU ops of some work, such as a training step (with the `kernels` feature).
#[cfg(feature = "kernels")]
pub use char_lstm_kernels::{OpTime, time_cpu_ops};
/// The fused CPU ops hosted by a Burn remote server's flex devices for `--backend remote` clients,
/// and the answer of a server of another backend that hosts none (with the `remote` feature).
#[cfg(feature = "remote")]
pub use char_lstm_kernels::{host_fused_ops, host_no_fused_ops};
