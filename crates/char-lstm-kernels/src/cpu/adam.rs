//! Adam with each parameter's update in one pass over its values.
//!
//! Burn's `Adam` runs about ten tensor ops per parameter and step, each writing a new tensor;
//! on flex this one reads the parameter, its gradient and both moments once and writes the new
//! values in the same pass, split over the cores, in place (the moments always, the parameter
//! where nothing else holds it), so a step allocates nothing for them. It computes what Burn's
//! does, operation for operation, and keeps its state as Burn's `AdamState`, so checkpoints
//! written with either load in the other. On Burn's CubeCL backend (a GPU, with the `gpu`
//! feature) each parameter's step is one kernel (`gpu/adam.rs`), on a remote server that hosts
//! the fused ops (with `remote`) this pass there; on other backends it is Burn's `Adam`.
//!
//! With `weight_decay` it is AdamW (Loshchilov and Hutter; PyTorch's `AdamW`): every parameter
//! is first scaled by `1 - lr * weight_decay`, then takes Adam's step. The decay is decoupled
//! from the moments, so the moment state stays Adam's.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::config::Config;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::cpu::flex_op::values;
use crate::cpu::op_times;
use crate::simd::per_simd_path;

/// Configuration of [`FusedAdam`]; the defaults are PyTorch's.
#[derive(Config, Debug)]
pub struct FusedAdamConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the root of the second moment.
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Decoupled weight decay (AdamW), applied to every parameter; 0 is plain Adam.
    #[config(default = 0.0)]
    pub weight_decay: f32,
}

impl FusedAdamConfig {
    /// The optimizer for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            composed: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        })
    }
}

