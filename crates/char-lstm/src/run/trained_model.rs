//! A trained run loaded from its directory: the model, its vocabulary and its configuration.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use crate::fused::on_decoder_threads;
use crate::network::language_model::{LstmLanguageModel, LstmLanguageModelConfig};
use crate::run::atomic_write::FileError;
use crate::text::generation::{CharStream, GenerationConfig, GenerationError};
use crate::text::sampling::SamplingConfig;
use crate::text::vocab::{CharVocab, VocabError};

/// The configuration, in the TOML form `trainer` writes.
pub const CONFIG_FILE: &str = "config.toml";
/// The vocabulary, as `{"chars": [...]}`.
pub const VOCAB_FILE: &str = "vocab.json";
/// The weights, in Burn's burnpack format.
pub const WEIGHTS_FILE: &str = "model.bpk";

/// A run directory's model, ready to generate.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The network, with its trained weights.
    pub model: LstmLanguageModel,
    /// The characters its token ids stand for.
    pub vocab: CharVocab,
    /// Its shape, from the `[model]` section of `config.toml`.
    pub config: LstmLanguageModelConfig,
}

/// Why a run directory does not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such directory.
    #[error("run directory {} does not exist", .0.display())]
    Missing(PathBuf),
    /// A file where a run directory was expected.
    #[error("{}: is a file, expected a run directory (holding {CONFIG_FILE}, {VOCAB_FILE} and {WEIGHTS_FILE})", .0.display())]
    NotADirectory(PathBuf),
    /// A file that cannot be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// `config.toml` does not describe a model.
    #[error("{}: {reason}", path.display())]
    BadConfig {
        /// `config.toml`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The vocabulary does not load.
    #[error(transparent)]
    Vocab(#[from] VocabError),
    /// The run has no weights yet.
    #[error("{}: no weights in this run directory (train it first, or it was interrupted before the first save)", .0.display())]
    NoWeights(PathBuf),
    /// The weights do not load into the configured model.
    #[error("{}: cannot load the weights ({reason}); expected a model of {vocab_size} characters as in {} and {}", path.display(), CONFIG_FILE, VOCAB_FILE)]
    BadWeights {
        /// `model.bpk`.
        path: PathBuf,
        /// Burn's reason.
        reason: String,
        /// The vocabulary's size.
        vocab_size: usize,
    },
}

impl TrainedModel {
    /// Loads the run in `dir` onto `device` (without autodiff, for generation and evaluation).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        if !dir.exists() {
            return Err(LoadError::Missing(dir.to_path_buf()));
        }
        if !dir.is_dir() {
            return Err(LoadError::NotADirectory(dir.to_path_buf()));
        }
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(LoadError::NoWeights(weights));
        }
        let vocab = CharVocab::load(&dir.join(VOCAB_FILE))?;
        let config = load_model_config(&dir.join(CONFIG_FILE), vocab.len())?;
        let model =
            config
                .init(device)
                .try_load_file(&weights)
                .map_err(|e| LoadError::BadWeights {
                    path: weights.clone(),
                    reason: e.to_string(),
                    vocab_size: vocab.len(),
                })?;
        Ok(Self {
            model,
            vocab,
            config,
        })
    }

    /// The characters one stream draws after `prompt` (every character of which must be in
    /// the vocabulary), without end.
    pub fn chars(
        &self,
        prompt: &str,
        sampling: &SamplingConfig,
    ) -> Result<CharStream<'_>, GenerationError> {
        CharStream::new(&self.model, &self.vocab, prompt, sampling)
    }

    /// `config.length` characters continuing `prompt`.
    pub fn generate(
        &self,
        prompt: &str,
        config: &GenerationConfig,
    ) -> Result<String, GenerationError> {
        let chars = self.chars(prompt, &config.sampling)?;
        Ok(on_decoder_threads(|| chars.take(config.length).collect()))
    }
}

/// The `[model]` section of `path` over the defaults (a key the file lacks takes its default,
/// so runs saved before a key existed load), for a vocabulary of `vocab_size` characters.
pub fn load_model_config(
    path: &Path,
    vocab_size: usize,
) -> Result<LstmLanguageModelConfig, LoadError> {
    let bad = |reason: String| LoadError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
    let mut file: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    let mut section =
        toml::Table::try_from(LstmLanguageModelConfig::new(0)).expect("a model config serializes");
    match file.remove("model") {
        Some(toml::Value::Table(keys)) => {
            for (key, value) in keys {
                let Some(slot) = section.get_mut(&key) else {
                    return Err(bad(format!("unknown key model.{key}")));
                };
                *slot = value;
            }
        }
        Some(_) => return Err(bad("`model` must be a section ([model])".into())),
        None => {}
    }
    let mut config: LstmLanguageModelConfig = toml::Value::Table(section)
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("[model]: {}", e.message())))?;
    match config.vocab_size {
        0 => config.vocab_size = vocab_size,
        saved if saved != vocab_size => {
            return Err(bad(format!(
                "model.vocab_size = {saved}, but {VOCAB_FILE} has {vocab_size} characters"
            )));
        }
        _ => {}
    }
    config.validate().map_err(|e| bad(format!("model.{e}")))?;
    Ok(config)
}
