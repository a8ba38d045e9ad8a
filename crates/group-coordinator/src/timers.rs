//! The group timers: each group reports its earliest deadline; one task sleeps until the
//! earliest of all (a heap keyed by deadline) and runs [`crate::state::Group::tick`]. A group
//! pushes an entry only when its deadline moves earlier, so heartbeats (which only push
//! deadlines later) never touch the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::state::Group;

/// Longest sleep of the timer task when nothing is due (it also wakes when told).
pub const MAX_TIMER_SLEEP_MS: i64 = 60_000;

#[derive(Default)]
pub struct Timers {
    heap: Mutex<BinaryHeap<Reverse<(i64, String)>>>,
    wake: Notify,
}

impl Timers {
    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Reverse<(i64, String)>>> {
        match self.heap.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    /// Arms `g`'s next deadline, if it moved earlier than the one armed.
    pub fn schedule(&self, g: &mut Group) {
        let Some(deadline) = g.next_deadline_ms() else {
            return;
        };
        if g.scheduled_ms.is_some_and(|s| s <= deadline) {
            return;
        }
        g.scheduled_ms = Some(deadline);
        let mut heap = self.heap();
        let earliest = heap.peek().map(|Reverse((d, _))| *d);
        heap.push(Reverse((deadline, g.group_id.clone())));
        drop(heap);
        if earliest.is_none_or(|e| deadline < e) {
            self.wake.notify_one();
        }
    }

    pub fn next_ms(&self) -> Option<i64> {
        self.heap().peek().map(|Reverse((d, _))| *d)
    }

    /// Removes and returns the entries due at `now_ms`: (deadline, group id).
    pub fn pop_due(&self, now_ms: i64) -> Vec<(i64, String)> {
        let mut heap = self.heap();
        let mut due = Vec::new();
        while let Some(Reverse((d, _))) = heap.peek() {
            if *d > now_ms {
                break;
            }
            if let Some(Reverse(entry)) = heap.pop() {
                due.push(entry);
            }
        }
        debug_assert!(
            due.windows(2).all(|w| w[0].0 <= w[1].0),
            "due in deadline order"
        );
        due
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn woken(&self) {
        self.wake.notified().await
    }
}
