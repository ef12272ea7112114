//! Generating text token by token from a trained model.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::network::language_model::LstmLanguageModel;
use crate::network::state::LstmState;
use crate::text::sampling::{Sampler, SamplingConfig, SamplingError, softmax_weights};
use crate::text::vocab::{CharVocab, VocabError};

/// How much to generate and how each token is drawn.
#[derive(Config, Debug, PartialEq)]
pub struct GenerationConfig {
    /// Tokens (characters) to generate after the prompt.
    #[config(default = 200)]
    pub length: usize,
    /// Temperature, top-k, top-p and seed.
    #[config(default = "SamplingConfig::new()")]
    pub sampling: SamplingConfig,
}

/// Why generation cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// Generation continues a prompt of at least one token.
    #[error("the prompt is empty: expected at least one character")]
    EmptyPrompt,
    /// At least one stream.
    #[error("generation needs at least one stream")]
    NoStreams,
    /// A prompt token the model does not know.
    #[error("prompt token {token} is outside the model's vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A prompt character outside the vocabulary.
    #[error("prompt: {0}")]
    Prompt(VocabError),
    /// A sampling setting out of range.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// Draws tokens for several independent streams that all continue one prompt, one step at a
/// time.
///
/// On flex with the `kernels` feature a decoder that holds the weights in plain buffers runs
/// the steps on this machine's cores and allocates nothing per token; so does a model on a GPU
/// with the `gpu` feature (its weights read back once), because one token at a time is a chain
/// of small dependent kernels with a read of the logits after each, which the CPU does faster.
/// Elsewhere the prompt is read in one pass over the sequence and each step is one composed
/// forward. Stream `s` draws with seed `seed + s`, so
/// stream 0 of a batch is the same text as a single stream with the same seed. Run it on a
/// device without autodiff: nothing here needs gradients.
///
/// An ensemble ([`TokenGenerator::ensemble`]) steps each of its models and draws from the mean
/// of their probabilities.
pub struct TokenGenerator<'m> {
    /// One per model of the ensemble; one for a single model.
    steppers: Vec<Stepper<'m>>,
    samplers: Vec<Sampler>,
    /// The tokens to feed next, one per stream: the prompt's last, then the ones just drawn.
    tokens: Vec<u32>,
    vocab_size: usize,
    /// An ensemble's `log` of the mean probabilities, `[streams, vocab]`; empty for one model.
    mixture: Vec<f32>,
    /// One row's softmax weights while the mixture is summed.
    weights: Vec<f64>,
}

/// What computes the next logits.
enum Stepper<'m> {
    #[cfg(feature = "kernels")]
    Decoder(crate::fused::Decoder),
    Composed(Composed<'m>),
}

/// Steps of composed tensor ops; the prompt but its last token is read at the first step.
struct Composed<'m> {
    model: &'m LstmLanguageModel,
    context: Vec<u32>,
    state: Option<Vec<LstmState>>,
    logits: Vec<f32>,
}

impl<'m> TokenGenerator<'m> {
    /// A generator of `num_streams` streams continuing `prompt` (token ids).
    pub fn new(
        model: &'m LstmLanguageModel,
        prompt: &[u32],
        num_streams: usize,
        sampling: &SamplingConfig,
    ) -> Result<Self, GenerationError> {
        Self::ensemble(&[model], prompt, num_streams, sampling)
    }

