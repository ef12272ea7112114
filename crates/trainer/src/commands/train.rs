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

use crate::budget::Budget;
use crate::cli::TrainArgs;
use crate::commands::generate::{Samples, write_samples};
use crate::config::{DataMode, LrSchedule, RunConfig};
use crate::run::epoch_log::EpochLog;
use crate::run::replacement::{Replacement, settle_left_behind};
use crate::run::run_dir::{RunDir, RunLock};
use crate::text_source::load_training_text;
use crate::training::best_weights::BestWeights;
use crate::training::checkpointer::AtomicCheckpointer;
use crate::training::data_parallel::DataParallel;
use crate::training::step_checkpoints::{self, Position};
use crate::training::strategy::{EarlyEnd, EpochSample, RunOptions, RunStrategy, StepPlan};
use crate::training::unchecked_losses::{DEVICE_CHECK_EVERY, NonFinite};
use crate::training::weight_average::WeightAverage;
use crate::ui::dashboard_sample::{LatestSample, SampleMetric};
use crate::ui::progress::{CurrentEpoch, PlainProgress};

/// How a training command ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Every epoch ran, or the time limit ended the run as asked.
    Completed,
    /// Ctrl-C or SIGTERM stopped it; a step checkpoint holds the weights so far.
    Interrupted,
}

/// Trains as `args` say, saves the run directory, and prints a sample.
pub fn train(args: &TrainArgs) -> Result<Finished> {
    let prepared = prepare(args)?;
    let plain = args.no_tui || !std::io::stdout().is_terminal();
    let server = args.device.server();
    let ran = build(&prepared, plain).and_then(|built| report(&prepared, launch(built), server));
    let (result, remove_directory) = settle(&prepared, ran);
    let path = prepared.run.path().to_path_buf();
    drop(prepared);
    if remove_directory {
        // Only if nothing is left in it (the lock went with `prepared`).
        let _ = std::fs::remove_dir(path);
    }
    result
}

/// Runs the training burn-train was set up for; how it ended.
fn launch(built: Built) -> Outcome {
    let Built {
        training,
        learner,
        early_end,
        interrupted,
        batches_per_epoch,
    } = built;
    let result = training.launch(learner);
    drop(result.renderer);
    Outcome {
        model: result.model,
        error: result.error.map(|e| e.to_string()),
        early_end: early_end.lock().expect("not poisoned").clone(),
        interrupted: interrupted.load(Ordering::SeqCst),
        batches_per_epoch,
    }
}

/// A new run's claim on its directory, settled: kept once the run has a checkpoint, rolled back
/// otherwise (its files removed, a run it replaced restored). The run's result, or the failure
/// to settle, and whether the directory this command created should go too.
fn settle(prepared: &Prepared, result: Result<Finished>) -> (Result<Finished>, bool) {
    let Some(mut replacement) = prepared.replacement.lock().expect("not poisoned").take() else {
        return (result, false);
    };
    if prepared.run.has_checkpoint() {
        return (result.and_then(|f| replacement.commit().map(|()| f)), false);
    }
    let created = replacement.created();
    match (result, replacement.roll_back()) {
        (Ok(finished), Ok(())) => (Ok(finished), created),
        (Ok(_), Err(e)) | (Err(e), _) => (Err(e), created),
    }
}

/// The run directory, claimed, with its configuration, vocabulary and windows.
struct Prepared {
    run: RunDir,
    _lock: RunLock,
    config: RunConfig,
    vocab: CharVocab,
    resume: bool,
    /// The devices to train on, with autodiff, and how their gradients meet; the model lives
    /// on the first.
    parallel: DataParallel,
    /// Steps whose losses the loop reads at once.
    loss_check_every: usize,
    prompt: Vec<u32>,
    train_windows: TextWindows,
    valid_windows: TextWindows,
    /// A new run's claim on the directory, until its first checkpoint.
    replacement: Arc<Mutex<Option<Replacement>>>,
}

