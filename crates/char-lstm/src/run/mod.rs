//! Run directories: loading a trained run, and writing its files safely.

pub(crate) mod atomic_write;
pub(crate) mod trained_model;
