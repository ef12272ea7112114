//! `eval` and `generate` of several runs at once: an ensemble that averages their
//! probabilities.

mod common;

use std::path::Path;

use common::{failure, root, success, train_smoke};

/// `command`, a `--run` for each of `runs`, then `rest`.
fn with_runs<'a>(command: &'a str, runs: &[&'a Path], rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![command];
    for run in runs {
        args.extend(["--run", run.to_str().unwrap()]);
    }
    args.extend_from_slice(rest);
    args
}

const SMOKE: [&str; 2] = ["--text", "datasets/smoke.txt"];

/// `eval --json` of `runs` on the smoke text in `mode`: (runs averaged, loss).
fn eval(runs: &[&Path], mode: &str) -> (u64, f64) {
    let args = with_runs(
        "eval",
        runs,
        &[&SMOKE[..], &["--mode", mode, "--json"]].concat(),
    );
    let report: serde_json::Value = serde_json::from_str(success(&args).trim()).unwrap();
    (
        report["runs"].as_u64().unwrap(),
        report["loss"].as_f64().unwrap(),
    )
}

/// 40 characters `generate` draws with seed 3 from `runs`, after the prompt.
fn sample(runs: &[&Path]) -> String {
    success(&with_runs(
        "generate",
        runs,
        &["--length", "40", "--seed", "3"],
    ))
}

#[test]
fn an_ensemble_of_runs_evaluates_and_samples_and_mismatched_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    train_smoke(&a, &["--set", "training.seed=1"]);
    train_smoke(
        &b,
        &["--set", "training.seed=2", "--set", "data.seq_len=20"],
    );

    let (one, loss_a) = eval(&[&a], "stream");
    let (_, loss_b) = eval(&[&b], "stream");
    assert_eq!(one, 1);
    let (two, mixed) = eval(&[&a, &b], "stream");
    assert_eq!(two, 2);
    // Averaging probabilities never loses to the runs' mean loss; two seeds differ, so it wins.
    assert!(
        mixed < (loss_a + loss_b) / 2.0 - 1e-4,
        "{mixed} vs {loss_a} and {loss_b}"
    );
    let (_, twice) = eval(&[&a, &a], "stream");
    assert!((twice - loss_a).abs() < 1e-5, "{twice} vs {loss_a}");
    let text = success(&with_runs("eval", &[&a, &b], &SMOKE));
    assert!(text.contains("ensemble of 2 runs"), "{text}");

    assert_eq!(
        sample(&[&a, &a]),
        sample(&[&a]),
        "two copies of a run mix to that run"
    );
    let mixed_sample = sample(&[&a, &b]);
    assert!(mixed_sample.starts_with("The "), "{mixed_sample}");
    assert_eq!(
        mixed_sample.strip_suffix('\n').unwrap().chars().count(),
        44,
        "{mixed_sample:?}"
    );

    // Windows mode reads one window length, so runs cut differently are refused.
    let windows = [&SMOKE[..], &["--mode", "windows"]].concat();
    let err = failure(&with_runs("eval", &[&a, &b], &windows));
    assert!(err.contains("data.seq_len = 20"), "{err}");

    // A run over other characters cannot join the ensemble.
    let imported = dir.path().join("imported");
    let fixtures = root().join("crates/char-lstm/tests/fixtures");
    let (pt, vocab) = (fixtures.join("small.pt"), fixtures.join("small_vocab.txt"));
    success(&[
        "import",
        "--pytorch",
        pt.to_str().unwrap(),
        "--vocab-text",
        vocab.to_str().unwrap(),
        "--run",
        imported.to_str().unwrap(),
    ]);
    for args in [
        with_runs("eval", &[&a, &imported], &SMOKE),
        with_runs("generate", &[&a, &imported], &[]),
    ] {
        let err = failure(&args);
        assert!(err.contains("imported: its vocabulary differs"), "{err}");
    }
}
