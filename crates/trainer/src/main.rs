//! `trainer`: train character-level LSTM text generators, sample from them, evaluate them.

mod allocator;
mod backend;
mod bench;
mod checkpointer;
mod cli;
mod config;
mod curves;
mod dashboard_sample;
mod download;
mod epoch_log;
mod evaluating;
mod exchange;
mod generating;
mod progress;
mod run_dir;
mod step_checkpoints;
mod strategy;
mod training;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::training::Finished;

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let done = |result: anyhow::Result<()>| result.map(|()| Finished::Completed);
    let result = match cli.command {
        None => training::train(&cli.train),
        Some(Command::Train(args)) => training::train(&args),
        Some(Command::Generate(args)) => done(generating::generate(&args)),
        Some(Command::Bench(args)) => done(bench::bench(&args)),
        Some(Command::Eval(args)) => done(evaluating::eval(&args)),
        Some(Command::Import(args)) => done(exchange::import(&args)),
        Some(Command::Export(args)) => done(exchange::export(&args)),
    };
    match result {
        Ok(Finished::Completed) => ExitCode::SUCCESS,
        // The shell's code for a process ended by SIGINT.
        Ok(Finished::Interrupted) => ExitCode::from(130),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
