//! Token-by-token decoding on this machine's CPU without Burn tensors, for a model on flex or
//! on a GPU: every weight is copied out once (packed for the matrix kernel), every buffer is
//! allocated once, and each step reuses them, so generating a character allocates nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Flex;
use burn::tensor::Tensor;

use crate::cpu::flex_op::values;
use crate::cpu::gates::{Keep, cell_update, integrate, zoned_cell_update};
use crate::cpu::matmul::{Operand, Rhs, Threads, Write, matmul};

/// A weight's values, copied out: from flex (without autodiff), or read back from a GPU (with
/// the `gpu` feature) or a remote server (with `remote`), since one character at a time
/// decodes faster on this machine's cores than as a chain of small kernels, or of round trips,
/// with a read of the logits each; `None` elsewhere.
fn weight_values<const D: usize>(tensor: Tensor<D>) -> Option<Vec<f32>> {
    if let Ok(primitive) = tensor.clone().try_into_primitive::<Flex>() {
        return Some(values(&primitive).into_owned());
    }
    #[cfg(feature = "gpu")]
    if crate::gpu::gpu_primitive(&tensor).is_some() {
        return tensor.into_data().try_into_vec::<f32>().ok();
    }
    #[cfg(feature = "remote")]
    if crate::remote::remote_device(&tensor).is_some() && !tensor.device().is_autodiff() {
        return tensor.into_data().try_into_vec::<f32>().ok();
    }
    None
}

/// One LSTM layer's weights in PyTorch's layout: `weight_ih` `[4H, input]`, `weight_hh`
/// `[4H, H]`, `bias_ih` and `bias_hh` `[4H]`.
#[derive(Debug, Clone)]
pub struct LayerTensors {
    /// The input weights.
    pub weight_ih: Tensor<2>,
    /// The recurrent weights.
    pub weight_hh: Tensor<2>,
    /// The input biases.
    pub bias_ih: Tensor<1>,
    /// The recurrent biases.
    pub bias_hh: Tensor<1>,
    /// Whether the layer's gates take the recurrent product by multiplicative integration
    /// (`p + u ⊙ (1 + p)` for the input projection `p` and the product `u`).
    pub multiplicative_integration: bool,
}

/// A language model's weights (embedding, LSTM layers, output layer) packed for decoding.
pub struct DecoderWeights {
    vocab: usize,
    hidden: usize,
    /// The bottom layer's input projection of every token, biases included, `[vocab, 4H]`.
    table: Vec<f32>,
    layers: Vec<PackedLayer>,
    /// The output layer's weight, `[H, vocab]`, and bias `[vocab]`.
    output: Rhs<'static>,
    output_bias: Vec<f32>,
    /// With zoneout, every layer's test-time keep weights: the cell's zoneout probability
    /// `hidden` times, then the hidden state's, `[2 * H]`.
    keep: Option<Vec<f32>>,
}

/// One layer's products: `W_ih^T` (`None` for the bottom layer, which reads the table) and
/// `W_hh^T`, packed, and `b_ih + b_hh`; and whether its gates integrate multiplicatively.
struct PackedLayer {
    w_ih_t: Option<Rhs<'static>>,
    w_hh_t: Rhs<'static>,
    bias: Vec<f32>,
    multiplicative: bool,
}

