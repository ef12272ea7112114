//! `model.bpk` kept current: after every epoch whose validation loss is the lowest so far, the
//! weights and `best.json` are written, so a run killed at any point leaves its best weights
//! for `generate` and `eval`.

use anyhow::Result;
use char_lstm::LstmLanguageModel;

use crate::run::metrics_csv::{self, EpochRow};
use crate::run::run_dir::RunDir;

/// The best validation loss so far, and where its weights go.
pub struct BestWeights {
    run: RunDir,
    best: Option<f64>,
}

impl BestWeights {
    /// Picks up from the epochs `metrics.csv` already has (a resumed run), when their weights
    /// are in `model.bpk`.
    pub fn new(run: RunDir) -> Result<Self> {
        let best = if run.model_path().exists() {
            metrics_csv::read(&run.metrics_path())?
                .iter()
                .map(|row| row.valid_loss)
                .filter(|loss| loss.is_finite())
                .min_by(f64::total_cmp)
        } else {
            None
        };
        Ok(Self { run, best })
    }

    /// Saves `model` as the run's weights when `row`'s validation loss is the lowest yet.
    pub fn after_epoch(&mut self, model: &LstmLanguageModel, row: EpochRow) -> Result<()> {
        if !row.valid_loss.is_finite() || self.best.is_some_and(|best| best <= row.valid_loss) {
            return Ok(());
        }
        self.run.save_model(model)?;
        self.run.save_best(&row)?;
        self.best = Some(row.valid_loss);
        Ok(())
    }
}
