//! The groups of this node, their timers, and their records in `__consumer_offsets`.
//!
//! Locking: the map of groups is an `RwLock` held only to look a group up, add or remove it;
//! each group has its own mutex, held for a state change and the synchronous append of its
//! records (so records reach the log in the order the changes happened) but never across an
//! await. Durability (`complete_append`) is awaited afterwards, outside the lock; only then are
//! commits applied and assignments handed out. A storm of JoinGroups in one group therefore
//! never delays another group's heartbeats.
//!
//! Timers: each group reports its earliest deadline; one task sleeps until the earliest of all
//! (a heap keyed by deadline) and runs [`Group::tick`]. A group pushes an entry only when its
//! deadline moves earlier, so heartbeats (which only push deadlines later) never touch the heap.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use proto_kafka::records::{Record, RecordBatchDecoder};
use proto_kafka::ResponseError;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::assignor::TopicMeta;
use super::consumer::{
    Change, ConsumerGroup, HeartbeatError, HeartbeatRequest, HeartbeatResponse, Persisted,
    TopicSource,
};
use super::consumer_records;
use super::records::{self, GroupValue, RecordKey};
use super::state::{
    CommittedOffset, Effect, Group, GroupState, GroupSummary, JoinRequest, JoinResult, Outcome,
    SyncRequest, SyncResult,
};
use super::{partition_for, GroupConfig, OFFSETS_TOPIC};
use crate::broker::Broker;
use crate::controller::{self, TopicRequest};
use crate::metadata::metadata_log::{encode_internal_batch, now_ms};
use crate::partition::Partition;

/// Groups one node keeps. Kafka has no such bound; every group costs memory, and anyone may
/// create one with a JoinGroup or a simple OffsetCommit.
pub const MAX_GROUPS: usize = 100_000;
/// Protocol metadata one member may register, all protocols together. Kafka bounds it only by
/// the request size; the whole group's metadata goes into one record and one join response.
pub const MAX_MEMBER_METADATA_BYTES: usize = 1024 * 1024;
/// Protocols (assignors) one member may offer. Kafka does not bound them; choosing the
/// group's protocol compares every member's list with every other's, so 150,000 of them held
/// a worker for seconds. Clients offer a handful.
pub const MAX_MEMBER_PROTOCOLS: usize = 100;
/// Bytes read per step when loading a partition of `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 16 * 1024 * 1024;
/// Longest sleep of the timer task when nothing is due (it also wakes when told).
const MAX_TIMER_SLEEP_MS: i64 = 60_000;

#[derive(Debug, Error)]
pub enum GroupLoadError {
    #[error("reading {partition}: {source}")]
    Read {
        partition: String,
        source: crate::partition::PartitionError,
    },
    #[error("reading {partition}: {source}")]
    Log {
        partition: String,
        source: strom_log::LogError,
    },
    #[error("reading {partition}: {source}")]
    Io {
        partition: String,
        source: std::io::Error,
    },
}

type Slot = Arc<Mutex<Group>>;

fn lock(slot: &Mutex<Group>) -> MutexGuard<'_, Group> {
    match slot.lock() {
        Ok(g) => g,
        // A panic mid-change leaves the group as it was at the panic; serving it beats
        // refusing the group forever.
        Err(p) => p.into_inner(),
    }
}

/// An append to `__consumer_offsets` that is in the log but not yet durable.
pub struct PendingWrite {
    replica: Arc<Partition>,
    pub first_offset: i64,
    end_offset: i64,
}

impl PendingWrite {
    pub async fn complete(self, too_large: ResponseError) -> Result<(), ResponseError> {
        self.replica
            .complete_append(self.end_offset)
            .await
            .map_err(|e| {
                warn!(partition = %self.replica.topic_partition, error = %e, "__consumer_offsets write not durable");
                storage_error(&e, too_large)
            })
    }
}

/// Kafka's mapping of a failed group write to what the client is told.
fn storage_error(e: &crate::partition::PartitionError, too_large: ResponseError) -> ResponseError {
    match crate::handlers::produce::append_error_code(e) {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        ResponseError::MessageTooLarge
        | ResponseError::RecordListTooLarge
        | ResponseError::InvalidFetchSize => too_large,
        _ => ResponseError::UnknownServerError,
    }
}

/// Committed offsets by topic and partition; None where nothing is committed.
pub type FetchedOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// One offset to commit, as the request gave it.
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Who commits: a member of the group (with its generation, or member epoch in a consumer
/// group) or, with generation -1 and no member id, a client outside group management.
pub struct Committer<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub generation_id: i32,
    /// OffsetCommit's version: consumer-group members must use v9+.
    pub api_version: i16,
}

