//! Allocator tuning for the request path.
//!
//! Produce frames and fetch reads are buffers of up to a few MiB, allocated and freed per
//! request. glibc serves allocations above its mmap threshold with fresh mappings and gives
//! freed heap tops back to the kernel, so every request paid page faults and page zeroing for
//! new memory (a third of the broker's CPU on the fetch path, measured with perf in bench/).
//! Fixed thresholds keep freed buffers in the process for reuse instead.

/// Requests larger than this still get their own mapping (and give it back when freed).
const MMAP_THRESHOLD_BYTES: i32 = 64 * 1024 * 1024;
/// Free memory at the top of the heap kept for reuse before any is returned to the kernel.
const TRIM_THRESHOLD_BYTES: i32 = 256 * 1024 * 1024;

pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two allocator parameters; it is called once at start-up,
    // before the runtime's worker threads allocate anything.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
