//! CPU time of the broker (from /proc) and of this process (getrusage), sampled at the edges
//! of a measurement window, so the broker's cost is separated from the client's even though
//! both share the machine's two cores.

/// (utime, stime) of a process in seconds, from /proc/PID/stat (fields 14 and 15, in clock
/// ticks): the split tells Strom's own code (user) from the kernel working for it (system:
/// copies into the page cache, fdatasync, TCP). This includes threads that have already exited (tokio's blocking pool retires
/// idle threads), which per-thread schedstat sums would miss; the price is the tick
/// resolution (10 ms at the usual 100 Hz), negligible over windows of seconds.
pub fn process_cpu_s(pid: u32) -> Result<(f64, f64), String> {
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
    let hz = clock_ticks_per_s();
    Ok((ticks(11)? / hz, ticks(12)? / hz))
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

/// Seconds the whole machine's CPUs were busy (all cores), from the first line of
/// /proc/stat: what other processes took is this minus broker and client.
pub fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if ticks.len() < 8 {
        return 0.0;
    }
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    (ticks.iter().sum::<f64>() - ticks[3] - ticks[4]) / clock_ticks_per_s()
}

/// Broker, client and machine CPU over one window.
pub struct CpuWindow {
    broker_pid: Option<u32>,
    broker_start: (f64, f64),
    self_start: f64,
    machine_start: f64,
    wall_start: std::time::Instant,
}

/// What one window cost, in CPU seconds.
pub struct CpuUse {
    pub broker_user: Option<f64>,
    pub broker_sys: Option<f64>,
    pub client: f64,
    pub machine: f64,
    pub wall: f64,
}

impl CpuUse {
    pub fn broker(&self) -> Option<f64> {
        Some(self.broker_user? + self.broker_sys?)
    }

    /// The JSON fields every measuring subcommand reports.
    pub fn json(&self) -> serde_json::Value {
        let r3 = crate::r3;
        let other = self.machine - self.broker().unwrap_or(0.0) - self.client;
        serde_json::json!({
            "broker_cpu_s": self.broker().map(r3),
            "broker_user_s": self.broker_user.map(r3),
            "broker_sys_s": self.broker_sys.map(r3),
            "client_cpu_s": r3(self.client),
            // Cores' worth of CPU taken by everything else over the window (other
            // engineers' builds on a shared machine): the noise indicator of a figure.
            "other_cores": r3(other.max(0.0) / self.wall.max(1e-9)),
        })
    }
}

impl CpuWindow {
    pub fn start(broker_pid: Option<u32>) -> Result<CpuWindow, String> {
        Ok(CpuWindow {
            broker_pid,
            broker_start: match broker_pid {
                Some(p) => process_cpu_s(p)?,
                None => (0.0, 0.0),
            },
            self_start: self_cpu_s(),
            machine_start: machine_busy_s(),
            wall_start: std::time::Instant::now(),
        })
    }

    pub fn stop(&self) -> CpuUse {
        let broker = self.broker_pid.and_then(|p| process_cpu_s(p).ok());
        CpuUse {
            broker_user: broker.map(|b| b.0 - self.broker_start.0),
            broker_sys: broker.map(|b| b.1 - self.broker_start.1),
            client: self_cpu_s() - self.self_start,
            machine: machine_busy_s() - self.machine_start,
            wall: self.wall_start.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_stat() {
        let (u, s) = super::process_cpu_s(std::process::id()).unwrap();
        assert!(u >= 0.0 && s >= 0.0);
        assert!(super::machine_busy_s() > 0.0);
    }
}