/// Whether the image has this partition: commits to any other are refused.
pub fn partition_exists(
    image: &crate::metadata::MetadataImage,
    topic: &str,
    partition: i32,
) -> bool {
    image
        .topic(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}

/// The topics of a metadata image, as consumer groups subscribe to them.
struct ImageTopics(Arc<crate::metadata::MetadataImage>);

impl TopicSource for ImageTopics {
    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.0.topic(name).map(|t| TopicMeta {
            id: t.id,
            partitions: t.partitions.len() as i32,
        })
    }

    fn names(&self) -> Vec<String> {
        self.0
            .topics
            .keys()
            .filter(|n| n.as_str() != OFFSETS_TOPIC)
            .cloned()
            .collect()
    }
}

/// The records of consumer-group changes: Kafka's keys and values.
fn consumer_change_records(
    group_id: &str,
    changes: Vec<Change>,
) -> Result<Vec<(Bytes, Option<Bytes>)>, records::RecordError> {
    use consumer_records as cr;
    changes
        .into_iter()
        .map(|c| {
            Ok(match c {
                Change::GroupEpoch(e) => (
                    cr::key(cr::GROUP_METADATA_KEY, group_id, None)?,
                    e.map(cr::epoch_value),
                ),
                Change::AssignmentEpoch(e) => (
                    cr::key(cr::TARGET_METADATA_KEY, group_id, None)?,
                    e.map(cr::epoch_value),
                ),
                Change::Member(id, m) => (
                    cr::key(cr::MEMBER_METADATA_KEY, group_id, Some(&id))?,
                    m.as_ref().map(cr::member_metadata_value),
                ),
                Change::Target(id, t) => (
                    cr::key(cr::TARGET_MEMBER_KEY, group_id, Some(&id))?,
                    t.as_ref().map(cr::target_member_value),
                ),
                Change::Current(id, c) => (
                    cr::key(cr::CURRENT_MEMBER_KEY, group_id, Some(&id))?,
                    c.as_ref().map(cr::current_assignment_value),
                ),
            })
        })
        .collect()
}

/// A loaded consumer-group record as a change to replay; None for records Strom does not
/// keep (Kafka's partition metadata).
fn consumer_change(
    version: i16,
    member: Option<String>,
    value: Option<Bytes>,
) -> Result<Option<Change>, records::RecordError> {
    use consumer_records as cr;
    let member = member.unwrap_or_default();
    Ok(Some(match version {
        cr::GROUP_METADATA_KEY => {
            Change::GroupEpoch(value.map(cr::decode_epoch_value).transpose()?)
        }
        cr::TARGET_METADATA_KEY => {
            Change::AssignmentEpoch(value.map(cr::decode_epoch_value).transpose()?)
        }
        cr::MEMBER_METADATA_KEY => Change::Member(
            member,
            value.map(cr::decode_member_metadata_value).transpose()?,
        ),
        cr::TARGET_MEMBER_KEY => Change::Target(
            member,
            value.map(cr::decode_target_member_value).transpose()?,
        ),
        cr::CURRENT_MEMBER_KEY => Change::Current(
            member,
            value.map(cr::decode_current_assignment_value).transpose()?,
        ),
        _ => return Ok(None),
    }))
}

/// A group as ListGroups shows it.
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer".
    pub group_type: &'static str,
}