/// Adam or AdamW (no AMSGrad), fused on flex.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// Burn's Adam with the same settings, for other backends.
    composed: Adam,
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if fusable(&tensor, &grad, state.as_ref()) {
            let (tensor, state) =
                op_times::timed("adam", "step", || self.fused_step(lr, tensor, grad, state));
            return (tensor, Some(state));
        }
        #[cfg(feature = "gpu")]
        if let Some(step) = self.step_by(crate::gpu::adam::step, lr, &tensor, &grad, &state) {
            return step;
        }
        #[cfg(feature = "remote")]
        if let Some(step) = self.step_by(crate::remote::adam_step, lr, &tensor, &grad, &state) {
            return step;
        }
        if self.weight_decay == 0.0 {
            self.composed.step(lr, tensor, grad, state)
        } else {
            let decayed = tensor.mul_scalar(self.decay(lr));
            self.composed.step(lr, decayed, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl FusedAdam {
    /// What each parameter is scaled by before the step.
    fn decay(&self, lr: LearningRate) -> f32 {
        1.0 - lr as f32 * self.weight_decay
    }

    /// The constants of step `time` (from 1) at rate `lr`, as Burn's Adam computes them, so
    /// the results match it bit for bit.
    fn constants(&self, lr: LearningRate, time: usize) -> StepConstants {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let bias_correction2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        StepConstants {
            beta_1: b1,
            beta_2: b2,
            combined_factor: bias_correction2_sqrt / (1.0 - b1.powi(time as i32)),
            epsilon: self.epsilon * bias_correction2_sqrt,
            decay: self.decay(lr),
            lr: lr as f32,
            first: time == 1,
        }
    }

    /// The step by `pass` (one kernel on a GPU, one custom operation on a remote server), from
    /// this step's constants, the parameter, its gradient and the moments before (none at the
    /// first step) to the new parameter and moments, where `pass` runs; `None` elsewhere.
    #[cfg(any(feature = "gpu", feature = "remote"))]
    #[allow(clippy::type_complexity)]
    fn step_by<const D: usize>(
        &self,
        pass: fn(
            StepConstants,
            &Tensor<D>,
            &Tensor<D>,
            Option<(Tensor<D>, Tensor<D>)>,
        ) -> Option<[Tensor<D>; 3]>,
        lr: LearningRate,
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: &Option<AdamState<D>>,
    ) -> Option<(Tensor<D>, Option<AdamState<D>>)> {
        let momentum = state.as_ref().map(|s| &s.momentum);
        if momentum.is_some_and(|m| m.max_moment_2.is_some()) {
            return None;
        }
        let time = momentum.map_or(0, |m| m.time) + 1;
        let moments = momentum.map(|m| (m.moment_1.clone(), m.moment_2.clone()));
        let [param, m, v] = pass(self.constants(lr, time), tensor, grad, moments)?;
        let state = AdamState::new(AdaptiveMomentumState::new(time, m, v));
        Some((param, Some(state)))
    }

    /// The step on flex tensors ([`fusable`]).
    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, AdamState<D>) {
        let shape = tensor.shape();
        let flex = |t: Tensor<D>| {
            t.try_into_primitive::<Flex>()
                .unwrap_or_else(|_| unreachable!("checked by `fusable`"))
        };
        let moments = state.map(|s| s.momentum);
        let time = moments.as_ref().map_or(0, |m| m.time) + 1;
        let moments = moments.map(|m| (flex(m.moment_1), flex(m.moment_2)));
        let constants = self.constants(lr, time);
        let [param, m, v] = fused_update(constants, flex(tensor), flex(grad), moments);
        let on_flex = |t: FlexTensor| Tensor::<D>::from_primitive::<Flex>(t).reshape(shape.clone());
        let state = AdamState::new(AdaptiveMomentumState::new(time, on_flex(m), on_flex(v)));
        (on_flex(param), state)
    }
}

/// One step of Adam with `constants` on flat flex tensors, in one pass over the values: the
/// moments (zeros at the first step) are updated in place, and so is the parameter where
/// nothing else holds it (else its new values go to a new buffer). The new parameter and
/// moments.
pub(crate) fn fused_update(
    constants: StepConstants,
    mut param: FlexTensor,
    gradient: FlexTensor,
    moments: Option<(FlexTensor, FlexTensor)>,
) -> [FlexTensor; 3] {
    let gradient = values(&gradient);
    let len = gradient.len();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (writable(m), writable(v)),
        None => {
            let zeros = || FlexTensor::from_data(TensorData::new(vec![0.0f32; len], [len]));
            (zeros(), zeros())
        }
    };
    const CHUNK: usize = 1 << 14;
    let moments = storage(&mut m)
        .par_chunks_mut(CHUNK)
        .zip(storage(&mut v).par_chunks_mut(CHUNK))
        .zip(gradient.par_chunks(CHUNK));
    let param = if is_writable(&mut param) {
        moments
            .zip(storage(&mut param).par_chunks_mut(CHUNK))
            .for_each(|(((m, v), g), p)| update_in_place(constants, p, m, v, g));
        param
    } else {
        // Something else holds the parameter (the model it came from): the new values go to a
        // new buffer in the same pass, rather than into a copy made first.
        let old = values(&param);
        let mut new = Vec::with_capacity(len);
        moments
            .zip(old.par_chunks(CHUNK))
            .zip(new.spare_capacity_mut().par_chunks_mut(CHUNK))
            .for_each(|((((m, v), g), p), out)| update_into(constants, p, out, m, v, g));
        // SAFETY: the chunks above cover all `len` values of the spare capacity, and
        // `update_into` wrote each value of its chunk.
        unsafe { new.set_len(len) };
        FlexTensor::from_data(TensorData::new(new, [len]))
    };
    [param, m, v]
}

/// What one step of Adam computes each value's update from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepConstants {
    pub(crate) beta_1: f32,
    pub(crate) beta_2: f32,
    /// `sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    pub(crate) combined_factor: f32,
    /// `epsilon * sqrt(1 - beta_2^t)`.
    pub(crate) epsilon: f32,
    /// The weight decay's factor, 1 without decay.
    pub(crate) decay: f32,
    pub(crate) lr: f32,
    /// The first step, from zero moments.
    pub(crate) first: bool,
}

impl StepConstants {
    /// One value's new moments (in place) and its step; `x * 1.0 == x`, so without decay
    /// `p * decay - step` is Burn's update bit for bit.
    #[inline(always)]
    fn step(self, m: &mut f32, v: &mut f32, g: f32) -> f32 {
        let (b1, b2) = (self.beta_1, self.beta_2);
        (*m, *v) = if self.first {
            (g * (1.0 - b1), g * g * (1.0 - b2))
        } else {
            (*m * b1 + g * (1.0 - b1), *v * b2 + g * g * (1.0 - b2))
        };
        *m * self.combined_factor / (v.sqrt() + self.epsilon) * self.lr
    }
}

