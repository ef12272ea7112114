//! Helpers for running the `trainer` binary from the workspace root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root, where `configs/` and `datasets/` live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `trainer` with `args` in the workspace root.
pub fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("trainer runs")
}

/// Stdout of a run that must succeed.
pub fn success(args: &[&str]) -> String {
    let out = trainer(args);
    assert!(
        out.status.success(),
        "trainer {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The arguments that train `configs/smoke.toml` into `run` with plain progress, then `extra`
/// (such as `--set key=value`).
pub fn smoke_args<'a>(run: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--config",
        "configs/smoke.toml",
        "--run",
        run.to_str().unwrap(),
        "--no-tui",
    ];
    args.extend_from_slice(extra);
    args
}

/// Trains `configs/smoke.toml` into `run` (see [`smoke_args`]); its stdout.
pub fn train_smoke(run: &Path, extra: &[&str]) -> String {
    success(&smoke_args(run, extra))
}

/// Stderr of a run that must fail with exit code 2, checked to be one line.
pub fn failure(args: &[&str]) -> String {
    let out = trainer(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "trainer {args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The rows of a run's `metrics.csv` as `(epoch, train_loss, valid_loss)`.
pub fn metrics(run: &Path) -> Vec<(usize, f64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).expect("metrics.csv");
    text.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (
                cells[0].parse().unwrap(),
                cells[1].parse().unwrap(),
                cells[2].parse().unwrap(),
            )
        })
        .collect()
}

/// The characters of a run's vocabulary.
pub fn vocab(run: &Path) -> Vec<char> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("vocab.json")).unwrap()).unwrap();
    json["chars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().chars().next().unwrap())
        .collect()
}

/// Exports a run's weights with `trainer export` to `file`; each tensor's shape and raw bytes
/// by name (the file's own header order is not fixed).
pub fn exported_tensors(
    run: &Path,
    file: &Path,
) -> std::collections::BTreeMap<String, (serde_json::Value, Vec<u8>)> {
    success(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--safetensors",
        file.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, spec)| {
            let offsets = &spec["data_offsets"];
            let (start, end) = (offsets[0].as_u64().unwrap(), offsets[1].as_u64().unwrap());
            let values = data[start as usize..end as usize].to_vec();
            (name.clone(), (spec["shape"].clone(), values))
        })
        .collect()
}

/// The number after the first `prefix` in `out` ("after step 42 (epoch 5, ...)" gives 42).
pub fn number_after(out: &str, prefix: &str) -> usize {
    out.split(prefix)
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no \"{prefix}N\" in {out}"))
}

/// Starts `trainer` with `args` in the workspace root, its output piped.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has finished at least `epochs` epochs: their rows are in metrics.csv and
/// an epoch checkpoint at least that far along is written. (The checkpointer keeps only the
/// latest and the best, and a smoke epoch takes milliseconds, so epoch `epochs`'s own checkpoint
/// may be gone before a poll sees it.) On timeout the child is killed, not left running.
pub fn wait_for_epochs(run: &Path, epochs: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let rows = std::fs::read_to_string(run.join("metrics.csv"))
            .map_or(0, |t| t.lines().count().saturating_sub(1));
        if rows >= epochs && latest_checkpoint(run).is_some_and(|latest| latest >= epochs) {
            // Let the asynchronous checkpointer finish the optimizer and scheduler files too.
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("no {epochs} epochs within two minutes");
}

/// The last epoch whose model checkpoint (`checkpoint/model-N.bpk`) is in `run`.
fn latest_checkpoint(run: &Path) -> Option<usize> {
    std::fs::read_dir(run.join("checkpoint"))
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .max()
}

/// Sends signal `name` (`INT`, `TERM`, `KILL`) to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
