//! What long runs need: a time limit, a sample per epoch, a guard against a diverging loss,
//! and no lost work on Ctrl-C or `kill -9`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    failure, metrics, number_after, signal, smoke_args, spawn, train_smoke, wait_for_epochs,
};

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
fn ctrl_c_saves_a_checkpoint_and_the_weights_and_resume_continues_from_it() {
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
    assert!(run.join("model.bpk").exists() && !run.join("train.lock").exists());
    // `model.bpk` is still the best epoch's: the weights of its epoch checkpoint.
    let best = std::fs::read_to_string(run.join("best.json")).unwrap();
    let best_epoch = number_after(&best, "\"epoch\": ");
    let checkpoint = run
        .join("checkpoint")
        .join(format!("model-{best_epoch}.bpk"));
    assert_eq!(
        std::fs::read(run.join("model.bpk")).unwrap(),
        std::fs::read(&checkpoint).unwrap(),
        "model.bpk holds epoch {best_epoch}'s weights"
    );
    // The checkpoint is of the step where Ctrl-C landed, not of the last epoch.
    // Ctrl-C may land between epochs, after the epoch's checkpoint.
    let saved = steps_at(
        stdout
            .split("the checkpoint of ")
            .nth(1)
            .expect("names its checkpoint"),
    );
    assert!(stdout.contains("--resume"), "{stdout}");

    let out = train_smoke(&run, &["--resume", "--set", "training.time_limit=1s"]);
    let resumed = out
        .lines()
        .find(|l| l.starts_with("resuming "))
        .expect("resumes");
    assert_eq!(
        steps_at(resumed.split(" after ").nth(1).unwrap()),
        saved,
        "{out}"
    );
    let epochs: Vec<usize> = metrics(&run).iter().map(|r| r.0).collect();
    assert!(
        epochs.windows(2).all(|w| w[1] == w[0] + 1),
        "epochs continue: {epochs:?}"
    );
    assert!(*epochs.last().unwrap() >= 2, "{epochs:?}");
}

/// The steps at "step N ..." or "epoch E ..." (10 steps an epoch in the smoke config).
fn steps_at(text: &str) -> usize {
    match text.strip_prefix("step ") {
        Some(_) => number_after(text, "step "),
        None => 10 * number_after(text, "epoch "),
    }
}

/// Killed mid-epoch and resumed from its last step checkpoint, a run ends with the same
/// weights as one never interrupted: same optimizer state, learning-rate position and batches.
#[test]
fn kill_9_mid_epoch_resumes_from_the_last_step_checkpoint_as_if_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // 10 batches per epoch, a checkpoint every 7 steps: most checkpoints fall mid-epoch. A wider
    // model than the smoke config's makes the run last long enough to be killed.
    let settings = [
        "--set",
        "training.epochs=12",
        "--set",
        "training.checkpoint_every=7",
        "--set",
        "model.hidden_dim=256",
    ];
    let killed = dir.path().join("killed");
    let mut child = spawn(&smoke_args(&killed, &settings));
    let steps = killed.join("checkpoint").join("steps");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill once a complete checkpoint of epoch 4 or later exists.
    let complete = |step: usize| {
        ["model", "optim", "scheduler"]
            .iter()
            .all(|kind| steps.join(format!("{kind}-{step}.bpk")).exists())
    };
    while !(35..120).step_by(7).any(complete) {
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        assert!(
            Instant::now() < deadline,
            "no step checkpoint within two minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "KILL");
    assert_eq!(child.wait().unwrap().code(), None, "killed by the signal");
    assert!(
        killed.join("train.lock").exists(),
        "a killed process leaves its lock"
    );
    let mut resume = vec!["--resume"];
    resume.extend_from_slice(&settings);
    let out = train_smoke(&killed, &resume);
    // From that step checkpoint, or from a newer end-of-epoch one.
    let resumed = out
        .lines()
        .find(|l| l.starts_with("resuming "))
        .expect("resumes");
    let step = steps_at(resumed.split(" after ").nth(1).unwrap());
    assert!(step >= 35, "{out}");
    // The progress lines count on from where the run resumed, not from epoch 1.
    let first = out
        .lines()
        .find(|l| l.starts_with("epoch "))
        .expect("epoch lines");
    let epoch: usize = first["epoch ".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(epoch, step / 10 + 1, "{first} after step {step}");

    let whole = dir.path().join("whole");
    train_smoke(&whole, &settings);
    let weights = |run: &Path| common::exported_tensors(run, &run.join("weights.safetensors"));
    assert!(
        weights(&killed) == weights(&whole),
        "the same final weights"
    );
    assert_eq!(metrics(&killed).len(), 12);
}

/// A full disk while saving a checkpoint: one clear line, exit code 2, and the previous
/// checkpoint stays whole, so the run resumes from it elsewhere.
#[test]
fn a_full_disk_fails_clearly_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=700k", "tmpfs"])
        .arg(&disk)
        .stderr(Stdio::null())
        .status();
    if !mounted.is_ok_and(|status| status.success()) {
        // CI runs as root, as this machine; elsewhere say why nothing was checked.
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());

    let run = disk.join("run");
    let err = failure(&smoke_args(&run, &["--set", "training.epochs=100"]));
    assert!(
        err.contains("No space left on device") && err.contains("--resume"),
        "{err}"
    );
    let epoch = number_after(&err, "the checkpoint of epoch ");
    let copy = dir.path().join("copy");
    let copied = Command::new("cp").arg("-a").arg(&run).arg(&copy).status();
    assert!(copied.unwrap().success());
    let out = train_smoke(
        &copy,
        &[
            "--resume",
            "--set",
            "training.epochs=100",
            "--set",
            "training.time_limit=1s",
        ],
    );
    assert!(out.contains(&format!("after epoch {epoch}")), "{out}");
}