impl DecoderWeights {
    /// The weights when they live on flex (without autodiff) or on a GPU (read back once, with
    /// the `gpu` feature); `None` elsewhere.
    ///
    /// - `embedding`: `[vocab, input]`; `layers`: bottom first.
    /// - `output_weight`: `[H, vocab]` (Burn's `Linear` layout); `output_bias`: `[vocab]`.
    ///
    /// The weights are packed for our kernel whatever the number of streams decoded later, so
    /// each stream's logits are the same bits in a batch as alone on our kernel's paths.
    pub fn new(
        embedding: Tensor<2>,
        layers: &[LayerTensors],
        output_weight: Tensor<2>,
        output_bias: Option<Tensor<1>>,
    ) -> Option<Self> {
        let [vocab, input] = embedding.dims();
        let hidden = layers.first()?.weight_hh.dims()[1];
        let g4 = 4 * hidden;
        let mut packed = Vec::with_capacity(layers.len());
        let mut bottom_ih = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            let bias: Vec<f32> = weight_values(layer.bias_ih.clone())?
                .iter()
                .zip(weight_values(layer.bias_hh.clone())?)
                .map(|(a, b)| a + b)
                .collect();
            let w_ih = weight_values(layer.weight_ih.clone())?;
            let w_hh = weight_values(layer.weight_hh.clone())?;
            let layer_input = w_ih.len() / g4;
            let w_ih_t = if index == 0 {
                bottom_ih = w_ih;
                None
            } else {
                let w = Operand::transposed(&w_ih, layer_input, g4, layer_input);
                Some(Rhs::packed_owned(w))
            };
            let w_hh_t = Rhs::packed_owned(Operand::transposed(&w_hh, hidden, g4, hidden));
            packed.push(PackedLayer {
                w_ih_t,
                w_hh_t,
                bias,
                multiplicative: layer.multiplicative_integration,
            });
        }
        let embedding = weight_values(embedding)?;
        let mut table = crate::cpu::buffer::repeated(&packed[0].bias, vocab);
        matmul(
            &mut table,
            g4,
            Write::Add,
            Operand::rows(&embedding, vocab, input, input),
            &Rhs::for_rows(Operand::transposed(&bottom_ih, input, g4, input), vocab),
            Threads::All,
        );
        let output_bias = match output_bias {
            Some(bias) => weight_values(bias)?,
            None => vec![0.0; vocab],
        };
        let output_weight = weight_values(output_weight)?;
        let output = Rhs::packed_owned(Operand::rows(&output_weight, hidden, vocab, vocab));
        Some(Self {
            vocab,
            hidden,
            table,
            layers: packed,
            output,
            output_bias,
            keep: None,
        })
    }

    /// The same weights for a model trained with zoneout: every layer's cell and hidden state
    /// keep `cell` and `hidden` of their previous values at each step (the expectation of
    /// training's draws), as the sequence forward does outside training.
    pub fn with_zoneout(mut self, cell: f32, hidden: f32) -> Self {
        let h = self.hidden;
        self.keep = (cell > 0.0 || hidden > 0.0).then(|| [vec![cell; h], vec![hidden; h]].concat());
        self
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }
}

/// Runs `steps`, a loop of [`Decoder::step`]s and whatever the caller does between them, on a
/// worker of the thread pool that the steps' products split over, and returns what it returns.
/// Called from outside the pool, each step hands itself to a worker and waits to be woken when
/// it ends: two wake-ups per character, which a loop run here does not pay.
pub fn on_decoder_threads<R: Send>(steps: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| steps())
}

/// The state of `streams` streams and the buffers of one step.
pub struct Decoder {
    weights: Arc<DecoderWeights>,
    streams: usize,
    /// Per layer `h` and `c`, `[streams, H]`.
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    /// The cell state being written, swapped with `cell` after each layer.
    next_cell: Vec<f32>,
    /// A layer's hidden state before the step, which zoneout mixes into the new one.
    prev_hidden: Vec<f32>,
    gates: Vec<f32>,
    /// A layer's recurrent product, `[streams, 4H]`, where it integrates multiplicatively.
    recurrent: Vec<f32>,
    logits: Vec<f32>,
}

impl Decoder {
    /// A decoder for `streams` streams from zero states.
    pub fn new(weights: Arc<DecoderWeights>, streams: usize) -> Self {
        let (h, layers, vocab) = (weights.hidden, weights.layers.len(), weights.vocab);
        let multiplicative = weights.layers.iter().any(|layer| layer.multiplicative);
        Self {
            weights,
            streams,
            hidden: vec![vec![0.0; streams * h]; layers],
            cell: vec![vec![0.0; streams * h]; layers],
            next_cell: vec![0.0; streams * h],
            prev_hidden: Vec::new(),
            gates: vec![0.0; streams * 4 * h],
            recurrent: vec![0.0; if multiplicative { streams * 4 * h } else { 0 }],
            logits: vec![0.0; streams * vocab],
        }
    }

