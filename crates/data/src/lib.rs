//! Data for the character-level LSTM text generator: the character vocabulary, text loading,
//! a train/validation split by position, and Burn [`Dataset`](burn::data::dataset::Dataset) and
//! [`Batcher`](burn::data::dataloader::batcher::Batcher) implementations for sliding windows.
#![warn(missing_docs)]

mod batcher;
mod error;
mod fs;
mod order;
mod split;
mod text;
mod vocab;
mod window;

pub use batcher::WindowBatcher;
pub use error::DataError;
pub use fs::write_atomic;
pub use order::{EpochOrder, EpochShuffled};
pub use split::TextSplit;
pub use text::load_text;
pub use vocab::CharVocab;
pub use window::{TextWindow, TextWindows};
