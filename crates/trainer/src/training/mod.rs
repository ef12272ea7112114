//! burn-train glued to long runs: the training loop, and checkpoints inside and after epochs.

pub mod best_weights;
pub mod checkpointer;
pub mod data_parallel;
pub mod step_checkpoints;
pub mod step_timing;
pub mod strategy;
pub mod unchecked_losses;
pub mod weight_average;
