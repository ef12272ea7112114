//! The training loop: burn-train's epochs, on one device or data-parallel on several, with what
//! long runs need on top.
//!
//! It checks the losses are finite (a NaN or infinite loss stops the run before any checkpoint
//! holds weights trained on it: every step on the CPU, before applying it; every few steps on
//! a GPU, see [`UncheckedLosses`]) and the wall-time limit
//! (`training.time_limit`: the epoch ends early, is validated and checkpointed). After every
//! epoch it samples from the model into `samples.txt` and onto the dashboard. In stream mode it carries the LSTM
//! state from batch to batch, detached, and resets it every epoch. It saves step checkpoints
//! (`training.checkpoint_every`, and on Ctrl-C) and resumes from one mid-epoch, skipping the
//! batches already trained on; in stream mode the carried state restarts from zeros there.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainingComponents,
    TrainingError, TrainingItem, ValidLoader,
};
use char_lstm::train::clip_grad_norm;
use char_lstm::{CharVocab, GenerationConfig, LstmLanguageModel, LstmState, SamplingConfig};
use char_lstm_data::EpochOrder;

use crate::run::epoch_log::EpochLog;
use crate::run::metrics_csv::EpochRow;
use crate::run::replacement::Replacement;
use crate::run::run_dir::{RunDir, checkpoint_keys};
use crate::training::best_weights::BestWeights;
use crate::training::checkpointer::checkpoint_failure;
use crate::training::data_parallel::DataParallel;
use crate::training::step_checkpoints::{Position, StepCheckpoints};
use crate::training::unchecked_losses::{NonFinite, UncheckedLosses};
use crate::training::weight_average::WeightAverage;
use crate::ui::dashboard_sample::LatestSample;
use crate::ui::progress::CurrentEpoch;

/// Why the loop ended before its last epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum EarlyEnd {
    /// `training.time_limit` was reached during this epoch.
    TimeLimit { epoch: usize },
    /// The loss of a step was not finite.
    NonFiniteLoss(NonFinite),
}

/// The sample drawn after every epoch.
#[derive(Debug, Clone)]
pub struct EpochSample {
    /// The vocabulary, to decode the sample.
    pub vocab: CharVocab,
    /// The prompt, encoded.
    pub prompt: Vec<u32>,
    /// Characters to sample.
    pub length: usize,
    /// Temperature, top-k, top-p and seed.
    pub sampling: SamplingConfig,
    /// `samples.txt` in the run directory.
    pub path: PathBuf,
    /// Print the sample too (off under the dashboard, which owns the terminal).
    pub print: bool,
    /// Where the dashboard reads the newest sample.
    pub latest: LatestSample,
}

/// Step checkpoints and where to resume.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// `checkpoint/steps` in the run directory.
    pub directory: PathBuf,
    /// `training.checkpoint_every`.
    pub every: usize,
    /// Optimizer steps in one epoch.
    pub batches_per_epoch: usize,
    /// Resume after this many steps (their checkpoint is loaded into the learner already).
    pub resume_after: Option<usize>,
}

/// What the loop does besides training.
pub struct RunOptions {
    /// `training.time_limit`.
    pub time_limit: Option<Duration>,
    /// Carry the LSTM state from batch to batch (`data.mode = "stream"`).
    pub stream: bool,
    /// `training.grad_clip_norm`, when clipping is on.
    pub grad_clip_norm: Option<f64>,
    /// Steps whose losses are read at once (see [`UncheckedLosses`]): 1 where reading a value
    /// waits for nothing.
    pub loss_check_every: usize,
    /// The sample after every epoch.
    pub sample: EpochSample,
    /// Selects each epoch's order of the training windows (windows mode).
    pub order: Option<EpochOrder>,
    /// Step checkpoints.
    pub steps: StepPlan,
    /// Set by the Ctrl-C handler.
    pub interrupted: Arc<AtomicBool>,
    /// Where the progress lines read the epoch.
    pub current_epoch: CurrentEpoch,
    /// `metrics.csv` and `curves.svg`, written after every epoch.
    pub epoch_log: EpochLog,
    /// `model.bpk` and `best.json`, written after every epoch that beats the ones before.
    pub best: Mutex<BestWeights>,
    /// The weight average as the run starts (`training.ema_decay`; a resumed run's restored).
    pub average: WeightAverage,
    /// A new run's claim on its directory, settled by its first checkpoint.
    pub replacement: Arc<Mutex<Option<Replacement>>>,
    /// The run directory.
    pub run: RunDir,
}

/// burn-train's epoch loop with the checks above, on one device or data-parallel on several.
pub struct RunStrategy {
    parallel: DataParallel,
    options: RunOptions,
    early_end: Arc<Mutex<Option<EarlyEnd>>>,
}

