//! The broker's shared state: configuration, the controller and the loader that holds the
//! metadata image it commits, and the replicas hosted here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tracing::info;

use crate::config::{BrokerConfig, RawConfig};
use crate::controller::BrokerConfigValidator;
use crate::metadata::controller::{Controller, ControllerConfig, SystemClock};
use crate::metadata::metadata_log::MetadataLog;
use crate::metadata::{
    MetadataDelta, MetadataImage, MetadataLoader, MetadataPublisher, PublishError,
};
use crate::replica_manager::ReplicaManager;

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// The image in force and the publishers each committed change is handed to.
    pub loader: Arc<MetadataLoader>,
    /// Decides and commits metadata changes; reach it through [`Broker::controller`].
    controller: Controller,
    /// What the publishers below reach the broker through, set by the first
    /// [`Broker::controller`] call (every change goes through one).
    publishers_broker: Arc<OnceLock<Weak<Broker>>>,
    pub replicas: ReplicaManager,
    ready: AtomicBool,
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
        let max_partitions = crate::controller::MAX_PARTITIONS_PER_BROKER
            .min(crate::memory::partition_capacity_by_open_files());
        let loader = Arc::new(MetadataLoader::new(image));
        let controller = Controller::new(
            ControllerConfig {
                node_id: config.node_id,
                num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                delete_topic_enable: config.delete_topic_enable,
                max_partitions,
                files_per_partition: crate::memory::FILES_PER_PARTITION,
                internal_topics: vec![crate::group::OFFSETS_TOPIC.to_string()],
            },
            Arc::new(BrokerConfigValidator::new(&config)),
            Arc::new(SystemClock),
            Arc::new(metadata_log),
            loader.clone(),
        );
        let publishers_broker = Arc::new(OnceLock::new());
        register_publishers(&loader, &publishers_broker);
        Broker {
            config,
            cluster_id,
            loader,
            controller,
            publishers_broker,
            replicas,
            ready: AtomicBool::new(false),
            max_partitions,
            groups,
        }
    }

    /// The controller, with the publishers bound to this broker.
    pub fn controller(self: &Arc<Self>) -> &Controller {
        self.publishers_broker.get_or_init(|| Arc::downgrade(self));
        &self.controller
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.loader.image()
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

    /// Serving, and every metadata publisher's last update succeeded: a node whose replicas
    /// do not match the committed image is not ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.loader.is_healthy()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub async fn close_metadata(&self) {
        match self.controller.close().await {
            Ok(()) => info!("metadata log closed"),
            Err(e) => tracing::warn!(error = %e, "closing the metadata log failed"),
        }
    }
}

/// Today's follow-ups of a commit as publishers, in the order they ran: the replicas, the
/// groups, the partition gauge. (The replica manager and the group coordinator become
/// publishers of their own; these adapters then go.)
fn register_publishers(loader: &MetadataLoader, broker: &Arc<OnceLock<Weak<Broker>>>) {
    loader.register(Arc::new(ReplicasPublisher(broker.clone())));
    loader.register(Arc::new(GroupsPublisher(broker.clone())));
    loader.register(Arc::new(MetricsPublisher));
}

fn bound_broker(
    publisher: &'static str,
    broker: &OnceLock<Weak<Broker>>,
) -> Result<Arc<Broker>, PublishError> {
    broker
        .get()
        .and_then(Weak::upgrade)
        .ok_or_else(|| PublishError {
            publisher,
            reason: "the broker is gone or not bound yet".to_string(),
        })
}

struct ReplicasPublisher(Arc<OnceLock<Weak<Broker>>>);

impl MetadataPublisher for ReplicasPublisher {
    fn name(&self) -> &'static str {
        "replica_manager"
    }

    fn on_metadata_update(
        &self,
        _delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        let broker = bound_broker(self.name(), &self.0)?;
        broker
            .replicas
            .apply_image(image, &broker.raw_config_for(image))
            .map_err(|e| PublishError {
                publisher: self.name(),
                reason: e.to_string(),
            })
    }
}

struct GroupsPublisher(Arc<OnceLock<Weak<Broker>>>);

impl MetadataPublisher for GroupsPublisher {
    fn name(&self) -> &'static str {
        "group_coordinator"
    }

    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        let deleted = delta.deleted_topic_names(image);
        if deleted.is_empty() {
            return Ok(());
        }
        let broker = bound_broker(self.name(), &self.0)?;
        broker.groups.on_topics_deleted(&broker, &deleted);
        Ok(())
    }
}

struct MetricsPublisher;

impl MetadataPublisher for MetricsPublisher {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn on_metadata_update(
        &self,
        _delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        crate::metrics::partitions(image.partition_count());
        Ok(())
    }
}
