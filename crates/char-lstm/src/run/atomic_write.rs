//! Crash-safe file writes: the one way every run file is written.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What the operating system said (not a `source`, so that `{:#}` prints it once).
    pub error: std::io::Error,
}

impl FileError {
    /// `error` while reading or writing `path`.
    pub fn new(path: &Path, error: std::io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)
    })
}

/// Writes `path` so that a crash leaves either the old file or the new one, never a torn one:
/// `write` fills a temporary file in the same directory (hidden, with `path`'s extension, as
/// writers such as Burn's burnpack want), which is synced and then renamed over `path`. A
/// `write` that creates no file leaves `path` alone. On failure the temporary file is removed
/// and `path` is as it was.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = dir.join(format!(".{stem}.tmp-{}{extension}", std::process::id()));
    let result = (|| {
        write(&tmp)?;
        if !tmp.exists() {
            return Ok(());
        }
        // Writers that make their file through a temporary of their own leave it private;
        // every run file gets the mode a new file gets here.
        std::fs::set_permissions(&tmp, new_file_permissions(dir)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|error| FileError::new(path, error))
}

/// The permissions a file created in `dir` gets (the process's umask applied), found once.
fn new_file_permissions(dir: &Path) -> std::io::Result<std::fs::Permissions> {
    static PERMISSIONS: std::sync::OnceLock<std::fs::Permissions> = std::sync::OnceLock::new();
    if let Some(permissions) = PERMISSIONS.get() {
        return Ok(permissions.clone());
    }
    let probe = dir.join(format!(".permissions-{}", std::process::id()));
    let permissions = std::fs::File::create(&probe)?.metadata()?.permissions();
    std::fs::remove_file(&probe)?;
    Ok(PERMISSIONS.get_or_init(|| permissions).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("a.txt") && err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = Path::new("/nonexistent-dir-for-test/a.txt");
        let err = write_atomic(missing, b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir-for-test/a.txt"));
    }
}
