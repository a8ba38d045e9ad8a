//! The controller (Kafka's `QuorumController` for a quorum of one writer): it validates a
//! request against the image in force, turns it into metadata records, and commits them
//! through the metadata log seam; the [`MetadataLoader`] then publishes the change. It knows
//! nothing of the broker: what it needs from outside comes through the ports given at
//! construction ([`ConfigValidator`], [`ControllerConfig`], [`Clock`]).
//!
//! Changes are serialised by one async mutex held from validation to publication, so each is
//! validated against the image the previous one left. The append (with its fsync) and the
//! publishers run on tokio's blocking pool, never on an async runtime thread.

mod configs;
mod leadership;
mod placement;
mod security;
mod topics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto_kafka::ResponseError;
use thiserror::Error;
use tracing::warn;

use crate::image::MetadataImage;
use crate::loader::MetadataLoader;
use crate::log_client::MetadataLogClient;
use crate::metadata_log::MetadataLogError;
use crate::publisher::MetadataDelta;
use crate::records::{BrokerEndpoint, MetadataRecord};

pub use configs::{apply_change, ConfigChange};
pub use leadership::balance_leaders;
pub use placement::{place_replicas, usable_brokers};
pub use security::{acl_record, MAX_ACLS, MAX_ACL_FILTERS, MAX_SCRAM_ALTERATIONS};
pub use topics::{
    validate_topic_name, CreatedTopic, PartitionIncrease, TopicRef, TopicRequest,
    MAX_TOPIC_NAME_LEN,
};

/// Explicit bound on partitions one broker hosts: each holds open files and memory.
pub const MAX_PARTITIONS_PER_BROKER: usize = 50_000;
/// Producer ids come in blocks recorded in the metadata log before use.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error(transparent)]
    MetadataLog(#[from] MetadataLogError),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("a metadata commit did not finish: {0}")]
    Task(String),
}

/// A refusal with Kafka's error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

impl ApiError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code: e.code(),
            message: message.into(),
        }
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        tracing::error!(error = %e, "metadata change failed");
        // A lost position race means another controller is writing: Kafka's answer to a
        // client of a controller that is no longer active.
        let code = match &e {
            ControllerError::MetadataLog(
                MetadataLogError::Conflict { .. } | MetadataLogError::Fenced { .. },
            ) => ResponseError::NotController,
            _ => ResponseError::KafkaStorageError,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The static settings and limits the controller decides with.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node: a dynamic config for a broker other than it is refused, and it counts as
    /// registered (it is the controller of a combined-mode node) before its registration
    /// record is written.
    pub node_id: i32,
    /// `num.partitions`, `default.replication.factor`, `delete.topic.enable`.
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub delete_topic_enable: bool,
    /// Partitions one broker can host: the explicit bound, or fewer if open files run out.
    pub max_partitions: usize,
    /// For the message that explains `max_partitions`.
    pub files_per_partition: u64,
    /// Topics the broker keeps for itself (`__consumer_offsets`): never deleted by a client.
    pub internal_topics: Vec<String>,
}

/// Kafka's `ConfigurationValidator` / `KafkaConfigSchema` as the controller needs them: the
/// broker's knowledge of config names, types, defaults and how they combine. `Err` carries
/// the reason for an INVALID_CONFIG.
pub trait ConfigValidator: Send + Sync {
    /// Whether a topic with these overrides is valid under the broker settings of `image`.
    fn validate_topic(
        &self,
        image: &MetadataImage,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), String>;

    /// For a list-typed topic config, its default under `image` (the base of APPEND and
    /// SUBTRACT); `None` for a config that is not a list.
    fn topic_list_default(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Option<String>, String>;

    /// For a list-typed broker config, its value in force under `image`; `None` otherwise.
    fn broker_list_value(&self, image: &MetadataImage, name: &str) -> Option<String>;

    /// Whether a broker config may be changed at run time.
    fn is_dynamic_broker_config(&self, name: &str) -> bool;

    /// The command-line flag that pins a broker config (it then wins over dynamic values).
    fn pinned_by(&self, name: &str) -> Option<String>;

    /// The whole check of new dynamic broker settings: `cluster` (for every broker) and
    /// `this` (this node's) would be in force; `changed` names what the request changes, and
    /// `cluster_wide` says which of the two it edits.
    fn validate_broker_change(
        &self,
        image: &MetadataImage,
        changed: &[String],
        cluster_wide: bool,
        cluster: &BTreeMap<String, String>,
        this: &BTreeMap<String, String>,
    ) -> Result<(), String>;
}

/// Milliseconds since the Unix epoch: batch timestamps.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::metadata_log::now_ms()
    }
}

