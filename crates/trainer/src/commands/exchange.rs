//! `trainer import` and `trainer export`: weights to and from the PyTorch tutorial's model
//! (`nn.Embedding` -> `nn.LSTM(batch_first=True)` -> `nn.Linear`, named `embedding`, `lstm`
//! and `fc`).
//!
//! The LSTM tensors need no reordering: our layers keep PyTorch's layout and gate order. Only
//! the names differ (`lstm.weight_ih_l0` is our `lstm.layers.0.weight_ih`, `fc` is `output`),
//! and burn-store's PyTorch adapters transpose the `Linear` weight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PytorchStore, SafetensorsStore};
use burn::tensor::Device;
use char_lstm::{CharVocab, LstmLanguageModelConfig};

use crate::cli::{ExportArgs, ImportArgs};
use crate::config::RunConfig;
use crate::run::replacement::Replacement;
use crate::run::run_dir::RunDir;

/// The shapes the tutorial's model has, and the sizes read off them.
#[derive(Debug, PartialEq)]
struct TutorialShapes {
    /// The prefix every name carries (`""`, or e.g. `"model."`).
    prefix: String,
    vocab_size: usize,
    embedding_dim: usize,
    hidden_dim: usize,
    num_layers: usize,
}

impl TutorialShapes {
    /// Reads the sizes off a `state_dict`'s names and shapes, and checks every tensor the
    /// model needs is there with the shape those sizes imply.
    fn infer(file: &Path, shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self> {
        let names = || shapes.keys().cloned().collect::<Vec<_>>().join(", ");
        let prefix = shapes
            .keys()
            .find_map(|name| name.strip_suffix("embedding.weight"))
            .ok_or_else(|| anyhow!("{}: no `embedding.weight` tensor (with or without a prefix such as `model.`); it holds: {}", file.display(), names()))?
            .to_string();
        let get = |name: &str| {
            shapes.get(&format!("{prefix}{name}")).ok_or_else(|| {
                anyhow!(
                    "{}: tensor `{prefix}{name}` is missing; it holds: {}",
                    file.display(),
                    names()
                )
            })
        };
        let matrix = |name: &str| -> Result<[usize; 2]> {
            match get(name)?.as_slice() {
                &[rows, cols] => Ok([rows, cols]),
                other => bail!(
                    "{}: tensor `{prefix}{name}` has shape {other:?}, expected 2 dimensions",
                    file.display()
                ),
            }
        };
        let [vocab_size, embedding_dim] = matrix("embedding.weight")?;
        let [four_hidden, hidden_dim] = matrix("lstm.weight_hh_l0")?;
        let num_layers = (0..)
            .take_while(|k| shapes.contains_key(&format!("{prefix}lstm.weight_ih_l{k}")))
            .count();
        let inferred = Self {
            prefix: prefix.clone(),
            vocab_size,
            embedding_dim,
            hidden_dim,
            num_layers,
        };
        if four_hidden != 4 * hidden_dim {
            bail!(
                "{}: tensor `{}lstm.weight_hh_l0` has shape [{four_hidden}, {hidden_dim}], expected [4 * hidden, hidden]",
                file.display(),
                inferred.prefix
            );
        }
        for (name, expected) in inferred.expected_shapes() {
            let actual = get(&name)?;
            if actual != &expected {
                bail!(
                    "{}: tensor `{}{name}` has shape {actual:?}, expected {expected:?} (vocabulary {vocab_size}, embedding {embedding_dim}, hidden {hidden_dim}, {num_layers} layers)",
                    file.display(),
                    inferred.prefix
                );
            }
        }
        Ok(inferred)
    }

    /// Every tensor of the model, without the prefix, with its PyTorch shape.
    fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (v, e, h) = (self.vocab_size, self.embedding_dim, self.hidden_dim);
        let mut all = vec![
            ("embedding.weight".to_string(), vec![v, e]),
            ("fc.weight".to_string(), vec![v, h]),
            ("fc.bias".to_string(), vec![v]),
        ];
        for k in 0..self.num_layers {
            let input = if k == 0 { e } else { h };
            all.push((format!("lstm.weight_ih_l{k}"), vec![4 * h, input]));
            all.push((format!("lstm.weight_hh_l{k}"), vec![4 * h, h]));
            all.push((format!("lstm.bias_ih_l{k}"), vec![4 * h]));
            all.push((format!("lstm.bias_hh_l{k}"), vec![4 * h]));
        }
        all
    }
}

