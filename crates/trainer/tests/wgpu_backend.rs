//! The wgpu backend end to end on a tiny model (Mesa's lavapipe on a machine without a GPU;
//! `.ci/run` installs it).

mod common;

use common::{metrics, smoke_args, success, train_smoke, trainer, vocab};

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
    let generate = |backend: &str| {
        success(&[
            "generate",
            "--backend",
            backend,
            "--run",
            run_arg,
            "--length",
            "50",
            "--seed",
            "1",
        ])
    };
    let out = generate("wgpu");
    let text = out.strip_suffix('\n').unwrap();
    assert!(text.chars().all(|c| chars.contains(&c)));
    assert_eq!(text.chars().count(), "The ".len() + 50);
    // On a GPU the weights are read back and decoded on the CPU: the same text as on flex.
    assert_eq!(out, generate("flex"));
}

/// On a GPU the loop reads the losses of many steps at once, not one per step (each read waits
/// for the device): a run that diverges still stops with the step named and keeps no weights,
/// the losses still unread being read before the epoch would be validated and checkpointed.
#[test]
fn a_diverging_loss_on_wgpu_stops_the_run_without_keeping_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("diverging");
    let out = trainer(&smoke_args(
        &run,
        &[
            "--backend",
            "wgpu",
            "--set",
            "model.hidden_dim=32",
            "--set",
            "training.learning_rate=1e38",
            "--set",
            "training.grad_clip_norm=0",
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Mesa's lavapipe complains on stderr where no XDG_RUNTIME_DIR is set (CI); ours is one line.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(ours.len(), 1, "{stderr}");
    assert!(
        ours[0].contains("loss became") && ours[0].contains("at step"),
        "{stderr}"
    );
    assert!(!run.join("model.bpk").exists(), "no weights kept");
    let checkpoints = std::fs::read_dir(run.join("checkpoint")).map_or(0, |dir| dir.count());
    assert_eq!(
        checkpoints, 0,
        "no checkpoint of weights trained on a NaN loss"
    );
}

/// `bench --backend wgpu` counts a training step's kernel launches: the recurrence kernels
/// (one per step and direction) launch far fewer than the composed ops' several per time step,
/// and the CPU backend none; it names the kernels' layout, times a launch and each kernel of a
/// step.
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
            // The step timed kernel by kernel launches what the counted step launches.
            let kernels = report["train_step_kernels"]
                .as_array()
                .expect("timed kernels");
            let launched: u64 = kernels
                .iter()
                .map(|k| k["launches"].as_u64().unwrap())
                .sum();
            assert_eq!(Some(launched), report["train_step_launches"].as_u64());
            let ms: f64 = kernels.iter().map(|k| k["ms"].as_f64().unwrap()).sum();
            assert!(ms > 0.0, "{report}");
            let named = |name: &str| kernels.iter().any(|k| k["kernel"] == name);
            if lstm == "fused" {
                assert!(
                    named("ForwardStepKernel") && named("BackwardStepKernel"),
                    "{report}"
                );
            }
        } else {
            assert!(report["train_step_kernels"].is_null(), "{report}");
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

/// `--budget` times its candidates on the run's own backend: on wgpu the step it measures is a
/// wgpu step, and the run trains there within the time left.
#[test]
fn a_budget_on_wgpu_times_a_wgpu_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("budget");
    let out = train_smoke(
        &run,
        &[
            "--backend",
            "wgpu",
            "--budget",
            "20s",
            "--set",
            "model.hidden_dim=32",
        ],
    );
    let paragraph = out
        .lines()
        .find_map(|l| l.strip_prefix("training.budget = \"20s\": training steps of 1 x 32 "))
        .unwrap_or_else(|| panic!("no budget paragraph in\n{out}"));
    let step_ms: u64 = paragraph.split(' ').next().unwrap().parse().unwrap();
    assert!(step_ms > 0, "{paragraph}");
    assert!(
        paragraph.contains("Chose 1 x 32, embedding 16"),
        "{paragraph}"
    );
    assert!(!metrics(&run).is_empty());
}
