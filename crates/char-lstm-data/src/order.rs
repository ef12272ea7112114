//! A shuffled order of a dataset that is a function of the seed and the epoch alone.
//!
//! burn's own shuffling draws each epoch's order from one running generator, so a process that
//! resumes a run in its fifth epoch would see the first epoch's order again. Here epoch `e`'s
//! order is the same in every process, so a run resumed mid-epoch skips the batches it has
//! seen and continues with the ones an uninterrupted run would have trained on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::data::dataset::{Dataset, DatasetError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

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
        // Distinct, well-mixed streams per (seed, epoch).
        let stream = self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut StdRng::seed_from_u64(stream));
        order
    }
}

impl<D> EpochShuffled<D> {
    /// `inner` shuffled by `seed`, starting at epoch 1; the handle selects the epoch.
    pub fn new(inner: D, seed: u64) -> (Self, EpochOrder) {
        let order = EpochOrder {
            seed,
            epoch: Arc::new(AtomicUsize::new(1)),
        };
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
        let epoch = self.order.epoch.load(Ordering::SeqCst);
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
