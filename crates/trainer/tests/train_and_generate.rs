//! End to end through the binary: train, then generate, on the CPU.

mod common;

use common::{failure, metrics, success, train_smoke, vocab};

#[test]
fn smoke_config_trains_and_generates_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("smoke");
    let run_arg = run.to_str().unwrap();
    let out = train_smoke(&run, &[]);
    assert!(out.contains("sample"), "{out}");
    for file in [
        "config.toml",
        "vocab.json",
        "model.bpk",
        "metrics.csv",
        "curves.svg",
        "best.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }

    let svg = std::fs::read_to_string(run.join("curves.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "curves.svg: {svg}"
    );

    let chars = vocab(&run);
    let chance = (chars.len() as f64).ln();
    let rows = metrics(&run);
    assert_eq!(rows.len(), 8);
    let (_, first_train, _) = rows[0];
    let (_, last_train, last_valid) = *rows.last().unwrap();
    assert!(last_train < first_train, "{rows:?}");
    assert!(
        last_train < 0.5 * chance,
        "train loss {last_train} vs ln(V) {chance}"
    );
    assert!(
        last_valid < 0.7 * chance,
        "valid loss {last_valid} vs ln(V) {chance}"
    );

    let generate = |seed: &str| {
        success(&[
            "generate", "--run", run_arg, "--prompt", "The ", "--length", "200", "--seed", seed,
        ])
    };
    let first = generate("7");
    let text = first.strip_suffix('\n').unwrap();
    assert_eq!(text.chars().count(), 4 + 200, "{text:?}");
    assert!(text.starts_with("The "));
    assert!(text.chars().all(|c| chars.contains(&c)), "{text:?}");
    assert_eq!(generate("7"), first, "the same seed gives the same text");
    assert_ne!(generate("8"), first, "another seed gives other text");

    let batched = success(&[
        "generate",
        "--run",
        run_arg,
        "--prompt",
        "The ",
        "--length",
        "200",
        "--seed",
        "7",
        "--num-samples",
        "3",
    ]);
    assert!(batched.contains("--- sample 3 ---"), "{batched}");
    assert!(
        batched.contains(text),
        "stream 0 of a batch equals the single stream"
    );

    let err = failure(&["generate", "--run", run_arg, "--prompt", "Zebra{"]);
    assert!(err.contains("'{'") || err.contains("'Z'"), "{err}");
    let err = failure(&[
        "--config",
        "configs/smoke.toml",
        "--run",
        run_arg,
        "--no-tui",
    ]);
    assert!(err.contains("--resume") && err.contains("--force"), "{err}");
}

#[test]
fn another_script_trains_and_generates_in_that_script() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("zh");
    let run_arg = run.to_str().unwrap();
    success(&[
        "--config",
        "configs/poems-zh.toml",
        "--run",
        run_arg,
        "--no-tui",
        "--set",
        "training.epochs=10",
    ]);
    let chars = vocab(&run);
    assert!(chars.contains(&'月') && chars.contains(&'，'));
    let out = success(&[
        "generate", "--run", run_arg, "--prompt", "床前", "--length", "40", "--seed", "3",
    ]);
    let text = out.strip_suffix('\n').unwrap();
    assert_eq!(text.chars().count(), 42);
    let han = text
        .chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count();
    assert!(han >= 30, "mostly Chinese characters expected: {text}");
}

#[test]
fn bad_generate_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    let err = failure(&["generate", "--run", missing.to_str().unwrap()]);
    assert!(
        err.contains("nothing") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn stream_mode_trains_with_the_state_carried() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stream");
    train_smoke(
        &run,
        &[
            "--set",
            "data.mode=\"stream\"",
            "--set",
            "training.batch_size=4",
            "--set",
            "training.epochs=20",
        ],
    );
    let chance = (vocab(&run).len() as f64).ln();
    let rows = metrics(&run);
    assert_eq!(rows.len(), 20);
    let (_, last_train, _) = *rows.last().unwrap();
    assert!(
        last_train < 0.5 * chance,
        "train loss {last_train} vs ln(V) {chance}: {rows:?}"
    );
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("mode = \"stream\""), "{saved}");
}

/// Seconds in a progress line's `4.2s` / `95s` / `12m05s`.
fn seconds(text: &str) -> f64 {
    match text.split_once('m') {
        Some((m, s)) => {
            m.parse::<f64>().unwrap() * 60.0 + s.trim_end_matches('s').parse::<f64>().unwrap()
        }
        None => text.trim_end_matches('s').parse().unwrap(),
    }
}

/// Plain progress prints one line per epoch (the smoke epochs are far shorter than the
/// interval of progress lines within an epoch), and each line gives the epoch's own time
/// beside the run's total: the epoch times add up to about the total, not each to all of it.
#[test]
fn each_epoch_line_gives_that_epoch_s_own_time_and_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "--set",
        "training.epochs=4",
        "--set",
        "model.hidden_dim=128",
    ];
    let out = train_smoke(&dir.path().join("smoke"), &settings);
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(lines.len(), 4, "one line per epoch:\n{out}");
    let mut previous_total = 0.0;
    let mut sum = 0.0;
    for (n, line) in lines.iter().enumerate() {
        let rest = line
            .strip_prefix(&format!("epoch {}/4 done in ", n + 1))
            .unwrap_or_else(|| panic!("{line}"));
        let (own, rest) = rest.split_once(" (total ").unwrap();
        let (total, _) = rest.split_once("):").unwrap();
        let (own, total) = (seconds(own), seconds(total));
        sum += own;
        assert!(
            own > 0.0 && own <= total - previous_total + 0.02,
            "{line} after {previous_total}s"
        );
        previous_total = total;
    }
    assert!(
        sum <= previous_total + 0.05 && sum >= 0.5 * previous_total,
        "{sum} vs {previous_total}:\n{out}"
    );
}

/// A model with multiplicative integration trains (its loss falls), records the key in the run's
/// config, so that `generate` and `eval` read the model it trained, and is not exported, since
/// PyTorch's `nn.LSTM` would compute another model with its weights: the one-line error names
/// the key, and no file is written.
#[test]
fn multiplicative_integration_trains_generates_and_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("multiplicative");
    let run_arg = run.to_str().unwrap();
    train_smoke(
        &run,
        &[
            "--set",
            "model.multiplicative_integration=true",
            "--set",
            "training.epochs=3",
        ],
    );
    let rows = metrics(&run);
    assert!(rows[2].1 < rows[0].1, "{rows:?}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("multiplicative_integration = true"),
        "{config}"
    );
    let sample = success(&[
        "generate", "--run", run_arg, "--length", "40", "--seed", "3",
    ]);
    assert!(!sample.trim().is_empty());
    let eval = success(&["eval", "--run", run_arg, "--text", "datasets/smoke.txt"]);
    assert!(eval.contains("nats/char"), "{eval}");
    let target = dir.path().join("w.safetensors");
    let err = failure(&[
        "export",
        "--run",
        run_arg,
        "--safetensors",
        target.to_str().unwrap(),
    ]);
    assert!(
        err.contains("model.multiplicative_integration = true"),
        "{err}"
    );
    assert!(!target.exists());
}
