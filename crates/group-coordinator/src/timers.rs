//! The group timers: each group reports its earliest deadline; one task sleeps until the
//! earliest of all (a heap keyed by deadline) and runs [`crate::state::Group::tick`]. A group
//! pushes an entry only when its deadline moves earlier, so heartbeats (which only push
//! deadlines later) never touch the heap. The same task runs the offsets retention sweep.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use proto_kafka::ResponseError;
use tokio::sync::watch;
use tracing::info;

use crate::coordinator::{lock, GroupCoordinator};
use crate::state::Group;

/// Longest sleep of the timer task when nothing is due (it also wakes when told).
const MAX_TIMER_SLEEP_MS: i64 = 60_000;

impl GroupCoordinator {
    pub(crate) fn schedule(&self, g: &mut Group) {
        let Some(deadline) = g.next_deadline_ms() else {
            return;
        };
        if g.scheduled_ms.is_some_and(|s| s <= deadline) {
            return;
        }
        g.scheduled_ms = Some(deadline);
        let mut timers = self.timers();
        let earliest = timers.peek().map(|Reverse((d, _))| *d);
        timers.push(Reverse((deadline, g.group_id.clone())));
        drop(timers);
        if earliest.is_none_or(|e| deadline < e) {
            self.timer_wake.notify_one();
        }
    }

    fn timers(&self) -> MutexGuard<'_, BinaryHeap<Reverse<(i64, String)>>> {
        match self.timers.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    fn next_timer_ms(&self) -> Option<i64> {
        self.timers().peek().map(|Reverse((d, _))| *d)
    }

    fn pop_due(&self, now: i64) -> Vec<(i64, String)> {
        let mut timers = self.timers();
        let mut due = Vec::new();
        while let Some(Reverse((d, _))) = timers.peek() {
            if *d > now {
                break;
            }
            if let Some(Reverse(entry)) = timers.pop() {
                due.push(entry);
            }
        }
        due
    }

    /// Expires offsets past retention and forgets empty groups without offsets.
    pub(crate) fn sweep(&self) {
        for (id, slot) in self.snapshot() {
            let write = {
                let mut g = lock(&slot);
                let now = self.now_ms();
                let expired = g.expire_offsets(self.config.offsets_retention_ms, now);
                let dead = g.mark_dead_if_unused(now);
                if !expired.is_empty() {
                    info!(group = %id, offsets = expired.len(), "offsets expired");
                }
                let write = if expired.is_empty() && !dead {
                    None
                } else {
                    self.tombstones(&id, &expired, dead)
                };
                if dead {
                    self.forget(&id, &slot);
                }
                write
            };
            if let Some(w) = write {
                tokio::spawn(async move {
                    let _ = w.complete(ResponseError::UnknownServerError).await;
                });
            }
        }
    }
}

/// The group timers and the periodic retention sweep, until `stop` changes.
pub async fn run_timers(groups: Arc<GroupCoordinator>, mut stop: watch::Receiver<bool>) {
    let sweep_every_ms = groups.config.offsets_retention_check_interval_ms;
    let mut next_sweep_ms = groups.now_ms().saturating_add(sweep_every_ms);
    loop {
        let now = groups.now_ms();
        let due = groups.pop_due(now);
        for (deadline, id) in due {
            if let Some(slot) = groups.get(&id) {
                groups.update(&slot, |g, _, _| {
                    if g.scheduled_ms == Some(deadline) {
                        g.scheduled_ms = None;
                    }
                });
            }
        }
        if now >= next_sweep_ms {
            groups.sweep();
            next_sweep_ms = now.saturating_add(sweep_every_ms);
        }
        let next = groups
            .next_timer_ms()
            .unwrap_or(i64::MAX)
            .min(next_sweep_ms);
        let wait_ms = next
            .saturating_sub(groups.now_ms())
            .clamp(0, MAX_TIMER_SLEEP_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = groups.timer_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
