//! A batch of token sequences with their next-token targets.

use burn::tensor::{Int, Tensor};

/// Input token ids and the id that follows each of them, both `[batch_size, seq_len]`.
#[derive(Debug, Clone)]
pub struct SequenceBatch {
    /// The input ids, `[batch_size, seq_len]`.
    pub inputs: Tensor<2, Int>,
    /// The next id after each input, `[batch_size, seq_len]`.
    pub targets: Tensor<2, Int>,
}
