//! What tests share, here and in the crates that use this one.

use std::sync::{Mutex, MutexGuard};

/// Held by every test that draws from flex's random generator, which is one for the whole
/// process: a test that seeds it twice to draw the same dropout mask again must not have
/// another test's draws land in between.
pub fn device_rng() -> MutexGuard<'static, ()> {
    static GENERATOR: Mutex<()> = Mutex::new(());
    hold(&GENERATOR)
}

/// Held by every test that runs work on wgpu in a test binary that counts launches: CubeCL
/// counts every launch of the process, so another test's kernels must not land in the count.
pub fn gpu_launches() -> MutexGuard<'static, ()> {
    static LAUNCHES: Mutex<()> = Mutex::new(());
    hold(&LAUNCHES)
}

fn hold(lock: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    // A test that failed while holding it leaves nothing to repair.
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
