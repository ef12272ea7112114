//! A stack of LSTM layers run over whole sequences.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};

use crate::fused;
use crate::network::cell::{LstmCell, LstmCellConfig};
use crate::network::dropout::{dropout, sequence_dropout};
use crate::network::state::LstmState;

/// Configuration of an [`Lstm`].
#[derive(Config, Debug)]
pub struct LstmConfig {
    /// The size of each input vector.
    pub input_size: usize,
    /// The size of every layer's hidden and cell state.
    pub hidden_size: usize,
    /// The number of stacked layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// The probability of zeroing an element of a layer's output before the next layer reads
    /// it (training only; not after the last layer, as in PyTorch).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Draw that dropout's mask once per sequence and apply it at every step (variational
    /// dropout, AWD-LSTM's locked dropout) instead of anew for every element.
    #[config(default = false)]
    pub variational_dropout: bool,
    /// The probability of zeroing each element of every layer's recurrent weights `weight_hh`,
    /// drawn once per forward pass (DropConnect on the recurrent weights, AWD-LSTM's "weight
    /// drop"; training only). It regularizes the recurrence itself, which dropout between
    /// layers does not reach.
    #[config(default = 0.0)]
    pub weight_dropout: f64,
    /// Start every layer's forget-gate bias at 1 (see [`LstmCellConfig::forget_bias`]).
    #[config(default = false)]
    pub forget_bias: bool,
    /// The probability that an element of a layer's cell state keeps its previous value at a
    /// step instead of taking the update (zoneout, Krueger et al. 2016: a fresh draw per
    /// element and step in training; outside training every element keeps this fraction of
    /// its previous value).
    #[config(default = 0.0)]
    pub zoneout_cell: f64,
    /// [`LstmConfig::zoneout_cell`] for the hidden state.
    #[config(default = 0.0)]
    pub zoneout_hidden: f64,
    /// Every layer's gates take the recurrent product by multiplicative integration (see
    /// [`LstmCellConfig::multiplicative_integration`]).
    #[config(default = false)]
    pub multiplicative_integration: bool,
}

/// How [`Lstm`] runs each layer's recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LstmImplementation {
    /// The fused sequence op where this build and the backend have one (flex with the
    /// `kernels` feature; wgpu with `gpu`), composed tensor ops elsewhere.
    #[default]
    Fused,
    /// Composed tensor ops on every backend: the reference the fused op is tested against.
    Composed,
}

/// A stacked LSTM over whole sequences, batch first, like PyTorch's
/// `nn.LSTM(batch_first=True)`: the same weight names, layout and gate order.
#[derive(Module, Debug)]
pub struct Lstm {
    /// The layers, bottom first.
    pub layers: Vec<LstmCell>,
    /// Dropout between layers.
    pub dropout: Dropout,
    /// Whether [`Lstm::dropout`] keeps one mask over all steps of a sequence.
    #[module(skip)]
    pub variational_dropout: bool,
    /// Dropout on every layer's recurrent weights, once per forward pass.
    pub weight_dropout: Dropout,
    /// Zoneout's probabilities for the cell and the hidden state
    /// ([`LstmConfig::zoneout_cell`], [`LstmConfig::zoneout_hidden`]).
    #[module(skip)]
    pub zoneout: [f64; 2],
    /// How [`Lstm::forward`] runs the recurrence; not part of the weights.
    #[module(skip)]
    pub implementation: LstmImplementation,
}

impl LstmConfig {
    /// Initializes every layer with PyTorch's init.
    pub fn init(&self, device: &Device) -> Lstm {
        let layers = (0..self.num_layers)
            .map(|layer| {
                let input_size = if layer == 0 {
                    self.input_size
                } else {
                    self.hidden_size
                };
                LstmCellConfig::new(input_size, self.hidden_size)
                    .with_forget_bias(self.forget_bias)
                    .with_multiplicative_integration(self.multiplicative_integration)
                    .init(device)
            })
            .collect();
        Lstm {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
            variational_dropout: self.variational_dropout,
            weight_dropout: DropoutConfig::new(self.weight_dropout).init(),
            zoneout: [self.zoneout_cell, self.zoneout_hidden],
            implementation: LstmImplementation::default(),
        }
    }
}

impl Lstm {
    /// The size of every layer's hidden state, which is the output size.
    pub fn hidden_size(&self) -> usize {
        self.layers[0].hidden_size()
    }

