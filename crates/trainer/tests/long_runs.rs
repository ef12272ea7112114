//! What long runs need: a time limit, a sample per epoch, a guard against a diverging loss,
//! and no lost work on Ctrl-C or `kill -9`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{failure, metrics, root, smoke_args, train_smoke};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has finished `epochs` epochs (their rows are in metrics.csv).
fn wait_for_epochs(run: &Path, epochs: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let rows = std::fs::read_to_string(run.join("metrics.csv"))
            .map_or(0, |t| t.lines().count().saturating_sub(1));
        if rows >= epochs
            && run
                .join("checkpoint")
                .join(format!("model-{epochs}.bpk"))
                .exists()
        {
            // Let the asynchronous checkpointer finish the optimizer and scheduler files too.
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {epochs} epochs within two minutes");
}

/// The epoch a `--resume` run says it continues after ("resuming DIR after epoch N").
fn resumed_after(out: &str) -> usize {
    out.split("after epoch ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"resuming ... after epoch N\" in {out}"))
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn time_limit_stops_the_run_and_keeps_the_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("timed");
    let started = Instant::now();
    let out = train_smoke(
        &run,
        &[
            "--set",
            "training.epochs=100000",
            "--set",
            "training.time_limit=2s",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped near the limit"
    );
    assert!(
        out.contains("time_limit") && out.contains("reached"),
        "{out}"
    );
    let rows = metrics(&run);
    assert!(!rows.is_empty() && rows.len() < 100000);
    assert!(run.join("model.bpk").exists() && run.join("best.json").exists());
}

#[test]
fn every_epoch_adds_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sampled");
    let out = train_smoke(
        &run,
        &["--set", "training.epochs=3", "--set", "generate.length=40"],
    );
    assert!(out.contains("sample after epoch 3"), "{out}");
    let samples = std::fs::read_to_string(run.join("samples.txt")).unwrap();
    for epoch in 1..=3 {
        assert_eq!(
            samples.matches(&format!("=== epoch {epoch} ===\n")).count(),
            1,
            "{samples}"
        );
    }
    let first = samples.split("=== epoch 2 ===").next().unwrap();
    assert!(
        first.contains("\nThe "),
        "the sample continues the prompt: {samples}"
    );
}

#[test]
fn a_diverging_loss_stops_the_run_without_keeping_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("diverging");
    let err = failure(&smoke_args(
        &run,
        &[
            "--set",
            "training.learning_rate=1e38",
            "--set",
            "training.grad_clip_norm=0",
        ],
    ));
    assert!(err.contains("loss became") && err.contains("step"), "{err}");
    assert!(
        !run.join("model.bpk").exists(),
        "no weights from a diverged run"
    );
}

#[test]
fn ctrl_c_saves_the_weights_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("interrupted");
    let mut child = spawn(&smoke_args(&run, &["--set", "training.epochs=100000"]));
    wait_for_epochs(&run, 2, &mut child);
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("--resume"), "{stdout}");
    assert!(run.join("model.bpk").exists() && !run.join("train.lock").exists());

    let out = train_smoke(&run, &["--resume", "--set", "training.time_limit=1s"]);
    let resumed_after = resumed_after(&out);
    assert!(resumed_after >= 2, "{out}");
    let rows = metrics(&run);
    assert!(
        rows.last().unwrap().0 > resumed_after,
        "the resumed run adds epochs: {rows:?}"
    );
    let epochs: Vec<usize> = rows.iter().map(|r| r.0).collect();
    assert!(
        epochs.windows(2).all(|w| w[1] == w[0] + 1),
        "epochs continue: {epochs:?}"
    );
}

#[test]
fn kill_9_mid_run_resumes_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("killed");
    let mut child = spawn(&smoke_args(&run, &["--set", "training.epochs=100000"]));
    wait_for_epochs(&run, 2, &mut child);
    signal(&child, "KILL");
    child.wait().unwrap();
    assert!(
        run.join("train.lock").exists(),
        "a killed process leaves its lock"
    );

    let out = train_smoke(&run, &["--resume", "--set", "training.time_limit=1s"]);
    let resumed_after = resumed_after(&out);
    assert!(resumed_after >= 2, "{out}");
    let epochs: Vec<usize> = metrics(&run).iter().map(|r| r.0).collect();
    assert!(
        epochs.windows(2).all(|w| w[1] == w[0] + 1),
        "epochs continue: {epochs:?}"
    );
    assert!(*epochs.last().unwrap() > resumed_after);
}
