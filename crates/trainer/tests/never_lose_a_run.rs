//! What a command does to an existing run, as users really run them: `--force`, `--resume`,
//! `export`, signals, and the small surprises of issue 21, one test per numbered item.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    failure, metrics, root, signal, smoke_args, spawn, success, train_smoke, trainer,
    wait_for_epochs,
};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn text_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// Issue item 1: `--force` with a mistake fails before it touches the old run; a good `--force`
/// replaces it; one killed before its first checkpoint gets the old run back at the next command.
#[test]
fn force_checks_everything_first_and_replaces_only_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("old");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let before = snapshot(&run);
    let missing = dir.path().join("missing.txt");
    let binary = text_file(dir.path(), "binary.bin", &[0xff, 0xfe, 0x00, 0x80]);
    let short = text_file(dir.path(), "short.txt", b"ab");
    let path_set = |p: &str| format!("data.path={p}");
    for extra in [
        vec!["--set".to_string(), path_set(missing.to_str().unwrap())],
        vec!["--set".into(), path_set(&binary)],
        vec!["--set".into(), path_set(&short)],
        vec!["--backend".into(), "cuda".into()],
        vec!["--set".into(), "generate.prompt=Zebra{".into()],
    ] {
        let mut args: Vec<&str> = vec!["--force"];
        args.extend(extra.iter().map(String::as_str));
        let err = failure(&smoke_args(&run, &args));
        assert_eq!(
            snapshot(&run),
            before,
            "{extra:?} changed the old run ({err})"
        );
    }

    // Killed before its first checkpoint: the old run waits aside, and comes back.
    let slow = [
        "--force",
        "--set",
        "model.hidden_dim=512",
        "--set",
        "training.checkpoint_every=0",
    ];
    let mut child = spawn(&smoke_args(&run, &slow));
    let aside = run.join(".previous-run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(aside.is_dir() && run.join("config.toml").exists()) {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "KILL");
    child.wait().unwrap();
    let out = train_smoke(&run, &["--resume", "--set", "training.epochs=1"]);
    assert!(out.contains("is back"), "{out}");
    let after = snapshot(&run);
    assert_eq!(
        after["model.bpk"], before["model.bpk"],
        "the old weights are back"
    );

    let out = train_smoke(&run, &["--force", "--set", "training.epochs=2"]);
    assert!(out.contains("saved"), "{out}");
    assert_eq!(metrics(&run).len(), 2, "the new run replaced the old");
    assert!(!aside.exists());
}

/// `trainer --resume` of `run` to two epochs, from the directory the caller sets.
fn resume_for_a_second_epoch(run: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"));
    command.args(["--resume", "--run", run.to_str().unwrap(), "--no-tui"]);
    command.args(["--set", "training.epochs=2"]);
    command
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Issue item 2: `export` never overwrites what it should not: an existing file only with
/// `--force`, the run's own files never, nor devices or `-`; the export's mode is the run files'.
#[test]
fn export_refuses_existing_special_and_run_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let run_arg = run.to_str().unwrap();
    let export = |target: &str, force: bool| {
        let mut args = vec!["export", "--run", run_arg, "--safetensors", target];
        if force {
            args.push("--force");
        }
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let weights = std::fs::read(run.join("model.bpk")).unwrap();
    for force in [false, true] {
        let err = failure(&args(&export(
            run.join("model.bpk").to_str().unwrap(),
            force,
        )));
        assert!(err.contains("model.bpk"), "{err}");
    }
    assert_eq!(std::fs::read(run.join("model.bpk")).unwrap(), weights);
    let err = failure(&args(&export("-", true)));
    assert!(err.contains("standard output"), "{err}");
    assert!(!root().join("-").exists());
    let err = failure(&args(&export("/dev/null", true)));
    assert!(err.contains("not a regular file"), "{err}");
    let target = dir.path().join("w.safetensors");
    let target_arg = target.to_str().unwrap();
    success(&args(&export(target_arg, false)));
    let err = failure(&args(&export(target_arg, false)));
    assert!(err.contains("--force"), "{err}");
    success(&args(&export(target_arg, true)));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&target), mode(&run.join("model.bpk")));
}

