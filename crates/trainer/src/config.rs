//! The run configuration: built-in defaults, then a TOML file, then `--set key=value`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// Every setting of a run, in the TOML file's sections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The network's shape.
    pub model: ModelSection,
    /// Where the text comes from and how it is cut.
    pub data: DataSection,
    /// The optimization.
    pub training: TrainingSection,
    /// Sampling after training and in `generate`.
    pub generate: GenerateSection,
}

/// `[model]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The size of each character's embedding.
    pub embedding_dim: usize,
    /// The size of every LSTM layer's state.
    pub hidden_dim: usize,
    /// The number of stacked LSTM layers.
    pub num_layers: usize,
    /// Dropout between LSTM layers, in [0, 1).
    pub dropout: f64,
    /// Draw that dropout's mask once per window for all its steps (variational dropout).
    /// Runs saved before this key existed read it as false.
    #[serde(default)]
    pub variational_dropout: bool,
    /// Start the forget-gate biases at 1.
    pub forget_bias: bool,
    /// Dropout on the top layer's output before the output layer, in [0, 1) (char-rnn's
    /// second dropout; PyTorch's `nn.LSTM` has only the one between layers). Runs saved before
    /// this key existed read it as 0.
    #[serde(default)]
    pub output_dropout: f64,
    /// Dropout on every layer's recurrent weights, drawn once per batch, in [0, 1) (AWD-LSTM's
    /// weight drop). Runs saved before this key existed read it as 0.
    #[serde(default)]
    pub weight_dropout: f64,
}

/// `[data]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    /// Windows per batch.
    pub batch_size: usize,
    /// Passes over the training windows.
    pub epochs: usize,
    /// Adam's learning rate (the peak one under a schedule).
    pub learning_rate: f64,
    /// `constant` or `cosine` (annealed to zero over the run).
    pub lr_schedule: LrSchedule,
    /// Clip the gradients' global L2 norm to this; 0 turns clipping off.
    pub grad_clip_norm: f64,
    /// AdamW's decoupled weight decay: every step scales every parameter by
    /// `1 - learning_rate * weight_decay` before Adam's update; 0 is plain Adam. Runs saved
    /// before this key existed read it as 0.
    #[serde(default)]
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
    /// killed run loses at most this many steps; 0 turns it off. Runs saved before this key
    /// existed read it as the default.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
}

fn default_checkpoint_every() -> usize {
    RunConfig::default().training.checkpoint_every
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

/// `[generate]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateSection {
    /// The text generation starts from.
    pub prompt: String,
    /// The number of characters to generate.
    pub length: usize,
    /// Softmax temperature; 0 is greedy.
    pub temperature: f64,
    /// Keep the k most likely characters; 0 keeps all.
    pub top_k: usize,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: f64,
    /// The sampling seed.
    pub seed: u64,
}

/// The PyTorch tutorial's example text, used when `data.path` is empty.
pub const EXAMPLE_TEXT: &str =
    "Hello, this is an example of text used for LSTM text generation. Let's generate some text!";

impl Default for RunConfig {
    /// The PyTorch tutorial's setup: its example sentence, embedding 256, 2 x 512 LSTM,
    /// windows of 50, batch 32, 100 epochs, Adam 1e-3, then 200 sampled characters.
    fn default() -> Self {
        Self {
            model: ModelSection {
                embedding_dim: 256,
                hidden_dim: 512,
                num_layers: 2,
                dropout: 0.0,
                variational_dropout: false,
                forget_bias: false,
                output_dropout: 0.0,
                weight_dropout: 0.0,
            },
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
                epochs: 100,
                learning_rate: 1e-3,
                lr_schedule: LrSchedule::Constant,
                grad_clip_norm: 5.0,
                weight_decay: 0.0,
                seed: 42,
                num_workers: 1,
                time_limit: String::new(),
                checkpoint_every: 500,
            },
            generate: GenerateSection {
                prompt: "Hello".into(),
                length: 200,
                temperature: 0.8,
                top_k: 0,
                top_p: 1.0,
                seed: 7,
            },
        }
    }
}

