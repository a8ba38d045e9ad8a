//! Transactional offset commits (TxnOffsetCommit, KIP-98 and KIP-447): offsets a
//! transactional producer commits for a group stay pending, per producer id, invisible to
//! OffsetFetch, until the transaction's marker reaches the group's partition of
//! `__consumer_offsets`: COMMIT makes them the group's committed offsets, ABORT drops them.
//!
//! As in Kafka, the offsets are in the log from the start: TxnOffsetCommit writes them as a
//! transactional batch of the producer's (answered once durable), so the marker alone decides
//! them, here and when the partition is loaded again (see the loader); nothing of a
//! transaction is only in memory.

use proto_kafka::ResponseError;

use super::{partition_exists, CommitEntry, Committer, GroupCoordinator};
use crate::records;
use crate::runtime::lock;
use crate::state::CommittedOffset;
use crate::writer::{self, TxnProducer};

pub use crate::loader::{GroupTxnOffsets, PendingTxnOffsets};

impl GroupCoordinator {
    pub(super) fn txn_ended_while_loading(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(i32, i64, bool)>> {
        match self.txn_ended_while_loading.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn pending_txn(&self) -> std::sync::MutexGuard<'_, PendingTxnOffsets> {
        match self.txn_offsets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// TxnOffsetCommit: validates the commit as Kafka does (KIP-447: a member id and
    /// generation, when given, must be the group's), writes the offsets taken as one
    /// transactional batch of the producer's, keeps them pending for `producer.producer_id`
    /// from that append on, and answers once they are durable. One result per entry, None
    /// for taken.
    pub async fn txn_commit(
        &self,
        group_id: &str,
        producer: TxnProducer,
        who: Committer<'_>,
        entries: Vec<CommitEntry>,
    ) -> Vec<Option<ResponseError>> {
        let all = |e: ResponseError| vec![Some(e); entries.len()];
        if let Err(e) = self.check_coordinator(group_id) {
            return all(e);
        }
        if group_id.is_empty() {
            return all(ResponseError::InvalidGroupId);
        }
        let image = self.ports.cluster.image();
        let legacy = who.generation_id < 0 && who.member_id.is_empty();
        let slot = match self.get(group_id) {
            Some(s) => Some(s),
            // Kafka takes a transactional commit for a group that does not exist only
            // without a generation (the producer is not a member of any group).
            None if who.generation_id < 0 => None,
            None => return all(ResponseError::IllegalGeneration),
        };
        if let Some(slot) = &slot {
            let mut g = lock(slot);
            // Before KIP-447 (TxnOffsetCommit v0-v2) a producer gives no member: taken
            // whatever the group's state, as in Kafka.
            if !legacy {
                if let Err(e) = g.validate_offset_commit(
                    who.member_id,
                    who.group_instance_id,
                    who.generation_id,
                    9,
                    self.now_ms(),
                ) {
                    return all(e);
                }
            }
        }
        let Some(offsets_partition) = self.shards.partition_of(group_id) else {
            return all(ResponseError::CoordinatorNotAvailable);
        };
        let now = self.now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut taken: Vec<((String, i32), CommittedOffset)> = Vec::new();
        let mut recs = Vec::new();
        for e in entries {
            if !partition_exists(&image, &e.topic, e.partition) {
                results.push(Some(ResponseError::UnknownTopicOrPartition));
                continue;
            }
            let metadata = e.metadata.unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Some(ResponseError::OffsetMetadataTooLarge));
                continue;
            }
            let committed = CommittedOffset {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata,
                commit_timestamp_ms: now,
                record_offset: -1,
            };
            let encoded = records::offset_key(group_id, &e.topic, e.partition).and_then(|k| {
                records::encode_offset_value(&records::OffsetValue {
                    offset: committed.offset,
                    leader_epoch: committed.leader_epoch,
                    metadata: committed.metadata.clone(),
                    commit_timestamp_ms: committed.commit_timestamp_ms,
                })
                .map(|v| (k, Some(v)))
            });
            match encoded {
                Ok(r) => recs.push(r),
                Err(_) => {
                    results.push(Some(ResponseError::UnknownServerError));
                    continue;
                }
            }
            taken.push(((e.topic, e.partition), committed));
            results.push(None);
        }
        if recs.is_empty() {
            return results;
        }
        let fail = |results: Vec<Option<ResponseError>>, e: ResponseError| {
            results
                .into_iter()
                .map(|r| r.or(Some(e)))
                .collect::<Vec<_>>()
        };
        let write = match writer::append_transactional(
            &self.ports.log,
            offsets_partition,
            &recs,
            producer,
            ResponseError::InvalidCommitOffsetSize,
            now,
        ) {
            Ok(w) => w,
            Err(e) => return fail(results, e),
        };
        // Pending from the moment they are in the log, as the log would replay them: a
        // stable OffsetFetch sees UNSTABLE_OFFSET_COMMIT from now on, and the marker decides
        // them even if durability fails below (the client then aborts, most likely). A log
        // that gives offsets only at commit makes them pending then; the producer's marker
        // comes after this answer, so after them.
        let pend = |first: i64, taken: Vec<((String, i32), CommittedOffset)>| {
            let mut pending = self.pending_txn();
            let group = pending
                .entry(producer.producer_id)
                .or_default()
                .entry(group_id.to_string())
                .or_default();
            for (n, (key, mut c)) in taken.into_iter().enumerate() {
                c.record_offset = first + n as i64;
                group.insert(key, c);
            }
        };
        let deferred = match write.first_offset {
            Some(first) => {
                pend(first, taken);
                None
            }
            None => Some(taken),
        };
        match write.complete(ResponseError::InvalidCommitOffsetSize).await {
            Ok(range) => {
                if let Some(taken) = deferred {
                    pend(range.first_offset, taken);
                }
            }
            Err(e) => return fail(results, e),
        }
        results
    }

