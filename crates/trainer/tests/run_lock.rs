//! Two training processes never share a run directory; a lock left by a killed one does not
//! block forever.

mod common;

use common::{failure, smoke_args, success};

#[test]
fn a_live_lock_refuses_and_a_stale_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("locked");
    let train = |extra: &'static str| smoke_args(&run, &["--set", "training.epochs=1", extra]);
    success(&train("--force"));
    assert!(
        !run.join("train.lock").exists(),
        "the lock goes when training ends"
    );

    // This test process is alive: as far as the trainer can tell, it is training this run.
    std::fs::write(run.join("train.lock"), std::process::id().to_string()).unwrap();
    let err = failure(&train("--force"));
    assert!(
        err.contains("in use by training process") && err.contains("train.lock"),
        "{err}"
    );
    assert!(
        run.join("model.bpk").exists(),
        "a refused --force wipes nothing"
    );

    // A process that has exited: its lock is stale.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(run.join("train.lock"), dead.to_string()).unwrap();
    success(&train("--force"));
    assert!(!run.join("train.lock").exists());
}