    /// A generator that draws each token from the mean of `models`' probabilities (each model
    /// carrying its own state); the temperature, top-k and top-p apply to that mean. One model
    /// is [`TokenGenerator::new`].
    ///
    /// # Panics
    /// If `models` is empty or its models' vocabularies differ in size.
    pub fn ensemble(
        models: &[&'m LstmLanguageModel],
        prompt: &[u32],
        num_streams: usize,
        sampling: &SamplingConfig,
    ) -> Result<Self, GenerationError> {
        let vocab_size = models.first().expect("at least one model").vocab_size();
        assert!(
            models.iter().all(|m| m.vocab_size() == vocab_size),
            "an ensemble's models predict over one vocabulary"
        );
        let Some((&last, context)) = prompt.split_last() else {
            return Err(GenerationError::EmptyPrompt);
        };
        if num_streams == 0 {
            return Err(GenerationError::NoStreams);
        }
        if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(GenerationError::TokenOutOfRange { token, vocab_size });
        }
        let samplers = (0..num_streams as u64)
            .map(|stream| sampling.init(stream))
            .collect::<Result<Vec<_>, _>>()?;
        let steppers = models
            .iter()
            .map(|model| Stepper::new(model, context, num_streams))
            .collect();
        let mixture = match models.len() {
            1 => Vec::new(),
            _ => vec![0.0; num_streams * vocab_size],
        };
        Ok(Self {
            steppers,
            samplers,
            tokens: vec![last; num_streams],
            vocab_size,
            mixture,
            weights: Vec::new(),
        })
    }

    /// Draws the next token of every stream: `[num_streams]` ids.
    pub fn next_tokens(&mut self) -> &[u32] {
        let Self {
            steppers,
            samplers,
            tokens,
            vocab_size,
            mixture,
            weights,
        } = self;
        let logits = match steppers.as_mut_slice() {
            [stepper] => stepper.step(tokens),
            steppers => {
                mixture.fill(0.0);
                for stepper in steppers.iter_mut() {
                    add_probabilities(mixture, stepper.step(tokens), *vocab_size, weights);
                }
                let members = steppers.len() as f32;
                mixture.iter_mut().for_each(|p| *p = (*p / members).ln());
                mixture
            }
        };
        for (stream, sampler) in samplers.iter_mut().enumerate() {
            tokens[stream] = sampler.sample(&logits[stream * *vocab_size..][..*vocab_size]);
        }
        tokens
    }
}

/// Adds the softmax of each row of `logits` (`[rows, vocab]`) to the same row of `sums`, with
/// the sampler's softmax weights (`weights` is scratch).
fn add_probabilities(sums: &mut [f32], logits: &[f32], vocab: usize, weights: &mut Vec<f64>) {
    for (sums, row) in sums.chunks_exact_mut(vocab).zip(logits.chunks_exact(vocab)) {
        softmax_weights(row, 1.0, weights);
        let total: f64 = weights.iter().sum();
        for (sum, &weight) in sums.iter_mut().zip(weights.iter()) {
            *sum += (weight / total) as f32;
        }
    }
}

impl<'m> Stepper<'m> {
    fn new(model: &'m LstmLanguageModel, context: &[u32], streams: usize) -> Self {
        #[cfg(feature = "kernels")]
        if let Some(mut decoder) = decoder(model, streams) {
            let mut tokens = vec![0u32; streams];
            for &id in context {
                tokens.fill(id);
                decoder.step(&tokens);
            }
            return Stepper::Decoder(decoder);
        }
        // The composed steps take their streams from the tokens they are fed.
        let _ = streams;
        Stepper::Composed(Composed {
            model,
            context: context.to_vec(),
            state: None,
            logits: Vec::new(),
        })
    }

    /// Feeds one token per stream; the next-token logits, `[streams, vocab]`.
    fn step(&mut self, tokens: &[u32]) -> &[f32] {
        match self {
            #[cfg(feature = "kernels")]
            Stepper::Decoder(decoder) => decoder.step(tokens),
            Stepper::Composed(composed) => composed.step(tokens),
        }
    }
}

impl Composed<'_> {
    fn step(&mut self, tokens: &[u32]) -> &[f32] {
        let device = self.model.embedding.weight.device();
        // The first step reads the whole prompt as one sequence.
        let context = std::mem::take(&mut self.context);
        let ids: Vec<i32> = tokens
            .iter()
            .flat_map(|&last| context.iter().copied().chain([last]).map(|id| id as i32))
            .collect();
        let shape = [tokens.len(), context.len() + 1];
        let inputs = Tensor::<2, Int>::from_data(TensorData::new(ids, shape), &device);
        let (logits, state) = self.model.forward(inputs, self.state.take());
        self.state = Some(state);
        let last = logits.narrow(1, context.len(), 1);
        self.logits = last
            .into_data()
            .try_into_vec::<f32>()
            .expect("float logits");
        &self.logits
    }
}

