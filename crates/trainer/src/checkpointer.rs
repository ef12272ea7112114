//! Crash-safe checkpoints: burn-train's file layout (`checkpoint/<name>-<epoch>.bpk`), each
//! written to a temporary file in the same directory, synced, and renamed into place, so a crash
//! or a full disk leaves the previous checkpoints whole and never a torn one.

use std::path::PathBuf;

use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

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
        let io = CheckpointerError::IOError;
        std::fs::create_dir_all(&self.directory).map_err(io)?;
        // Starts with a dot, so nothing takes it for a checkpoint; ends in .bpk, as burnpack wants.
        let tmp = self
            .directory
            .join(format!(".{}-{epoch}.tmp.bpk", self.name));
        let result = record.save(tmp.clone()).and_then(|()| {
            if !tmp.exists() {
                // A stateless record writes nothing.
                return Ok(());
            }
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            std::fs::rename(&tmp, self.path(epoch)).map_err(io)?;
            std::fs::File::open(&self.directory)
                .and_then(|d| d.sync_all())
                .map_err(io)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
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
