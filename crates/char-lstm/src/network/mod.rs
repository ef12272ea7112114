//! The network: LSTM cells and layers from their gates, and the language model.

pub(crate) mod cell;
pub(crate) mod dropout;
pub(crate) mod language_model;
pub(crate) mod lstm;
pub(crate) mod state;
