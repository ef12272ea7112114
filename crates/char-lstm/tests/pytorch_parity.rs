//! Parity with PyTorch: the tutorial's model with weights, inputs and results recorded by
//! `scripts/make_pytorch_fixtures.py` (committed under `tests/fixtures/`, so PyTorch is not
//! needed here). Logits, final states, loss, every gradient and one clipped Adam step must
//! match, for the fused and the composed LSTM, on flex and ndarray; the forward also on wgpu
//! (Mesa's lavapipe on a machine without a GPU).

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, DeviceKind, Int, Tensor, TensorData};
use char_lstm::train::{adam, clip_grad_norm};
use char_lstm::{LstmImplementation, LstmLanguageModel, LstmLanguageModelConfig, LstmState};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    vocab: Vec<String>,
    embedding_dim: usize,
    hidden_dim: usize,
    num_layers: usize,
    inputs: Vec<Vec<i32>>,
    targets: Vec<Vec<i32>>,
    initial_hidden: Vec<f32>,
    initial_cell: Vec<f32>,
    params: BTreeMap<String, Tensor1>,
    logits: Vec<f32>,
    final_hidden: Vec<f32>,
    final_cell: Vec<f32>,
    loss: f64,
    grads: BTreeMap<String, Vec<f32>>,
    grad_norm: f64,
    adam: AdamStep,
}

#[derive(Deserialize)]
struct Tensor1 {
    shape: Vec<usize>,
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct AdamStep {
    learning_rate: f64,
    grad_clip_norm: f64,
    params_after: BTreeMap<String, Vec<f32>>,
}

const CASES: [&str; 2] = ["small", "three_layer"];

fn fixture(case: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{case}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect("fixture JSON")
}

/// ndarray is deprecated upstream but still a backend users can pick, so it is checked too.
#[allow(deprecated)]
fn devices() -> [(&'static str, Device); 2] {
    [("flex", Device::flex()), ("ndarray", Device::ndarray())]
}

fn implementations() -> [LstmImplementation; 2] {
    [LstmImplementation::Fused, LstmImplementation::Composed]
}

fn matrix(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn vector(values: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

fn ids(rows: &[Vec<i32>], device: &Device) -> Tensor<2, Int> {
    let flat: Vec<i32> = rows.concat();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), device)
}

/// Our model with the fixture's PyTorch weights copied in (`fc.weight` transposed, since
/// Burn's `Linear` stores `[d_in, d_out]`).
fn load(f: &Fixture, implementation: LstmImplementation, device: &Device) -> LstmLanguageModel {
    let mut lm = LstmLanguageModelConfig::new(f.vocab.len())
        .with_embedding_dim(f.embedding_dim)
        .with_hidden_dim(f.hidden_dim)
        .with_num_layers(f.num_layers)
        .init(device);
    let p = |name: &str| &f.params[name];
    let m = |name: &str| {
        let t = p(name);
        Param::from_tensor(matrix(&t.values, [t.shape[0], t.shape[1]], device))
    };
    lm.embedding.weight = m("embedding.weight");
    lm.output.weight = Param::from_tensor(m("fc.weight").val().transpose().detach());
    lm.output.bias = Some(Param::from_tensor(vector(&p("fc.bias").values, device)));
    for (k, layer) in lm.lstm.layers.iter_mut().enumerate() {
        layer.weight_ih = m(&format!("lstm.weight_ih_l{k}"));
        layer.weight_hh = m(&format!("lstm.weight_hh_l{k}"));
        layer.bias_ih =
            Param::from_tensor(vector(&p(&format!("lstm.bias_ih_l{k}")).values, device));
        layer.bias_hh =
            Param::from_tensor(vector(&p(&format!("lstm.bias_hh_l{k}")).values, device));
    }
    lm.lstm = lm.lstm.with_implementation(implementation);
    lm
}

/// Every parameter of `lm` under its PyTorch name, in PyTorch's layout, read with `read1`
/// (vectors) and `read2` (matrices).
fn by_pytorch_name(
    lm: &LstmLanguageModel,
    read1: impl Fn(&Param<Tensor<1>>) -> Tensor<1>,
    read2: impl Fn(&Param<Tensor<2>>) -> Tensor<2>,
) -> BTreeMap<String, Vec<f32>> {
    let flat1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let flat2 = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let mut all = BTreeMap::new();
    all.insert(
        "embedding.weight".to_string(),
        flat2(read2(&lm.embedding.weight)),
    );
    all.insert(
        "fc.weight".to_string(),
        flat2(read2(&lm.output.weight).transpose()),
    );
    all.insert(
        "fc.bias".to_string(),
        flat1(read1(lm.output.bias.as_ref().unwrap())),
    );
    for (k, layer) in lm.lstm.layers.iter().enumerate() {
        all.insert(
            format!("lstm.weight_ih_l{k}"),
            flat2(read2(&layer.weight_ih)),
        );
        all.insert(
            format!("lstm.weight_hh_l{k}"),
            flat2(read2(&layer.weight_hh)),
        );
        all.insert(format!("lstm.bias_ih_l{k}"), flat1(read1(&layer.bias_ih)));
        all.insert(format!("lstm.bias_hh_l{k}"), flat1(read1(&layer.bias_hh)));
    }
    all
}

fn initial_state(f: &Fixture, device: &Device) -> Vec<LstmState> {
    let batch = f.inputs.len();
    let size = batch * f.hidden_dim;
    (0..f.num_layers)
        .map(|l| LstmState {
            hidden: matrix(
                &f.initial_hidden[l * size..(l + 1) * size],
                [batch, f.hidden_dim],
                device,
            ),
            cell: matrix(
                &f.initial_cell[l * size..(l + 1) * size],
                [batch, f.hidden_dim],
                device,
            ),
        })
        .collect()
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32], absolute: f32, relative: f32) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= absolute + relative * b.abs(),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
    }
}

