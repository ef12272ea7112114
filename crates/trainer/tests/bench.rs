//! `trainer bench` prints one JSON object with the throughput fields the scripts read.

mod common;

use common::success;

#[test]
fn bench_prints_throughput_json() {
    let out = success(&[
        "bench",
        "--config",
        "configs/smoke.toml",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--sample-length",
        "40",
        "--with-nn-lstm",
    ]);
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in [
        "train_chars_per_s",
        "sample_chars_per_s",
        "sample32_chars_per_s",
        "peak_rss_bytes",
        "nn_lstm_train_chars_per_s",
    ] {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(value > 0.0, "{key} = {value}");
    }
    for part in ["forward_ms", "backward_ms"] {
        let ms = report["recurrence"][part]
            .as_f64()
            .unwrap_or_else(|| panic!("recurrence.{part} missing: {report}"));
        assert!(ms > 0.0, "recurrence.{part} = {ms}");
    }
    // One fused recurrence per layer and step, forward and backward, inside the step's time.
    let ops = &report["train_step_ops"];
    let step_ms = ops["step_ms"].as_f64().expect("train_step_ops.step_ms");
    let passes = ops["ops"].as_array().expect("train_step_ops.ops");
    let find = |op: &str| passes.iter().find(|p| p["op"] == op);
    for op in ["recurrence forward", "recurrence backward", "adam step"] {
        let pass = find(op).unwrap_or_else(|| panic!("{op} missing: {ops}"));
        assert!(pass["calls"].as_u64() >= Some(1), "{op}: {pass}");
    }
    assert_eq!(find("recurrence forward").unwrap()["calls"], 1);
    let in_ops: f64 = passes.iter().map(|p| p["ms"].as_f64().unwrap()).sum();
    let other_ms = ops["other_ms"].as_f64().expect("train_step_ops.other_ms");
    assert!(
        in_ops > 0.0 && other_ms >= 0.0 && in_ops <= step_ms,
        "{ops}"
    );
    assert!(
        (in_ops + other_ms - step_ms).abs() < 0.05 * step_ms,
        "{ops}"
    );
    assert_eq!(report["hidden_dim"], 64);
    assert_eq!(report["lstm"], "fused");
    // Launches are a GPU backend's.
    assert!(report["gpu_recurrence"].is_null() && report["launch_overhead_us"].is_null());
}
