//! Characters in and out: the vocabulary, sampling, generation and evaluation.

pub(crate) mod evaluation;
pub(crate) mod generation;
pub(crate) mod sampling;
pub(crate) mod vocab;
