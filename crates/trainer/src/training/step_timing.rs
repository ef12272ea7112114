//! Training steps timed: the step `trainer train` takes (data-parallel forward and backward,
//! clipping, AdamW) on random windows of the text, as `trainer bench` reports it and as
//! `training.budget` measures the sizes it chooses among.

use std::time::{Duration, Instant};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use char_lstm::train::clip_grad_norm;
use char_lstm::{LstmLanguageModel, SequenceBatch};
use char_lstm_data::{TextWindows, WindowBatcher};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::RunConfig;
use crate::training::data_parallel::DataParallel;

/// One optimizer step per call on `model`, as training takes it with `config`'s batch size,
/// clipping, learning rate and weight decay, on random windows of `windows`; each call waits
/// for its loss, so a call's wall time is the step's.
pub fn training_step<'a>(
    mut model: LstmLanguageModel,
    parallel: &'a DataParallel,
    windows: &'a TextWindows,
    config: &'a RunConfig,
) -> impl FnMut() + 'a {
    let t = &config.training;
    let mut batches = RandomBatches::new(windows, config, parallel.main_device());
    let mut optim = char_lstm::train::adam(t.weight_decay as f32);
    move || {
        let (output, _) = parallel.step(&model, batches.next(), None);
        let grads = match t.grad_clip_norm {
            0.0 => output.grads,
            max_norm => clip_grad_norm(&model, output.grads, max_norm),
        };
        model = optim.step(t.learning_rate, model.clone(), grads);
        let _ = output.item.loss.into_scalar::<f32>();
    }
}

/// Runs `step` `warmup` times untimed, then `steps` times (at least once) timed; the median.
pub fn median_step_time(warmup: usize, steps: usize, mut step: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        step();
    }
    let mut times: Vec<Duration> = (0..steps.max(1))
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Batches of windows drawn uniformly at random, like the PyTorch reference's `speed` mode.
pub struct RandomBatches<'a> {
    windows: &'a TextWindows,
    batch_size: usize,
    rng: StdRng,
    device: Device,
}

impl<'a> RandomBatches<'a> {
    /// `config`'s global batch size of windows, drawn with its seed, on `device`.
    pub fn new(windows: &'a TextWindows, config: &RunConfig, device: &Device) -> Self {
        Self {
            windows,
            batch_size: config.training.global_batch_size(),
            rng: StdRng::seed_from_u64(config.training.seed),
            device: device.clone(),
        }
    }

    /// The next batch.
    pub fn next(&mut self) -> SequenceBatch {
        let items = (0..self.batch_size)
            .map(|_| {
                let index = self.rng.random_range(0..self.windows.len());
                self.windows
                    .get(index)
                    .expect("index below the window count")
            })
            .collect();
        WindowBatcher.batch(items, &self.device)
    }
}
