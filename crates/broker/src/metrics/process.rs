//! The process's own resources, read from /proc/self (Linux); elsewhere nothing is reported.

use std::path::Path;

#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

pub fn read() -> ProcessStats {
    let proc = Path::new("/proc/self");
    let mut stats = std::fs::read_to_string(proc.join("stat"))
        .ok()
        .map(|s| parse_stat(&s, clock_ticks_per_second(), page_size_bytes()))
        .unwrap_or_default();
    stats.open_fds = std::fs::read_dir(proc.join("fd"))
        .ok()
        // The directory handle read_dir holds is one of the entries.
        .map(|d| d.count().saturating_sub(1) as u64);
    stats.max_fds = std::fs::read_to_string(proc.join("limits"))
        .ok()
        .and_then(|s| parse_max_open_files(&s));
    stats
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// /proc/self/stat: the command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the last ')'.
fn parse_stat(stat: &str, ticks_per_s: f64, page_bytes: u64) -> ProcessStats {
    let Some(end) = stat.rfind(')') else {
        return ProcessStats::default();
    };
    // After ')' comes field 3 (state); utime is field 14, stime 15, num_threads 20,
    // vsize 23, rss 24 (pages).
    let f: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    ProcessStats {
        cpu_seconds: match (field(14), field(15)) {
            (Some(u), Some(s)) => Some((u + s) as f64 / ticks_per_s),
            _ => None,
        },
        threads: field(20),
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|p| p.saturating_mul(page_bytes)),
        ..ProcessStats::default()
    }
}

fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files            1024                 1048576              files"
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "4242 (str) m (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    7 0 12345 1000000 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096);
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.virtual_bytes, Some(1_000_000));
        assert_eq!(s.resident_bytes, Some(300 * 4096));
        assert_eq!(parse_stat("garbage", 100.0, 4096), ProcessStats::default());
    }

    #[test]
    fn max_open_files_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(parse_max_open_files("Max open files unlimited"), None);
    }

    #[test]
    fn this_process_is_read() {
        let s = read();
        assert!(s.threads.unwrap_or(0) >= 1);
        assert!(s.open_fds.unwrap_or(0) >= 1);
        assert!(s.resident_bytes.unwrap_or(0) > 0);
    }
}
