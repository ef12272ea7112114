//! Several run directories loaded as one ensemble, for `eval` and `generate`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;
use char_lstm::TrainedModel;

use crate::config::RunConfig;
use crate::run::run_dir::RunDir;

/// Loads every run of `dirs` (at least one) onto `device`, checked to share the first run's
/// vocabulary, so that their predictions can be averaged character by character.
pub fn load_ensemble(dirs: &[PathBuf], device: &Device) -> Result<Vec<(RunConfig, TrainedModel)>> {
    let runs = dirs
        .iter()
        .map(|dir| RunDir::new(dir).load(device))
        .collect::<Result<Vec<_>>>()?;
    let Some((_, first)) = runs.first() else {
        bail!("no run given: expected at least one --run");
    };
    for ((_, trained), dir) in runs.iter().zip(dirs).skip(1) {
        if trained.vocab.chars() != first.vocab.chars() {
            bail!(
                "{}: its vocabulary differs from that of {}; an ensemble's runs must share one",
                dir.display(),
                dirs[0].display()
            );
        }
    }
    Ok(runs)
}
