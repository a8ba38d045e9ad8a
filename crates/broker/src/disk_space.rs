//! Total and free bytes of the filesystem holding the data directory (DescribeLogDirs v4).

use std::path::Path;

/// (total bytes, bytes available to this process), from `df`'s source: statvfs through fs2.
pub fn of(dir: &Path) -> std::io::Result<(i64, i64)> {
    let total = fs2::total_space(dir)?;
    let available = fs2::available_space(dir)?;
    Ok((
        total.min(i64::MAX as u64) as i64,
        available.min(i64::MAX as u64) as i64,
    ))
}
