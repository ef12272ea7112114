//! Held-out loss of a trained model over a whole text.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::network::language_model::LstmLanguageModel;

/// The summed next-token cross-entropy over a text and how many predictions it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// The sum of every prediction's cross-entropy, in nats.
    pub total_nats: f64,
    /// The number of predicted tokens.
    pub predictions: usize,
}

impl Evaluation {
    /// The mean loss, in nats per token.
    pub fn mean_loss(&self) -> f64 {
        self.total_nats / self.predictions as f64
    }

    /// The mean loss in bits per token (bits per character for a character model).
    pub fn bits_per_token(&self) -> f64 {
        self.mean_loss() / std::f64::consts::LN_2
    }

    /// `exp(mean loss)`.
    pub fn perplexity(&self) -> f64 {
        self.mean_loss().exp()
    }

    fn add(&mut self, mean_loss: f64, predictions: usize) {
        self.total_nats += mean_loss * predictions as f64;
        self.predictions += predictions;
    }
}

/// The loss of predicting every token of `tokens` from the ones before it, reading the text as
/// one sequence in chunks of `chunk_len` with the state carried from chunk to chunk: the
/// honest measure of a language model. Every token but the first is predicted.
///
/// # Panics
/// If `tokens` has fewer than 2 tokens or `chunk_len` is 0.
pub fn evaluate_stream(model: &LstmLanguageModel, tokens: &[u32], chunk_len: usize) -> Evaluation {
    assert!(
        tokens.len() >= 2 && chunk_len > 0,
        "stream evaluation needs 2 tokens and a chunk"
    );
    let device = model.embedding.weight.device();
    let mut evaluation = Evaluation {
        total_nats: 0.0,
        predictions: 0,
    };
    let mut state = None;
    for start in (0..tokens.len() - 1).step_by(chunk_len) {
        let len = chunk_len.min(tokens.len() - 1 - start);
        let inputs = ids(&[&tokens[start..start + len]], &device);
        let targets = ids(&[&tokens[start + 1..start + 1 + len]], &device);
        let (loss, _, next) = model.loss(inputs, targets, state);
        evaluation.add(loss.into_scalar::<f64>(), len);
        state = Some(next);
    }
    evaluation
}

/// The loss over non-overlapping windows of `seq_len` tokens, each from a zero state, the way
/// training sees the text; windows start every `seq_len` tokens as the PyTorch reference's
/// `range(0, len - seq_len - 1, seq_len)` does (a text of exactly `seq_len + 1` tokens is the
/// one window that training would cut from it), and are read `batch_size` at a time.
///
/// # Panics
/// If `tokens` is shorter than `seq_len + 1` or `seq_len` or `batch_size` is 0.
pub fn evaluate_windows(
    model: &LstmLanguageModel,
    tokens: &[u32],
    seq_len: usize,
    batch_size: usize,
) -> Evaluation {
    assert!(
        seq_len > 0 && batch_size > 0,
        "window evaluation needs a length and a batch"
    );
    assert!(
        tokens.len() > seq_len,
        "window evaluation needs one whole window"
    );
    let device = model.embedding.weight.device();
    let mut starts: Vec<usize> = (0..tokens.len() - seq_len - 1).step_by(seq_len).collect();
    if starts.is_empty() {
        starts.push(0);
    }
    let mut evaluation = Evaluation {
        total_nats: 0.0,
        predictions: 0,
    };
    for batch in starts.chunks(batch_size) {
        let inputs: Vec<&[u32]> = batch.iter().map(|&s| &tokens[s..s + seq_len]).collect();
        let targets: Vec<&[u32]> = batch
            .iter()
            .map(|&s| &tokens[s + 1..s + 1 + seq_len])
            .collect();
        let (loss, _, _) = model.loss(ids(&inputs, &device), ids(&targets, &device), None);
        evaluation.add(loss.into_scalar::<f64>(), batch.len() * seq_len);
    }
    evaluation
}

/// Rows of equal length as an `Int` tensor `[rows, len]`.
fn ids(rows: &[&[u32]], device: &Device) -> Tensor<2, Int> {
    let values: Vec<i32> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&id| id as i32))
        .collect();
    Tensor::from_data(TensorData::new(values, [rows.len(), rows[0].len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::language_model::LstmLanguageModelConfig;

    fn model() -> LstmLanguageModel {
        let device = Device::flex();
        device.seed(5);
        LstmLanguageModelConfig::new(6)
            .with_embedding_dim(4)
            .with_hidden_dim(5)
            .with_num_layers(2)
            .init(&device)
    }

    const TOKENS: [u32; 23] = [
        0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5, 5, 4, 3, 2, 1, 0, 0, 2, 2, 4, 1,
    ];

    #[test]
    fn stream_loss_does_not_depend_on_how_the_text_is_chunked() {
        let _rng = crate::test_support::device_rng();
        let lm = model();
        let whole = evaluate_stream(&lm, &TOKENS, 100);
        assert_eq!(whole.predictions, TOKENS.len() - 1);
        for chunk in [1, 3, 7, 22] {
            let chunked = evaluate_stream(&lm, &TOKENS, chunk);
            assert_eq!(chunked.predictions, whole.predictions);
            assert!(
                (chunked.mean_loss() - whole.mean_loss()).abs() < 1e-5,
                "chunk {chunk}: {} vs {}",
                chunked.mean_loss(),
                whole.mean_loss()
            );
        }
    }

    #[test]
    fn window_loss_is_the_mean_over_independent_windows() {
        let _rng = crate::test_support::device_rng();
        let lm = model();
        let seq_len = 5;
        let batched = evaluate_windows(&lm, &TOKENS, seq_len, 2);
        // Starts 0, 5, 10, 15 (range(0, 23 - 5 - 1, 5)); each window alone from a zero state.
        assert_eq!(batched.predictions, 4 * seq_len);
        let one_by_one: f64 = [0, 5, 10, 15]
            .iter()
            .map(|&s| evaluate_stream(&lm, &TOKENS[s..s + seq_len + 1], 100).total_nats)
            .sum();
        assert!(
            (batched.total_nats - one_by_one).abs() < 1e-4,
            "{} vs {one_by_one}",
            batched.total_nats
        );
        assert!((batched.bits_per_token() - batched.mean_loss() / 2f64.ln()).abs() < 1e-12);
        assert!((batched.perplexity().ln() - batched.mean_loss()).abs() < 1e-9);
    }
}
