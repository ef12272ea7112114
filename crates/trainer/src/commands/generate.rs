//! `trainer generate`: stream text from a trained run.

use std::io::Write;

use anyhow::{Result, bail};
use char_lstm::{CharVocab, GenerationConfig, LstmLanguageModel, SamplingConfig};

use crate::cli::GenerateArgs;
use crate::run::run_dir::RunDir;

/// Loads the run and prints `--num-samples` samples of `--length` characters.
pub fn generate(args: &GenerateArgs) -> Result<()> {
    let device = args.backend.device()?;
    let (config, trained) = RunDir::new(&args.run).load(&device)?;
    let g = &config.generate;
    let saved = &g.sampling;
    let sampling = SamplingConfig::new()
        .with_temperature(args.temperature.unwrap_or(saved.temperature))
        .with_top_k(args.top_k.unwrap_or(saved.top_k))
        .with_top_p(args.top_p.unwrap_or(saved.top_p))
        .with_seed(args.seed.unwrap_or(saved.seed));
    sampling
        .validate()
        .map_err(|e| anyhow::anyhow!("--{e}").context("invalid sampling option"))?;
    let prompt = args.prompt.as_deref().unwrap_or(&g.prompt);
    let length = args.length.unwrap_or(g.length);
    if length == 0 {
        bail!("--length 0: expected a whole number >= 1");
    }
    if args.num_samples == 0 {
        bail!("--num-samples 0: expected a whole number >= 1");
    }
    write_samples(
        &trained.model,
        &trained.vocab,
        prompt,
        length,
        args.num_samples,
        &sampling,
    )
}

/// Prints `prompt` and its continuation; a single sample streams character by character, many
/// samples print one after another once drawn.
pub fn write_samples(
    model: &LstmLanguageModel,
    vocab: &CharVocab,
    prompt: &str,
    length: usize,
    num_samples: usize,
    sampling: &SamplingConfig,
) -> Result<()> {
    if prompt.is_empty() {
        bail!("the prompt is empty: expected at least one character");
    }
    let ids = vocab
        .encode(prompt)
        .map_err(|e| anyhow::anyhow!("prompt {prompt:?}: {e}"))?;
    let mut out = std::io::stdout().lock();
    let mut streams = vec![String::new(); num_samples];
    if num_samples == 1 {
        write!(out, "{prompt}")?;
    }
    let mut io_error = None;
    let config = GenerationConfig::new()
        .with_length(length)
        .with_sampling(sampling.clone());
    char_lstm::generate(model, &ids, num_samples, &config, |drawn| {
        if num_samples == 1 {
            let c = vocab
                .char(drawn[0])
                .expect("model ids are in the vocabulary");
            if let Err(e) = write!(out, "{c}").and_then(|()| out.flush()) {
                io_error.get_or_insert(e);
            }
        } else {
            for (text, &id) in streams.iter_mut().zip(drawn) {
                text.push(vocab.char(id).expect("model ids are in the vocabulary"));
            }
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    if num_samples == 1 {
        writeln!(out)?;
    } else {
        for (i, text) in streams.iter().enumerate() {
            writeln!(out, "--- sample {} ---\n{prompt}{text}", i + 1)?;
        }
    }
    Ok(())
}
