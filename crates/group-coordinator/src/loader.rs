//! Loading a partition of `__consumer_offsets`: every record from the log start to the end,
//! the last record of a key winning and a null value deleting, as Kafka's
//! `GroupMetadataManager` loads a partition it starts to lead. Transactional offset commits
//! (TxnOffsetCommit's batches) wait per producer for that producer's marker: COMMIT applies
//! them, ABORT drops them, and those still without one stay pending after the load.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proto_kafka::records::{Record, RecordBatchDecoder};
use thiserror::Error;
use tracing::{info, warn};

use crate::consumer::{Change, ConsumerGroup, Persisted};
use crate::consumer_records;
use crate::ports::{OffsetsLog, ReadError};
use crate::records::{self, GroupValue, RecordKey};
use crate::state::{CommittedOffset, Group};
use crate::{GroupConfig, OFFSETS_TOPIC};

/// Bytes read per step when loading a partition of `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum GroupLoadError {
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What the records of one group add up to, before the group is rebuilt from it.
#[derive(Default)]
struct Loaded {
    value: Option<GroupValue>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    consumer: Persisted,
}

/// One group's offsets in one transaction, by topic and partition.
pub type GroupTxnOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// Offsets of transactions not yet decided: producer id, then group.
pub type PendingTxnOffsets = HashMap<i64, HashMap<String, GroupTxnOffsets>>;

/// The groups recorded in partition `p` of `__consumer_offsets`, rebuilt. A partition the
/// log does not host here has none.
pub fn load_groups(
    log: &dyn OffsetsLog,
    config: &GroupConfig,
    p: i32,
    now_ms: i64,
) -> Result<HashMap<String, Group>, GroupLoadError> {
    load_partition_state(log, config, p, now_ms).map(|(groups, _)| groups)
}

/// The groups of partition `p`, and the transactional offsets in it whose transaction has
/// no marker there yet (they stay pending until it comes).
pub fn load_partition_state(
    log: &dyn OffsetsLog,
    config: &GroupConfig,
    p: i32,
    now_ms: i64,
) -> Result<(HashMap<String, Group>, PendingTxnOffsets), GroupLoadError> {
    let name = format!("{OFFSETS_TOPIC}-{p}");
    let Some(range) = log.offsets(p) else {
        return Ok((HashMap::new(), HashMap::new()));
    };
    let (start, end) = range?;
    let mut loaded: HashMap<String, Loaded> = HashMap::new();
    let mut pending: PendingTxnOffsets = HashMap::new();
    let records_read = replay_with_markers(
        |offset| log.read(p, offset, LOAD_READ_BYTES, end),
        start,
        end,
        &name,
        |r| {
            if r.control {
                apply_marker(&mut loaded, &mut pending, &name, r);
            } else {
                apply_record(&mut loaded, &mut pending, &name, r);
            }
        },
    )?;
    let now = now_ms;
    let mut out = HashMap::new();
    for (id, l) in loaded {
        let consumer = l.consumer.group_epoch.is_some();
        if l.value.is_none() && l.offsets.is_empty() && !consumer {
            continue;
        }
        let mut group = Group::restore(&id, l.value, l.offsets, now);
        if consumer && group.member_count() == 0 {
            group.set_consumer_group(ConsumerGroup::restore(l.consumer, config, now));
        }
        out.insert(id, group);
    }
    info!(
        partition = %name,
        groups = out.len(),
        records = records_read,
        open_transactions = pending.len(),
        "consumer groups loaded"
    );
    Ok((out, pending))
}

/// Control record types (the key's second int16, after its version), as Kafka's
/// `ControlRecordType`.
const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// A transaction marker of `r.producer_id`: COMMIT applies its pending offsets (unless a
/// later plain commit of the same partition is in already), ABORT drops them.
fn apply_marker(
    loaded: &mut HashMap<String, Loaded>,
    pending: &mut PendingTxnOffsets,
    name: &str,
    r: &Record,
) {
    let kind = match r.key.as_deref() {
        Some([_, _, hi, lo, ..]) => i16::from_be_bytes([*hi, *lo]),
        _ => {
            warn!(partition = %name, offset = r.offset, "skipping a control record without a readable key");
            return;
        }
    };
    let Some(groups) = pending.remove(&r.producer_id) else {
        return;
    };
    match kind {
        CONTROL_COMMIT => {
            for (group, offsets) in groups {
                let entry = loaded.entry(group).or_default();
                for (key, c) in offsets {
                    match entry.offsets.get(&key) {
                        Some(current) if current.record_offset > c.record_offset => {}
                        _ => {
                            entry.offsets.insert(key, c);
                        }
                    }
                }
            }
        }
        CONTROL_ABORT => {}
        other => {
            warn!(partition = %name, offset = r.offset, kind = other, "unknown control record type; the transaction's offsets stay pending");
            pending.insert(r.producer_id, groups);
        }
    }
}

