//! The character vocabulary: every distinct Unicode scalar value of a text, sorted.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::run::atomic_write::{FileError, write_atomic};

/// What can go wrong with a vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    /// A vocabulary needs at least one character.
    #[error("a vocabulary needs at least one character")]
    Empty,
    /// A character that the vocabulary does not contain.
    #[error("character {character:?} at position {position} is not in the vocabulary")]
    UnknownChar {
        /// The character.
        character: char,
        /// Its position, in characters from the start of the text.
        position: usize,
    },
    /// A vocabulary file that could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A vocabulary file that does not parse.
    #[error("{}: not a vocabulary file: {reason}", path.display())]
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A character-level vocabulary.
///
/// Token ids are the positions of the characters in code-point order, exactly like the PyTorch
/// tutorial's `sorted(set(text))`, so that models trained there use the same ids here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

/// The on-disk form of a vocabulary: `{"chars": ["\n", " ", "!", ...]}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    chars: Vec<String>,
}

impl CharVocab {
    /// Builds the vocabulary of every distinct character in `text`.
    pub fn from_text(text: &str) -> Result<Self, VocabError> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_sorted_chars(chars)
    }

    /// Builds a vocabulary from characters that are already sorted and distinct.
    fn from_sorted_chars(chars: Vec<char>) -> Result<Self, VocabError> {
        if chars.is_empty() {
            return Err(VocabError::Empty);
        }
        let ids = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32))
            .collect();
        Ok(Self { chars, ids })
    }

    /// The number of characters (the model's vocabulary size).
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Always false: a vocabulary holds at least one character.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of one character, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.ids.get(&c).copied()
    }

    /// The character of one id, if the id is in range.
    pub fn char(&self, id: u32) -> Option<char> {
        self.chars.get(id as usize).copied()
    }

    /// Encodes `text` to ids; the first character outside the vocabulary is an error that names
    /// it and its position (in characters from the start).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, VocabError> {
        text.chars()
            .enumerate()
            .map(|(position, c)| {
                self.id(c).ok_or(VocabError::UnknownChar {
                    character: c,
                    position,
                })
            })
            .collect()
    }

    /// Decodes ids to text.
    ///
    /// # Panics
    /// If an id is outside the vocabulary: ids come from a model of this vocabulary's size.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&id| self.char(id).expect("token id outside the vocabulary"))
            .collect()
    }

    /// The vocabulary as JSON.
    pub fn to_json(&self) -> String {
        let file = VocabFile {
            chars: self.chars.iter().map(|c| c.to_string()).collect(),
        };
        serde_json::to_string_pretty(&file).expect("a vocabulary always serializes")
    }

    /// Parses the JSON form written by [`CharVocab::to_json`]; every entry must be exactly one
    /// character, in strictly increasing order.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let file: VocabFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut chars = Vec::with_capacity(file.chars.len());
        for (i, entry) in file.chars.iter().enumerate() {
            let mut it = entry.chars();
            let (Some(c), None) = (it.next(), it.next()) else {
                return Err(format!(
                    "entry {i} is {entry:?}, expected exactly one character"
                ));
            };
            if chars.last().is_some_and(|&last| last >= c) {
                return Err(format!(
                    "entry {i} ({entry:?}) is out of order or repeated; expected sorted distinct characters"
                ));
            }
            chars.push(c);
        }
        Self::from_sorted_chars(chars).map_err(|e| e.to_string())
    }

    /// Writes the vocabulary as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), VocabError> {
        Ok(write_atomic(path, self.to_json().as_bytes())?)
    }

    /// Reads a vocabulary written by [`CharVocab::save`].
    pub fn load(path: &Path) -> Result<Self, VocabError> {
        let json = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
        Self::from_json(&json).map_err(|reason| VocabError::BadFile {
            path: path.to_path_buf(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_code_point_order_like_sorted_set() {
        let vocab = CharVocab::from_text("hello, world").unwrap();
        assert_eq!(
            vocab.chars(),
            &[' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
        );
        assert_eq!(vocab.encode("hello").unwrap(), vec![4, 3, 5, 5, 6]);
    }

    #[test]
    fn multi_byte_characters_round_trip() {
        let text = "春眠不觉晓，处处闻啼鸟。🙂 héllo 🚀\n";
        let vocab = CharVocab::from_text(text).unwrap();
        let ids = vocab.encode(text).unwrap();
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(vocab.decode(&ids), text);
        let again = CharVocab::from_json(&vocab.to_json()).unwrap();
        assert_eq!(again, vocab);
    }

    #[test]
    fn unknown_character_is_named_with_its_position() {
        let vocab = CharVocab::from_text("abc").unwrap();
        let err = vocab.encode("abxc").unwrap_err();
        assert!(matches!(
            err,
            VocabError::UnknownChar {
                character: 'x',
                position: 2
            }
        ));
        assert!(err.to_string().contains("'x'"), "{err}");
    }

    #[test]
    fn bad_vocab_json_is_rejected() {
        assert!(CharVocab::from_json(r#"{"chars": ["b", "a"]}"#).is_err());
        assert!(CharVocab::from_json(r#"{"chars": ["ab"]}"#).is_err());
        assert!(CharVocab::from_json(r#"{"chars": []}"#).is_err());
        assert!(CharVocab::from_json(r#"{"chars": ["a"], "extra": 1}"#).is_err());
        assert!(CharVocab::from_json("not json").is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("vocab-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vocab.json");
        let vocab = CharVocab::from_text("zyx 🙂").unwrap();
        vocab.save(&path).unwrap();
        assert_eq!(CharVocab::load(&path).unwrap(), vocab);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        /// Any Unicode text encodes and decodes back to itself, one id per character.
        #[test]
        fn any_text_round_trips(text in "\\PC{1,200}") {
            let vocab = CharVocab::from_text(&text).unwrap();
            let ids = vocab.encode(&text).unwrap();
            proptest::prop_assert_eq!(ids.len(), text.chars().count());
            proptest::prop_assert!(ids.iter().all(|&id| (id as usize) < vocab.len()));
            proptest::prop_assert_eq!(vocab.decode(&ids), text);
        }

        /// JSON-like text as a vocabulary is an error or a vocabulary, never a panic.
        #[test]
        fn any_vocab_json_loads_or_fails_cleanly(json in "\\PC{0,80}") {
            let _ = CharVocab::from_json(&json);
            let _ = CharVocab::from_json(&format!("{{\"chars\":{json}}}"));
        }

        /// Arbitrary bytes as a vocabulary file are an error that names the file, or a
        /// vocabulary; never a panic.
        #[test]
        fn any_vocab_file_loads_or_fails_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let dir = std::env::temp_dir().join(format!("vocab-bytes-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("vocab.json");
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = CharVocab::load(&path) {
                proptest::prop_assert!(e.to_string().contains("vocab.json"), "{}", e);
            }
        }
    }
}
