//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::backend::Backend;

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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (the default).
    Train(TrainArgs),
    /// Sample text from a trained run.
    Generate(GenerateArgs),
}

/// `trainer train`.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// A TOML experiment file; the built-in tutorial example when omitted.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// The run directory; `runs/<config file stem>` when omitted.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Override one config key, e.g. `--set training.epochs=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
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

/// `trainer generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run directory to load.
    #[arg(long)]
    pub run: PathBuf,
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
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}