    /// Whether a transaction holds offsets of `group_id` on this partition not yet committed
    /// (OffsetFetch's require_stable answers UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn()
            .values()
            .any(|groups| groups.get(group_id).is_some_and(|o| o.contains_key(&key)))
    }

    /// The transaction of `producer_id` ended on `offsets_partition` (its marker is in the
    /// log): on COMMIT its pending offsets of the groups there become the groups' committed
    /// offsets (they are in the log already, as a transactional batch, so nothing is
    /// written), unless a later plain commit of a partition is applied already; on ABORT
    /// they are dropped. Idempotent: a marker sent again finds nothing pending.
    pub fn complete_transaction(&self, offsets_partition: i32, producer_id: i64, commit: bool) {
        {
            let mut ended = self.txn_ended_while_loading();
            if self.shards.is_loading(offsets_partition) {
                // The load may have read the log before this marker: it is applied when
                // the partition is active.
                ended.push((offsets_partition, producer_id, commit));
                return;
            }
        }
        let here = |g: &String| self.shards.partition_of(g) == Some(offsets_partition);
        let ended: Vec<(String, GroupTxnOffsets)> = {
            let mut pending = self.pending_txn();
            let Some(groups) = pending.get_mut(&producer_id) else {
                return;
            };
            let ended: Vec<String> = groups.keys().filter(|g| here(g)).cloned().collect();
            let ended = ended
                .into_iter()
                .filter_map(|g| groups.remove(&g).map(|o| (g, o)))
                .collect();
            if groups.is_empty() {
                pending.remove(&producer_id);
            }
            ended
        };
        if !commit {
            return;
        }
        for (group_id, offsets) in ended {
            let slot = match self.get(&group_id) {
                Some(s) => Some(s),
                None => self.get_or_create(&group_id).ok(),
            };
            if let Some(slot) = slot {
                let mut g = lock(&slot);
                for ((topic, partition), c) in offsets {
                    g.apply_offset(&topic, partition, c);
                }
            }
        }
    }

    /// Pending offsets a load found in the log (transactions without their marker yet).
    pub(super) fn restore_pending(&self, loaded: PendingTxnOffsets) {
        let mut pending = self.pending_txn();
        for (producer_id, groups) in loaded {
            let mine = pending.entry(producer_id).or_default();
            for (group_id, offsets) in groups {
                mine.entry(group_id).or_default().extend(offsets);
            }
        }
    }

    /// Forgets the pending offsets of the groups on `offsets_partition` (it is unloaded: the
    /// next leader loads them from the log).
    pub(super) fn drop_pending_of(&self, offsets_partition: i32) {
        let mut pending = self.pending_txn();
        pending.retain(|_, groups| {
            groups.retain(|g, _| self.shards.partition_of(g) != Some(offsets_partition));
            !groups.is_empty()
        });
    }
}
