//! Writing a group's records to its partition of `__consumer_offsets`: encoding them with
//! Kafka's schemas, appending through the [`OffsetsLog`] port, and waiting for durability.

use std::sync::Arc;

use bytes::Bytes;
use proto_kafka::ResponseError;
use strom_metadata::metadata_log::encode_internal_batch;
use tracing::warn;

use crate::consumer::Change;
use crate::consumer_records;
use crate::ports::{AppendedRange, OffsetsLog, PortFuture, StartedAppend};
use crate::records;

/// An append to `__consumer_offsets` that is not yet durable.
pub struct PendingWrite {
    partition: i32,
    /// Where its first record went, when the log knew at once (a local log): the records are
    /// then applied before they are durable, in log order. None on a log that assigns offsets
    /// at commit (shared storage): applied once [`PendingWrite::complete`] gives them.
    pub first_offset: Option<i64>,
    records: usize,
    /// TxnOffsetCommit's batch: a fenced producer is told so.
    transactional: bool,
    durable: PortFuture<Result<AppendedRange, ResponseError>>,
}

impl PendingWrite {
    /// Waits until the records are durable; where they went.
    pub async fn complete(self, too_large: ResponseError) -> Result<AppendedRange, ResponseError> {
        let partition = self.partition;
        let transactional = self.transactional;
        let range = self.durable.await.map_err(|e| {
            warn!(partition, error = ?e, "__consumer_offsets write not durable");
            match e {
                ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced
                    if transactional =>
                {
                    e
                }
                other => storage_error(other, too_large),
            }
        })?;
        check_range(partition, range, self.records)?;
        if self.first_offset.is_some_and(|f| f != range.first_offset) {
            warn!(
                partition,
                "the log moved an append after it gave its offsets"
            );
            return Err(ResponseError::UnknownServerError);
        }
        Ok(range)
    }
}

/// An append's range holds exactly its records (the coordinator numbers them from it).
fn check_range(partition: i32, range: AppendedRange, records: usize) -> Result<(), ResponseError> {
    if range.last_offset - range.first_offset + 1 != records as i64 {
        warn!(
            partition,
            first = range.first_offset,
            last = range.last_offset,
            records,
            "the log gave an append a range of another size"
        );
        return Err(ResponseError::UnknownServerError);
    }
    Ok(())
}

/// Kafka's mapping of a failed group write (given as the code a producer would get) to what
/// the group client is told.
pub fn storage_error(produce_error: ResponseError, too_large: ResponseError) -> ResponseError {
    match produce_error {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        ResponseError::MessageTooLarge
        | ResponseError::RecordListTooLarge
        | ResponseError::InvalidFetchSize => too_large,
        _ => ResponseError::UnknownServerError,
    }
}

/// The records of consumer-group changes: Kafka's keys and values.
pub(crate) fn consumer_change_records(
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

/// Appends `records` to `partition` of `__consumer_offsets` as one batch.
pub fn append(
    log: &Arc<dyn OffsetsLog>,
    partition: i32,
    records: &[(Bytes, Option<Bytes>)],
    too_large: ResponseError,
    now_ms: i64,
) -> Result<PendingWrite, ResponseError> {
    debug_assert!(!records.is_empty(), "an append holds a record");
    let entries = records.iter().map(|(k, v)| (Some(k.clone()), v.clone()));
    let buf = encode_internal_batch(entries, now_ms).map_err(|e| {
        warn!(error = %e, "cannot encode a __consumer_offsets batch");
        ResponseError::UnknownServerError
    })?;
    let started = log
        .start_append(partition, buf, false, now_ms)
        .map_err(|e| {
            warn!(partition, error = ?e, "__consumer_offsets append failed");
            storage_error(e, too_large)
        })?;
    pending_write(partition, started, records.len(), false)
}

fn pending_write(
    partition: i32,
    started: StartedAppend,
    records: usize,
    transactional: bool,
) -> Result<PendingWrite, ResponseError> {
    if let Some(range) = started.range {
        check_range(partition, range, records)?;
    }
    Ok(PendingWrite {
        partition,
        first_offset: started.range.map(|r| r.first_offset),
        records,
        transactional,
        durable: started.durable,
    })
}

/// Who a transactional batch is written for: the producer's id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Appends `records` to `partition` of `__consumer_offsets` as one transactional batch of
/// `producer` (TxnOffsetCommit): in the log at once, and decided by that producer's
/// COMMIT or ABORT marker, on the live path and on load alike.
pub fn append_transactional(
    log: &Arc<dyn OffsetsLog>,
    partition: i32,
    records: &[(Bytes, Option<Bytes>)],
    producer: TxnProducer,
    too_large: ResponseError,
    now_ms: i64,
) -> Result<PendingWrite, ResponseError> {
    debug_assert!(!records.is_empty(), "an append holds a record");
    let buf = encode_transactional_batch(records, producer, now_ms).map_err(|e| {
        warn!(error = %e, "cannot encode a transactional __consumer_offsets batch");
        ResponseError::UnknownServerError
    })?;
    let started = log
        .start_append(partition, buf, true, now_ms)
        .map_err(|e| {
            warn!(partition, error = ?e, "transactional __consumer_offsets append failed");
            match e {
                // A fenced producer is told so, as Kafka's coordinator-origin append does.
                ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => e,
                other => storage_error(other, too_large),
            }
        })?;
    pending_write(partition, started, records.len(), true)
}

/// One uncompressed v2 batch of `producer`'s, transactional, its sequence from 0 (the
/// coordinator's batches are not part of the producer's own sequence).
pub(crate) fn encode_transactional_batch(
    records: &[(Bytes, Option<Bytes>)],
    producer: TxnProducer,
    now_ms: i64,
) -> Result<bytes::BytesMut, proto_kafka::ProtoError> {
    use proto_kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: true,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // Kafka's coordinator writes base sequence 0 and the log checks no sequence of
            // a coordinator's batch; a batch with a producer id needs one to be valid.
            sequence: i as i32,
            timestamp: now_ms,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Vec::new(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf)
}

/// Tombstones for `offsets` of `group_id`, and for the group itself when `group_too`.
pub fn tombstone_records(
    group_id: &str,
    offsets: &[(String, i32)],
    group_too: bool,
) -> Vec<(Bytes, Option<Bytes>)> {
    let mut recs = Vec::with_capacity(offsets.len() + 3);
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
                Err(e) => warn!(group = %group_id, error = %e, "cannot encode a group tombstone"),
            }
        }
    }
    recs
}
