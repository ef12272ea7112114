//! Where the training text comes from.

use anyhow::Result;

use crate::config::{EXAMPLE_TEXT, RunConfig};

/// The training text: the built-in example, or `data.path`, downloaded from `data.url` first
/// when missing.
pub fn load_training_text(config: &RunConfig) -> Result<String> {
    let Some(path) = config.data_path() else {
        return Ok(EXAMPLE_TEXT.to_string());
    };
    if !path.exists() && !config.data.url.is_empty() {
        crate::download::download(&config.data.url, &path, &config.data.sha256)?;
    }
    Ok(char_lstm_data::load_text(&path)?)
}