/// Reads a PyTorch `state_dict` and writes a run directory that `generate` and `eval` load.
pub fn import(args: &ImportArgs) -> Result<()> {
    let file = &args.pytorch;
    let reader = PytorchReader::new(file)
        .map_err(|e| anyhow!("{}: cannot read a PyTorch state_dict: {e}", file.display()))?;
    let shapes: BTreeMap<String, Vec<usize>> = reader
        .tensors()
        .iter()
        .map(|(name, t)| (name.clone(), t.shape().to_vec()))
        .collect();
    let found = TutorialShapes::infer(file, &shapes)?;

    let (vocab, vocab_source) = match (&args.vocab_text, &args.vocab) {
        (Some(text), _) => (
            CharVocab::from_text(&char_lstm_data::load_text(text)?)?,
            text,
        ),
        (None, Some(json)) => (CharVocab::load(json)?, json),
        (None, None) => bail!("import needs --vocab-text or --vocab"),
    };
    if vocab.len() != found.vocab_size {
        bail!(
            "{}: `{}embedding.weight` has {} rows but the vocabulary from {} has {} characters",
            file.display(),
            found.prefix,
            found.vocab_size,
            vocab_source.display(),
            vocab.len()
        );
    }

    let mut config = RunConfig::default();
    config.model.embedding_dim = found.embedding_dim;
    config.model.hidden_dim = found.hidden_dim;
    config.model.num_layers = found.num_layers;
    config.model.vocab_size = vocab.len();
    config.generate.prompt = default_prompt(&vocab);
    if let Some(text) = &args.vocab_text {
        config.data.path = text.display().to_string();
    }
    let mut model = config.model.init(&Device::flex());
    let prefix = regex_escape(&found.prefix);
    let mut store = PytorchStore::from_file(file)
        .with_key_remapping(
            format!(r"^{prefix}lstm\.(weight|bias)_(ih|hh)_l(\d+)$"),
            "lstm.layers.${3}.${1}_${2}",
        )
        .with_key_remapping(format!(r"^{prefix}fc\.(weight|bias)$"), "output.${1}")
        .with_key_remapping(format!(r"^{prefix}embedding\.weight$"), "embedding.weight");
    let applied = model
        .load_from(&mut store)
        .map_err(|e| anyhow!("{}: cannot load the weights: {e}", file.display()))?;
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        bail!(
            "{}: cannot load the weights: errors {:?}, missing {:?}",
            file.display(),
            applied.errors,
            applied.missing
        );
    }

    let run = RunDir::new(args.run.clone().unwrap_or_else(|| default_run_dir(file)));
    run.refuse_to_overwrite(args.force)?;
    let existed = run.path().is_dir();
    let _lock = existed.then(|| run.lock()).transpose()?;
    // The run it replaces stays aside until the new one is written whole.
    let mut replacement = Replacement::begin(&run, args.force, !existed)?;
    match run
        .save_setup(&config, &vocab)
        .and_then(|()| run.save_model(&model))
    {
        Ok(()) => replacement.commit()?,
        Err(e) => {
            let created = replacement.created();
            replacement.roll_back()?;
            if created {
                // Empty again: a failed import leaves no directory it made.
                let _ = std::fs::remove_dir(run.path());
            }
            return Err(e);
        }
    }
    println!(
        "imported {} (vocabulary {}, embedding {}, {} x {} LSTM) into {}",
        file.display(),
        found.vocab_size,
        found.embedding_dim,
        found.num_layers,
        found.hidden_dim,
        run.path().display()
    );
    Ok(())
}

/// Writes a run's weights as SafeTensors under the tutorial model's names, so that
/// `model.load_state_dict(safetensors.torch.load_file(FILE))` works in PyTorch.
pub fn export(args: &ExportArgs) -> Result<()> {
    let run = RunDir::new(&args.run);
    let (config, trained) = run.load(&Device::flex())?;
    if let Some(setting) = beyond_pytorch(&config.model) {
        bail!(
            "--run {}: its model has {setting}, which PyTorch's nn.LSTM does not compute; the exported weights would give another model",
            args.run.display()
        );
    }
    let target = &args.safetensors;
    check_export_target(&run, target, args.force)?;
    char_lstm::write_atomic_with(target, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp)
            .overwrite(true)
            .with_to_adapter(BurnToPyTorchAdapter)
            .with_key_remapping(
                r"^lstm\.layers\.(\d+)\.(weight|bias)_(ih|hh)$",
                "lstm.${2}_${3}_l${1}",
            )
            .with_key_remapping(r"^output\.(weight|bias)$", "fc.${1}");
        trained
            .model
            .save_into(&mut store)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .with_context(|| format!("cannot write {}", target.display()))?;
    println!("wrote {}", target.display());
    Ok(())
}

