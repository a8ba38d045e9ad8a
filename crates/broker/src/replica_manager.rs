//! The replicas this node hosts, kept in step with the metadata image (Kafka's ReplicaManager).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use proto_kafka::ResponseError;
use strom_log::{partition_metadata, Log, LogError, TopicPartition};
use strom_metadata::publisher::{MetadataDelta, MetadataPublisher, PublishError};
use tracing::{info, warn};

use crate::config::topic::TopicConfig;
use crate::config::RawConfig;
use crate::metadata::metadata_log::METADATA_TOPIC;
use crate::metadata::{MetadataImage, TopicImage};
use crate::partition::{Leadership, Partition, PartitionError, PartitionLog};
use crate::shared_partition::SharedLog;
use crate::storage;
use strom_shared_storage::SharedStorage;

pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions of the image whose log is damaged (not hosted), with the reason.
    offline: Mutex<HashMap<TopicPartition, String>>,
    /// The image last applied: leadership of partitions not hosted here is read from it.
    image: RwLock<Arc<MetadataImage>>,
    /// The static broker settings; the image's dynamic ones go on top when a change is
    /// published (topic defaults come from them).
    static_config: RawConfig,
    /// Cluster mode with `object.store.url`: topics' partitions are in shared storage.
    shared: Option<SharedHost>,
}

/// The shared-storage partitions of this broker (every live broker opens every partition:
/// there is no data to move, and a new leader serves at once).
struct SharedHost {
    node_id: i32,
    storage: Arc<SharedStorage>,
    runtime: tokio::runtime::Handle,
    map: Arc<RwLock<HashMap<TopicPartition, Arc<SharedLog>>>>,
    /// Partitions whose opening failed (PostgreSQL away): retried in the background until
    /// opened or no longer wanted.
    pending: Arc<Mutex<HashMap<TopicPartition, Wanted>>>,
}

/// Every topic's partitions are in shared storage, the coordinators' `__consumer_offsets`
/// and `__transaction_state` too (they append through `start_append`, so their state
/// survives their broker); only a local metadata log would not be (cluster mode keeps the
/// metadata in PostgreSQL).
fn on_shared_storage(topic: &str) -> bool {
    topic != METADATA_TOPIC
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedHost {
    fn get(&self, tp: &TopicPartition) -> Option<Arc<SharedLog>> {
        read_lock(&self.map).get(tp).cloned()
    }

    /// Updates, drops and opens shared partitions so they match `wanted`.
    fn apply(&self, wanted: HashMap<TopicPartition, Wanted>) {
        let mut to_open = Vec::new();
        let mut claims = Vec::new();
        {
            let mut map = write_lock(&self.map);
            map.retain(|tp, p| match wanted.get(tp) {
                Some((id, leader, config)) if *id == p.topic_id() => {
                    if leader.leader_id == self.node_id && leader.epoch > p.leader_epoch() {
                        claims.push((*id, tp.partition, leader.epoch));
                    }
                    p.set_leadership(*leader);
                    p.set_config(config.clone());
                    true
                }
                _ => false,
            });
            for (tp, w) in &wanted {
                if !map.contains_key(tp) {
                    to_open.push((tp.clone(), w.clone()));
                }
            }
        }
        lock(&self.pending).retain(|tp, _| wanted.contains_key(tp));
        if !claims.is_empty() {
            let storage = Arc::clone(&self.storage);
            self.runtime.spawn(async move {
                for (id, partition, epoch) in claims {
                    if let Err(e) = storage.claim_leader_epoch(id, partition, epoch).await {
                        // The first commit claims it too.
                        warn!(topic_id = %id, partition, epoch, error = %e, "could not claim the leader epoch yet");
                    }
                }
            });
        }
        if to_open.is_empty() {
            return;
        }
        let started = Instant::now();
        let count = to_open.len();
        let opened = match tokio::runtime::Handle::try_current() {
            // Opening reads the index from PostgreSQL; the worker hands its other tasks away
            // meanwhile, so a request never sees a topic whose partitions are not open.
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(open_shared(&self.storage, &to_open)))
            }
            _ => {
                // No runtime to wait on here: every partition opens in the background.
                to_open
                    .iter()
                    .map(|_| Err("opening in the background".to_string()))
                    .collect()
            }
        };
        let mut failed = 0;
        for ((tp, w), result) in to_open.into_iter().zip(opened) {
            match result {
                Ok(p) => {
                    let log = SharedLog::new(tp.clone(), p, w.1, w.2.clone());
                    write_lock(&self.map).insert(tp.clone(), Arc::new(log));
                    lock(&self.pending).remove(&tp);
                }
                Err(e) => {
                    failed += 1;
                    warn!(partition = %tp, error = %e, "cannot open shared partition yet; retrying");
                    let fresh = lock(&self.pending).insert(tp.clone(), w).is_none();
                    if fresh {
                        self.retry_in_background(tp);
                    }
                }
            }
        }
        info!(
            partitions = count,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened shared-storage partitions"
        );
    }

    fn retry_in_background(&self, tp: TopicPartition) {
        let storage = Arc::clone(&self.storage);
        let map = Arc::clone(&self.map);
        let pending = Arc::clone(&self.pending);
        self.runtime.spawn(async move {
            let mut backoff = std::time::Duration::from_millis(200);
            loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                let Some(w) = lock(&pending).get(&tp).cloned() else {
                    return;
                };
                match storage.open_partition(w.0, tp.partition, w.1.epoch).await {
                    Ok(p) => {
                        // Wanted still (the image may have moved on meanwhile)?
                        let Some(w) = lock(&pending).remove(&tp) else {
                            return;
                        };
                        let log = SharedLog::new(tp.clone(), p, w.1, w.2);
                        write_lock(&map).insert(tp.clone(), Arc::new(log));
                        info!(partition = %tp, "shared partition opened");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(partition = %tp, error = %e, "shared partition still cannot open")
                    }
                }
            }
        });
    }
}

