//! Kafka's `MetadataLoader`: holds the image in force and hands each committed change to the
//! registered [`MetadataPublisher`]s in registration order. A publisher that fails is logged
//! and counted and keeps the node from reporting ready until it succeeds again; the change
//! stays committed (it is durable before anyone is told).
//!
//! Publishers run on the controller's blocking task with its lock held, so that the next
//! change is validated against an image every subsystem has seen: a publisher must not wait
//! for a metadata change of its own (it would wait for itself); work that needs one is
//! spawned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{error, info};

use crate::image::MetadataImage;
use crate::log_client::{MetadataLogClient, MAX_READ_RECORDS};
use crate::metadata_log::MetadataLogError;
use crate::publisher::{MetadataDelta, MetadataPublisher, PublishError};

pub struct MetadataLoader {
    image: RwLock<Arc<MetadataImage>>,
    publishers: RwLock<Vec<Arc<dyn MetadataPublisher>>>,
    /// Publishers whose last update failed, with the reason.
    failing: Mutex<BTreeMap<&'static str, String>>,
    publish_errors_total: AtomicU64,
}

impl MetadataLoader {
    pub fn new(image: MetadataImage) -> Self {
        MetadataLoader {
            image: RwLock::new(Arc::new(image)),
            publishers: RwLock::new(Vec::new()),
            failing: Mutex::new(BTreeMap::new()),
            publish_errors_total: AtomicU64::new(0),
        }
    }

    /// The image in force: every committed change that has been published.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Adds a publisher after those already registered; it sees the changes from now on.
    pub fn register(&self, publisher: Arc<dyn MetadataPublisher>) {
        let mut g = match self.publishers.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        assert!(
            g.iter().all(|p| p.name() != publisher.name()),
            "publisher {} registered twice",
            publisher.name()
        );
        g.push(publisher);
    }

    pub fn publisher_names(&self) -> Vec<&'static str> {
        self.registered().iter().map(|p| p.name()).collect()
    }

    /// Runs every publisher, in order, on `next` (the result of `delta` on the image in
    /// force), then swaps `next` in as the image readers see, and returns it. Readers see
    /// the change only once every publisher has applied it, so no client is told of a topic
    /// whose partitions are not open yet. The caller serialises calls.
    pub fn publish(&self, delta: MetadataDelta, next: MetadataImage) -> Arc<MetadataImage> {
        let next = Arc::new(next);
        let current = self.image();
        assert!(
            Arc::ptr_eq(&current, &delta.previous),
            "a delta is published on the image it was made from"
        );
        assert!(
            next.offset >= current.offset,
            "the image never moves backwards ({} after {})",
            next.offset,
            current.offset
        );
        for publisher in self.registered() {
            let result = publisher.on_metadata_update(&delta, &next);
            self.record(publisher.name(), result, next.offset);
        }
        let mut g = match self.image.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        assert!(Arc::ptr_eq(&g, &current), "publications are serialised");
        *g = next.clone();
        next
    }

    /// Reads what `log` has committed beyond the image in force and publishes it as one
    /// delta: how a node that did not write a change learns of it. Returns the records read.
    pub fn catch_up(&self, log: &dyn MetadataLogClient) -> Result<usize, MetadataLogError> {
        let mut total = 0;
        loop {
            let previous = self.image();
            let records = log.read(previous.offset + 1, MAX_READ_RECORDS)?;
            if records.is_empty() {
                return Ok(total);
            }
            let mut next = (*previous).clone();
            for (offset, record) in &records {
                next.apply(*offset, record)
                    .map_err(|source| MetadataLogError::Apply {
                        offset: *offset,
                        source,
                    })?;
            }
            total += records.len();
            let delta = MetadataDelta {
                previous,
                records: records.into_iter().map(|(_, r)| r).collect(),
            };
            self.publish(delta, next);
        }
    }

    /// False while some publisher's last update failed.
    pub fn is_healthy(&self) -> bool {
        self.failing_map().is_empty()
    }

    /// The publishers whose last update failed, and why.
    pub fn failing(&self) -> Vec<(&'static str, String)> {
        self.failing_map()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Failed publisher updates since start-up (Kafka's metadata-apply-error-count).
    pub fn publish_errors_total(&self) -> u64 {
        self.publish_errors_total.load(Ordering::Relaxed)
    }

    fn record(&self, name: &'static str, result: Result<(), PublishError>, offset: i64) {
        match result {
            Ok(()) => {
                if self.failing_map().remove(name).is_some() {
                    info!(publisher = name, offset, "metadata publisher recovered");
                }
            }
            Err(e) => {
                self.publish_errors_total.fetch_add(1, Ordering::Relaxed);
                error!(publisher = name, offset, error = %e, "metadata publisher failed; the change stays committed");
                self.failing_map().insert(name, e.reason);
            }
        }
    }

    fn registered(&self) -> Vec<Arc<dyn MetadataPublisher>> {
        match self.publishers.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn failing_map(&self) -> MutexGuard<'_, BTreeMap<&'static str, String>> {
        match self.failing.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