/// The allocation-free decoder of `model`, when its weights live on flex or on a GPU.
#[cfg(feature = "kernels")]
fn decoder(model: &LstmLanguageModel, streams: usize) -> Option<crate::fused::Decoder> {
    use crate::fused::{Decoder, DecoderWeights, LayerTensors};
    let layers: Vec<LayerTensors> = model
        .lstm
        .layers
        .iter()
        .map(|cell| LayerTensors {
            weight_ih: cell.weight_ih.val(),
            weight_hh: cell.weight_hh.val(),
            bias_ih: cell.bias_ih.val(),
            bias_hh: cell.bias_hh.val(),
            multiplicative_integration: cell.multiplicative_integration,
        })
        .collect();
    let weights = DecoderWeights::new(
        model.embedding.weight.val(),
        &layers,
        model.output.weight.val(),
        model.output.bias.as_ref().map(|b| b.val()),
    )?;
    let [cell, hidden] = model.lstm.zoneout.map(|prob| prob as f32);
    let weights = weights.with_zoneout(cell, hidden);
    Some(Decoder::new(std::sync::Arc::new(weights), streams))
}

/// Generates `config.length` tokens for each of `num_streams` independent streams that all
/// continue `prompt` (see [`TokenGenerator`]); `on_step` receives the tokens just drawn, one per
/// stream, as they come. It draws on the calling thread; inside [`crate::on_decoder_threads`]
/// the CPU decoder's steps cost less.
pub fn generate(
    model: &LstmLanguageModel,
    prompt: &[u32],
    num_streams: usize,
    config: &GenerationConfig,
    mut on_step: impl FnMut(&[u32]),
) -> Result<(), GenerationError> {
    let mut generator = TokenGenerator::new(model, prompt, num_streams, &config.sampling)?;
    for _ in 0..config.length {
        on_step(generator.next_tokens());
    }
    Ok(())
}

/// The characters one stream draws after a text prompt, without end: take as many as wanted.
pub struct CharStream<'m> {
    tokens: TokenGenerator<'m>,
    vocab: &'m CharVocab,
}

impl<'m> CharStream<'m> {
    /// The stream continuing `prompt`, whose characters must be in `vocab`.
    pub fn new(
        model: &'m LstmLanguageModel,
        vocab: &'m CharVocab,
        prompt: &str,
        sampling: &SamplingConfig,
    ) -> Result<Self, GenerationError> {
        let ids = vocab.encode(prompt).map_err(GenerationError::Prompt)?;
        Ok(Self {
            tokens: TokenGenerator::new(model, &ids, 1, sampling)?,
            vocab,
        })
    }
}

