//! Produce: batches are validated and appended as they came (offsets and leader epoch patched in
//! place, never decompressed); the answer waits for durability unless acks=0.

use std::sync::Arc;

use bytes::BytesMut;
use proto_kafka::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use proto_kafka::messages::{ProduceRequest, ProduceResponse};
use proto_kafka::ResponseError;
use tracing::warn;

use crate::broker::Broker;
use crate::metadata::metadata_log::now_ms;
use crate::partition::{Partition, PartitionError};
use crate::request::{Reply, RequestContext};

/// Kafka's error code for a failed append.
pub fn append_error_code(e: &PartitionError) -> ResponseError {
    match e {
        PartitionError::Log(e) => ResponseError::try_from_code(e.kafka_error_code())
            .unwrap_or(ResponseError::KafkaStorageError),
        PartitionError::Rejected(code) => *code,
        PartitionError::Io(_) | PartitionError::Poisoned => ResponseError::KafkaStorageError,
    }
}

struct Appended {
    topic: usize,
    partition: usize,
    end_offset: i64,
    replica: Arc<Partition>,
}

pub fn handle(broker: &Arc<Broker>, ctx: RequestContext, req: ProduceRequest) -> Reply {
    let acks = req.acks;
    let now = now_ms();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut appended = Vec::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            let base = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let result: Result<(i64, i64, i64, usize), ResponseError> = (|| {
                if acks != 0 && acks != 1 && acks != -1 {
                    return Err(ResponseError::InvalidRequiredAcks);
                }
                // Kafka refuses client writes to internal topics; only the coordinator
                // writes __consumer_offsets.
                if name == crate::group::OFFSETS_TOPIC {
                    return Err(ResponseError::InvalidTopicException);
                }
                let replica = broker
                    .replicas
                    .get(&name, data.index)
                    .ok_or(ResponseError::UnknownTopicOrPartition)?;
                let records = data
                    .records
                    .as_ref()
                    .filter(|r| !r.is_empty())
                    .ok_or(ResponseError::CorruptMessage)?;
                // A node of one is the whole ISR.
                if acks == -1 && replica.min_insync_replicas() > 1 {
                    return Err(ResponseError::NotEnoughReplicas);
                }
                // The one copy of the record bytes: the frame is shared and immutable, and the
                // offsets must be patched before the write.
                let mut buf = BytesMut::from(&records[..]);
                let info = replica.append_as_leader(&mut buf, now).map_err(|e| {
                    let code = append_error_code(&e);
                    if code == ResponseError::KafkaStorageError {
                        warn!(topic = %name, partition = data.index, error = %e, "append failed");
                    }
                    code
                })?;
                let log_start = replica.log_start_offset().unwrap_or(-1);
                appended.push(Appended {
                    topic: ti,
                    partition: pi,
                    end_offset: info.last_offset + 1,
                    replica,
                });
                Ok((
                    info.first_offset,
                    info.log_append_time_ms,
                    log_start,
                    if info.duplicate { 0 } else { buf.len() },
                ))
            })();
            partitions.push(match result {
                Ok((first, append_time, log_start, size)) => {
                    crate::metrics::topic_bytes_in(&name, size);
                    base.with_base_offset(first)
                        .with_log_append_time_ms(append_time)
                        .with_log_start_offset(log_start)
                }
                Err(code) => {
                    crate::metrics::request_error("Produce");
                    base.with_error_code(code.code())
                }
            });
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }

    if acks == 0 {
        // No answer is sent; the data still has to become durable and visible.
        if !appended.is_empty() {
            tokio::spawn(async move {
                for a in appended {
                    if let Err(e) = a.replica.complete_append(a.end_offset).await {
                        warn!(error = %e, "flush after acks=0 produce failed");
                    }
                }
            });
        }
        return Reply::Now(None);
    }
    Reply::Later(Box::pin(async move {
        for a in appended {
            if let Err(e) = a.replica.complete_append(a.end_offset).await {
                warn!(partition = %a.replica.topic_partition, error = %e, "flush failed; produce not acknowledged");
                topics[a.topic].partition_responses[a.partition] =
                    PartitionProduceResponse::default()
                        .with_index(topics[a.topic].partition_responses[a.partition].index)
                        .with_error_code(ResponseError::KafkaStorageError.code())
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1);
            }
        }
        let response = ProduceResponse::default().with_responses(topics);
        match ctx.respond(&response) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, "cannot encode produce response");
                None
            }
        }
    }))
}
