//! Data-parallel training steps over several devices of one backend.
//!
//! A step's batch is split by rows into one contiguous shard per device. Each device runs its
//! shard's forward and backward on its own thread, on a copy of the model forked to it (Burn's
//! `Module::fork`: fresh autodiff leaves with the same parameter ids), its loss weighted by its
//! share of the rows. The shards' gradients are moved to the first device and summed by Burn's
//! `GradientsAccumulator`, so the sum is the gradient of the whole batch's mean loss: N devices
//! with `batch_size` b step exactly as one device with a batch of N * b would, and Adam and the
//! learning rate mean the same at any N. In stream mode each device carries the state of its
//! own rows (streams) from step to step.
//!
//! On CUDA devices the gradients are instead all-reduced during the shards' backward by Burn's
//! collective (NCCL, what burn-train's DDP runs on): every parameter of every fork is marked
//! distributed, each backward sums its gradients with the other devices' as they are computed,
//! and the first device's are the whole batch's. Only CUDA implements the collective in Burn
//! 0.22.1; this path is built everywhere and run nowhere here (no CUDA build can be made
//! offline).

use std::ops::Range;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsAccumulator;
use burn::tensor::distributed::{DistributedConfig, DistributedContext, ReduceOperation};
use burn::tensor::{Device, Tensor};
use burn::train::{ModuleSharder, SequenceOutput, TrainOutput};
use char_lstm::{LstmLanguageModel, LstmState, SequenceBatch};

use crate::backend::BackendKind;

/// Training steps split over `devices` (autodiff devices; the first is where the batches
/// arrive, the gradients are summed and the optimizer steps).
#[derive(Debug, Clone)]
pub struct DataParallel {
    devices: Vec<Device>,
    /// Burn's communication server for the devices, while the gradients are all-reduced;
    /// dropping the last clone closes it.
    collective: Option<Arc<DistributedContext>>,
}

/// One shard's result: its output and final state, on its device.
type ShardStep = (TrainOutput<SequenceOutput>, Vec<LstmState>);

impl DataParallel {
    /// Steps over these devices (at least one; with one, the model's own step), the
    /// gradients moved to the first device and summed there.
    pub fn new(devices: Vec<Device>) -> Self {
        assert!(!devices.is_empty(), "at least one device");
        Self {
            devices,
            collective: None,
        }
    }

    /// Steps over `backend`'s `devices`: all-reduced where the backend has Burn's collective
    /// ([`BackendKind::all_reduces`]) and there are several, gathered as by
    /// [`new`](Self::new) elsewhere.
    pub fn of(backend: BackendKind, devices: Vec<Device>) -> Self {
        let mut parallel = Self::new(devices);
        if backend.all_reduces() && parallel.devices.len() > 1 {
            let config = DistributedConfig {
                all_reduce_op: ReduceOperation::Sum,
            };
            let context = DistributedContext::init(parallel.devices.clone(), config);
            parallel.collective = Some(Arc::new(context));
        }
        parallel
    }

    /// The first device.
    pub fn main_device(&self) -> &Device {
        &self.devices[0]
    }

    /// Every device, the first first.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Whether the gradients are all-reduced during the backward rather than gathered.
    pub fn all_reduces(&self) -> bool {
        self.collective.is_some()
    }

