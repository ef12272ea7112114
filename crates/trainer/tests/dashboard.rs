//! Training on a terminal shows burn-train's dashboard with the newest epoch sample in its
//! metrics pane. util-linux's `script` gives the run a pseudo-terminal of a set size.

mod common;

use std::process::{Command, Stdio};

use common::root;

/// Enough epochs for the run to outlast many of the dashboard's 100 ms redraws.
const EPOCHS: usize = 40;

#[test]
fn the_dashboard_shows_the_newest_epoch_sample() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let transcript = dir.path().join("terminal.log");
    let command = format!(
        "stty rows 40 cols 140 && exec {} --config configs/smoke.toml --run {} --force \
         --set training.epochs={EPOCHS}",
        env!("CARGO_BIN_EXE_trainer"),
        run.display()
    );
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command])
        .arg(&transcript)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux's `script` runs");
    let screen = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap()).into_owned();
    assert!(
        out.status.success(),
        "{:?}\n{screen}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The dashboard took the terminal: the alternate screen, and its metrics pane.
    assert!(screen.contains("\x1b[?1049h"), "{screen}");
    assert!(screen.contains("Sample"), "{screen}");
    // smoke.toml prompts with "The ", so a pane line reads "epoch N: The ...". Which epochs
    // appear depends on when the dashboard redrew; at least one must.
    let shown: Vec<usize> = (1..=EPOCHS)
        .filter(|n| screen.contains(&format!("epoch {n}: The ")))
        .collect();
    assert!(!shown.is_empty(), "no sample on the dashboard:\n{screen}");
    let samples = std::fs::read_to_string(run.join("samples.txt")).unwrap();
    assert!(
        samples.contains(&format!("=== epoch {EPOCHS} ===")),
        "{samples}"
    );
}
