//! Token-by-token decoding on flex without Burn tensors: every weight is copied out once
//! (packed for the matrix kernel), every buffer is allocated once, and each step reuses them,
//! so generating a character allocates nothing.

use burn::backend::Flex;
use burn::tensor::Tensor;

use crate::matmul::{Operand, Rhs, matmul};
use crate::model::LstmLanguageModel;
use crate::recurrence::cell_update;

/// A model's weights as plain row-major buffers.
pub(crate) struct DecoderWeights {
    vocab: usize,
    hidden: usize,
    /// The bottom layer's input projection of every token, biases included, `[vocab, 4H]`.
    table: Vec<f32>,
    /// Per layer `W_ih` `[4H, input]` (unused for the bottom layer), `W_hh` `[4H, H]` and
    /// `b_ih + b_hh` `[4H]`.
    layers: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// The output layer's weight `[H, vocab]` (Burn's layout) and bias `[vocab]`.
    output: (Vec<f32>, Vec<f32>),
}

/// Copies the values of a tensor that lives on flex; `None` on other backends.
fn host<const D: usize>(tensor: Tensor<D>) -> Option<Vec<f32>> {
    let primitive = tensor.try_into_primitive::<Flex>().ok()?;
    Some(crate::flex_op::values(&primitive).into_owned())
}

impl DecoderWeights {
    /// The weights of `model` when it lives on flex (without autodiff); `None` elsewhere.
    pub fn new(model: &LstmLanguageModel) -> Option<Self> {
        let (vocab, hidden) = (model.vocab_size(), model.hidden_dim());
        let mut layers = Vec::with_capacity(model.num_layers());
        for cell in &model.lstm.layers {
            let bias: Vec<f32> = host(cell.bias_ih.val())?
                .iter()
                .zip(host(cell.bias_hh.val())?)
                .map(|(a, b)| a + b)
                .collect();
            layers.push((
                host(cell.weight_ih.val())?,
                host(cell.weight_hh.val())?,
                bias,
            ));
        }
        let embedding = host(model.embedding.weight.val())?;
        let input = model.lstm.layers[0].input_size();
        let mut table: Vec<f32> = (0..vocab).flat_map(|_| layers[0].2.clone()).collect();
        matmul(
            &mut table,
            4 * hidden,
            true,
            Operand::rows(&embedding, vocab, input, input),
            &Rhs::for_rows(
                Operand::transposed(&layers[0].0, input, 4 * hidden, input),
                vocab,
            ),
            true,
        );
        let output_bias = match &model.output.bias {
            Some(bias) => host(bias.val())?,
            None => vec![0.0; vocab],
        };
        let output = (host(model.output.weight.val())?, output_bias);
        Some(Self {
            vocab,
            hidden,
            table,
            layers,
            output,
        })
    }
}

/// The state of `streams` streams and the buffers of one step.
pub(crate) struct Decoder<'w> {
    weights: &'w DecoderWeights,
    streams: usize,
    /// Per layer: `W_ih^T` (`None` for the bottom layer) and `W_hh^T`, packed once.
    products: Vec<(Option<Rhs<'w>>, Rhs<'w>)>,
    output: Rhs<'w>,
    /// Per layer `h` and `c`, `[streams, H]`.
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    /// The cell state being written, swapped with `cell` after each layer.
    next_cell: Vec<f32>,
    gates: Vec<f32>,
    logits: Vec<f32>,
}

impl<'w> Decoder<'w> {
    /// A decoder for `streams` streams from zero states. The weights are packed for our
    /// kernel whatever the number of streams, so each stream's logits are the same bits in a
    /// batch as alone.
    pub fn new(weights: &'w DecoderWeights, streams: usize) -> Self {
        let h = weights.hidden;
        let products = weights
            .layers
            .iter()
            .enumerate()
            .map(|(layer, (w_ih, w_hh, _))| {
                let input = w_ih.len() / (4 * h);
                let w_ih_t = (layer > 0)
                    .then(|| Rhs::packed(Operand::transposed(w_ih, input, 4 * h, input)));
                (w_ih_t, Rhs::packed(Operand::transposed(w_hh, h, 4 * h, h)))
            })
            .collect();
        let output = Rhs::packed(Operand::rows(
            &weights.output.0,
            h,
            weights.vocab,
            weights.vocab,
        ));
        let layers = weights.layers.len();
        Self {
            weights,
            streams,
            products,
            output,
            hidden: vec![vec![0.0; streams * h]; layers],
            cell: vec![vec![0.0; streams * h]; layers],
            next_cell: vec![0.0; streams * h],
            gates: vec![0.0; streams * 4 * h],
            logits: vec![0.0; streams * weights.vocab],
        }
    }