    /// One training step on `batch` (on the first device) from `state` (per layer, for every
    /// row; `None` for zeros): the whole batch's mean loss, its logits and the summed
    /// gradients on the first device, and every layer's final state, detached.
    pub fn step(
        &self,
        model: &LstmLanguageModel,
        batch: SequenceBatch,
        state: Option<Vec<LstmState>>,
    ) -> (TrainOutput<SequenceOutput>, Vec<LstmState>) {
        if self.devices.len() == 1 {
            return model.stateful_step(batch, state);
        }
        model.visit(&mut Materialize);
        let rows = batch.targets.dims()[0];
        let shards: Vec<(Device, Range<usize>)> = self
            .devices
            .iter()
            .cloned()
            .zip(row_shards(rows, self.devices.len()))
            .filter(|(_, range)| !range.is_empty())
            .collect();
        // A collective needs every device; a batch with fewer rows than devices gathers.
        let all_reduce = self.collective.is_some() && shards.len() == self.devices.len();
        let results: Vec<ShardStep> = std::thread::scope(|scope| {
            let workers: Vec<_> = shards
                .iter()
                .map(|(device, range)| {
                    let mut model = model.clone().fork(device);
                    if all_reduce {
                        model = model.map(&mut ModuleSharder);
                    }
                    let shard = SequenceBatch {
                        inputs: rows_of(&batch.inputs, range, device),
                        targets: rows_of(&batch.targets, range, device),
                    };
                    let state = state.as_ref().map(|layers| {
                        layers
                            .iter()
                            .map(|s| LstmState {
                                hidden: rows_of(&s.hidden, range, device),
                                cell: rows_of(&s.cell, range, device),
                            })
                            .collect()
                    });
                    let weight = range.len() as f64 / rows as f64;
                    scope.spawn(move || model.weighted_step(shard, state, weight))
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        self.combine(model, batch, &shards, results, all_reduce)
    }

    /// The shards' results on the first device, as one batch's: the gradients summed there,
    /// or the first shard's where the backward has `all_reduced` them already.
    fn combine(
        &self,
        model: &LstmLanguageModel,
        batch: SequenceBatch,
        shards: &[(Device, Range<usize>)],
        results: Vec<ShardStep>,
        all_reduced: bool,
    ) -> (TrainOutput<SequenceOutput>, Vec<LstmState>) {
        let main = &self.devices[0];
        let rows = batch.targets.dims()[0] as f64;
        let mut accumulator = GradientsAccumulator::<LstmLanguageModel>::new();
        let (mut losses, mut logits, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for (index, ((_, range), (output, last))) in shards.iter().zip(results).enumerate() {
            if !all_reduced || index == 0 {
                accumulator.accumulate(model, output.grads.to_device(&main.clone().inner(), model));
            }
            let share = range.len() as f64 / rows;
            losses.push(output.item.loss.detach().to_device(main) * share);
            logits.push(output.item.logits.detach().to_device(main));
            states.push(last);
        }
        let loss = losses
            .into_iter()
            .reduce(|sum, loss| sum + loss)
            .expect("at least one shard");
        let item = SequenceOutput::new(loss, Tensor::cat(logits, 0), None, batch.targets);
        let last = (0..states[0].len())
            .map(|layer| LstmState {
                hidden: gathered(&states, main, |s| s[layer].hidden.clone()),
                cell: gathered(&states, main, |s| s[layer].cell.clone()),
            })
            .collect();
        let output = TrainOutput {
            grads: accumulator.grads(),
            item,
        };
        (output, last)
    }
}

/// Reads every parameter, so that lazily initialized ones take their values before the model
/// is forked to the devices (forks of an uninitialized model would each draw their own).
struct Materialize;

impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// `rows` split into `parts` contiguous ranges whose sizes differ by at most one.
fn row_shards(rows: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts)
        .map(|i| i * rows / parts..(i + 1) * rows / parts)
        .collect()
}

/// Rows `range` of `tensor`, on `device`.
fn rows_of<const D: usize, K>(
    tensor: &Tensor<D, K>,
    range: &Range<usize>,
    device: &Device,
) -> Tensor<D, K>
where
    K: burn::tensor::kind::Basic,
{
    tensor
        .clone()
        .narrow(0, range.start, range.len())
        .to_device(device)
}

/// One tensor of every shard's state, stacked by rows on `main`.
fn gathered(
    states: &[Vec<LstmState>],
    main: &Device,
    part: impl Fn(&[LstmState]) -> Tensor<2>,
) -> Tensor<2> {
    Tensor::cat(states.iter().map(|s| part(s).to_device(main)).collect(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use char_lstm::LstmLanguageModelConfig;

    /// Every parameter of `model`, flat, in visiting order.
    fn weights(model: &LstmLanguageModel) -> Vec<f32> {
        let record = model.clone().valid();
        let mut all = Vec::new();
        for tensor in [
            record.embedding.weight.val().reshape([-1]),
            record.output.weight.val().reshape([-1]),
            record.output.bias.expect("a bias").val().reshape([-1]),
        ]
        .into_iter()
        .chain(record.lstm.layers.iter().flat_map(|layer| {
            [
                layer.weight_ih.val().reshape([-1]),
                layer.weight_hh.val().reshape([-1]),
                layer.bias_ih.val().reshape([-1]),
                layer.bias_hh.val().reshape([-1]),
            ]
        })) {
            all.extend(tensor.into_data().try_to_vec::<f32>().expect("f32"));
        }
        all
    }

    /// Five Adam steps on the same batches (9 rows, so the shards are unequal), carrying the
    /// state from step to step when `stream`: the weights after them.
    fn train(parallel: &DataParallel, stream: bool) -> Vec<f32> {
        let device = parallel.main_device().clone();
        device.seed(5);
        let mut model = LstmLanguageModelConfig::new(7)
            .with_embedding_dim(6)
            .with_hidden_dim(10)
            .with_num_layers(2)
            .init(&device);
        // The weights drawn now, before the batches' draws (they are initialized lazily).
        model.visit(&mut Materialize);
        let mut optim = char_lstm::train::adam(0.0);
        let mut carried = None;
        for step in 0..5 {
            let ids = || {
                Tensor::<2>::random([9, 4], Distribution::Uniform(0.0, 7.0), &device)
                    .int()
                    .clamp(0, 6)
            };
            device.seed(100 + step);
            let batch = SequenceBatch {
                inputs: ids(),
                targets: ids(),
            };
            let (output, last) = parallel.step(&model, batch, carried.take());
            if stream {
                carried = Some(last);
            }
            model = optim.step(1e-2, model, output.grads);
        }
        weights(&model)
    }

    /// Two flex devices (Burn's multi-device code takes the one CPU device twice) step as one
    /// device on the whole batch, in windows mode and with state carried in stream mode.
    #[test]
    fn two_devices_train_as_one_device_with_the_whole_batch() {
        let _rng = char_lstm_kernels::testing::device_rng();
        let device = Device::flex().autodiff();
        let one = DataParallel::new(vec![device.clone()]);
        let two = DataParallel::new(vec![device.clone(), device]);
        for stream in [false, true] {
            let (alone, split) = (train(&one, stream), train(&two, stream));
            assert_eq!(alone.len(), split.len());
            let worst = alone
                .iter()
                .zip(&split)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "stream {stream}: weights differ by {worst}");
            assert!(alone != train(&one, !stream), "the modes train differently");
        }
    }

    #[test]
    fn rows_split_into_near_equal_contiguous_shards() {
        assert_eq!(row_shards(9, 2), vec![0..4, 4..9]);
        assert_eq!(row_shards(1, 3), vec![0..0, 0..0, 0..1]);
        assert_eq!(row_shards(8, 4), vec![0..2, 2..4, 4..6, 6..8]);
    }
}
