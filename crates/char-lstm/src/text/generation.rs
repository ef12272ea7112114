//! Generating text token by token from a trained model.

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::network::language_model::LstmLanguageModel;
use crate::network::state::LstmState;
use crate::text::sampling::{Sampler, SamplingConfig, SamplingError};
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
pub struct TokenGenerator<'m> {
    stepper: Stepper<'m>,
    samplers: Vec<Sampler>,
    /// The tokens to feed next, one per stream: the prompt's last, then the ones just drawn.
    tokens: Vec<u32>,
    vocab_size: usize,
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
        let vocab_size = model.vocab_size();
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
        let stepper = Stepper::new(model, context, num_streams);
        Ok(Self {
            stepper,
            samplers,
            tokens: vec![last; num_streams],
            vocab_size,
        })
    }

    /// Draws the next token of every stream: `[num_streams]` ids.
    pub fn next_tokens(&mut self) -> &[u32] {
        let Self {
            stepper,
            samplers,
            tokens,
            vocab_size,
        } = self;
        let logits = stepper.step(tokens);
        for (stream, sampler) in samplers.iter_mut().enumerate() {
            tokens[stream] = sampler.sample(&logits[stream * *vocab_size..][..*vocab_size]);
        }
        tokens
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
}
