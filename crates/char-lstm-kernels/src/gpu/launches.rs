//! Counting and timing the GPU kernels a piece of work launches, through CubeCL's launch
//! observer: the measure of a step's launch overhead that holds on lavapipe as on a real GPU,
//! and where the step's device time goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cubecl::config::{TypeNameFormatLevel, type_name_format};
use cubecl::logging::{LaunchObservation, LaunchObserver, TimingMethod, TimingRequest};

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

/// One kernel's share of some work: how often it was launched and its device time in all.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The kernel's name and its first type argument.
    pub kernel: String,
    /// Its launches.
    pub launches: usize,
    /// The time of all of them together, each run alone.
    pub total: Duration,
    /// Whether every launch was timed on the device; where not (wgpu past its timestamp-query
    /// budget, or a backend without them), the host's wall time around a blocking submit.
    pub device_timed: bool,
}

/// Times every launch, each on its own (the launch path waits for each kernel to finish).
#[derive(Default)]
struct Timings(Mutex<HashMap<&'static str, KernelTime>>);

impl Timings {
    fn entry(&self, kernel: &'static str, update: impl FnOnce(&mut KernelTime)) {
        let mut kernels = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = kernels.entry(kernel).or_insert_with(|| KernelTime {
            kernel: short_name(kernel),
            launches: 0,
            total: Duration::ZERO,
            device_timed: true,
        });
        update(entry)
    }
}

/// The kernel and its first type argument (`KernelBinop | MulOp`), as CubeCL's profiling log
/// names it without the rest, which for a matrix product runs to hundreds of characters.
fn short_name(kernel: &str) -> String {
    let balanced = type_name_format(kernel, TypeNameFormatLevel::Balanced);
    balanced
        .split(" | ")
        .take(2)
        .collect::<Vec<_>>()
        .join(" | ")
}

impl LaunchObserver for Timings {
    fn launched(&self, kernel: &'static str) {
        self.entry(kernel, |k| k.launches += 1);
    }

    fn timing(&self) -> TimingRequest {
        TimingRequest::Resolved
    }

    fn timed(&self, kernel: &'static str, duration: Duration, method: TimingMethod) {
        self.entry(kernel, |k| {
            k.total += duration;
            k.device_timed &= method == TimingMethod::Device;
        });
    }
}

/// Runs `work` with every kernel it launches (on any thread) timed alone, and returns what it
/// returns with each kernel's launches and time, the longest first. Each launch waits for its
/// kernel, so `work` runs slower than it would; the times are each kernel's own cost, not the
/// overlap a pipelined run gets.
pub fn time_launches<R>(work: impl FnOnce() -> R) -> (R, Vec<KernelTime>) {
    let timings = Arc::new(Timings::default());
    let observation = LaunchObservation::new(timings.clone());
    let result = work();
    drop(observation);
    let kernels = std::mem::take(&mut *timings.0.lock().unwrap_or_else(|p| p.into_inner()));
    let mut kernels: Vec<KernelTime> = kernels.into_values().collect();
    kernels.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.kernel.cmp(&b.kernel)));
    (result, kernels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor};

    fn work(device: &Device) -> burn::tensor::TensorData {
        let x = Tensor::<1>::ones([64], device);
        let y = (x.clone() + x).exp();
        y.into_data()
    }

    /// Two elementwise operations, each read back, are two launches on wgpu (Burn's fusion is
    /// off in the test build) and none on flex.
    #[test]
    fn counts_the_launches_of_wgpu_work_and_none_on_flex() {
        let _launches = crate::testing::gpu_launches();
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let _ = work(&wgpu);
        let (_, on_wgpu) = count_launches(|| work(&wgpu));
        let (_, on_flex) = count_launches(|| work(&Device::flex()));
        assert_eq!(on_flex, 0);
        assert!((2..=4).contains(&on_wgpu), "{on_wgpu} launches");
    }

    /// Timing the same work finds the same launches, split by kernel, and their time; the
    /// work's result is unchanged.
    #[test]
    fn times_each_kernel_and_finds_the_counted_launches() {
        let _launches = crate::testing::gpu_launches();
        let wgpu = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let expected = work(&wgpu);
        let (_, counted) = count_launches(|| work(&wgpu));
        let (data, kernels) = time_launches(|| work(&wgpu));
        assert_eq!(data, expected);
        let launched: usize = kernels.iter().map(|k| k.launches).sum();
        assert_eq!(launched, counted, "{kernels:?}");
        assert!(
            kernels.len() >= 2,
            "an addition and an exponential: {kernels:?}"
        );
        assert!(kernels.iter().all(|k| !k.kernel.is_empty()), "{kernels:?}");
        let total: Duration = kernels.iter().map(|k| k.total).sum();
        assert!(total > Duration::ZERO, "{kernels:?}");
        assert!(kernels.windows(2).all(|w| w[0].total >= w[1].total));
    }
}
