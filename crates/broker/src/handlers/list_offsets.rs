use std::sync::Arc;

use proto_kafka::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use proto_kafka::messages::{ListOffsetsRequest, ListOffsetsResponse};
use proto_kafka::ResponseError;

use proto_kafka::records::{Record, RecordBatchDecoder};
use strom_log::TimestampAndOffset;

use crate::broker::Broker;
use crate::partition::PartitionLog;
use crate::request::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// The log answers timestamp lookups per batch; Kafka answers with the exact record. Open the
/// one batch the log found (decompressing it: this is a read path, storage is untouched) and
/// pick the first record that matches.
fn exact_record(
    partition: &dyn PartitionLog,
    found: TimestampAndOffset,
    high_watermark: i64,
    matches: impl Fn(&Record) -> bool,
) -> (i64, i64) {
    let batch = partition
        .read(found.offset, 1, true)
        .ok()
        .and_then(|r| r.slice)
        .and_then(|s| s.read_bytes().ok());
    if let Some(mut bytes) = batch {
        if let Ok(sets) = RecordBatchDecoder::decode_all(&mut bytes) {
            let record = sets
                .iter()
                .flat_map(|s| s.records.iter())
                .find(|r| r.offset >= found.offset && r.offset < high_watermark && matches(r));
            if let Some(r) = record {
                return (r.timestamp, r.offset);
            }
        }
    }
    (found.timestamp, found.offset)
}

/// Kafka's lookup: `read_committed` (isolation level 1) answers as far as the last stable
/// offset, read_uncommitted as far as the high watermark.
fn lookup(
    partition: &dyn PartitionLog,
    timestamp: i64,
    current_leader_epoch: i32,
    read_committed: bool,
) -> Result<(i64, i64), ResponseError> {
    let epoch = partition.leader_epoch();
    if current_leader_epoch >= 0 && current_leader_epoch < epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if current_leader_epoch > epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    let storage = |_| ResponseError::KafkaStorageError;
    // The last fetchable offset (Kafka's name); `hw` below.
    let hw = if read_committed {
        partition.last_stable_offset().map_err(storage)?
    } else {
        partition.high_watermark()
    };
    match timestamp {
        LATEST => Ok((-1, hw)),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, partition.log_start_offset().map_err(storage)?)),
        // No tiered storage: nothing is tiered, so the latest tiered offset is "none".
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let found = partition.max_timestamp_and_offset().map_err(storage)?;
            Ok(match found {
                Some(t) if t.offset < hw => {
                    exact_record(partition, t, hw, |r| r.timestamp == t.timestamp)
                }
                _ => (-1, -1),
            })
        }
        ts if ts >= 0 => {
            let found = partition.fetch_offset_by_timestamp(ts).map_err(storage)?;
            Ok(match found {
                Some(t) if t.offset < hw => exact_record(partition, t, hw, |r| r.timestamp >= ts),
                _ => (-1, -1),
            })
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    // From v2; earlier versions decode it as 0 (read_uncommitted), as Kafka treats them.
    let read_committed = req.isolation_level == 1;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let partition = match broker
                        .replicas
                        .leader_partition(&t.name.0, p.partition_index)
                    {
                        Ok(partition) => partition,
                        Err(e) => {
                            return base
                                .with_error_code(e.code())
                                .with_timestamp(-1)
                                .with_offset(-1)
                        }
                    };
                    match lookup(
                        partition.as_ref(),
                        p.timestamp,
                        p.current_leader_epoch,
                        read_committed,
                    ) {
                        Ok((timestamp, offset)) => base
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            // The field exists from v4; earlier versions must leave it unset.
                            .with_leader_epoch(if ctx.version >= 4 {
                                partition.leader_epoch()
                            } else {
                                -1
                            }),
                        Err(e) => base
                            .with_error_code(e.code())
                            .with_timestamp(-1)
                            .with_offset(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
