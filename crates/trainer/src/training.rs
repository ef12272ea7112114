//! `trainer train`: fit a model with burn-train's `Learner` and print a sample.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric, PerplexityMetric};
use burn::train::{Learner, SupervisedTraining, TrainingStrategy};
use data::{CharVocab, EpochShuffled, TextSplit, TextWindows, WindowBatcher};
use model::{LstmLanguageModel, TrainingOptions};

use crate::checkpointer::AtomicCheckpointer;
use crate::cli::TrainArgs;
use crate::config::{DataMode, EXAMPLE_TEXT, LrSchedule, RunConfig};
use crate::dashboard_sample::{LatestSample, SampleMetric};
use crate::epoch_log::EpochLog;
use crate::progress::PlainProgress;
use crate::run_dir::RunDir;
use crate::step_checkpoints::{self, Position};
use crate::strategy::{EarlyEnd, EpochSample, RunOptions, RunStrategy, StepPlan};

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
    let config = RunConfig::resolve(args.config.as_deref(), &args.sets)?;
    let run = RunDir::new(args.run.clone().unwrap_or_else(|| default_run_dir(args)));
    // Taken before anything in an existing directory changes; a new directory is locked as
    // soon as it exists.
    let existing_lock = run.path().is_dir().then(|| run.lock()).transpose()?;
    let resuming = prepare_run_dir(&run, args)?;
    let config = if resuming {
        resumed_config(&run, config)?
    } else {
        config
    };
    let text = load_training_text(&config)?;
    let vocab = if resuming {
        CharVocab::load(&run.vocab_path())?
    } else {
        CharVocab::from_text(&text)?
    };
    let tokens: Arc<[u32]> = vocab
        .encode(&text)
        .context("the training text has characters outside the run's vocabulary")?
        .into();

    let d = &config.data;
    let t = &config.training;
    let split = TextSplit::by_position(tokens.len(), d.valid_fraction);
    let stream = d.mode == DataMode::Stream;
    let train_windows = if stream {
        TextWindows::streams(
            tokens.clone(),
            split.train.clone(),
            d.seq_len,
            t.batch_size,
            "training",
        )?
    } else {
        TextWindows::new(
            tokens.clone(),
            split.train.clone(),
            d.seq_len,
            d.stride,
            "training",
        )?
    };
    let valid_windows = if split.valid_is_train() {
        println!("data.valid_fraction = 0: validating on the training windows (no held-out text)");
        train_windows.clone()
    } else {
        TextWindows::new(
            tokens.clone(),
            split.valid.clone(),
            d.seq_len,
            d.seq_len,
            "validation",
        )?
    };
    println!(
        "text: {} characters, vocabulary {}, {} training windows, {} validation windows",
        tokens.len(),
        vocab.len(),
        train_windows.len(),
        valid_windows.len()
    );
    run.save_setup(&config, &vocab)?;
    let _lock = match existing_lock {
        Some(lock) => lock,
        None => run.lock()?,
    };

    let device = args.backend.device()?.autodiff();
    let plain = args.no_tui || !std::io::stdout().is_terminal();
    device.seed(t.seed);
    let lm = config
        .model(vocab.len())
        .init(&device)
        .with_training_options(TrainingOptions {
            grad_clip_norm: (t.grad_clip_norm > 0.0).then_some(t.grad_clip_norm),
        });
    // One worker, so batches arrive in the dataset's order: in stream mode each batch continues
    // the one before, row by row; in windows mode the order is a function of seed and epoch.
    let train_builder = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.batch_size)
        .num_workers(1);
    let (train_loader, order) = if stream {
        (train_builder.build(train_windows.clone()), None)
    } else {
        let (shuffled, order) = EpochShuffled::new(train_windows.clone(), t.seed);
        (train_builder.build(shuffled), Some(order))
    };
    let batches_per_epoch = train_windows.len().div_ceil(t.batch_size);
    let resume = resuming
        .then(|| ResumePoint::newest(&run, batches_per_epoch))
        .flatten();
    let valid_loader = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.batch_size)
        .num_workers(t.num_workers)
        .build(valid_windows);

    let optim = config.optimizer().init();
    let steps = t.epochs * batches_per_epoch;
    let schedule: ModuleLrScheduler = match t.lr_schedule {
        LrSchedule::Constant => t.learning_rate.into(),
        LrSchedule::Cosine => CosineAnnealingLrSchedulerConfig::new(t.learning_rate, steps.max(1))
            .init()
            .map_err(|e| anyhow::anyhow!("training.lr_schedule = \"cosine\": {e}"))?,
    };

    let g = &config.generate;
    let sample = EpochSample {
        prompt: vocab
            .encode(&sample_prompt(&vocab, &g.prompt))
            .expect("the prompt is in the vocabulary"),
        vocab: vocab.clone(),
        length: g.length,
        sampling: config.sampling(),
        path: run.samples_path(),
        print: plain,
        latest: LatestSample::default(),
    };
    let sample_metric = SampleMetric::new(sample.latest.clone());
    let interrupted = Arc::new(AtomicBool::new(false));
    let resume_after = match resume {
        Some(ResumePoint::Step(step)) => Some(step),
        _ => None,
    };
    let (strategy, early_end) = RunStrategy::new(
        device.clone(),
        RunOptions {
            time_limit: config.time_limit()?,
            stream,
            sample,
            order,
            steps: StepPlan {
                directory: run.step_checkpoint_dir(),
                every: t.checkpoint_every,
                batches_per_epoch,
                resume_after,
            },
            interrupted: interrupted.clone(),
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
        training = training.renderer(Box::new(PlainProgress::new()));
    }
    let interrupter = training.interrupter();
    let flag = interrupted.clone();
    // Ctrl-C stops after the current step; the weights so far are saved below. (The dashboard
    // reads Ctrl-C itself, as a key.)
    ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        interrupter.stop(Some("interrupted"));
    })
    .context("cannot install the Ctrl-C handler")?;
    let mut learner = Learner::new(lm, optim, schedule);
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
    let result = training.launch(learner);
    drop(result.renderer);
    let good = || match ResumePoint::newest(&run, batches_per_epoch) {
        Some(point) => format!(
            "the checkpoint {point} is intact; continue with --resume --run {}",
            run.path().display()
        ),
        None => "no checkpoint was written yet".to_string(),
    };
    if let Some(error) = result.error {
        bail!("training failed: {error}; {}", good());
    }
    match early_end.lock().expect("not poisoned").clone() {
        Some(EarlyEnd::NonFiniteLoss { epoch, step, loss }) => bail!(
            "training stopped: the loss became {loss} at step {step} (epoch {epoch}), so those weights were not kept; {} (a lower training.learning_rate or training.grad_clip_norm may help)",
            good()
        ),
        Some(EarlyEnd::TimeLimit { epoch }) => {
            println!(
                "training.time_limit = {:?} reached in epoch {epoch}",
                t.time_limit
            )
        }
        None => {}
    }
    if interrupted.load(Ordering::SeqCst) {
        run.save_model(&result.model)?;
        println!(
            "interrupted: saved the weights so far to {}; {}",
            run.model_path().display(),
            good()
        );
        return Ok(Finished::Interrupted);
    }
    let lm = best_epoch_model(&run, result.model)?;
    run.save_model(&lm)?;
    println!("saved {}", run.model_path().display());

    println!("sample (temperature {}, seed {}):", g.temperature, g.seed);
    let prompt = sample_prompt(&vocab, &g.prompt);
    crate::generating::write_samples(&lm, &vocab, &prompt, g.length, 1, &config.sampling())?;
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
    let rows = crate::epoch_log::read(&run.metrics_path())?;
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

/// The training text: the built-in example, or `data.path`, downloaded from `data.url` first
/// when missing.
pub(crate) fn load_training_text(config: &RunConfig) -> Result<String> {
    let Some(path) = config.data_path() else {
        return Ok(EXAMPLE_TEXT.to_string());
    };
    if !path.exists() && !config.data.url.is_empty() {
        crate::download::download(&config.data.url, &path, &config.data.sha256)?;
    }
    Ok(data::load_text(&path)?)
}
