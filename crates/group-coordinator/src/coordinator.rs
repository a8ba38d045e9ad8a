//! The operations of the group coordinator: what JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete and ConsumerGroupHeartbeat do to the groups hosted here.
//!
//! Locking: the hosted partitions ([`crate::runtime`]) sit behind an `RwLock` held only to
//! look a group up, add or remove it; each group has its own mutex, held for a state change
//! and the synchronous append of its records (so records reach the log in the order the
//! changes happened) but never across an await. Durability is awaited afterwards, outside the
//! lock; only then are commits acknowledged and assignments handed out. A storm of JoinGroups
//! in one group therefore never delays another group's heartbeats.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto_kafka::ResponseError;
use strom_metadata::{MetadataDelta, MetadataImage, MetadataPublisher, PublishError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::assignor::TopicMeta;
use crate::consumer::{HeartbeatError, HeartbeatRequest, HeartbeatResponse, TopicSource};
use crate::loader::{load_partition_state, GroupLoadError};
use crate::ports::Ports;
use crate::records;
use crate::runtime::{led_partitions, lock, Shards, Slot};
use crate::state::{
    CommittedOffset, Effect, Group, GroupState, GroupSummary, JoinRequest, JoinResult, Outcome,
    SyncRequest, SyncResult,
};
use crate::timers::{Timers, MAX_TIMER_SLEEP_MS};
use crate::writer::{self, PendingWrite};
use crate::{GroupConfig, OFFSETS_TOPIC};

/// Protocol metadata one member may register, all protocols together. Kafka bounds it only by
/// the request size; the whole group's metadata goes into one record and one join response.
pub const MAX_MEMBER_METADATA_BYTES: usize = 1024 * 1024;
/// Protocols (assignors) one member may offer. Kafka does not bound them; choosing the
/// group's protocol compares every member's list with every other's, so 150,000 of them held
/// a worker for seconds. Clients offer a handful.
pub const MAX_MEMBER_PROTOCOLS: usize = 100;

mod txn;

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
    image: &strom_metadata::MetadataImage,
    topic: &str,
    partition: i32,
) -> bool {
    image
        .topic(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition))
}

/// The topics of a metadata image, as consumer groups subscribe to them.
struct ImageTopics(Arc<strom_metadata::MetadataImage>);

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
    /// Offsets to apply once durable, where the log gave no offsets before (shared storage):
    /// the group, and each offset in record order.
    deferred: Option<(String, Vec<OffsetToApply>)>,
}

/// A committed offset of a topic partition, before its record's offset is known.
type OffsetToApply = (String, i32, CommittedOffset);

