//! `trainer eval`: the loss of a trained run over a text file.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{EvalArgs, EvalMode};
use crate::run::ensemble::load_ensemble;

/// Characters per forward pass in stream mode; the state carries over, so this only trades
/// memory for speed (the PyTorch reference uses the same).
const STREAM_CHUNK: usize = 1000;
/// Windows per forward pass in windows mode.
const WINDOW_BATCH: usize = 256;

/// What `eval --json` prints.
#[derive(Debug, Serialize)]
struct EvalReport {
    mode: &'static str,
    text: String,
    /// How many runs' predictions were averaged (1: a single run).
    runs: usize,
    predictions: usize,
    /// Mean cross-entropy, nats per character.
    loss: f64,
    /// Bits per character.
    bpc: f64,
    perplexity: f64,
}

/// Evaluates the run, or the ensemble of the runs, on `--text` and prints the result.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.device.device()?;
    let runs = load_ensemble(&args.run, &device)?;
    let (first_config, first) = &runs[0];
    for ((config, _), dir) in runs.iter().zip(&args.run).skip(1) {
        let (seq_len, first_seq_len) = (config.data.seq_len, first_config.data.seq_len);
        if args.mode == EvalMode::Windows && seq_len != first_seq_len {
            bail!(
                "{}: data.seq_len = {seq_len}, where {} has {first_seq_len}; windows mode reads one window length",
                dir.display(),
                args.run[0].display()
            );
        }
    }
    let models: Vec<_> = runs.iter().map(|(_, trained)| &trained.model).collect();
    let text = char_lstm_data::load_text(&args.text)?;
    let tokens = first
        .vocab
        .encode(&text)
        .with_context(|| format!("{}: not in the run's vocabulary", args.text.display()))?;
    let seq_len = first_config.data.seq_len;
    let (mode, evaluation) = match args.mode {
        EvalMode::Stream => {
            if tokens.len() < 2 {
                bail!(
                    "{}: {} characters; stream evaluation needs at least 2",
                    args.text.display(),
                    tokens.len()
                );
            }
            (
                "stream",
                char_lstm::evaluate_ensemble_stream(&models, &tokens, STREAM_CHUNK),
            )
        }
        EvalMode::Windows => {
            if tokens.len() <= seq_len {
                bail!(
                    "{}: {} characters; windows of data.seq_len = {seq_len} need at least {}",
                    args.text.display(),
                    tokens.len(),
                    seq_len + 1
                );
            }
            (
                "windows",
                char_lstm::evaluate_ensemble_windows(&models, &tokens, seq_len, WINDOW_BATCH),
            )
        }
    };
    let report = EvalReport {
        mode,
        text: args.text.display().to_string(),
        runs: models.len(),
        predictions: evaluation.predictions,
        loss: evaluation.mean_loss(),
        bpc: evaluation.bits_per_token(),
        perplexity: evaluation.perplexity(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let ensemble = match report.runs {
            1 => String::new(),
            runs => format!(", ensemble of {runs} runs"),
        };
        println!(
            "{} ({mode}, {} predictions{ensemble}): loss {:.4} nats/char, {:.4} bits/char, perplexity {:.3}",
            report.text, report.predictions, report.loss, report.bpc, report.perplexity
        );
    }
    Ok(())
}
