//! `model.bpk` holds the weights of the epoch with the lowest validation loss, and `best.json`
//! says which epoch that is.

mod common;

use std::path::Path;

use common::{metrics, root, success, train_smoke};

/// The epoch `best.json` names.
fn best_epoch(run: &Path) -> usize {
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
    best["epoch"].as_u64().unwrap() as usize
}

#[test]
fn the_best_epochs_weights_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("best");
    let run_arg = run.to_str().unwrap();
    // A high learning rate makes the validation loss wobble, so the best epoch is rarely the last.
    train_smoke(
        &run,
        &[
            "--set",
            "training.epochs=7",
            "--set",
            "training.learning_rate=0.1",
        ],
    );
    let rows = metrics(&run);
    let best_epoch = best_epoch(&run);
    let lowest = rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let (_, _, best_valid) = rows[best_epoch - 1];
    assert_eq!(
        best_valid, lowest,
        "best.json names the epoch with the lowest validation loss: {rows:?}"
    );

    // The validation text is the last 10% of the characters; `eval` over its windows is the
    // validation loss of the weights in model.bpk.
    let text = std::fs::read_to_string(root().join("datasets/smoke.txt")).unwrap();
    let chars: Vec<char> = text.chars().collect();
    let valid: String = chars[(chars.len() as f64 * 0.9) as usize..]
        .iter()
        .collect();
    let valid_path = dir.path().join("valid.txt");
    std::fs::write(&valid_path, valid).unwrap();
    let out = success(&[
        "eval",
        "--run",
        run_arg,
        "--text",
        valid_path.to_str().unwrap(),
        "--mode",
        "windows",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let loss = report["loss"].as_f64().unwrap();
    assert!(
        (loss - best_valid).abs() < 1e-4,
        "model.bpk gives {loss}, the best epoch {best_valid}: {rows:?}"
    );
    let (_, _, last_valid) = *rows.last().unwrap();
    if best_epoch < rows.len() {
        assert!(
            (loss - last_valid).abs() > 1e-3,
            "not the last epoch's weights: {rows:?}"
        );
    }
}

/// A resumed run keeps the best epoch of the whole run, whose weights `model.bpk` has held
/// since that epoch, even where burn-train's checkpointer (which forgets the epochs before a
/// resume) has deleted that epoch's checkpoint.
#[test]
fn a_resumed_run_keeps_the_best_epoch_of_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("forgotten");
    train_smoke(
        &run,
        &[
            "--set",
            "training.epochs=5",
            "--set",
            "training.learning_rate=0.1",
        ],
    );
    let first = best_epoch(&run);
    let checkpoint = run.join("checkpoint").join(format!("model-{first}.bpk"));
    std::fs::remove_file(&checkpoint).unwrap();
    let resume = [
        "--resume",
        "--set",
        "training.epochs=6",
        "--set",
        "training.learning_rate=0.1",
    ];
    let out = train_smoke(&run, &resume);
    assert!(out.contains("best epoch"), "{out}");
    let rows = metrics(&run);
    assert_eq!(rows.len(), 6, "{rows:?}");
    let lowest = rows.iter().min_by(|a, b| a.2.total_cmp(&b.2)).unwrap().0;
    assert_eq!(best_epoch(&run), lowest, "{rows:?}");
}