async fn open_shared(
    storage: &SharedStorage,
    to_open: &[(TopicPartition, Wanted)],
) -> Vec<Result<Arc<strom_shared_storage::SharedPartition>, String>> {
    futures_util::future::join_all(to_open.iter().map(|(tp, (id, leader, _))| async move {
        storage
            .open_partition(*id, tp.partition, leader.epoch)
            .await
            .map_err(|e| e.to_string())
    }))
    .await
}

impl ReplicaManager {
    /// A manager with Kafka's default broker settings under the image's dynamic ones; the
    /// broker gives its own with [`ReplicaManager::with_static_config`].
    pub fn new(node_id: i32, data_dir: &Path) -> Self {
        ReplicaManager {
            node_id,
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
            offline: Mutex::new(HashMap::new()),
            image: RwLock::new(Arc::new(MetadataImage::empty())),
            static_config: RawConfig::defaults(),
            shared: None,
        }
    }

    /// Topics' partitions (not the internal topics') go on `storage`, opened on the runtime
    /// this is called on.
    pub fn with_shared_storage(mut self, storage: Arc<SharedStorage>) -> Self {
        self.shared = Some(SharedHost {
            node_id: self.node_id,
            storage,
            runtime: tokio::runtime::Handle::current(),
            map: Arc::new(RwLock::new(HashMap::new())),
            pending: Arc::new(Mutex::new(HashMap::new())),
        });
        self
    }

    /// The shared-storage partition hosted here, if any (cluster mode with object storage).
    pub fn shared_partition(&self, topic: &str, partition: i32) -> Option<Arc<SharedLog>> {
        self.shared
            .as_ref()?
            .get(&TopicPartition::new(topic, partition))
    }

    /// The shared storage partitions are kept in (cluster mode with object storage).
    pub fn shared_storage(&self) -> Option<&Arc<SharedStorage>> {
        self.shared.as_ref().map(|s| &s.storage)
    }

    pub fn with_static_config(mut self, raw: RawConfig) -> Self {
        self.static_config = raw;
        self
    }

