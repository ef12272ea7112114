//! `metrics.csv` and `curves.svg`: the loss of every epoch, written as each epoch ends.

use std::fmt::Write as _;
use std::path::PathBuf;

use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};

/// The header of `metrics.csv`; losses are mean nats per character, bpc bits per character.
pub const HEADER: &str = "epoch,train_loss,valid_loss,train_bpc,valid_bpc";

/// Appends each finished epoch's mean train and validation loss to `metrics.csv`.
///
/// It rides on burn-train's early-stopping hook, which runs after every epoch's validation,
/// and never asks to stop.
#[derive(Debug, Clone)]
pub struct EpochLog {
    path: PathBuf,
}

impl EpochLog {
    /// A log that writes to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Rewrites the file with the rows before `epoch` kept (a resumed run redoes later ones)
    /// and a row for `epoch` added.
    fn record(&self, epoch: usize, train: Option<f64>, valid: Option<f64>) -> std::io::Result<()> {
        let existing = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut text = format!("{HEADER}\n");
        for line in existing.lines().skip(1) {
            let row_epoch: Option<usize> = line.split(',').next().and_then(|e| e.parse().ok());
            if row_epoch.is_some_and(|e| e < epoch) {
                text.push_str(line);
                text.push('\n');
            }
        }
        let cell =
            |v: Option<f64>, scale: f64| v.map(|v| format!("{:.6}", v * scale)).unwrap_or_default();
        let bits = 1.0 / std::f64::consts::LN_2;
        let _ = writeln!(
            text,
            "{epoch},{},{},{},{}",
            cell(train, 1.0),
            cell(valid, 1.0),
            cell(train, bits),
            cell(valid, bits)
        );
        data::write_atomic(&self.path, text.as_bytes()).map_err(std::io::Error::other)?;
        let rows = read(&self.path).map_err(std::io::Error::other)?;
        let svg = crate::curves::svg(&rows).map_err(std::io::Error::other)?;
        data::write_atomic(&self.path.with_file_name("curves.svg"), svg.as_bytes())
            .map_err(std::io::Error::other)
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochRow {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss, nats per character (NaN when missing).
    pub train_loss: f64,
    /// Mean validation loss, nats per character (NaN when missing).
    pub valid_loss: f64,
}

/// Reads `metrics.csv`; a missing file has no rows.
pub fn read(path: &std::path::Path) -> anyhow::Result<Vec<EpochRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            let number = |k: usize| {
                cells
                    .get(k)
                    .and_then(|c| c.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            let epoch = cells.first().and_then(|c| c.parse().ok());
            epoch
                .map(|epoch| EpochRow {
                    epoch,
                    train_loss: number(1),
                    valid_loss: number(2),
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("{}: line {}: expected `{HEADER}`", path.display(), i + 2)
                })
        })
        .collect()
}

impl EarlyStoppingStrategy for EpochLog {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        let train = store.find_metric("Loss", epoch, Aggregate::Mean, &Split::Train);
        let valid = store.find_metric("Loss", epoch, Aggregate::Mean, &Split::Valid);
        if let Err(e) = self.record(epoch, train, valid) {
            eprintln!("warning: cannot write {}: {e}", self.path.display());
        }
        false
    }
}