    /// The same stack, running its recurrence with `implementation`.
    pub fn with_implementation(mut self, implementation: LstmImplementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// Runs the stack over a whole sequence, with [`Lstm::implementation`].
    ///
    /// - `input`: `[batch_size, seq_len, input_size]`.
    /// - `state`: one [`LstmState`] per layer, bottom first, each `[batch_size, hidden_size]`;
    ///   `None` starts from zeros.
    ///
    /// Returns the top layer's hidden state at every step, `[batch_size, seq_len, hidden_size]`,
    /// and every layer's final state.
    ///
    /// # Panics
    /// If `state` does not hold one state per layer, or `seq_len` is 0.
    pub fn forward(
        &self,
        input: Tensor<3>,
        state: Option<Vec<LstmState>>,
    ) -> (Tensor<3>, Vec<LstmState>) {
        self.forward_with(input, state, self.implementation)
    }

    /// [`Lstm::forward`] with a chosen implementation.
    pub fn forward_with(
        &self,
        input: Tensor<3>,
        state: Option<Vec<LstmState>>,
        implementation: LstmImplementation,
    ) -> (Tensor<3>, Vec<LstmState>) {
        let projected = project(&self.layers[0], input, implementation);
        self.forward_projected_with(projected, state, implementation)
    }

    /// [`Lstm::forward`] from the bottom layer's input projection
    /// ([`LstmCell::input_projection`] of every step), `[batch_size, seq_len, 4 * hidden_size]`,
    /// for callers that can compute it more cheaply than one product per step (a language
    /// model projects its embedding table once and looks the rows up).
    pub fn forward_projected(
        &self,
        projected: Tensor<3>,
        state: Option<Vec<LstmState>>,
    ) -> (Tensor<3>, Vec<LstmState>) {
        self.forward_projected_with(projected, state, self.implementation)
    }

    fn forward_projected_with(
        &self,
        projected: Tensor<3>,
        state: Option<Vec<LstmState>>,
        implementation: LstmImplementation,
    ) -> (Tensor<3>, Vec<LstmState>) {
        let [batch_size, seq_len, _] = projected.dims();
        assert!(seq_len > 0, "an LSTM needs at least one time step");
        let device = projected.device();
        let states = state.unwrap_or_else(|| {
            let zero = LstmState::zeros(batch_size, self.hidden_size(), &device);
            vec![zero; self.layers.len()]
        });
        assert_eq!(states.len(), self.layers.len(), "one state per layer");
        let mut finals = Vec::with_capacity(self.layers.len());
        let mut layers = self.layers.iter().zip(states);
        let (bottom, state) = layers.next().expect("at least one layer");
        let weight_hh = |layer: &LstmCell| dropout(&self.weight_dropout, layer.weight_hh.val());
        let keep = || self.zoneout_keep([batch_size, seq_len, self.hidden_size()], &device);
        let (mut x, last) = recurrence(
            bottom,
            weight_hh(bottom),
            projected,
            state,
            keep(),
            implementation,
        );
        finals.push(last);
        for (layer, state) in layers {
            let input = sequence_dropout(&self.dropout, x, self.variational_dropout);
            let projected = project(layer, input, implementation);
            let (output, last) = recurrence(
                layer,
                weight_hh(layer),
                projected,
                state,
                keep(),
                implementation,
            );
            x = output;
            finals.push(last);
        }
        (x, finals)
    }

    /// One layer's zoneout keep weights over a sequence, `[batch, seq_len, 2 * hidden]` (the
    /// cell's, then the hidden state's), or `None` without zoneout: in training (with
    /// autodiff) 1 with the zoneout probability and 0 otherwise, drawn anew for every element
    /// and step; outside training the probability itself, the draws' expectation.
    fn zoneout_keep(
        &self,
        [batch, seq_len, hidden]: [usize; 3],
        device: &Device,
    ) -> Option<Tensor<3>> {
        if self.zoneout == [0.0; 2] {
            return None;
        }
        let halves = self.zoneout.map(|prob| {
            let shape = [batch, seq_len, hidden];
            if device.is_autodiff() {
                Tensor::random(shape, Distribution::Bernoulli(prob), device)
            } else {
                Tensor::full(shape, prob, device)
            }
        });
        Some(Tensor::cat(halves.to_vec(), 2))
    }
}

/// [`LstmCell::input_projection`] of every step, `[batch, seq_len, input_size]` in,
/// `[batch, seq_len, 4 hidden]` out, as one fused op where the backend allows.
fn project(layer: &LstmCell, input: Tensor<3>, implementation: LstmImplementation) -> Tensor<3> {
    let [batch_size, seq_len, input_size] = input.dims();
    let rows = input.reshape([batch_size * seq_len, input_size]);
    project_rows(layer, rows, implementation).reshape([
        batch_size,
        seq_len,
        4 * layer.hidden_size(),
    ])
}

/// [`LstmCell::input_projection`] of `rows`, `[rows, input_size]` in, `[rows, 4 hidden]` out,
/// as one fused op where the backend allows.
pub(crate) fn project_rows(
    layer: &LstmCell,
    rows: Tensor<2>,
    implementation: LstmImplementation,
) -> Tensor<2> {
    let fused = (implementation == LstmImplementation::Fused)
        .then(|| {
            let bias = layer.bias_ih.val() + layer.bias_hh.val();
            fused::projection(&rows, &layer.weight_ih.val(), &bias)
        })
        .flatten();
    fused.unwrap_or_else(|| layer.input_projection(rows))
}

/// One layer's time loop from its input projection, `[batch, seq_len, 4 hidden]`, with
/// recurrent weights `weight_hh` (the layer's own, or a weight-dropped copy) and, with zoneout,
/// its keep weights (`[batch, seq_len, 2 hidden]`, see [`Lstm::zoneout_keep`]): one
/// `[batch, hidden] x [hidden, 4 hidden]` product per step, fused into one op where the backend
/// allows.
fn recurrence(
    layer: &LstmCell,
    weight_hh: Tensor<2>,
    projected: Tensor<3>,
    state: LstmState,
    keep: Option<Tensor<3>>,
    implementation: LstmImplementation,
) -> (Tensor<3>, LstmState) {
    let [batch, seq_len, gates] = projected.dims();
    if implementation == LstmImplementation::Fused
        && let Some(packed) = fused::recurrence(
            &projected,
            &weight_hh,
            &state.hidden,
            &state.cell,
            keep.as_ref(),
            layer.multiplicative_integration,
        )
    {
        // `h_1 .. h_T` then `c_T`, each a contiguous block: views, no copies.
        let (hidden_size, hidden_len) = (gates / 4, batch * seq_len * gates / 4);
        let hidden = packed
            .clone()
            .narrow(0, 0, hidden_len)
            .reshape([batch, seq_len, hidden_size]);
        let last = LstmState {
            hidden: hidden.clone().narrow(1, seq_len - 1, 1).squeeze_dim(1),
            cell: packed
                .narrow(0, hidden_len, batch * hidden_size)
                .reshape([batch, hidden_size]),
        };
        return (hidden, last);
    }
    let mut state = state;
    let mut outputs = Vec::with_capacity(seq_len);
    for t in 0..seq_len {
        let at_step = |tensor: &Tensor<3>| tensor.clone().narrow(1, t, 1).squeeze_dim::<2>(1);
        let keep = keep.as_ref().map(at_step);
        state = layer.step_projected_with(at_step(&projected), state, weight_hh.clone(), keep);
        outputs.push(state.hidden.clone());
    }
    (Tensor::stack(outputs, 1), state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{DropoutConfig, LstmConfig as BurnLstmConfig};
    use burn::tensor::{Distribution, Gradients, TensorData, Tolerance};

    const INPUT: usize = 5;
    const HIDDEN: usize = 7;
    const BATCH: usize = 3;
    const SEQ: usize = 4;

    /// Burn's own `nn::Lstm` (separate gate controllers, `[d_in, d_out]` weights) with one of our
    /// layers' weights copied in.
    fn burn_lstm_from(layer: &LstmCell) -> burn::nn::Lstm {
        let device = layer.weight_ih.device();
        let mut oracle = BurnLstmConfig::new(layer.input_size(), layer.hidden_size(), true)
            .with_batch_first(true)
            .init(&device);
        let h = layer.hidden_size();
        let rows = |w: Tensor<2>, gate: usize| w.narrow(0, gate * h, h).transpose();
        let part = |b: Tensor<1>, gate: usize| b.narrow(0, gate * h, h);
        let copy = |controller: &mut burn::nn::GateController, gate: usize| {
            controller.input_transform.weight =
                Param::from_tensor(rows(layer.weight_ih.val(), gate));
            controller.input_transform.bias =
                Some(Param::from_tensor(part(layer.bias_ih.val(), gate)));
            controller.hidden_transform.weight =
                Param::from_tensor(rows(layer.weight_hh.val(), gate));
            controller.hidden_transform.bias =
                Some(Param::from_tensor(part(layer.bias_hh.val(), gate)));
        };
        // PyTorch's gate order: input, forget, candidate (Burn's "cell gate"), output.
        copy(&mut oracle.input_gate, 0);
        copy(oracle.forget_gate.as_mut().expect("forget gate"), 1);
        copy(&mut oracle.cell_gate, 2);
        copy(&mut oracle.output_gate, 3);
        oracle
    }

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
    }

    #[test]
    fn matches_burn_nn_lstm_with_copied_weights() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(11);
        for num_layers in [1, 2] {
            for with_state in [false, true] {
                let lstm = LstmConfig::new(INPUT, HIDDEN)
                    .with_num_layers(num_layers)
                    .init(&device);
                let input = random([BATCH, SEQ, INPUT], &device);
                let states: Option<Vec<LstmState>> = with_state.then(|| {
                    (0..num_layers)
                        .map(|_| LstmState {
                            hidden: random([BATCH, HIDDEN], &device),
                            cell: random([BATCH, HIDDEN], &device),
                        })
                        .collect()
                });
                let (output, finals) = lstm.forward(input.clone(), states.clone());

                let mut x = input;
                let mut expected_finals = Vec::new();
                for (index, layer) in lstm.layers.iter().enumerate() {
                    let oracle = burn_lstm_from(layer);
                    let state = states.as_ref().map(|s| {
                        burn::nn::LstmState::new(s[index].cell.clone(), s[index].hidden.clone())
                    });
                    let (out, last) = oracle.forward(x, state);
                    x = out;
                    expected_finals.push(last);
                }
                let tol = Tolerance::<f32>::absolute(1e-5);
                output
                    .into_data()
                    .assert_approx_eq::<f32>(&x.into_data(), tol);
                for (ours, theirs) in finals.into_iter().zip(expected_finals) {
                    ours.hidden
                        .into_data()
                        .assert_approx_eq::<f32>(&theirs.hidden.into_data(), tol);
                    ours.cell
                        .into_data()
                        .assert_approx_eq::<f32>(&theirs.cell.into_data(), tol);
                }
            }
        }
    }

