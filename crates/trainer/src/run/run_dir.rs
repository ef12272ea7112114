//! The run directory: everything needed to generate from a run or resume it.
//!
//! ```text
//! runs/<name>/
//!   config.toml        the resolved configuration
//!   vocab.json         the character vocabulary
//!   model.bpk          the weights of the best epoch (lowest validation loss; burnpack)
//!   best.json          which epoch that is, and its losses
//!   metrics.csv        train and validation loss of every epoch
//!   curves.svg         the same, drawn
//!   samples.txt        a sample after every epoch
//!   checkpoint/        burn-train's per-epoch model, optimizer and scheduler state
//!     steps/           the same every `training.checkpoint_every` steps and on Ctrl-C
//!   train/ valid/      burn-train's metric logs
//!   train.lock         while a training process runs: its process id
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use char_lstm::{
    CONFIG_FILE, CharVocab, LstmLanguageModel, TrainedModel, VOCAB_FILE, WEIGHTS_FILE,
};

use crate::config::RunConfig;
use crate::run::metrics_csv::EpochRow;

/// The lock file a training process holds in its run directory.
pub const LOCK_FILE: &str = "train.lock";

/// A claim on a run directory; the lock file goes when this does.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The start time of process `pid` (clock ticks since boot, `/proc/<pid>/stat`'s 22nd field),
/// and whether it is a zombie (exited, not reaped yet: it writes nothing any more); `None` when
/// no such process exists or this is not Linux.
fn process_start(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields after it are plain.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.first() == Some(&"Z")))
}

/// Whether the process a lock file names still runs: one with its id and, where the lock
/// records it, its start time (an id the system gave to a new process since does not count).
/// Without `/proc` every process is assumed to run, so a stale lock must be removed by hand.
fn lock_holder_runs(owner: &str) -> Option<u32> {
    let mut parts = owner.split_whitespace();
    let pid: u32 = parts.next()?.parse().ok()?;
    if !Path::new("/proc/self").exists() {
        return Some(pid);
    }
    let (start, zombie) = process_start(pid)?;
    let same = parts
        .next()
        .and_then(|s| s.parse().ok())
        .is_none_or(|s: u64| s == start);
    (same && !zombie).then_some(pid)
}

/// The keys (epochs or steps) of the checkpoints in `directory`, ascending; with `complete`,
/// only those whose model, optimizer and scheduler files all exist.
pub fn checkpoint_keys(directory: &Path, complete: bool) -> Vec<usize> {
    keys_of(directory, &["model", "optim", "scheduler"], complete)
}

