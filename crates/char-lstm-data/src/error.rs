//! The errors of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading text or cutting windows.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error(transparent)]
    File(#[from] char_lstm::FileError),
    /// The path names a directory where a text file was expected.
    #[error("{}: is a directory, expected a UTF-8 text file", path.display())]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The file is not valid UTF-8.
    #[error("{}: invalid UTF-8 at byte offset {offset}, expected a UTF-8 text file", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The byte offset of the first invalid byte.
        offset: usize,
    },
    /// The file is empty.
    #[error("{}: the file is empty, expected some text", path.display())]
    EmptyText {
        /// The file.
        path: PathBuf,
    },
    /// The text's characters make no vocabulary, or it has one the run's lacks.
    #[error(transparent)]
    Vocab(#[from] char_lstm::VocabError),
    /// A text too short for even one window.
    #[error(
        "the {part} text has {len} characters, too short for one window of seq_len {seq_len} (needs at least {needed})"
    )]
    TooShort {
        /// Which part of the text: "training" or "validation".
        part: &'static str,
        /// The number of characters it has.
        len: usize,
        /// The window length.
        seq_len: usize,
        /// The number of characters one window needs.
        needed: usize,
    },
}
