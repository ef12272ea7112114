//! A run directory written by `trainer` before the model crate took its own loader
//! (`tests/fixtures/run-2026-12-01`, a 2-layer model of 8 units trained one epoch on
//! `datasets/smoke.txt`) loads through `TrainedModel`, scores the loss that `trainer eval
//! --run DIR --text datasets/smoke.txt` printed then (so the weights and the forward are as
//! they were), and generates the text that `trainer generate --run DIR --prompt "The " --length
//! 60 --seed 3 --temperature 0.9` prints (recorded after sampling over the whole vocabulary
//! stopped sorting it, which changed the draws of a seed).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use char_lstm::{GenerationConfig, LoadError, SamplingConfig, TrainedModel, evaluate_stream};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn a_run_saved_before_this_loader_generates_what_it_generated_then() {
    let run = TrainedModel::load(fixtures().join("run-2026-12-01"), &Device::flex()).unwrap();
    assert_eq!(
        (
            run.config.vocab_size,
            run.config.hidden_dim,
            run.config.num_layers
        ),
        (run.vocab.len(), 8, 2)
    );
    let sampling = SamplingConfig::new().with_temperature(0.9).with_seed(3);
    let config = GenerationConfig::new()
        .with_length(60)
        .with_sampling(sampling.clone());
    let text = run.generate("The ", &config).unwrap();
    let printed = std::fs::read_to_string(fixtures().join("run-2026-12-01-sample.txt")).unwrap();
    let expected = printed
        .strip_prefix("The ")
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    // The bits of the decoder's logits are the same on both of our kernel's paths; the
    // portable path's products round differently and may, rarely, draw another character.
    #[cfg(feature = "kernels")]
    if char_lstm::simd::Simd::active() != char_lstm::simd::Simd::Portable {
        assert_eq!(text, expected);
    }
    assert_eq!(text.chars().count(), 60);
    let streamed: String = run.chars("The ", &sampling).unwrap().take(60).collect();
    assert_eq!(streamed, text);

    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/smoke.txt");
    let tokens = run
        .vocab
        .encode(&std::fs::read_to_string(smoke).unwrap())
        .unwrap();
    let loss = evaluate_stream(&run.model, &tokens, 1000).mean_loss();
    assert!((loss - 3.2650787830352783).abs() < 1e-5, "{loss}");
}

#[test]
fn what_is_not_a_run_directory_is_named() {
    let device = Device::flex();
    let missing = TrainedModel::load(fixtures().join("no-such-run"), &device).unwrap_err();
    assert!(matches!(missing, LoadError::Missing(_)), "{missing}");
    let file = TrainedModel::load(fixtures().join("small.json"), &device).unwrap_err();
    assert!(file.to_string().contains("is a file"), "{file}");
    let dir = tempfile::tempdir().unwrap();
    let run = fixtures().join("run-2026-12-01");
    for name in ["vocab.json", "model.bpk"] {
        std::fs::copy(run.join(name), dir.path().join(name)).unwrap();
    }
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let write = |text: &str| std::fs::write(dir.path().join("config.toml"), text).unwrap();
    write(&config.replace("hidden_dim = 8", "hidden_dim = 9"));
    let err = TrainedModel::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.bpk") && err.contains("cannot load the weights"),
        "{err}"
    );
    write(&config.replace("hidden_dim = 8", "hiden_dim = 8"));
    let err = TrainedModel::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.toml") && err.contains("model.hiden_dim"),
        "{err}"
    );
    write(&config.replace("[model]", "[model]\nvocab_size = 3"));
    let err = TrainedModel::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.vocab_size = 3"), "{err}");
    write(&config.replace("num_layers = 2", "num_layers = 0"));
    let err = TrainedModel::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.num_layers = 0"), "{err}");
    write(&config);
    std::fs::remove_file(dir.path().join("model.bpk")).unwrap();
    let err = TrainedModel::load(dir.path(), &device).unwrap_err();
    assert!(matches!(err, LoadError::NoWeights(_)), "{err}");
}