per_simd_path! {
    /// Adam over one chunk of a parameter, written in place.
    fn update_in_place(k: StepConstants, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *p = *p * k.decay - k.step(m, v, g);
        }
    }
}

per_simd_path! {
    /// Adam over one chunk of a parameter `p`, its new values written to `out`.
    fn update_into(
        k: StepConstants,
        p: &[f32],
        out: &mut [MaybeUninit<f32>],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        for ((((&p, out), m), v), &g) in p.iter().zip(out).zip(m).zip(v).zip(g) {
            out.write(p * k.decay - k.step(m, v, g));
        }
    }
}

/// Whether [`FusedAdam::fused_step`] takes this step: every tensor on flex (optimizers see
/// them without autodiff), and no AMSGrad moment.
fn fusable<const D: usize>(
    tensor: &Tensor<D>,
    grad: &Tensor<D>,
    state: Option<&AdamState<D>>,
) -> bool {
    let on_flex = |t: &Tensor<D>| t.clone().try_into_primitive::<Flex>().is_ok();
    on_flex(tensor)
        && on_flex(grad)
        && state.is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && on_flex(&s.momentum.moment_1)
                && on_flex(&s.momentum.moment_2)
        })
}

/// The values of an `f32` tensor made [`writable`], to write in place.
fn storage(tensor: &mut FlexTensor) -> &mut [f32] {
    tensor
        .try_storage_mut::<f32>()
        .expect("a writable tensor owns its storage")
}

/// Whether `tensor` is contiguous and owns all of its storage, so that it can be written in
/// place.
fn is_writable(tensor: &mut FlexTensor) -> bool {
    let whole = tensor
        .as_slice::<f32>()
        .is_some_and(|s| s.len() == tensor.storage::<f32>().len());
    whole && tensor.try_storage_mut::<f32>().is_some()
}

