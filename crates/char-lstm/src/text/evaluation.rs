//! Held-out loss of a trained model, or of an ensemble of them, over a whole text.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::network::language_model::LstmLanguageModel;
use crate::network::state::LstmState;

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

    fn add(&mut self, nats: f64, predictions: usize) {
        self.total_nats += nats;
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
    evaluate_ensemble_stream(&[model], tokens, chunk_len)
}

/// [`evaluate_stream`] of an ensemble: each token's probability is the mean of the models'
/// probabilities for it, each model carrying its own state. One model is [`evaluate_stream`].
///
/// # Panics
/// If `models` is empty or its models' vocabularies differ in size, if `tokens` has fewer than 2
/// tokens, or if `chunk_len` is 0.
pub fn evaluate_ensemble_stream(
    models: &[&LstmLanguageModel],
    tokens: &[u32],
    chunk_len: usize,
) -> Evaluation {
    assert!(
        tokens.len() >= 2 && chunk_len > 0,
        "stream evaluation needs 2 tokens and a chunk"
    );
    let device = first_device(models);
    let mut evaluation = Evaluation {
        total_nats: 0.0,
        predictions: 0,
    };
    let mut states = vec![None; models.len()];
    for start in (0..tokens.len() - 1).step_by(chunk_len) {
        let len = chunk_len.min(tokens.len() - 1 - start);
        let inputs = ids(&[&tokens[start..start + len]], &device);
        let targets = ids(&[&tokens[start + 1..start + 1 + len]], &device);
        let (nats, next) = ensemble_nats(models, inputs, targets, states);
        evaluation.add(nats, len);
        states = next.into_iter().map(Some).collect();
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
    evaluate_ensemble_windows(&[model], tokens, seq_len, batch_size)
}

/// [`evaluate_windows`] of an ensemble, each token's probability being the mean of the models'.
/// One model is [`evaluate_windows`].
///
/// # Panics
/// As [`evaluate_windows`], and if `models` is empty or its models' vocabularies differ in size.
pub fn evaluate_ensemble_windows(
    models: &[&LstmLanguageModel],
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
    let device = first_device(models);
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
        let inputs = ids(&inputs, &device);
        let targets = ids(&targets, &device);
        let (nats, _) = ensemble_nats(models, inputs, targets, vec![None; models.len()]);
        evaluation.add(nats, batch.len() * seq_len);
    }
    evaluation
}

/// The device of the first model, once the ensemble is checked to be one.
fn first_device(models: &[&LstmLanguageModel]) -> Device {
    let first = models.first().expect("an ensemble of at least one model");
    assert!(
        models.iter().all(|m| m.vocab_size() == first.vocab_size()),
        "an ensemble's models predict over one vocabulary"
    );
    first.embedding.weight.device()
}