impl RunConfig {
    /// Resolves the configuration: defaults, then `file` (if any), then each `--set`
    /// `section.key=value` in order. Unknown keys, wrong types and values out of range are
    /// errors that name the file or flag and the key.
    pub fn resolve(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut table = toml::Table::try_from(Self::default()).expect("defaults serialize");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let overrides: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow!("{}: not valid TOML: {}", path.display(), one_line(&e)))?;
            merge(&mut table, overrides, &path.display().to_string())?;
        }
        for set in sets {
            apply_set(&mut table, set)?;
        }
        let config: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("invalid configuration: {}", one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a run directory's `config.toml`, which holds every key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .map_err(|e| anyhow!("{}: not a run config: {}", path.display(), one_line(&e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serializes")
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        let d = &self.data;
        let t = &self.training;
        let g = &self.generate;
        positive("model.embedding_dim", m.embedding_dim)?;
        positive("model.hidden_dim", m.hidden_dim)?;
        positive("model.num_layers", m.num_layers)?;
        in_unit("model.dropout", m.dropout)?;
        in_unit("model.output_dropout", m.output_dropout)?;
        in_unit("model.weight_dropout", m.weight_dropout)?;
        positive("data.seq_len", d.seq_len)?;
        positive("data.stride", d.stride)?;
        in_unit("data.valid_fraction", d.valid_fraction)?;
        if !d.sha256.is_empty()
            && (d.sha256.len() != 64 || !d.sha256.chars().all(|c| c.is_ascii_hexdigit()))
        {
            bail!(
                "data.sha256 = {:?}: expected 64 hexadecimal digits",
                d.sha256
            );
        }
        positive("training.batch_size", t.batch_size)?;
        positive("training.epochs", t.epochs)?;
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            bail!(
                "training.learning_rate = {}: expected a number > 0",
                t.learning_rate
            );
        }
        if !(t.grad_clip_norm.is_finite() && t.grad_clip_norm >= 0.0) {
            bail!(
                "training.grad_clip_norm = {}: expected a number >= 0 (0 = off)",
                t.grad_clip_norm
            );
        }
        // At `learning_rate * weight_decay >= 1` the decay would flip or zero every weight.
        if !(t.weight_decay.is_finite()
            && t.weight_decay >= 0.0
            && t.weight_decay * t.learning_rate < 1.0)
        {
            bail!(
                "training.weight_decay = {}: expected a number >= 0 whose product with training.learning_rate ({}) is below 1",
                t.weight_decay,
                t.learning_rate
            );
        }
        positive("training.num_workers", t.num_workers)?;
        self.time_limit()?;
        positive("generate.length", g.length)?;
        if g.prompt.is_empty() {
            bail!("generate.prompt is empty: expected at least one character");
        }
        self.sampling()
            .validate()
            .map_err(|e| anyhow!("generate.{e}"))?;
        Ok(())
    }

    /// `training.time_limit` as a duration; `None` when empty.
    pub fn time_limit(&self) -> Result<Option<std::time::Duration>> {
        let text = self.training.time_limit.trim();
        if text.is_empty() {
            return Ok(None);
        }
        parse_duration(text).map(Some).ok_or_else(|| {
            anyhow!("training.time_limit = {text:?}: expected a duration such as \"90s\", \"10m\" or \"1h30m\"")
        })
    }

    /// The `[generate]` sampling settings.
    pub fn sampling(&self) -> model::SamplingConfig {
        let g = &self.generate;
        model::SamplingConfig::new()
            .with_temperature(g.temperature)
            .with_top_k(g.top_k)
            .with_top_p(g.top_p)
            .with_seed(g.seed)
    }

    /// The model's configuration for a vocabulary of `vocab_size` characters.
    pub fn model(&self, vocab_size: usize) -> model::LstmLanguageModelConfig {
        let m = &self.model;
        model::LstmLanguageModelConfig::new(vocab_size)
            .with_embedding_dim(m.embedding_dim)
            .with_hidden_dim(m.hidden_dim)
            .with_num_layers(m.num_layers)
            .with_dropout(m.dropout)
            .with_variational_dropout(m.variational_dropout)
            .with_forget_bias(m.forget_bias)
            .with_output_dropout(m.output_dropout)
            .with_weight_dropout(m.weight_dropout)
    }

    /// The optimizer: PyTorch's Adam defaults, so runs compare with the reference, and
    /// `training.weight_decay`.
    pub fn optimizer(&self) -> model::FusedAdamConfig {
        model::FusedAdamConfig::new().with_weight_decay(self.training.weight_decay as f32)
    }

    /// The text file, or `None` for the built-in example.
    pub fn data_path(&self) -> Option<PathBuf> {
        (!self.data.path.is_empty()).then(|| PathBuf::from(&self.data.path))
    }
}

/// `"90s"`, `"10m"`, `"1h30m"`, `"2h"`: whole numbers with units h, m, s; more than zero.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        seconds = seconds.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && seconds > 0).then(|| std::time::Duration::from_secs(seconds))
}

fn positive(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{key} = 0: expected a whole number >= 1");
    }
    Ok(())
}

