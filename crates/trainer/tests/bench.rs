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
    assert_eq!(report["hidden_dim"], 64);
    assert_eq!(report["lstm"], "fused");
    // Launches are a GPU backend's.
    assert!(report["gpu_recurrence"].is_null() && report["launch_overhead_us"].is_null());
}
