//! `trainer train`: fit a model with burn-train's `Learner` and print a sample.
//!
//! In four steps: the run directory and its data ([`prepare`]), burn-train's `Learner` and
//! loop ([`build`]), the run itself, and what it leaves behind ([`report`]).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::tensor::Device;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric, PerplexityMetric};
use burn::train::{Learner, SupervisedTraining, TrainingStrategy};
use char_lstm::{CharVocab, LstmLanguageModel};
use char_lstm_data::{EpochOrder, EpochShuffled, TextSplit, TextWindows, WindowBatcher};

use crate::cli::TrainArgs;
use crate::config::{DataMode, LrSchedule, RunConfig};
use crate::run::epoch_log::EpochLog;
use crate::run::metrics_csv;
use crate::run::run_dir::{RunDir, RunLock};
use crate::text_source::load_training_text;
use crate::training::checkpointer::AtomicCheckpointer;
use crate::training::step_checkpoints::{self, Position};
use crate::training::strategy::{EarlyEnd, EpochSample, RunOptions, RunStrategy, StepPlan};
use crate::ui::dashboard_sample::{LatestSample, SampleMetric};
use crate::ui::progress::{CurrentEpoch, PlainProgress};

/// How a training command ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Every epoch ran, or the time limit ended the run as asked.
    Completed,
    /// Ctrl-C (SIGINT) stopped it; the weights so far are saved.
    Interrupted,
}

/// Trains as `args` say, saves the run directory, and prints a sample.
pub fn train(args: &TrainArgs) -> Result<Finished> {
    let prepared = prepare(args)?;
    let device = args.backend.device()?.autodiff();
    let plain = args.no_tui || !std::io::stdout().is_terminal();
    let built = build(&prepared, &device, plain)?;
    let Built {
        training,
        learner,
        early_end,
        interrupted,
        batches_per_epoch,
    } = built;
    let result = training.launch(learner);
    drop(result.renderer);
    let outcome = Outcome {
        model: result.model,
        error: result.error.map(|e| e.to_string()),
        early_end: early_end.lock().expect("not poisoned").clone(),
        interrupted: interrupted.load(Ordering::SeqCst),
        batches_per_epoch,
    };
    report(&prepared, outcome)
}

/// The run directory, claimed, with its configuration, vocabulary and windows.
struct Prepared {
    run: RunDir,
    _lock: RunLock,
    config: RunConfig,
    vocab: CharVocab,
    resume: bool,
    train_windows: TextWindows,
    valid_windows: TextWindows,
}

/// Resolves the configuration, claims the run directory (refusing to overwrite a run unless
/// told), loads the text and cuts it, and saves the configuration and vocabulary.
fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let config = RunConfig::resolve(args.config.as_deref(), &args.sets)?;
    let run = RunDir::new(args.run.clone().unwrap_or_else(|| default_run_dir(args)));
    // Taken before anything in an existing directory changes; a new directory is locked as
    // soon as it exists.
    let existing_lock = run.path().is_dir().then(|| run.lock()).transpose()?;
    let resume = prepare_run_dir(&run, args)?;
    let mut config = if resume {
        resumed_config(&run, config)?
    } else {
        config
    };
    let text = load_training_text(&config)?;
    let vocab = if resume {
        CharVocab::load(&run.vocab_path())?
    } else {
        CharVocab::from_text(&text)?
    };
    config.model = config.model_for(&vocab)?;
    let tokens: Arc<[u32]> = vocab
        .encode(&text)
        .context("the training text has characters outside the run's vocabulary")?
        .into();
    let (train_windows, valid_windows) = windows(&config, tokens)?;
    println!(
        "text: {} characters, vocabulary {}, {} training windows, {} validation windows",
        text.chars().count(),
        vocab.len(),
        train_windows.len(),
        valid_windows.len()
    );
    run.save_setup(&config, &vocab)?;
    let lock = match existing_lock {
        Some(lock) => lock,
        None => run.lock()?,
    };
    Ok(Prepared {
        run,
        _lock: lock,
        config,
        vocab,
        resume,
        train_windows,
        valid_windows,
    })
}