/// Held from validation to publication. `closed` once the log is closed.
struct Sequencer {
    closed: bool,
}

pub struct Controller {
    config: ControllerConfig,
    validator: Arc<dyn ConfigValidator>,
    clock: Arc<dyn Clock>,
    log: Arc<dyn MetadataLogClient>,
    loader: Arc<MetadataLoader>,
    sequencer: Arc<tokio::sync::Mutex<Sequencer>>,
    /// The current block of producer ids: (next to hand out, end of block).
    producer_ids: Mutex<(i64, i64)>,
    /// In a cluster, the live unfenced brokers (from their heartbeats): new replicas go on
    /// them only, and on all of them. `None` for the single node.
    live_brokers: Mutex<Option<Vec<i32>>>,
}

type Guard = tokio::sync::OwnedMutexGuard<Sequencer>;

impl Controller {
    pub fn new(
        config: ControllerConfig,
        validator: Arc<dyn ConfigValidator>,
        clock: Arc<dyn Clock>,
        log: Arc<dyn MetadataLogClient>,
        loader: Arc<MetadataLoader>,
    ) -> Controller {
        Controller {
            config,
            validator,
            clock,
            log,
            loader,
            sequencer: Arc::new(tokio::sync::Mutex::new(Sequencer { closed: false })),
            producer_ids: Mutex::new((0, 0)),
            live_brokers: Mutex::new(None),
        }
    }

    /// Sets the live brokers of a cluster (sorted, without repeats), which replica placement
    /// uses from then on instead of the image's registered brokers.
    pub fn set_live_brokers(&self, mut live: Vec<i32>) {
        live.sort_unstable();
        live.dedup();
        *self.live_brokers.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
    }

    /// The live brokers of a cluster, `None` for the single node.
    pub fn live_brokers(&self) -> Option<Vec<i32>> {
        self.live_brokers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where replicas may go: a cluster's live brokers, else the image's registered ones.
    pub(crate) fn placement_brokers(&self, image: &MetadataImage) -> Vec<i32> {
        match self.live_brokers() {
            Some(live) if !live.is_empty() => live,
            _ => usable_brokers(image, self.config.node_id),
        }
    }

    /// Reads what the log holds past the image and publishes it, serialised with this
    /// controller's own changes (a follower's catch-up, or a new active controller's before
    /// its first change). Returns the records read.
    pub async fn catch_up(&self) -> Result<usize, ControllerError> {
        let guard = self.lock().await;
        if guard.closed {
            return Err(ControllerError::ShuttingDown);
        }
        let log = self.log.clone();
        let loader = self.loader.clone();
        tokio::task::spawn_blocking(move || {
            let _serialised = guard;
            loader.catch_up(&*log).map_err(ControllerError::from)
        })
        .await
        .map_err(|e| ControllerError::Task(e.to_string()))?
    }

    /// Commits the records `plan` makes from the image in force (under the lock, so nothing
    /// changes between planning and the append); nothing is written when it plans none.
    pub async fn commit_planned(
        &self,
        plan: impl FnOnce(&MetadataImage) -> Vec<MetadataRecord>,
    ) -> Result<usize, ControllerError> {
        let guard = self.lock().await;
        let records = plan(&self.image());
        let n = records.len();
        if n > 0 {
            self.commit(guard, records).await?;
        }
        Ok(n)
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn loader(&self) -> &Arc<MetadataLoader> {
        &self.loader
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.loader.image()
    }

    async fn lock(&self) -> Guard {
        self.sequencer.clone().lock_owned().await
    }

    /// Appends `records` at the end the image in force expects, then publishes them. The
    /// guard travels into the blocking task: a caller that goes away mid-commit cannot let
    /// the next change be validated before this one is in force.
    async fn commit(
        &self,
        guard: Guard,
        records: Vec<MetadataRecord>,
    ) -> Result<Arc<MetadataImage>, ControllerError> {
        if guard.closed {
            return Err(ControllerError::ShuttingDown);
        }
        let log = self.log.clone();
        let loader = self.loader.clone();
        let now_ms = self.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            let _serialised = guard;
            commit_blocking(&*log, &loader, records, now_ms)
        })
        .await
        .map_err(|e| ControllerError::Task(e.to_string()))?
    }

