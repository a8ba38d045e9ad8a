//! Per-principal counts (the gateway's connection and stream limits): below both the
//! authentication layer that enforces them and the connections that hold them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strom_security::KafkaPrincipal;

/// How many of something each principal holds; a [`Held`] gives its unit back.
#[derive(Default)]
pub struct PerPrincipal {
    counts: Mutex<HashMap<Arc<KafkaPrincipal>, usize>>,
}

impl PerPrincipal {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<KafkaPrincipal>, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more for `principal`, unless it already holds `max`.
    pub fn try_take(self: &Arc<Self>, principal: &Arc<KafkaPrincipal>, max: usize) -> Option<Held> {
        let mut counts = self.lock();
        let n = counts.entry(principal.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held {
            owner: self.clone(),
            principal: principal.clone(),
        })
    }

    pub fn held_by(&self, principal: &KafkaPrincipal) -> usize {
        self.lock().get(principal).copied().unwrap_or(0)
    }
}

/// One unit of a [`PerPrincipal`] count, returned when dropped.
pub struct Held {
    owner: Arc<PerPrincipal>,
    principal: Arc<KafkaPrincipal>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.principal)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(n) = counts.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}
