//! `trainer bench`: training and sampling throughput of a config, printed as one JSON object.
//!
//! A benchmark, not a test: it measures, it asserts nothing. Training steps run on random
//! windows of the training text, as the PyTorch reference's `speed` mode does, so the two
//! compare step for step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use char_lstm::{
    CharVocab, GenerationConfig, LstmImplementation, LstmLanguageModel, LstmLanguageModelConfig,
    SamplingConfig, SequenceBatch,
};
use char_lstm_data::{TextSplit, TextWindows};
use serde::Serialize;

use crate::backend::BackendKind;
use crate::cli::{BenchArgs, LstmChoice, overrides};
use crate::commands::bench_recurrence::{RecurrenceTimes, time_recurrence};
use crate::config::RunConfig;
use crate::training::data_parallel::DataParallel;
use crate::training::step_timing::{self, RandomBatches, training_step};

/// What `trainer bench` prints.
#[derive(Debug, Serialize)]
struct BenchReport {
    backend: String,
    /// The CPU kernels' instruction-set path (`CHAR_LSTM_SIMD` forces one).
    simd: &'static str,
    lstm: String,
    /// The GPU recurrence kernels' layout (`CHAR_LSTM_GPU_RECURRENCE` picks one), on the
    /// CubeCL backends.
    gpu_recurrence: Option<&'static str>,
    vocab: usize,
    embedding_dim: usize,
    hidden_dim: usize,
    num_layers: usize,
    /// Windows per device.
    batch_size: usize,
    /// Devices the training step runs on, data-parallel (`--devices`).
    devices: usize,
    seq_len: usize,
    train_step_ms_median: f64,
    /// Predicted characters per second: `devices * batch_size * seq_len` over the median step
    /// time.
    train_chars_per_s: f64,
    /// One stream, temperature 0.8, without autodiff.
    sample_chars_per_s: f64,
    /// 32 streams at once; characters of all streams together per second.
    sample32_chars_per_s: f64,
    /// The process's peak resident memory after the training steps (Linux `VmHWM`).
    peak_rss_bytes: Option<u64>,
    /// The same training step with `burn::nn::Lstm` layers, when `--with-nn-lstm`.
    nn_lstm_train_chars_per_s: Option<f64>,
    /// GPU kernels launched by one training step (after the timed ones), on the CubeCL
    /// backends; none on the CPU backends.
    train_step_launches: Option<usize>,
    /// On the CubeCL backends: one more training step with each kernel timed alone (the
    /// step waits for every kernel), by kernel, the longest first.
    train_step_kernels: Option<Vec<KernelReport>>,
    /// On flex with one device: where a training step's time goes, over
    /// [`OP_TIMED_STEPS`] more steps with each fused CPU op timed.
    train_step_ops: Option<OpBreakdown>,
    /// One layer's recurrence alone over one batch (`[batch_size, seq_len, hidden_dim]`).
    recurrence: RecurrenceTimes,
    /// On the CubeCL backends: wall time per kernel launched by 1,000 one-element additions
    /// back to back, read back once (1,000 launches without Burn's fusion), in microseconds.
    launch_overhead_us: Option<f64>,
}

