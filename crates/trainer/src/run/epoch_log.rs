//! `metrics.csv` and `curves.svg`: the loss of every epoch, written as each epoch ends.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::run::curves;
use crate::run::metrics_csv::{self, HEADER};

/// Appends each finished epoch's mean train and validation loss to `metrics.csv`, and draws
/// `curves.svg` from it; the training loop calls it after every epoch's validation.
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
    pub fn record(
        &self,
        epoch: usize,
        train: Option<f64>,
        valid: Option<f64>,
    ) -> std::io::Result<()> {
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
        char_lstm::write_atomic(&self.path, text.as_bytes()).map_err(std::io::Error::other)?;
        let rows = metrics_csv::read(&self.path).map_err(std::io::Error::other)?;
        let svg = curves::svg(&rows).map_err(std::io::Error::other)?;
        char_lstm::write_atomic(&self.path.with_file_name("curves.svg"), svg.as_bytes())
            .map_err(std::io::Error::other)
    }
}