    /// Commits the records planned for the valid items of a request in one batch; if that
    /// fails, every item that was valid fails with the storage error (nothing was applied).
    async fn commit_all_or_none<T>(
        &self,
        guard: Guard,
        records: Vec<MetadataRecord>,
        results: Vec<Result<T, ApiError>>,
        validate_only: bool,
    ) -> Vec<Result<T, ApiError>> {
        if validate_only || records.is_empty() {
            return results;
        }
        match self.commit(guard, records).await {
            Ok(_) => results,
            Err(e) => {
                let e = ApiError::from(e);
                results.into_iter().map(|r| r.and(Err(e.clone()))).collect()
            }
        }
    }

    /// Records this broker's advertised endpoints when they differ from the image's.
    pub async fn register_broker(
        &self,
        node_id: i32,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    ) -> Result<(), ControllerError> {
        let guard = self.lock().await;
        let current = self.image();
        if let Some(b) = current.brokers.get(&node_id) {
            if b.endpoints == endpoints && b.rack == rack {
                return Ok(());
            }
        }
        let record = MetadataRecord::RegisterBroker {
            node_id,
            endpoints,
            rack,
        };
        self.commit(guard, vec![record]).await.map(|_| ())
    }

    /// Hands out one producer id, committing a new block of them first when the current one
    /// is used up, so a restart never hands out an id twice.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let guard = self.lock().await;
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let start = self.image().next_producer_id;
        let end = start.checked_add(PRODUCER_ID_BLOCK_SIZE).ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownServerError,
                "producer ids are exhausted",
            )
        })?;
        let record = MetadataRecord::ProducerIds {
            next_producer_id: end,
        };
        self.commit(guard, vec![record]).await?;
        let mut ids = self.producer_block();
        *ids = (start + 1, end);
        Ok(start)
    }

    fn take_producer_id(&self) -> Option<i64> {
        let mut ids = self.producer_block();
        (ids.0 < ids.1).then(|| {
            ids.0 += 1;
            ids.0 - 1
        })
    }

    fn producer_block(&self) -> std::sync::MutexGuard<'_, (i64, i64)> {
        match self.producer_ids.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Waits for a change under way, then closes the metadata log: later changes fail with
    /// [`ControllerError::ShuttingDown`].
    pub async fn close(&self) -> Result<(), ControllerError> {
        let mut guard = self.lock().await;
        if guard.closed {
            return Ok(());
        }
        guard.closed = true;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.close())
            .await
            .map_err(|e| ControllerError::Task(e.to_string()))??;
        Ok(())
    }
}

/// The commit itself, blocking: apply to a copy of the image (a record that does not apply
/// writes nothing), append at the offset after the image's last, publish.
pub fn commit_blocking(
    log: &dyn MetadataLogClient,
    loader: &MetadataLoader,
    records: Vec<MetadataRecord>,
    now_ms: i64,
) -> Result<Arc<MetadataImage>, ControllerError> {
    let previous = loader.image();
    let expected = previous.offset + 1;
    let mut next = (*previous).clone();
    for (i, r) in records.iter().enumerate() {
        let offset = expected + i as i64;
        next.apply(offset, r)
            .map_err(|source| MetadataLogError::Apply { offset, source })?;
    }
    if records.is_empty() {
        return Ok(previous);
    }
    let first = log.append(expected, &records, now_ms).inspect_err(|e| {
        if matches!(
            e,
            MetadataLogError::Conflict { .. } | MetadataLogError::Fenced { .. }
        ) {
            warn!(error = %e, "another writer appended to the metadata log; this change is refused");
        }
    })?;
    assert_eq!(first, expected, "an append lands where it was aimed");
    Ok(loader.publish(MetadataDelta { previous, records }, next))
}

#[cfg(test)]
mod tests;
