//! The character-level language model: Embedding -> stacked LSTM -> Linear.

use burn::config::Config;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::fused;
use crate::network::dropout::{dropout, drops, row_dropout, sequence_dropout};
use crate::network::lstm::{Lstm, LstmConfig, LstmImplementation, project_rows};
use crate::network::state::LstmState;

/// Configuration of an [`LstmLanguageModel`]: the `[model]` section of a run's `config.toml`.
#[derive(Config, Debug, PartialEq)]
pub struct LstmLanguageModelConfig {
    /// The number of distinct tokens (characters). In a config file 0 stands for the size of
    /// the text's vocabulary, which is what a run's saved `config.toml` then records.
    pub vocab_size: usize,
    /// The size of each token's embedding vector.
    #[config(default = 256)]
    pub embedding_dim: usize,
    /// The size of every LSTM layer's hidden state.
    #[config(default = 512)]
    pub hidden_dim: usize,
    /// The number of stacked LSTM layers.
    #[config(default = 2)]
    pub num_layers: usize,
    /// Dropout between LSTM layers (training only).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Draw the dropout between layers, and the input dropout, once per sequence for all its
    /// steps (variational dropout) instead of for every element.
    #[config(default = false)]
    pub variational_dropout: bool,
    /// Dropout on the embeddings the bottom layer reads (AWD-LSTM's input dropout; training
    /// only). While it acts, training runs the bottom layer's input product instead of
    /// looking rows up in the projected embedding table, so its steps take longer.
    #[config(default = 0.0)]
    pub input_dropout: f64,
    /// Dropout on every LSTM layer's recurrent weights, drawn once per forward pass
    /// (AWD-LSTM's weight drop; training only).
    #[config(default = 0.0)]
    pub weight_dropout: f64,
    /// Start the forget-gate biases at 1.
    #[config(default = false)]
    pub forget_bias: bool,
    /// Dropout on the top layer's output before the output layer (training only), as
    /// char-rnn and Zaremba et al. apply it; PyTorch's `nn.LSTM` has none.
    #[config(default = 0.0)]
    pub output_dropout: f64,
    /// Dropout of whole characters' embeddings, drawn once per forward pass, so that every
    /// occurrence of a dropped character in the batch sees a zero embedding (AWD-LSTM's
    /// embedding dropout; training only).
    #[config(default = 0.0)]
    pub embedding_dropout: f64,
    /// Zoneout on every LSTM layer's cell state: the probability that an element keeps its
    /// previous value at a step (Krueger et al. 2016; drawn per element and step in training,
    /// its expectation outside training).
    #[config(default = 0.0)]
    pub zoneout_cell: f64,
    /// Zoneout on every LSTM layer's hidden state, as [`Self::zoneout_cell`].
    #[config(default = 0.0)]
    pub zoneout_hidden: f64,
    /// Every LSTM layer's gates take the recurrent product `u` as `p + u ⊙ (1 + p)` for the
    /// input projection `p` instead of `p + u` (multiplicative integration, Wu et al. 2016;
    /// the same weights, no PyTorch `nn.LSTM` equivalent).
    #[config(default = false)]
    pub multiplicative_integration: bool,
}

/// A character-level language model, the same as the PyTorch tutorial's
/// `nn.Embedding -> nn.LSTM(batch_first=True) -> nn.Linear`.
#[derive(Module, Debug)]
pub struct LstmLanguageModel {
    /// Token embeddings, `[vocab_size, embedding_dim]`.
    pub embedding: Embedding,
    /// Dropout of whole rows of the embedding table.
    pub embedding_dropout: Dropout,
    /// Dropout on the embeddings the bottom layer reads, with the LSTM's
    /// [`Lstm::variational_dropout`].
    pub input_dropout: Dropout,
    /// The stacked LSTM.
    pub lstm: Lstm,
    /// Dropout on the top hidden state before [`LstmLanguageModel::output`].
    pub output_dropout: Dropout,
    /// The projection from the top hidden state to next-token logits.
    pub output: Linear,
}

/// A model setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelConfigError {
    /// A size that must be at least 1.
    #[error("{key} = 0: expected a whole number >= 1")]
    Zero {
        /// The setting.
        key: &'static str,
    },
    /// A probability that must be in `[0, 1)`.
    #[error("{key} = {value}: expected a number in [0, 1)")]
    NotAProbability {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: f64,
    },
}

