//! `trainer eval`: the loss of a trained run over a text file.

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{EvalArgs, EvalMode};
use crate::run::run_dir::RunDir;

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
    predictions: usize,
    /// Mean cross-entropy, nats per character.
    loss: f64,
    /// Bits per character.
    bpc: f64,
    perplexity: f64,
}

/// Evaluates the run on `--text` and prints the result.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.device.device()?;
    let (config, trained) = RunDir::new(&args.run).load(&device)?;
    let (vocab, model) = (&trained.vocab, &trained.model);
    let text = char_lstm_data::load_text(&args.text)?;
    let tokens = vocab
        .encode(&text)
        .with_context(|| format!("{}: not in the run's vocabulary", args.text.display()))?;
    let seq_len = config.data.seq_len;
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
                char_lstm::evaluate_stream(model, &tokens, STREAM_CHUNK),
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
                char_lstm::evaluate_windows(model, &tokens, seq_len, WINDOW_BATCH),
            )
        }
    };
    let report = EvalReport {
        mode,
        text: args.text.display().to_string(),
        predictions: evaluation.predictions,
        loss: evaluation.mean_loss(),
        bpc: evaluation.bits_per_token(),
        perplexity: evaluation.perplexity(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} ({mode}, {} predictions): loss {:.4} nats/char, {:.4} bits/char, perplexity {:.3}",
            report.text, report.predictions, report.loss, report.bpc, report.perplexity
        );
    }
    Ok(())
}
