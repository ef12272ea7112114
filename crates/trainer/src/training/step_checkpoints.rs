//! Checkpoints inside an epoch: every `training.checkpoint_every` optimizer steps and when
//! Ctrl-C stops a run, the model, optimizer and scheduler state (and the weight average, when
//! on) go to `checkpoint/steps/<kind>-<step>.bpk`, keyed by the number of steps since the run began and
//! written atomically. The last two are kept, so a complete one exists while the next is being
//! written. `train --resume` continues from the newest complete one when it is newer than the
//! last epoch checkpoint.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::train::checkpoint::{
    AsyncCheckpointer, Checkpoint, Checkpointer, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;
use burn::train::{Interrupter, Learner, LearningCheckpointer};
use char_lstm::LstmLanguageModel;

use crate::training::checkpointer::{AtomicCheckpointer, checkpoint_failure};
use crate::training::weight_average::WeightAverage;

/// Where a run stands after `step` optimizer steps: `batches` batches into `epoch` (1-based;
/// `batches` may be the whole epoch when it ended without validating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The epoch the last step belonged to.
    pub epoch: usize,
    /// The batches of that epoch done.
    pub batches: usize,
}

impl Position {
    /// The position after `step` steps (at least 1) of `batches_per_epoch`.
    pub fn after(step: usize, batches_per_epoch: usize) -> Self {
        let epoch = (step - 1) / batches_per_epoch + 1;
        Self {
            epoch,
            batches: step - (epoch - 1) * batches_per_epoch,
        }
    }
}

/// Saves step checkpoints during training.
pub struct StepCheckpoints {
    every: usize,
    directory: PathBuf,
    checkpointer: LearningCheckpointer<LstmLanguageModel>,
    interrupter: Interrupter,
    last_saved: Option<usize>,
}

impl StepCheckpoints {
    /// Checkpoints into `directory` every `every` steps (0: only when asked), keeping the last
    /// two of those already there and of those to come. Save errors stop training through
    /// `interrupter`.
    pub fn new(
        directory: PathBuf,
        every: usize,
        existing: Vec<usize>,
        interrupter: &Interrupter,
    ) -> Self {
        Self {
            every,
            directory: directory.clone(),
            interrupter: interrupter.clone(),
            checkpointer: LearningCheckpointer::new(
                in_background(&directory, "model", interrupter),
                in_background(&directory, "optim", interrupter),
                in_background(&directory, "scheduler", interrupter),
                Box::new(KeepLastTwo {
                    saved: existing.into(),
                }),
            ),
            last_saved: None,
        }
    }

    /// Saves when `step` is a multiple of `training.checkpoint_every`.
    pub fn after_step(
        &mut self,
        learner: &Learner<LstmLanguageModel>,
        average: &WeightAverage,
        step: usize,
        store: &EventStoreClient,
    ) {
        if self.due(step) {
            self.save(learner, average, step, store);
        }
    }

    /// Whether a checkpoint is saved after step `step`.
    pub fn due(&self, step: usize) -> bool {
        self.every > 0 && step.is_multiple_of(self.every)
    }

    /// Saves the state after `step` steps, unless it is saved already. The average goes
    /// first, so that a step whose learner files are complete has it too.
    pub fn save(
        &mut self,
        learner: &Learner<LstmLanguageModel>,
        average: &WeightAverage,
        step: usize,
        store: &EventStoreClient,
    ) {
        if self.last_saved != Some(step) {
            if let Err(e) = average.save(&self.directory, step) {
                self.interrupter.fail(checkpoint_failure(&e));
                return;
            }
            self.checkpointer.checkpoint(learner, step, store);
            self.last_saved = Some(step);
        }
    }
}

/// Writes `<directory>/<kind>-<step>.bpk` atomically on a background thread, failing training
/// through `interrupter` on an error.
fn in_background<R: Checkpoint + Send + 'static>(
    directory: &Path,
    kind: &'static str,
    interrupter: &Interrupter,
) -> AsyncCheckpointer<R> {
    AsyncCheckpointer::new(AtomicCheckpointer::new(directory.to_path_buf(), kind))
        .with_interrupter(interrupter.clone())
}

/// Loads the step checkpoint `step` from `directory` into `learner`.
pub fn restore(
    directory: PathBuf,
    learner: &mut Learner<LstmLanguageModel>,
    step: usize,
) -> Result<()> {
    let checkpointer = |kind| AtomicCheckpointer::new(directory.clone(), kind);
    let context = || {
        format!(
            "cannot load the checkpoint of step {step} from {}",
            directory.display()
        )
    };
    learner.load_model(checkpointer("model").restore(step).with_context(context)?);
    learner.load_optim(checkpointer("optim").restore(step).with_context(context)?);
    learner.load_scheduler(
        checkpointer("scheduler")
            .restore(step)
            .with_context(context)?,
    );
    Ok(())
}

/// Saves every time and deletes all but the last two saved.
struct KeepLastTwo {
    saved: VecDeque<usize>,
}

impl CheckpointingStrategy for KeepLastTwo {
    fn checkpointing(&mut self, step: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        self.keep(step)
    }
}

impl KeepLastTwo {
    fn keep(&mut self, step: usize) -> Vec<CheckpointingAction> {
        self.saved.push_back(step);
        let mut actions = vec![CheckpointingAction::Save];
        while self.saved.len() > 2 {
            let old = self.saved.pop_front().expect("more than two");
            actions.push(CheckpointingAction::Delete(old));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_batches_within_epochs() {
        for (step, epoch, batches) in [(1, 1, 1), (10, 1, 10), (11, 2, 1), (25, 3, 5)] {
            assert_eq!(Position::after(step, 10), Position { epoch, batches });
        }
    }

    #[test]
    fn keeps_the_last_two_including_those_found_on_disk() {
        let mut strategy = KeepLastTwo {
            saved: vec![4, 8].into(),
        };
        let actions = strategy.keep(12);
        assert!(matches!(
            actions[..],
            [CheckpointingAction::Save, CheckpointingAction::Delete(4)]
        ));
        let actions = strategy.keep(16);
        assert!(matches!(
            actions[..],
            [CheckpointingAction::Save, CheckpointingAction::Delete(8)]
        ));
    }
}
