//! Training and validation steps for burn-train's `Learner`, with PyTorch's global
//! gradient-norm clipping.

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::ParamId;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use burn::train::{InferenceStep, SequenceOutput, TrainOutput, TrainStep};

use crate::batch::SequenceBatch;
use crate::model::LstmLanguageModel;

/// Settings that shape a training step but are not weights (not saved with them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingOptions {
    /// Scale the gradients so that their global L2 norm (over every parameter at once) is at
    /// most this, like PyTorch's `clip_grad_norm_`; `None` leaves them as they are.
    pub grad_clip_norm: Option<f64>,
}

impl LstmLanguageModel {
    /// The loss and logits of a batch, from zero initial state, as burn-train's metrics read
    /// them.
    pub fn forward_sequence(&self, batch: SequenceBatch) -> SequenceOutput {
        let [batch_size, seq_len] = batch.targets.dims();
        let (loss, logits, _) = self.loss(batch.inputs, batch.targets.clone(), None);
        let logits: Tensor<3> = logits.reshape([batch_size, seq_len, self.vocab_size()]);
        SequenceOutput::new(loss, logits, None, batch.targets)
    }

    /// The same model with these training options.
    pub fn with_training_options(mut self, options: TrainingOptions) -> Self {
        self.training = options;
        self
    }

    /// The ids of every parameter, split by rank.
    fn param_ids(&self) -> (Vec<ParamId>, Vec<ParamId>) {
        let mut matrices = vec![self.embedding.weight.id, self.output.weight.id];
        let mut vectors: Vec<ParamId> = self.output.bias.iter().map(|b| b.id).collect();
        for layer in &self.lstm.layers {
            matrices.extend([layer.weight_ih.id, layer.weight_hh.id]);
            vectors.extend([layer.bias_ih.id, layer.bias_hh.id]);
        }
        (matrices, vectors)
    }

    /// The global L2 norm of the gradients, over every parameter at once.
    pub fn grad_norm(&self, grads: &GradientsParams) -> f64 {
        let (matrices, vectors) = self.param_ids();
        let squares = matrices
            .iter()
            .filter_map(|&id| grads.get::<2>(id))
            .map(|g| g.powi_scalar(2).sum())
            .chain(
                vectors
                    .iter()
                    .filter_map(|&id| grads.get::<1>(id))
                    .map(|g| g.powi_scalar(2).sum()),
            );
        let total = Tensor::cat(squares.collect(), 0).sum();
        total.into_scalar::<f64>().sqrt()
    }

    /// Scales the gradients by `max_norm / (norm + 1e-6)` when their global norm exceeds
    /// `max_norm`, exactly as PyTorch's `clip_grad_norm_` does.
    pub fn clip_grad_norm(&self, mut grads: GradientsParams, max_norm: f64) -> GradientsParams {
        let norm = self.grad_norm(&grads);
        let coef = max_norm / (norm + 1e-6);
        if coef >= 1.0 {
            return grads;
        }
        let (matrices, vectors) = self.param_ids();
        for id in matrices {
            if let Some(g) = grads.remove::<2>(id) {
                grads.register(id, g * coef);
            }
        }
        for id in vectors {
            if let Some(g) = grads.remove::<1>(id) {
                grads.register(id, g * coef);
            }
        }
        grads
    }
}

impl TrainStep for LstmLanguageModel {
    type Input = SequenceBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: SequenceBatch) -> TrainOutput<SequenceOutput> {
        let output = self.forward_sequence(batch);
        let grads = output.loss.backward();
        TrainOutput::new(self, grads, output)
    }

    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        let grads = match self.training.grad_clip_norm {
            Some(max_norm) => self.clip_grad_norm(grads, max_norm),
            None => grads,
        };
        optim.step(lr, self, grads)
    }
}

impl InferenceStep for LstmLanguageModel {
    type Input = SequenceBatch;
    type Output = SequenceOutput;

    fn step(&self, batch: SequenceBatch) -> SequenceOutput {
        self.forward_sequence(batch)
    }
}
