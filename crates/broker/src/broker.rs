//! The broker's shared state: configuration, the current metadata image, the metadata log that
//! changes it, and the replicas hosted here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tracing::info;

use crate::config::{BrokerConfig, RawConfig};
use crate::controller::ControllerError;
use crate::metadata::metadata_log::MetadataLog;
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::replica_manager::ReplicaManager;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    image: RwLock<Arc<MetadataImage>>,
    /// Held for the whole of a metadata change (validate, append, apply), so changes are
    /// serialised exactly as a Raft leader would order them.
    pub(crate) metadata_log: tokio::sync::Mutex<Option<MetadataLog>>,
    pub replicas: ReplicaManager,
    ready: AtomicBool,
    /// The current block of producer ids: (next to hand out, end of block).
    pub(crate) producer_ids: std::sync::Mutex<(i64, i64)>,
    /// Partitions this node can host: the explicit bound, or fewer if open files run out first.
    pub max_partitions: usize,
    /// The consumer groups this node coordinates.
    pub groups: crate::group::GroupCoordinator,
}

impl Broker {
    pub fn new(
        config: BrokerConfig,
        cluster_id: String,
        metadata_log: MetadataLog,
        image: MetadataImage,
        replicas: ReplicaManager,
    ) -> Broker {
        let groups = crate::group::GroupCoordinator::new(config.groups.clone());
        Broker {
            config,
            cluster_id,
            image: RwLock::new(Arc::new(image)),
            metadata_log: tokio::sync::Mutex::new(Some(metadata_log)),
            replicas,
            ready: AtomicBool::new(false),
            producer_ids: std::sync::Mutex::new((0, 0)),
            max_partitions: crate::controller::MAX_PARTITIONS_PER_BROKER
                .min(crate::memory::partition_capacity_by_open_files()),
            groups,
        }
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The broker settings in force with `image`: static ones with the dynamic ones (set by
    /// AlterConfigs, kept in the metadata log) on top. Topic defaults come from here.
    pub fn raw_config_for(&self, image: &MetadataImage) -> RawConfig {
        self.config.raw.with_dynamic(
            &image.broker_configs(""),
            &image.broker_configs(&self.config.node_id.to_string()),
        )
    }

    /// [`Broker::raw_config_for`] the current image.
    pub fn raw_config(&self) -> RawConfig {
        self.raw_config_for(&self.image())
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Appends `records` durably, publishes the new image and brings the replicas in line.
    /// The caller holds the metadata lock (`log`) across its validation and this commit.
    pub(crate) fn commit_locked(
        &self,
        log: &mut Option<MetadataLog>,
        records: &[MetadataRecord],
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        let log = log.as_mut().ok_or(ControllerError::ShuttingDown)?;
        let current = self.image();
        let next = Arc::new(log.commit(&current, records)?);
        // Replicas first: a request that sees the new image must find its partitions hosted
        // (log opening leaves the async worker, so requests run meanwhile). The change is
        // durable, so the image is swapped in even if a replica failed to open.
        let applied = self
            .replicas
            .apply_image(&next, &self.raw_config_for(&next));
        match self.image.write() {
            Ok(mut g) => *g = next.clone(),
            Err(p) => *p.into_inner() = next.clone(),
        }
        applied?;
        let deleted: std::collections::HashSet<String> = current
            .topics
            .values()
            .filter(|t| next.topic_by_id(&t.id).is_none())
            .map(|t| t.name.clone())
            .collect();
        self.groups.on_topics_deleted(self, &deleted);
        crate::metrics::partitions(next.partition_count());
        Ok(next)
    }

    pub async fn close_metadata(&self) {
        if let Some(log) = self.metadata_log.lock().await.take() {
            if let Err(e) = log.close() {
                tracing::warn!(error = %e, "closing the metadata log failed");
            } else {
                info!("metadata log closed");
            }
        }
    }
}