pub struct GroupCoordinator {
    config: GroupConfig,
    /// This node: it hosts the `__consumer_offsets` partitions the image says it leads.
    node_id: i32,
    ports: Ports,
    shards: Shards,
    timers: Timers,
    shutting_down: AtomicBool,
    /// Offsets of open transactions (TxnOffsetCommit), until their marker.
    txn_offsets: std::sync::Mutex<txn::PendingTxnOffsets>,
    /// Markers (partition, producer id, commit) that landed while their partition loaded,
    /// after the load's read had passed them: applied once it is active. The lock also
    /// orders a marker against a load's hand-over of pending offsets and groups.
    txn_ended_while_loading: std::sync::Mutex<Vec<(i32, i64, bool)>>,
    /// One follower of the image at a time (the publisher, or a retry of failed loads), so a
    /// partition is never loaded twice at once.
    following: std::sync::Mutex<()>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, node_id: i32, ports: Ports) -> GroupCoordinator {
        metrics::describe_gauge!("strom_consumer_groups", "Consumer groups coordinated here");
        metrics::describe_counter!(
            "strom_offset_commits_total",
            "OffsetCommit requests made durable"
        );
        metrics::counter!("strom_offset_commits_total").absolute(0);
        GroupCoordinator {
            config,
            node_id,
            ports,
            shards: Shards::default(),
            timers: Timers::default(),
            shutting_down: AtomicBool::new(false),
            txn_offsets: std::sync::Mutex::new(Default::default()),
            txn_ended_while_loading: std::sync::Mutex::new(Vec::new()),
            following: std::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn now_ms(&self) -> i64 {
        self.ports.clock.now_ms()
    }

    fn is_stopping(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        if self.is_stopping() {
            return Err(ResponseError::NotCoordinator);
        }
        self.shards.check(group_id)
    }

    pub fn get(&self, group_id: &str) -> Option<Slot> {
        self.shards.get(group_id)
    }

    fn get_or_create(&self, group_id: &str) -> Result<Slot, ResponseError> {
        self.shards.get_or_create(group_id, self.now_ms())
    }

    fn forget(&self, group_id: &str, slot: &Slot) {
        self.shards.forget(group_id, slot)
    }

    fn snapshot(&self) -> Vec<(String, Slot)> {
        self.shards.snapshot()
    }

    /// The `__consumer_offsets` partitions hosted (loaded or loading) now.
    pub fn hosted_partitions(&self) -> std::collections::BTreeSet<i32> {
        self.shards.hosted()
    }

    /// Appends records for `group_id` to its partition of `__consumer_offsets`.
    fn append(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        too_large: ResponseError,
    ) -> Result<PendingWrite, ResponseError> {
        let partition = self
            .shards
            .partition_of(group_id)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        writer::append(
            &self.ports.log,
            partition,
            records,
            too_large,
            self.now_ms(),
        )
    }

    /// Appends the consumer-group records the group changed since the last write.
    fn write_consumer_changes(&self, g: &mut Group) -> Option<Result<PendingWrite, ResponseError>> {
        let changes = g.take_consumer_changes();
        if changes.is_empty() {
            return None;
        }
        let recs = match writer::consumer_change_records(&g.group_id, changes) {
            Ok(r) => r,
            Err(e) => {
                warn!(group = %g.group_id, error = %e, "cannot encode the consumer group's records");
                return Some(Err(ResponseError::UnknownServerError));
            }
        };
        Some(self.append(&g.group_id, &recs, ResponseError::UnknownServerError))
    }

    fn tombstones(
        &self,
        group_id: &str,
        offsets: &[(String, i32)],
        group_too: bool,
    ) -> Option<PendingWrite> {
        let recs = writer::tombstone_records(group_id, offsets, group_too);
        if recs.is_empty() {
            return None;
        }
        self.append(group_id, &recs, ResponseError::UnknownServerError)
            .ok()
    }

    /// Brings the hosted partitions in line with `image`: loads those this node now leads,
    /// unloads those it no longer leads. Returns the number of groups loaded.
    /// A partition whose load fails stays unhosted (NOT_COORDINATOR) until a later image or
    /// [`GroupCoordinator::retry_loads`]; the others load all the same.
    pub fn on_image(&self, image: &MetadataImage) -> Result<usize, GroupLoadError> {
        let _turn = self.following.lock().unwrap_or_else(|p| p.into_inner());
        self.follow(image)
    }

    /// Loads the partitions `image` makes this node lead that are not hosted (their load
    /// failed: on shared storage, PostgreSQL or the object store was away), unless the image
    /// is being followed at this moment.
    pub fn retry_loads(&self, image: &MetadataImage) -> Result<usize, GroupLoadError> {
        let _turn = match self.following.try_lock() {
            Ok(t) => t,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
        };
        self.follow(image)
    }

    fn follow(&self, image: &MetadataImage) -> Result<usize, GroupLoadError> {
        let count = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        self.shards.set_partition_count(count);
        let led = led_partitions(image, self.node_id);
        let hosted = self.shards.hosted();
        for p in hosted.difference(&led) {
            self.unload(*p);
        }
        let mut loaded = 0;
        let mut failed = None;
        for p in led.difference(&hosted) {
            match self.load_partition(*p) {
                Ok(n) => loaded += n,
                Err(e) => {
                    warn!(partition = *p, error = %e, "cannot load {OFFSETS_TOPIC} yet");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(loaded),
        }
    }

    /// Reads partition `p`'s groups from the log and serves them.
    pub fn load_partition(&self, p: i32) -> Result<usize, GroupLoadError> {
        self.shards.begin_loading(p);
        let (groups, pending): (HashMap<String, Group>, _) =
            match load_partition_state(self.ports.log.as_ref(), &self.config, p, self.now_ms()) {
                Ok(g) => g,
                Err(e) => {
                    let mut ended = self.txn_ended_while_loading();
                    // The next load reads those markers from the log.
                    ended.retain(|(q, _, _)| *q != p);
                    self.shards.abort_loading(p);
                    return Err(e);
                }
            };
        let n = groups.len();
        let (slots, ended) = {
            let mut ended = self.txn_ended_while_loading();
            // Before the groups are served: a stable OffsetFetch must see them pending.
            self.restore_pending(pending);
            let slots = self.shards.activate(p, groups);
            let (mine, others): (Vec<_>, Vec<_>) = ended.drain(..).partition(|(q, _, _)| *q == p);
            *ended = others;
            (slots, mine)
        };
        for slot in slots {
            self.timers.schedule(&mut lock(&slot));
        }
        // Applied twice when the load read the marker too: the same offsets again, harmless.
        for (q, producer_id, commit) in ended {
            self.complete_transaction(q, producer_id, commit);
        }
        Ok(n)
    }

    /// Stops serving partition `p` (see [`Shards::unload`]).
    pub fn unload(&self, p: i32) {
        self.drop_pending_of(p);
        self.shards.unload(p)
    }

    pub fn offsets_topic_exists(&self) -> bool {
        self.ports.cluster.image().topic(OFFSETS_TOPIC).is_some()
    }

    /// Creates `__consumer_offsets` on first use, through the controller like any topic:
    /// compacted, so its size follows the number of live groups and offsets, not of commits.
    pub async fn ensure_offsets_topic(&self) -> Result<(), ResponseError> {
        if self.offsets_topic_exists() {
            return Ok(());
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            self.config.offsets_topic_segment_bytes.to_string(),
        );
        let created = self
            .ports
            .cluster
            .create_offsets_topic(
                self.config.offsets_topic_num_partitions,
                self.config.offsets_topic_replication_factor,
                configs,
            )
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Runs `f` on the group, then whatever it made due, writes the records it asked for and
    /// re-arms its timer.
    pub fn update<R>(
        self: &Arc<Self>,
        slot: &Slot,
        f: impl FnOnce(&mut Group, &GroupConfig, i64) -> R,
    ) -> R {
        let mut g = lock(slot);
        let now = self.now_ms();
        let out = f(&mut g, &self.config, now);
        g.tick(&self.config, now);
        self.settle(slot, &mut g);
        out
    }

    fn settle(self: &Arc<Self>, slot: &Slot, g: &mut Group) {
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
                        self.append(
                            &g.group_id,
                            &[(k, Some(v))],
                            ResponseError::UnknownServerError,
                        )
                    });
                match written {
                    Ok(w) => {
                        let groups = self.clone();
                        let slot = slot.clone();
                        tokio::spawn(async move {
                            let result = w
                                .complete(ResponseError::UnknownServerError)
                                .await
                                .map(|_| ());
                            groups
                                .update(&slot, |g, cfg, now| g.after_store(then, result, cfg, now));
                        });
                    }
                    Err(e) => g.after_store(then, Err(e), &self.config, self.now_ms()),
                }
            }
        }
        // Consumer-group changes made by timers (expired sessions) or a protocol switch.
        match self.write_consumer_changes(g) {
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
        self.timers.schedule(g);
    }

    pub fn join(self: &Arc<Self>, group_id: &str, req: JoinRequest) -> Outcome<JoinResult> {
        let fail = |e| Outcome::Done(JoinResult::error(&req.member_id, e));
        if let Err(e) = self.check_coordinator(group_id) {
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
        self.update(&slot, |g, cfg, now| g.join(req, cfg, now))
    }

    /// SyncGroup; also the group's rebalance timeout, which bounds a wait for the leader.
    pub fn sync(self: &Arc<Self>, group_id: &str, req: SyncRequest) -> (Outcome<SyncResult>, i64) {
        let fail = |e| (Outcome::Done(SyncResult::error(e)), 0);
        if let Err(e) = self.check_coordinator(group_id) {
            return fail(e);
        }
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        match self.get(group_id) {
            Some(slot) => self.update(&slot, |g, cfg, now| {
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
        self.check_coordinator(group_id)?;
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let slot = self.get(group_id).ok_or(ResponseError::UnknownMemberId)?;
        // Only pushes a deadline later: no tick, no timer.
        let mut g = lock(&slot);
        g.heartbeat(member_id, group_instance_id, generation_id, self.now_ms())
    }

    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_coordinator(group_id)?;
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.get(group_id) {
            Some(slot) => self.update(&slot, |g, cfg, now| g.leave(members, cfg, now)),
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
        group_id: &str,
        who: Committer<'_>,
        entries: Vec<CommitEntry>,
    ) -> PendingCommit {
        let all = |e: ResponseError| PendingCommit {
            results: vec![Some(e); entries.len()],
            write: None,
            deferred: None,
        };
        let image = self.ports.cluster.image();
        let known: Vec<bool> = entries
            .iter()
            .map(|e| partition_exists(&image, &e.topic, e.partition))
            .collect();
        if !known.iter().any(|k| *k) {
            return all(ResponseError::UnknownTopicOrPartition);
        }
        if let Err(e) = self.check_coordinator(group_id) {
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
            self.now_ms(),
        ) {
            return all(e);
        }
        let now = self.now_ms();
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
        let mut deferred = None;
        if !to_write.is_empty() {
            match self.append(group_id, &to_write, ResponseError::InvalidCommitOffsetSize) {
                Ok(w) => {
                    match w.first_offset {
                        // Visible at once, in log order, though acknowledged only once
                        // durable: a client's requests are read ahead (Kafka instead mutes
                        // the connection until it answers), so the JoinGroup behind this
                        // commit may complete a rebalance, and the next owner fetch offsets,
                        // before the fsync ends.
                        Some(first) => {
                            for (n, (topic, partition, mut c)) in committed.into_iter().enumerate()
                            {
                                c.record_offset = first + n as i64;
                                g.apply_offset(&topic, partition, c);
                            }
                        }
                        // Where they went is known only once committed: applied then, each
                        // at its record's offset, so commits that land out of order still
                        // leave the later record's offset.
                        None => deferred = Some((group_id.to_string(), committed)),
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
        PendingCommit {
            results,
            write,
            deferred,
        }
    }

    /// Waits until a commit's records are durable: only then is it acknowledged.
    pub async fn finish_commit(&self, pending: PendingCommit) -> Vec<Option<ResponseError>> {
        let PendingCommit {
            mut results,
            write,
            deferred,
        } = pending;
        let Some((w, indexes)) = write else {
            return results;
        };
        match w.complete(ResponseError::InvalidCommitOffsetSize).await {
            Ok(range) => {
                if let Some((group_id, committed)) = deferred {
                    self.apply_durable_offsets(&group_id, range.first_offset, committed);
                }
                metrics::counter!("strom_offset_commits_total").increment(1)
            }
            Err(e) => {
                for i in indexes {
                    results[i] = Some(e);
                }
            }
        }
        results
    }

    /// Applies offsets whose records are durable from `first_offset` on. A group unloaded
    /// meanwhile (its partition led elsewhere now) is left alone: its next coordinator loads
    /// them from the log.
    fn apply_durable_offsets(
        &self,
        group_id: &str,
        first_offset: i64,
        committed: Vec<OffsetToApply>,
    ) {
        let Some(slot) = self.get(group_id) else {
            return;
        };
        let mut g = lock(&slot);
        if g.state() == GroupState::Dead {
            return;
        }
        for (n, (topic, partition, mut c)) in committed.into_iter().enumerate() {
            c.record_offset = first_offset + n as i64;
            g.apply_offset(&topic, partition, c);
        }
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
        self: &Arc<Self>,
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
        if let Err(code) = self.check_coordinator(group_id) {
            return fail(code, "This node does not coordinate the group now.");
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
        let topics = ImageTopics(self.ports.cluster.image());
        // The heartbeat's own records are written here, to be awaited; whatever the timers
        // change afterwards is written by `settle`.
        let (out, write) = self.update(&slot, |g, cfg, now| {
            let out = g.consumer_heartbeat(req, cfg, &topics, now);
            (out, self.write_consumer_changes(g))
        });
        match write {
            Some(Err(e)) => fail(e, "The group's records could not be written."),
            Some(Ok(w)) => (out, Some(w)),
            None => (out, None),
        }
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
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        let slot = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let write = {
            let mut g = lock(&slot);
            let offsets = g.mark_deleted(self.now_ms())?;
            let write = self.tombstones(group_id, &offsets, true);
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

    /// OffsetDelete: per partition, None (deleted or nothing to delete) or an error.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_coordinator(group_id)?;
        let slot = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let image = self.ports.cluster.image();
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
            (results, self.tombstones(group_id, &removed, false))
        };
        if let Some(w) = write {
            let _ = w.complete(ResponseError::UnknownServerError).await;
        }
        Ok(results)
    }

    /// Expires offsets past retention and forgets empty groups without offsets.
    /// Kafka's onPartitionsDeleted: offsets committed for deleted topics go, with tombstones,
    /// so a topic created again under the same name starts without them.
    pub fn on_topics_deleted(&self, topics: &HashSet<String>) {
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
                self.tombstones(&id, &gone, false)
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
        self.timers.wake();
    }

    /// Expires offsets past retention and forgets empty groups without offsets.
    pub(crate) fn sweep(&self) {
        for (id, slot) in self.snapshot() {
            let write = {
                let mut g = lock(&slot);
                let now = self.now_ms();
                let expired = g.expire_offsets(self.config.offsets_retention_ms, now);
                let dead = g.mark_dead_if_unused(now);
                if !expired.is_empty() {
                    info!(group = %id, offsets = expired.len(), "offsets expired");
                }
                let write = if expired.is_empty() && !dead {
                    None
                } else {
                    self.tombstones(&id, &expired, dead)
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

    /// The group timers and the periodic retention sweep, until `stop` changes.
    pub async fn run_timers(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let groups = self;
        let sweep_every_ms = groups.config.offsets_retention_check_interval_ms;
        let mut next_sweep_ms = groups.now_ms().saturating_add(sweep_every_ms);
        loop {
            let now = groups.now_ms();
            let due = groups.timers.pop_due(now);
            for (deadline, id) in due {
                if let Some(slot) = groups.get(&id) {
                    groups.update(&slot, |g, _, _| {
                        if g.scheduled_ms == Some(deadline) {
                            g.scheduled_ms = None;
                        }
                    });
                }
            }
            if now >= next_sweep_ms {
                groups.sweep();
                next_sweep_ms = now.saturating_add(sweep_every_ms);
            }
            let next = groups
                .timers
                .next_ms()
                .unwrap_or(i64::MAX)
                .min(next_sweep_ms);
            let wait_ms = next
                .saturating_sub(groups.now_ms())
                .clamp(0, MAX_TIMER_SLEEP_MS);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = groups.timers.woken() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

impl MetadataPublisher for GroupCoordinator {
    fn name(&self) -> &'static str {
        "group_coordinator"
    }

    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        self.on_topics_deleted(&delta.deleted_topic_names(image));
        self.on_image(image).map(|_| ()).map_err(|e| PublishError {
            publisher: "group_coordinator",
            reason: e.to_string(),
        })
    }
}
