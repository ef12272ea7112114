//! Counting the GPU kernels a piece of work launches, through CubeCL's launch observer: the
//! measure of a step's launch overhead that holds on lavapipe as on a real GPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cubecl::logging::{LaunchObservation, LaunchObserver};

/// Counts every launch reported to it.
#[derive(Default)]
struct Launches(AtomicUsize);

impl LaunchObserver for Launches {
    fn launched(&self, _kernel: &'static str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `work` and returns what it returns with the number of kernels launched on any CubeCL
/// backend (wgpu, cuda) meanwhile, by any thread; work on flex launches none. CubeCL has one
/// observer slot per process, so the count is of everything launched while `work` runs.
pub fn count_launches<R>(work: impl FnOnce() -> R) -> (R, usize) {
    let launches = Arc::new(Launches::default());
    let observation = LaunchObservation::new(launches.clone());
    let result = work();
    drop(observation);
    (result, launches.0.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor};

    /// Two elementwise operations, each read back, are two launches on wgpu (Burn's fusion is
    /// off in the test build) and none on flex.
    #[test]
    fn counts_the_launches_of_wgpu_work_and_none_on_flex() {
        let _launches = crate::testing::gpu_launches();
        let work = |device: &Device| {
            let x = Tensor::<1>::ones([64], device);
            let y = (x.clone() + x).exp();
            y.into_data()
        };
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let _ = work(&wgpu);
        let (_, on_wgpu) = count_launches(|| work(&wgpu));
        let (_, on_flex) = count_launches(|| work(&Device::flex()));
        assert_eq!(on_flex, 0);
        assert!((2..=4).contains(&on_wgpu), "{on_wgpu} launches");
    }
}