impl Iterator for CharStream<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let id = self.tokens.next_tokens()[0];
        Some(
            self.vocab
                .char(id)
                .expect("the model's ids are the vocabulary's"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::language_model::LstmLanguageModelConfig;
    use burn::module::Module;
    use burn::tensor::Device;

    fn model(layers: usize, vocab: usize, device: &Device) -> LstmLanguageModel {
        config(layers, vocab).init(device)
    }

    fn config(layers: usize, vocab: usize) -> LstmLanguageModelConfig {
        LstmLanguageModelConfig::new(vocab)
            .with_embedding_dim(6)
            .with_hidden_dim(40)
            .with_num_layers(layers)
    }

    /// Step by step, several streams with different tokens get the logits the whole-sequence
    /// forward gives at each position, for stacks of one to three layers and a vocabulary larger
    /// and smaller than the batch, with and without zoneout and multiplicative integration, on
    /// every SIMD path; on our
    /// kernel's paths a stream alone gets the same bits as in the batch (the tiles guarantee
    /// it; the portable path's `gemm` crate does not).
    #[cfg(feature = "kernels")]
    #[test]
    fn decoder_steps_match_the_sequence_forward_on_every_path() {
        use crate::simd::Simd;
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(9);
        let models = [
            (1, 5, 0.0, false),
            (2, 11, 0.0, false),
            (3, 70, 0.0, false),
            (2, 11, 0.3, false),
            (2, 11, 0.0, true),
            (2, 70, 0.3, true),
        ];
        for (layers, vocab, zoneout, multiplicative) in models {
            let model = config(layers, vocab)
                .with_zoneout_cell(zoneout)
                .with_zoneout_hidden(zoneout / 2.0)
                .with_multiplicative_integration(multiplicative)
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
            for simd in Simd::supported() {
                simd.run(|| {
                    let mut batch = decoder(&model, streams).expect("a flex model");
                    let mut alone = decoder(&model, 1).expect("a flex model");
                    for t in 0..steps {
                        let tokens: Vec<u32> = (0..streams).map(|s| ids[s * steps + t]).collect();
                        let first = alone.step(&tokens[..1]).to_vec();
                        let logits = batch.step(&tokens);
                        if simd != Simd::Portable {
                            assert_eq!(&logits[..vocab], &first[..], "{simd:?}: stream 0 alone");
                        }
                        for s in 0..streams {
                            let at = (s * steps + t) * vocab;
                            for (k, (&got, &want)) in logits[s * vocab..(s + 1) * vocab]
                                .iter()
                                .zip(&expected[at..at + vocab])
                                .enumerate()
                            {
                                assert!(
                                    (got - want).abs() <= 1e-5,
                                    "{simd:?}, {layers} layers, zoneout {zoneout}, \
                                     multiplicative {multiplicative}, stream {s}, step {t}, \
                                     logit {k}: {got} vs {want}"
                                );
                            }
                        }
                    }
                });
            }
        }
    }

    /// The composed steps (a model off plain flex: here, with autodiff) draw what the decoder
    /// draws, stream 0 of a batch draws what a single stream draws, and bad requests are
    /// errors.
    #[test]
    fn every_stepper_draws_the_same_tokens() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(2);
        let plain = model(2, 9, &device);
        let tracked = plain.clone().fork(&device.clone().autodiff());
        let config = GenerationConfig::new()
            .with_length(30)
            .with_sampling(SamplingConfig::new().with_seed(5));
        let draw = |model: &LstmLanguageModel, streams: usize| {
            let mut drawn = Vec::new();
            generate(model, &[1, 4, 2], streams, &config, |ids| {
                drawn.push(ids[0])
            })
            .unwrap();
            drawn
        };
        let single = draw(&plain, 1);
        assert_eq!(draw(&plain, 4), single, "stream 0 of four");
        assert_eq!(draw(&tracked, 1), single, "composed steps");
        let err = |prompt: &[u32], streams| {
            TokenGenerator::new(&plain, prompt, streams, &config.sampling).err()
        };
        assert!(matches!(err(&[], 1), Some(GenerationError::EmptyPrompt)));
        assert!(matches!(err(&[1], 0), Some(GenerationError::NoStreams)));
        assert!(matches!(
            err(&[9], 1),
            Some(GenerationError::TokenOutOfRange { token: 9, .. })
        ));
    }

    /// A loop run by [`crate::on_decoder_threads`] runs on another thread (with the kernels, a
    /// worker of their pool, where the decoder's steps need no handoff) and draws the tokens the
    /// same loop draws on this thread.
    #[test]
    fn a_loop_on_the_decoder_threads_draws_what_it_draws_here() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(3);
        let model = model(2, 9, &device);
        let sampling = SamplingConfig::new().with_seed(11);
        let draw = || {
            let mut generator = TokenGenerator::new(&model, &[2, 7], 3, &sampling).unwrap();
            let drawn: Vec<Vec<u32>> = (0..25).map(|_| generator.next_tokens().to_vec()).collect();
            (drawn, std::thread::current().id())
        };
        let (here, this_thread) = draw();
        let (there, that_thread) = crate::on_decoder_threads(draw);
        assert_eq!(there, here);
        assert_eq!(this_thread, std::thread::current().id());
        if cfg!(feature = "kernels") {
            assert_ne!(that_thread, this_thread, "the loop ran on the pool");
        }
    }

    #[test]
    fn probabilities_are_added_row_by_row() {
        let mut sums = vec![0.5, 0.0, 0.0, 0.0];
        let three = 3f32.ln();
        add_probabilities(&mut sums, &[0.0, three, three, 0.0], 2, &mut Vec::new());
        for (got, want) in sums.iter().zip([0.75, 0.75, 0.75, 0.25]) {
            assert!((got - want).abs() < 1e-6, "{sums:?}");
        }
    }

    /// The greedy continuation of `prompt` by the mean of `models`' probabilities, each read
    /// off the model's whole-sequence forward (in f64 on the host).
    fn greedy_by_mean(models: &[&LstmLanguageModel], prompt: &[u32], steps: usize) -> Vec<u32> {
        let device = models[0].embedding.weight.device();
        let vocab = models[0].vocab_size();
        let mut tokens = prompt.to_vec();
        for _ in 0..steps {
            let ids: Vec<i32> = tokens.iter().map(|&id| id as i32).collect();
            let len = ids.len();
            let inputs = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device);
            let mut mean = vec![0.0f64; vocab];
            for model in models {
                let (logits, _) = model.forward(inputs.clone(), None);
                let last: Vec<f32> = logits
                    .narrow(1, len - 1, 1)
                    .into_data()
                    .try_to_vec()
                    .unwrap();
                let total: f64 = last.iter().map(|&x| (x as f64).exp()).sum();
                for (m, &x) in mean.iter_mut().zip(&last) {
                    *m += (x as f64).exp() / total / models.len() as f64;
                }
            }
            let best = (0..vocab)
                .max_by(|&i, &j| mean[i].total_cmp(&mean[j]))
                .unwrap();
            tokens.push(best as u32);
        }
        tokens.split_off(prompt.len())
    }

    /// Greedy decoding of an ensemble picks, at every step, the token of highest mean
    /// probability, for one stream and for stream 0 of three; here that differs from what
    /// either model picks alone.
    #[test]
    fn an_ensemble_draws_from_the_mean_of_its_models_probabilities() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        // Untrained models often agree; with these weights the mixture's path is its own.
        device.seed(9);
        let (a, b) = (model(2, 9, &device), model(1, 9, &device));
        let prompt = [1u32, 4, 2];
        let expected = greedy_by_mean(&[&a, &b], &prompt, 12);
        assert_ne!(expected, greedy_by_mean(&[&a], &prompt, 12));
        assert_ne!(expected, greedy_by_mean(&[&b], &prompt, 12));
        let greedy = SamplingConfig::new().with_temperature(0.0);
        for streams in [1, 3] {
            let mut generator =
                TokenGenerator::ensemble(&[&a, &b], &prompt, streams, &greedy).unwrap();
            let drawn: Vec<u32> = (0..12).map(|_| generator.next_tokens()[0]).collect();
            assert_eq!(drawn, expected, "{streams} streams");
        }
    }

    /// Two copies of one model mix to that model's own distribution.
    #[test]
    fn an_ensemble_of_one_model_twice_draws_what_the_model_draws() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(6);
        let model = model(2, 9, &device);
        let sampling = SamplingConfig::new().with_seed(3).with_top_k(5);
        let draw = |models: &[&LstmLanguageModel]| {
            let mut generator = TokenGenerator::ensemble(models, &[3, 1], 2, &sampling).unwrap();
            (0..30)
                .map(|_| generator.next_tokens().to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(&[&model, &model]), draw(&[&model]));
    }
}
