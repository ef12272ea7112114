//! Crash-safe checkpoints: burn-train's file layout (`checkpoint/<name>-<epoch>.bpk`), each
//! written atomically (`char_lstm::write_atomic_with`), so a crash or a full disk leaves the
//! previous checkpoints whole and never a torn one.

use std::path::PathBuf;

use burn::train::TrainingError;
use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

/// `error` as burn-train's checkpoint error, which stops training through its interrupter.
pub fn checkpoint_failure(error: &anyhow::Error) -> TrainingError {
    let error = std::io::Error::other(format!("{error:#}"));
    TrainingError::Checkpoint(CheckpointerError::IOError(error))
}

/// Saves each record as `<directory>/<name>-<epoch>.bpk`, atomically.
pub struct AtomicCheckpointer {
    directory: PathBuf,
    name: &'static str,
}

impl AtomicCheckpointer {
    /// Checkpoints named `name` in `directory`.
    pub fn new(directory: PathBuf, name: &'static str) -> Self {
        Self { directory, name }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        self.directory.join(format!("{}-{epoch}.bpk", self.name))
    }
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        std::fs::create_dir_all(&self.directory).map_err(CheckpointerError::IOError)?;
        char_lstm::write_atomic_with(&self.path(epoch), |tmp| {
            record
                .save(tmp.to_path_buf())
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .map_err(|e| CheckpointerError::IOError(std::io::Error::other(e)))
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(epoch)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        R::load(self.path(epoch))
    }
}
