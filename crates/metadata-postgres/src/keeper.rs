//! [`LeaseKeeper`]: a node's bid for the controller lease, kept on a thread of its own. It
//! acquires the lease when it is free, renews it every third of its time-to-live, and gives
//! it up locally the moment it cannot be sure it still holds it (a renew refused, or no
//! renew answered before the term it last got would end). Writes stay fenced in PostgreSQL
//! either way; this is how the controller learns to stop trying.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::PgMetadataError;
use crate::lease::{ControllerLease, ControllerLeases};
use crate::PgMetadataStore;

#[derive(Default)]
struct State {
    lease: Option<ControllerLease>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn locked(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct LeaseKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts bidding for `node_id` with terms of `ttl_ms`.
    pub fn start(
        store: &PgMetadataStore,
        node_id: i32,
        ttl_ms: i64,
    ) -> Result<LeaseKeeper, PgMetadataError> {
        crate::lease::check_ttl(ttl_ms)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let leases = store.leases();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("controller-lease-{node_id}"))
                .spawn(move || keep(&leases, &shared, node_id, ttl_ms))
                .map_err(|e| PgMetadataError::Unavailable {
                    target: "controller lease thread".into(),
                    reason: e.to_string(),
                })?
        };
        Ok(LeaseKeeper {
            shared,
            thread: Some(thread),
        })
    }

    /// The lease this node holds now, if any.
    pub fn lease(&self) -> Option<ControllerLease> {
        self.shared.locked().lease.clone()
    }

    /// Waits up to `timeout` for this node to hold the lease.
    pub fn wait_for_lease(&self, timeout: Duration) -> Option<ControllerLease> {
        let deadline = Instant::now().checked_add(timeout);
        let mut g = self.shared.locked();
        loop {
            if let Some(l) = &g.lease {
                return Some(l.clone());
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    d - now
                }
                None => Duration::from_secs(3600),
            };
            g = match self.shared.changed.wait_timeout(g, wait) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Stops bidding and releases the lease if held (a controlled shutdown: another node
    /// takes over without waiting for the term to end).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.locked().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sleeps up to `d` unless asked to stop; `true` when it should stop.
fn pause(shared: &Shared, d: Duration) -> bool {
    let g = shared.locked();
    if g.stop {
        return true;
    }
    let g = match shared.changed.wait_timeout_while(g, d, |s| !s.stop) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    };
    g.stop
}

fn set(shared: &Shared, lease: Option<ControllerLease>) {
    shared.locked().lease = lease;
    shared.changed.notify_all();
}

fn keep(leases: &ControllerLeases, shared: &Shared, node_id: i32, ttl_ms: i64) {
    let ttl = Duration::from_millis(ttl_ms.unsigned_abs());
    let period = ttl / 3;
    // When the term this node last got ends, by the local clock (measured from before the
    // call that got it, so never later than PostgreSQL's).
    let mut held: Option<(ControllerLease, Instant)> = None;
    let period = period.max(Duration::from_millis(10));
    loop {
        let asked = Instant::now();
        match &held {
            None => match leases.acquire(node_id, ttl_ms) {
                Ok(lease) => {
                    info!(
                        node_id,
                        epoch = lease.epoch,
                        "this node holds the controller lease"
                    );
                    set(shared, Some(lease.clone()));
                    held = Some((lease, asked + ttl));
                }
                Err(PgMetadataError::LeaseHeld { .. }) => {}
                Err(e) => warn!(node_id, error = %e, "cannot bid for the controller lease"),
            },
            Some((lease, ends)) => match leases.renew(lease, ttl_ms) {
                Ok(renewed) => {
                    set(shared, Some(renewed.clone()));
                    held = Some((renewed, asked + ttl));
                }
                Err(e) => {
                    let lost = !e.is_retriable() || Instant::now() >= *ends;
                    if lost {
                        warn!(node_id, epoch = lease.epoch, error = %e, "the controller lease is lost");
                        set(shared, None);
                        held = None;
                    } else {
                        warn!(node_id, error = %e, "cannot renew the controller lease yet");
                    }
                }
            },
        }
        if let Some((_, ends)) = &held {
            if Instant::now() >= *ends {
                set(shared, None);
                held = None;
            }
        }
        if pause(shared, period) {
            break;
        }
    }
    if let Some((lease, _)) = held {
        set(shared, None);
        if let Err(e) = leases.release(&lease) {
            warn!(node_id, error = %e, "the controller lease was not released");
        }
    }
}
