//! `trainer serve` and `--backend remote` on 127.0.0.1: a run trained through the server is the
//! run trained here; a wrong token, no server and a server that dies are one line each, exit 2,
//! and the run survives.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{failure, root, signal, smoke_args, success, train_smoke};

/// A `trainer serve` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
    /// Its stdout, kept open as a terminal would be: a closed one ends it (SIGPIPE).
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts one of one device with the token in `token_file`; returns once it listens.
    fn start(token_file: &Path) -> Server {
        Server::with_devices(token_file, 1)
    }

    /// Starts one of `devices` devices.
    fn with_devices(token_file: &Path, devices: usize) -> Server {
        Server::of("flex", token_file, devices)
    }

    /// Starts one of `devices` devices of `backend`.
    fn of(backend: &str, token_file: &Path, devices: usize) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["serve", "--port", "0", "--devices", &devices.to_string()])
            .args(["--backend", backend])
            .arg("--token-file")
            .arg(token_file)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no ws:// address in {line:?}"))
            .to_string();
        Server {
            child,
            url,
            _stdout: stdout,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token file in `dir` holding `token` and a newline.
fn token_file(dir: &Path, name: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// The arguments that put a command on `server`'s device with the token in `token`.
fn remote<'a>(server: &'a Server, token: &'a Path) -> [&'a str; 6] {
    [
        "--backend",
        "remote",
        "--remote",
        &server.url,
        "--token-file",
        token.to_str().unwrap(),
    ]
}

/// `trainer eval --json`'s mean loss of `run` over the smoke text, computed where `device`
/// says (here when empty).
fn eval_loss(run: &Path, device: &[&str]) -> f64 {
    let run = run.to_str().unwrap();
    let eval = [
        "eval",
        "--run",
        run,
        "--text",
        "datasets/smoke.txt",
        "--json",
    ];
    let out = success(&[&eval[..], device].concat());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["loss"].as_f64().unwrap()
}

#[test]
fn a_run_trained_through_the_server_evaluates_as_the_run_trained_here() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "token", "smoke-secret");
    let server = Server::with_devices(&token, 2);
    let (here, there) = (dir.path().join("here"), dir.path().join("there"));
    let epochs = ["--set", "training.epochs=2"];
    train_smoke(&here, &epochs);
    let out = train_smoke(&there, &[&epochs[..], &remote(&server, &token)].concat());
    assert!(out.contains("sample"), "{out}");
    // The server's two devices, data-parallel, 8 windows each.
    let halves = ["--devices", "2", "--set", "training.batch_size=8"];
    let both = dir.path().join("both");
    let out = train_smoke(
        &both,
        &[&epochs[..], &halves[..], &remote(&server, &token)].concat(),
    );
    assert!(out.contains("data-parallel on 2 remote devices"), "{out}");

    let here_loss = eval_loss(&here, &[]);
    for run in [&there, &both] {
        let loss = eval_loss(run, &[]);
        assert!(
            (loss - here_loss).abs() <= 1e-5,
            "here {here_loss}, {run:?} {loss}"
        );
    }
    // Generation and evaluation run there too, and give what they give here.
    let run = there.to_str().unwrap();
    let generate = ["generate", "--run", run, "--length", "40"];
    let sample = success(&[&generate[..], &remote(&server, &token)].concat());
    assert_eq!(sample, success(&generate));
    let loss = eval_loss(&there, &remote(&server, &token));
    assert!(
        (loss - here_loss).abs() <= 1e-5,
        "here {here_loss}, there {loss}"
    );
}

/// A server of a wgpu device (Mesa's lavapipe on a machine without a GPU): a run trained through
/// it evaluates as the run trained on wgpu here. That the server runs the recurrence and Adam as
/// its GPU kernels is checked op by op in `char-lstm-kernels`' `remote.rs` tests; a server
/// composing them would train much the same.
#[test]
fn a_run_trained_through_a_wgpu_server_evaluates_as_the_run_trained_on_wgpu_here() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "token", "wgpu-secret");
    let server = Server::of("wgpu", &token, 1);
    let (here, there) = (dir.path().join("here"), dir.path().join("there"));
    let settings = ["--set", "training.epochs=2", "--set", "model.hidden_dim=32"];
    train_smoke(&here, &[&settings[..], &["--backend", "wgpu"]].concat());
    train_smoke(&there, &[&settings[..], &remote(&server, &token)].concat());
    let (here_loss, there_loss) = (eval_loss(&here, &[]), eval_loss(&there, &[]));
    assert!(
        (there_loss - here_loss).abs() <= 1e-5,
        "on wgpu here {here_loss}, through the wgpu server {there_loss}"
    );
}

#[test]
fn a_wrong_token_or_no_server_is_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "token", "right");
    let wrong = token_file(dir.path(), "wrong", "wrong");
    let server = Server::start(&token);
    let run = dir.path().join("run");

    let err = failure(&smoke_args(&run, &remote(&server, &wrong)));
    assert!(
        err.contains(&server.url) && err.contains("refused the token in"),
        "{err}"
    );
    assert!(!run.exists(), "nothing written for a refused token");

    let none = ["--backend", "remote", "--remote", &server.url];
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(smoke_args(&run, &none))
        .current_dir(root())
        .env_remove("CHAR_LSTM_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wants a token"), "{err}");

    drop(server);
    let err = failure(&smoke_args(
        &run,
        &[
            "--backend",
            "remote",
            "--remote",
            "ws://127.0.0.1:9",
            "--token-file",
            token.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("no `trainer serve` answers"), "{err}");
    let err = failure(&smoke_args(&run, &["--backend", "remote"]));
    assert!(err.contains("--remote ws://HOST:PORT"), "{err}");
    let err = failure(&smoke_args(
        &run,
        &["--token-file", token.to_str().unwrap()],
    ));
    assert!(err.contains("only with --backend remote"), "{err}");
    assert!(!run.exists(), "nothing written without a server");

    // Without a token (none in the environment either), nothing is served.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["serve", "--port", "0"])
        .env_remove("CHAR_LSTM_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// The smoke config's epochs: enough that the server dies before the run ends.
const EPOCHS: usize = 8;

#[test]
fn a_server_killed_mid_run_is_one_line_and_the_run_resumes_on_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), "token", "resume-secret");
    let run = dir.path().join("run");
    let server = Server::start(&token);
    let args = smoke_args(&run, &remote(&server, &token));
    let mut training = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(&args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_epochs(&run, 1, &mut training);
    signal(&server.child, "KILL");

    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = training.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "training hangs after the server died"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut training.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&server.url) && err.contains("--resume"),
        "{err}"
    );
    drop(server);

    let server = Server::start(&token);
    let resumed = [&["--resume"][..], &remote(&server, &token)].concat();
    let out = success(&smoke_args(&run, &resumed));
    assert!(out.contains("sample"), "{out}");
    assert_eq!(common::metrics(&run).len(), EPOCHS);
}