/// The training windows (sliding, or streams in stream mode) and the validation windows.
fn windows(config: &RunConfig, tokens: Arc<[u32]>) -> Result<(TextWindows, TextWindows)> {
    let (d, t) = (&config.data, &config.training);
    let split = TextSplit::by_position(tokens.len(), d.valid_fraction);
    let train = match d.mode {
        DataMode::Stream => TextWindows::streams(
            tokens.clone(),
            split.train.clone(),
            d.seq_len,
            t.batch_size,
            "training",
        )?,
        DataMode::Windows => TextWindows::new(
            tokens.clone(),
            split.train.clone(),
            d.seq_len,
            d.stride,
            "training",
        )?,
    };
    let valid = if split.valid_is_train() {
        println!("data.valid_fraction = 0: validating on the training windows (no held-out text)");
        train.clone()
    } else {
        TextWindows::new(
            tokens,
            split.valid.clone(),
            d.seq_len,
            d.seq_len,
            "validation",
        )?
    };
    Ok((train, valid))
}

/// burn-train's training, ready to launch, and what tells afterwards how it ended.
struct Built {
    training: SupervisedTraining<LstmLanguageModel>,
    learner: Learner<LstmLanguageModel>,
    early_end: Arc<Mutex<Option<EarlyEnd>>>,
    interrupted: Arc<AtomicBool>,
    batches_per_epoch: usize,
}

/// The model, optimizer, schedule, data loaders, metrics, checkpointers and our loop, with a
/// resumed run's state loaded and Ctrl-C wired to stop after the current step.
fn build(prepared: &Prepared, device: &Device, plain: bool) -> Result<Built> {
    let Prepared {
        run, config, vocab, ..
    } = prepared;
    let t = &config.training;
    device.seed(t.seed);
    let lm = config.model.init(device);
    let stream = config.data.mode == DataMode::Stream;
    // One worker, so batches arrive in the dataset's order: in stream mode each batch continues
    // the one before, row by row; in windows mode the order is a function of seed and epoch.
    let train_builder = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.batch_size)
        .num_workers(1);
    let train_windows = prepared.train_windows.clone();
    let (train_loader, order): (_, Option<EpochOrder>) = if stream {
        (train_builder.build(train_windows), None)
    } else {
        let (shuffled, order) = EpochShuffled::new(train_windows, t.seed);
        (train_builder.build(shuffled), Some(order))
    };
    let batches_per_epoch = prepared.train_windows.len().div_ceil(t.batch_size);
    let resume = prepared
        .resume
        .then(|| ResumePoint::newest(run, batches_per_epoch))
        .flatten();
    let valid_loader = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.batch_size)
        .num_workers(t.num_workers)
        .build(prepared.valid_windows.clone());

    let sample = epoch_sample(config, vocab, run, plain);
    let sample_metric = SampleMetric::new(sample.latest.clone());
    let interrupted = Arc::new(AtomicBool::new(false));
    let current_epoch = CurrentEpoch::default();
    let resume_after = match resume {
        Some(ResumePoint::Step(step)) => Some(step),
        _ => None,
    };
    let (strategy, early_end) = RunStrategy::new(
        device.clone(),
        RunOptions {
            time_limit: config.time_limit()?,
            stream,
            grad_clip_norm: (t.grad_clip_norm > 0.0).then_some(t.grad_clip_norm),
            sample,
            order,
            steps: StepPlan {
                directory: run.step_checkpoint_dir(),
                every: t.checkpoint_every,
                batches_per_epoch,
                resume_after,
            },
            interrupted: interrupted.clone(),
            current_epoch: current_epoch.clone(),
        },
    );
    let mut training = SupervisedTraining::new(run.path(), train_loader, valid_loader)
        .metrics((
            LossMetric::new(),
            AccuracyMetric::new(),
            PerplexityMetric::new(),
        ))
        .metric_train_numeric(LearningRateMetric::new())
        .metric_valid(sample_metric)
        .with_custom_checkpointers(
            AtomicCheckpointer::new(run.checkpoint_dir(), "model"),
            AtomicCheckpointer::new(run.checkpoint_dir(), "optim"),
            AtomicCheckpointer::new(run.checkpoint_dir(), "scheduler"),
        )
        .with_application_logger(None)
        .early_stopping(EpochLog::new(run.metrics_path()))
        .num_epochs(t.epochs)
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)));
    if plain {
        training = training.renderer(Box::new(PlainProgress::new(current_epoch)));
    }
    let interrupter = training.interrupter();
    let flag = interrupted.clone();
    // Ctrl-C stops after the current step; the weights so far are saved afterwards. (The
    // dashboard reads Ctrl-C itself, as a key.)
    ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        interrupter.stop(Some("interrupted"));
    })
    .context("cannot install the Ctrl-C handler")?;
    let optim = char_lstm::train::adam(t.weight_decay as f32);
    let mut learner = Learner::new(lm, optim, schedule(config, batches_per_epoch)?);
    match resume {
        Some(ResumePoint::Epoch(epoch)) => {
            println!("resuming {} after epoch {epoch}", run.path().display());
            training = training.checkpoint(epoch);
        }
        Some(ResumePoint::Step(step)) => {
            step_checkpoints::restore(run.step_checkpoint_dir(), &mut learner, step)?;
            let at = Position::after(step, batches_per_epoch);
            println!(
                "resuming {} after step {step} (epoch {}, batch {} of {batches_per_epoch})",
                run.path().display(),
                at.epoch,
                at.batches
            );
        }
        None => {}
    }
    Ok(Built {
        training,
        learner,
        early_end,
        interrupted,
        batches_per_epoch,
    })
}

