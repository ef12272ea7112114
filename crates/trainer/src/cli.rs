//! The command line.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::{BackendKind, DeviceArgs};

/// Train character-level LSTM text generators and sample from them.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; training when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Training options, when no subcommand is given.
    #[command(flatten)]
    pub train: TrainArgs,
}

impl Cli {
    /// The backend the command computes on (import and export work on the CPU).
    pub fn backend(&self) -> BackendKind {
        match &self.command {
            Some(Command::Serve(args)) => args.backend,
            _ => self
                .device()
                .map_or(BackendKind::Flex, |device| device.backend),
        }
    }

    /// With `--backend remote`: the server's URL, and how to go on after losing it (a run
    /// that trains resumes).
    pub fn remote(&self) -> Option<(&str, &'static str)> {
        const RESUME: &str = "; the run keeps its last checkpoint: continue it with --resume";
        let server = self.device()?.server()?;
        let trains = matches!(self.command, None | Some(Command::Train(_)));
        Some((server, if trains { RESUME } else { "" }))
    }

    /// Where the command computes, for the commands that choose.
    fn device(&self) -> Option<&DeviceArgs> {
        match &self.command {
            None => Some(&self.train.device),
            Some(Command::Train(args)) => Some(&args.device),
            Some(Command::Generate(args)) => Some(&args.device),
            Some(Command::Bench(args)) => Some(&args.device),
            Some(Command::Eval(args)) => Some(&args.device),
            Some(Command::Import(_) | Command::Export(_) | Command::Serve(_)) => None,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (the default).
    Train(TrainArgs),
    /// Sample text from a trained run.
    Generate(GenerateArgs),
    /// Measure training and sampling throughput; prints one JSON object.
    Bench(BenchArgs),
    /// Mean loss, bits per character and perplexity of a run over a text file.
    Eval(EvalArgs),
    /// Make a run directory from a PyTorch `state_dict` of the tutorial's model.
    Import(ImportArgs),
    /// Write a run's weights as SafeTensors with PyTorch's names.
    Export(ExportArgs),
    /// Serve this machine's devices to `--backend remote` clients until Ctrl-C.
    Serve(ServeArgs),
}

/// `trainer train`.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// A TOML experiment file; the built-in tutorial example when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The run directory; `runs/<config file stem>` when omitted.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Override one config key, e.g. `--set training.epochs=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Train data-parallel on this many devices of the backend (`training.devices`).
    #[arg(long)]
    pub devices: Option<usize>,
    /// Size the run for this much wall time, e.g. `30m` (`training.budget`): what the config
    /// file and `--set` leave open is chosen from the text and this machine's measured speed.
    #[arg(long, value_name = "DURATION")]
    pub budget: Option<String>,
    /// Plain progress lines instead of the dashboard, even on a terminal.
    #[arg(long)]
    pub no_tui: bool,
    /// Continue the run in `--run` from its last checkpoint.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start over in a run directory that already holds a run.
    #[arg(long)]
    pub force: bool,
}

impl TrainArgs {
    /// The `--set`s, then `--devices` and `--budget` as the keys they stand for.
    pub fn overrides(&self) -> Vec<String> {
        let budget = self
            .budget
            .as_ref()
            .map(|b| format!("training.budget={b:?}"));
        overrides(&self.sets, self.devices)
            .into_iter()
            .chain(budget)
            .collect()
    }
}

/// `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run directory to load; repeat it to sample from an ensemble, the mean of the runs'
    /// probabilities (the first run's `[generate]` settings apply).
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// The text to start from; the run's `generate.prompt` when omitted.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Characters to generate.
    #[arg(long)]
    pub length: Option<usize>,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Keep the k most likely characters (clamped to the vocabulary).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// The sampling seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Independent samples drawn at once, as one batch.
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `trainer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A TOML experiment file; the built-in tutorial example when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Override one config key, e.g. `--set data.path=input.txt` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Train data-parallel on this many devices of the backend (`training.devices`).
    #[arg(long)]
    pub devices: Option<usize>,
    /// Timed training steps (the median is reported).
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub steps: usize,
    /// Untimed training steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Characters sampled for the single-stream speed (a quarter of it per stream for 32).
    #[arg(long, default_value_t = 2000)]
    pub sample_length: usize,
    /// The LSTM implementation to measure.
    #[arg(long, value_enum, default_value_t = LstmChoice::Fused)]
    pub lstm: LstmChoice,
    /// Also time the same training step built from `burn::nn::Lstm`.
    #[arg(long)]
    pub with_nn_lstm: bool,
}

/// The `--set` overrides, then `--devices` as the last of them.
pub fn overrides(sets: &[String], devices: Option<usize>) -> Vec<String> {
    let devices = devices.map(|n| format!("training.devices={n}"));
    sets.iter().cloned().chain(devices).collect()
}

/// A whole number of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?}: expected a whole number >= 1")),
    }
}

/// Which LSTM implementation `bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LstmChoice {
    /// The fused sequence op where the backend has one, composed ops elsewhere.
    Fused,
    /// Composed tensor ops on every backend.
    Composed,
}

/// `trainer eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory to load; repeat it to evaluate an ensemble, which predicts each
    /// character with the mean of the runs' probabilities.
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// The text to evaluate on (every character must be in the run's vocabulary).
    #[arg(long)]
    pub text: PathBuf,
    /// How to read the text.
    #[arg(long, value_enum, default_value_t = EvalMode::Stream)]
    pub mode: EvalMode,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where to compute.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// How `eval` reads the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalMode {
    /// As one sequence, the state carried from chunk to chunk.
    Stream,
    /// In non-overlapping windows of the run's `seq_len`, each from a zero state.
    Windows,
}

/// `trainer serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TCP port to listen on; 0 picks a free one (printed).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// The address to listen on; loopback unless given (WebSocket is unencrypted: serve
    /// `0.0.0.0` only on a trusted network).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// This machine's backend whose devices to serve.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// How many of its devices to serve (clients pick them by index with `--devices`).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub devices: usize,
    /// A file holding the token clients must present (else the environment variable
    /// `CHAR_LSTM_TOKEN`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `trainer import`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("vocabulary").required(true).args(["vocab_text", "vocab"])))]
pub struct ImportArgs {
    /// The `state_dict` saved with `torch.save` (`.pt`/`.pth`).
    #[arg(long)]
    pub pytorch: PathBuf,
    /// The text the model was trained on; its vocabulary is `sorted(set(text))`.
    #[arg(long)]
    pub vocab_text: Option<PathBuf>,
    /// A `vocab.json` instead of the text.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// The run directory to create; `runs/<file stem>` when omitted.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Replace a run directory that already holds a run.
    #[arg(long)]
    pub force: bool,
}

/// `trainer export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory to export.
    #[arg(long)]
    pub run: PathBuf,
    /// The SafeTensors file to write (a new file; an existing one only with `--force`).
    #[arg(long)]
    pub safetensors: PathBuf,
    /// Replace an existing SafeTensors file.
    #[arg(long)]
    pub force: bool,
}
