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

/// Raises the open-file limit to its hard maximum and returns how many partitions fit in it.
pub fn partition_capacity_by_open_files() -> usize {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write or read only the struct passed by pointer.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        if ok {
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                // SAFETY: as above.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            let files: u64 = limit.rlim_cur;
            return (files.saturating_sub(RESERVED_FILES) / FILES_PER_PARTITION) as usize;
        }
    }
    usize::MAX
}

pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two allocator parameters; it is called once at start-up,
    // before the runtime's worker threads allocate anything.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
