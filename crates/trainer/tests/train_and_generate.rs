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
