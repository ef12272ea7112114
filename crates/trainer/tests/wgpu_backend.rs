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

/// `bench --backend wgpu` counts a training step's kernel launches: the recurrence kernels
/// (one per step and direction) launch far fewer than the composed ops' several per time step,
/// and the CPU backend none; it names the kernels' layout and times a launch.
#[test]
fn wgpu_bench_counts_the_launches_of_a_training_step() {
    let launches = |backend: &str, lstm: &str| {
        let out = success(&[
            "bench",
            "--backend",
            backend,
            "--config",
            "configs/smoke.toml",
            "--set",
            "model.hidden_dim=32",
            "--lstm",
            lstm,
            "--steps",
            "1",
            "--warmup",
            "1",
            "--sample-length",
            "4",
        ]);
        let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
        if backend == "wgpu" {
            assert_eq!(report["gpu_recurrence"], "per-step", "{report}");
            assert!(
                report["launch_overhead_us"].as_f64() > Some(0.0),
                "{report}"
            );
        }
        report["train_step_launches"].as_u64()
    };
    let fused = launches("wgpu", "fused").expect("counted on wgpu");
    let composed = launches("wgpu", "composed").expect("counted on wgpu");
    // The smoke config's 32 time steps each launch several composed kernels.
    assert!(composed > 32 * 4, "composed: {composed}");
    assert!(
        fused * 4 < composed,
        "fused {fused} against composed {composed}"
    );
    assert_eq!(launches("flex", "fused"), None);
}
