//! The optimizer training uses.

use burn::optim::ModuleOptimizer;

use crate::fused;

/// Adam with PyTorch's defaults (so runs compare with the PyTorch reference), and AdamW's
/// decoupled weight decay when `weight_decay` is above 0: each step scales every parameter by
/// `1 - learning_rate * weight_decay` before Adam's update. With the `kernels` feature it is
/// one fused pass per parameter on flex.
pub fn adam(weight_decay: f32) -> ModuleOptimizer {
    fused::adam(weight_decay)
}
