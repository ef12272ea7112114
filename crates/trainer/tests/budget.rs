//! `--budget`: a run sized for a wall-time budget chooses what neither the config file nor
//! `--set` gives, says what it chose, writes it into the run's config, and is not sized again
//! when resumed.

mod common;

use std::path::Path;

use common::{failure, metrics, success};

/// The run's saved config.
fn saved_config(run: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(run.join("config.toml")).unwrap()).unwrap()
}

/// `section.key` of a saved config.
fn value<'a>(config: &'a toml::Table, key: &str) -> &'a toml::Value {
    let (section, name) = key.split_once('.').unwrap();
    &config[section][name]
}

/// The seconds of a saved `"Ns"` time limit.
fn limit_seconds(config: &toml::Table) -> u64 {
    let limit = value(config, "training.time_limit").as_str().unwrap();
    limit.strip_suffix('s').unwrap().parse().unwrap()
}

#[test]
fn a_budget_sizes_what_is_not_given_and_writes_it_into_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = success(&[
        "--set",
        "data.path=\"datasets/smoke.txt\"",
        "--set",
        "model.dropout=0.1",
        "--budget",
        "8s",
        "--run",
        run.to_str().unwrap(),
        "--no-tui",
    ]);
    let paragraph = out
        .lines()
        .find(|l| l.starts_with("training.budget = \"8s\": training steps of 2 x 128 "))
        .unwrap_or_else(|| panic!("no budget paragraph in\n{out}"));
    // 688 characters hold no validation text and fill no streams: only the smallest size.
    assert!(
        paragraph.contains("Chose 2 x 128, embedding 64"),
        "{paragraph}"
    );
    let epochs: i64 = paragraph
        .split("parameters), for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no epochs in {paragraph}"));
    let config = saved_config(&run);
    let int = |key| value(&config, key).as_integer().unwrap();
    let float = |key| value(&config, key).as_float().unwrap();
    assert_eq!(
        (
            int("model.hidden_dim"),
            int("model.embedding_dim"),
            int("model.num_layers")
        ),
        (128, 64, 2)
    );
    assert_eq!(int("training.epochs"), epochs);
    assert_eq!(float("model.dropout"), 0.1, "given, so kept");
    assert_eq!(
        value(&config, "model.variational_dropout").as_bool(),
        Some(true)
    );
    assert_eq!(value(&config, "data.mode").as_str(), Some("windows"));
    assert_eq!(
        (int("data.seq_len"), float("data.valid_fraction")),
        (100, 0.0)
    );
    // 2 x 128 has hundreds of parameters per character of 688: the strong weight decay.
    assert_eq!(
        (
            float("training.learning_rate"),
            float("training.weight_decay")
        ),
        (2e-3, 0.4)
    );
    assert!(
        paragraph.contains("with weight decay 0.4 (raised for a model of"),
        "{paragraph}"
    );
    assert_eq!(
        value(&config, "training.lr_schedule").as_str(),
        Some("cosine")
    );
    assert_eq!(value(&config, "training.budget").as_str(), Some("8s"));
    assert!((1..=8).contains(&limit_seconds(&config)), "{config}");
    let rows = metrics(&run).len() as i64;
    assert!((1..=epochs).contains(&rows), "{rows} epochs of {epochs}");
}

#[test]
fn a_config_files_settings_stay_and_a_resumed_run_is_not_sized_again() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let out = success(&[
        "--config",
        "configs/smoke.toml",
        "--budget",
        "5s",
        "--run",
        run_arg,
        "--no-tui",
    ]);
    assert!(out.contains("Chose 1 x 64, embedding 16"), "{out}");
    assert!(out.contains("for 8 epochs: the given size"), "{out}");
    let config = saved_config(&run);
    let int = |key| value(&config, key).as_integer().unwrap();
    let float = |key| value(&config, key).as_float().unwrap();
    // The file's sizes, cut and learning rate; the budget's weight decay (the strong one: the
    // smoke model has hundreds of parameters per character of its text) and schedule.
    assert_eq!(
        (
            int("model.hidden_dim"),
            int("data.seq_len"),
            int("data.stride")
        ),
        (64, 32, 4)
    );
    assert_eq!(
        (int("training.epochs"), float("data.valid_fraction")),
        (8, 0.1)
    );
    assert_eq!(
        (
            float("training.learning_rate"),
            float("training.weight_decay")
        ),
        (1e-2, 0.4)
    );
    assert_eq!(value(&config, "data.mode").as_str(), Some("windows"));
    assert!((1..=5).contains(&limit_seconds(&config)), "{config}");

    let resumed = success(&[
        "--resume",
        "--run",
        run_arg,
        "--set",
        "training.epochs=9",
        "--no-tui",
    ]);
    assert!(!resumed.contains("training.budget ="), "{resumed}");
    let mut after = saved_config(&run);
    after["training"]
        .as_table_mut()
        .unwrap()
        .insert("epochs".into(), 8.into());
    assert_eq!(after, config);
}

#[test]
fn a_budget_that_is_no_duration_names_the_key() {
    let err = failure(&[
        "--config",
        "configs/smoke.toml",
        "--budget",
        "soon",
        "--no-tui",
    ]);
    assert!(
        err.contains("training.budget = \"soon\"") && err.contains("duration"),
        "{err}"
    );
}