    /// The partition as a request sees it, if this node leads it, or the error that answers
    /// for it (Kafka's `getPartitionOrError` and leader check): KAFKA_STORAGE_ERROR for a
    /// damaged log, NOT_LEADER_OR_FOLLOWER where the image names another leader or places the
    /// partition elsewhere, UNKNOWN_TOPIC_OR_PARTITION where it knows no such partition.
    pub fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<dyn PartitionLog>, ResponseError> {
        if let Some(shared) = &self.shared {
            let tp = TopicPartition::new(topic, partition);
            match shared.get(&tp) {
                Some(p) if p.leader_id() == self.node_id => return Ok(p),
                Some(_) => return Err(ResponseError::NotLeaderOrFollower),
                // Its opening waits for PostgreSQL: retriable, as an offline log directory.
                None if lock(&shared.pending).contains_key(&tp) => {
                    return Err(ResponseError::KafkaStorageError)
                }
                None => {}
            }
        }
        match self.get(topic, partition) {
            Some(p) if p.leader_id() == self.node_id => Ok(p),
            Some(_) => Err(ResponseError::NotLeaderOrFollower),
            None => Err(self.missing_error(topic, partition)),
        }
    }

    /// The partition a consumer's Fetch reads here: as [`ReplicaManager::leader_partition`],
    /// except that a shared-storage partition is served by any broker the image lists as its
    /// replica (KIP-392's follower fetching: every live broker reads the same committed
    /// batches, and the index it reads is kept current by every broker's commits).
    pub fn fetch_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<dyn PartitionLog>, ResponseError> {
        if let Some(p) = self.shared_partition(topic, partition) {
            let replica_here = self
                .image()
                .topic(topic)
                .and_then(|t| t.partitions.get(&partition))
                .is_some_and(|reg| reg.replicas.contains(&self.node_id));
            if p.leader_id() == self.node_id || replica_here {
                return Ok(p);
            }
        }
        self.leader_partition(topic, partition)
    }

