//! `model.bpk` kept current: after every epoch whose validation loss (of the trained weights,
//! or of their average where that is lower) is the lowest so far, those weights and
//! `best.json` are written, so a run killed at any point leaves its best weights for `generate`
//! and `eval`.

use anyhow::Result;
use char_lstm::LstmLanguageModel;

use crate::run::metrics_csv::{self, EpochRow};
use crate::run::run_dir::{BestKind, RunDir};

/// The best validation loss so far, and where its weights go.
pub struct BestWeights {
    run: RunDir,
    best: Option<f64>,
}

impl BestWeights {
    /// Picks up from the epochs `metrics.csv` and `best.json` already have (a resumed run),
    /// when their weights are in `model.bpk`.
    pub fn new(run: RunDir) -> Result<Self> {
        let best = if run.model_path().exists() {
            metrics_csv::read(&run.metrics_path())?
                .iter()
                .map(|row| row.valid_loss)
                .chain(run.best_loss())
                .filter(|loss| loss.is_finite())
                .min_by(f64::total_cmp)
        } else {
            None
        };
        Ok(Self { run, best })
    }

    /// Saves `model`, or `average` where its validation loss (the second value) is lower, as
    /// the run's weights when that loss is the lowest yet.
    pub fn after_epoch(
        &mut self,
        model: &LstmLanguageModel,
        row: EpochRow,
        average: Option<(&LstmLanguageModel, f64)>,
    ) -> Result<()> {
        let (weights, row, kind) = match average {
            Some((average, loss)) if loss < row.valid_loss || !row.valid_loss.is_finite() => {
                let row = EpochRow {
                    valid_loss: loss,
                    ..row
                };
                (average, row, BestKind::Average)
            }
            _ => (model, row, BestKind::Trained),
        };
        if !row.valid_loss.is_finite() || self.best.is_some_and(|best| best <= row.valid_loss) {
            return Ok(());
        }
        self.run.save_model(weights)?;
        self.run.save_best(&row, kind)?;
        self.best = Some(row.valid_loss);
        Ok(())
    }
}
