//! One LSTM layer's weights and a single time step through its gates.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Tensor};

use crate::network::state::LstmState;

/// Configuration of an [`LstmCell`].
#[derive(Config, Debug)]
pub struct LstmCellConfig {
    /// The size of each input vector.
    pub input_size: usize,
    /// The size of the hidden and cell state.
    pub hidden_size: usize,
    /// Start the forget gate's bias at 1 (in `bias_ih`, with `bias_hh` at 0) so that the cell
    /// remembers by default early in training; off gives PyTorch's init for every bias.
    #[config(default = false)]
    pub forget_bias: bool,
    /// Multiplicative integration (Wu et al. 2016): the gates take the recurrent product `u`
    /// as `p + u ⊙ (1 + p)` for the input projection `p` instead of `p + u`, so that the
    /// input scales how the previous state enters each gate. The same weights; off gives
    /// PyTorch's LSTM.
    #[config(default = false)]
    pub multiplicative_integration: bool,
}

/// The weights of one LSTM layer, fused over the four gates in PyTorch's layout and gate order
/// (input `i`, forget `f`, candidate `g`, output `o`), so PyTorch weights load as they are.
///
/// For input `x` and state `(h, c)`:
/// ```text
/// i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(W_if x + b_if + W_hf h + b_hf)
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
/// c' = f ⊙ c + i ⊙ g                        h' = o ⊙ tanh(c')
/// ```
/// With [`LstmCellConfig::multiplicative_integration`], each gate's pre-activation is
/// `p + u ⊙ (1 + p)` for `p = W_i x + b_i + b_h` and `u = W_h h` (the sums above are `p + u`).
#[derive(Module, Debug)]
pub struct LstmCell {
    /// The input weights `[W_ii; W_if; W_ig; W_io]`, `[4 * hidden_size, input_size]`.
    pub weight_ih: Param<Tensor<2>>,
    /// The recurrent weights `[W_hi; W_hf; W_hg; W_ho]`, `[4 * hidden_size, hidden_size]`.
    pub weight_hh: Param<Tensor<2>>,
    /// The input biases `[b_ii; b_if; b_ig; b_io]`, `[4 * hidden_size]`.
    pub bias_ih: Param<Tensor<1>>,
    /// The recurrent biases `[b_hi; b_hf; b_hg; b_ho]`, `[4 * hidden_size]`.
    pub bias_hh: Param<Tensor<1>>,
    /// Whether the gates take the recurrent product by multiplicative integration
    /// ([`LstmCellConfig::multiplicative_integration`]); not part of the weights.
    #[module(skip)]
    pub multiplicative_integration: bool,
}

impl LstmCellConfig {
    /// Initializes the weights as PyTorch does: uniform in `±1/sqrt(hidden_size)`.
    pub fn init(&self, device: &Device) -> LstmCell {
        let bound = 1.0 / (self.hidden_size as f64).sqrt();
        let uniform = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let gates = 4 * self.hidden_size;
        let (bias_ih, bias_hh) = if self.forget_bias {
            let hidden = self.hidden_size;
            let forget_ones =
                Tensor::<1>::zeros([gates], device).slice_fill(hidden..2 * hidden, 1.0);
            (
                Param::from_tensor(forget_ones),
                Param::from_tensor(Tensor::zeros([gates], device)),
            )
        } else {
            (uniform.init([gates], device), uniform.init([gates], device))
        };
        LstmCell {
            weight_ih: uniform.init([gates, self.input_size], device),
            weight_hh: uniform.init([gates, self.hidden_size], device),
            bias_ih,
            bias_hh,
            multiplicative_integration: self.multiplicative_integration,
        }
    }
}