/// Resolves the configuration, loads the text and cuts it, checks the prompt and the backend,
/// and only then claims the run directory (a run that `--force` replaces is moved aside until
/// the new one has a checkpoint) and saves the configuration and vocabulary.
fn prepare(args: &TrainArgs) -> Result<Prepared> {
    let run = RunDir::new(args.run.clone().unwrap_or_else(|| default_run_dir(args)));
    let existed = run.path().is_dir();
    // Taken before anything in an existing directory changes; a new directory is locked as
    // soon as it exists.
    let existing_lock = existed.then(|| run.lock()).transpose()?;
    if existed {
        settle_left_behind(&run)?;
    }
    let (mut config, given) = if args.resume {
        if !run.has_checkpoint() {
            bail!(
                "--resume: {} has no complete checkpoint to resume from",
                run.path().display()
            );
        }
        let saved = RunConfig::load(&run.config_path())?;
        let resumed = RunConfig::resumed(&saved, args.config.as_deref(), &args.overrides())?;
        (resumed, None)
    } else {
        let (config, given) = RunConfig::resolve_given(args.config.as_deref(), &args.overrides())?;
        run.refuse_to_overwrite(args.force)?;
        (config, Some(given))
    };
    // A resumed run's saved config holds what its budget chose.
    let budget = match given {
        Some(given) => Budget::start(&config, given)?,
        None => None,
    };
    config.make_data_path_absolute()?;
    let text = load_training_text(&config)?;
    let vocab = if args.resume {
        CharVocab::load(&run.vocab_path())?
    } else {
        CharVocab::from_text(&text)?
    };
    config.model = config.model_for(&vocab)?;
    let tokens: Arc<[u32]> = vocab
        .encode(&text)
        .context("the training text has characters outside the run's vocabulary")?
        .into();
    if let Some(budget) = &budget {
        budget.cut_data(&mut config, tokens.len());
    }
    let (train_windows, valid_windows) =
        windows(&config, tokens.clone()).with_context(|| match config.data_path() {
            Some(path) => format!("{}", path.display()),
            None => "the built-in example text".into(),
        })?;
    let prompt = sample_prompt(&mut config, &vocab)?;
    let devices: Vec<Device> = (args.device.devices(config.training.devices)?)
        .into_iter()
        .map(Device::autodiff)
        .collect();
    println!(
        "text: {} characters, vocabulary {}, {} training windows, {} validation windows",
        tokens.len(),
        vocab.len(),
        train_windows.len(),
        valid_windows.len()
    );
    let parallel = DataParallel::of(args.device.backend, devices);
    if parallel.devices().len() > 1 {
        let t = &config.training;
        println!(
            "data-parallel on {} {} devices: {} windows each, {} per step, gradients {}",
            parallel.devices().len(),
            args.device.backend.name(),
            t.batch_size,
            t.global_batch_size(),
            if parallel.all_reduces() {
                "all-reduced"
            } else {
                "gathered"
            }
        );
    }
    if let Some(budget) = &budget {
        let split = TextSplit::by_position(tokens.len(), config.data.valid_fraction);
        let windows = [&train_windows, &valid_windows];
        println!(
            "{}",
            budget.size_model(&mut config, split.train.len(), windows, &parallel)
        );
    }
    let replacement = (!args.resume)
        .then(|| Replacement::begin(&run, args.force, !existed))
        .transpose()?;
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
        resume: args.resume,
        parallel,
        loss_check_every: if args.device.backend.reads_wait() {
            DEVICE_CHECK_EVERY
        } else {
            1
        },
        prompt,
        train_windows,
        valid_windows,
        replacement: Arc::new(Mutex::new(replacement)),
    })
}

/// The epoch samples' prompt, encoded. One the vocabulary cannot encode is an error before
/// training, unless it is the built-in default, which gives way to the text's first character.
fn sample_prompt(config: &mut RunConfig, vocab: &CharVocab) -> Result<Vec<u32>> {
    let prompt = &config.generate.prompt;
    match vocab.encode(prompt) {
        Ok(ids) => Ok(ids),
        Err(_) if *prompt == RunConfig::default().generate.prompt => {
            let first = vocab.decode(&[0]);
            println!(
                "generate.prompt: the text lacks {prompt:?}'s characters; samples start from {first:?}"
            );
            config.generate.prompt = first;
            Ok(vec![0])
        }
        Err(e) => bail!(
            "generate.prompt = {}: {e} of the training text",
            crate::commands::generate::quoted(prompt)
        ),
    }
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
            t.global_batch_size(),
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
fn build(prepared: &Prepared, plain: bool) -> Result<Built> {
    let Prepared {
        run,
        config,
        parallel,
        ..
    } = prepared;
    let device = parallel.main_device();
    let t = &config.training;
    device.seed(t.seed);
    let lm = config.model.init(device);
    let stream = config.data.mode == DataMode::Stream;
    // One worker, so batches arrive in the dataset's order: in stream mode each batch continues
    // the one before, row by row; in windows mode the order is a function of seed and epoch.
    let train_builder = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.global_batch_size())
        .num_workers(1);
    let train_windows = prepared.train_windows.clone();
    let (train_loader, order): (_, Option<EpochOrder>) = if stream {
        (train_builder.build(train_windows), None)
    } else {
        let (shuffled, order) = EpochShuffled::new(train_windows, t.seed);
        (train_builder.build(shuffled), Some(order))
    };
    let batches_per_epoch = prepared.train_windows.len().div_ceil(t.global_batch_size());
    let resume = prepared
        .resume
        .then(|| ResumePoint::newest(run, batches_per_epoch))
        .flatten();
    let valid_loader = DataLoaderBuilder::new(WindowBatcher)
        .batch_size(t.global_batch_size())
        .num_workers(t.num_workers)
        .build(prepared.valid_windows.clone());

    let sample = epoch_sample(prepared, plain);
    let sample_metric = SampleMetric::new(sample.latest.clone());
    let interrupted = Arc::new(AtomicBool::new(false));
    let current_epoch = CurrentEpoch::default();
    let resume_after = match resume {
        Some(ResumePoint::Step(step)) => Some(step),
        _ => None,
    };
    let (strategy, early_end) = RunStrategy::new(
        parallel.clone(),
        RunOptions {
            time_limit: config.time_limit()?,
            stream,
            grad_clip_norm: (t.grad_clip_norm > 0.0).then_some(t.grad_clip_norm),
            loss_check_every: prepared.loss_check_every,
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
            epoch_log: EpochLog::new(run.metrics_path()),
            best: Mutex::new(BestWeights::new(run.clone())?),
            average: average(config, &lm, run, resume)?,
            replacement: prepared.replacement.clone(),
            run: run.clone(),
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
        .num_epochs(t.epochs)
        .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)));
    if plain {
        training = training.renderer(Box::new(PlainProgress::new(current_epoch)));
    }
    let interrupter = training.interrupter();
    let flag = interrupted.clone();
    // Ctrl-C stops after the current step, which a step checkpoint then saves. (The
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