/// `tensor` as a contiguous tensor that owns all of its storage, so that it can be written in
/// place: itself where it already is one, else a flat copy.
fn writable(mut tensor: FlexTensor) -> FlexTensor {
    if is_writable(&mut tensor) {
        return tensor;
    }
    let copy = values(&tensor).into_owned();
    let len = copy.len();
    FlexTensor::from_data(TensorData::new(copy, [len]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::Distribution;

    /// The weights of a `[inputs, outputs]` `Linear` after each of four steps of `ours` and of
    /// `theirs` from the same start and inputs, on `device`; the rate grows from 0.01 to 0.04.
    fn weights_per_step(
        device: Device,
        seed: u64,
        [inputs, outputs]: [usize; 2],
        mut ours: ModuleOptimizer,
        mut theirs: ModuleOptimizer,
    ) -> Vec<(Vec<f32>, Vec<f32>)> {
        device.seed(seed);
        let ad = device.autodiff();
        let start: Linear = LinearConfig::new(inputs, outputs).init(&ad);
        let (mut a, mut b) = (start.clone(), start);
        (1..=4)
            .map(|step| {
                let input = Tensor::<2>::random([5, inputs], Distribution::Uniform(-1.0, 1.0), &ad);
                let grads_of = |model: &Linear| {
                    let loss = model.forward(input.clone()).powf_scalar(2.0).sum();
                    GradientsParams::from_grads(loss.backward(), model)
                };
                let lr = 1e-2 * step as f64;
                let (g_a, g_b) = (grads_of(&a), grads_of(&b));
                a = ours.step(lr, a.clone(), g_a);
                b = theirs.step(lr, b.clone(), g_b);
                (weights(&a), weights(&b))
            })
            .collect()
    }

    fn weights(model: &Linear) -> Vec<f32> {
        let bias = model.bias.as_ref().map(Param::val).unwrap();
        [model.weight.val().into_data(), bias.into_data()]
            .iter()
            .flat_map(|d| d.try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// A few steps of ours and of Burn's Adam from the same weights and gradients give the same
    /// weights, to the last bit.
    #[test]
    fn matches_burn_adam_bit_for_bit() {
        let _rng = crate::testing::device_rng();
        let config = FusedAdamConfig::new();
        let burn = AdamConfig::new().with_epsilon(config.epsilon).init();
        for (step, (ours, theirs)) in
            weights_per_step(Device::flex(), 3, [37, 19], config.init(), burn)
                .into_iter()
                .enumerate()
        {
            assert_eq!(ours, theirs, "step {step}");
        }
    }

    /// With weight decay, a few steps of ours and of Burn's `AdamW` from the same weights and
    /// gradients agree to float rounding (their bias corrections are written differently), on
    /// flex (the fused pass) and on ndarray (Burn's Adam after the decay).
    #[test]
    #[allow(deprecated)] // ndarray stands for every backend that is not flex
    fn weight_decay_matches_burn_adamw() {
        let _rng = crate::testing::device_rng();
        let config = FusedAdamConfig::new().with_weight_decay(0.5);
        for device in [Device::flex(), Device::ndarray()] {
            let burn = AdamWConfig::new()
                .with_epsilon(config.epsilon)
                .with_weight_decay(config.weight_decay)
                .init();
            let name = format!("{device:?}");
            for (step, (ours, theirs)) in weights_per_step(device, 5, [37, 19], config.init(), burn)
                .into_iter()
                .enumerate()
            {
                for (a, b) in ours.into_iter().zip(theirs) {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "{name} step {step}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// On wgpu each parameter's step is one kernel, and a few steps of it agree with Burn's
    /// `Adam` and `AdamW` run there as composed ops, to float rounding; also for a weight of
    /// more values than the grid has threads (several values per thread).
    #[cfg(feature = "gpu")]
    #[test]
    fn on_wgpu_each_parameter_is_one_kernel_and_matches_burn_adam() {
        let _launches = crate::testing::gpu_launches();
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        for (decay, dims) in [(0.0, [37, 19]), (0.5, [37, 19]), (0.5, [640, 500])] {
            let config = FusedAdamConfig::new().with_weight_decay(decay);
            let burn = AdamWConfig::new()
                .with_epsilon(config.epsilon)
                .with_weight_decay(decay)
                .init();
            let steps = weights_per_step(device.clone(), 7, dims, config.init(), burn);
            for (step, (ours, theirs)) in steps.into_iter().enumerate() {
                for (a, b) in ours.into_iter().zip(theirs) {
                    assert!(
                        (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                        "decay {decay} step {step}: {a} vs {b}"
                    );
                }
            }
        }
        let ad = device.autodiff();
        let model: Linear = LinearConfig::new(37, 19).init(&ad);
        let loss = model.forward(Tensor::<2>::ones([2, 37], &ad)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Read first: under Burn's fusion the gradients' kernels launch only when read.
        let _ = grads.get::<2>(model.weight.id).unwrap().into_data();
        let _ = grads
            .get::<1>(model.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data();
        let mut optim = FusedAdamConfig::new().init();
        let (_, launched) = crate::count_launches(|| weights(&optim.step(1e-2, model, grads)));
        assert_eq!(launched, 2, "one kernel for the weight, one for the bias");
    }

    /// Where the gradient is zero Adam's step is zero, so only the decay moves a weight:
    /// after steps at rates `lr_1, lr_2, ...` it is `w * (1 - lr_1 * wd) * (1 - lr_2 * wd) ...`.
    #[test]
    #[allow(deprecated)] // ndarray stands for every backend that is not flex
    fn weight_decay_alone_shrinks_by_one_minus_lr_times_decay() {
        for device in [Device::flex(), Device::ndarray()] {
            let ad = device.clone().autodiff();
            let mut model: Linear = LinearConfig::new(3, 2).init(&ad);
            let mut expected = weights(&model);
            let mut optim = FusedAdamConfig::new().with_weight_decay(0.1).init();
            for lr in [0.5, 0.25, 0.125] {
                let loss = model
                    .forward(Tensor::<2>::ones([1, 3], &ad))
                    .sum()
                    .mul_scalar(0.0);
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                for w in &mut expected {
                    *w *= 1.0 - lr as f32 * 0.1;
                }
                assert_eq!(weights(&model), expected, "{device:?} at rate {lr}");
            }
        }
    }
}
