//! The broker's shared state: configuration, the controller and the loader that holds the
//! metadata image it commits, and the replicas hosted here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;
use proto_kafka::ResponseError;
use strom_group_coordinator::GroupCoordinator;
use strom_transaction_coordinator::TransactionCoordinator;

use tracing::info;

use crate::acl::{Authorizer, AuthorizerSource};
use crate::config::{BrokerConfig, RawConfig};
use crate::config_validator::BrokerConfigValidator;
use crate::metadata::controller::{Controller, ControllerConfig, SystemClock};
use crate::metadata::log_client::MetadataLogClient;
use crate::metadata::metadata_log::MetadataLog;
use crate::metadata::{MetadataImage, MetadataLoader, MetadataPublisher};
use crate::replica_manager::ReplicaManager;

/// What the handlers and the controller's door ask of cluster membership: the broker only
/// holds it, so the cluster (which drives the broker) is built and started above it, in the
/// server.
pub trait Membership: Send + Sync {
    /// The live unfenced brokers, as last read.
    fn live_brokers(&self) -> Vec<i32>;
    /// The active controller's id as last known.
    fn controller_id(&self) -> i32;
    /// Whether this node holds the controller lease now.
    fn is_controller(&self) -> bool;
}

/// The transaction coordinator's producer ids, which it takes synchronously under its lock:
/// InitProducerId and EndTxn top them up through the controller before they call it.
pub trait ProducerIdSupply: Send + Sync {
    fn reserve_producer_ids(&self) -> BoxFuture<'_, Result<(), ResponseError>>;
}

/// The parts of a broker that reach back into it (the coordinators' ports hold it weakly),
/// built by the wiring from a handle on the broker they will live in.
pub struct Services {
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TransactionCoordinator>,
    pub producer_ids: Arc<dyn ProducerIdSupply>,
    /// The authorizer, when `authorizer.class.name` configures one.
    pub authz: Option<Arc<dyn Authorizer>>,
    /// Publishers of each committed change after the replica manager and the group
    /// coordinator, in this order (the transaction coordinator, the authorizer, metrics).
    pub publishers: Vec<Arc<dyn MetadataPublisher>>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// The image in force and the publishers each committed change is handed to.
    pub loader: Arc<MetadataLoader>,
    /// Decides and commits metadata changes; reach it through [`Broker::controller`].
    controller: Controller,
    pub replicas: Arc<ReplicaManager>,
    ready: AtomicBool,
    /// Partitions this node can host: the explicit bound, or fewer if open files run out first.
    pub max_partitions: usize,
    /// The consumer groups this node coordinates.
    pub groups: Arc<GroupCoordinator>,
    /// The transactional ids this node coordinates (`__transaction_state` partitions it
    /// leads), beside the groups.
    pub txns: Arc<TransactionCoordinator>,
    /// The transaction coordinator's producer ids, which handlers top up.
    pub txn_cluster: Arc<dyn ProducerIdSupply>,
    /// Set in cluster mode (`cluster.metadata.url`): registrations, the controller lease.
    cluster: OnceLock<Arc<dyn Membership>>,
    /// The authorizer, when `authorizer.class.name` configures one; the checks of
    /// `authz` reach it through [`AuthorizerSource`].
    pub authz: Option<Arc<dyn Authorizer>>,
}

impl Broker {
    /// `services` builds the parts that reach back into the broker from a handle on the
    /// broker they will live in (`wiring::services`), with its configuration and the image
    /// it starts from.
    pub fn new(
        config: BrokerConfig,
        cluster_id: String,
        metadata_log: MetadataLog,
        image: MetadataImage,
        replicas: ReplicaManager,
        services: impl FnOnce(Weak<Broker>, &BrokerConfig, &MetadataImage) -> Services,
    ) -> Arc<Broker> {
        Broker::with_log(
            config,
            cluster_id,
            Arc::new(metadata_log),
            image,
            replicas,
            services,
        )
    }

    /// [`Broker::new`] on any metadata log (the cluster's is in PostgreSQL).
    pub fn with_log(
        config: BrokerConfig,
        cluster_id: String,
        metadata_log: Arc<dyn MetadataLogClient>,
        image: MetadataImage,
        replicas: ReplicaManager,
        services: impl FnOnce(Weak<Broker>, &BrokerConfig, &MetadataImage) -> Services,
    ) -> Arc<Broker> {
        Arc::new_cyclic(|me| {
            let services = services(me.clone(), &config, &image);
            Broker::assemble(config, cluster_id, metadata_log, image, replicas, services)
        })
    }

    fn assemble(
        config: BrokerConfig,
        cluster_id: String,
        metadata_log: Arc<dyn MetadataLogClient>,
        image: MetadataImage,
        replicas: ReplicaManager,
        services: Services,
    ) -> Broker {
        let max_partitions = crate::metadata::controller::MAX_PARTITIONS_PER_BROKER.min(
            crate::memory::partition_capacity(crate::memory::open_files_limit()),
        );
        let loader = Arc::new(MetadataLoader::new(image));
        let controller = Controller::new(
            ControllerConfig {
                node_id: config.node_id,
                num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                delete_topic_enable: config.delete_topic_enable,
                max_partitions,
                files_per_partition: crate::memory::FILES_PER_PARTITION,
                internal_topics: vec![
                    crate::group::OFFSETS_TOPIC.to_string(),
                    strom_transaction_coordinator::TRANSACTION_STATE_TOPIC.to_string(),
                ],
            },
            Arc::new(BrokerConfigValidator::new(&config)),
            Arc::new(SystemClock),
            metadata_log,
            loader.clone(),
        );
        let replicas = Arc::new(replicas.with_static_config(config.raw.clone()));
        loader.register(replicas.clone());
        loader.register(services.groups.clone());
        for publisher in services.publishers {
            loader.register(publisher);
        }
        Broker {
            config,
            cluster_id,
            loader,
            controller,
            replicas,
            ready: AtomicBool::new(false),
            max_partitions,
            groups: services.groups,
            txns: services.txns,
            txn_cluster: services.producer_ids,
            cluster: OnceLock::new(),
            authz: services.authz,
        }
    }

    /// This broker's cluster membership, `None` for the single node.
    pub fn cluster(&self) -> Option<&Arc<dyn Membership>> {
        self.cluster.get()
    }

    pub fn set_cluster(&self, cluster: Arc<dyn Membership>) {
        let _ = self.cluster.set(cluster);
    }

    /// The active controller's id: this node for the single node.
    pub fn controller_id(&self) -> i32 {
        self.cluster()
            .map_or(self.config.node_id, |c| c.controller_id())
    }

    pub fn controller(self: &Arc<Self>) -> &Controller {
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

impl AuthorizerSource for Broker {
    fn authorizer(&self) -> Option<&dyn Authorizer> {
        self.authz.as_deref()
    }
}
