#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[macro_use]
mod widened;

mod adam;
mod batch;
mod buffer;
mod cell;
#[cfg(feature = "wgpu")]
mod cube_recurrence;
mod decoder;
mod dropout;
mod evaluation;
mod flex_op;
mod generation;
mod layer;
mod matmul;
mod model;
mod projection;
mod recurrence;
mod sampling;
mod state;
#[cfg(test)]
mod test_support;
mod train;

pub use adam::{FusedAdam, FusedAdamConfig};
pub use batch::SequenceBatch;
pub use cell::{LstmCell, LstmCellConfig};
pub use evaluation::{Evaluation, evaluate_stream, evaluate_windows};
pub use generation::generate;
pub use layer::{Lstm, LstmConfig, LstmImplementation};
pub use model::{LstmLanguageModel, LstmLanguageModelConfig};
pub use sampling::{Sampler, SamplingConfig, SamplingError};
pub use state::LstmState;
pub use train::TrainingOptions;