/// The first setting of `model` that PyTorch's `nn.LSTM` (the tutorial's model, which an
/// export loads into) has no equivalent for, as `key = value`.
fn beyond_pytorch(model: &LstmLanguageModelConfig) -> Option<String> {
    if model.multiplicative_integration {
        return Some("model.multiplicative_integration = true".into());
    }
    [
        ("model.zoneout_cell", model.zoneout_cell),
        ("model.zoneout_hidden", model.zoneout_hidden),
    ]
    .into_iter()
    .find(|&(_, probability)| probability > 0.0)
    .map(|(key, probability)| format!("{key} = {probability}"))
}

/// An export goes to a new regular file, or with `force` over an existing one, but never over
/// one of the run's own files nor onto a device, a directory or standard output.
fn check_export_target(run: &RunDir, target: &Path, force: bool) -> Result<()> {
    if target.as_os_str() == "-" {
        bail!("--safetensors -: writing to standard output is not supported; give a file path");
    }
    let Ok(metadata) = std::fs::metadata(target) else {
        return Ok(());
    };
    if !metadata.is_file() {
        bail!(
            "--safetensors {}: not a regular file; expected a path for a new SafeTensors file",
            target.display()
        );
    }
    let target_file = target.canonicalize().ok();
    let in_run = |file: PathBuf| target_file.is_some() && file.canonicalize().ok() == target_file;
    let own = [
        run.model_path(),
        run.config_path(),
        run.vocab_path(),
        run.best_path(),
    ];
    if own.into_iter().any(in_run) {
        bail!(
            "--safetensors {}: that is one of the run's own files; export to a file of its own",
            target.display()
        );
    }
    if !force {
        bail!(
            "--safetensors {}: the file exists; pass --force to replace it",
            target.display()
        );
    }
    Ok(())
}

/// `runs/<file stem>`.
fn default_run_dir(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(stem)
}

/// The built-in prompt where the vocabulary encodes it, else its first letter or digit (or its
/// first character), so that `generate --run` works without flags.
fn default_prompt(vocab: &CharVocab) -> String {
    let default = RunConfig::default().generate.prompt;
    if vocab.encode(&default).is_ok() {
        return default;
    }
    let chars = vocab.chars();
    let first = chars
        .iter()
        .find(|c| c.is_alphanumeric())
        .unwrap_or(&chars[0]);
    first.to_string()
}

/// `text` with the characters that mean something in a regular expression escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tutorial(
        prefix: &str,
        v: usize,
        e: usize,
        h: usize,
        layers: usize,
    ) -> BTreeMap<String, Vec<usize>> {
        TutorialShapes {
            prefix: String::new(),
            vocab_size: v,
            embedding_dim: e,
            hidden_dim: h,
            num_layers: layers,
        }
        .expected_shapes()
        .into_iter()
        .map(|(name, shape)| (format!("{prefix}{name}"), shape))
        .collect()
    }

    #[test]
    fn sizes_are_read_off_the_shapes_with_or_without_a_prefix() {
        for prefix in ["", "model."] {
            let found =
                TutorialShapes::infer(Path::new("m.pt"), &tutorial(prefix, 13, 7, 11, 3)).unwrap();
            assert_eq!(
                found,
                TutorialShapes {
                    prefix: prefix.into(),
                    vocab_size: 13,
                    embedding_dim: 7,
                    hidden_dim: 11,
                    num_layers: 3
                }
            );
        }
    }

    #[test]
    fn a_missing_or_misshapen_tensor_is_named() {
        let mut shapes = tutorial("", 13, 7, 11, 2);
        shapes.remove("fc.bias");
        let err = TutorialShapes::infer(Path::new("m.pt"), &shapes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`fc.bias` is missing"), "{err}");

        let mut shapes = tutorial("", 13, 7, 11, 2);
        shapes.insert("lstm.weight_ih_l1".into(), vec![44, 7]);
        let err = TutorialShapes::infer(Path::new("m.pt"), &shapes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`lstm.weight_ih_l1` has shape [44, 7], expected [44, 11]"),
            "{err}"
        );
    }

    #[test]
    fn regex_escape_escapes_dots() {
        assert_eq!(regex_escape("model."), r"model\.");
    }
}
