//! Data for the character-level LSTM text generator: text loading, a train/validation split by
//! position, and Burn [`Dataset`](burn::data::dataset::Dataset) and
//! [`Batcher`](burn::data::dataloader::batcher::Batcher) implementations for sliding windows and
//! streams. The vocabulary lives with the model, in `char-lstm`.
#![warn(missing_docs)]

mod batcher;
mod error;
mod order;
mod split;
mod text;
mod window;

pub use batcher::WindowBatcher;
pub use error::DataError;
pub use order::{EpochOrder, EpochShuffled};
pub use split::TextSplit;
pub use text::load_text;
pub use window::{TextWindow, TextWindows};