fn in_unit(key: &str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        bail!("{key} = {value}: expected a number in [0, 1)");
    }
    Ok(())
}

/// The first line of a TOML error, which holds the line and column and the reason.
fn one_line(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().trim().to_string();
    match lines.next_back() {
        Some(last) if !last.contains('|') => format!("{first}: {}", last.trim()),
        _ => first,
    }
}

/// Lays `overrides` over `base`, section by section; a section or key that `base` lacks is an
/// error naming `origin` and the nearest valid key.
fn merge(base: &mut toml::Table, overrides: toml::Table, origin: &str) -> Result<()> {
    for (section, value) in overrides {
        let Some(toml::Value::Table(keys)) = base.get_mut(&section) else {
            bail!(
                "{origin}: unknown section [{section}]{}",
                suggest(&section, base.keys())
            );
        };
        let toml::Value::Table(value) = value else {
            bail!("{origin}: `{section}` must be a section ([{section}]), not a value");
        };
        for (key, v) in value {
            let Some(slot) = keys.get_mut(&key) else {
                bail!(
                    "{origin}: unknown key {section}.{key}{}",
                    suggest(&key, keys.keys())
                );
            };
            *slot = v;
        }
    }
    Ok(())
}

/// Applies one `section.key=value`; the value is read as TOML, or as a plain string when it is
/// not valid TOML.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
    let Some((key, raw)) = set.split_once('=') else {
        bail!("--set {set:?}: expected section.key=value");
    };
    let key = key.trim();
    let Some((section, name)) = key.split_once('.') else {
        bail!("--set {set:?}: expected section.key=value, e.g. training.epochs=10");
    };
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut overrides = toml::Table::new();
    overrides.insert(
        section.to_string(),
        toml::Value::Table(toml::Table::from_iter([(name.to_string(), value)])),
    );
    merge(table, overrides, "--set")
}

/// ", did you mean `x`?" for the nearest of `options` by edit distance, if one is near.
fn suggest<'a>(name: &str, options: impl Iterator<Item = &'a String>) -> String {
    options
        .map(|o| (edit_distance(name, o), o))
        .filter(|(d, o)| *d <= 3.max(o.len() / 3))
        .min()
        .map(|(_, o)| format!(", did you mean `{o}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
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
    fn durations_parse_with_units() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("10m"), Some(600));
        assert_eq!(secs("1h30m"), Some(5400));
        for bad in ["", "10", "0s", "5 m", "1.5h", "m"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
        let mut config = RunConfig::default();
        config.training.time_limit = "ten minutes".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("training.time_limit") && err.contains("ten minutes"),
            "{err}"
        );
    }

    /// A run saved before `training.checkpoint_every`, `training.weight_decay`,
    /// `model.output_dropout`, `model.weight_dropout` and `model.variational_dropout` existed
    /// still loads, with their defaults.
    #[test]
    fn saved_runs_without_later_keys_load_with_the_defaults() {
        let mut table = toml::Table::try_from(RunConfig::default()).unwrap();
        for (section, key) in [
            ("training", "checkpoint_every"),
            ("training", "weight_decay"),
            ("model", "output_dropout"),
            ("model", "weight_dropout"),
            ("model", "variational_dropout"),
        ] {
            let removed = table[section].as_table_mut().unwrap().remove(key);
            assert!(removed.is_some(), "{section}.{key}");
        }
        let file = write(&toml::to_string(&table).unwrap());
        let config = RunConfig::load(file.path()).unwrap();
        assert_eq!(config.training.checkpoint_every, 500);
        assert_eq!(config.training.weight_decay, 0.0);
        assert_eq!(config.model.output_dropout, 0.0);
        assert_eq!(config.model.weight_dropout, 0.0);
        assert!(!config.model.variational_dropout);
        let sets = [
            "training.checkpoint_every=7".into(),
            "training.weight_decay=0.1".into(),
            "model.output_dropout=0.3".into(),
            "model.weight_dropout=0.2".into(),
            "model.variational_dropout=true".into(),
        ];
        let set = RunConfig::resolve(None, &sets).unwrap();
        assert_eq!(set.training.checkpoint_every, 7);
        assert_eq!(set.training.weight_decay, 0.1);
        assert_eq!(set.optimizer().weight_decay, 0.1);
        assert_eq!(set.model.output_dropout, 0.3);
        assert_eq!(set.model.weight_dropout, 0.2);
        assert!(set.model.variational_dropout);
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
            ("training.learning_rate=0", "training.learning_rate"),
            ("training.weight_decay=-0.1", "training.weight_decay"),
            ("training.weight_decay=2000", "training.weight_decay"),
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
