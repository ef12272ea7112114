//! Loading a training text from disk.

use std::path::Path;

use crate::error::DataError;

/// Reads a UTF-8 text file, without the byte-order mark some editors put at its start (it is
/// no character of the text).
///
/// Errors name the file: a missing or unreadable file, a directory, an empty file, or invalid
/// UTF-8 (with the byte offset of the first bad byte).
pub fn load_text(path: &Path) -> Result<String, DataError> {
    if path.is_dir() {
        return Err(DataError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| char_lstm::FileError::new(path, e))?;
    let bytes = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(&bytes)
        .to_vec();
    if bytes.is_empty() {
        return Err(DataError::EmptyText {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| DataError::InvalidUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("text-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_utf8_text() {
        let path = temp_file("ok.txt", "héllo 🙂".as_bytes());
        assert_eq!(load_text(&path).unwrap(), "héllo 🙂");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_text() {
        let path = temp_file("bom.txt", "\u{feff}abc".as_bytes());
        assert_eq!(load_text(&path).unwrap(), "abc");
        let only = temp_file("only-bom.txt", "\u{feff}".as_bytes());
        assert!(matches!(load_text(&only), Err(DataError::EmptyText { .. })));
    }

    #[test]
    fn invalid_utf8_names_file_and_offset() {
        let path = temp_file("bad.txt", b"abc\xffdef");
        let err = load_text(&path).unwrap_err();
        assert!(matches!(err, DataError::InvalidUtf8 { offset: 3, .. }));
        assert!(err.to_string().contains("bad.txt"), "{err}");
    }

    #[test]
    fn empty_missing_and_directory_are_errors() {
        let empty = temp_file("empty.txt", b"");
        assert!(matches!(
            load_text(&empty),
            Err(DataError::EmptyText { .. })
        ));
        let missing = empty.with_file_name("missing.txt");
        assert!(matches!(load_text(&missing), Err(DataError::File(_))));
        let dir = empty.parent().unwrap();
        assert!(matches!(load_text(dir), Err(DataError::IsDirectory { .. })));
    }
}