/// The learning rate over the run's steps.
fn schedule(config: &RunConfig, batches_per_epoch: usize) -> Result<ModuleLrScheduler> {
    let t = &config.training;
    let steps = t.epochs * batches_per_epoch;
    Ok(match t.lr_schedule {
        LrSchedule::Constant => t.learning_rate.into(),
        LrSchedule::Cosine => CosineAnnealingLrSchedulerConfig::new(t.learning_rate, steps.max(1))
            .init()
            .map_err(|e| anyhow::anyhow!("training.lr_schedule = \"cosine\": {e}"))?,
    })
}

/// The sample drawn after every epoch.
fn epoch_sample(config: &RunConfig, vocab: &CharVocab, run: &RunDir, plain: bool) -> EpochSample {
    let g = &config.generate;
    EpochSample {
        prompt: vocab
            .encode(&sample_prompt(vocab, &g.prompt))
            .expect("the prompt is in the vocabulary"),
        vocab: vocab.clone(),
        length: g.length,
        sampling: g.sampling.clone(),
        path: run.samples_path(),
        print: plain,
        latest: LatestSample::default(),
    }
}

/// How the run ended.
struct Outcome {
    model: LstmLanguageModel,
    error: Option<String>,
    early_end: Option<EarlyEnd>,
    interrupted: bool,
    batches_per_epoch: usize,
}

/// Saves the weights (the best epoch's, or after Ctrl-C the latest), says how the run ended
/// and where to resume, and prints a sample.
fn report(prepared: &Prepared, outcome: Outcome) -> Result<Finished> {
    let Prepared {
        run, config, vocab, ..
    } = prepared;
    let good = || match ResumePoint::newest(run, outcome.batches_per_epoch) {
        Some(point) => format!(
            "the checkpoint {point} is intact; continue with --resume --run {}",
            run.path().display()
        ),
        None => "no checkpoint was written yet".to_string(),
    };
    if let Some(error) = &outcome.error {
        bail!("training failed: {error}; {}", good());
    }
    match &outcome.early_end {
        Some(EarlyEnd::NonFiniteLoss { epoch, step, loss }) => bail!(
            "training stopped: the loss became {loss} at step {step} (epoch {epoch}), so those weights were not kept; {} (a lower training.learning_rate or training.grad_clip_norm may help)",
            good()
        ),
        Some(EarlyEnd::TimeLimit { epoch }) => {
            println!(
                "training.time_limit = {:?} reached in epoch {epoch}",
                config.training.time_limit
            )
        }
        None => {}
    }
    if outcome.interrupted {
        run.save_model(&outcome.model)?;
        println!(
            "interrupted: saved the weights so far to {}; {}",
            run.model_path().display(),
            good()
        );
        return Ok(Finished::Interrupted);
    }
    let lm = best_epoch_model(run, outcome.model)?;
    run.save_model(&lm)?;
    println!("saved {}", run.model_path().display());

    let g = &config.generate;
    println!(
        "sample (temperature {}, seed {}):",
        g.sampling.temperature, g.sampling.seed
    );
    let prompt = sample_prompt(vocab, &g.prompt);
    crate::commands::generate::write_samples(&lm, vocab, &prompt, g.length, 1, &g.sampling)?;
    Ok(Finished::Completed)
}