impl LstmLanguageModelConfig {
    /// Checks every setting's range (not `vocab_size`, which may still be 0 in a config file).
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        for (key, value) in [
            ("embedding_dim", self.embedding_dim),
            ("hidden_dim", self.hidden_dim),
            ("num_layers", self.num_layers),
        ] {
            if value == 0 {
                return Err(ModelConfigError::Zero { key });
            }
        }
        for (key, value) in [
            ("dropout", self.dropout),
            ("input_dropout", self.input_dropout),
            ("output_dropout", self.output_dropout),
            ("weight_dropout", self.weight_dropout),
            ("embedding_dropout", self.embedding_dropout),
            ("zoneout_cell", self.zoneout_cell),
            ("zoneout_hidden", self.zoneout_hidden),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(ModelConfigError::NotAProbability { key, value });
            }
        }
        Ok(())
    }

    /// The number of trainable parameters the model has: the embedding table, every layer's
    /// two weight matrices and two bias vectors (PyTorch's layout), and the output layer.
    pub fn num_params(&self) -> usize {
        let gates = 4 * self.hidden_dim;
        let layers: usize = (0..self.num_layers)
            .map(|layer| {
                let input = if layer == 0 {
                    self.embedding_dim
                } else {
                    self.hidden_dim
                };
                gates * (input + self.hidden_dim + 2)
            })
            .sum();
        self.vocab_size * self.embedding_dim + layers + (self.hidden_dim + 1) * self.vocab_size
    }

    /// Initializes the model: embeddings `N(0, 1)` and a Linear head with PyTorch's init, as
    /// `nn.Embedding` and `nn.Linear` do.
    pub fn init(&self, device: &Device) -> LstmLanguageModel {
        let bound = 1.0 / (self.hidden_dim as f64).sqrt();
        LstmLanguageModel {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embedding_dim).init(device),
            embedding_dropout: DropoutConfig::new(self.embedding_dropout).init(),
            input_dropout: DropoutConfig::new(self.input_dropout).init(),
            lstm: LstmConfig::new(self.embedding_dim, self.hidden_dim)
                .with_num_layers(self.num_layers)
                .with_dropout(self.dropout)
                .with_variational_dropout(self.variational_dropout)
                .with_weight_dropout(self.weight_dropout)
                .with_forget_bias(self.forget_bias)
                .with_zoneout_cell(self.zoneout_cell)
                .with_zoneout_hidden(self.zoneout_hidden)
                .with_multiplicative_integration(self.multiplicative_integration)
                .init(device),
            output_dropout: DropoutConfig::new(self.output_dropout).init(),
            output: LinearConfig::new(self.hidden_dim, self.vocab_size)
                .with_initializer(burn::nn::Initializer::Uniform {
                    min: -bound,
                    max: bound,
                })
                .init(device),
        }
    }
}

impl LstmLanguageModel {
    /// The number of tokens the model knows.
    pub fn vocab_size(&self) -> usize {
        self.embedding.weight.dims()[0]
    }

    /// The number of stacked LSTM layers.
    pub fn num_layers(&self) -> usize {
        self.lstm.layers.len()
    }

    /// The size of every LSTM layer's hidden state.
    pub fn hidden_dim(&self) -> usize {
        self.lstm.hidden_size()
    }

    /// Next-token logits for every position.
    ///
    /// - `inputs`: token ids, `[batch_size, seq_len]`.
    /// - `state`: per layer `(h, c)` to start from, `None` for zeros.
    ///
    /// Returns logits `[batch_size, seq_len, vocab_size]` and every layer's final state.
    pub fn forward(
        &self,
        inputs: Tensor<2, Int>,
        state: Option<Vec<LstmState>>,
    ) -> (Tensor<3>, Vec<LstmState>) {
        let [batch_size, seq_len] = inputs.dims();
        let embeddings = row_dropout(&self.embedding_dropout, self.embedding.weight.val());
        let (hidden, state) = if self.lstm.implementation == LstmImplementation::Fused
            && self.vocab_size() < batch_size * seq_len
            && !drops(&self.input_dropout, &inputs.device())
        {
            // Each row of the bottom layer's input projection is that of one of `vocab_size`
            // embeddings: projecting the embedding table once and looking rows up gives the
            // same values and skips that layer's input products, forward and backward.
            let bottom = &self.lstm.layers[0];
            let table = project_rows(bottom, embeddings, LstmImplementation::Fused);
            let projected = table
                .select(0, inputs.reshape([batch_size * seq_len]))
                .reshape([batch_size, seq_len, 4 * bottom.hidden_size()]);
            self.lstm.forward_projected(projected, state)
        } else {
            let embedded = burn::tensor::module::embedding(embeddings, inputs);
            let variational = self.lstm.variational_dropout;
            let embedded = sequence_dropout(&self.input_dropout, embedded, variational);
            self.lstm.forward(embedded, state)
        };
        let hidden = dropout(&self.output_dropout, hidden);
        let fused = (self.lstm.implementation == LstmImplementation::Fused)
            .then(|| fused::linear(&self.output, &hidden))
            .flatten();
        let logits = fused.unwrap_or_else(|| self.output.forward(hidden));
        (logits, state)
    }

