//! `trainer generate`: stream text from a trained run.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use char_lstm::{CharVocab, LstmLanguageModel, SamplingConfig, SamplingError, TokenGenerator};

use crate::cli::GenerateArgs;
use crate::commands::train::Finished;
use crate::run::ensemble::load_ensemble;

/// How often batched generation reports its progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Loads the run (or the ensemble of the runs) and prints `--num-samples` samples of
/// `--length` characters; Ctrl-C stops it with what was drawn so far printed.
pub fn generate(args: &GenerateArgs) -> Result<Finished> {
    let device = args.device.device()?;
    let runs = load_ensemble(&args.run, &device)?;
    let (config, first) = &runs[0];
    let g = &config.generate;
    let saved = &g.sampling;
    let sampling = SamplingConfig::new()
        .with_temperature(args.temperature.unwrap_or(saved.temperature))
        .with_top_k(args.top_k.unwrap_or(saved.top_k))
        .with_top_p(args.top_p.unwrap_or(saved.top_p))
        .with_seed(args.seed.unwrap_or(saved.seed));
    sampling.validate().map_err(|e| match e {
        SamplingError::Temperature(t) => {
            anyhow::anyhow!("--temperature {t}: expected a finite number >= 0 (0 = greedy)")
        }
        SamplingError::TopP(p) => anyhow::anyhow!("--top-p {p}: expected a number in (0, 1]"),
    })?;
    let prompt = args.prompt.as_deref().unwrap_or(&g.prompt);
    let length = args.length.unwrap_or(g.length);
    if length == 0 {
        bail!("--length 0: expected a whole number >= 1");
    }
    if args.num_samples == 0 {
        bail!("--num-samples 0: expected a whole number >= 1");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    let samples = Samples {
        prompt,
        length,
        count: args.num_samples,
        sampling: &sampling,
    };
    let models: Vec<_> = runs.iter().map(|(_, trained)| &trained.model).collect();
    write_samples(&models, &first.vocab, &samples, Some(&stop))
}

/// What to generate.
pub struct Samples<'a> {
    /// The text every sample continues.
    pub prompt: &'a str,
    /// Characters per sample.
    pub length: usize,
    /// Independent samples, drawn as one batch.
    pub count: usize,
    /// How each character is drawn.
    pub sampling: &'a SamplingConfig,
}

/// Prints `prompt` and its continuation by `models` (one model, or an ensemble drawing from
/// the mean of their probabilities); a single sample streams character by character, many
/// samples print one after another once drawn, with their progress on stderr meanwhile. When
/// `stop` is set (Ctrl-C) generation ends early, what was drawn is printed, and the result is
/// [`Finished::Interrupted`].
pub fn write_samples(
    models: &[&LstmLanguageModel],
    vocab: &CharVocab,
    samples: &Samples<'_>,
    stop: Option<&AtomicBool>,
) -> Result<Finished> {
    char_lstm::on_decoder_threads(|| print_samples(models, vocab, samples, stop))
}

/// [`write_samples`]'s work, on the thread it draws on.
fn print_samples(
    models: &[&LstmLanguageModel],
    vocab: &CharVocab,
    samples: &Samples<'_>,
    stop: Option<&AtomicBool>,
) -> Result<Finished> {
    let Samples {
        prompt,
        length,
        count,
        sampling,
    } = *samples;
    if prompt.is_empty() {
        bail!("the prompt is empty: expected at least one character");
    }
    let ids = vocab
        .encode(prompt)
        .map_err(|e| anyhow::anyhow!("prompt {}: {e}", quoted(prompt)))?;
    let mut generator = TokenGenerator::ensemble(models, &ids, count, sampling)?;
    let mut out = std::io::stdout().lock();
    let mut texts = vec![String::new(); count];
    if count == 1 {
        write!(out, "{prompt}")?;
    }
    let (started, mut reported) = (Instant::now(), Instant::now());
    let mut drawn = 0;
    while drawn < length && !stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
        let tokens = generator.next_tokens();
        drawn += 1;
        for (text, &id) in texts.iter_mut().zip(tokens) {
            text.push(vocab.char(id).expect("model ids are in the vocabulary"));
        }
        if count == 1 {
            write!(out, "{}", texts[0])?;
            out.flush()?;
            texts[0].clear();
        } else if reported.elapsed() >= PROGRESS_EVERY {
            let rate = (drawn * count) as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "generated {drawn} of {length} characters of each of {count} samples ({rate:.0} chars/s)"
            );
            reported = Instant::now();
        }
    }
    if count == 1 {
        writeln!(out)?;
    } else {
        for (i, text) in texts.iter().enumerate() {
            writeln!(out, "--- sample {} ---\n{prompt}{text}", i + 1)?;
        }
    }
    if drawn < length {
        eprintln!("interrupted after {drawn} of {length} characters");
        return Ok(Finished::Interrupted);
    }
    Ok(Finished::Completed)
}

/// `text` in quotes, cut to its first 40 characters, for error messages.
pub fn quoted(text: &str) -> String {
    let mut shown: String = text.chars().take(40).collect();
    if text.chars().nth(40).is_some() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}