/// Issue item 3: SIGTERM saves as Ctrl-C does; after a SIGKILL, `model.bpk` holds the best epoch so
/// far.
#[test]
fn sigterm_saves_and_sigkill_leaves_the_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    for (name, code) in [("TERM", Some(130)), ("KILL", None)] {
        let run = dir.path().join(name);
        let mut child = spawn(&smoke_args(&run, &["--set", "training.epochs=100000"]));
        wait_for_epochs(&run, 2, &mut child);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            code,
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let sample = success(&["generate", "--run", run.to_str().unwrap(), "--length", "10"]);
        assert!(!sample.is_empty());
    }
}

/// Issue item 4: `--resume --run DIR`, as the Ctrl-C message prints it, keeps the run's epochs; a
/// config file's smaller `epochs` does not shorten it and a larger `--set` lengthens it.
#[test]
fn resume_keeps_the_saved_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    train_smoke(&run, &["--set", "training.epochs=2"]);
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let out = success(&["--resume", "--run", run_arg, "--no-tui"]);
    assert!(!out.contains("epoch 1/100"), "{out}");
    assert_eq!(metrics(&run).len(), 2, "nothing more to train: {out}");
    assert_eq!(
        std::fs::read_to_string(run.join("config.toml")).unwrap(),
        config
    );
    let out = success(&[
        "--resume",
        "--run",
        run_arg,
        "--no-tui",
        "--set",
        "training.epochs=3",
    ]);
    assert!(out.contains("epoch 3/3"), "{out}");
    assert_eq!(metrics(&run).len(), 3);
}

/// Issue item 5: Any other change on `--resume` is refused, naming the key.
#[test]
fn resume_refuses_other_changes_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    train_smoke(&run, &["--set", "training.epochs=3"]);
    for (set, named) in [
        ("model.hidden_dim=32", "model.hidden_dim"),
        ("training.learning_rate=0.5", "training.learning_rate"),
        ("training.epochs=1", "training.epochs"),
    ] {
        let err = failure(&["--resume", "--run", run_arg, "--set", set]);
        assert!(err.contains(named), "{set}: {err}");
    }
}

/// Issue item 6: A new run that fails leaves nothing, so the next one starts without `--force`.
#[test]
fn a_failed_new_run_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    failure(&smoke_args(&run, &["--backend", "cuda"]));
    assert!(
        !run.exists(),
        "nothing written before the backend was checked"
    );
    let diverging = [
        "--set",
        "training.learning_rate=1e38",
        "--set",
        "training.grad_clip_norm=0",
    ];
    let err = failure(&smoke_args(&run, &diverging));
    assert!(err.contains("nothing of this run was kept"), "{err}");
    assert!(!run.join("config.toml").exists() && !run.join("vocab.json").exists());
    train_smoke(&run, &["--set", "training.epochs=1"]);
}

/// Issue item 7: A run records its text's absolute path, so `--resume` works from anywhere; a
/// missing file's error says the operating system's reason once.
#[test]
fn relative_data_paths_resume_from_another_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let out = resume_for_a_second_epoch(&run)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = dir.path().join("other");
    let err = failure(&smoke_args(
        &other,
        &["--set", "data.path=no/such/file.txt"],
    ));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Issue item 8: A CPU run never loads the Vulkan loader, even on `--resume`.
#[test]
fn cpu_runs_never_touch_vulkan() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let out = resume_for_a_second_epoch(&run)
        .current_dir(root())
        .env("LD_DEBUG", "libs")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("libvulkan"),
        "the dynamic loader looked for Vulkan"
    );
}

/// Issue item 10: A prompt outside the vocabulary fails before training; an imported model without
/// the default prompt's characters generates with no flags.
#[test]
fn prompts_are_checked_before_training_and_default_to_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let err = failure(&smoke_args(&run, &["--set", "generate.prompt=Zebra{"]));
    assert!(
        err.contains("generate.prompt") && err.contains("Zebra{"),
        "{err}"
    );
    assert!(!run.exists());
    let fixtures = root().join("crates/char-lstm/tests/fixtures");
    let imported = dir.path().join("imported");
    success(&[
        "import",
        "--pytorch",
        fixtures.join("small.pt").to_str().unwrap(),
        "--vocab-text",
        fixtures.join("small_vocab.txt").to_str().unwrap(),
        "--run",
        imported.to_str().unwrap(),
    ]);
    success(&["generate", "--run", imported.to_str().unwrap()]);
}