    /// Feeds one token per stream; the next-token logits, `[streams, vocab]`.
    ///
    /// # Panics
    /// If `tokens` does not hold one token per stream, or a token is outside the vocabulary.
    pub fn step(&mut self, tokens: &[u32]) -> &[f32] {
        // On a worker of the thread pool, each product's split over the cores is a join among
        // workers that are awake, not a handoff from outside the pool that wakes them. A helper
        // keeps another worker awake through the step, taking the products' halves as they come,
        // so that the step wakes a sleeping worker once, not once per product.
        let done = &AtomicBool::new(false);
        rayon::scope(|scope| {
            let owner = rayon::current_thread_index();
            scope.spawn(move |_| {
                // On the step's own thread (popped while it waited), spinning would never end.
                while rayon::current_thread_index() != owner && !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
            self.advance(tokens);
            done.store(true, Ordering::Release);
        });
        &self.logits
    }

    /// [`Decoder::step`]'s work, into `self.logits`.
    fn advance(&mut self, tokens: &[u32]) {
        let w = &*self.weights;
        let (h, g4, streams) = (w.hidden, 4 * w.hidden, self.streams);
        assert_eq!(tokens.len(), streams, "one token per stream");
        for (index, layer) in w.layers.iter().enumerate() {
            let (below, rest) = self.hidden.split_at_mut(index);
            let hidden = &mut rest[0];
            match (below.last(), &layer.w_ih_t) {
                (Some(x), Some(w_ih_t)) => {
                    for row in self.gates.chunks_mut(g4) {
                        row.copy_from_slice(&layer.bias);
                    }
                    let x = Operand::rows(x, streams, h, h);
                    matmul(&mut self.gates, g4, Write::Add, x, w_ih_t, Threads::All);
                }
                _ => {
                    for (row, &token) in self.gates.chunks_mut(g4).zip(tokens) {
                        let token = token as usize;
                        row.copy_from_slice(&w.table[token * g4..(token + 1) * g4]);
                    }
                }
            }
            let h_prev = Operand::rows(hidden, streams, h, h);
            if layer.multiplicative {
                let recurrent = &mut self.recurrent;
                matmul(
                    recurrent,
                    g4,
                    Write::Replace,
                    h_prev,
                    &layer.w_hh_t,
                    Threads::All,
                );
                for (gates, recurrent) in self.gates.chunks_mut(g4).zip(recurrent.chunks(g4)) {
                    integrate(gates, recurrent);
                }
            } else {
                matmul(
                    &mut self.gates,
                    g4,
                    Write::Add,
                    h_prev,
                    &layer.w_hh_t,
                    Threads::All,
                );
            }
            let cell = &mut self.cell[index];
            let rows = self
                .gates
                .chunks_mut(g4)
                .zip(cell.chunks(h))
                .zip(self.next_cell.chunks_mut(h));
            match &w.keep {
                None => {
                    for (((gates, c_prev), c), h_row) in rows.zip(hidden.chunks_mut(h)) {
                        cell_update(gates, c_prev, c, h_row);
                    }
                }
                Some(keep) => {
                    self.prev_hidden.clone_from(hidden);
                    let keep = Keep::halves(keep);
                    let states = hidden.chunks_mut(h).zip(self.prev_hidden.chunks(h));
                    for (((gates, c_prev), c), (h_row, h_prev)) in rows.zip(states) {
                        zoned_cell_update(gates, c_prev, h_prev, keep, c, h_row);
                    }
                }
            }
            std::mem::swap(cell, &mut self.next_cell);
        }
        for row in self.logits.chunks_mut(w.vocab) {
            row.copy_from_slice(&w.output_bias);
        }
        let top = Operand::rows(self.hidden.last().expect("a layer"), streams, h, h);
        matmul(
            &mut self.logits,
            w.vocab,
            Write::Add,
            top,
            &w.output,
            Threads::All,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    /// A model on a GPU decodes here, from its weights read back: the same logits, to the bit,
    /// as the same weights on flex.
    #[cfg(feature = "gpu")]
    #[test]
    fn weights_on_a_gpu_decode_as_the_same_weights_on_flex() {
        let _launches = crate::testing::gpu_launches();
        let _rng = crate::testing::device_rng();
        let flex = Device::flex();
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Default, &flex);
        let weights = [
            random([7, 3]),
            random([8, 3]),
            random([8, 2]),
            random([2, 7]),
        ];
        let biases = [random([1, 8]), random([1, 8]), random([1, 7])].map(|b| b.reshape([-1]));
        let decode = |device: &Device| {
            let on = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), device);
            let on1 = |t: &Tensor<1>| Tensor::<1>::from_data(t.to_data(), device);
            let layer = LayerTensors {
                weight_ih: on(&weights[1]),
                weight_hh: on(&weights[2]),
                bias_ih: on1(&biases[0]),
                bias_hh: on1(&biases[1]),
                multiplicative_integration: false,
            };
            let packed = DecoderWeights::new(
                on(&weights[0]),
                &[layer],
                on(&weights[3]),
                Some(on1(&biases[2])),
            )
            .expect("decodable");
            let mut decoder = Decoder::new(Arc::new(packed), 2);
            [[1, 4], [6, 0], [2, 2]].map(|tokens| decoder.step(&tokens).to_vec())
        };
        assert_eq!(decode(&wgpu), decode(&flex));
    }

    /// Weights that do not live on flex without autodiff are left to Burn's ops.
    #[test]
    fn weights_off_plain_flex_are_refused() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Default, &device);
        let layer = LayerTensors {
            weight_ih: random([8, 3]),
            weight_hh: random([8, 2]),
            bias_ih: Tensor::zeros([8], &device),
            bias_hh: Tensor::zeros([8], &device),
            multiplicative_integration: false,
        };
        assert!(DecoderWeights::new(random([5, 3]), &[layer], random([2, 5]), None).is_none());
    }
}
