use std::sync::Arc;

use proto_kafka::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use proto_kafka::messages::{ListOffsetsRequest, ListOffsetsResponse};
use proto_kafka::ResponseError;

use crate::broker::Broker;
use crate::partition::Partition;
use crate::request::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

fn lookup(
    partition: &Partition,
    timestamp: i64,
    current_leader_epoch: i32,
) -> Result<(i64, i64), ResponseError> {
    let epoch = partition.leader_epoch();
    if current_leader_epoch >= 0 && current_leader_epoch < epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    if current_leader_epoch > epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    let hw = partition.high_watermark();
    let storage = |_| ResponseError::KafkaStorageError;
    match timestamp {
        LATEST => Ok((-1, hw)),
        EARLIEST | EARLIEST_LOCAL => Ok((-1, partition.log_start_offset().map_err(storage)?)),
        // No tiered storage: nothing is tiered, so the latest tiered offset is "none".
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let found = partition
                .with_log(|log| log.max_timestamp_and_offset())
                .map_err(storage)?;
            Ok(match found {
                Some(t) if t.offset < hw => (t.timestamp, t.offset),
                _ => (-1, -1),
            })
        }
        ts if ts >= 0 => {
            let found = partition
                .with_log(|log| log.fetch_offset_by_timestamp(ts))
                .map_err(storage)?
                .map_err(|_| ResponseError::KafkaStorageError)?;
            Ok(match found {
                Some(t) if t.offset < hw => (t.timestamp, t.offset),
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
                    let Some(partition) = broker.replicas.get(&t.name.0, p.partition_index) else {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_timestamp(-1)
                            .with_offset(-1);
                    };
                    match lookup(&partition, p.timestamp, p.current_leader_epoch) {
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