    /// Feeds one token per stream; the next-token logits, `[streams, vocab]`.
    pub fn step(&mut self, tokens: &[u32]) -> &[f32] {
        let w = self.weights;
        let (h, g4, streams) = (w.hidden, 4 * w.hidden, self.streams);
        assert_eq!(tokens.len(), streams, "one token per stream");
        for (layer, (w_ih_t, w_hh_t)) in self.products.iter().enumerate() {
            let (below, rest) = self.hidden.split_at_mut(layer);
            let hidden = &mut rest[0];
            match (below.last(), w_ih_t) {
                (Some(x), Some(w_ih_t)) => {
                    for row in self.gates.chunks_mut(g4) {
                        row.copy_from_slice(&w.layers[layer].2);
                    }
                    let x = Operand::rows(x, streams, h, h);
                    matmul(&mut self.gates, g4, true, x, w_ih_t, true);
                }
                _ => {
                    for (row, &token) in self.gates.chunks_mut(g4).zip(tokens) {
                        let token = token as usize;
                        row.copy_from_slice(&w.table[token * g4..(token + 1) * g4]);
                    }
                }
            }
            let h_prev = Operand::rows(hidden, streams, h, h);
            matmul(&mut self.gates, g4, true, h_prev, w_hh_t, true);
            let cell = &mut self.cell[layer];
            for (((gates, c_prev), c), h) in self
                .gates
                .chunks_mut(g4)
                .zip(cell.chunks(h))
                .zip(self.next_cell.chunks_mut(h))
                .zip(hidden.chunks_mut(h))
            {
                cell_update(gates, c_prev, c, h);
            }
            std::mem::swap(cell, &mut self.next_cell);
        }
        for row in self.logits.chunks_mut(w.vocab) {
            row.copy_from_slice(&w.output.1);
        }
        let top = Operand::rows(self.hidden.last().expect("a layer"), streams, h, h);
        matmul(&mut self.logits, w.vocab, true, top, &self.output, true);
        &self.logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LstmLanguageModelConfig;
    use burn::tensor::{Device, Int, TensorData};

    /// Step by step, several streams with different tokens get the logits the whole-sequence
    /// forward gives at each position, for stacks of one to three layers and a vocabulary larger
    /// and smaller than the batch.
    #[test]
    fn steps_match_the_sequence_forward() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(9);
        for (layers, vocab) in [(1, 5), (2, 11), (3, 70)] {
            let model = LstmLanguageModelConfig::new(vocab)
                .with_embedding_dim(6)
                .with_hidden_dim(40)
                .with_num_layers(layers)
                .init(&device);
            let (streams, steps) = (3, 7);
            let ids: Vec<u32> = (0..streams * steps)
                .map(|i| (i * 7 + 3) as u32 % vocab as u32)
                .collect();
            let as_i32: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
            let inputs =
                Tensor::<2, Int>::from_data(TensorData::new(as_i32, [streams, steps]), &device);
            let (expected, _) = model.forward(inputs, None);
            let expected: Vec<f32> = expected.into_data().try_to_vec().unwrap();

            let weights = DecoderWeights::new(&model).expect("a flex model");
            let mut decoder = Decoder::new(&weights, streams);
            let mut alone = Decoder::new(&weights, 1);
            for t in 0..steps {
                let tokens: Vec<u32> = (0..streams).map(|s| ids[s * steps + t]).collect();
                let first = alone.step(&tokens[..1]).to_vec();
                let logits = decoder.step(&tokens);
                assert_eq!(
                    &logits[..vocab],
                    &first[..],
                    "stream 0 alone and in a batch"
                );
                for s in 0..streams {
                    let at = (s * steps + t) * vocab;
                    for (k, (&got, &want)) in logits[s * vocab..(s + 1) * vocab]
                        .iter()
                        .zip(&expected[at..at + vocab])
                        .enumerate()
                    {
                        assert!(
                            (got - want).abs() <= 1e-5,
                            "{layers} layers, stream {s}, step {t}, logit {k}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[allow(deprecated)]
    fn other_backends_are_left_to_burn() {
        let model = LstmLanguageModelConfig::new(5)
            .with_embedding_dim(3)
            .with_hidden_dim(4)
            .init(&Device::ndarray());
        assert!(DecoderWeights::new(&model).is_none());
    }
}