impl RunStrategy {
    /// A loop whose steps run on `parallel`'s devices (with autodiff; batches, validation and
    /// the optimizer on the first) and a handle that says, after training, whether and why it
    /// ended early.
    pub fn new(
        parallel: DataParallel,
        options: RunOptions,
    ) -> (Self, Arc<Mutex<Option<EarlyEnd>>>) {
        let early_end = Arc::new(Mutex::new(None));
        let strategy = Self {
            parallel,
            options,
            early_end: early_end.clone(),
        };
        (strategy, early_end)
    }

    fn end_early(&self, why: EarlyEnd) {
        *self.early_end.lock().expect("not poisoned") = Some(why);
    }

    /// Samples from the model, hands it to the dashboard and adds it to `samples.txt` under its
    /// epoch (dropping entries of this epoch and later that a resumed run redoes).
    fn write_sample(&self, model: &LstmLanguageModel, epoch: usize) {
        let s = &self.options.sample;
        let mut text = s.vocab.decode(&s.prompt);
        let config = GenerationConfig::new()
            .with_length(s.length)
            .with_sampling(s.sampling.clone());
        let drawn = char_lstm::generate(model, &s.prompt, 1, &config, |ids| {
            text.push(
                s.vocab
                    .char(ids[0])
                    .expect("model ids are in the vocabulary"),
            );
        });
        if let Err(e) = drawn {
            eprintln!("warning: no sample after epoch {epoch}: {e}");
            return;
        }
        s.latest.set(epoch, &text);
        if s.print {
            println!("sample after epoch {epoch}:\n{text}");
        }
        let heading = |e: usize| format!("=== epoch {e} ===");
        let existing = std::fs::read_to_string(&s.path).unwrap_or_default();
        let mut kept: String = existing
            .split_inclusive('\n')
            .scan(true, |keep, line| {
                if let Some(e) = line
                    .strip_prefix("=== epoch ")
                    .and_then(|r| r.trim_end().strip_suffix(" ==="))
                {
                    *keep = e.parse::<usize>().is_ok_and(|e| e < epoch);
                }
                Some(keep.then_some(line))
            })
            .flatten()
            .collect();
        kept.push_str(&format!("{}\n{text}\n\n", heading(epoch)));
        if let Err(e) = char_lstm::write_atomic(&s.path, kept.as_bytes()) {
            eprintln!("warning: cannot write {}: {e}", s.path.display());
        }
    }
}

/// A batch from a data loader; a loading error fails the run and ends the split as the end
/// of the data would.
fn loaded<T, E: Into<TrainingError>>(
    item: Option<Result<T, E>>,
    interrupter: &Interrupter,
) -> Option<T> {
    match item? {
        Ok(item) => Some(item),
        Err(e) => {
            interrupter.fail(e);
            None
        }
    }
}

/// How an epoch's training split ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitEnd {
    /// Every batch ran.
    Done,
    /// `training.time_limit` was reached; the epoch is validated and the run ends.
    OutOfTime,
    /// A stop was asked for (Ctrl-C, `q`, an error, a non-finite loss).
    Stopped,
}

/// What the loop carries from step to step.
struct Progress {
    /// Optimizer steps since the run began.
    step: usize,
    /// When this process started training.
    started: Instant,
    /// The weight average, updated after every step.
    average: WeightAverage,
    /// The losses of the steps since they were last read.
    losses: UncheckedLosses,
}

