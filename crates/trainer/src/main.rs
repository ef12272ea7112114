//! `trainer`: train character-level LSTM text generators, sample from them, evaluate them.

mod backend;
mod bench;
mod cli;
mod config;
mod curves;
mod download;
mod epoch_log;
mod evaluating;
mod exchange;
mod generating;
mod progress;
mod run_dir;
mod training;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => training::train(&cli.train),
        Some(Command::Train(args)) => training::train(&args),
        Some(Command::Generate(args)) => generating::generate(&args),
        Some(Command::Bench(args)) => bench::bench(&args),
        Some(Command::Eval(args)) => evaluating::eval(&args),
        Some(Command::Import(args)) => exchange::import(&args),
        Some(Command::Export(args)) => exchange::export(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