#[test]
fn logits_final_states_and_loss_match_pytorch() {
    for case in CASES {
        let f = fixture(case);
        let wgpu = ("wgpu", Device::wgpu(DeviceKind::DefaultDevice));
        for (backend, device) in devices().into_iter().chain([wgpu]) {
            for implementation in implementations() {
                let what = format!("{case} on {backend}, {implementation:?}");
                let lm = load(&f, implementation, &device);
                let (loss, _, states) = lm.loss(
                    ids(&f.inputs, &device),
                    ids(&f.targets, &device),
                    Some(initial_state(&f, &device)),
                );
                let (logits, _) =
                    lm.forward(ids(&f.inputs, &device), Some(initial_state(&f, &device)));
                let logits: Vec<f32> = logits.into_data().convert::<f32>().try_to_vec().unwrap();
                assert_close(&format!("{what}: logits"), &logits, &f.logits, 1e-5, 0.0);
                let flat = |t: &Tensor<2>| {
                    t.clone()
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .unwrap()
                };
                let hidden: Vec<f32> = states.iter().flat_map(|s| flat(&s.hidden)).collect();
                let cell: Vec<f32> = states.iter().flat_map(|s| flat(&s.cell)).collect();
                assert_close(
                    &format!("{what}: final h"),
                    &hidden,
                    &f.final_hidden,
                    1e-5,
                    0.0,
                );
                assert_close(&format!("{what}: final c"), &cell, &f.final_cell, 1e-5, 0.0);
                let loss = loss.into_scalar::<f64>();
                assert!(
                    (loss - f.loss).abs() <= 1e-6,
                    "{what}: loss {loss} vs PyTorch {}",
                    f.loss
                );
            }
        }
    }
}

/// How far each parameter may be from PyTorch's after one Adam step from zero moments, given
/// gradients within the tolerance checked above. That step moves each parameter by
/// `lr * g / (|g| + eps)` for its clipped gradient `g`, which turns a gradient error `d` into a
/// parameter error up to `lr * eps * d / (|g| - d + eps)^2`: large where `|g|` is near `eps`.
fn adam_tolerance(f: &Fixture, name: &str) -> Vec<f32> {
    const EPS: f64 = 1e-8;
    let lr = f.adam.learning_rate;
    // PyTorch's clip_grad_norm_ scale.
    let scale = (f.adam.grad_clip_norm / (f.grad_norm + 1e-6)).min(1.0);
    f.grads[name]
        .iter()
        .map(|&g| {
            let g = g.abs() as f64;
            let error = (GRAD_ABSOLUTE + GRAD_RELATIVE * g) * scale;
            let clipped = (g * scale - error).max(0.0);
            let sensitivity = (lr * EPS * error / (clipped + EPS).powi(2)).min(2.0 * lr);
            (1e-5 + sensitivity) as f32
        })
        .collect()
}

const GRAD_ABSOLUTE: f64 = 1e-7;
const GRAD_RELATIVE: f64 = 1e-4;

#[test]
fn gradients_and_a_clipped_adam_step_match_pytorch() {
    for case in CASES {
        let f = fixture(case);
        for (backend, device) in devices() {
            for implementation in implementations() {
                let what = format!("{case} on {backend}, {implementation:?}");
                let ad = device.clone().autodiff();
                let lm = load(&f, implementation, &ad);
                let (loss, _, _) = lm.loss(
                    ids(&f.inputs, &ad),
                    ids(&f.targets, &ad),
                    Some(initial_state(&f, &ad)),
                );
                let grads = loss.backward();
                let ours = by_pytorch_name(
                    &lm,
                    |p| p.grad(&grads).unwrap(),
                    |p| p.grad(&grads).unwrap(),
                );
                for (name, theirs) in &f.grads {
                    assert_close(
                        &format!("{what}: d {name}"),
                        &ours[name],
                        theirs,
                        GRAD_ABSOLUTE as f32,
                        GRAD_RELATIVE as f32,
                    );
                }

                let grads = burn::optim::GradientsParams::from_grads(grads, &lm);
                let grads = clip_grad_norm(&lm, grads, f.adam.grad_clip_norm);
                let stepped = adam(0.0).step(f.adam.learning_rate, lm, grads);
                let after = by_pytorch_name(&stepped, |p| p.val(), |p| p.val());
                for (name, theirs) in &f.adam.params_after {
                    let tolerance = adam_tolerance(&f, name);
                    for (i, (a, b)) in after[name].iter().zip(theirs).enumerate() {
                        assert!(
                            (a - b).abs() <= tolerance[i],
                            "{what}: {name} after Adam[{i}]: ours {a}, PyTorch {b}"
                        );
                    }
                }
            }
        }
    }
}
