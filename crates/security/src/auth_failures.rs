//! What happens after a failed authentication: Kafka's
//! `connection.failed.authentication.delay.ms` (the broker waits this long before it
//! answers and closes, so a client cannot retry passwords at full speed) and, beyond
//! Kafka, a per-address limit on failures (an address that failed `max_failures` times
//! within `window_ms` is refused before authenticating until its window ends).
//!
//! Sans-io with the caller's clock. The table of addresses is bounded: a flood of
//! addresses evicts the oldest windows rather than growing without end.

use std::collections::HashMap;
use std::net::IpAddr;

/// Kafka's default `connection.failed.authentication.delay.ms`.
pub const DEFAULT_FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAuthConfig {
    /// `connection.failed.authentication.delay.ms`.
    pub failed_authentication_delay_ms: u64,
    /// Failures one address may have within a window; 0 turns the limit off.
    pub max_failures: u32,
    pub window_ms: u64,
    /// Addresses tracked at most.
    pub max_tracked_addresses: usize,
}

impl Default for FailedAuthConfig {
    fn default() -> Self {
        FailedAuthConfig {
            failed_authentication_delay_ms: DEFAULT_FAILED_AUTHENTICATION_DELAY_MS,
            max_failures: 20,
            window_ms: 60_000,
            max_tracked_addresses: 10_000,
        }
    }
}

/// Whether a new authentication from an address may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Refuse it; the window ends in this many milliseconds.
    Blocked {
        retry_after_ms: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    failures: u32,
}

#[derive(Debug)]
pub struct FailedAuthLimiter {
    config: FailedAuthConfig,
    windows: HashMap<IpAddr, Window>,
}

impl FailedAuthLimiter {
    pub fn new(config: FailedAuthConfig) -> Self {
        FailedAuthLimiter {
            config,
            windows: HashMap::new(),
        }
    }

    pub fn config(&self) -> &FailedAuthConfig {
        &self.config
    }

    /// Called when a connection from `addr` starts to authenticate.
    pub fn admit(&mut self, addr: IpAddr, now_ms: u64) -> Admission {
        if self.config.max_failures == 0 {
            return Admission::Allowed;
        }
        let Some(w) = self.windows.get(&addr).copied() else {
            return Admission::Allowed;
        };
        let end_ms = w.start_ms.saturating_add(self.config.window_ms);
        if now_ms >= end_ms {
            self.windows.remove(&addr);
            return Admission::Allowed;
        }
        if w.failures >= self.config.max_failures {
            Admission::Blocked {
                retry_after_ms: end_ms - now_ms,
            }
        } else {
            Admission::Allowed
        }
    }

    /// Records a failed authentication; returns how long to wait before answering and
    /// closing (`connection.failed.authentication.delay.ms`).
    pub fn record_failure(&mut self, addr: IpAddr, now_ms: u64) -> u64 {
        if self.config.max_failures > 0 {
            let window_ms = self.config.window_ms;
            let fresh = Window {
                start_ms: now_ms,
                failures: 0,
            };
            if !self.windows.contains_key(&addr) {
                self.make_room(now_ms);
            }
            let w = self.windows.entry(addr).or_insert(fresh);
            if now_ms >= w.start_ms.saturating_add(window_ms) {
                *w = fresh;
            }
            w.failures = w.failures.saturating_add(1);
        }
        self.config.failed_authentication_delay_ms
    }

    /// A success forgets the address's failures.
    pub fn record_success(&mut self, addr: IpAddr) {
        self.windows.remove(&addr);
    }

    pub fn tracked_addresses(&self) -> usize {
        self.windows.len()
    }

    fn make_room(&mut self, now_ms: u64) {
        if self.windows.len() < self.config.max_tracked_addresses.max(1) {
            return;
        }
        let window_ms = self.config.window_ms;
        self.windows
            .retain(|_, w| now_ms < w.start_ms.saturating_add(window_ms));
        while self.windows.len() >= self.config.max_tracked_addresses.max(1) {
            let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.start_ms)
                .map(|(a, _)| *a)
            else {
                break;
            };
            self.windows.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let mut l = FailedAuthLimiter::new(FailedAuthConfig {
            max_failures: 3,
            window_ms: 1000,
            ..Default::default()
        });
        for t in 0..3 {
            assert_eq!(l.admit(ip(1), t), Admission::Allowed);
            assert_eq!(l.record_failure(ip(1), t), 100);
        }
        assert_eq!(
            l.admit(ip(1), 10),
            Admission::Blocked {
                retry_after_ms: 990
            }
        );
        assert_eq!(l.admit(ip(2), 10), Admission::Allowed);
        assert_eq!(l.admit(ip(1), 1000), Admission::Allowed);
        l.record_failure(ip(2), 10);
        l.record_success(ip(2));
        assert_eq!(l.tracked_addresses(), 0);
    }

    #[test]
    fn table_is_bounded() {
        let mut l = FailedAuthLimiter::new(FailedAuthConfig {
            max_failures: 1,
            window_ms: 1_000_000,
            max_tracked_addresses: 16,
            ..Default::default()
        });
        for i in 0..=255u8 {
            l.record_failure(ip(i), u64::from(i));
            assert!(l.tracked_addresses() <= 16);
        }
        // The newest are still blocked; the oldest were evicted.
        assert!(matches!(l.admit(ip(255), 300), Admission::Blocked { .. }));
        assert_eq!(l.admit(ip(0), 300), Admission::Allowed);
    }

    #[test]
    fn zero_max_failures_only_delays() {
        let mut l = FailedAuthLimiter::new(FailedAuthConfig {
            max_failures: 0,
            failed_authentication_delay_ms: 250,
            ..Default::default()
        });
        for t in 0..100 {
            assert_eq!(l.record_failure(ip(1), t), 250);
        }
        assert_eq!(l.admit(ip(1), 100), Admission::Allowed);
        assert_eq!(l.tracked_addresses(), 0);
    }
}
