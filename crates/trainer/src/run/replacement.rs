//! What a new run does to the directory it trains in, until it has a checkpoint to show: a run
//! that `--force` replaces is moved aside into `<run>/.previous-run/` rather than deleted, and
//! the files of a new run that fails before its first checkpoint are removed again, so a
//! failed command leaves the directory as it found it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::run_dir::{LOCK_FILE, RunDir};

/// Where a replaced run waits.
const ASIDE: &str = ".previous-run";

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

/// Moves every entry of `run` but the lock into `run/.previous-run`.
fn set_aside(run: &Path) -> std::io::Result<PathBuf> {
    let aside = run.join(ASIDE);
    std::fs::create_dir(&aside)?;
    for entry in std::fs::read_dir(run)? {
        let name = entry?.file_name();
        if name != LOCK_FILE && name != ASIDE {
            std::fs::rename(run.join(&name), aside.join(&name))?;
        }
    }
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
