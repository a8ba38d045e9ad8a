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

/// Files a partition holds open: its active segment's log. Indexes are kept in memory and
/// written without a held descriptor (`strom_log::offset_index`). Each older segment of a
/// partition keeps its log file open too; the reserve below absorbs a few of those.
pub const FILES_PER_PARTITION: u64 = 1;
/// Descriptors kept for connections, the metadata log and everything else.
const RESERVED_FILES: u64 = 2_000;

/// Raises the soft open-file limit to the hard one. A process-wide side effect: the binary
/// calls it once at start-up, before any thread exists; the broker never does.
pub fn raise_open_files_limit() {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read or write only the struct passed by pointer.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if ok && limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                tracing::warn!("cannot raise the open-file limit to its hard maximum");
            }
        }
    }
}

/// The soft open-file limit in force, or None where it cannot be read.
pub fn open_files_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct passed by pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            return Some(limit.rlim_cur);
        }
    }
    None
}

/// How many partitions fit in `open_files` descriptors, after the reserve.
pub fn partition_capacity(open_files: Option<u64>) -> usize {
    match open_files {
        Some(files) => (files.saturating_sub(RESERVED_FILES) / FILES_PER_PARTITION) as usize,
        None => usize::MAX,
    }
}

/// Fixes the allocator's thresholds (see the module comment). glibc's `mallopt` is not
/// thread-safe against concurrent allocation, so the binary calls this on its main thread
/// before it starts any other.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called from `main` before the runtime (or any other thread) exists, so no
    // allocation runs concurrently with the parameter change.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_keeps_the_reserve() {
        assert_eq!(partition_capacity(Some(RESERVED_FILES)), 0);
        assert_eq!(partition_capacity(Some(RESERVED_FILES + 500)), 500);
        assert_eq!(partition_capacity(Some(10)), 0);
        assert_eq!(partition_capacity(None), usize::MAX);
    }
}
