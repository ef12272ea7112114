//! `import`, `eval` and `export` against the PyTorch fixtures of the model crate (made by
//! `scripts/make_pytorch_fixtures.py`; PyTorch is not needed here).

mod common;

use std::path::PathBuf;

use common::{failure, root, success};

fn fixtures() -> PathBuf {
    root().join("crates/char-lstm/tests/fixtures")
}

fn fixture_json(case: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("{case}.json"))).unwrap())
        .unwrap()
}

fn arg(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn imported_pytorch_model_evaluates_to_pytorchs_loss_and_exports_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("imported");
    let pt = fixtures().join("small.pt");
    let vocab_text = fixtures().join("small_vocab.txt");
    let out = success(&[
        "import",
        "--pytorch",
        arg(&pt),
        "--vocab-text",
        arg(&vocab_text),
        "--run",
        arg(&run),
    ]);
    assert!(out.contains("embedding 7, 2 x 11 LSTM"), "{out}");

    let fixture = fixture_json("small");
    let text = dir.path().join("eval.txt");
    std::fs::write(&text, fixture["eval"]["text"].as_str().unwrap()).unwrap();
    for mode in ["stream", "windows"] {
        let out = success(&[
            "eval",
            "--run",
            arg(&run),
            "--text",
            arg(&text),
            "--mode",
            mode,
            "--json",
        ]);
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let ours = report["loss"].as_f64().unwrap();
        let theirs = fixture["eval"][format!("{mode}_loss")].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() < 1e-4,
            "{mode}: ours {ours}, PyTorch {theirs}"
        );
        let bpc = report["bpc"].as_f64().unwrap();
        assert!((bpc - ours / std::f64::consts::LN_2).abs() < 1e-9);
    }
    let sample = success(&[
        "generate",
        "--run",
        arg(&run),
        "--prompt",
        "hé",
        "--length",
        "20",
        "--seed",
        "1",
    ]);
    // The line `generate` ends with; the sample itself may end in newlines.
    assert_eq!(
        sample.strip_suffix('\n').unwrap().chars().count(),
        22,
        "{sample:?}"
    );

    let exported = common::exported_tensors(&run, &dir.path().join("model.safetensors"));
    for (name, spec) in fixture["params"].as_object().unwrap() {
        assert_eq!(exported[name].0, spec["shape"], "{name} in the export");
    }
}

#[test]
fn mismatched_pytorch_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("bad");
    let vocab_text = fixtures().join("small_vocab.txt");
    let import = |pt: &str, vocab: &std::path::Path| {
        failure(&[
            "import",
            "--pytorch",
            arg(&fixtures().join(pt)),
            "--vocab-text",
            arg(vocab),
            "--run",
            arg(&run),
        ])
    };
    let err = import("small_no_fc_bias.pt", &vocab_text);
    assert!(err.contains("`fc.bias` is missing"), "{err}");
    let err = import("small_wrong_shape.pt", &vocab_text);
    assert!(
        err.contains("`lstm.weight_hh_l1` has shape [44, 10], expected [44, 11]"),
        "{err}"
    );
    let short_vocab = dir.path().join("short.txt");
    std::fs::write(&short_vocab, "helo").unwrap();
    let err = import("small.pt", &short_vocab);
    assert!(
        err.contains("13 rows") && err.contains("4 characters"),
        "{err}"
    );
    assert!(!run.exists(), "nothing written on error");
}

#[test]
fn eval_names_characters_outside_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("imported");
    success(&[
        "import",
        "--pytorch",
        arg(&fixtures().join("small.pt")),
        "--vocab-text",
        arg(&fixtures().join("small_vocab.txt")),
        "--run",
        arg(&run),
    ]);
    let text = dir.path().join("eval.txt");
    std::fs::write(&text, "hello, the tea. hallo Zeta").unwrap();
    let err = failure(&["eval", "--run", arg(&run), "--text", arg(&text)]);
    assert!(err.contains("'Z'"), "{err}");
}
