//! PyTorch's global gradient-norm clipping (`clip_grad_norm_`) over every parameter of the
//! language model.

use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::fused;
use crate::network::language_model::LstmLanguageModel;

/// The ids of every parameter, split by rank.
fn param_ids(model: &LstmLanguageModel) -> (Vec<ParamId>, Vec<ParamId>) {
    let mut matrices = vec![model.embedding.weight.id, model.output.weight.id];
    let mut vectors: Vec<ParamId> = model.output.bias.iter().map(|b| b.id).collect();
    for layer in &model.lstm.layers {
        matrices.extend([layer.weight_ih.id, layer.weight_hh.id]);
        vectors.extend([layer.bias_ih.id, layer.bias_hh.id]);
    }
    (matrices, vectors)
}

/// Every gradient of `model`, flattened.
fn flat_grads(model: &LstmLanguageModel, grads: &GradientsParams) -> Vec<Tensor<1>> {
    let (matrices, vectors) = param_ids(model);
    matrices
        .iter()
        .filter_map(|&id| grads.get::<2>(id))
        .map(|g| g.flatten(0, 1))
        .chain(vectors.iter().filter_map(|&id| grads.get::<1>(id)))
        .collect()
}

/// The sum of the squares of every value of `flat`, by the fused op (in f64) where its
/// tensors live on a backend that has it.
fn fused_total(flat: &[Tensor<1>]) -> Option<f64> {
    let sums: Option<Vec<f64>> = flat.iter().map(fused::sum_of_squares).collect();
    sums.map(|sums| sums.iter().sum())
}

/// The global L2 norm of `flat`'s values as a one-value tensor on their device, unread.
fn norm_tensor(flat: Vec<Tensor<1>>) -> Tensor<1> {
    let squares = flat.into_iter().map(|g| g.powi_scalar(2).sum()).collect();
    Tensor::cat(squares, 0).sum().sqrt()
}

/// The global L2 norm of `model`'s gradients, over every parameter at once.
pub fn grad_norm(model: &LstmLanguageModel, grads: &GradientsParams) -> f64 {
    let flat = flat_grads(model, grads);
    match fused_total(&flat) {
        Some(total) => total.sqrt(),
        None => norm_tensor(flat).into_scalar::<f64>(),
    }
}

/// Scales the gradients by `max_norm / (norm + 1e-6)` when their global norm exceeds
/// `max_norm`, exactly as PyTorch's `clip_grad_norm_` does. Where the fused sum runs (the CPU)
/// the norm is read and gradients under it are left alone; elsewhere nothing is read, which on
/// a GPU would wait for the whole step: the coefficient, clamped to 1 as PyTorch clamps it,
/// stays on the device and multiplies every gradient (by exactly 1 when under the norm).
pub fn clip_grad_norm(
    model: &LstmLanguageModel,
    grads: GradientsParams,
    max_norm: f64,
) -> GradientsParams {
    let flat = flat_grads(model, &grads);
    let Some(device) = flat.first().map(Tensor::device) else {
        return grads;
    };
    let coef = match fused_total(&flat) {
        Some(total) => {
            let coef = max_norm / (total.sqrt() + 1e-6);
            if coef >= 1.0 {
                return grads;
            }
            Tensor::<1>::from_floats([coef as f32], &device)
        }
        None => {
            let limit = Tensor::<1>::from_floats([max_norm as f32], &device);
            (limit / norm_tensor(flat).add_scalar(1e-6)).clamp_max(1.0)
        }
    };
    scale(model, grads, coef)
}

/// Every gradient times the one value of `coef`.
fn scale(
    model: &LstmLanguageModel,
    mut grads: GradientsParams,
    coef: Tensor<1>,
) -> GradientsParams {
    let (matrices, vectors) = param_ids(model);
    for id in matrices {
        if let Some(g) = grads.remove::<2>(id) {
            grads.register(id, g * coef.clone().unsqueeze::<2>());
        }
    }
    for id in vectors {
        if let Some(g) = grads.remove::<1>(id) {
            grads.register(id, g * coef.clone());
        }
    }
    grads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::language_model::LstmLanguageModelConfig;
    use burn::tensor::{Device, Int};

    /// The norm is that of every gradient's values together (summed in f64 by hand here);
    /// clipping scales every gradient by `max / (norm + 1e-6)` and leaves small ones alone
    /// (bit for bit), on flex (the fused sum in f64, read) and on ndarray (summed in f32, the
    /// coefficient left on the device).
    #[test]
    #[allow(deprecated)] // ndarray stands for every backend without the fused sum (a GPU's)
    fn clipping_scales_every_gradient_to_the_global_norm() {
        let _rng = crate::test_support::device_rng();
        for (device, norm_tolerance) in [(Device::flex(), 1e-9), (Device::ndarray(), 1e-6)] {
            clips_on(device.autodiff(), norm_tolerance);
        }
    }

    fn clips_on(device: Device, norm_tolerance: f64) {
        device.seed(4);
        let model = LstmLanguageModelConfig::new(6)
            .with_embedding_dim(3)
            .with_hidden_dim(5)
            .init(&device);
        let inputs = Tensor::<2, Int>::from_data([[1, 2, 3], [4, 5, 0]], &device);
        let grads = || {
            let (loss, _, _) = model.loss(inputs.clone(), inputs.clone(), None);
            GradientsParams::from_grads(loss.backward(), &model)
        };
        let (matrices, vectors) = param_ids(&model);
        let values = |g: &GradientsParams| -> Vec<f64> {
            let mut all = Vec::new();
            for &id in &matrices {
                all.extend(
                    g.get::<2>(id)
                        .unwrap()
                        .into_data()
                        .iter::<f32>()
                        .map(f64::from),
                );
            }
            for &id in &vectors {
                all.extend(
                    g.get::<1>(id)
                        .unwrap()
                        .into_data()
                        .iter::<f32>()
                        .map(f64::from),
                );
            }
            all
        };
        let before = values(&grads());
        let norm = before.iter().map(|v| v * v).sum::<f64>().sqrt();
        let computed = grad_norm(&model, &grads());
        assert!(
            (computed - norm).abs() < norm_tolerance * norm.max(1.0),
            "{computed} against {norm}"
        );
        let max = norm / 4.0;
        let clipped = values(&clip_grad_norm(&model, grads(), max));
        let coef = max / (norm + 1e-6);
        for (a, b) in clipped.iter().zip(&before) {
            assert!(
                (a - b * coef).abs() <= 1e-6 * (1.0 + b.abs()),
                "{a} vs {b} * {coef}"
            );
        }
        let kept = values(&clip_grad_norm(&model, grads(), norm * 2.0));
        assert_eq!(kept, before);
    }
}
