//! What a new run does to the directory it trains in, until it has a checkpoint to show: a run
//! that `--force` replaces is moved aside into `<run>/.previous-run/` rather than deleted, and
//! the files of a new run that fails before its first checkpoint are removed again, so a
//! failed command leaves the directory as it found it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::run_dir::{LOCK_FILE, RunDir};

/// Where a replaced run waits.
const ASIDE: &str = ".previous-run";

/// Where a replaced run is gathered before it is renamed to [`ASIDE`], so that a process
/// killed halfway through the move leaves a name that says so.
const GATHERING: &str = ".previous-run.partial";

/// The files and folders a run writes (the lock aside).
const RUN_ENTRIES: [&str; 10] = [
    "config.toml",
    "vocab.json",
    "model.bpk",
    "best.json",
    "metrics.csv",
    "curves.svg",
    "samples.txt",
    "checkpoint",
    "train",
    "valid",
];

/// A new run's claim on its directory until it has a checkpoint.
#[derive(Debug)]
pub struct Replacement {
    run: PathBuf,
    /// The replaced run, moved aside.
    previous: Option<PathBuf>,
    /// Whether this command created the directory.
    created: bool,
    settled: bool,
}

impl Replacement {
    /// Makes way for a new run in `run`, which has been checked to hold no run, or one that
    /// `force` replaces: that one is moved aside. A directory with a run's files but neither
    /// weights nor a checkpoint (a run that failed before its first one) holds no run.
    pub fn begin(run: &RunDir, force: bool, created: bool) -> Result<Self> {
        let path = run.path().to_path_buf();
        let previous = if run.holds_run() {
            debug_assert!(force, "checked by the caller");
            Some(set_aside(&path).with_context(|| {
                format!(
                    "--force: cannot move the old run in {} aside",
                    path.display()
                )
            })?)
        } else {
            remove_run_files(&path)?;
            None
        };
        Ok(Self {
            run: path,
            previous,
            created,
            settled: false,
        })
    }

    /// The new run has a checkpoint: the replaced run goes for good.
    pub fn commit(&mut self) -> Result<()> {
        if let Some(previous) = self.previous.take() {
            std::fs::remove_dir_all(&previous).with_context(|| {
                format!("cannot remove the replaced run {}", previous.display())
            })?;
        }
        self.settled = true;
        Ok(())
    }

    /// Whether [`Replacement::commit`] has run.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// The new run ended without a checkpoint: its files go, and a replaced run comes back.
    pub fn roll_back(mut self) -> Result<()> {
        remove_run_files(&self.run)?;
        if let Some(previous) = self.previous.take() {
            restore(&previous, &self.run)?;
        }
        self.settled = true;
        Ok(())
    }

    /// Whether this command created the directory (to remove it, empty, after a roll-back).
    pub fn created(&self) -> bool {
        self.created
    }
}

/// A replaced run left aside by a process killed before the new run's first checkpoint comes
/// back; one whose replacement got as far as a checkpoint goes. Says what it did.
pub fn settle_left_behind(run: &RunDir) -> Result<()> {
    let gathering = run.path().join(GATHERING);
    if gathering.is_dir() {
        // Killed while moving the old run aside: nothing of the new run exists yet.
        restore(&gathering, run.path())?;
    }
    let aside = run.path().join(ASIDE);
    if !aside.is_dir() {
        return Ok(());
    }
    if run.has_checkpoint() {
        std::fs::remove_dir_all(&aside)
            .with_context(|| format!("cannot remove the replaced run {}", aside.display()))?;
    } else {
        remove_run_files(run.path())?;
        restore(&aside, run.path())?;
        println!(
            "{}: a --force run stopped before its first checkpoint; the run it was replacing is back",
            run.path().display()
        );
    }
    Ok(())
}

/// Moves every entry of `run` but the lock into `run/.previous-run`, which appears only once
/// it holds them all.
fn set_aside(run: &Path) -> std::io::Result<PathBuf> {
    let gathering = run.join(GATHERING);
    std::fs::create_dir(&gathering)?;
    for entry in std::fs::read_dir(run)? {
        let name = entry?.file_name();
        if name != LOCK_FILE && name != GATHERING {
            std::fs::rename(run.join(&name), gathering.join(&name))?;
        }
    }
    let aside = run.join(ASIDE);
    std::fs::rename(&gathering, &aside)?;
    Ok(aside)
}

/// Moves the entries of `aside` back into `run`, then removes `aside`.
fn restore(aside: &Path, run: &Path) -> Result<()> {
    let back = || -> std::io::Result<()> {
        for entry in std::fs::read_dir(aside)? {
            let name = entry?.file_name();
            std::fs::rename(aside.join(&name), run.join(&name))?;
        }
        std::fs::remove_dir(aside)
    };
    back().with_context(|| {
        format!(
            "cannot move the replaced run back from {} (it is all there)",
            aside.display()
        )
    })
}

/// Removes the files a run writes from `run`.
fn remove_run_files(run: &Path) -> Result<()> {
    for name in RUN_ENTRIES {
        let path = run.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A run whose move aside was cut short, with its checkpoint still in place and its
    /// config already moved, is put back whole, not taken for a replaced run to delete.
    #[test]
    fn a_move_aside_cut_short_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        write(
            &dir.path().join(GATHERING).join("config.toml"),
            "old config",
        );
        write(
            &dir.path().join("checkpoint").join("model-1.mpk"),
            "old checkpoint",
        );
        settle_left_behind(&run).unwrap();
        assert!(!dir.path().join(GATHERING).exists());
        assert!(!dir.path().join(ASIDE).exists());
        let config = std::fs::read_to_string(run.config_path()).unwrap();
        assert_eq!(config, "old config");
        let checkpoint = dir.path().join("checkpoint").join("model-1.mpk");
        assert_eq!(
            std::fs::read_to_string(checkpoint).unwrap(),
            "old checkpoint"
        );
    }

    /// Setting a run aside leaves only the lock and the finished aside folder.
    #[test]
    fn set_aside_moves_everything_but_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("config.toml"), "old config");
        write(&dir.path().join("checkpoint").join("model-1.mpk"), "old");
        write(&dir.path().join(LOCK_FILE), "lock");
        let aside = set_aside(dir.path()).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [ASIDE, LOCK_FILE]);
        assert!(aside.join("checkpoint").join("model-1.mpk").is_file());
    }
}