/// The keys of the `<kind>-<key>.bpk` files in `directory` of any of `kinds`, ascending; with
/// `complete`, only those with a file of every kind.
pub fn keys_of(directory: &Path, kinds: &[&str], complete: bool) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let file = |kind: &str, key: usize| directory.join(format!("{kind}-{key}.bpk"));
    let mut keys: Vec<usize> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let (kind, key) = name.strip_suffix(".bpk")?.rsplit_once('-')?;
            kinds.contains(&kind).then(|| key.parse().ok())?
        })
        .filter(|&key| !complete || kinds.iter().all(|kind| file(kind, key).exists()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Which weights of the best epoch `model.bpk` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BestKind {
    /// The weights training reached.
    Trained,
    /// Their moving average (`training.ema_decay`).
    Average,
}

impl BestKind {
    /// Its name in `best.json`.
    pub fn name(self) -> &'static str {
        match self {
            BestKind::Trained => "trained",
            BestKind::Average => "average",
        }
    }
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved configuration.
    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// The vocabulary.
    pub fn vocab_path(&self) -> PathBuf {
        self.path.join(VOCAB_FILE)
    }

    /// The final weights.
    pub fn model_path(&self) -> PathBuf {
        self.path.join(WEIGHTS_FILE)
    }

    /// The loss of every epoch, as CSV.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.csv")
    }

    /// The sample drawn after every epoch.
    pub fn samples_path(&self) -> PathBuf {
        self.path.join("samples.txt")
    }

    /// Which epoch's weights `model.bpk` holds.
    pub fn best_path(&self) -> PathBuf {
        self.path.join("best.json")
    }

    /// Records the best epoch in `best.json`, and which of its weights `model.bpk` holds.
    pub fn save_best(&self, best: &EpochRow, kind: BestKind) -> Result<()> {
        let json = serde_json::json!({
            "epoch": best.epoch,
            "valid_loss": best.valid_loss,
            "valid_bpc": best.valid_loss / std::f64::consts::LN_2,
            "train_loss": best.train_loss,
            "weights": kind.name(),
        });
        char_lstm::write_atomic(&self.best_path(), format!("{json:#}\n").as_bytes())?;
        Ok(())
    }

    /// The validation loss `best.json` records, if it is there and readable.
    pub fn best_loss(&self) -> Option<f64> {
        let text = std::fs::read_to_string(self.best_path()).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["valid_loss"].as_f64()
    }

    /// burn-train's checkpoints.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// True when the directory holds a run: its weights, or a complete checkpoint. A run that
    /// failed before its first checkpoint left nothing worth keeping.
    pub fn holds_run(&self) -> bool {
        self.model_path().exists() || self.has_checkpoint()
    }

    /// True when a complete epoch or step checkpoint exists.
    pub fn has_checkpoint(&self) -> bool {
        self.last_checkpoint().is_some() || self.last_step_checkpoint().is_some()
    }

    /// Refuses a directory that holds a run unless `force`.
    pub fn refuse_to_overwrite(&self, force: bool) -> Result<()> {
        if self.holds_run() && !force {
            bail!(
                "{} already holds a run: pass --force to start over (or, to continue training it, --resume)",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Claims the directory for this process until the returned lock is dropped, so that two
    /// training processes never write the same run. A lock left by a process that no longer
    /// runs (killed) is taken over.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.path.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write as _;
                    let pid = std::process::id();
                    let start = process_start(pid).map_or(String::new(), |(s, _)| format!(" {s}"));
                    write!(file, "{pid}{start}")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    match lock_holder_runs(&owner) {
                        Some(pid) => bail!(
                            "{} is in use by training process {pid} (lock file {}); wait for it to finish or stop it",
                            self.path.display(),
                            path.display()
                        ),
                        // The owner is gone (or never wrote its PID): a stale lock.
                        None => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
        bail!(
            "{}: cannot take the lock {}",
            self.path.display(),
            path.display()
        )
    }

    /// The newest epoch with a complete model, optimizer and scheduler checkpoint.
    pub fn last_checkpoint(&self) -> Option<usize> {
        checkpoint_keys(&self.checkpoint_dir(), true)
            .last()
            .copied()
    }

    /// Checkpoints within epochs (`training.checkpoint_every`), keyed by step.
    pub fn step_checkpoint_dir(&self) -> PathBuf {
        self.checkpoint_dir().join("steps")
    }

    /// The newest step with a complete step checkpoint.
    pub fn last_step_checkpoint(&self) -> Option<usize> {
        checkpoint_keys(&self.step_checkpoint_dir(), true)
            .last()
            .copied()
    }

    /// Writes the configuration and vocabulary, atomically.
    pub fn save_setup(&self, config: &RunConfig, vocab: &CharVocab) -> Result<()> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("cannot create run directory {}", self.path.display()))?;
        char_lstm::write_atomic(&self.config_path(), config.to_toml().as_bytes())?;
        vocab.save(&self.vocab_path())?;
        Ok(())
    }

    /// Writes the weights to `model.bpk`, atomically.
    pub fn save_model(&self, model: &LstmLanguageModel) -> Result<()> {
        char_lstm::write_atomic_with(&self.model_path(), |tmp| {
            model
                .clone()
                .save_file(tmp)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })?;
        Ok(())
    }

    /// Loads the configuration and the trained model of a finished run onto `device`.
    pub fn load(&self, device: &Device) -> Result<(RunConfig, TrainedModel)> {
        let trained = TrainedModel::load(&self.path, device)?;
        let config = RunConfig::load(&self.config_path())?;
        Ok((config, trained))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A tiny saved run in a temporary directory, and its weights.
    fn saved_run() -> (tempfile::TempDir, RunDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let mut config = RunConfig::default();
        (config.model.embedding_dim, config.model.hidden_dim) = (3, 4);
        let vocab = CharVocab::from_text("abc").unwrap();
        run.save_setup(&config, &vocab).unwrap();
        let model = {
            let _rng = char_lstm_kernels::testing::device_rng();
            config.model_for(&vocab).unwrap().init(&Device::flex())
        };
        run.save_model(&model).unwrap();
        let weights = std::fs::read(run.model_path()).unwrap();
        (dir, run, weights)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Weights cut short or overwritten anywhere load or fail with an error that names
        /// `model.bpk`; never a panic.
        #[test]
        fn damaged_weights_load_or_fail_cleanly(
            cut in 0.0..=1.0f64,
            damage in proptest::collection::vec((0.0..1.0f64, any::<u8>()), 0..8),
        ) {
            let (_dir, run, mut weights) = saved_run();
            weights.truncate((weights.len() as f64 * cut) as usize);
            let len = weights.len();
            for (at, byte) in damage {
                if len > 0 {
                    weights[((len as f64 * at) as usize).min(len - 1)] = byte;
                }
            }
            std::fs::write(run.model_path(), &weights).unwrap();
            if let Err(e) = run.load(&Device::flex()) {
                prop_assert!(format!("{e:#}").contains("model.bpk"), "{:#}", e);
            }
        }
    }
}