    /// A scalar function of every output of the stack: `sum(out * r) + sum(h_T * s) + sum(c_T * s)`
    /// with fixed random `r` and `s`, so every output and final state carries gradient.
    fn objective(
        lstm: &Lstm,
        input: Tensor<3>,
        state: Vec<LstmState>,
        r: &Tensor<3>,
        s: &Tensor<2>,
    ) -> Tensor<1> {
        let (out, finals) = lstm.forward(input, Some(state));
        let mut total = (out * r.clone()).sum();
        for last in finals {
            total = total + (last.hidden * s.clone()).sum() + (last.cell * s.clone()).sum();
        }
        total
    }

    /// Replaces one element of a parameter.
    fn perturbed<const D: usize>(
        param: &Param<Tensor<D>>,
        index: usize,
        delta: f32,
    ) -> Param<Tensor<D>> {
        let data = param.val().into_data();
        let shape = data.shape().clone();
        let mut values: Vec<f32> = data.try_to_vec().unwrap();
        values[index] += delta;
        Param::from_tensor(Tensor::from_data(
            TensorData::new(values, shape),
            &param.device(),
        ))
    }

    /// For each element of the parameter `field` picks in layer `l`: its gradient in `grads`
    /// (from `layer_ad`, that layer of the stack they came from), and `lstm` with the element
    /// moved by `eps` and by `-eps`.
    fn nudged<const D: usize>(
        lstm: &Lstm,
        layer_ad: &LstmCell,
        l: usize,
        grads: &Gradients,
        eps: f32,
        field: fn(&mut LstmCell) -> &mut Param<Tensor<D>>,
    ) -> Vec<(f32, Lstm, Lstm)> {
        let grad: Vec<f32> = field(&mut layer_ad.clone())
            .grad(grads)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let moved = |i: usize, delta: f32| {
            let mut moved = lstm.clone();
            let param = field(&mut moved.layers[l]);
            *param = perturbed(param, i, delta);
            moved
        };
        grad.into_iter()
            .enumerate()
            .map(|(i, g)| (g, moved(i, eps), moved(i, -eps)))
            .collect()
    }

