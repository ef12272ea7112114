//! The recurrent state of one LSTM layer.

use burn::tensor::{Device, Tensor};

/// The hidden and cell state of one LSTM layer, `h` and `c`, each `[batch_size, hidden_size]`.
#[derive(Debug, Clone)]
pub struct LstmState {
    /// The hidden state `h`, `[batch_size, hidden_size]`: the layer's output at the last step.
    pub hidden: Tensor<2>,
    /// The cell state `c`, `[batch_size, hidden_size]`: the layer's memory.
    pub cell: Tensor<2>,
}

impl LstmState {
    /// The all-zero state a sequence starts from when none is given.
    pub fn zeros(batch_size: usize, hidden_size: usize, device: &Device) -> Self {
        Self {
            hidden: Tensor::zeros([batch_size, hidden_size], device),
            cell: Tensor::zeros([batch_size, hidden_size], device),
        }
    }

    /// The same values cut from the autodiff graph, for truncated backpropagation through time.
    pub fn detach(self) -> Self {
        Self {
            hidden: self.hidden.detach(),
            cell: self.cell.detach(),
        }
    }
}
