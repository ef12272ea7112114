//! Adam with each parameter's update in one pass over its values.
//!
//! Burn's `Adam` runs about ten tensor ops per parameter and step, each writing a new tensor;
//! on flex this one reads the parameter, its gradient and both moments once and writes the new
//! values in the same pass, split over the cores. It computes what Burn's does, operation for
//! operation, and keeps its state as Burn's `AdamState`, so checkpoints written with either
//! load in the other. On other backends it is Burn's `Adam`.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::config::Config;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::flex_op::values;

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
}

impl FusedAdamConfig {
    /// The optimizer for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            composed: AdamConfig::new()
                .with_beta_1(self.beta_1)
                .with_beta_2(self.beta_2)
                .with_epsilon(self.epsilon)
                .build(),
        })
    }
}

/// Adam (no weight decay, no AMSGrad), fused on flex.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
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
        match self.fused_step(lr, &tensor, &grad, state.as_ref()) {
            Some((tensor, state)) => (tensor, Some(state)),
            None => self.composed.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl FusedAdam {
    /// The step on flex tensors; `None` elsewhere.
    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdamState<D>>,
    ) -> Option<(Tensor<D>, AdamState<D>)> {
        let flex = |t: &Tensor<D>| t.clone().try_into_primitive::<Flex>().ok();
        let (param, gradient) = (flex(tensor)?, flex(grad)?);
        let moments = match state {
            Some(s) if s.momentum.max_moment_2.is_none() => Some((
                flex(&s.momentum.moment_1)?,
                flex(&s.momentum.moment_2)?,
                s.momentum.time,
            )),
            Some(_) => return None,
            None => None,
        };
        let time = moments.as_ref().map_or(0, |m| m.2) + 1;
        let (param, gradient) = (values(&param), values(&gradient));
        let len = param.len();
        let (m, v) = match &moments {
            Some((m, v, _)) => (values(m), values(v)),
            None => (vec![0.0; len].into(), vec![0.0; len].into()),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        // Burn's expressions and their order, so the results match it bit for bit.
        let bias_correction2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        let combined_factor = bias_correction2_sqrt / (1.0 - b1.powi(time as i32));
        let epsilon = self.epsilon * bias_correction2_sqrt;
        let lr = lr as f32;
        let (mut new_param, mut new_m, mut new_v) =
            (vec![0.0f32; len], vec![0.0f32; len], vec![0.0f32; len]);
        const CHUNK: usize = 1 << 14;
        new_param
            .par_chunks_mut(CHUNK)
            .zip(new_m.par_chunks_mut(CHUNK))
            .zip(new_v.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(chunk, ((p_out, m_out), v_out))| {
                let at = chunk * CHUNK;
                for k in 0..p_out.len() {
                    let (g, i) = (gradient[at + k], at + k);
                    let m = if time == 1 {
                        g * (1.0 - b1)
                    } else {
                        m[i] * b1 + g * (1.0 - b1)
                    };
                    let v = if time == 1 {
                        g * g * (1.0 - b2)
                    } else {
                        v[i] * b2 + g * g * (1.0 - b2)
                    };
                    let update = m * combined_factor / (v.sqrt() + epsilon);
                    (p_out[k], m_out[k], v_out[k]) = (param[i] - update * lr, m, v);
                }
            });
        let shape = tensor.shape();
        let on_flex = |values: Vec<f32>| {
            Tensor::<D>::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(
                values,
                shape.clone(),
            )))
        };
        let state = AdamState::new(AdaptiveMomentumState::new(
            time,
            on_flex(new_m),
            on_flex(new_v),
        ));
        Some((on_flex(new_param), state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    /// A few steps of ours and of Burn's Adam from the same weights and gradients give the same
    /// weights, to the last bit.
    #[test]
    fn matches_burn_adam_bit_for_bit() {
        let _rng = crate::test_support::device_rng();
        let device = Device::flex();
        device.seed(3);
        let ad = device.clone().autodiff();
        let start: Linear = LinearConfig::new(37, 19).init(&ad);
        let config = FusedAdamConfig::new();
        let mut fused = config.init();
        let mut burn = AdamConfig::new().with_epsilon(config.epsilon).init();
        let (mut ours, mut theirs) = (start.clone(), start);
        for step in 0..4 {
            let input = Tensor::<2>::random([5, 37], Distribution::Uniform(-1.0, 1.0), &ad);
            let grads_of = |model: &Linear| {
                let loss = model.forward(input.clone()).powf_scalar(2.0).sum();
                GradientsParams::from_grads(loss.backward(), model)
            };
            let lr: f64 = 1e-2 * (step + 1) as f64;
            let (g_ours, g_theirs) = (grads_of(&ours), grads_of(&theirs));
            ours = fused.step(lr, ours, g_ours);
            theirs = burn.step(lr, theirs, g_theirs);
            let weights = |m: &Linear| -> Vec<f32> {
                let bias = m.bias.as_ref().map(Param::val).unwrap();
                [m.weight.val().into_data(), bias.into_data()]
                    .iter()
                    .flat_map(|d| d.try_to_vec::<f32>().unwrap())
                    .collect()
            };
            assert_eq!(weights(&ours), weights(&theirs), "step {step}");
        }
    }
}
