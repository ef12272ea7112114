//! `--devices N` (`training.devices`): data-parallel training that steps as one device with
//! the whole batch would, and resumes as a run on one device does.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{exported_tensors, failure, metrics, smoke_args, success, train_smoke};

/// A run's weights by name, as `f32`.
fn weights(run: &Path) -> BTreeMap<String, Vec<f32>> {
    exported_tensors(run, &run.with_extension("safetensors"))
        .into_iter()
        .map(|(name, (_, bytes))| {
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect()
}

#[test]
fn two_devices_train_as_one_device_with_the_whole_batch_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["windows", "stream"] {
        let mode_set = format!("data.mode=\"{mode}\"");
        let (one, two) = (dir.path().join(mode), dir.path().join(format!("{mode}-2")));
        let whole = ["--set", "training.batch_size=8", "--set", &mode_set];
        train_smoke(
            &one,
            &[&whole[..], &["--set", "training.epochs=2"]].concat(),
        );
        // One epoch on two devices of 4 windows each, then a resumed second.
        let halves = [
            "--devices",
            "2",
            "--set",
            "training.batch_size=4",
            "--set",
            &mode_set,
        ];
        let out = train_smoke(
            &two,
            &[&halves[..], &["--set", "training.epochs=1"]].concat(),
        );
        assert!(
            out.contains(
                "data-parallel on 2 flex devices: 4 windows each, 8 per step, gradients gathered"
            ),
            "{out}"
        );
        let resumed = [&halves[..], &["--resume", "--set", "training.epochs=2"]].concat();
        success(&smoke_args(&two, &resumed));

        let (a, b) = (weights(&one), weights(&two));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, values) in &a {
            let worst = values
                .iter()
                .zip(&b[name])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{mode}: {name} differs by {worst}");
        }
        for ((_, train_a, valid_a), (_, train_b, valid_b)) in
            metrics(&one).iter().zip(metrics(&two))
        {
            assert!(
                (train_a - train_b).abs() <= 1e-5 && (valid_a - valid_b).abs() <= 1e-5,
                "{mode}"
            );
        }
    }
}

#[test]
fn no_devices_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let stderr = failure(&smoke_args(&run, &["--devices", "0"]));
    assert!(stderr.contains("training.devices = 0"), "{stderr}");
    assert!(!run.exists(), "nothing made");
}