/// Issue item 11: Batched generation reports its progress and stops cleanly on Ctrl-C, printing
/// what it drew.
#[test]
fn batched_generation_reports_progress_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let run_arg = run.to_str().unwrap();
    let args = [
        "generate",
        "--run",
        run_arg,
        "--num-samples",
        "64",
        "--length",
        "100000000",
    ];
    let child = spawn(&args);
    std::thread::sleep(Duration::from_millis(3000));
    signal(&child, "INT");
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("generated ") && stderr.contains("interrupted"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("--- sample 64 ---"));
}

/// Issue item 12: The small ones.
#[test]
fn small_errors_say_what_is_wrong_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let run_arg = run.to_str().unwrap();

    // clap's usage errors start with the error.
    let out = trainer(&["--bogus-flag"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().next().unwrap().starts_with("error:") && stderr.contains("--bogus-flag")
    );
    // A file where a run directory should be.
    let err = failure(&[
        "generate",
        "--run",
        run.join("config.toml").to_str().unwrap(),
    ]);
    assert!(err.contains("is a file"), "{err}");
    // A one-character text names its file.
    let tiny = text_file(dir.path(), "tiny.txt", b"a");
    let err = failure(&smoke_args(
        &dir.path().join("t"),
        &["--set", &format!("data.path={tiny}")],
    ));
    assert!(err.contains("tiny.txt"), "{err}");
    // A wrong type in a config file names the file.
    let config = text_file(
        dir.path(),
        "bad.toml",
        b"[model]\nhidden_dim = \"sixty-four\"\n",
    );
    let err = failure(&[
        "--config",
        &config,
        "--run",
        dir.path().join("b").to_str().unwrap(),
    ]);
    assert!(err.contains("bad.toml"), "{err}");
    // A number too large, and a zero duration.
    let err = failure(&smoke_args(
        &dir.path().join("c"),
        &["--set", "training.epochs=99999999999999999999999"],
    ));
    assert!(!err.contains("invalid type: string"), "{err}");
    let err = failure(&smoke_args(
        &dir.path().join("d"),
        &["--set", "training.time_limit=\"0s\""],
    ));
    assert!(err.contains("above zero"), "{err}");
    // A byte-order mark is no character of the text.
    let smoke = std::fs::read_to_string(root().join("datasets/smoke.txt")).unwrap();
    let bom = text_file(dir.path(), "bom.txt", format!("\u{feff}{smoke}").as_bytes());
    let with_bom = dir.path().join("bom");
    train_smoke(
        &with_bom,
        &[
            "--set",
            "training.epochs=1",
            "--set",
            &format!("data.path={bom}"),
        ],
    );
    assert!(
        !std::fs::read_to_string(with_bom.join("vocab.json"))
            .unwrap()
            .contains("feff")
    );
    assert!(
        !std::fs::read_to_string(with_bom.join("vocab.json"))
            .unwrap()
            .contains('\u{feff}')
    );
    // An unknown character deep in a long prompt: a short excerpt.
    let prompt = format!("{}{{", "a".repeat(90_000));
    let err = failure(&["generate", "--run", run_arg, "--prompt", &prompt]);
    assert!(err.len() < 400, "{} bytes", err.len());
    // A lock whose process id now belongs to another process (this one, started later).
    std::fs::write(run.join("train.lock"), format!("{} 1", std::process::id())).unwrap();
    train_smoke(&run, &["--resume", "--set", "training.epochs=2"]);
    // `bench --steps 0` is refused, by clap, whose message starts with the error.
    let out = trainer(&["bench", "--steps", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.lines().next().unwrap().contains("--steps"),
        "{stderr}"
    );
    // `eval --mode windows` reads a text of seq_len + 1 characters, as training does.
    let window = text_file(dir.path(), "window.txt", &smoke.as_bytes()[..33]);
    success(&[
        "eval", "--run", run_arg, "--text", &window, "--mode", "windows",
    ]);
}

/// Output into a reader that stops early (`trainer generate | head`, the same for training):
/// the process ends by SIGPIPE at once, as `cat` would, without a panic's backtrace.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_closed_stdout_ends_the_process_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_smoke(&run, &["--set", "training.epochs=1"]);
    let run_arg = run.to_str().unwrap();
    let generate = ["generate", "--run", run_arg, "--length", "100000000"];
    let training = dir.path().join("training");
    let train = smoke_args(&training, &["--set", "training.epochs=100000"]);
    for args in [&generate[..], &train[..]] {
        let mut child = spawn(args);
        let mut first = [0u8; 8];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
