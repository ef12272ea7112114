//! What training on burn-train needs: the train and validation steps, gradient clipping and
//! the optimizer.

mod grad_clip;
mod optimizer;
mod step;

pub use grad_clip::{clip_grad_norm, grad_norm};
pub use optimizer::adam;
