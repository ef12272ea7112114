//! The run configuration: built-in defaults, then a TOML file, then `--set key=value`.
//!
//! `[model]` is the model crate's own [`LstmLanguageModelConfig`] and `[generate]` holds its
//! [`SamplingConfig`]; `[data]` and `[training]` are the trainer's. Every layer, a run's saved
//! `config.toml` included, lies over the defaults, so a key a file lacks takes its default.

mod duration;
mod layering;
mod resume;
mod validation;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use char_lstm::{CharVocab, LstmLanguageModelConfig, SamplingConfig};
use serde::{Deserialize, Serialize};

use layering::{apply_set, merge, one_line};

/// Every setting of a run, in the TOML file's sections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// The network's shape.
    pub model: LstmLanguageModelConfig,
    /// Where the text comes from and how it is cut.
    pub data: DataSection,
    /// The optimization.
    pub training: TrainingSection,
    /// Sampling after training and in `generate`.
    pub generate: GenerateSection,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataSection {
    /// The text file; empty means the built-in example sentence. Relative paths are relative
    /// to the directory the trainer runs in.
    pub path: String,
    /// Where to download `path` from when it is missing; empty means no download.
    pub url: String,
    /// The SHA-256 the downloaded file must have (hex); empty skips the check.
    pub sha256: String,
    /// The number of characters in each training window.
    pub seq_len: usize,
    /// The distance between the starts of consecutive windows.
    pub stride: usize,
    /// The last fraction of the text held out for validation, in [0, 1); 0 validates on the
    /// training text.
    pub valid_fraction: f64,
    /// `windows` (shuffled sliding windows, each from a zero state, as the tutorial) or
    /// `stream` (the text in `batch_size` contiguous streams read in order, the state carried
    /// from batch to batch and reset each epoch: truncated backpropagation through time).
    pub mode: DataMode,
}

/// How training reads the text.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataMode {
    /// Shuffled sliding windows, each from a zero state.
    Windows,
    /// Contiguous streams, the state carried between batches.
    Stream,
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainingSection {
    /// Windows per batch on each device.
    pub batch_size: usize,
    /// Devices of the backend that train data-parallel: each step's `devices * batch_size`
    /// windows are split by rows, one shard per device, and train as one batch of that size
    /// would on one device.
    pub devices: usize,
    /// Passes over the training windows.
    pub epochs: usize,
    /// Adam's learning rate (the peak one under a schedule).
    pub learning_rate: f64,
    /// `constant` or `cosine` (annealed to zero over the run).
    pub lr_schedule: LrSchedule,
    /// Clip the gradients' global L2 norm to this; 0 turns clipping off.
    pub grad_clip_norm: f64,
    /// AdamW's decoupled weight decay: every step scales every parameter by
    /// `1 - learning_rate * weight_decay` before Adam's update; 0 is plain Adam.
    pub weight_decay: f64,
    /// Seeds the weights and the order of the windows.
    pub seed: u64,
    /// Threads that build validation batches. Training batches come from one thread, in an
    /// order fixed by `seed` and the epoch, so a resumed run sees the batches an uninterrupted
    /// one would.
    pub num_workers: usize,
    /// Stop after this much wall time, e.g. `"90s"`, `"10m"`, `"1h30m"`; mid-epoch if need be,
    /// then validate and keep the best weights. Empty means no limit.
    pub time_limit: String,
    /// Also checkpoint every this many optimizer steps (not only after each epoch), so a
    /// killed run loses at most this many steps; 0 turns it off.
    pub checkpoint_every: usize,
    /// Keep an exponential moving average of the weights with this decay per optimizer step
    /// (e.g. 0.999), validated after every epoch beside the trained weights; the better of the
    /// two is saved as `model.bpk`. 0 turns it off.
    pub ema_decay: f64,
    /// The whole run's wall time, e.g. `"30m"`: the model's size, the data's cut, the schedule
    /// and the time limit that neither the config file nor `--set` gives are chosen for it from
    /// the text and this machine's measured training speed. Empty chooses nothing.
    pub budget: String,
}

impl TrainingSection {
    /// Windows (streams, in stream mode) per optimizer step over all devices:
    /// `batch_size * devices`.
    pub fn global_batch_size(&self) -> usize {
        self.batch_size * self.devices
    }
}