/// `training.ema_decay`'s average as the run starts: empty, or for a resumed run the one its
/// checkpoint saved.
fn average(
    config: &RunConfig,
    model: &LstmLanguageModel,
    run: &RunDir,
    resume: Option<ResumePoint>,
) -> Result<WeightAverage> {
    let mut average = WeightAverage::new(config.training.ema_decay);
    match resume {
        Some(ResumePoint::Epoch(epoch)) => average.restore(model, &run.checkpoint_dir(), epoch)?,
        Some(ResumePoint::Step(step)) => {
            average.restore(model, &run.step_checkpoint_dir(), step)?
        }
        None => {}
    }
    Ok(average)
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
fn epoch_sample(prepared: &Prepared, plain: bool) -> EpochSample {
    let g = &prepared.config.generate;
    EpochSample {
        prompt: prepared.prompt.clone(),
        vocab: prepared.vocab.clone(),
        length: g.length,
        sampling: g.sampling.clone(),
        path: prepared.run.samples_path(),
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

/// Says how the run ended and where to resume; after a finished run prints a sample from the
/// best epoch's weights (which the loop keeps in `model.bpk`). `server`: the `--remote` one the
/// run computed on.
fn report(prepared: &Prepared, outcome: Outcome, server: Option<&str>) -> Result<Finished> {
    let Prepared {
        run, config, vocab, ..
    } = prepared;
    let good = || match ResumePoint::newest(run, outcome.batches_per_epoch) {
        Some(point) => format!(
            "the checkpoint {point} is intact; continue with --resume --run {}",
            run.path().display()
        ),
        None => "no checkpoint was written, so nothing of this run was kept".to_string(),
    };
    if let Some(error) = &outcome.error {
        // A metric's failed read of a lost server's tensor can end the run before the remote
        // client's panic does: name the server here too.
        let place = server
            .map(|url| format!(" on --remote {url}"))
            .unwrap_or_default();
        bail!("training failed{place}: {error}; {}", good());
    }
    match &outcome.early_end {
        Some(EarlyEnd::NonFiniteLoss(NonFinite { epoch, step, loss })) => bail!(
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
        // `model.bpk` stays the best epoch's, as `best.json` says; before any epoch has
        // ended it gets the weights so far, so that there is something to generate from.
        let kept = if run.model_path().exists() {
            format!(
                "{} keeps the best epoch's weights",
                run.model_path().display()
            )
        } else {
            run.save_model(&outcome.model)?;
            format!("saved the weights so far to {}", run.model_path().display())
        };
        println!("interrupted: {kept}; {}", good());
        return Ok(Finished::Interrupted);
    }
    let lm =
        if run.model_path().exists() {
            let path = run.model_path();
            outcome.model.valid().try_load_file(&path).map_err(|e| {
                anyhow::anyhow!("{}: cannot load the best weights: {e}", path.display())
            })?
        } else {
            run.save_model(&outcome.model)?;
            outcome.model.valid()
        };
    if let Ok(best) = std::fs::read_to_string(run.best_path()) {
        println!(
            "best epoch: {}",
            best.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    println!("saved {}", run.model_path().display());

    let g = &config.generate;
    println!(
        "sample (temperature {}, seed {}):",
        g.sampling.temperature, g.sampling.seed
    );
    let samples = Samples {
        prompt: &g.prompt,
        length: g.length,
        count: 1,
        sampling: &g.sampling,
    };
    write_samples(&[&lm], vocab, &samples, None)?;
    Ok(Finished::Completed)
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
