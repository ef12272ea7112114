//! Loads a run directory written by `trainer` and continues a prompt.
//!
//! `cargo run --release -p model --example generate -- runs/default "Hello"`

use burn::module::Module;
use burn::tensor::Device;
use model::{LstmLanguageModelConfig, SamplingConfig, generate};

fn main() {
    let mut args = std::env::args().skip(1);
    let run = std::path::PathBuf::from(args.next().expect("usage: generate RUN_DIR [PROMPT]"));
    let prompt = args.next().unwrap_or_else(|| "Hello".into());

    let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
        .expect("config.toml")
        .parse()
        .expect("valid TOML");
    let model = &config["model"];
    let dim = |key: &str| model[key].as_integer().expect("an integer") as usize;
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("vocab.json")).expect("vocab.json"))
            .expect("valid JSON");
    let chars: Vec<char> = vocab["chars"]
        .as_array()
        .expect("a list of characters")
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(|s| s.chars().next())
                .expect("one character")
        })
        .collect();

    let device = Device::flex();
    let lm = LstmLanguageModelConfig::new(chars.len())
        .with_embedding_dim(dim("embedding_dim"))
        .with_hidden_dim(dim("hidden_dim"))
        .with_num_layers(dim("num_layers"))
        .init(&device)
        .try_load_file(run.join("model.bpk"))
        .expect("the weights match config.toml");

    let ids: Vec<u32> = prompt
        .chars()
        .map(|c| {
            chars
                .binary_search(&c)
                .expect("a prompt character outside the vocabulary") as u32
        })
        .collect();
    print!("{prompt}");
    let sampling = SamplingConfig::new().with_temperature(0.8).with_seed(7);
    generate(&lm, &ids, 1, 200, &sampling, |drawn| {
        print!("{}", chars[drawn[0] as usize])
    })
    .unwrap();
    println!();
}