/// The configured prompt, or the vocabulary's first character when the text lacks one of its
/// characters.
fn sample_prompt(vocab: &CharVocab, prompt: &str) -> String {
    if vocab.encode(prompt).is_ok() {
        prompt.to_string()
    } else {
        vocab.decode(&[0])
    }
}

/// The weights of the epoch with the lowest validation loss (burn-train keeps that epoch's
/// checkpoint), recorded in `best.json`; the final weights when no checkpoint beats them.
fn best_epoch_model(run: &RunDir, last: LstmLanguageModel) -> Result<LstmLanguageModel> {
    let rows = metrics_csv::read(&run.metrics_path())?;
    let final_epoch = rows.last().map_or(0, |r| r.epoch);
    let checkpoint = |epoch: usize| run.checkpoint_dir().join(format!("model-{epoch}.bpk"));
    // The best epoch whose weights still exist: after a resume, burn-train's checkpointer no
    // longer knows the epochs before it and may have deleted the best one's checkpoint.
    let mut candidates: Vec<_> = rows
        .iter()
        .filter(|r| r.valid_loss.is_finite())
        .filter(|r| r.epoch == final_epoch || checkpoint(r.epoch).exists())
        .collect();
    candidates.sort_by(|a, b| a.valid_loss.total_cmp(&b.valid_loss));
    let Some(&best) = candidates.first() else {
        return Ok(last);
    };
    let model = if best.epoch == final_epoch {
        last
    } else {
        let checkpoint = checkpoint(best.epoch);
        last.try_load_file(&checkpoint).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot load the best epoch's weights: {e}",
                checkpoint.display()
            )
        })?
    };
    run.save_best(best)?;
    println!(
        "best epoch {} of {final_epoch}: valid loss {:.4} nats/char, {:.4} bits/char",
        best.epoch,
        best.valid_loss,
        best.valid_loss / std::f64::consts::LN_2
    );
    Ok(model)
}

/// `runs/<config file stem>`, or `runs/default` for the built-in config.
fn default_run_dir(args: &TrainArgs) -> PathBuf {
    let stem = args
        .config
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or_else(|| "default".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(stem)
}

/// Refuses to overwrite a run unless told; true when resuming.
fn prepare_run_dir(run: &RunDir, args: &TrainArgs) -> Result<bool> {
    if args.resume {
        if run.last_checkpoint().is_none() && run.last_step_checkpoint().is_none() {
            bail!(
                "--resume: {} has no complete checkpoint to resume from",
                run.path().display()
            );
        }
        return Ok(true);
    }
    run.prepare_new(args.force)?;
    Ok(false)
}

/// The checkpoint a resumed run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumePoint {
    /// After this epoch, validated.
    Epoch(usize),
    /// After this many optimizer steps.
    Step(usize),
}

impl ResumePoint {
    /// The newest complete checkpoint, epoch or step.
    fn newest(run: &RunDir, batches_per_epoch: usize) -> Option<Self> {
        let epoch = run.last_checkpoint();
        match run.last_step_checkpoint() {
            Some(step) if step > epoch.unwrap_or(0) * batches_per_epoch => Some(Self::Step(step)),
            _ => epoch.map(Self::Epoch),
        }
    }
}

impl std::fmt::Display for ResumePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Epoch(epoch) => write!(f, "of epoch {epoch}"),
            Self::Step(step) => write!(f, "of step {step}"),
        }
    }
}

/// A resumed run keeps its saved configuration; only the epoch count may grow, and a new
/// time limit applies to the resumed part.
fn resumed_config(run: &RunDir, requested: RunConfig) -> Result<RunConfig> {
    let mut saved = RunConfig::load(&run.config_path())?;
    saved.training.epochs = requested.training.epochs.max(saved.training.epochs);
    saved.training.time_limit = requested.training.time_limit;
    Ok(saved)
}
