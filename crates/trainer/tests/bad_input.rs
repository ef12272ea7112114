//! Bad input is one clear line on stderr naming the file, key or value, exit code 2, and
//! nothing written.

mod common;

use std::path::Path;

use common::{failure, success, train_smoke};

/// A run directory path inside `dir` that must not exist after a failed command.
fn run_in(dir: &Path) -> String {
    dir.join("run").to_str().unwrap().to_string()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bad_configs_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path());
    let not_toml = write(dir.path(), "broken.toml", b"[model]\nhidden_dim = = 3\n");
    let unknown = write(dir.path(), "unknown.toml", b"[model]\nhiden_dim = 3\n");
    let wrong_type = write(dir.path(), "type.toml", b"[training]\nepochs = \"many\"\n");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--config".into(), "no/such/file.toml".into()],
            vec!["no/such/file.toml"],
        ),
        (
            vec!["--config".into(), not_toml.clone()],
            vec!["broken.toml", "line 2"],
        ),
        (
            vec!["--config".into(), unknown.clone()],
            vec!["hiden_dim", "hidden_dim"],
        ),
        (vec!["--config".into(), wrong_type.clone()], vec!["epochs"]),
        (
            vec!["--set".into(), "model.num_layers=0".into()],
            vec!["model.num_layers", "0"],
        ),
        (
            vec!["--set".into(), "model.hidden_dim=0".into()],
            vec!["model.hidden_dim"],
        ),
        (
            vec!["--set".into(), "model.dropout=1.0".into()],
            vec!["model.dropout"],
        ),
        (
            vec!["--set".into(), "model.dropout=-0.1".into()],
            vec!["model.dropout"],
        ),
        (
            vec!["--set".into(), "training.learning_rate=0".into()],
            vec!["training.learning_rate"],
        ),
        (
            vec!["--set".into(), "data.seq_len=0".into()],
            vec!["data.seq_len"],
        ),
        (
            vec!["--set".into(), "training.batch_size=0".into()],
            vec!["training.batch_size"],
        ),
        (
            vec!["--set".into(), "data.valid_fraction=1".into()],
            vec!["data.valid_fraction"],
        ),
        (
            vec!["--set".into(), "model.hidden_dim".into()],
            vec!["model.hidden_dim", "="],
        ),
        (
            vec!["--set".into(), "model.colour=3".into()],
            vec!["model.colour"],
        ),
    ];
    for (args, expected) in cases {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--run", &run, "--no-tui"]);
        let err = failure(&all);
        for part in expected {
            assert!(
                err.contains(part),
                "{args:?}: {err:?} should mention {part:?}"
            );
        }
        assert!(!Path::new(&run).exists(), "{args:?} wrote {run}");
    }
}

#[test]
fn bad_data_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_in(dir.path());
    let empty = write(dir.path(), "empty.txt", b"");
    let invalid = write(dir.path(), "latin1.txt", b"caf\xe9 au lait");
    let short = write(dir.path(), "short.txt", b"just a few words here");
    let long_enough = write(dir.path(), "medium.txt", "abcdefghij".repeat(12).as_bytes());
    let directory = dir.path().to_str().unwrap().to_string();
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        ("no/such/text.txt".into(), vec![], vec!["no/such/text.txt"]),
        (empty, vec![], vec!["empty.txt", "empty"]),
        (directory, vec![], vec!["directory"]),
        (invalid, vec![], vec!["latin1.txt", "byte offset 3"]),
        (short, vec![], vec!["too short", "seq_len"]),
        (
            long_enough,
            vec!["data.valid_fraction=0.2", "data.seq_len=40"],
            vec!["validation", "too short"],
        ),
    ];
    for (path, sets, expected) in cases {
        let path_set = format!("data.path={path}");
        let mut args = vec![
            "--config",
            "configs/smoke.toml",
            "--run",
            &run,
            "--no-tui",
            "--set",
            &path_set,
        ];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let err = failure(&args);
        for part in expected {
            assert!(
                err.contains(part),
                "{path}: {err:?} should mention {part:?}"
            );
        }
        assert!(!Path::new(&run).exists(), "{path}: wrote {run}");
    }
}

#[test]
fn bad_runs_and_sampling_options_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("smoke");
    let run_arg = run.to_str().unwrap();
    train_smoke(&run, &["--set", "training.epochs=1"]);

    for (flag, value, expected) in [
        ("--length", "0", "--length"),
        ("--temperature", "-1", "--temperature -1"),
        ("--temperature", "NaN", "--temperature NaN"),
        // The flag as it is spelt, not the config key.
        ("--top-p", "0", "--top-p 0"),
        ("--top-p", "1.5", "--top-p 1.5"),
    ] {
        let err = failure(&["generate", "--run", run_arg, flag, value]);
        assert!(err.contains(expected), "{flag} {value}: {err:?}");
    }
    let out = success(&[
        "generate", "--run", run_arg, "--top-k", "1000", "--length", "5",
    ]);
    assert_eq!(
        out.trim_end_matches('\n').chars().count(),
        "The ".len() + 5,
        "top-k is clamped: {out:?}"
    );

    let model = run.join("model.bpk");
    let weights = std::fs::read(&model).unwrap();
    std::fs::write(&model, &weights[..weights.len() / 2]).unwrap();
    let err = failure(&["generate", "--run", run_arg]);
    assert!(err.contains("model.bpk"), "truncated weights: {err:?}");
    std::fs::write(&model, b"not burnpack at all").unwrap();
    let err = failure(&["generate", "--run", run_arg]);
    assert!(err.contains("model.bpk"), "corrupt weights: {err:?}");

    std::fs::write(&model, &weights).unwrap();
    let vocab = run.join("vocab.json");
    std::fs::write(&vocab, r#"{"chars":["a","b","c"]}"#).unwrap();
    let err = failure(&["generate", "--run", run_arg, "--prompt", "a"]);
    assert!(
        err.contains("vocab.json") && err.contains("3 characters"),
        "vocabulary mismatch: {err:?}"
    );

    std::fs::remove_file(&model).unwrap();
    let err = failure(&["generate", "--run", run_arg]);
    assert!(err.contains("no weights"), "{err:?}");
}

#[test]
fn unavailable_backends_say_what_is_offered() {
    if cfg!(feature = "cuda") {
        return;
    }
    let err = failure(&["generate", "--run", "runs/none", "--backend", "cuda"]);
    assert!(err.contains("cuda") && err.contains("flex"), "{err:?}");
    let out = common::trainer(&["--backend", "tpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("flex") && err.contains("wgpu"), "{err:?}");
}

/// Damaged weights, whatever the damage, are a clear error and never a panic.
#[test]
fn damaged_weights_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("smoke");
    let run_arg = run.to_str().unwrap();
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let model = run.join("model.bpk");
    let weights = std::fs::read(&model).unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..12)
        .map(|k| weights[..weights.len() * k / 12].to_vec())
        .collect();
    // Flipped bytes across the header and into the data.
    for offset in [0, 1, 4, 8, 9, 16, 31, 64, 100, 200, 300, weights.len() / 2] {
        let mut bytes = weights.clone();
        bytes[offset.min(weights.len() - 1)] ^= 0xff;
        damaged.push(bytes);
    }
    for bytes in damaged {
        std::fs::write(&model, &bytes).unwrap();
        let out = common::trainer(&["generate", "--run", run_arg, "--length", "5"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "{} bytes: {stderr}",
            bytes.len()
        );
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("model.bpk"), "{stderr}");
        }
    }
}