    /// The local replica, for upkeep (flushes, retention, compaction) and the group
    /// coordinator's loading; requests go through [`ReplicaManager::leader_partition`].
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let key = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.read_map().get(&key).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.read_map().values().cloned().collect()
    }

    /// The shared-storage partitions open here (cluster mode with object storage; empty
    /// otherwise): what [`ReplicaManager::all`]'s local logs are for metrics and sizes.
    pub fn all_shared(&self) -> Vec<Arc<SharedLog>> {
        match &self.shared {
            Some(shared) => read_lock(&shared.map).values().cloned().collect(),
            None => Vec::new(),
        }
    }

    /// The partition hosted here behind the seam, a shared one first (in cluster mode with
    /// object storage a topic's partition is shared, and no local log of it is opened).
    pub fn hosted(&self, topic: &str, partition: i32) -> Option<Arc<dyn PartitionLog>> {
        if let Some(p) = self.shared_partition(topic, partition) {
            return Some(p);
        }
        self.get(topic, partition)
            .map(|p| p as Arc<dyn PartitionLog>)
    }

    /// Partitions whose damaged log could not be opened, and why.
    pub fn offline(&self) -> Vec<(TopicPartition, String)> {
        let mut v: Vec<_> = self
            .offline_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// The error for a partition not hosted here: KAFKA_STORAGE_ERROR if its log is damaged
    /// (Kafka's answer for a partition on an offline log directory), NOT_LEADER_OR_FOLLOWER
    /// if the image places it on other brokers, else unknown.
    pub fn missing_error(&self, topic: &str, partition: i32) -> ResponseError {
        let tp = TopicPartition::new(topic, partition);
        if self.offline_map().contains_key(&tp) {
            return ResponseError::KafkaStorageError;
        }
        let elsewhere = self
            .image()
            .topic(topic)
            .and_then(|t| t.partitions.get(&partition))
            .is_some_and(|reg| !reg.replicas.contains(&self.node_id));
        if elsewhere {
            ResponseError::NotLeaderOrFollower
        } else {
            ResponseError::UnknownTopicOrPartition
        }
    }

    fn offline_map(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, String>> {
        match self.offline.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        match self.partitions.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write_map(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        match self.partitions.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Opens, creates, updates and deletes replicas so that they match `image`, with `broker`
    /// the broker settings in force with it (topic defaults come from there).
    pub fn apply_image(
        &self,
        image: &MetadataImage,
        broker: &RawConfig,
    ) -> Result<(), PartitionError> {
        self.set_image(Arc::new(image.clone()));
        self.apply(image, broker)
    }

    fn set_image(&self, image: Arc<MetadataImage>) {
        match self.image.write() {
            Ok(mut g) => *g = image,
            Err(p) => *p.into_inner() = image,
        }
    }

    /// The image last applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn apply(&self, image: &MetadataImage, broker: &RawConfig) -> Result<(), PartitionError> {
        let mut wanted = self.wanted(image, broker)?;
        if let Some(shared) = &self.shared {
            let mut on_shared = HashMap::new();
            wanted.retain(|tp, w| {
                if on_shared_storage(&tp.topic) {
                    on_shared.insert(tp.clone(), w.clone());
                    false
                } else {
                    true
                }
            });
            shared.apply(on_shared);
        }
        self.offline_map().retain(|tp, _| wanted.contains_key(tp));
        self.update_or_remove_hosted(image, &wanted)?;
        let to_open: Vec<_> = {
            let hosted = self.read_map();
            wanted
                .into_iter()
                .filter(|(tp, _)| !hosted.contains_key(tp))
                .collect()
        };
        if to_open.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let count = to_open.len();
        // Opening is file-system work (recovery may scan segments): off the async worker when
        // called on one, so its other tasks move to another worker meanwhile.
        let opened =
            off_async_worker(|| open_logs(&self.data_dir, to_open, &image.deleted_topic_ids));
        let result = self.host_opened(opened);
        info!(
            partitions = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened partition logs"
        );
        result
    }

    /// The replicas `image` places on this node, with their topic's effective config.
    fn wanted(
        &self,
        image: &MetadataImage,
        broker: &RawConfig,
    ) -> Result<HashMap<TopicPartition, Wanted>, PartitionError> {
        let mut wanted = HashMap::new();
        for topic in image.topics.values() {
            let config = self.topic_config(image, topic, broker)?;
            for (p, reg) in &topic.partitions {
                if reg.replicas.contains(&self.node_id) {
                    let leader = Leadership {
                        leader_id: reg.leader,
                        epoch: reg.leader_epoch,
                    };
                    wanted.insert(
                        TopicPartition::new(&topic.name, *p),
                        (topic.id, leader, config.clone()),
                    );
                }
            }
        }
        Ok(wanted)
    }

    fn topic_config(
        &self,
        image: &MetadataImage,
        topic: &TopicImage,
        broker: &RawConfig,
    ) -> Result<TopicConfig, PartitionError> {
        // A stored override that is not valid (any more) is left out, never fatal: the topic
        // keeps its other overrides. Changes are validated before they are stored, so this is
        // data from elsewhere (an older version, a hand-edited log).
        let (config, dropped) =
            TopicConfig::effective_lenient(broker, &image.topic_configs(&topic.name))
                .map_err(|e| PartitionError::Io(std::io::Error::other(e.to_string())))?;
        // Reported when the topic's logs are opened, not at every change.
        let opening = !dropped.is_empty()
            && topic
                .partitions
                .keys()
                .any(|p| self.get(&topic.name, *p).is_none());
        for (name, e) in dropped.iter().filter(|_| opening) {
            warn!(topic = %topic.name, config = %name, error = %e, "ignoring an invalid topic config override; the broker default is used");
        }
        Ok(config)
    }

    /// Hosted replicas the image still places here take its leadership and config; the
    /// others are dropped, their directories deleted (topic deleted) or set aside as strays.
    fn update_or_remove_hosted(
        &self,
        image: &MetadataImage,
        wanted: &HashMap<TopicPartition, Wanted>,
    ) -> Result<(), PartitionError> {
        let existing: Vec<(TopicPartition, Arc<Partition>)> = self
            .read_map()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (tp, partition) in &existing {
            match wanted.get(tp) {
                Some((id, leader, config)) if *id == partition.topic_id => {
                    partition.set_leadership(*leader);
                    if partition.config() != *config {
                        partition.update_config(config.clone())?;
                    }
                }
                _ => {
                    self.write_map().remove(tp);
                    let dir = self.data_dir.join(tp.dir_name());
                    if image.deleted_topic_ids.contains(&partition.topic_id) {
                        info!(partition = %tp, topic_id = %partition.topic_id, "deleting the replica of a deleted topic");
                        if let Err(e) = storage::delete_partition_dir(&dir) {
                            warn!(dir = %dir.display(), error = %e, "could not delete partition directory");
                        }
                    } else {
                        set_aside_as_stray(&dir, "its topic no longer places a replica here");
                    }
                }
            }
        }
        Ok(())
    }

    /// Hosts the logs that opened; a damaged one takes its partition offline.
    fn host_opened(
        &self,
        opened: Vec<(TopicPartition, Wanted, Result<Log, LogError>)>,
    ) -> Result<(), PartitionError> {
        let mut first_error = None;
        let mut map = self.write_map();
        for (tp, (id, leader, config), log) in opened {
            match log {
                Ok(log) => {
                    debug_assert_eq!(log.topic_partition(), &tp);
                    let partition = Partition::new(log, id, leader, config);
                    self.offline_map().remove(&tp);
                    map.insert(tp, Arc::new(partition));
                }
                Err(e @ LogError::Corrupt { .. }) => {
                    // One damaged log takes its partition offline, not the broker down; its
                    // files stay as they are (retried at the next metadata change).
                    tracing::error!(partition = %tp, error = %e, "partition offline: its log is damaged and was neither truncated nor deleted; restore the damaged files, or move the directory aside to start it empty (`strom storage verify` names every bad batch)");
                    self.offline_map().insert(tp, e.to_string());
                }
                Err(e) => {
                    warn!(partition = %tp, error = %e, "cannot open log");
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(map);
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Partition directories that no topic in the image owns. Only a directory whose
    /// `partition.metadata` names a topic id that a replayed RemoveTopic deleted is removed
    /// (a crash came between the deletion and the removal), as are `-delete` directories
    /// (removals already under way). Any other is renamed `<name>.<id>-stray` and kept, with
    /// a WARN (Kafka 3.7+): a damaged or lost metadata log must never cost data.
    pub fn remove_orphans(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let hosted = self.read_map();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !entry.path().is_dir() {
                continue;
            }
            if storage::parse_aside_name(&name, storage::DELETE_DIR_SUFFIX).is_some() {
                info!(dir = %name, "finishing the removal of a deleted partition");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    warn!(dir = %name, error = %e, "could not remove deleted partition directory");
                }
                continue;
            }
            if storage::parse_aside_name(&name, storage::STRAY_DIR_SUFFIX).is_some() {
                warn!(dir = %entry.path().display(), "stray partition directory kept (no topic owns it; `strom storage recover-metadata` takes strays back)");
                continue;
            }
            let Ok(tp) = TopicPartition::parse_dir_name(&name) else {
                continue;
            };
            let in_image = image
                .topic(&tp.topic)
                .is_some_and(|t| t.partitions.contains_key(&tp.partition));
            if tp.topic == METADATA_TOPIC || hosted.contains_key(&tp) || in_image {
                continue;
            }
            match storage::dir_topic_id(&entry.path()) {
                Some(id) if image.deleted_topic_ids.contains(&id) => {
                    info!(dir = %name, topic_id = %id, "removing the directory of a deleted topic");
                    if let Err(e) = storage::delete_partition_dir(&entry.path()) {
                        warn!(dir = %name, error = %e, "could not remove deleted partition directory");
                    }
                }
                _ => set_aside_as_stray(&entry.path(), "no topic in the metadata owns it"),
            }
        }
    }

    /// Flushes and closes every log (clean shutdown: the next start recovers nothing).
    pub async fn shutdown(&self) {
        let all: Vec<(TopicPartition, Arc<Partition>)> = self.write_map().drain().collect();
        for (tp, partition) in all {
            if let Err(e) = partition.flush().await {
                warn!(partition = %tp, error = %e, "flush at shutdown failed");
            }
            if let Err(e) = partition.with_log(|log| log.close()) {
                warn!(partition = %tp, error = %e, "close at shutdown failed");
            }
        }
    }
}

/// A directory in the way of a replica about to open that belongs to another topic id `found`
/// (an earlier topic of the same name): removed if that topic's deletion was replayed, set
/// aside as a stray otherwise.
fn clear_way_for(
    dir: &Path,
    found: uuid::Uuid,
    topic_id: uuid::Uuid,
    deleted: &HashSet<uuid::Uuid>,
) {
    if deleted.contains(&found) {
        info!(dir = %dir.display(), topic_id = %found, "removing the directory of a deleted topic");
        if let Err(e) = storage::delete_partition_dir(dir) {
            warn!(dir = %dir.display(), error = %e, "could not delete partition directory");
        }
    } else {
        set_aside_as_stray(
            dir,
            &format!("it belongs to topic id {found}, not {topic_id}"),
        );
    }
}

fn set_aside_as_stray(dir: &Path, why: &str) {
    if !dir.exists() {
        return;
    }
    match storage::rename_aside(dir, storage::STRAY_DIR_SUFFIX) {
        Ok(stray) => {
            warn!(dir = %dir.display(), stray = %stray.display(), reason = why, "partition directory renamed as a stray and kept, not deleted")
        }
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, reason = why, "could not rename a stray partition directory; left in place")
        }
    }
}

type Wanted = (uuid::Uuid, Leadership, TopicConfig);

/// Runs blocking work from sync code that may be on an async runtime's worker: on a
/// multi-threaded runtime the worker hands its other tasks to the rest first
/// (`block_in_place`); elsewhere (start-up before serving, a current-thread test runtime,
/// no runtime) it just runs.
fn off_async_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Kafka's ReplicaManager is a publisher of the metadata loader: each committed change makes
/// and drops replicas, and moves leadership, before anything reads the new image.
impl MetadataPublisher for ReplicaManager {
    fn name(&self) -> &'static str {
        "replica_manager"
    }

    fn on_metadata_update(
        &self,
        _delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        let raw = self.static_config.with_dynamic(
            &image.broker_configs(""),
            &image.broker_configs(&self.node_id.to_string()),
        );
        self.set_image(image.clone());
        self.apply(image, &raw).map_err(|e| PublishError {
            publisher: self.name(),
            reason: e.to_string(),
        })
    }
}

/// Opening a log is mostly waiting on the file system (directory listing, checkpoint reads, a
/// few opens), so start-up with thousands of partitions opens them on several threads, more
/// than there are cores, to overlap the waits.
const OPEN_THREADS: usize = 8;
/// Below this many logs a thread start costs more than it saves.
const PARALLEL_OPEN_MIN: usize = 32;

fn open_logs(
    data_dir: &Path,
    to_open: Vec<(TopicPartition, Wanted)>,
    deleted_topic_ids: &HashSet<uuid::Uuid>,
) -> Vec<(TopicPartition, Wanted, Result<Log, LogError>)> {
    let open = |(tp, wanted): (TopicPartition, Wanted)| {
        let dir = data_dir.join(tp.dir_name());
        let found = storage::dir_topic_id(&dir);
        if let Some(other) = found.filter(|f| *f != wanted.0) {
            clear_way_for(&dir, other, wanted.0, deleted_topic_ids);
        }
        let log = Log::open(&dir, tp.clone(), wanted.2.log_config()).and_then(|log| {
            // Kafka's partition.metadata: the directory says which topic it belongs to, so
            // it can be told apart from a stray and rebuilt into a lost metadata log.
            if found != Some(wanted.0) {
                partition_metadata::write(&dir, wanted.0.into_bytes())?;
            }
            Ok(log)
        });
        (tp, wanted, log)
    };
    if to_open.len() < PARALLEL_OPEN_MIN {
        return to_open.into_iter().map(open).collect();
    }
    let threads = OPEN_THREADS.min(to_open.len());
    let queue = Mutex::new(to_open.into_iter());
    let next = || match queue.lock() {
        Ok(mut q) => q.next(),
        Err(poisoned) => poisoned.into_inner().next(),
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(item) = next() {
                        done.push(open(item));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker only panics if Log::open does; re-raise it as the sequential code would.
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// An in-process broker of node 0 whose image is made of the records given (no listeners, no
/// registration), for handler tests that need partitions the image places elsewhere.
#[cfg(test)]
pub(crate) mod test_broker {
    use super::*;
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::metadata::metadata_log::MetadataLog;
    use crate::metadata::MetadataRecord;
    use crate::network::connection::{ConnectionInfo, WaitCancel};
    use crate::request::RequestContext;

    pub fn broker(dir: &Path, records: &[MetadataRecord]) -> Arc<Broker> {
        let mut raw = RawConfig::defaults();
        raw.set("log.dirs", dir.to_str().unwrap(), "test").unwrap();
        let config = BrokerConfig::from_raw(raw).unwrap();
        let (metadata_log, _) = MetadataLog::open(dir).unwrap();
        let mut image = MetadataImage::empty();
        for (i, r) in records.iter().enumerate() {
            image.apply(i as i64, r).unwrap();
        }
        let replicas = ReplicaManager::new(0, dir).with_static_config(config.raw.clone());
        replicas.apply_image(&image, &config.raw).unwrap();
        Broker::new(
            config,
            "test-cluster".into(),
            metadata_log,
            image,
            replicas,
            crate::wiring::services,
        )
    }

    /// A request context whose waits are already cancelled: a fetch answers at once.
    pub fn context(api: proto_kafka::messages::ApiKey, version: i16) -> RequestContext {
        let (cancel_tx, cancel) = WaitCancel::new();
        cancel_tx.send_replace(true);
        RequestContext {
            api,
            version,
            correlation_id: 1,
            client_id: "test".into(),
            info: Arc::new(ConnectionInfo::new(
                "PLAINTEXT".into(),
                ([127, 0, 0, 1], 40000).into(),
                cancel,
            )),
        }
    }

    pub fn partition(
        id: uuid::Uuid,
        p: i32,
        replicas: Vec<i32>,
        leader: i32,
        epoch: i32,
    ) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: id,
            partition: p,
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many logs are opened on several threads; each comes back with its own partition and
    /// wanted state, and a log that cannot open is an error of its own, not of the others.
    #[test]
    fn opens_many_logs_in_parallel() {
        let tmp = tempfile::tempdir().unwrap();
        let config = TopicConfig::broker_defaults(&RawConfig::defaults()).unwrap();
        let n = PARALLEL_OPEN_MIN as i32 * 2;
        let tp = |p| TopicPartition {
            topic: "t".into(),
            partition: p,
        };
        // A file where partition 5's directory should be: its log cannot open.
        std::fs::write(tmp.path().join(tp(5).dir_name()), b"").unwrap();
        let wanted = (0..n)
            .map(|p| {
                let leader = Leadership {
                    leader_id: 0,
                    epoch: p,
                };
                (tp(p), (uuid::Uuid::nil(), leader, config.clone()))
            })
            .collect();
        let mut opened = open_logs(tmp.path(), wanted, &HashSet::new());
        opened.sort_by_key(|(tp, _, _)| tp.partition);
        assert_eq!(opened.len(), n as usize);
        for (i, (tp, (_, leader, _), log)) in opened.into_iter().enumerate() {
            assert_eq!(tp.partition, i as i32);
            assert_eq!(leader.epoch, i as i32);
            match log {
                Ok(log) => assert_eq!(log.topic_partition(), &tp),
                Err(_) => assert_eq!(i, 5),
            }
        }
    }

    /// A stored topic override that a log cannot take (max.message.bytes=16, as an older
    /// version could store it) does not stop the topic's logs from opening: that override is
    /// left out, the topic's other overrides stay.
    #[test]
    fn invalid_stored_override_is_left_out() {
        use crate::metadata::records::RESOURCE_TOPIC;
        use crate::metadata::{MetadataImage, MetadataRecord};
        let tmp = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let config = |name: &str, value: &str| MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: "t".into(),
            name: name.into(),
            value: Some(value.into()),
        };
        let mut image = MetadataImage::empty();
        let records = [
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            config("max.message.bytes", "16"),
            config("retention.ms", "7777"),
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![0],
                isr: vec![0],
                leader: 0,
                leader_epoch: 0,
                partition_epoch: 0,
            },
        ];
        for (i, r) in records.iter().enumerate() {
            image.apply(i as i64, r).unwrap();
        }
        let rm = ReplicaManager::new(0, tmp.path());
        rm.apply_image(&image, &RawConfig::defaults()).unwrap();
        let p = rm.get("t", 0).expect("the partition is hosted");
        assert_eq!(p.config().retention_ms, 7777);
        assert_eq!(p.config().max_message_bytes, 1_048_588);
    }

    use super::test_broker::partition as partition_record;

    fn image_of(records: &[crate::metadata::MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::empty();
        for (i, r) in records.iter().enumerate() {
            image.apply(i as i64, r).unwrap();
        }
        image
    }

    /// Requests reach a partition only where the image makes this node its leader: a replica
    /// hosted here as a follower, and a partition placed on other brokers only, answer
    /// NOT_LEADER_OR_FOLLOWER; a partition the image does not know, UNKNOWN_TOPIC_OR_PARTITION.
    #[test]
    fn leadership_comes_from_the_image() {
        use crate::metadata::MetadataRecord;
        let tmp = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let topic = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        };
        let mut records = vec![
            topic,
            partition_record(id, 0, vec![0, 1], 1, 0),
            partition_record(id, 1, vec![1], 1, 0),
            partition_record(id, 2, vec![0], 0, 0),
        ];
        let rm = ReplicaManager::new(0, tmp.path());
        rm.apply_image(&image_of(&records), &RawConfig::defaults())
            .unwrap();
        let error = |p| rm.leader_partition("t", p).err();
        assert!(rm.get("t", 0).is_some(), "a follower replica is hosted");
        assert_eq!(error(0), Some(ResponseError::NotLeaderOrFollower));
        assert!(rm.get("t", 1).is_none(), "placed elsewhere: not hosted");
        assert_eq!(error(1), Some(ResponseError::NotLeaderOrFollower));
        assert_eq!(error(2), None);
        assert_eq!(error(3), Some(ResponseError::UnknownTopicOrPartition));
        assert_eq!(
            rm.leader_partition("nope", 0).err(),
            Some(ResponseError::UnknownTopicOrPartition)
        );

        // Leadership moves here in a newer epoch, through the publisher path.
        records.push(partition_record(id, 0, vec![0, 1], 0, 1));
        let next = Arc::new(image_of(&records));
        let delta = MetadataDelta {
            previous: rm.image(),
            records: records[records.len() - 1..].to_vec(),
        };
        rm.on_metadata_update(&delta, &next).unwrap();
        let p0 = rm.leader_partition("t", 0).expect("now the leader");
        assert_eq!(p0.leader_epoch(), 1);
        assert_eq!(p0.leader_id(), 0);
    }

    /// Opening logs from a metadata change on a runtime worker leaves that worker's other
    /// tasks free to run: with one worker, a task spawned beside the opening still runs
    /// while the opening blocks (it would starve if the opening held the worker).
    #[test]
    fn blocking_work_leaves_the_async_worker() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ran_meanwhile = runtime.block_on(async {
            tokio::spawn(async {
                let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let set = flag.clone();
                tokio::spawn(async move { set.store(true, std::sync::atomic::Ordering::Release) });
                off_async_worker(|| {
                    let deadline = Instant::now() + std::time::Duration::from_secs(5);
                    while !flag.load(std::sync::atomic::Ordering::Acquire)
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    flag.load(std::sync::atomic::Ordering::Acquire)
                })
            })
            .await
            .unwrap()
        });
        assert!(ran_meanwhile);
        // Without a runtime it simply runs.
        assert_eq!(off_async_worker(|| 7), 7);
    }
}