/// Runs the benchmark and prints its JSON report.
pub fn bench(args: &BenchArgs) -> Result<()> {
    let config = RunConfig::resolve(args.config.as_deref(), &overrides(&args.sets, args.devices))?;
    let text = crate::text_source::load_training_text(&config)?;
    let vocab = CharVocab::from_text(&text)?;
    let model_config = config.model_for(&vocab)?;
    let tokens: Arc<[u32]> = vocab.encode(&text)?.into();
    let split = TextSplit::by_position(tokens.len(), config.data.valid_fraction);
    let windows = TextWindows::new(tokens, split.train, config.data.seq_len, 1, "training")?;
    let devices = args.device.devices(config.training.devices)?;
    let device = devices[0].clone();
    let gpu_recurrence = gpu_recurrence(args)?;
    let parallel = DataParallel::of(
        args.device.backend,
        devices.into_iter().map(Device::autodiff).collect(),
    );
    let train_device = parallel.main_device().clone();
    train_device.seed(config.training.seed);
    let implementation = match args.lstm {
        LstmChoice::Fused => LstmImplementation::Fused,
        LstmChoice::Composed => LstmImplementation::Composed,
    };

    let mut lm = model_config.init(&train_device);
    lm.lstm = lm.lstm.with_implementation(implementation);
    let mut train_step = training_step(lm, &parallel, &windows, &config);
    let step_time = median_step_time(args, &mut train_step);
    let train_step_launches = launches(args, &mut train_step);
    let train_step_ops = op_times(args, config.training.devices, &mut train_step);
    let train_step_kernels = kernel_times(args, train_step);
    let peak_rss_bytes = peak_rss_bytes();
    let recurrence = time_recurrence(
        args,
        [
            config.training.batch_size,
            config.data.seq_len,
            model_config.hidden_dim,
        ],
        implementation,
        &train_device,
    );
    let launch_overhead_us = launch_overhead_us(args, &device);

    let nn_lstm_step_time = if args.with_nn_lstm {
        let mut batches = RandomBatches::new(&windows, &config, &train_device);
        let mut baseline = NnLstmModel::new(&model_config, &train_device);
        let mut optim = burn_adam();
        Some(median_step_time(args, || {
            baseline = baseline.clone().train_step(
                batches.next(),
                &mut optim,
                config.training.learning_rate,
            );
        }))
    } else {
        None
    };

    let mut sampler_model = model_config.init(&device);
    sampler_model.lstm = sampler_model.lstm.with_implementation(implementation);
    let sample_chars_per_s = sampling_speed(&sampler_model, 1, args.sample_length)?;
    let sample32_chars_per_s = sampling_speed(&sampler_model, 32, args.sample_length / 4)?;

    let chars_per_step = (config.training.global_batch_size() * config.data.seq_len) as f64;
    let report = BenchReport {
        backend: args.device.backend.name().to_string(),
        simd: char_lstm::simd::Simd::active().name(),
        lstm: format!("{:?}", args.lstm).to_lowercase(),
        gpu_recurrence,
        vocab: vocab.len(),
        embedding_dim: model_config.embedding_dim,
        hidden_dim: model_config.hidden_dim,
        num_layers: model_config.num_layers,
        batch_size: config.training.batch_size,
        devices: config.training.devices,
        seq_len: config.data.seq_len,
        train_step_ms_median: round(step_time.as_secs_f64() * 1e3, 2),
        train_chars_per_s: round(chars_per_step / step_time.as_secs_f64(), 0),
        sample_chars_per_s: round(sample_chars_per_s, 0),
        sample32_chars_per_s: round(sample32_chars_per_s, 0),
        peak_rss_bytes,
        nn_lstm_train_chars_per_s: nn_lstm_step_time
            .map(|t| round(chars_per_step / t.as_secs_f64(), 0)),
        train_step_launches,
        train_step_kernels,
        train_step_ops,
        recurrence,
        launch_overhead_us,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Burn's own Adam with PyTorch's defaults, for the `burn::nn::Lstm` baseline: the model as a
/// Burn user would first write it.
fn burn_adam() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-8).init()
}

/// The GPU kernels `step` launches, on the backends that launch them (counted in builds with
/// the wgpu backend, which brings CubeCL's launch observer).
fn launches(args: &BenchArgs, step: impl FnOnce()) -> Option<usize> {
    if !args.device.backend.is_gpu() {
        return None;
    }
    #[cfg(feature = "wgpu")]
    return Some(char_lstm::count_launches(step).1);
    #[cfg(not(feature = "wgpu"))]
    {
        drop(step);
        None
    }
}

/// One kernel's launches in a training step and their time.
#[derive(Debug, Serialize)]
struct KernelReport {
    /// The kernel, as CubeCL names it.
    kernel: String,
    /// Its launches in the step.
    launches: usize,
    /// Their time together, in milliseconds.
    ms: f64,
    /// Timed on the device (false: the host's wall time around each launch).
    device_timed: bool,
}

/// Each kernel `step` launches, timed alone, on the backends that launch them.
fn kernel_times(args: &BenchArgs, step: impl FnOnce()) -> Option<Vec<KernelReport>> {
    if !args.device.backend.is_gpu() {
        return None;
    }
    #[cfg(feature = "wgpu")]
    return Some(
        char_lstm::time_launches(step)
            .1
            .into_iter()
            .map(|k| KernelReport {
                kernel: k.kernel,
                launches: k.launches,
                ms: round(k.total.as_secs_f64() * 1e3, 3),
                device_timed: k.device_timed,
            })
            .collect(),
    );
    #[cfg(not(feature = "wgpu"))]
    {
        drop(step);
        None
    }
}

/// Training steps [`op_times`] times.
const OP_TIMED_STEPS: usize = 5;

/// Where a training step's time goes on flex, per step.
#[derive(Debug, Serialize)]
struct OpBreakdown {
    /// The mean time of a step, in milliseconds.
    step_ms: f64,
    /// Each fused op's pass (its parallel work on every core included), the longest first.
    ops: Vec<OpReport>,
    /// The time outside them, in milliseconds: Burn's own ops (the embedding's gather, the
    /// autodiff graph), and the loss read back.
    other_ms: f64,
}

/// One fused op's pass in a training step.
#[derive(Debug, Serialize)]
struct OpReport {
    /// The op and its pass, such as `recurrence backward`.
    op: String,
    /// Its calls per step.
    calls: usize,
    /// Its time per step, in milliseconds.
    ms: f64,
}