impl RunStrategy {
    /// One epoch's training batches, after skipping the `trained` ones a resumed run already
    /// trained on.
    #[allow(clippy::too_many_arguments)]
    fn train_split(
        &self,
        learner: &mut Learner<LstmLanguageModel>,
        train: &TrainLoader<LstmLanguageModel>,
        processor: &mut SupervisedTrainingEventProcessor<LstmLanguageModel>,
        interrupter: &Interrupter,
        steps: &mut StepCheckpoints,
        store: &EventStoreClient,
        progress: &mut Progress,
        epoch: usize,
        trained: usize,
    ) -> SplitEnd {
        let options = &self.options;
        // In stream mode each epoch starts every stream from a zero state.
        let mut carried: Option<Vec<LstmState>> = None;
        let mut iterator = train.iter();
        let mut iteration = 0;
        while iteration < trained {
            if loaded(iterator.next(), interrupter).is_none() {
                break;
            }
            iteration += 1;
        }
        while let Some(item) = loaded(iterator.next(), interrupter) {
            iteration += 1;
            progress.step += 1;
            let step = progress.step;
            let items = iterator.progress();
            let (output, last) = self.parallel.step(&learner.model(), item, carried.take());
            if options.stream {
                carried = Some(last);
            }
            progress.losses.push(output.item.loss.clone(), epoch, step);
            // Read before a step checkpoint too, which must not hold the weights of a
            // non-finite loss.
            if (progress.losses.due() || steps.due(step))
                && !self.losses_finite(&mut progress.losses, interrupter)
            {
                return SplitEnd::Stopped;
            }
            let grads = match options.grad_clip_norm {
                Some(max_norm) => clip_grad_norm(&learner.model(), output.grads, max_norm),
                None => output.grads,
            };
            learner.lr_step();
            learner.optimizer_step(grads);
            progress.average.update(&learner.model(), step);
            steps.after_step(learner, &progress.average, step, store);
            let item = TrainingItem::new(
                output.item,
                items,
                Some(iteration),
                Some(learner.lr_current()),
            );
            interrupter.fail_on_error(processor.process_train(LearnerEvent::ProcessedItem(item)));
            if interrupter.should_stop() {
                self.losses_finite(&mut progress.losses, interrupter);
                return SplitEnd::Stopped;
            }
            if options
                .time_limit
                .is_some_and(|limit| progress.started.elapsed() >= limit)
            {
                return self.checked(SplitEnd::OutOfTime, progress, interrupter);
            }
        }
        self.checked(SplitEnd::Done, progress, interrupter)
    }

    /// `end`, unless a loss still unread is not finite (the epoch must not be validated and
    /// checkpointed then).
    fn checked(
        &self,
        end: SplitEnd,
        progress: &mut Progress,
        interrupter: &Interrupter,
    ) -> SplitEnd {
        if self.losses_finite(&mut progress.losses, interrupter) {
            end
        } else {
            SplitEnd::Stopped
        }
    }

    /// Reads the losses not yet read; a non-finite one ends the run (before the optimizer
    /// applies any later step's gradients to anything kept).
    fn losses_finite(&self, losses: &mut UncheckedLosses, interrupter: &Interrupter) -> bool {
        let Some(bad) = losses.check() else {
            return true;
        };
        self.end_early(EarlyEnd::NonFiniteLoss(bad));
        interrupter.stop(Some("non-finite loss"));
        false
    }

    /// Samples from the model, then runs the validation batches.
    fn validate_split(
        &self,
        model: &LstmLanguageModel,
        valid: &ValidLoader<LstmLanguageModel>,
        processor: &mut SupervisedTrainingEventProcessor<LstmLanguageModel>,
        interrupter: &Interrupter,
        epoch: usize,
    ) {
        interrupter.fail_on_error(processor.process_valid(LearnerEvent::StartSplit {
            epoch_number: epoch,
            total_items: valid.num_items(),
        }));
        // Before validating, so the validation batches carry it to the dashboard.
        self.write_sample(model, epoch);
        let mut iterator = valid.iter();
        let mut iteration = 0;
        while let Some(item) = loaded(iterator.next(), interrupter) {
            iteration += 1;
            let items = iterator.progress();
            let item = TrainingItem::new(
                InferenceStep::step(model, item),
                items,
                Some(iteration),
                None,
            );
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::ProcessedItem(item)));
        }
        interrupter.fail_on_error(processor.process_valid(LearnerEvent::EndSplit(epoch)));
    }

    /// The mean validation loss of `model`, over the batches as the metrics weigh them (by
    /// rows), outside the dashboard's metrics.
    fn validation_loss(
        &self,
        model: &LstmLanguageModel,
        valid: &ValidLoader<LstmLanguageModel>,
        interrupter: &Interrupter,
    ) -> f64 {
        let (mut total, mut rows) = (0.0, 0);
        let mut iterator = valid.iter();
        while let Some(item) = loaded(iterator.next(), interrupter) {
            let output = InferenceStep::step(model, item);
            let batch_rows = output.targets.dims()[0];
            total += output.loss.into_scalar::<f64>() * batch_rows as f64;
            rows += batch_rows;
        }
        total / rows.max(1) as f64
    }
}

