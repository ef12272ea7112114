//! An exponential moving average of the weights (`training.ema_decay`): updated after every
//! optimizer step, validated after every epoch beside the trained weights (the better of the
//! two becomes `model.bpk`), and saved with every epoch and step checkpoint as
//! `average-<key>.bpk`, so a resumed run averages on exactly as an uninterrupted one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::store::ModuleRecord;
use burn::tensor::Tensor;
use burn::train::checkpoint::Checkpointer;
use char_lstm::LstmLanguageModel;

use crate::run::run_dir::{checkpoint_keys, keys_of};
use crate::training::checkpointer::AtomicCheckpointer;

/// The checkpoint files' name.
const NAME: &str = "average";

/// The average of the weights so far, without autodiff; empty before the first step or when
/// averaging is off.
#[derive(Clone)]
pub struct WeightAverage {
    decay: f64,
    average: Option<LstmLanguageModel>,
}

impl WeightAverage {
    /// Averaging with `decay` (0 turns it off).
    pub fn new(decay: f64) -> Self {
        Self {
            decay,
            average: None,
        }
    }

    /// Whether averaging is on.
    fn is_on(&self) -> bool {
        self.decay > 0.0
    }

    /// The averaged weights, once there are any.
    pub fn model(&self) -> Option<&LstmLanguageModel> {
        self.average.as_ref()
    }

    /// The share of the newest weights after `step` optimizer steps of the run: `1 - min(decay,
    /// (1 + step) / (10 + step))`, so that the first steps' weights, far from where training
    /// is going, fade fast (the warm-up of TensorFlow's `ExponentialMovingAverage`).
    fn share(&self, step: usize) -> f64 {
        let warm_up = (1 + step) as f64 / (10 + step) as f64;
        1.0 - self.decay.min(warm_up)
    }

    /// Folds in `model`'s weights after `step` steps.
    pub fn update(&mut self, model: &LstmLanguageModel, step: usize) {
        if !self.is_on() {
            return;
        }
        let current = model.valid();
        self.average = Some(match self.average.take() {
            None => current,
            Some(average) => {
                let mut values = Values::default();
                current.visit(&mut values);
                average.map(&mut Blend {
                    values: values.0,
                    share: self.share(step),
                })
            }
        });
    }

    /// Saves the average as checkpoint `key` in `directory` (nothing when empty), then removes
    /// the averages older than every model checkpoint there, as those go.
    pub fn save(&self, directory: &Path, key: usize) -> Result<()> {
        let Some(average) = &self.average else {
            return Ok(());
        };
        AtomicCheckpointer::new(directory.to_path_buf(), NAME)
            .save(key, average.clone().into_record())
            .with_context(|| {
                format!("cannot save the weight average in {}", directory.display())
            })?;
        let oldest = checkpoint_keys(directory, false)
            .first()
            .copied()
            .unwrap_or(key);
        for old in keys_of(directory, &[NAME], false)
            .into_iter()
            .filter(|&k| k < oldest)
        {
            let _ = std::fs::remove_file(path(directory, old));
        }
        Ok(())
    }

    /// Loads checkpoint `key` from `directory` into a copy of `model` (which gives its shape
    /// and device), when averaging is on.
    pub fn restore(
        &mut self,
        model: &LstmLanguageModel,
        directory: &Path,
        key: usize,
    ) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let record: ModuleRecord = AtomicCheckpointer::new(directory.to_path_buf(), NAME)
            .restore(key)
            .with_context(|| format!("cannot load {}", path(directory, key).display()))?;
        self.average = Some(model.valid().load_record(record));
        Ok(())
    }
}

/// `<directory>/average-<key>.bpk`.
fn path(directory: &Path, key: usize) -> PathBuf {
    directory.join(format!("{NAME}-{key}.bpk"))
}

/// Every float parameter's value by id, flat.
#[derive(Default)]
struct Values(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let len = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([len]));
    }
}

/// `average * (1 - share) + current * share` for every parameter.
struct Blend {
    values: HashMap<ParamId, Tensor<1>>,
    share: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let current = self
            .values
            .remove(&param.id)
            .expect("the average is a copy of the model, with its parameter ids");
        let share = self.share;
        param.map(|average| {
            let current = current.reshape(average.dims());
            average * (1.0 - share) + current * share
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use char_lstm::LstmLanguageModelConfig;

    /// The flat values of the output layer's bias.
    fn bias(model: &LstmLanguageModel) -> Vec<f32> {
        let bias = model.output.bias.as_ref().unwrap().val();
        bias.into_data().try_to_vec().unwrap()
    }

    /// A model whose output bias is `value` everywhere (the other weights as `base`'s).
    fn with_bias(base: &LstmLanguageModel, value: f32) -> LstmLanguageModel {
        let mut model = base.clone();
        let bias = model.output.bias.take().unwrap();
        model.output.bias = Some(bias.map(|b| b.zeros_like() + value));
        model
    }

    /// Three updates give the hand-computed average with the warm-up shares (steps 1, 2, 3:
    /// the first weights, then shares 1 - 3/12 and 1 - 4/13 under a decay of 0.9); the average
    /// survives a save and restore, and only averages at least as new as the oldest model
    /// checkpoint are kept.
    #[test]
    fn the_average_follows_the_warm_up_shares_and_survives_a_checkpoint() {
        let _rng = char_lstm_kernels::testing::device_rng();
        let device = Device::flex();
        let base = LstmLanguageModelConfig::new(3)
            .with_embedding_dim(2)
            .with_hidden_dim(4)
            .with_num_layers(1)
            .init(&device);
        let mut average = WeightAverage::new(0.9);
        for (step, value) in [(1, 1.0), (2, 2.0), (3, 4.0)] {
            average.update(&with_bias(&base, value), step);
        }
        let after_two = 1.0 * 0.25 + 2.0 * 0.75;
        let expected = after_two * (4.0 / 13.0) + 4.0 * (9.0 / 13.0);
        for value in bias(average.model().unwrap()) {
            assert!(
                (value as f64 - expected).abs() < 1e-6,
                "{value} vs {expected}"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model-2.bpk"), b"").unwrap();
        std::fs::write(path(dir.path(), 1), b"").unwrap();
        average.save(dir.path(), 3).unwrap();
        assert_eq!(keys_of(dir.path(), &[NAME], false), vec![3]);
        let mut restored = WeightAverage::new(0.9);
        restored.restore(&base, dir.path(), 3).unwrap();
        assert_eq!(
            bias(restored.model().unwrap()),
            bias(average.model().unwrap())
        );

        let mut off = WeightAverage::new(0.0);
        off.update(&base, 1);
        assert!(off.model().is_none());
    }
}