/// [`OP_TIMED_STEPS`] training steps with the fused CPU ops timed, where they all run on this
/// thread: on flex with one device.
fn op_times(args: &BenchArgs, devices: usize, mut step: impl FnMut()) -> Option<OpBreakdown> {
    if args.device.backend != BackendKind::Flex || devices != 1 {
        return None;
    }
    let start = Instant::now();
    let ((), times) = char_lstm::time_cpu_ops(|| (0..OP_TIMED_STEPS).for_each(|_| step()));
    let per_step = |time: Duration| time.as_secs_f64() * 1e3 / OP_TIMED_STEPS as f64;
    let step_ms = per_step(start.elapsed());
    let in_ops: f64 = times.iter().map(|t| per_step(t.total)).sum();
    let ops = times
        .into_iter()
        .map(|t| OpReport {
            op: format!("{} {}", t.op, t.pass),
            calls: t.calls / OP_TIMED_STEPS,
            ms: round(per_step(t.total), 2),
        })
        .collect();
    Some(OpBreakdown {
        step_ms: round(step_ms, 2),
        ops,
        other_ms: round(step_ms - in_ops, 2),
    })
}

/// The layout of the GPU recurrence kernels on the CubeCL backends; an unknown
/// `CHAR_LSTM_GPU_RECURRENCE` is an error.
fn gpu_recurrence(args: &BenchArgs) -> Result<Option<&'static str>> {
    if !args.device.backend.is_gpu() {
        return Ok(None);
    }
    #[cfg(feature = "wgpu")]
    return Ok(Some(char_lstm::GpuRecurrence::from_env()?.name()));
    #[cfg(not(feature = "wgpu"))]
    Ok(None)
}

/// Microseconds per kernel of many tiny kernels back to back, on the backends that launch
/// them.
fn launch_overhead_us(args: &BenchArgs, device: &Device) -> Option<f64> {
    let tiny = || {
        let mut x = Tensor::<1>::zeros([1], device);
        for _ in 0..1000 {
            x = x + 1.0;
        }
        let _ = x.into_scalar::<f32>();
    };
    tiny();
    let start = Instant::now();
    let launched = launches(args, tiny)?;
    Some(round(
        start.elapsed().as_secs_f64() * 1e6 / launched.max(1) as f64,
        2,
    ))
}

/// [`step_timing::median_step_time`] with `--warmup` and `--steps`.
pub(super) fn median_step_time(args: &BenchArgs, step: impl FnMut()) -> Duration {
    step_timing::median_step_time(args.warmup, args.steps, step)
}

/// Characters per second (all streams together) of `length` sampled characters per stream.
fn sampling_speed(model: &LstmLanguageModel, streams: usize, length: usize) -> Result<f64> {
    let config = GenerationConfig::new()
        .with_length(length.max(1))
        .with_sampling(SamplingConfig::new().with_temperature(0.8));
    let start = Instant::now();
    char_lstm::on_decoder_threads(|| char_lstm::generate(model, &[0], streams, &config, |_| {}))?;
    Ok((streams * length.max(1)) as f64 / start.elapsed().as_secs_f64())
}

/// The same network with `burn::nn::Lstm` layers: the baseline the fused op is measured
/// against.
#[derive(Module, Debug)]
struct NnLstmModel {
    embedding: Embedding,
    layers: Vec<burn::nn::Lstm>,
    output: Linear,
}

impl NnLstmModel {
    fn new(m: &LstmLanguageModelConfig, device: &Device) -> Self {
        let vocab_size = m.vocab_size;
        Self {
            embedding: EmbeddingConfig::new(vocab_size, m.embedding_dim).init(device),
            layers: (0..m.num_layers)
                .map(|layer| {
                    let input = if layer == 0 {
                        m.embedding_dim
                    } else {
                        m.hidden_dim
                    };
                    burn::nn::LstmConfig::new(input, m.hidden_dim, true)
                        .with_batch_first(true)
                        .init(device)
                })
                .collect(),
            output: LinearConfig::new(m.hidden_dim, vocab_size).init(device),
        }
    }

    fn train_step(self, batch: SequenceBatch, optim: &mut ModuleOptimizer, lr: f64) -> Self {
        let [batch_size, seq_len] = batch.targets.dims();
        let mut x = self.embedding.forward(batch.inputs);
        for layer in &self.layers {
            x = layer.forward(x, None).0;
        }
        let vocab_size = self.embedding.weight.dims()[0];
        let logits: Tensor<2> = self
            .output
            .forward(x)
            .reshape([batch_size * seq_len, vocab_size]);
        let targets: Tensor<1, Int> = batch.targets.reshape([batch_size * seq_len]);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, targets);
        let grads = GradientsParams::from_grads(loss.backward(), &self);
        let _ = loss.into_scalar::<f32>();
        optim.step(lr, self, grads)
    }
}

/// The process's peak resident set size, from `/proc/self/status` (Linux only).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub(super) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_on_linux() {
        let bytes = peak_rss_bytes().expect("VmHWM in /proc/self/status");
        assert!(
            bytes > 1 << 20,
            "a running test process holds more than 1 MiB: {bytes}"
        );
    }
}