impl RunStrategy {
    /// Writes the epoch's row of `metrics.csv` and `curves.svg`, keeps the best weights (the
    /// trained ones, or the `average` with its validation loss where it is better) in
    /// `model.bpk`, and once a checkpoint exists, lets a run that `--force` replaces go. A file
    /// that cannot be written stops the run.
    fn after_epoch(
        &self,
        model: &LstmLanguageModel,
        average: Option<(&LstmLanguageModel, f64)>,
        epoch: usize,
        store: &EventStoreClient,
        interrupter: &Interrupter,
    ) {
        let loss = |split| store.find_metric("Loss", epoch, Aggregate::Mean, &split);
        let (train, valid) = (loss(Split::Train), loss(Split::Valid));
        let row = EpochRow {
            epoch,
            train_loss: train.unwrap_or(f64::NAN),
            valid_loss: valid.unwrap_or(f64::NAN),
        };
        let logged = self
            .options
            .epoch_log
            .record(epoch, train, valid)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.options.run.metrics_path().display()));
        let saved = logged.and_then(|()| {
            let mut best = self.options.best.lock().expect("not poisoned");
            best.after_epoch(model, row, average)
        });
        let mut replacement = self.options.replacement.lock().expect("not poisoned");
        let settled = match replacement.as_mut() {
            Some(r) if !r.is_settled() && self.options.run.has_checkpoint() => r.commit(),
            _ => Ok(()),
        };
        if let Err(e) = saved.and(settled) {
            interrupter.fail(checkpoint_failure(&e));
        }
    }
}

impl SupervisedLearningStrategy<LstmLanguageModel> for RunStrategy {
    fn fit(
        &self,
        components: TrainingComponents<LstmLanguageModel>,
        mut learner: Learner<LstmLanguageModel>,
        dataloader_train: TrainLoader<LstmLanguageModel>,
        dataloader_valid: ValidLoader<LstmLanguageModel>,
        starting_epoch: usize,
    ) -> (
        LstmLanguageModel,
        SupervisedTrainingEventProcessor<LstmLanguageModel>,
    ) {
        let device = self.parallel.main_device();
        let train = dataloader_train.to_device(device);
        let valid = dataloader_valid.to_device(&device.clone().inner());
        learner.fork(device);
        let interrupter = components.interrupter;
        let mut processor = components.event_processor;
        let mut checkpointer = components.checkpointer;
        let store = &components.event_store;
        let options = &self.options;
        let plan = &options.steps;
        let mut steps = StepCheckpoints::new(
            plan.directory.clone(),
            plan.every,
            checkpoint_keys(&plan.directory, false),
            &interrupter,
        );
        let (first_epoch, mut skip, step) = match plan.resume_after {
            Some(step) => {
                let at = Position::after(step, plan.batches_per_epoch);
                (at.epoch, at.batches, step)
            }
            None => (
                starting_epoch,
                0,
                (starting_epoch - 1) * plan.batches_per_epoch,
            ),
        };
        let mut progress = Progress {
            step,
            started: Instant::now(),
            average: options.average.clone(),
            losses: UncheckedLosses::new(options.loss_check_every),
        };
        for epoch in first_epoch..=components.num_epochs {
            options.current_epoch.set(epoch);
            if let Some(order) = &options.order {
                order.set_epoch(epoch);
            }
            interrupter.fail_on_error(processor.process_train(LearnerEvent::StartSplit {
                epoch_number: epoch,
                total_items: train.num_items(),
            }));
            let trained = std::mem::take(&mut skip);
            let end = self.train_split(
                &mut learner,
                &train,
                &mut processor,
                &interrupter,
                &mut steps,
                store,
                &mut progress,
                epoch,
                trained,
            );
            interrupter.fail_on_error(processor.process_train(LearnerEvent::EndSplit(epoch)));
            if end == SplitEnd::Stopped || interrupter.should_stop() {
                break;
            }
            let model = learner.model().valid();
            self.validate_split(&model, &valid, &mut processor, &interrupter, epoch);
            let average = progress.average.model().map(|average| {
                let loss = self.validation_loss(average, &valid, &interrupter);
                if options.sample.print {
                    println!("epoch {epoch}: the weight average's validation loss {loss:.4}");
                }
                (average, loss)
            });
            interrupter.fail_on_error(processor.process_train(LearnerEvent::EndEpoch(epoch)));
            interrupter.fail_on_error(processor.flush());
            if interrupter.should_stop() {
                break;
            }
            if let Some(checkpointer) = &mut checkpointer {
                match progress.average.save(&options.run.checkpoint_dir(), epoch) {
                    Ok(()) => checkpointer.checkpoint(&learner, epoch, store),
                    Err(e) => interrupter.fail(checkpoint_failure(&e)),
                }
            }
            self.after_epoch(&model, average, epoch, store, &interrupter);
            if end == SplitEnd::OutOfTime {
                self.end_early(EarlyEnd::TimeLimit { epoch });
                break;
            }
            if interrupter.should_stop() {
                break;
            }
        }
        let non_finite = matches!(
            *self.early_end.lock().expect("not poisoned"),
            Some(EarlyEnd::NonFiniteLoss(_))
        );
        if options.interrupted.load(Ordering::SeqCst) && !non_finite {
            steps.save(&learner, &progress.average, progress.step, store);
        }
        (learner.model(), processor)
    }
}
