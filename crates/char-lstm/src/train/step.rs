//! Training and validation steps for burn-train's `Learner`.

use burn::tensor::Tensor;
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::batch::SequenceBatch;
use crate::network::language_model::LstmLanguageModel;
use crate::network::state::LstmState;

impl LstmLanguageModel {
    /// The loss and logits of a batch, from zero initial state, as burn-train's metrics read
    /// them.
    pub fn forward_sequence(&self, batch: SequenceBatch) -> SequenceOutput {
        self.forward_sequence_from(batch, None).0
    }

    /// [`forward_sequence`](Self::forward_sequence) from `state` (per layer; `None` for
    /// zeros), with every layer's final state.
    pub fn forward_sequence_from(
        &self,
        batch: SequenceBatch,
        state: Option<Vec<LstmState>>,
    ) -> (SequenceOutput, Vec<LstmState>) {
        let [batch_size, seq_len] = batch.targets.dims();
        let (loss, logits, last) = self.loss(batch.inputs, batch.targets.clone(), state);
        let logits: Tensor<3> = logits.reshape([batch_size, seq_len, self.vocab_size()]);
        (SequenceOutput::new(loss, logits, None, batch.targets), last)
    }

    /// A training step (forward and backward) from `state`, with the final state detached
    /// from the graph: the next batch continues from it but backpropagates no further than
    /// its own steps (truncated backpropagation through time, as char-rnn trains).
    pub fn stateful_step(
        &self,
        batch: SequenceBatch,
        state: Option<Vec<LstmState>>,
    ) -> (TrainOutput<SequenceOutput>, Vec<LstmState>) {
        self.weighted_step(batch, state, 1.0)
    }

    /// [`stateful_step`](Self::stateful_step) with the gradients of `weight` times the loss
    /// (the output keeps the loss itself): a shard of a batch split over several devices
    /// weighs its mean loss by its share of the batch, so that the shards' gradients sum to
    /// the whole batch's.
    pub fn weighted_step(
        &self,
        batch: SequenceBatch,
        state: Option<Vec<LstmState>>,
        weight: f64,
    ) -> (TrainOutput<SequenceOutput>, Vec<LstmState>) {
        let (output, last) = self.forward_sequence_from(batch, state);
        let grads = if weight == 1.0 {
            output.loss.backward()
        } else {
            (output.loss.clone() * weight).backward()
        };
        let last = last.into_iter().map(LstmState::detach).collect();
        (TrainOutput::new(self, grads, output), last)
    }
}

impl TrainStep for LstmLanguageModel {
    type Input = SequenceBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: SequenceBatch) -> TrainOutput<SequenceOutput> {
        self.stateful_step(batch, None).0
    }
}

impl InferenceStep for LstmLanguageModel {
    type Input = SequenceBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: SequenceBatch) -> SequenceOutput {
        self.forward_sequence(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::language_model::LstmLanguageModelConfig;
    use burn::tensor::{Device, Int, TensorData};

    #[test]
    fn the_carried_state_is_detached_and_continues_the_sequence() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex().autodiff();
        device.seed(3);
        let lm = LstmLanguageModelConfig::new(5)
            .with_embedding_dim(3)
            .with_hidden_dim(4)
            .init(&device);
        let ids =
            |v: [i32; 6]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [2, 3]), &device);
        let first = SequenceBatch {
            inputs: ids([0, 1, 2, 3, 4, 0]),
            targets: ids([1, 2, 3, 4, 0, 1]),
        };
        let second = SequenceBatch {
            inputs: ids([3, 1, 4, 1, 0, 2]),
            targets: ids([1, 4, 1, 0, 2, 2]),
        };

        let (_, carried) = lm.stateful_step(first.clone(), None);
        for state in &carried {
            assert!(
                !state.hidden.is_require_grad() && !state.cell.is_require_grad(),
                "detached"
            );
        }
        let (stepped, _) = lm.stateful_step(second.clone(), Some(carried.clone()));
        // The same loss as reading both batches as one sequence of six steps, second half.
        let whole = |a: Tensor<2, Int>, b: Tensor<2, Int>| Tensor::cat(vec![a, b], 1);
        let (_, logits, _) = lm.loss(
            whole(first.inputs, second.inputs),
            whole(first.targets, second.targets.clone()),
            None,
        );
        let second_half = logits.reshape([2, 6, 5]).narrow(1, 3, 3).reshape([6, 5]);
        let expected = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&device)
            .forward(second_half, second.targets.reshape([6]))
            .into_scalar::<f64>();
        let loss = stepped.item.loss.into_scalar::<f64>();
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }
}