/// The learning rate over the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same rate throughout.
    Constant,
    /// Cosine annealing from the rate to zero over all training steps.
    Cosine,
}

/// `[generate]`: the prompt and length, and the model crate's sampling settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerateSection {
    /// The text generation starts from.
    pub prompt: String,
    /// The number of characters to generate.
    pub length: usize,
    /// Temperature, top-k, top-p and seed.
    #[serde(flatten)]
    pub sampling: SamplingConfig,
}

/// The PyTorch tutorial's example text, used when `data.path` is empty.
pub const EXAMPLE_TEXT: &str =
    "Hello, this is an example of text used for LSTM text generation. Let's generate some text!";

impl Default for RunConfig {
    /// The PyTorch tutorial's setup: its example sentence, the model crate's default network
    /// (embedding 256, 2 x 512 LSTM), windows of 50, batch 32, 100 epochs, Adam 1e-3, then 200
    /// characters sampled at temperature 0.8.
    fn default() -> Self {
        Self {
            model: LstmLanguageModelConfig::new(0),
            data: DataSection {
                path: String::new(),
                url: String::new(),
                sha256: String::new(),
                seq_len: 50,
                stride: 1,
                valid_fraction: 0.0,
                mode: DataMode::Windows,
            },
            training: TrainingSection {
                batch_size: 32,
                devices: 1,
                epochs: 100,
                learning_rate: 1e-3,
                lr_schedule: LrSchedule::Constant,
                grad_clip_norm: 5.0,
                weight_decay: 0.0,
                seed: 42,
                num_workers: 1,
                time_limit: String::new(),
                checkpoint_every: 500,
                ema_decay: 0.0,
                budget: String::new(),
            },
            generate: GenerateSection {
                prompt: "Hello".into(),
                length: 200,
                sampling: SamplingConfig::new().with_temperature(0.8).with_seed(7),
            },
        }
    }
}

impl RunConfig {
    /// Resolves the configuration: defaults, then `file` (if any), then each `--set`
    /// `section.key=value` in order. Unknown keys, wrong types and values out of range are
    /// errors that name the file or flag and the key.
    pub fn resolve(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        Self::resolve_given(file, sets).map(|(config, _)| config)
    }

    /// [`RunConfig::resolve`], and the keys that `file` and `sets` gave.
    pub fn resolve_given(file: Option<&Path>, sets: &[String]) -> Result<(Self, GivenKeys)> {
        let mut table = Self::defaults();
        let mut given = GivenKeys::new();
        if let Some(path) = file {
            let origin = path.display().to_string();
            let file_table = read_table(path, "config file")?;
            given.extend(keys_of(&file_table));
            merge(&mut table, file_table, &origin)?;
            Self::parse(&table, &origin)?;
        }
        for set in sets {
            apply_set(&mut table, set)?;
            Self::parse(&table, &format!("--set {set}"))?;
            given.extend(set.split_once('=').map(|(key, _)| key.trim().to_string()));
        }
        let config = Self::parse(&table, "configuration")?;
        config.validate()?;
        Ok((config, given))
    }

    /// Reads a run directory's `config.toml` over the defaults, so a run saved before a key
    /// existed loads with that key's default.
    pub fn load(path: &Path) -> Result<Self> {
        let mut table = Self::defaults();
        let origin = path.display().to_string();
        merge(&mut table, read_table(path, "run config")?, &origin)?;
        let config = Self::parse(&table, &origin)?;
        config.validate().with_context(|| origin.clone())?;
        Ok(config)
    }

    /// The built-in defaults as a TOML table.
    fn defaults() -> toml::Table {
        toml::Table::try_from(Self::default()).expect("defaults serialize")
    }

