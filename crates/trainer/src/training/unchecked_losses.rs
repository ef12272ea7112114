//! The losses of the steps trained since the loop last read them. On a GPU (or a remote
//! server) reading a value waits for every kernel queued before it, so the loop reads the
//! losses of many steps at once rather than one per step; on the CPU backends a read waits for
//! nothing and every step's loss is read before its gradients are applied.

use burn::tensor::Tensor;

/// Steps whose losses are read at once where a read waits for the device: one wait per 50
/// steps, and a run that diverges stops at most 49 steps late (nothing trained on a
/// non-finite loss is kept either way).
pub const DEVICE_CHECK_EVERY: usize = 50;

/// A step's loss, still on its device.
struct StepLoss {
    loss: Tensor<1>,
    epoch: usize,
    step: usize,
}

/// The first loss that was not finite: of optimizer step `step` (counted from the start of the
/// run), in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFinite {
    /// The epoch of that step.
    pub epoch: usize,
    /// The step.
    pub step: usize,
    /// Its loss: NaN or infinite.
    pub loss: f64,
}

/// Losses waiting to be read.
pub struct UncheckedLosses {
    every: usize,
    pending: Vec<StepLoss>,
}

impl UncheckedLosses {
    /// Read once `every` steps have waited (1: every step).
    pub fn new(every: usize) -> Self {
        assert!(every >= 1, "a check every {every} steps");
        Self {
            every,
            pending: Vec::new(),
        }
    }

    /// Adds step `step`'s loss (a one-value tensor, detached from the graph here).
    pub fn push(&mut self, loss: Tensor<1>, epoch: usize, step: usize) {
        self.pending.push(StepLoss {
            loss: loss.detach(),
            epoch,
            step,
        });
    }

    /// Whether enough steps wait that they should be read now.
    pub fn due(&self) -> bool {
        self.pending.len() >= self.every
    }

    /// Reads every waiting loss (one read for all of them) and forgets them; the first that is
    /// not finite, if any.
    pub fn check(&mut self) -> Option<NonFinite> {
        if self.pending.is_empty() {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        let values = Tensor::cat(pending.iter().map(|p| p.loss.clone()).collect(), 0).into_data();
        pending
            .iter()
            .zip(values.iter::<f64>())
            .find(|(_, loss)| !loss.is_finite())
            .map(|(p, loss)| NonFinite {
                epoch: p.epoch,
                step: p.step,
                loss,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn loss(value: f32) -> Tensor<1> {
        Tensor::from_floats([value], &Device::flex())
    }

    /// Nothing is due before `every` losses wait; the check finds the first non-finite one
    /// among them (not the later one) and empties the queue.
    #[test]
    fn reads_every_waiting_loss_and_names_the_first_non_finite_step() {
        let mut losses = UncheckedLosses::new(3);
        assert_eq!(losses.check(), None);
        losses.push(loss(2.5), 1, 7);
        losses.push(loss(f32::INFINITY), 1, 8);
        assert!(!losses.due());
        losses.push(loss(f32::NAN), 2, 9);
        assert!(losses.due());
        assert_eq!(
            losses.check(),
            Some(NonFinite {
                epoch: 1,
                step: 8,
                loss: f64::INFINITY
            })
        );
        assert!(!losses.due());
        assert_eq!(losses.check(), None);
        losses.push(loss(1.0), 2, 10);
        assert_eq!(losses.check(), None);
    }
}
