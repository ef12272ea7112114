//! `training.ema_decay`: the moving average of the weights is validated every epoch beside the
//! trained weights, the better of the two is `model.bpk`, and a run stopped and resumed (from
//! an epoch checkpoint, or from the step checkpoint Ctrl-C saves) ends as one never stopped.

mod common;

use std::path::Path;

use common::{exported_tensors, metrics, signal, smoke_args, spawn, train_smoke, wait_for_epochs};

/// A wider model than the smoke config's, so that Ctrl-C lands mid-run; averaging on.
const SETTINGS: [&str; 6] = [
    "--set",
    "training.ema_decay=0.9",
    "--set",
    "model.hidden_dim=256",
    "--set",
    "training.learning_rate=0.02",
];

/// Epochs of each run: enough that the one stopped after its second epoch is still running
/// when Ctrl-C reaches it, on a machine several times faster than this one.
const EPOCHS: usize = 16;

/// `best.json`.
fn best(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("best.json")).unwrap()).unwrap()
}

#[test]
fn the_average_is_validated_kept_where_better_and_resumes_as_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = |n: usize| format!("training.epochs={n}");
    let whole = dir.path().join("whole");
    let out = train_smoke(
        &whole,
        &[&SETTINGS[..], &["--set", &epochs(EPOCHS)]].concat(),
    );
    let reported: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("the weight average's validation loss ").nth(1))
        .map(|loss| loss.trim().parse().unwrap())
        .collect();
    let rows = metrics(&whole);
    assert_eq!(reported.len(), rows.len(), "{out}");
    // model.bpk holds the weights, trained or averaged, of the lowest loss of either.
    let kept = best(&whole);
    let (epoch, loss) = (
        kept["epoch"].as_u64().unwrap() as usize,
        kept["valid_loss"].as_f64().unwrap(),
    );
    let lowest = rows
        .iter()
        .map(|r| r.2)
        .chain(reported.iter().copied())
        .fold(f64::INFINITY, f64::min);
    assert!(
        (loss - lowest).abs() < 1e-6,
        "{kept} against {rows:?} and {reported:?}"
    );
    let expected_loss = match kept["weights"].as_str().unwrap() {
        "average" => reported[epoch - 1],
        "trained" => rows[epoch - 1].2,
        other => panic!("weights: {other}"),
    };
    assert!((loss - expected_loss).abs() < 1e-6, "{kept}");
    let last_average = format!("checkpoint/average-{EPOCHS}.bpk");
    assert!(whole.join(&last_average).exists());

    // Three epochs, then resumed from that epoch's checkpoint.
    let resumed = dir.path().join("resumed");
    train_smoke(&resumed, &[&SETTINGS[..], &["--set", &epochs(3)]].concat());
    train_smoke(
        &resumed,
        &[&SETTINGS[..], &["--resume", "--set", &epochs(EPOCHS)]].concat(),
    );

    // Stopped by Ctrl-C after two epochs (mid-epoch, most likely), resumed from its step
    // checkpoint.
    let stopped = dir.path().join("stopped");
    let mut child = spawn(&smoke_args(
        &stopped,
        &[&SETTINGS[..], &["--set", &epochs(EPOCHS)]].concat(),
    ));
    wait_for_epochs(&stopped, 2, &mut child);
    signal(&child, "INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    train_smoke(&stopped, &[&SETTINGS[..], &["--resume"]].concat());

    let weights = |run: &Path, name: &str| exported_tensors(run, &run.join(name));
    let expected = weights(&whole, "weights.safetensors");
    for run in [&resumed, &stopped] {
        assert!(
            weights(run, "weights.safetensors") == expected,
            "{run:?}: the same final weights"
        );
        assert_eq!(best(run), kept, "{run:?}");
    }
    // The last epoch's averages, put in place of the weights to export them.
    let average = |run: &Path| {
        std::fs::copy(run.join(&last_average), run.join("model.bpk")).unwrap();
        weights(run, "average.safetensors")
    };
    let expected = average(&whole);
    for run in [&resumed, &stopped] {
        assert!(average(run) == expected, "{run:?}: the same average");
    }
}