    /// `table` as a configuration; a wrong type is an error naming `origin`.
    fn parse(table: &toml::Table, origin: &str) -> Result<Self> {
        toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{origin}: {}", one_line(&e)))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }

    /// The model's configuration for `vocab`: `model.vocab_size` 0 becomes the vocabulary's
    /// size, any other value must be it.
    pub fn model_for(&self, vocab: &CharVocab) -> Result<LstmLanguageModelConfig> {
        let mut model = self.model.clone();
        match model.vocab_size {
            0 => model.vocab_size = vocab.len(),
            n if n != vocab.len() => bail!(
                "model.vocab_size = {n}, but the vocabulary has {} characters (0 takes the text's)",
                vocab.len()
            ),
            _ => {}
        }
        Ok(model)
    }

    /// Makes `data.path` absolute against the working directory (the one relative paths are
    /// read from), so that the run's saved config works from anywhere; empty (the built-in
    /// text) stays empty.
    pub fn make_data_path_absolute(&mut self) -> Result<()> {
        let path = &self.data.path;
        if !path.is_empty() {
            let absolute = std::path::absolute(path)
                .with_context(|| format!("data.path = {path:?}: cannot make it absolute"))?;
            self.data.path = absolute.display().to_string();
        }
        Ok(())
    }

    /// The text file, or `None` for the built-in example.
    pub fn data_path(&self) -> Option<PathBuf> {
        (!self.data.path.is_empty()).then(|| PathBuf::from(&self.data.path))
    }
}

/// The `section.key`s that a config file or `--set` gave, as opposed to the defaults.
pub type GivenKeys = BTreeSet<String>;

/// Every `section.key` of `table`.
fn keys_of(table: &toml::Table) -> impl Iterator<Item = String> + '_ {
    table.iter().flat_map(|(section, keys)| {
        keys.as_table()
            .into_iter()
            .flat_map(move |keys| keys.keys().map(move |key| format!("{section}.{key}")))
    })
}

