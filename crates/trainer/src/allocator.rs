//! glibc's allocator settings for training: freed buffers stay with the process.
//!
//! A training step allocates and frees the same large buffers every time (gate activations and
//! their gradients, and with a large vocabulary the logits and their gradient). By default glibc
//! returns such blocks to the kernel when they are freed (they are above its `mmap` threshold,
//! or they leave the top of the heap past its trim threshold), so the next step faults every
//! page in again, and the kernel zeroes each one (`scripts/profile-training.sh` counts the page
//! faults). Serving every block from the heap and never trimming it keeps the pages; the peak
//! resident memory is the same, since every step reaches it anyway.

/// Serves every block from the heap (no `mmap`, whose threshold tops out at 32 MiB, below a
/// large vocabulary's logits) and keeps the heap from shrinking. A no-op where the C library is
/// not glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes the allocator's tuning parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
