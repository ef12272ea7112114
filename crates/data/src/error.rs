//! The errors of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading text, building a vocabulary or cutting windows.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
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
    /// A vocabulary needs at least one character.
    #[error("a vocabulary needs at least one character")]
    EmptyVocab,
    /// A character that the vocabulary does not contain.
    #[error("character {character:?} at position {position} is not in the vocabulary")]
    UnknownChar {
        /// The character.
        character: char,
        /// Its position, in characters from the start of the text.
        position: usize,
    },
    /// A vocabulary file that does not parse.
    #[error("{}: not a vocabulary file: {reason}", path.display())]
    BadVocabFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
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