/// A TOML file as a table; errors name the file.
pub(super) fn read_table(path: &Path, what: &str) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read {what} {}: {e}", path.display()))?;
    // Some editors start a file with a byte-order mark; TOML has no use for it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    toml::from_str(text)
        .map_err(|e| anyhow!("{}: not valid TOML: {}", path.display(), one_line(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn a_bad_time_limit_or_budget_names_the_key() {
        for bad in ["ten minutes", "0s"] {
            for key in ["time_limit", "budget"] {
                let sets = [format!("training.{key}={bad:?}")];
                let err = RunConfig::resolve(None, &sets).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("training.{key}")) && err.contains(bad),
                    "{err}"
                );
            }
        }
    }

    /// The keys a file and `--set` gave are told apart from the defaults.
    #[test]
    fn resolve_tells_the_given_keys() {
        let file = write("[model]\nhidden_dim = 64\n[data]\nseq_len = 20\n");
        let sets = [
            "training.epochs=3".to_string(),
            " model.dropout =0.1".into(),
        ];
        let (config, given) = RunConfig::resolve_given(Some(file.path()), &sets).unwrap();
        assert_eq!((config.model.hidden_dim, config.training.epochs), (64, 3));
        let expected = [
            "data.seq_len",
            "model.dropout",
            "model.hidden_dim",
            "training.epochs",
        ];
        assert_eq!(
            given.iter().map(String::as_str).collect::<Vec<_>>(),
            expected
        );
    }

    /// A run saved before `training.checkpoint_every`, `training.weight_decay`, `training.ema_decay`,
    /// `model.output_dropout`, `model.weight_dropout`, `model.variational_dropout`,
    /// `model.embedding_dropout`, `model.input_dropout`, the zoneout keys and
    /// `model.multiplicative_integration` existed still loads, with their defaults.
    #[test]
    fn saved_runs_without_later_keys_load_with_the_defaults() {
        let mut table = toml::Table::try_from(RunConfig::default()).unwrap();
        for (section, key) in [
            ("training", "checkpoint_every"),
            ("training", "weight_decay"),
            ("training", "ema_decay"),
            ("training", "budget"),
            ("model", "output_dropout"),
            ("model", "weight_dropout"),
            ("model", "variational_dropout"),
            ("model", "embedding_dropout"),
            ("model", "input_dropout"),
            ("model", "zoneout_cell"),
            ("model", "zoneout_hidden"),
            ("model", "multiplicative_integration"),
            ("model", "vocab_size"),
            ("generate", "top_p"),
        ] {
            let removed = table[section].as_table_mut().unwrap().remove(key);
            assert!(removed.is_some(), "{section}.{key}");
        }
        let file = write(&toml::to_string(&table).unwrap());
        let config = RunConfig::load(file.path()).unwrap();
        assert_eq!(config.training.checkpoint_every, 500);
        assert_eq!(config.training.weight_decay, 0.0);
        assert_eq!(config.training.ema_decay, 0.0);
        assert_eq!(config.model.output_dropout, 0.0);
        assert_eq!(config.model.weight_dropout, 0.0);
        assert!(!config.model.variational_dropout);
        assert_eq!(config.model.embedding_dropout, 0.0);
        assert_eq!(config.model.input_dropout, 0.0);
        assert_eq!(config.model.zoneout_cell, 0.0);
        assert_eq!(config.model.zoneout_hidden, 0.0);
        assert!(!config.model.multiplicative_integration);
        assert_eq!(config.model.vocab_size, 0);
        let sets = [
            "training.checkpoint_every=7".into(),
            "training.weight_decay=0.1".into(),
            "model.output_dropout=0.3".into(),
            "model.weight_dropout=0.2".into(),
            "model.variational_dropout=true".into(),
            "model.embedding_dropout=0.1".into(),
            "model.input_dropout=0.2".into(),
            "model.zoneout_cell=0.5".into(),
            "model.zoneout_hidden=0.05".into(),
            "model.multiplicative_integration=true".into(),
        ];
        let set = RunConfig::resolve(None, &sets).unwrap();
        assert_eq!(set.training.checkpoint_every, 7);
        assert_eq!(set.training.weight_decay, 0.1);
        assert_eq!(set.model.output_dropout, 0.3);
        assert_eq!(set.model.weight_dropout, 0.2);
        assert!(set.model.variational_dropout);
        assert_eq!(set.model.embedding_dropout, 0.1);
        assert_eq!(set.model.input_dropout, 0.2);
        assert_eq!(set.model.zoneout_cell, 0.5);
        assert_eq!(set.model.zoneout_hidden, 0.05);
        assert!(set.model.multiplicative_integration);
    }

    /// Every config the repository ships resolves: a misspelt key or a value out of range in
    /// one would otherwise surface only when a user runs it.
    #[test]
    fn shipped_configs_resolve() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                RunConfig::resolve(Some(&path), &[])
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                checked += 1;
            }
        }
        assert!(checked >= 4, "{checked} configs in {}", dir.display());
    }

    #[test]
    fn precedence_is_defaults_then_file_then_set() {
        let file = write("[training]\nepochs = 3\nlearning_rate = 0.01\n");
        let config = RunConfig::resolve(
            Some(file.path()),
            &["training.epochs=5".into(), "data.path=/tmp/a b.txt".into()],
        )
        .unwrap();
        assert_eq!(config.training.epochs, 5);
        assert_eq!(config.training.learning_rate, 0.01);
        assert_eq!(config.data.path, "/tmp/a b.txt");
        assert_eq!(config.model.hidden_dim, 512);
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let file = write("[model]\nhiden_dim = 3\n");
        let err = RunConfig::resolve(Some(file.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.hiden_dim") && err.contains("hidden_dim"),
            "{err}"
        );
        let err = RunConfig::resolve(None, &["trainin.epochs=1".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[trainin]") && err.contains("training"),
            "{err}"
        );
        let err = RunConfig::resolve(None, &["epochs".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("section.key=value"), "{err}");
    }

    #[test]
    fn wrong_types_and_ranges_are_errors_naming_the_key() {
        let file = write("[model]\nnum_layers = \"two\"\n");
        let err = RunConfig::resolve(Some(file.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_layers"), "{err}");
        for (set, key) in [
            ("model.num_layers=0", "model.num_layers"),
            ("model.dropout=1.0", "model.dropout"),
            ("model.output_dropout=-0.5", "model.output_dropout"),
            ("model.weight_dropout=1", "model.weight_dropout"),
            ("model.embedding_dropout=1.5", "model.embedding_dropout"),
            ("model.input_dropout=-0.1", "model.input_dropout"),
            ("model.zoneout_cell=1", "model.zoneout_cell"),
            ("model.zoneout_hidden=-0.05", "model.zoneout_hidden"),
            ("training.learning_rate=0", "training.learning_rate"),
            ("training.weight_decay=-0.1", "training.weight_decay"),
            ("training.weight_decay=2000", "training.weight_decay"),
            ("training.ema_decay=1", "training.ema_decay"),
            ("data.valid_fraction=-0.1", "data.valid_fraction"),
            ("generate.top_p=2", "top_p"),
        ] {
            let err = RunConfig::resolve(None, &[set.into()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{set}: {err}");
        }
    }

    #[test]
    fn bad_toml_names_file_line_and_column() {
        let file = write("[model]\nhidden_dim = = 3\n");
        let err = RunConfig::resolve(Some(file.path()), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && !err.contains('\n'), "{err}");
    }

    /// The README's configuration table lists every key of every section with its default, as
    /// TOML writes it.
    #[test]
    fn the_readme_documents_every_key_with_its_default() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        )
        .unwrap();
        for (section, keys) in RunConfig::defaults() {
            for (key, default) in keys.as_table().unwrap() {
                let row = format!("| `{section}.{key}` | {} |", default);
                assert!(readme.contains(&row), "README.md lacks the row `{row}`");
            }
        }
    }

    #[test]
    fn the_vocabulary_sets_or_checks_the_vocabulary_size() {
        let vocab = CharVocab::from_text("abc").unwrap();
        let config = RunConfig::default();
        assert_eq!(config.model_for(&vocab).unwrap().vocab_size, 3);
        let set = RunConfig::resolve(None, &["model.vocab_size=3".into()]).unwrap();
        assert_eq!(set.model_for(&vocab).unwrap().vocab_size, 3);
        let wrong = RunConfig::resolve(None, &["model.vocab_size=70".into()]).unwrap();
        let err = wrong.model_for(&vocab).unwrap_err().to_string();
        assert!(
            err.contains("model.vocab_size = 70") && err.contains("3 characters"),
            "{err}"
        );
    }

    /// A wrong type names the file or flag it came from; a number too large for its key says
    /// so instead of calling it a string.
    #[test]
    fn wrong_types_name_their_origin() {
        let file = write("[model]\nhidden_dim = \"sixty-four\"\n");
        let err = RunConfig::resolve(Some(file.path()), &[])
            .unwrap_err()
            .to_string();
        let name = file.path().display().to_string();
        assert!(err.contains(&name) && err.contains("hidden_dim"), "{err}");
        let err = RunConfig::resolve(None, &["training.epochs=99999999999999999999999".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--set training.epochs") && !err.contains("string"),
            "{err}"
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let config = RunConfig::default();
        let file = write(&config.to_toml());
        assert_eq!(RunConfig::load(file.path()).unwrap(), config);
    }

    proptest::proptest! {
        /// Any text as a config file, and any `--set`, is a configuration or an error, never a
        /// panic.
        #[test]
        fn any_config_text_resolves_or_fails_cleanly(text in "\\PC{0,200}", set in "\\PC{0,40}") {
            let file = write(&text);
            let _ = RunConfig::resolve(Some(file.path()), &[]);
            let _ = RunConfig::resolve(None, &[set]);
        }

        /// Arbitrary bytes as a config file (or a run's saved config) are an error that names
        /// the file, or a configuration; never a panic.
        #[test]
        fn any_config_bytes_load_or_fail_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let name = file.path().display().to_string();
            for result in [RunConfig::resolve(Some(file.path()), &[]), RunConfig::load(file.path())] {
                if let Err(e) = result {
                    proptest::prop_assert!(format!("{e:#}").contains(&name), "{:#}", e);
                }
            }
        }

        /// Config-shaped text with arbitrary keys and values.
        #[test]
        fn any_key_and_value_resolves_or_fails_cleanly(
            section in "(model|data|training|generate|[a-z]{1,8})",
            key in "[a-z_]{1,16}",
            value in "(-?[0-9]{1,12}(\\.[0-9]{1,6})?|\"[^\"\\\\]{0,10}\"|true|false|\\[\\]|nan|inf)",
        ) {
            let file = write(&format!("[{section}]\n{key} = {value}\n"));
            let _ = RunConfig::resolve(Some(file.path()), &[]);
            let _ = RunConfig::resolve(None, &[format!("{section}.{key}={value}")]);
        }
    }
}
