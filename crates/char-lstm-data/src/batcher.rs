//! Stacking windows into tensors.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use char_lstm::SequenceBatch;

use crate::window::TextWindow;

/// Stacks [`TextWindow`]s of equal length into a [`SequenceBatch`] of `Int` tensors
/// `[batch_size, seq_len]`.
#[derive(Debug, Clone, Default)]
pub struct WindowBatcher;

impl Batcher<TextWindow, SequenceBatch> for WindowBatcher {
    fn batch(&self, items: Vec<TextWindow>, device: &Device) -> SequenceBatch {
        let batch_size = items.len();
        let seq_len = items.first().map_or(0, |w| w.input.len());
        let ids = |part: fn(&TextWindow) -> &[u32]| {
            let values: Vec<i32> = items
                .iter()
                .flat_map(|w| part(w).iter().map(|&id| id as i32))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(values, [batch_size, seq_len]), device)
        };
        SequenceBatch {
            inputs: ids(|w| &w.input),
            targets: ids(|w| &w.target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_windows_row_by_row() {
        let items = vec![
            TextWindow {
                input: vec![1, 2, 3],
                target: vec![2, 3, 4],
            },
            TextWindow {
                input: vec![5, 6, 7],
                target: vec![6, 7, 8],
            },
        ];
        let batch = WindowBatcher.batch(items, &Device::flex());
        assert_eq!(batch.inputs.dims(), [2, 3]);
        let inputs: Vec<i64> = batch
            .inputs
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        let targets: Vec<i64> = batch
            .targets
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap();
        assert_eq!(inputs, vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(targets, vec![2, 3, 4, 6, 7, 8]);
    }
}
