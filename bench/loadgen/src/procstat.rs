//! CPU time of the broker (from /proc) and of this process (getrusage), sampled at the edges
//! of a measurement window, so the broker's cost is separated from the client's even though
//! both share the machine's two cores.

/// utime + stime of a process in seconds, from /proc/PID/stat (fields 14 and 15, in clock
/// ticks). This includes threads that have already exited (tokio's blocking pool retires
/// idle threads), which per-thread schedstat sums would miss; the price is the tick
/// resolution (10 ms at the usual 100 Hz), negligible over windows of seconds.
pub fn process_cpu_s(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .ok_or("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| "malformed /proc stat".to_string())
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_s())
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// This process's user + system CPU seconds (all threads, librdkafka's included).
pub fn self_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Broker and client CPU over one window.
pub struct CpuWindow {
    broker_pid: Option<u32>,
    broker_start: f64,
    self_start: f64,
}

impl CpuWindow {
    pub fn start(broker_pid: Option<u32>) -> Result<CpuWindow, String> {
        Ok(CpuWindow {
            broker_pid,
            broker_start: match broker_pid {
                Some(p) => process_cpu_s(p)?,
                None => 0.0,
            },
            self_start: self_cpu_s(),
        })
    }

    /// (broker CPU s, or None without a pid; client CPU s).
    pub fn stop(&self) -> (Option<f64>, f64) {
        let broker = self
            .broker_pid
            .and_then(|p| process_cpu_s(p).ok())
            .map(|c| c - self.broker_start);
        (broker, self_cpu_s() - self.self_start)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_stat() {
        let c = super::process_cpu_s(std::process::id()).unwrap();
        assert!(c >= 0.0);
    }
}