    #[test]
    fn gradients_match_central_finite_differences() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(5);
        let ad = device.clone().autodiff();
        let (input_size, hidden, batch, seq) = (3, 4, 2, 3);
        let lstm = LstmConfig::new(input_size, hidden)
            .with_num_layers(2)
            .init(&device);
        let input = random([batch, seq, input_size], &device);
        let h0 = random([batch, hidden], &device);
        let c0 = random([batch, hidden], &device);
        let r = random([batch, seq, hidden], &device);
        let s = random([batch, hidden], &device);
        let state = |h: Tensor<2>, c: Tensor<2>| {
            vec![
                LstmState {
                    hidden: h.clone(),
                    cell: c.clone(),
                },
                LstmState { hidden: h, cell: c },
            ]
        };

        // Analytic gradients.
        let lstm_ad = lstm.clone().fork(&ad).train();
        let x_ad = input.clone().autodiff().require_grad();
        let h0_ad = h0.clone().autodiff().require_grad();
        let grads = objective(
            &lstm_ad,
            x_ad.clone(),
            state(h0_ad.clone(), c0.clone().autodiff()),
            &r,
            &s,
        )
        .backward();

        let value = |l: &Lstm, x: Tensor<3>, h: Tensor<2>| {
            objective(l, x, state(h, c0.clone()), &r, &s).into_scalar::<f64>()
        };
        let eps = 1e-2f32;
        let check = |analytic: f32, plus: f64, minus: f64, what: &str| {
            let numeric = (plus - minus) / (2.0 * eps as f64);
            let err = (analytic as f64 - numeric).abs();
            assert!(
                err <= 2e-3 + 2e-2 * numeric.abs(),
                "{what}: analytic {analytic} numeric {numeric}"
            );
        };