    /// Mean cross-entropy of the next-token predictions, in nats, with the logits
    /// `[batch_size * seq_len, vocab_size]` it was computed from, and the final state.
    pub fn loss(
        &self,
        inputs: Tensor<2, Int>,
        targets: Tensor<2, Int>,
        state: Option<Vec<LstmState>>,
    ) -> (Tensor<1>, Tensor<2>, Vec<LstmState>) {
        let [batch_size, seq_len] = targets.dims();
        let (logits, state) = self.forward(inputs, state);
        let logits = logits.reshape([batch_size * seq_len, self.vocab_size()]);
        let targets = targets.reshape([batch_size * seq_len]);
        let fused = (self.lstm.implementation == LstmImplementation::Fused)
            .then(|| fused::cross_entropy(&logits, &targets))
            .flatten();
        let loss = fused.unwrap_or_else(|| {
            CrossEntropyLossConfig::new()
                .init(&logits.device())
                .forward(logits.clone(), targets)
        });
        (loss, logits, state)
    }

    /// One generation step: the next-token logits `[batch_size, vocab_size]` after `tokens`
    /// `[batch_size]`, and the state to continue from.
    pub fn step(
        &self,
        tokens: Tensor<1, Int>,
        state: Option<Vec<LstmState>>,
    ) -> (Tensor<2>, Vec<LstmState>) {
        let (logits, state) = self.forward(tokens.unsqueeze_dim(1), state);
        (logits.squeeze_dim(1), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(model: &LstmLanguageModel, device: &Device) -> Vec<f32> {
        let inputs = Tensor::<2, Int>::from_data([[1, 2, 3, 4], [4, 3, 2, 1]], device);
        let (logits, _) = model.forward(inputs, None);
        logits.into_data().try_to_vec().unwrap()
    }

    /// The count from the shapes is the count of the parameters `init` makes.
    #[test]
    fn num_params_counts_what_init_makes() {
        for (vocab, embedding, hidden, layers) in [(65, 256, 512, 2), (7, 3, 5, 1), (11, 4, 6, 3)] {
            let config = LstmLanguageModelConfig::new(vocab)
                .with_embedding_dim(embedding)
                .with_hidden_dim(hidden)
                .with_num_layers(layers);
            let made = config.init(&Device::flex()).num_params();
            assert_eq!(config.num_params(), made, "{config:?}");
        }
        assert_eq!(
            LstmLanguageModelConfig::new(65).num_params(),
            65 * 256 + 2048 * (256 + 512 + 2) + 2048 * (512 + 512 + 2) + 513 * 65
        );
    }

    /// Output dropout changes the logits from one training forward to the next, and leaves
    /// them alone outside training (so evaluation and generation are deterministic).
    #[test]
    fn output_dropout_applies_in_training_only() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex().autodiff();
        let config = LstmLanguageModelConfig::new(5)
            .with_embedding_dim(8)
            .with_hidden_dim(16)
            .with_num_layers(1);
        let plain = config.init(&device);
        assert_eq!(logits(&plain, &device), logits(&plain, &device));
        let dropped = config.clone().with_output_dropout(0.5).init(&device);
        assert_ne!(logits(&dropped, &device), logits(&dropped, &device));
        let eval = dropped.valid();
        let inner = device.inner();
        assert_eq!(logits(&eval, &inner), logits(&eval, &inner));
    }

    /// A one-layer model of 6 characters on flex, initialized from `seed`, with flex's autodiff
    /// device and two sequences of every character on it: `(device, autodiff, model, inputs)`.
    fn small_model_and_inputs(seed: u64) -> (Device, Device, LstmLanguageModel, Tensor<2, Int>) {
        let device = Device::flex();
        let ad = device.clone().autodiff();
        device.seed(seed);
        let model = LstmLanguageModelConfig::new(6)
            .with_embedding_dim(8)
            .with_hidden_dim(16)
            .with_num_layers(1)
            .init(&device);
        let inputs = Tensor::<2, Int>::from_data([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], &ad);
        (device, ad, model, inputs)
    }

    /// Embedding dropout runs the model on a copy of the embedding table whose rows are each
    /// zeroed or scaled whole, drawn from the seed: the same logits as a model without it whose
    /// table is that copy, in both implementations, and the table's gradient is that model's
    /// through the same rows and scale (zero for a dropped character).
    #[test]
    fn embedding_dropout_is_the_model_on_a_table_with_whole_rows_dropped() {
        use burn::module::Param;
        use burn::tensor::Tolerance;

        let _rng = crate::test_support::device_rng();
        let (_, ad, plain, inputs) = small_model_and_inputs(8);
        let layer = DropoutConfig::new(0.5).init();
        let flat = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        for implementation in [LstmImplementation::Fused, LstmImplementation::Composed] {
            let with_implementation = |mut model: LstmLanguageModel| {
                model.lstm = model.lstm.with_implementation(implementation);
                model.fork(&ad).train()
            };
            let mut ours = plain.clone();
            ours.embedding_dropout = layer.clone();
            let ours = with_implementation(ours);
            ad.seed(77);
            let (out, _) = ours.forward(inputs.clone(), None);
            let grads = out.clone().sum().backward();
            let d_ours = flat(ours.embedding.weight.grad(&grads).unwrap());

            ad.seed(77);
            let copy = row_dropout(&layer, plain.embedding.weight.val().autodiff());
            let mut reference = plain.clone();
            reference.embedding.weight = Param::from_tensor(copy.clone().without_autodiff());
            let reference = with_implementation(reference);
            let (expected, _) = reference.forward(inputs.clone(), None);
            let grads = expected.clone().sum().backward();
            let d_reference = flat(reference.embedding.weight.grad(&grads).unwrap());

            out.without_autodiff().into_data().assert_approx_eq::<f32>(
                &expected.without_autodiff().into_data(),
                Tolerance::absolute(1e-6),
            );
            let kept = flat(copy.without_autodiff());
            let dropped_rows = kept.chunks(8).filter(|row| row[0] == 0.0).count();
            assert!(
                (1..6).contains(&dropped_rows),
                "{dropped_rows} of 6 dropped"
            );
            for ((d, e), w) in d_ours.iter().zip(&d_reference).zip(&kept) {
                let expected = if *w == 0.0 { 0.0 } else { e * 2.0 };
                assert!((d - expected).abs() <= 1e-5, "{d} vs {expected}");
            }
        }
    }

    /// Input dropout runs the bottom layer on the embeddings times a mask drawn from the seed
    /// (one per sequence when variational): the same logits and embedding gradients as a model
    /// without it fed those masked embeddings, in both implementations; outside training the
    /// model is the one without it.
    #[test]
    fn input_dropout_is_the_model_on_masked_embeddings() {
        use crate::network::dropout::locked_dropout;
        use burn::tensor::Tolerance;

        let _rng = crate::test_support::device_rng();
        let (device, ad, plain, inputs) = small_model_and_inputs(9);
        let layer = DropoutConfig::new(0.5).init();
        for variational in [true, false] {
            for implementation in [LstmImplementation::Fused, LstmImplementation::Composed] {
                let mut ours = plain.clone();
                ours.input_dropout = layer.clone();
                ours.lstm.variational_dropout = variational;
                ours.lstm = ours.lstm.with_implementation(implementation);
                let ours = ours.fork(&ad).train();
                ad.seed(77);
                let (out, _) = ours.forward(inputs.clone(), None);
                let d_ours = ours.embedding.weight.grad(&out.clone().sum().backward());

                let mut reference = plain.clone();
                reference.lstm = reference.lstm.with_implementation(implementation);
                let reference = reference.fork(&ad).train();
                let embedded = reference.embedding.forward(inputs.clone());
                ad.seed(77);
                let masked = if variational {
                    locked_dropout(&layer, embedded.clone())
                } else {
                    dropout(&layer, embedded.clone())
                };
                let zeros = masked
                    .clone()
                    .equal_elem(0.0)
                    .int()
                    .sum()
                    .into_scalar::<i64>();
                assert!((1..96).contains(&zeros), "{zeros} of 96 dropped");
                let (hidden, _) = reference.lstm.forward(masked, None);
                let expected = reference.output.forward(hidden);
                let d_reference = reference
                    .embedding
                    .weight
                    .grad(&expected.clone().sum().backward());
                out.without_autodiff().into_data().assert_approx_eq::<f32>(
                    &expected.without_autodiff().into_data(),
                    Tolerance::absolute(1e-6),
                );
                d_ours.unwrap().into_data().assert_approx_eq::<f32>(
                    &d_reference.unwrap().into_data(),
                    Tolerance::absolute(1e-5),
                );

                let (eval, plain_eval) = (ours.valid(), reference.valid());
                assert_eq!(logits(&eval, &device), logits(&plain_eval, &device));
            }
        }
    }
}