/// Folds one record of `__consumer_offsets` into what is loaded so far; a transactional
/// offset commit into its producer's pending offsets.
fn apply_record(
    loaded: &mut HashMap<String, Loaded>,
    pending: &mut PendingTxnOffsets,
    name: &str,
    r: &Record,
) {
    let Some(key) = r.key.clone() else {
        return;
    };
    let key = match records::decode_key(key) {
        Ok(k) => k,
        Err(e) => {
            warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable key");
            return;
        }
    };
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            if r.transactional && r.producer_id >= 0 {
                let txn = pending
                    .entry(r.producer_id)
                    .or_default()
                    .entry(group)
                    .or_default();
                match r.value.clone().map(records::decode_offset_value) {
                    None => {
                        txn.remove(&(topic, partition));
                    }
                    Some(Ok(v)) => {
                        txn.insert(
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
                        warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable transactional offset commit")
                    }
                }
                return;
            }
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
        RecordKey::Group { group } => match r.value.clone().map(records::decode_group_value) {
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
        },
        RecordKey::Consumer {
            version,
            group,
            member,
        } => match consumer_change(version, member, r.value.clone()) {
            Ok(Some(change)) => loaded.entry(group).or_default().consumer.apply(change),
            Ok(None) => {}
            Err(e) => {
                warn!(partition = %name, offset = r.offset, error = %e, "skipping an unreadable consumer group record")
            }
        },
    }
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

/// Reads a partition from `start` to `end` through `read` (whole batches from an offset)
/// and hands each record at or past the position reached to `apply`, in log order. Shared by
/// the loaders of the group and transaction coordinators; returns the records applied.
/// Control records (transaction markers) are no state of the transaction coordinator's and
/// are skipped; [`replay_with_markers`] gives them too.
pub fn replay(
    read: impl FnMut(i64) -> Result<Bytes, ReadError>,
    start: i64,
    end: i64,
    name: &str,
    mut apply: impl FnMut(&Record),
) -> Result<u64, ReadError> {
    let mut applied = 0u64;
    replay_with_markers(read, start, end, name, |r| {
        if !r.control {
            applied += 1;
            apply(r);
        }
    })?;
    Ok(applied)
}

/// [`replay`] with the control records as well: each record carries its batch's producer id
/// and transactional and control attributes, which decide transactional offset commits.
pub fn replay_with_markers(
    mut read: impl FnMut(i64) -> Result<Bytes, ReadError>,
    start: i64,
    end: i64,
    name: &str,
    mut apply: impl FnMut(&Record),
) -> Result<u64, ReadError> {
    let mut records_read = 0u64;
    let mut next = start;
    while next < end {
        let bytes = read(next)?;
        if bytes.is_empty() {
            break;
        }
        let before = next;
        for_each_batch(&bytes, name, |batch_end, recs| {
            for r in recs.iter().filter(|r| r.offset >= next) {
                records_read += 1;
                apply(r);
            }
            next = next.max(batch_end);
        });
        if next <= before {
            warn!(partition = %name, offset = next, "cannot read past this offset; the rest of the partition is ignored");
            break;
        }
    }
    Ok(records_read)
}

/// A record batch's fixed header (v2).
const BATCH_HEADER_BYTES: usize = 61;

/// Walks whole batches in `bytes`, giving each one's end offset (last offset + 1, from the
/// header, so a batch emptied by compaction still advances) and its decoded records.
fn for_each_batch(bytes: &Bytes, partition: &str, mut f: impl FnMut(i64, Vec<Record>)) {
    let mut pos = 0usize;
    while bytes.len() - pos >= BATCH_HEADER_BYTES {
        let b = &bytes[pos..];
        let base = i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let last_delta = i32::from_be_bytes([b[23], b[24], b[25], b[26]]);
        let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
            return;
        };
        if total > b.len() || total < BATCH_HEADER_BYTES {
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
        f(
            base.saturating_add(i64::from(last_delta)).saturating_add(1),
            recs,
        );
        pos += total;
    }
}