        for (l, layer) in lstm_ad.layers.iter().enumerate() {
            let parameters = [
                (
                    "weight_ih",
                    nudged(&lstm, layer, l, &grads, eps, |c| &mut c.weight_ih),
                ),
                (
                    "weight_hh",
                    nudged(&lstm, layer, l, &grads, eps, |c| &mut c.weight_hh),
                ),
                (
                    "bias_hh",
                    nudged(&lstm, layer, l, &grads, eps, |c| &mut c.bias_hh),
                ),
            ];
            for (what, elements) in parameters {
                for (grad, plus, minus) in elements {
                    check(
                        grad,
                        value(&plus, input.clone(), h0.clone()),
                        value(&minus, input.clone(), h0.clone()),
                        what,
                    );
                }
            }
        }

        let g_x: Vec<f32> = x_ad.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let flat_x: Vec<f32> = input.clone().into_data().try_to_vec().unwrap();
        for i in 0..g_x.len() {
            let shifted = |d: f32| {
                let mut v = flat_x.clone();
                v[i] += d;
                Tensor::<3>::from_data(TensorData::new(v, [batch, seq, input_size]), &device)
            };
            check(
                g_x[i],
                value(&lstm, shifted(eps), h0.clone()),
                value(&lstm, shifted(-eps), h0.clone()),
                "input",
            );
        }
        let g_h: Vec<f32> = h0_ad
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        let flat_h: Vec<f32> = h0.clone().into_data().try_to_vec().unwrap();
        for i in 0..g_h.len() {
            let shifted = |d: f32| {
                let mut v = flat_h.clone();
                v[i] += d;
                Tensor::<2>::from_data(TensorData::new(v, [batch, hidden]), &device)
            };
            check(
                g_h[i],
                value(&lstm, input.clone(), shifted(eps)),
                value(&lstm, input.clone(), shifted(-eps)),
                "h0",
            );
        }
    }

    /// Every value and gradient of one run, flattened, for comparing implementations.
    fn run_everything(
        lstm: &Lstm,
        input: &Tensor<3>,
        states: &[LstmState],
        r: &Tensor<3>,
        s: &Tensor<2>,
        implementation: LstmImplementation,
    ) -> Vec<(String, Vec<f32>)> {
        let ad = input.device().autodiff();
        let lstm = lstm.clone().fork(&ad).train();
        let x = input.clone().autodiff().require_grad();
        let states: Vec<LstmState> = states
            .iter()
            .map(|st| LstmState {
                hidden: st.hidden.clone().autodiff().require_grad(),
                cell: st.cell.clone().autodiff().require_grad(),
            })
            .collect();
        let (out, finals) = lstm.forward_with(x.clone(), Some(states.clone()), implementation);
        let mut total = (out.clone() * r.clone()).sum();
        for last in &finals {
            total = total
                + (last.hidden.clone() * s.clone()).sum()
                + (last.cell.clone() * s.clone()).sum() * 0.5;
        }
        let grads = total.backward();
        let flat = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
        let flat2 = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let flat1 = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        let mut all = vec![
            ("output".to_string(), flat(out.without_autodiff())),
            ("d input".into(), flat(x.grad(&grads).unwrap())),
        ];
        for (l, (last, st)) in finals.into_iter().zip(&states).enumerate() {
            all.push((format!("h_T {l}"), flat2(last.hidden.without_autodiff())));
            all.push((format!("c_T {l}"), flat2(last.cell.without_autodiff())));
            all.push((format!("d h0 {l}"), flat2(st.hidden.grad(&grads).unwrap())));
            all.push((format!("d c0 {l}"), flat2(st.cell.grad(&grads).unwrap())));
        }
        for (l, layer) in lstm.layers.iter().enumerate() {
            all.push((
                format!("d weight_ih {l}"),
                flat2(layer.weight_ih.grad(&grads).unwrap()),
            ));
            all.push((
                format!("d weight_hh {l}"),
                flat2(layer.weight_hh.grad(&grads).unwrap()),
            ));
            all.push((
                format!("d bias_ih {l}"),
                flat1(layer.bias_ih.grad(&grads).unwrap()),
            ));
            all.push((
                format!("d bias_hh {l}"),
                flat1(layer.bias_hh.grad(&grads).unwrap()),
            ));
        }
        all
    }

    /// Weight dropout runs the layer on a masked, rescaled copy of `weight_hh`: the same outputs
    /// as a stack without it whose `weight_hh` is that copy, drawn from the same seed, and the
    /// gradient of `weight_hh` is that stack's gradient through the same mask and scale. Both
    /// implementations; the mask changes from one forward pass to the next.
    #[test]
    fn weight_dropout_is_a_masked_copy_of_the_recurrent_weights() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let (batch, seq, input_size, hidden, prob) = (3, 5, 4, 6, 0.4);
        device.seed(31);
        let plain = LstmConfig::new(input_size, hidden).init(&device);
        let input = random([batch, seq, input_size], &device);
        let r = random([batch, seq, hidden], &device);
        let dropped_config = DropoutConfig::new(prob).init();
        let flat = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        for implementation in [LstmImplementation::Fused, LstmImplementation::Composed] {
            let mut ours = plain.clone().fork(&ad).with_implementation(implementation);
            ours.weight_dropout = dropped_config.clone();
            let ours = ours.train();
            ad.seed(77);
            let (out, _) = ours.forward(input.clone().autodiff(), None);
            let grads = (out.clone() * r.clone()).sum().backward();
            let d_ours = flat(ours.layers[0].weight_hh.grad(&grads).unwrap());

            ad.seed(77);
            let copy = dropout(&dropped_config, plain.layers[0].weight_hh.val().autodiff());
            let mut reference = plain.clone().with_implementation(implementation);
            reference.layers[0].weight_hh = Param::from_tensor(copy.clone().without_autodiff());
            let reference = reference.fork(&ad).train();
            let (expected, _) = reference.forward(input.clone().autodiff(), None);
            let grads = (expected.clone() * r.clone()).sum().backward();
            let d_reference = flat(reference.layers[0].weight_hh.grad(&grads).unwrap());

            let tol = Tolerance::<f32>::absolute(1e-6);
            out.clone()
                .without_autodiff()
                .into_data()
                .assert_approx_eq::<f32>(&expected.without_autodiff().into_data(), tol);
            let scale = (1.0 / (1.0 - prob)) as f32;
            let kept = flat(copy.without_autodiff());
            let zeros = kept.iter().filter(|&&w| w == 0.0).count();
            assert!(zeros > 0 && zeros < kept.len(), "{zeros} of {}", kept.len());
            for ((d, e), w) in d_ours.iter().zip(&d_reference).zip(&kept) {
                let expected = if *w == 0.0 { 0.0 } else { e * scale };
                assert!((d - expected).abs() <= 1e-5, "{d} vs {expected}");
            }

            let (again, _) = ours.forward(input.clone().autodiff(), None);
            assert_ne!(
                again.without_autodiff().into_data(),
                out.without_autodiff().into_data()
            );
        }
    }

    /// With variational dropout, layer 2 reads layer 1's output through one
    /// `[batch, 1, hidden]` mask drawn from the same seed as here: the same outputs as the two
    /// layers run one after the other with that mask between them. Both implementations.
    #[test]
    fn variational_dropout_masks_every_step_of_the_next_layer_alike() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let (batch, seq, input_size, hidden) = (3, 6, 4, 5);
        device.seed(41);
        let plain = LstmConfig::new(input_size, hidden)
            .with_num_layers(2)
            .init(&device);
        let input = random([batch, seq, input_size], &device);
        let between = DropoutConfig::new(0.5).init();
        let single = |layer: &LstmCell, implementation| Lstm {
            layers: vec![layer.clone()],
            ..plain.clone().with_implementation(implementation)
        };
        for implementation in [LstmImplementation::Fused, LstmImplementation::Composed] {
            let mut ours = plain.clone().with_implementation(implementation);
            ours.dropout = between.clone();
            ours.variational_dropout = true;
            let ours = ours.fork(&ad).train();
            ad.seed(5);
            let (out, _) = ours.forward(input.clone().autodiff(), None);

            ad.seed(5);
            let mask = dropout(&between, Tensor::ones([batch, 1, hidden], &ad));
            let (bottom, _) = single(&plain.layers[0], implementation).forward(input.clone(), None);
            let (expected, _) = single(&plain.layers[1], implementation)
                .forward(bottom * mask.clone().without_autodiff(), None);

            let zeros = mask
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .filter(|&&m| m == 0.0)
                .count();
            assert!(zeros > 0 && zeros < batch * hidden, "{zeros} zeros");
            out.without_autodiff()
                .into_data()
                .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
        }
    }

    /// The fused op on `fused_device` (tensors made on flex and moved there) against composed
    /// ops on flex, in outputs, final states and every gradient, on random shapes.
    fn assert_fused_matches_composed(fused_device: &Device) {
        let device = Device::flex();
        device.seed(23);
        // (batch, seq_len, input, hidden, layers), including batch 1 and seq_len 1.
        for (batch, seq, input_size, hidden, layers) in [
            (1, 1, 3, 2, 1),
            (1, 6, 4, 5, 2),
            (4, 1, 2, 3, 2),
            (3, 7, 5, 8, 3),
            (5, 3, 9, 4, 1),
            // More hidden units than a GPU cube has threads, so each thread takes several.
            (2, 3, 4, 300, 1),
            // Enough positions (batch x seq_len) for the packed input projection.
            (9, 8, 20, 24, 2),
            // More batch rows than one GPU cube of the per-step kernels takes.
            (33, 3, 3, 6, 1),
        ] {
            let lstm = LstmConfig::new(input_size, hidden)
                .with_num_layers(layers)
                .init(&device);
            let input = random([batch, seq, input_size], &device);
            let states: Vec<LstmState> = (0..layers)
                .map(|_| LstmState {
                    hidden: random([batch, hidden], &device),
                    cell: random([batch, hidden], &device),
                })
                .collect();
            let r = random([batch, seq, hidden], &device);
            let s = random([batch, hidden], &device);
            let moved: Vec<LstmState> = states
                .iter()
                .map(|st| LstmState {
                    hidden: st.hidden.clone().to_device(fused_device),
                    cell: st.cell.clone().to_device(fused_device),
                })
                .collect();
            let fused = run_everything(
                &lstm,
                &input.clone().to_device(fused_device),
                &moved,
                &r.clone().to_device(fused_device),
                &s.clone().to_device(fused_device),
                LstmImplementation::Fused,
            );
            let composed =
                run_everything(&lstm, &input, &states, &r, &s, LstmImplementation::Composed);
            let sizes = format!("({batch},{seq},{input_size},{hidden},{layers})");
            assert_runs_agree(&fused, &composed, &sizes);
        }
    }

    /// Two implementations' [`run_everything`] agree in every value, to 1e-5 relative.
    fn assert_runs_agree(
        fused: &[(String, Vec<f32>)],
        composed: &[(String, Vec<f32>)],
        what: &str,
    ) {
        assert_eq!(fused.len(), composed.len(), "{what}");
        for ((name, a), (_, b)) in fused.iter().zip(composed) {
            assert_eq!(a.len(), b.len(), "{name}");
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{name} {what}: fused {x} composed {y}"
                );
            }
        }
    }

    /// The fused op's variants against composed ops: zoneout, multiplicative integration, and
    /// both. With zoneout the fused op draws the same keep weights as composed ops from the
    /// same seed. Each agrees with composed ops in outputs, final states and every gradient
    /// (in training), and in outputs and final states outside training (zoneout's keep
    /// weights at their expectation), on every SIMD path; each differs from the plain stack.
    /// With the `gpu` feature, a stack on wgpu (which leaves the variants to composed ops
    /// there) evaluates the same.
    #[test]
    #[cfg(feature = "kernels")]
    fn variants_of_the_fused_op_match_composed_ops_on_every_simd_path() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(29);
        let (batch, seq, input_size, hidden) = (3, 6, 4, 20);
        let plain = LstmConfig::new(input_size, hidden)
            .with_num_layers(2)
            .init(&device);
        // The weights are drawn when first read: here, not after the seeds below.
        for layer in &plain.layers {
            let _ = (layer.weight_ih.val(), layer.weight_hh.val());
            let _ = (layer.bias_ih.val(), layer.bias_hh.val());
        }
        let zoned = Lstm {
            zoneout: [0.5, 0.2],
            ..plain.clone()
        };
        let multiplicative = |lstm: &Lstm| Lstm {
            layers: (lstm.layers.iter())
                .map(|layer| LstmCell {
                    multiplicative_integration: true,
                    ..layer.clone()
                })
                .collect(),
            ..lstm.clone()
        };
        let variants = [
            ("zoneout", zoned.clone()),
            ("multiplicative integration", multiplicative(&plain)),
            ("both", multiplicative(&zoned)),
        ];
        let input = random([batch, seq, input_size], &device);
        let states: Vec<LstmState> = (0..2)
            .map(|_| LstmState {
                hidden: random([batch, hidden], &device),
                cell: random([batch, hidden], &device),
            })
            .collect();
        let (r, s) = (
            random([batch, seq, hidden], &device),
            random([batch, hidden], &device),
        );
        let run = |lstm: &Lstm, implementation| {
            device.clone().autodiff().seed(3);
            run_everything(lstm, &input, &states, &r, &s, implementation)
        };
        let evaluate_on = |lstm: &Lstm, implementation, device: &Device| {
            let states = states
                .iter()
                .map(|state| LstmState {
                    hidden: state.hidden.clone().to_device(device),
                    cell: state.cell.clone().to_device(device),
                })
                .collect();
            let lstm = lstm.clone().fork(device);
            let input = input.clone().to_device(device);
            let (out, finals) = lstm.forward_with(input, Some(states), implementation);
            let mut values = vec![(
                "output".to_string(),
                out.into_data().try_to_vec::<f32>().unwrap(),
            )];
            for (l, last) in finals.into_iter().enumerate() {
                values.push((
                    format!("c_T {l}"),
                    last.cell.into_data().try_to_vec().unwrap(),
                ));
            }
            values
        };
        let evaluate = |lstm: &Lstm, implementation| evaluate_on(lstm, implementation, &device);
        let simd_paths = char_lstm_kernels::simd::Simd::supported();
        for ((name, variant), simd) in variants
            .iter()
            .flat_map(|v| simd_paths.iter().map(move |s| (v, s)))
        {
            simd.run(|| {
                let trained = run(variant, LstmImplementation::Fused);
                let what = format!("{name}, {simd:?}, training");
                let composed = run(variant, LstmImplementation::Composed);
                assert_runs_agree(&trained, &composed, &what);
                assert_ne!(
                    trained[0],
                    run(&plain, LstmImplementation::Fused)[0],
                    "{what}"
                );
                let evaluated = evaluate(variant, LstmImplementation::Fused);
                let what = format!("{name}, {simd:?}, evaluation");
                let composed = evaluate(variant, LstmImplementation::Composed);
                assert_runs_agree(&evaluated, &composed, &what);
                assert_ne!(
                    evaluated[0],
                    evaluate(&plain, LstmImplementation::Fused)[0],
                    "{what}"
                );
            });
        }
        #[cfg(feature = "gpu")]
        for (name, variant) in &variants {
            let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            let on_gpu = evaluate_on(variant, LstmImplementation::Fused, &wgpu);
            let composed = evaluate(variant, LstmImplementation::Composed);
            assert_runs_agree(&on_gpu, &composed, &format!("{name}, wgpu, evaluation"));
        }
    }

    /// In training the keep weights are 0 or 1, 1 with the zoneout probability of their half
    /// (the cell's, then the hidden state's) and drawn anew each time; outside training they are
    /// the probability; without zoneout there are none.
    #[test]
    fn zoneout_keeps_with_its_probability_in_training_and_by_it_outside() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(8);
        let zoned = Lstm {
            zoneout: [0.5, 0.1],
            ..LstmConfig::new(2, 3).init(&device)
        };
        let shape = [40, 50, 60];
        // The last dimension is 60 keep weights of the cell, then 60 of the hidden state.
        let halves = |keep: Tensor<3>| {
            let values: Vec<f32> = keep.into_data().try_to_vec().unwrap();
            let half = |which: usize| -> Vec<f32> {
                values
                    .chunks(60)
                    .skip(which)
                    .step_by(2)
                    .flatten()
                    .copied()
                    .collect()
            };
            [half(0), half(1)]
        };
        let ad = device.clone().autodiff();
        let drawn = zoned.zoneout_keep(shape, &ad).expect("zoneout");
        assert_eq!(drawn.dims(), [40, 50, 120]);
        for (values, prob) in halves(drawn.clone()).into_iter().zip([0.5, 0.1]) {
            assert!(values.iter().all(|&v| v == 0.0 || v == 1.0));
            let kept = values.iter().filter(|&&v| v == 1.0).count() as f64 / values.len() as f64;
            assert!((kept - prob).abs() < 0.01, "{kept} kept, expected {prob}");
        }
        let again = zoned.zoneout_keep(shape, &ad).expect("zoneout");
        assert_ne!(again.into_data(), drawn.into_data());
        let expected = zoned.zoneout_keep(shape, &device).expect("zoneout");
        for (values, prob) in halves(expected).into_iter().zip([0.5f32, 0.1]) {
            assert!(values.iter().all(|&v| v == prob));
        }
        let plain = LstmConfig::new(2, 3).init(&device);
        assert!(plain.zoneout_keep(shape, &ad).is_none());
    }

    #[test]
    #[cfg(feature = "kernels")]
    fn fused_op_matches_composed_ops_in_values_and_every_gradient_on_every_simd_path() {
        let _rng = crate::test_support::device_rng();
        let zeros = |dims: [usize; 2]| Tensor::<2>::zeros(dims, &Device::flex());
        let projected = Tensor::<3>::zeros([2, 3, 8], &Device::flex());
        let ran = fused::recurrence(
            &projected,
            &zeros([8, 2]),
            &zeros([2, 2]),
            &zeros([2, 2]),
            None,
            false,
        );
        assert!(ran.is_some(), "the fused op runs on flex");
        for simd in char_lstm_kernels::simd::Simd::supported() {
            simd.run(|| assert_fused_matches_composed(&Device::flex()));
        }
    }

    /// The GPU kernel (wgpu: lavapipe on a machine without a GPU) against composed ops on flex
    /// (the shapes of one step run composed ops on wgpu too, as generation does).
    #[cfg(feature = "gpu")]
    #[test]
    fn gpu_kernel_matches_composed_ops_in_values_and_every_gradient() {
        let _rng = crate::test_support::device_rng();
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        // The kernel, not the composed fallback, is what runs there, with autodiff and without.
        for device in [wgpu.clone(), wgpu.clone().autodiff()] {
            let zeros = |dims: [usize; 2]| Tensor::<2>::zeros(dims, &device);
            let projected = Tensor::<3>::zeros([2, 3, 8], &device);
            let found = fused::recurrence(
                &projected,
                &zeros([8, 2]),
                &zeros([2, 2]),
                &zeros([2, 2]),
                None,
                false,
            );
            assert!(found.is_some(), "no kernel on {device:?}");
        }
        assert_fused_matches_composed(&wgpu);
    }
}
