//! `trainer`: train character-level LSTM text generators, sample from them, evaluate them.

mod allocator;
mod backend;
mod budget;
mod cli;
mod commands;
mod config;
mod download;
mod remote;
mod run;
mod text_source;
mod training;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::train::Finished;

/// What a debug build says first: the speed a user gives up.
const DEBUG_BUILD_NOTE: &str = "note: this trainer is a debug build (cargo without --release); `cargo run --release -p trainer` trains about 1.2x faster";

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    // Output into a reader that stops early (`trainer generate | head`) ends the process as it
    // ends `cat`, not in a panic of `println!` that leaves training's event thread dead and the
    // run waiting on it; a run keeps its last checkpoint, as after SIGKILL.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: no other thread exists yet; this restores the signal's default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if cfg!(debug_assertions) {
        eprintln!("{DEBUG_BUILD_NOTE}");
    }
    // Burn loads records (checkpoints) onto its default device first, and with the wgpu
    // feature built in that is a GPU, whose probe would touch Vulkan on a CPU run.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BURN_DEVICE", cli.backend().burn_device()) };
    }
    // A path that `CHAR_LSTM_SIMD` names but the CPU lacks is an error before any work.
    if let Err(e) = char_lstm::simd::Simd::from_env().and_then(|simd| simd.activate()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some((url, resume)) = cli.remote() {
        remote::report_lost_server(url, resume);
    }
    let done = |result: anyhow::Result<()>| result.map(|()| Finished::Completed);
    let result = match cli.command {
        None => commands::train::train(&cli.train),
        Some(Command::Train(args)) => commands::train::train(&args),
        Some(Command::Generate(args)) => commands::generate::generate(&args),
        Some(Command::Bench(args)) => done(commands::bench::bench(&args)),
        Some(Command::Eval(args)) => done(commands::eval::eval(&args)),
        Some(Command::Import(args)) => done(commands::exchange::import(&args)),
        Some(Command::Export(args)) => done(commands::exchange::export(&args)),
        Some(Command::Serve(args)) => done(commands::serve::serve(&args)),
    };
    match result {
        Ok(Finished::Completed) => ExitCode::SUCCESS,
        // The shell's code for a process ended by SIGINT.
        Ok(Finished::Interrupted) => ExitCode::from(130),
        Err(error) => {
            // One line whatever the libraries' messages hold (burn-train's span lines).
            let message = format!("{error:#}");
            eprintln!(
                "error: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::from(2)
        }
    }
}
