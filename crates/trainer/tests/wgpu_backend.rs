//! The wgpu backend end to end on a tiny model (Mesa's lavapipe on a machine without a GPU;
//! `.ci/run` installs it).

mod common;

use common::{metrics, success, train_smoke, vocab};

#[test]
fn wgpu_trains_and_generates_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("wgpu");
    let run_arg = run.to_str().unwrap();
    train_smoke(
        &run,
        &[
            "--backend",
            "wgpu",
            "--set",
            "training.epochs=3",
            "--set",
            "model.hidden_dim=32",
        ],
    );
    let rows = metrics(&run);
    assert_eq!(rows.len(), 3);
    assert!(rows[2].1 < rows[0].1, "loss falls on wgpu: {rows:?}");
    let chars = vocab(&run);
    let out = success(&[
        "generate",
        "--backend",
        "wgpu",
        "--run",
        run_arg,
        "--length",
        "50",
        "--seed",
        "1",
    ]);
    let text = out.strip_suffix('\n').unwrap();
    assert!(text.chars().all(|c| chars.contains(&c)));
    assert_eq!(text.chars().count(), "The ".len() + 50);
}
