//! Transactional offset commits (TxnOffsetCommit, KIP-98 and KIP-447): offsets a
//! transactional producer commits for a group stay pending, per producer id, invisible to
//! OffsetFetch, until the transaction's marker reaches the group's partition of
//! `__consumer_offsets`: COMMIT makes them the group's committed offsets, ABORT drops them.

use std::collections::{BTreeMap, HashMap};

use proto_kafka::ResponseError;

use super::{partition_exists, CommitEntry, Committer, GroupCoordinator};
use crate::records;
use crate::runtime::lock;
use crate::state::CommittedOffset;
use crate::writer;

/// Pending offsets: producer id, then group, then topic and partition.
pub(super) type PendingTxnOffsets = HashMap<i64, HashMap<String, GroupTxnOffsets>>;

/// One group's offsets in one transaction.
type GroupTxnOffsets = BTreeMap<(String, i32), CommittedOffset>;

impl GroupCoordinator {
    fn pending_txn(&self) -> std::sync::MutexGuard<'_, PendingTxnOffsets> {
        match self.txn_offsets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// TxnOffsetCommit: validates the commit as Kafka does (KIP-447: a member id and
    /// generation, when given, must be the group's) and keeps the offsets pending for
    /// `producer_id`. One result per entry, None for taken.
    pub fn txn_commit(
        &self,
        group_id: &str,
        producer_id: i64,
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
        let now = self.now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut pending = self.pending_txn();
        let group = pending
            .entry(producer_id)
            .or_default()
            .entry(group_id.to_string())
            .or_default();
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
            group.insert(
                (e.topic, e.partition),
                CommittedOffset {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now,
                    record_offset: -1,
                },
            );
            results.push(None);
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

    /// The transaction of `producer_id` ended on `offsets_partition`: on COMMIT its pending
    /// offsets of the groups there are written as committed offsets (durable before this
    /// returns) and become visible; on ABORT they are dropped. Idempotent: a marker sent
    /// again finds nothing pending. The offsets stay pending until they are the group's, so
    /// a stable OffsetFetch never sees the older ones in between.
    pub async fn complete_transaction(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let here = |g: &String| self.shards.partition_of(g) == Some(offsets_partition);
        let ended: Vec<(String, GroupTxnOffsets)> = {
            let mut pending = self.pending_txn();
            let Some(groups) = pending.get_mut(&producer_id) else {
                return Ok(());
            };
            if !commit {
                groups.retain(|g, _| !here(g));
                if groups.is_empty() {
                    pending.remove(&producer_id);
                }
                return Ok(());
            }
            groups
                .iter()
                .filter(|(g, _)| here(g))
                .map(|(g, o)| (g.clone(), o.clone()))
                .collect()
        };
        for (group_id, offsets) in ended {
            let mut recs = Vec::with_capacity(offsets.len());
            for ((topic, partition), c) in &offsets {
                let k = records::offset_key(&group_id, topic, *partition)
                    .map_err(|_| ResponseError::UnknownServerError)?;
                let v = records::encode_offset_value(&records::OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: c.commit_timestamp_ms,
                })
                .map_err(|_| ResponseError::UnknownServerError)?;
                recs.push((k, Some(v)));
            }
            if !recs.is_empty() {
                // A failed write leaves them pending: the marker is retried.
                let w = writer::append(
                    &self.ports.log,
                    offsets_partition,
                    &recs,
                    ResponseError::UnknownServerError,
                    self.now_ms(),
                )?;
                let first = w.first_offset;
                w.complete(ResponseError::UnknownServerError).await?;
                let slot = match self.get(&group_id) {
                    Some(s) => Some(s),
                    None => self.get_or_create(&group_id).ok(),
                };
                if let Some(slot) = slot {
                    let mut g = lock(&slot);
                    for (n, ((topic, partition), mut c)) in offsets.into_iter().enumerate() {
                        c.record_offset = first + n as i64;
                        g.apply_offset(&topic, partition, c);
                    }
                }
            }
            let mut pending = self.pending_txn();
            if let Some(groups) = pending.get_mut(&producer_id) {
                groups.remove(&group_id);
                if groups.is_empty() {
                    pending.remove(&producer_id);
                }
            }
        }
        Ok(())
    }
}
