//! Loads a run directory written by `trainer` and continues a prompt.
//!
//! `cargo run --release -p char-lstm --example generate -- runs/default "Hello"`

use burn::tensor::Device;
use char_lstm::{GenerationConfig, SamplingConfig, TrainedModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: generate RUN_DIR [PROMPT]")?;
    let prompt = args.next().unwrap_or_else(|| "Hello".into());

    let run = TrainedModel::load(&dir, &Device::flex())?;
    let sampling = SamplingConfig::new().with_temperature(0.8).with_seed(7);
    let config = GenerationConfig::new()
        .with_length(200)
        .with_sampling(sampling);
    println!("{prompt}{}", run.generate(&prompt, &config)?);
    Ok(())
}