/// A commit whose records are appended: per entry, an error, or None for "in the write".
pub struct PendingCommit {
    pub results: Vec<Option<ResponseError>>,
    write: Option<(PendingWrite, Vec<usize>)>,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    groups: RwLock<HashMap<String, Slot>>,
    timers: Mutex<BinaryHeap<Reverse<(i64, String)>>>,
    timer_wake: Notify,
    shutting_down: AtomicBool,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: RwLock::new(HashMap::new()),
            timers: Mutex::new(BinaryHeap::new()),
            timer_wake: Notify::new(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn read_groups(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Slot>> {
        match self.groups.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write_groups(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Slot>> {
        match self.groups.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn get(&self, group_id: &str) -> Option<Slot> {
        self.read_groups().get(group_id).cloned()
    }

    fn get_or_create(&self, group_id: &str) -> Result<Slot, ResponseError> {
        if let Some(g) = self.get(group_id) {
            return Ok(g);
        }
        let mut map = self.write_groups();
        if let Some(g) = map.get(group_id) {
            return Ok(g.clone());
        }
        if map.len() >= MAX_GROUPS {
            warn!(
                groups = map.len(),
                "refusing a new group: MAX_GROUPS reached"
            );
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let slot = Arc::new(Mutex::new(Group::new(group_id, now_ms())));
        map.insert(group_id.to_string(), slot.clone());
        metrics::gauge!("strom_consumer_groups").set(map.len() as f64);
        Ok(slot)
    }

    fn forget(&self, group_id: &str, slot: &Slot) {
        let mut map = self.write_groups();
        if map.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(group_id);
        }
        metrics::gauge!("strom_consumer_groups").set(map.len() as f64);
    }

    fn snapshot(&self) -> Vec<(String, Slot)> {
        self.read_groups()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn offsets_topic_exists(broker: &Broker) -> bool {
        broker.image().topic(OFFSETS_TOPIC).is_some()
    }

    /// Creates `__consumer_offsets` on first use, through the controller like any topic:
    /// compacted, so its size follows the number of live groups and offsets, not of commits.
    pub async fn ensure_offsets_topic(&self, broker: &Arc<Broker>) -> Result<(), ResponseError> {
        if Self::offsets_topic_exists(broker) {
            return Ok(());
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            self.config.offsets_topic_segment_bytes.to_string(),
        );
        let req = TopicRequest {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: self.config.offsets_topic_num_partitions,
            replication_factor: self.config.offsets_topic_replication_factor,
            assignments: BTreeMap::new(),
            configs,
        };
        match controller::create_topics(broker, vec![req], false)
            .await
            .pop()
        {
            Some(Ok(created)) => {
                info!(
                    partitions = created.num_partitions,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(())
            }
            Some(Err(e)) if e.code == ResponseError::TopicAlreadyExists.code() => Ok(()),
            Some(Err(e)) => {
                warn!(error = %e.message, "cannot create {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Appends records for `group_id` to its partition of `__consumer_offsets`.
    fn append(
        broker: &Broker,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        too_large: ResponseError,
    ) -> Result<PendingWrite, ResponseError> {
        let image = broker.image();
        let topic = image
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let partition = partition_for(group_id, topic.partitions.len() as i32);
        let replica = broker
            .replicas
            .get(OFFSETS_TOPIC, partition)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let now = now_ms();
        let entries = records.iter().map(|(k, v)| (Some(k.clone()), v.clone()));
        let mut buf = encode_internal_batch(entries, now).map_err(|e| {
            warn!(error = %e, "cannot encode a __consumer_offsets batch");
            ResponseError::UnknownServerError
        })?;
        let info = replica.append_as_leader(&mut buf, now).map_err(|e| {
            warn!(partition = %replica.topic_partition, error = %e, "__consumer_offsets append failed");
            storage_error(&e, too_large)
        })?;
        Ok(PendingWrite {
            replica,
            first_offset: info.first_offset,
            end_offset: info.last_offset + 1,
        })
    }

    /// Runs `f` on the group, then whatever it made due, writes the records it asked for and
    /// re-arms its timer.
    pub fn update<R>(
        &self,
        broker: &Arc<Broker>,
        slot: &Slot,
        f: impl FnOnce(&mut Group, &GroupConfig, i64) -> R,
    ) -> R {
        let mut g = lock(slot);
        let now = now_ms();
        let out = f(&mut g, &self.config, now);
        g.tick(&self.config, now);
        self.settle(broker, slot, &mut g);
        out
    }

    fn settle(&self, broker: &Arc<Broker>, slot: &Slot, g: &mut Group) {
        // An immediate write failure feeds back into the group, which may ask for more.
        loop {
            let effects = g.take_effects();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                let Effect::StoreGroup { value, then } = effect;
                let written = records::group_key(&g.group_id)
                    .and_then(|k| Ok((k, records::encode_group_value(&value)?)))
                    .map_err(|e| {
                        warn!(group = %g.group_id, error = %e, "cannot encode the group's record");
                        ResponseError::UnknownServerError
                    })
                    .and_then(|(k, v)| {
                        Self::append(
                            broker,
                            &g.group_id,
                            &[(k, Some(v))],
                            ResponseError::UnknownServerError,
                        )
                    });
                match written {
                    Ok(w) => {
                        let broker = broker.clone();
                        let slot = slot.clone();
                        tokio::spawn(async move {
                            let result = w.complete(ResponseError::UnknownServerError).await;
                            let groups = &broker.groups;
                            groups.update(&broker, &slot, |g, cfg, now| {
                                g.after_store(then, result, cfg, now)
                            });
                        });
                    }
                    Err(e) => g.after_store(then, Err(e), &self.config, now_ms()),
                }
            }
        }
        // Consumer-group changes made by timers (expired sessions) or a protocol switch.
        match self.write_consumer_changes(broker, g) {
            Some(Ok(w)) => {
                tokio::spawn(async move {
                    let _ = w.complete(ResponseError::UnknownServerError).await;
                });
            }
            Some(Err(e)) => {
                warn!(group = %g.group_id, error = ?e, "consumer group records not written")
            }
            None => {}
        }
        self.schedule(g);
    }

    fn schedule(&self, g: &mut Group) {
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

    fn refuse_if_stopping(&self) -> Result<(), ResponseError> {
        if self.shutting_down.load(Ordering::Acquire) {
            Err(ResponseError::NotCoordinator)
        } else {
            Ok(())
        }
    }

    pub fn join(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        req: JoinRequest,
    ) -> Outcome<JoinResult> {
        let fail = |e| Outcome::Done(JoinResult::error(&req.member_id, e));
        if let Err(e) = self.refuse_if_stopping() {
            return fail(e);
        }
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let session = req.session_timeout_ms as i64;
        if session < self.config.min_session_timeout_ms
            || session > self.config.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > MAX_MEMBER_METADATA_BYTES || req.protocols.len() > MAX_MEMBER_PROTOCOLS
        {
            return fail(ResponseError::InvalidRequest);
        }
        // A member id names a member of an existing group; only a newcomer creates one.
        let slot = if req.member_id.is_empty() {
            match self.get_or_create(group_id) {
                Ok(s) => s,
                Err(e) => return fail(e),
            }
        } else {
            match self.get(group_id) {
                Some(s) => s,
                None => return fail(ResponseError::UnknownMemberId),
            }
        };
        self.update(broker, &slot, |g, cfg, now| g.join(req, cfg, now))
    }

    /// SyncGroup; also the group's rebalance timeout, which bounds a wait for the leader.
    pub fn sync(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        req: SyncRequest,
    ) -> (Outcome<SyncResult>, i64) {
        let fail = |e| (Outcome::Done(SyncResult::error(e)), 0);
        if let Err(e) = self.refuse_if_stopping() {
            return fail(e);
        }
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        match self.get(group_id) {
            Some(slot) => self.update(broker, &slot, |g, cfg, now| {
                let timeout_ms = g.rebalance_timeout_ms();
                (g.sync(req, cfg, now), timeout_ms)
            }),
            None => fail(ResponseError::UnknownMemberId),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.refuse_if_stopping()?;
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let slot = self.get(group_id).ok_or(ResponseError::UnknownMemberId)?;
        // Only pushes a deadline later: no tick, no timer.
        let mut g = lock(&slot);
        g.heartbeat(member_id, group_instance_id, generation_id, now_ms())
    }

    pub fn leave(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.refuse_if_stopping()?;
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.get(group_id) {
            Some(slot) => self.update(broker, &slot, |g, cfg, now| g.leave(members, cfg, now)),
            None => Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]),
        }
    }

    /// Validates a commit and appends its records; [`GroupCoordinator::finish_commit`] waits
    /// for durability and applies it.
    ///
    /// Kafka's order: partitions of unknown topics are answered UNKNOWN_TOPIC_OR_PARTITION
    /// before the group is looked at (and a request with nothing else never reaches it);
    /// then a group-level error answers every partition; then each known partition gets its
    /// own result.
    pub fn commit(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        who: Committer<'_>,
        entries: Vec<CommitEntry>,
    ) -> PendingCommit {
        let all = |e: ResponseError| PendingCommit {
            results: vec![Some(e); entries.len()],
            write: None,
        };
        let image = broker.image();
        let known: Vec<bool> = entries
            .iter()
            .map(|e| partition_exists(&image, &e.topic, e.partition))
            .collect();
        if !known.iter().any(|k| *k) {
            return all(ResponseError::UnknownTopicOrPartition);
        }
        if let Err(e) = self.refuse_if_stopping() {
            return all(e);
        }
        if group_id.is_empty() {
            return all(ResponseError::InvalidGroupId);
        }
        let slot = match self.get(group_id) {
            Some(s) => s,
            // A group that does not exist takes only simple commits (no generation): it is
            // a client that uses Kafka to store offsets but not to manage its group. Such a
            // commit creates an empty classic group, as in Kafka.
            None if who.generation_id < 0 => match self.get_or_create(group_id) {
                Ok(s) => s,
                Err(e) => return all(e),
            },
            // From v9 the answer fits both protocols; older clients expect ILLEGAL_GENERATION.
            None if who.api_version >= 9 => return all(ResponseError::GroupIdNotFound),
            None => return all(ResponseError::IllegalGeneration),
        };
        let mut g = lock(&slot);
        if let Err(e) = g.validate_offset_commit(
            who.member_id,
            who.group_instance_id,
            who.generation_id,
            who.api_version,
            now_ms(),
        ) {
            return all(e);
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut to_write = Vec::new();
        let mut indexes = Vec::new();
        let mut committed = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            if !known[i] {
                results.push(Some(ResponseError::UnknownTopicOrPartition));
                continue;
            }
            let metadata = e.metadata.unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Some(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            let c = CommittedOffset {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata,
                commit_timestamp_ms: now,
                record_offset: -1,
            };
            let record = records::offset_key(group_id, &e.topic, e.partition).and_then(|k| {
                let v = records::encode_offset_value(&records::OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: c.commit_timestamp_ms,
                })?;
                Ok((k, Some(v)))
            });
            match record {
                Ok(r) => {
                    results.push(None);
                    to_write.push(r);
                    indexes.push(i);
                    committed.push((e.topic, e.partition, c));
                }
                Err(_) => results.push(Some(ResponseError::InvalidCommitOffsetSize)),
            }
        }
        let mut write = None;
        if !to_write.is_empty() {
            match Self::append(
                broker,
                group_id,
                &to_write,
                ResponseError::InvalidCommitOffsetSize,
            ) {
                Ok(w) => {
                    // Visible at once, in log order, though acknowledged only once durable:
                    // a client's requests are read ahead (Kafka instead mutes the connection
                    // until it answers), so the JoinGroup behind this commit may complete a
                    // rebalance, and the next owner fetch offsets, before the fsync ends.
                    for (n, (topic, partition, mut c)) in committed.into_iter().enumerate() {
                        c.record_offset = w.first_offset + n as i64;
                        g.apply_offset(&topic, partition, c);
                    }
                    write = Some((w, indexes));
                }
                Err(e) => {
                    for i in indexes {
                        results[i] = Some(e);
                    }
                }
            }
        }
        drop(g);
        PendingCommit { results, write }
    }

    /// Waits until a commit's records are durable: only then is it acknowledged.
    pub async fn finish_commit(&self, pending: PendingCommit) -> Vec<Option<ResponseError>> {
        let PendingCommit { mut results, write } = pending;
        let Some((w, indexes)) = write else {
            return results;
        };
        match w.complete(ResponseError::InvalidCommitOffsetSize).await {
            Ok(()) => metrics::counter!("strom_offset_commits_total").increment(1),
            Err(e) => {
                for i in indexes {
                    results[i] = Some(e);
                }
            }
        }
        results
    }

    /// Committed offsets: of the given partitions (None where nothing is committed), or of
    /// every partition with a commit when `topics` is None.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedOffsets {
        let slot = self.get(group_id);
        let g = slot.as_ref().map(|s| lock(s));
        let offsets = g
            .as_ref()
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| g.offsets());
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(t, ps)| {
                    let found = ps
                        .into_iter()
                        .map(|p| {
                            let c = offsets.and_then(|o| o.get(&(t.clone(), p)).cloned());
                            (p, c)
                        })
                        .collect();
                    (t, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((t, p), c) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((*p, Some(c.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// Every live group, by id.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .snapshot()
            .into_iter()
            .filter_map(|(id, slot)| {
                let g = lock(&slot);
                (g.state() != GroupState::Dead).then(|| GroupListing {
                    group_id: id,
                    protocol_type: match g.consumer_group() {
                        Some(_) => super::state::CONSUMER_PROTOCOL_TYPE.to_string(),
                        None => g.protocol_type().unwrap_or_default().to_string(),
                    },
                    state: g.state_name(),
                    group_type: g.group_type(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// ConsumerGroupHeartbeat. Only a join (epoch 0) creates a group. The answer comes with
    /// the write of the group's changed records, to await before answering (as Kafka answers
    /// once its records are committed).
    pub fn consumer_heartbeat(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        req: HeartbeatRequest,
    ) -> (
        Result<HeartbeatResponse, HeartbeatError>,
        Option<PendingWrite>,
    ) {
        let fail = |code: ResponseError, message: &str| {
            (
                Err(HeartbeatError {
                    code,
                    message: message.to_string(),
                }),
                None,
            )
        };
        if self.refuse_if_stopping().is_err() {
            return fail(
                ResponseError::NotCoordinator,
                "The coordinator is shutting down.",
            );
        }
        if group_id.is_empty() {
            return fail(ResponseError::InvalidRequest, "GroupId can't be empty.");
        }
        let slot = if req.member_epoch == 0 {
            match self.get_or_create(group_id) {
                Ok(s) => s,
                Err(e) => return fail(e, "Too many groups on this coordinator."),
            }
        } else {
            match self.get(group_id) {
                Some(s) => s,
                // Not GROUP_ID_NOT_FOUND: clients treat that as fatal, and after a restart a
                // member's group is legitimately unknown here until it rejoins.
                None => {
                    return (
                        Err(HeartbeatError {
                            code: ResponseError::UnknownMemberId,
                            message: format!(
                                "Member {} is not a member of the group.",
                                req.member_id
                            ),
                        }),
                        None,
                    )
                }
            }
        };
        let topics = ImageTopics(broker.image());
        // The heartbeat's own records are written here, to be awaited; whatever the timers
        // change afterwards is written by `settle`.
        let (out, write) = self.update(broker, &slot, |g, cfg, now| {
            let out = g.consumer_heartbeat(req, cfg, &topics, now);
            (out, self.write_consumer_changes(broker, g))
        });
        match write {
            Some(Err(e)) => fail(e, "The group's records could not be written."),
            Some(Ok(w)) => (out, Some(w)),
            None => (out, None),
        }
    }

    /// Appends the consumer-group records the group changed since the last write.
    fn write_consumer_changes(
        &self,
        broker: &Broker,
        g: &mut Group,
    ) -> Option<Result<PendingWrite, ResponseError>> {
        let changes = g.take_consumer_changes();
        if changes.is_empty() {
            return None;
        }
        let recs = match consumer_change_records(&g.group_id, changes) {
            Ok(r) => r,
            Err(e) => {
                warn!(group = %g.group_id, error = %e, "cannot encode the consumer group's records");
                return Some(Err(ResponseError::UnknownServerError));
            }
        };
        Some(Self::append(
            broker,
            &g.group_id,
            &recs,
            ResponseError::UnknownServerError,
        ))
    }

    /// Runs `f` on a live group.
    pub fn inspect<R>(
        &self,
        group_id: &str,
        f: impl FnOnce(&Group, &GroupConfig) -> R,
    ) -> Option<R> {
        let slot = self.get(group_id)?;
        let g = lock(&slot);
        (g.state() != GroupState::Dead).then(|| f(&g, &self.config))
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let slot = self.get(group_id)?;
        let g = lock(&slot);
        (g.state() != GroupState::Dead).then(|| g.summary())
    }

    /// DeleteGroups for one group: an empty group and its offsets are tombstoned.
    pub async fn delete_group(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        self.refuse_if_stopping()?;
        let slot = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let write = {
            let mut g = lock(&slot);
            let offsets = g.mark_deleted(now_ms())?;
            let write = Self::tombstones(broker, group_id, &offsets, true);
            self.forget(group_id, &slot);
            write
        };
        info!(group = %group_id, "group deleted");
        if let Some(w) = write {
            // The group is gone from memory either way; a tombstone that fails to become
            // durable only means the group may come back after a restart.
            let _ = w.complete(ResponseError::UnknownServerError).await;
        }
        Ok(())
    }

    fn tombstones(
        broker: &Broker,
        group_id: &str,
        offsets: &[(String, i32)],
        group_too: bool,
    ) -> Option<PendingWrite> {
        let mut recs = Vec::with_capacity(offsets.len() + 1);
        for (t, p) in offsets {
            match records::offset_key(group_id, t, *p) {
                Ok(k) => recs.push((k, None)),
                Err(e) => warn!(group = %group_id, error = %e, "cannot encode an offset tombstone"),
            }
        }
        if group_too {
            let keys = [
                records::group_key(group_id),
                consumer_records::key(consumer_records::GROUP_METADATA_KEY, group_id, None),
                consumer_records::key(consumer_records::TARGET_METADATA_KEY, group_id, None),
            ];
            for k in keys {
                match k {
                    Ok(k) => recs.push((k, None)),
                    Err(e) => {
                        warn!(group = %group_id, error = %e, "cannot encode a group tombstone")
                    }
                }
            }
        }
        if recs.is_empty() {
            return None;
        }
        Self::append(broker, group_id, &recs, ResponseError::UnknownServerError).ok()
    }

    /// OffsetDelete: per partition, None (deleted or nothing to delete) or an error.
    pub async fn delete_offsets(
        &self,
        broker: &Arc<Broker>,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.refuse_if_stopping()?;
        let slot = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let image = broker.image();
        let (results, write) = {
            let mut g = lock(&slot);
            let mut results = g.offsets_deletable(&partitions)?;
            let mut removed = Vec::new();
            for (i, (t, p)) in partitions.iter().enumerate() {
                if results[i].is_some() {
                    continue;
                }
                if !image.topic(t).is_some_and(|x| x.partitions.contains_key(p)) {
                    results[i] = Some(ResponseError::UnknownTopicOrPartition);
                    continue;
                }
                if g.remove_offset(t, *p) {
                    removed.push((t.clone(), *p));
                }
            }
            (results, Self::tombstones(broker, group_id, &removed, false))
        };
        if let Some(w) = write {
            let _ = w.complete(ResponseError::UnknownServerError).await;
        }
        Ok(results)
    }

    /// Expires offsets past retention and forgets empty groups without offsets.
    fn sweep(&self, broker: &Arc<Broker>) {
        for (id, slot) in self.snapshot() {
            let write = {
                let mut g = lock(&slot);
                let now = now_ms();
                let expired = g.expire_offsets(self.config.offsets_retention_ms, now);
                let dead = g.mark_dead_if_unused(now);
                if !expired.is_empty() {
                    info!(group = %id, offsets = expired.len(), "offsets expired");
                }
                let write = if expired.is_empty() && !dead {
                    None
                } else {
                    Self::tombstones(broker, &id, &expired, dead)
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

    /// Kafka's onPartitionsDeleted: offsets committed for deleted topics go, with tombstones,
    /// so a topic created again under the same name starts without them.
    pub fn on_topics_deleted(&self, broker: &Broker, topics: &HashSet<String>) {
        if topics.is_empty() {
            return;
        }
        for (id, slot) in self.snapshot() {
            let write = {
                let mut g = lock(&slot);
                let gone: Vec<(String, i32)> = g
                    .offsets()
                    .keys()
                    .filter(|(t, _)| topics.contains(t))
                    .cloned()
                    .collect();
                for (t, p) in &gone {
                    g.remove_offset(t, *p);
                }
                if !gone.is_empty() {
                    info!(group = %id, offsets = gone.len(), "offsets of deleted topics removed");
                }
                Self::tombstones(broker, &id, &gone, false)
            };
            if let Some(w) = write {
                tokio::spawn(async move {
                    let _ = w.complete(ResponseError::UnknownServerError).await;
                });
            }
        }
    }

    /// Answers every waiting JoinGroup and SyncGroup so connections can drain: the client
    /// looks for the coordinator again.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for (_, slot) in self.snapshot() {
            lock(&slot).fail_waiters(ResponseError::NotCoordinator);
        }
        self.timer_wake.notify_one();
    }

    /// Rebuilds the groups from `__consumer_offsets`: every partition from its log start to
    /// its end, the last record of a key winning and a null value deleting. Runs before the
    /// listeners accept connections.
    pub fn load(&self, broker: &Broker) -> Result<usize, GroupLoadError> {
        metrics::describe_gauge!("strom_consumer_groups", "Consumer groups coordinated here");
        metrics::describe_counter!(
            "strom_offset_commits_total",
            "OffsetCommit requests made durable"
        );
        metrics::counter!("strom_offset_commits_total").absolute(0);
        let image = broker.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return Ok(0);
        };
        #[derive(Default)]
        struct Loaded {
            value: Option<GroupValue>,
            offsets: BTreeMap<(String, i32), CommittedOffset>,
            consumer: Persisted,
        }
        let mut loaded: HashMap<String, Loaded> = HashMap::new();
        let mut records_read = 0u64;
        for p in topic.partitions.keys() {
            let Some(replica) = broker.replicas.get(OFFSETS_TOPIC, *p) else {
                continue;
            };
            let name = replica.topic_partition.to_string();
            let (start, end) = replica
                .with_log(|log| (log.log_start_offset(), log.log_end_offset()))
                .map_err(|source| GroupLoadError::Read {
                    partition: name.clone(),
                    source,
                })?;
            let mut next = start;
            while next < end {
                let slice = replica
                    .with_log(|log| log.read(next, LOAD_READ_BYTES, end, true))
                    .map_err(|source| GroupLoadError::Read {
                        partition: name.clone(),
                        source,
                    })?
                    .map_err(|source| GroupLoadError::Log {
                        partition: name.clone(),
                        source,
                    })?;
                let bytes = slice.read_bytes().map_err(|source| GroupLoadError::Io {
                    partition: name.clone(),
                    source,
                })?;
                if bytes.is_empty() {
                    break;
                }
                let before = next;
                for_each_batch(&bytes, &name, |batch_end, recs| {
                    for r in recs {
                        if r.offset < next {
                            continue;
                        }
                        records_read += 1;
                        let Some(key) = r.key.clone() else {
                            continue;
                        };
                        let key = match records::decode_key(key) {
                            Ok(k) => k,
                            Err(e) => {
                                warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable key");
                                continue;
                            }
                        };
                        match key {
                            RecordKey::Offset {
                                group,
                                topic,
                                partition,
                            } => {
                                let entry = loaded.entry(group).or_default();
                                match r.value.clone().map(records::decode_offset_value) {
                                    None => {
                                        entry.offsets.remove(&(topic, partition));
                                    }
                                    Some(Ok(v)) => {
                                        entry.offsets.insert(
                                            (topic, partition),
                                            CommittedOffset {
                                                offset: v.offset,
                                                leader_epoch: v.leader_epoch,
                                                metadata: v.metadata,
                                                commit_timestamp_ms: v.commit_timestamp_ms,
                                                record_offset: r.offset,
                                            },
                                        );
                                    }
                                    Some(Err(e)) => {
                                        warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable offset commit")
                                    }
                                }
                            }
                            RecordKey::Group { group } => {
                                match r.value.clone().map(records::decode_group_value) {
                                    None => {
                                        if let Some(entry) = loaded.get_mut(&group) {
                                            entry.value = None;
                                        }
                                    }
                                    Some(Ok(v)) => {
                                        loaded.entry(group).or_default().value = Some(v);
                                    }
                                    Some(Err(e)) => {
                                        warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable group record")
                                    }
                                }
                            }
                            RecordKey::Consumer {
                                version,
                                group,
                                member,
                            } => match consumer_change(version, member, r.value.clone()) {
                                Ok(Some(change)) => {
                                    loaded.entry(group).or_default().consumer.apply(change)
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable consumer group record")
                                }
                            },
                        }
                    }
                    next = next.max(batch_end);
                });
                if next <= before {
                    warn!(partition = %name, offset = next, "cannot read past this offset; the rest of the partition is ignored");
                    break;
                }
            }
        }
        let now = now_ms();
        let mut map = self.write_groups();
        for (id, l) in loaded {
            let consumer = l.consumer.group_epoch.is_some();
            if l.value.is_none() && l.offsets.is_empty() && !consumer {
                continue;
            }
            let mut group = Group::restore(&id, l.value, l.offsets, now);
            if consumer && group.member_count() == 0 {
                group.set_consumer_group(ConsumerGroup::restore(l.consumer, &self.config, now));
            }
            map.insert(id, Arc::new(Mutex::new(group)));
        }
        let count = map.len();
        drop(map);
        for (_, slot) in self.snapshot() {
            let mut g = lock(&slot);
            self.schedule(&mut g);
        }
        metrics::gauge!("strom_consumer_groups").set(count as f64);
        info!(
            groups = count,
            records = records_read,
            "consumer groups loaded from {OFFSETS_TOPIC}"
        );
        Ok(count)
    }
}

/// Walks whole batches in `bytes`, giving each one's end offset (last offset + 1, from the
/// header, so a batch emptied by compaction still advances) and its decoded records.
fn for_each_batch(bytes: &Bytes, partition: &str, mut f: impl FnMut(i64, Vec<Record>)) {
    const HEADER_BYTES: usize = 61;
    let mut pos = 0usize;
    while bytes.len() - pos >= HEADER_BYTES {
        let b = &bytes[pos..];
        let base = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let last_delta = i32::from_be_bytes([b[23], b[24], b[25], b[26]]);
        let Some(total) = usize::try_from(len).ok().map(|l| l + 12) else {
            return;
        };
        if total > b.len() || total < HEADER_BYTES {
            return;
        }
        let mut one = bytes.slice(pos..pos + total);
        let recs = match RecordBatchDecoder::decode(&mut one) {
            Ok(set) => set.records,
            Err(e) => {
                warn!(partition = %partition, offset = base, error = %e, "skipping an undecodable batch");
                Vec::new()
            }
        };
        f(base + last_delta as i64 + 1, recs);
        pos += total;
    }
}

/// The group timers and the periodic retention sweep, until the broker stops.
pub async fn run_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let groups = &broker.groups;
    let sweep_every_ms = groups.config.offsets_retention_check_interval_ms;
    let mut next_sweep_ms = now_ms().saturating_add(sweep_every_ms);
    loop {
        let now = now_ms();
        let due = groups.pop_due(now);
        for (deadline, id) in due {
            if let Some(slot) = groups.get(&id) {
                groups.update(&broker, &slot, |g, _, _| {
                    if g.scheduled_ms == Some(deadline) {
                        g.scheduled_ms = None;
                    }
                });
            }
        }
        if now >= next_sweep_ms {
            groups.sweep(&broker);
            next_sweep_ms = now.saturating_add(sweep_every_ms);
        }
        let next = groups
            .next_timer_ms()
            .unwrap_or(i64::MAX)
            .min(next_sweep_ms);
        let wait_ms = next.saturating_sub(now_ms()).clamp(0, MAX_TIMER_SLEEP_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = groups.timer_wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
