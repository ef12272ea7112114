//! Generating text token by token from a trained model.

use burn::tensor::{Int, Tensor, TensorData};

use crate::decoder::{Decoder, DecoderWeights};
use crate::model::LstmLanguageModel;
use crate::sampling::{SamplingConfig, SamplingError};

/// Generates `length` tokens for each of `num_streams` independent streams that all start
/// from `prompt`.
///
/// On flex, a decoder that holds the weights in plain buffers runs the steps and allocates
/// nothing per token; elsewhere the prompt is read in one pass over the sequence. Each step
/// feeds every stream's last token and samples the next one, with stream `s` seeded by
/// `config.seed + s` (so stream 0 of a batched run is the same text as a single-stream run with
/// the same seed). `on_step` receives the tokens just drawn, one per stream, as they come. Run
/// it on a device without autodiff: nothing here needs gradients.
///
/// # Panics
/// If `prompt` is empty or `num_streams` is zero.
pub fn generate(
    model: &LstmLanguageModel,
    prompt: &[u32],
    num_streams: usize,
    length: usize,
    config: &SamplingConfig,
    mut on_step: impl FnMut(&[u32]),
) -> Result<(), SamplingError> {
    assert!(
        !prompt.is_empty(),
        "generation needs a prompt of at least one token"
    );
    assert!(num_streams > 0, "generation needs at least one stream");
    let mut samplers = (0..num_streams as u64)
        .map(|stream| config.init(stream))
        .collect::<Result<Vec<_>, _>>()?;
    let vocab_size = model.vocab_size();
    if let Some(weights) = DecoderWeights::new(model) {
        let (last, context) = prompt.split_last().expect("checked above");
        let mut decoder = Decoder::new(&weights, num_streams);
        let mut tokens = vec![0u32; num_streams];
        for &id in context {
            tokens.fill(id);
            decoder.step(&tokens);
        }
        tokens.fill(*last);
        for _ in 0..length {
            let logits = decoder.step(&tokens);
            for (stream, sampler) in samplers.iter_mut().enumerate() {
                tokens[stream] =
                    sampler.sample(&logits[stream * vocab_size..(stream + 1) * vocab_size]);
            }
            on_step(&tokens);
        }
        return Ok(());
    }

    let device = model.embedding.weight.device();

    let prompt_ids: Vec<i32> = (0..num_streams)
        .flat_map(|_| prompt.iter().map(|&id| id as i32))
        .collect();
    let prompt = Tensor::<2, Int>::from_data(
        TensorData::new(prompt_ids, [num_streams, prompt.len()]),
        &device,
    );
    let (logits, mut state) = model.forward(prompt, None);
    let [_, prompt_len, _] = logits.dims();
    let mut logits = logits.narrow(1, prompt_len - 1, 1).squeeze_dim::<2>(1);

    let mut drawn = vec![0u32; num_streams];
    let mut fed = vec![0i32; num_streams];
    for step in 0..length {
        let values = logits.into_data();
        let values = values.as_slice::<f32>().expect("float logits");
        for (stream, sampler) in samplers.iter_mut().enumerate() {
            drawn[stream] = sampler.sample(&values[stream * vocab_size..(stream + 1) * vocab_size]);
            fed[stream] = drawn[stream] as i32;
        }
        on_step(&drawn);
        if step + 1 == length {
            break;
        }
        let tokens =
            Tensor::<1, Int>::from_data(TensorData::new(fed.clone(), [num_streams]), &device);
        let (next, next_state) = model.step(tokens, Some(state));
        logits = next;
        state = next_state;
    }
    Ok(())
}