/// The summed cross-entropy of `targets` (`[rows, len]`) under the ensemble's mean probability
/// after `inputs`, from each model's `states`, and each model's final state. A single model's
/// is its own fused loss.
fn ensemble_nats(
    models: &[&LstmLanguageModel],
    inputs: Tensor<2, Int>,
    targets: Tensor<2, Int>,
    states: Vec<Option<Vec<LstmState>>>,
) -> (f64, Vec<Vec<LstmState>>) {
    let [rows, len] = targets.dims();
    let predictions = (rows * len) as f64;
    if let [model] = models {
        let state = states.into_iter().next().flatten();
        let (loss, _, next) = model.loss(inputs, targets, state);
        return (loss.into_scalar::<f64>() * predictions, vec![next]);
    }
    let (log_probs, next): (Vec<Tensor<3>>, Vec<Vec<LstmState>>) = models
        .iter()
        .zip(states)
        .map(|(model, state)| {
            let (logits, next) = model.forward(inputs.clone(), state);
            (log_softmax(logits, 2), next)
        })
        .unzip();
    // log(mean_m p_m) = logsumexp_m(log p_m) - ln M, with the largest term taken out first.
    let stacked = Tensor::stack::<4>(log_probs, 0);
    let largest = stacked.clone().max_dim(0);
    let mixture = (stacked - largest.clone()).exp().sum_dim(0).log() + largest;
    let chosen = mixture.gather(3, targets.reshape([1, rows, len, 1]));
    let log_members = (models.len() as f64).ln();
    let nats = predictions * log_members - chosen.sum().into_scalar::<f64>();
    (nats, next)
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
        seeded_model(5)
    }

    fn seeded_model(seed: u64) -> LstmLanguageModel {
        let device = Device::flex();
        device.seed(seed);
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

    /// Each prediction's log-probability under `model`, reading `tokens` as one sequence in one
    /// pass, in f64 on the host.
    fn log_probs(model: &LstmLanguageModel, tokens: &[u32]) -> Vec<f64> {
        let device = model.embedding.weight.device();
        let inputs = ids(&[&tokens[..tokens.len() - 1]], &device);
        let (logits, _) = model.forward(inputs, None);
        let logits = logits.into_data().try_to_vec::<f32>().unwrap();
        let vocab = model.vocab_size();
        logits
            .chunks(vocab)
            .zip(&tokens[1..])
            .map(|(row, &target)| {
                let largest = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64));
                let sum: f64 = row.iter().map(|&x| (x as f64 - largest).exp()).sum();
                row[target as usize] as f64 - largest - sum.ln()
            })
            .collect()
    }

    #[test]
    fn an_ensemble_predicts_the_mean_of_its_models_probabilities() {
        let _rng = crate::test_support::device_rng();
        let (a, b) = (seeded_model(5), seeded_model(9));
        let (lp_a, lp_b) = (log_probs(&a, &TOKENS), log_probs(&b, &TOKENS));
        let expected: f64 = lp_a
            .iter()
            .zip(&lp_b)
            .map(|(x, y)| -((x.exp() + y.exp()) / 2.0).ln())
            .sum();
        for chunk in [1, 3, 7, 100] {
            let ensemble = evaluate_ensemble_stream(&[&a, &b], &TOKENS, chunk);
            assert_eq!(ensemble.predictions, TOKENS.len() - 1);
            assert!(
                (ensemble.total_nats - expected).abs() < 1e-4,
                "chunk {chunk}: {} vs {expected}",
                ensemble.total_nats
            );
        }
        // Mixing never loses to the models' mean loss (the logarithm is concave), and here it
        // is strictly better: the two models differ.
        let members = (evaluate_stream(&a, &TOKENS, 100).total_nats
            + evaluate_stream(&b, &TOKENS, 100).total_nats)
            / 2.0;
        assert!(expected < members - 1e-3, "{expected} vs {members}");
    }

    #[test]
    fn an_ensemble_of_one_model_twice_is_that_model() {
        let _rng = crate::test_support::device_rng();
        let lm = model();
        let pairs = [
            (
                evaluate_ensemble_stream(&[&lm, &lm], &TOKENS, 4),
                evaluate_stream(&lm, &TOKENS, 4),
            ),
            (
                evaluate_ensemble_windows(&[&lm, &lm], &TOKENS, 5, 3),
                evaluate_windows(&lm, &TOKENS, 5, 3),
            ),
        ];
        for (twice, once) in pairs {
            assert_eq!(twice.predictions, once.predictions);
            assert!(
                (twice.total_nats - once.total_nats).abs() < 1e-4,
                "{} vs {}",
                twice.total_nats,
                once.total_nats
            );
        }
    }

    #[test]
    fn ensemble_windows_are_independent_windows_of_the_ensemble() {
        let _rng = crate::test_support::device_rng();
        let (a, b) = (seeded_model(5), seeded_model(9));
        let batched = evaluate_ensemble_windows(&[&a, &b], &TOKENS, 5, 3);
        assert_eq!(batched.predictions, 4 * 5);
        let one_by_one: f64 = [0, 5, 10, 15]
            .iter()
            .map(|&s| evaluate_ensemble_stream(&[&a, &b], &TOKENS[s..s + 6], 100).total_nats)
            .sum();
        assert!(
            (batched.total_nats - one_by_one).abs() < 1e-4,
            "{} vs {one_by_one}",
            batched.total_nats
        );
    }
}
