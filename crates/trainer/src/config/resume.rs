//! What a resumed run may change: nothing but how long it runs.

use std::path::Path;

use anyhow::{Result, bail};

use super::{RunConfig, read_table};

/// The keys a resumed run accepts: a new time limit, and more epochs.
const RESUMABLE: [&str; 2] = ["training.time_limit", "training.epochs"];

impl RunConfig {
    /// The configuration a resumed run trains with: `saved` as it is, but for a new
    /// `training.time_limit` and a larger `training.epochs`. The keys that `file` and `sets`
    /// give (laid over the defaults as for a new run, so the command that started the run,
    /// `--resume` added, resumes it) must otherwise say what `saved` says: a difference is an
    /// error naming the key. A file's `training.epochs` below the run's is the run's; a
    /// `--set` one is an error.
    pub fn resumed(saved: &RunConfig, file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut saved = saved.clone();
        saved.make_data_path_absolute()?;
        let mut requested = RunConfig::resolve(file, sets)?;
        requested.make_data_path_absolute()?;
        // The vocabulary size comes from the text, which the run has read.
        requested.model.vocab_size = saved.model.vocab_size;
        let requested = toml::Table::try_from(requested).expect("a config serializes");
        let mut table = toml::Table::try_from(&saved).expect("a config serializes");
        let mut given: Vec<(String, String)> = Vec::new();
        if let Some(path) = file {
            for (section, keys) in read_table(path, "config file")? {
                for key in keys.as_table().into_iter().flat_map(|t| t.keys()) {
                    given.push((format!("{section}.{key}"), path.display().to_string()));
                }
            }
        }
        for set in sets {
            let key = set.split_once('=').map_or(set.as_str(), |(k, _)| k.trim());
            given.push((key.to_string(), "--set".into()));
        }
        for (name, origin) in given {
            let (section, key) = name.split_once('.').expect("checked by resolve");
            let (wanted, had) = (&requested[section][key], &table[section][key]);
            let more_epochs = wanted.as_integer() > had.as_integer();
            match name.as_str() {
                "training.time_limit" => {}
                "training.epochs" if more_epochs => {}
                "training.epochs" if origin != "--set" => continue,
                _ if wanted == had => continue,
                "training.epochs" => bail!(
                    "--resume --set training.epochs={wanted}: below the run's {had}; a resumed run can only train for more epochs"
                ),
                _ => bail!(
                    "--resume: {origin} gives {name} = {wanted}, but the run was trained with {had}; a resumed run keeps its config (only {} may change)",
                    RESUMABLE.join(" and ")
                ),
            }
            table[section][key] = wanted.clone();
        }
        let config = Self::parse(&table, "--resume")?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> RunConfig {
        let mut config = RunConfig::default();
        config.training.epochs = 300;
        config
    }

    #[test]
    fn only_the_time_limit_and_more_epochs_change() {
        let resumed = RunConfig::resumed(&saved(), None, &[]).unwrap();
        assert_eq!(
            resumed,
            saved(),
            "nothing given: the saved config, epochs included"
        );
        let sets = [
            "training.epochs=400".into(),
            "training.time_limit=\"5m\"".into(),
        ];
        let resumed = RunConfig::resumed(&saved(), None, &sets).unwrap();
        assert_eq!(
            (
                resumed.training.epochs,
                resumed.training.time_limit.as_str()
            ),
            (400, "5m")
        );
        for (set, named) in [
            ("model.hidden_dim=32", "model.hidden_dim"),
            ("training.learning_rate=0.5", "training.learning_rate"),
            ("training.epochs=49", "below the run's 300"),
        ] {
            let err = RunConfig::resumed(&saved(), None, &[set.into()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{set}: {err}");
        }
    }
}
