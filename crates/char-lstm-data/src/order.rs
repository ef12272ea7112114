//! A shuffled order of a dataset, or a rotation of its streams, that is a function of the seed
//! and the epoch alone.
//!
//! burn's own shuffling draws each epoch's order from one running generator, so a process that
//! resumes a run in its fifth epoch would see the first epoch's order again. Here epoch `e`'s
//! order is the same in every process, so a run resumed mid-epoch skips the batches it has
//! seen and continues with the ones an uninterrupted run would have trained on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataset::{Dataset, DatasetError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::window::{TextWindow, TextWindows};

/// `inner`'s items in the order of the current epoch (set with [`EpochOrder::set_epoch`]).
pub struct EpochShuffled<D> {
    inner: D,
    order: EpochOrder,
    /// The epoch the cached permutation belongs to, and the permutation.
    cache: Mutex<Option<(usize, Arc<[usize]>)>>,
}

/// Selects the epoch whose order an [`EpochShuffled`] dataset serves; clones share it.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    seed: u64,
    epoch: Arc<AtomicUsize>,
}

impl EpochOrder {
    /// Serve epoch `epoch`'s order from now on (epochs count from 1).
    pub fn set_epoch(&self, epoch: usize) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// The permutation of `0..len` for `epoch`.
    pub fn permutation(&self, epoch: usize, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut self.rng(epoch));
        order
    }

    /// The rotation, in `0..len`, for `epoch`.
    pub fn rotation(&self, epoch: usize, len: usize) -> usize {
        self.rng(epoch).random_range(0..len.max(1))
    }

    /// Distinct, well-mixed random streams per (seed, epoch).
    fn rng(&self, epoch: usize) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn starting_at_epoch_1(seed: u64) -> Self {
        Self {
            seed,
            epoch: Arc::new(AtomicUsize::new(1)),
        }
    }

    fn epoch(&self) -> usize {
        self.epoch.load(Ordering::SeqCst)
    }
}

/// Streams of text ([`TextWindows::streams`]) that start at another place of the training text
/// every epoch: each epoch reads the text as a ring rotated by [`EpochOrder::rotation`], so
/// each batch groups other stretches of the text and the truncation of backpropagation falls
/// elsewhere, while every batch still continues the one before, row by row.
pub struct EpochRotated {
    streams: TextWindows,
    order: EpochOrder,
}

impl EpochRotated {
    /// `streams` rotated by `seed`, starting at epoch 1; the handle selects the epoch.
    pub fn new(streams: TextWindows, seed: u64) -> (Self, EpochOrder) {
        let order = EpochOrder::starting_at_epoch_1(seed);
        let dataset = Self {
            streams,
            order: order.clone(),
        };
        (dataset, order)
    }
}

impl Dataset<TextWindow> for EpochRotated {
    fn get(&self, index: usize) -> Result<TextWindow, DatasetError> {
        let by = self
            .order
            .rotation(self.order.epoch(), self.streams.text_len());
        Ok(self.streams.rotated(index, by))
    }

    fn len(&self) -> usize {
        self.streams.len()
    }
}

impl<D> EpochShuffled<D> {
    /// `inner` shuffled by `seed`, starting at epoch 1; the handle selects the epoch.
    pub fn new(inner: D, seed: u64) -> (Self, EpochOrder) {
        let order = EpochOrder::starting_at_epoch_1(seed);
        let dataset = Self {
            inner,
            order: order.clone(),
            cache: Mutex::new(None),
        };
        (dataset, order)
    }
}

impl<I, D: Dataset<I>> Dataset<I> for EpochShuffled<D> {
    /// # Panics
    /// If `index >= len()`, as every dataset.
    fn get(&self, index: usize) -> Result<I, DatasetError> {
        let epoch = self.order.epoch();
        let permutation = {
            let mut cache = self.cache.lock().expect("not poisoned");
            match &*cache {
                Some((cached, permutation)) if *cached == epoch => permutation.clone(),
                _ => {
                    let permutation: Arc<[usize]> =
                        self.order.permutation(epoch, self.inner.len()).into();
                    *cache = Some((epoch, permutation.clone()));
                    permutation
                }
            }
        };
        self.inner.get(permutation[index])
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    fn windows(dataset: &EpochRotated) -> Vec<TextWindow> {
        (0..dataset.len())
            .map(|i| dataset.get(i).unwrap())
            .collect()
    }

    /// Each epoch rotates the streams by its own amount, the same in a process that starts at
    /// that epoch; within an epoch every row continues the same row of the batch before.
    #[test]
    fn rotated_streams_move_each_epoch_and_still_continue() {
        let tokens: Arc<[u32]> = (0..1_000).collect();
        let (streams, seq_len) = (4, 10);
        let cut = || TextWindows::streams(tokens.clone(), 0..1_000, seq_len, streams, "t").unwrap();
        let (dataset, order) = EpochRotated::new(cut(), 9);
        let first = windows(&dataset);
        order.set_epoch(2);
        let second = windows(&dataset);
        assert_ne!(first[0], second[0], "another start in another epoch");
        for epoch in [&first, &second] {
            for (index, window) in epoch.iter().enumerate().skip(streams) {
                let before = &epoch[index - streams];
                assert_eq!(before.target.last(), window.input.first(), "window {index}");
                // The tokens are their positions: the row moved on by one window, round the ring.
                assert_eq!(window.input[0], (before.input[0] + seq_len as u32) % 1_000);
            }
        }
        let (resumed, order) = EpochRotated::new(cut(), 9);
        order.set_epoch(2);
        assert_eq!(windows(&resumed), second);
    }

    fn items(dataset: &EpochShuffled<InMemDataset<u32>>) -> Vec<u32> {
        (0..dataset.len())
            .map(|i| dataset.get(i).unwrap())
            .collect()
    }

    #[test]
    fn each_epoch_is_a_permutation_fixed_by_seed_and_epoch() {
        let values: Vec<u32> = (0..100).collect();
        let (dataset, order) = EpochShuffled::new(InMemDataset::new(values.clone()), 3);
        let first = items(&dataset);
        order.set_epoch(2);
        let second = items(&dataset);
        assert_ne!(first, second, "epochs differ");
        assert_ne!(first, values, "shuffled");
        for epoch_items in [&first, &second] {
            let mut sorted = epoch_items.clone();
            sorted.sort();
            assert_eq!(sorted, values, "a permutation");
        }
        // Another process (another dataset) that starts at epoch 2 sees the same order.
        let (resumed, order) = EpochShuffled::new(InMemDataset::new(values.clone()), 3);
        order.set_epoch(2);
        assert_eq!(items(&resumed), second);
        order.set_epoch(1);
        assert_eq!(items(&resumed), first);
        let (other_seed, _) = EpochShuffled::new(InMemDataset::new(values), 4);
        assert_ne!(items(&other_seed), first);
    }
}
