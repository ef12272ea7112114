//! What the unit tests share.

pub(crate) use char_lstm_kernels::testing::device_rng;