impl LstmCell {
    /// The size of the hidden and cell state.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.dims()[1]
    }

    /// The size of each input vector.
    pub fn input_size(&self) -> usize {
        self.weight_ih.dims()[1]
    }

    /// The input's contribution to the gates, `x W_ih^T + b_ih + b_hh`:
    /// `[rows, input_size]` in, `[rows, 4 * hidden_size]` out.
    ///
    /// Over a whole sequence (`rows = batch_size * seq_len`) this is one matrix product outside
    /// the time loop.
    pub fn input_projection(&self, input: Tensor<2>) -> Tensor<2> {
        let bias = self.bias_ih.val() + self.bias_hh.val();
        input.matmul(self.weight_ih.val().transpose()) + bias.unsqueeze::<2>()
    }

    /// One time step from the input projection of that step (see
    /// [`LstmCell::input_projection`]), `[batch_size, 4 * hidden_size]`, and the state before it.
    pub fn step_projected(&self, projected: Tensor<2>, state: LstmState) -> LstmState {
        self.step_projected_with(projected, state, self.weight_hh.val(), None)
    }

    /// [`LstmCell::step_projected`] with `weight_hh` in place of the layer's own recurrent
    /// weights (the same shape; a weight-dropped copy in training) and, with zoneout, `keep`
    /// (`[batch_size, 2 * hidden_size]`): how much of the previous cell state (the first half)
    /// and hidden state (the second) each element keeps, the rest coming from the update.
    pub(crate) fn step_projected_with(
        &self,
        projected: Tensor<2>,
        state: LstmState,
        weight_hh: Tensor<2>,
        keep: Option<Tensor<2>>,
    ) -> LstmState {
        let recurrent = state.hidden.clone().matmul(weight_hh.transpose());
        let gates = if self.multiplicative_integration {
            projected.clone() + recurrent * (projected + 1.0)
        } else {
            projected + recurrent
        };
        let [input, forget, candidate, output]: [Tensor<2>; 4] =
            gates.chunk(4, 1).try_into().expect("4 gates");
        let cell = sigmoid(forget) * state.cell.clone() + sigmoid(input) * tanh(candidate);
        let hidden = sigmoid(output) * tanh(cell.clone());
        let Some(keep) = keep else {
            return LstmState { hidden, cell };
        };
        let [keep_cell, keep_hidden]: [Tensor<2>; 2] =
            keep.chunk(2, 1).try_into().expect("2 halves");
        let mix = |keep: Tensor<2>, old: Tensor<2>, new: Tensor<2>| {
            old * keep.clone() + new * (keep.neg() + 1.0)
        };
        LstmState {
            hidden: mix(keep_hidden, state.hidden, hidden),
            cell: mix(keep_cell, state.cell, cell),
        }
    }

    /// One time step: input `[batch_size, input_size]` and the state before it give the state
    /// after it.
    pub fn forward(&self, input: Tensor<2>, state: LstmState) -> LstmState {
        self.step_projected(self.input_projection(input), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{TensorData, Tolerance};

    /// The cell of the hand-computed tests below: hidden size 1, input size 1.
    fn hand_computed_cell(device: &Device) -> LstmCell {
        let weights = |values: [f32; 4]| Tensor::<2>::from_data(values.map(|v| [v]), device);
        LstmCell {
            weight_ih: Param::from_tensor(weights([1.0, 0.0, 0.5, -1.0])),
            weight_hh: Param::from_tensor(weights([0.0, 2.0, 0.0, 1.0])),
            bias_ih: Param::from_tensor(Tensor::from_data([0.0, -1.0, 0.0, 0.5], device)),
            bias_hh: Param::from_tensor(Tensor::zeros([4], device)),
            multiplicative_integration: false,
        }
    }

    /// Hidden size 1, input size 1, x = 1, h = 0.5, c = 2.
    /// Weights (i, f, g, o): W_ih = [1, 0, 0.5, -1], W_hh = [0, 2, 0, 1], b_ih = [0, -1, 0, 0.5].
    /// Pre-activations: a_i = 1, a_f = 0 + 2*0.5 - 1 = 0, a_g = 0.5, a_o = -1 + 0.5 + 0.5 = 0.
    /// i = σ(1) = 0.7310585786, f = σ(0) = 0.5, g = tanh(0.5) = 0.4621171573, o = σ(0) = 0.5.
    /// c' = 0.5*2 + 0.7310585786*0.4621171573 = 1.3378347121.
    /// h' = 0.5 * tanh(1.3378347121) = 0.5 * 0.8711511895 = 0.4355755947.
    #[test]
    fn one_step_matches_hand_computed_values() {
        let _rng = crate::test_support::device_rng();
        let cell = hand_computed_cell(&Device::flex());
        assert_step_from_x_1_h_half_c_2(&cell, 1.337_834_7, 0.435_575_6);
    }

    /// One step of `cell` from x = 1, h = 0.5, c = 2 gives `c'` and `h'`.
    fn assert_step_from_x_1_h_half_c_2(cell: &LstmCell, c_next: f32, h_next: f32) {
        let device = cell.weight_ih.device();
        let state = LstmState {
            hidden: Tensor::from_data([[0.5f32]], &device),
            cell: Tensor::from_data([[2.0f32]], &device),
        };
        let next = cell.forward(Tensor::from_data([[1.0f32]], &device), state);
        let tol = Tolerance::absolute(1e-6);
        (next.cell.into_data()).assert_approx_eq::<f32>(&TensorData::from([[c_next]]), tol);
        (next.hidden.into_data()).assert_approx_eq::<f32>(&TensorData::from([[h_next]]), tol);
    }

    /// The hand-computed step above with zoneout keep weights: the cell keeps all of `c` in
    /// the first row (0.5 of it in the second), the hidden state none of `h` in the first row
    /// (0.5 of it in the second).
    /// Row 2: c' = 0.5*2 + 0.5*1.3378347121 = 1.6689173561, h' = 0.5*0.5 + 0.5*0.4355755947
    /// = 0.4677877974 (the output still reads `tanh` of the update, not of the kept cell).
    #[test]
    fn zoneout_mixes_the_previous_state_into_the_step_by_hand() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        let cell = hand_computed_cell(&device);
        let state = LstmState {
            hidden: Tensor::from_data([[0.5f32], [0.5]], &device),
            cell: Tensor::from_data([[2.0f32], [2.0]], &device),
        };
        let projected = cell.input_projection(Tensor::from_data([[1.0f32], [1.0]], &device));
        let keep = Tensor::from_data([[1.0f32, 0.0], [0.5, 0.5]], &device);
        let next = cell.step_projected_with(projected, state, cell.weight_hh.val(), Some(keep));
        let tol = Tolerance::absolute(1e-6);
        next.cell
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[2.0f32], [1.668_917_4]]), tol);
        next.hidden
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[0.435_575_6_f32], [0.467_787_8]]), tol);
    }

    /// The hand-computed step above with multiplicative integration. Projections
    /// p = W_ih x + b = (1, -1, 0.5, -0.5), recurrent products u = W_hh h = (0, 1, 0, 0.5);
    /// pre-activations p + u (1 + p) = (1, -1, 0.5, -0.25).
    /// i = σ(1) = 0.7310585786, f = σ(-1) = 0.2689414214, g = tanh(0.5) = 0.4621171573,
    /// o = σ(-0.25) = 0.4378234991; c' = 0.2689414214*2 + 0.7310585786*0.4621171573
    /// = 0.8757175549; h' = 0.4378234991 * tanh(0.8757175549) = 0.4378234991 * 0.7042674397
    /// = 0.3083448348.
    #[test]
    fn multiplicative_integration_scales_the_recurrent_product_by_hand() {
        let _rng = crate::test_support::device_rng();
        let cell = LstmCell {
            multiplicative_integration: true,
            ..hand_computed_cell(&Device::flex())
        };
        assert_step_from_x_1_h_half_c_2(&cell, 0.875_717_6, 0.308_344_83);
    }

    #[test]
    fn init_follows_pytorch_bounds_and_forget_bias_option() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        let cell = LstmCellConfig::new(3, 4).init(&device);
        assert_eq!(cell.weight_ih.dims(), [16, 3]);
        assert_eq!(cell.weight_hh.dims(), [16, 4]);
        let bound = 0.5 + 1e-7;
        for values in [
            cell.weight_ih.val().into_data(),
            cell.bias_hh.val().into_data(),
        ] {
            assert!(values.iter::<f32>().all(|v| v.abs() <= bound));
        }
        let cell = LstmCellConfig::new(3, 4)
            .with_forget_bias(true)
            .init(&device);
        let bias: Vec<f32> = cell.bias_ih.val().into_data().try_to_vec().unwrap();
        assert_eq!(&bias[4..8], &[1.0; 4]);
        assert!(bias[..4].iter().chain(&bias[8..]).all(|&v| v == 0.0));
    }
}
