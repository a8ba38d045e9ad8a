//! Fetch: whole batches straight from the segment files, long-polling until `min_bytes` are
//! available or `max_wait_ms` passes. An empty partition answers with empty records, never
//! null (librdkafka rejects null).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto_kafka::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use proto_kafka::messages::{FetchRequest, FetchResponse, TopicName};
use proto_kafka::ResponseError;
use tracing::warn;
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::metadata::MetadataImage;
use crate::network::zero_copy::{FileRange, FileRanges};
use crate::partition::{AnyData, PartitionLog};
use crate::replica_selector::{ReplicaSelector, ReplicaView};
use crate::request::{Reply, RequestContext};

/// Longest a fetch may park, whatever the client asks: Kafka clients' default
/// `request.timeout.ms`. Kafka's broker parks as long as asked, and a client that asked for
/// longer than its request timeout gives up and reconnects; answering (empty) by then is
/// always in time. `connections.max.idle.ms` caps it too: Kafka closes a connection without
/// traffic for that long, parked fetch or not.
const MAX_WAIT_CAP_MS: u64 = 30_000;

/// How long a fetch asking for `max_wait_ms` may park.
pub fn max_wait(max_wait_ms: i32, connections_max_idle_ms: u64) -> Duration {
    Duration::from_millis(
        (max_wait_ms.max(0) as u64)
            .min(MAX_WAIT_CAP_MS)
            .min(connections_max_idle_ms),
    )
}

pub fn handle(broker: &Arc<Broker>, ctx: RequestContext, req: FetchRequest) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let (response, ranges) = fetch(&broker, &ctx, req).await;
        match ctx.respond_with_files(&response, ranges) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, "cannot encode fetch response");
                None
            }
        }
    }))
}

struct Target {
    name: Option<String>,
    topic_id: Uuid,
    partitions: Vec<(i32, i64, i32, i32)>, // index, fetch offset, partition max bytes, current leader epoch
    /// READ on the topic (Kafka: TOPIC_AUTHORIZATION_FAILED for each partition otherwise).
    authorized: bool,
}

async fn fetch(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FetchRequest,
) -> (FetchResponse, FileRanges) {
    // We create no fetch sessions (KIP-227 lets a broker decline): session id 0 in every
    // answer makes clients send full requests. A client naming a session we never gave
    // must start over.
    if req.session_id != 0 {
        crate::metrics::request_error_code("Fetch", ResponseError::FetchSessionIdNotFound.code());
        let response = FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return (response, FileRanges::new());
    }
    let by_id = ctx.version >= 13;
    let mut targets = targets(&req, &broker.image(), by_id);
    for t in &mut targets {
        if let Some(name) = &t.name {
            t.authorized = crate::authz::authorize(
                broker,
                &ctx.info,
                crate::authz::AclOperation::Read,
                crate::authz::ResourceType::Topic,
                name,
            );
        }
    }
    let started = Instant::now();
    let max_wait = max_wait(req.max_wait_ms, broker.config.connections_max_idle_ms);
    let cancel = &ctx.info.cancel;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let read_committed = req.isolation_level == 1;
    // KIP-392: a consumer naming its rack (v11+) may be sent to a replica in that rack.
    let client_rack = (ctx.version >= 11
        && req.replica_id.0 < 0
        && req.replica_state.replica_id.0 < 0
        && broker.config.replica_selector != ReplicaSelector::Leader)
        .then(|| req.rack_id.to_string())
        .filter(|r| !r.is_empty());
    loop {
        let replicas = resolve(broker, &targets, by_id);
        // Taken before reading, so an append between the read and the wait still wakes us;
        // only these partitions' appends do.
        let data_arrived = AnyData::new(
            replicas
                .iter()
                .flatten()
                .filter_map(|r| r.as_ref().ok())
                .map(|r| r.wait_for_data()),
        );
        let mut ranges = FileRanges::new();
        let (topics, bytes, records_by_topic, errors) = read_all(
            broker,
            &targets,
            &replicas,
            max_bytes,
            by_id,
            read_committed,
            client_rack.as_deref(),
            &mut ranges,
        )
        .await;
        let elapsed = started.elapsed();
        if bytes >= min_bytes.max(1) || errors || elapsed >= max_wait || cancel.is_cancelled() {
            crate::metrics::fetch_done(|| broker.image(), &topics, &records_by_topic, bytes);
            let response = FetchResponse::default()
                .with_responses(topics)
                .with_session_id(0);
            return (response, ranges);
        }
        // A peer that has gone or a broker shutting down ends the wait: the first reads once
        // more for nobody, the second answers with what there is.
        tokio::select! {
            _ = tokio::time::timeout(max_wait - elapsed, data_arrived) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// The request's partitions, each topic named (`None`: a topic id the image does not know).
fn targets(req: &FetchRequest, image: &MetadataImage, by_id: bool) -> Vec<Target> {
    req.topics
        .iter()
        .map(|t| {
            let name = if by_id {
                image.topic_by_id(&t.topic_id).map(|x| x.name.clone())
            } else {
                Some(t.topic.0.to_string())
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition,
                        p.fetch_offset,
                        p.partition_max_bytes,
                        p.current_leader_epoch,
                    )
                })
                .collect();
            Target {
                name,
                topic_id: t.topic_id,
                partitions,
                authorized: true,
            }
        })
        .collect()
}

/// Each wanted partition's replica here, or the error that answers for it.
type Resolved = Vec<Vec<Result<Arc<dyn PartitionLog>, ResponseError>>>;

fn resolve(broker: &Broker, targets: &[Target], by_id: bool) -> Resolved {
    targets
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|&(index, ..)| match t.name.as_deref() {
                    Some(_) if !t.authorized => Err(ResponseError::TopicAuthorizationFailed),
                    Some(name) => broker.replicas.fetch_partition(name, index),
                    None if by_id => Err(ResponseError::UnknownTopicId),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                })
                .collect()
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn read_all(
    broker: &Broker,
    targets: &[Target],
    replicas: &Resolved,
    max_bytes: usize,
    by_id: bool,
    read_committed: bool,
    client_rack: Option<&str>,
    ranges: &mut FileRanges,
) -> (Vec<FetchableTopicResponse>, usize, Vec<u64>, bool) {
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(targets.len());
    // Beside `topics`, one count per topic: the data records its answer carries.
    let mut records_by_topic = Vec::with_capacity(targets.len());
    for (t, replicas) in targets.iter().zip(replicas) {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let mut topic_records = 0u64;
        for (&(index, offset, partition_max, leader_epoch), replica) in
            t.partitions.iter().zip(replicas)
        {
            let preferred = match (client_rack, t.name.as_deref(), replica) {
                (Some(rack), Some(name), Ok(r)) => {
                    preferred_read_replica(broker, name, index, r.as_ref(), rack)
                }
                _ => None,
            };
            let (data, size, records, error) = match preferred {
                Some(node_id) => redirected(replica, index, node_id, read_committed),
                None => {
                    read_partition(
                        broker,
                        replica,
                        (index, offset, partition_max, leader_epoch),
                        max_bytes.saturating_sub(total),
                        total == 0,
                        read_committed,
                        ranges,
                    )
                    .await
                }
            };
            total += size;
            topic_records += records;
            errors |= error;
            partitions.push(data);
        }
        records_by_topic.push(topic_records);
        let topic = FetchableTopicResponse::default()
            .with_partitions(partitions)
            .with_topic_id(t.topic_id);
        let topic = if by_id {
            topic
        } else {
            topic.with_topic(TopicName(str_bytes(t.name.as_deref().unwrap_or(""))))
        };
        topics.push(topic);
    }
    (topics, total, records_by_topic, errors)
}

/// The replica a consumer in `client_rack` should fetch `topic`-`index` from, if not this
/// broker: only the leader answers it (as Kafka), with the live replicas the image lists.
fn preferred_read_replica(
    broker: &Broker,
    topic: &str,
    index: i32,
    replica: &dyn PartitionLog,
    client_rack: &str,
) -> Option<i32> {
    let node_id = broker.config.node_id;
    if replica.leader_id() != node_id {
        return None;
    }
    let image = broker.image();
    let registration = image.topic(topic)?.partitions.get(&index)?;
    let live = broker.cluster().map(|c| c.live_brokers());
    let views: Vec<ReplicaView<'_>> = registration
        .replicas
        .iter()
        .filter(|id| live.as_ref().is_none_or(|l| l.is_empty() || l.contains(id)))
        .filter_map(|id| {
            let b = image.brokers.get(id)?;
            Some(ReplicaView {
                node_id: *id,
                rack: b.rack.as_deref(),
            })
        })
        .collect();
    let chosen = broker
        .config
        .replica_selector
        .select(client_rack, node_id, &views);
    (chosen != node_id).then_some(chosen)
}

/// The leader's answer sending a consumer to `node_id` (Kafka's: no records, the offsets
/// as the leader knows them, and the preferred replica); it ends the wait at once.
fn redirected(
    replica: &Result<Arc<dyn PartitionLog>, ResponseError>,
    index: i32,
    node_id: i32,
    read_committed: bool,
) -> (PartitionData, usize, u64, bool) {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_preferred_read_replica(proto_kafka::messages::BrokerId(node_id))
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_records(Some(Bytes::new()));
    let Ok(replica) = replica else {
        return (data, 0, 0, true);
    };
    let hw = replica.high_watermark();
    let data = data
        .with_high_watermark(hw)
        .with_last_stable_offset(replica.last_stable_offset().unwrap_or(hw))
        .with_log_start_offset(replica.log_start_offset().unwrap_or(-1));
    (data, 0, 0, true)
}

/// One partition's answer, the bytes and data records it adds, and whether it is an error
/// (which ends a wait).
/// `first` is set until some partition has given data: KIP-74's first batch goes out whole.
#[allow(clippy::too_many_arguments)]
async fn read_partition(
    broker: &Broker,
    replica: &Result<Arc<dyn PartitionLog>, ResponseError>,
    (index, offset, partition_max, leader_epoch): (i32, i64, i32, i32),
    remaining_bytes: usize,
    first: bool,
    read_committed: bool,
    ranges: &mut FileRanges,
) -> (PartitionData, usize, u64, bool) {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(proto_kafka::messages::BrokerId(-1))
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_records(Some(Bytes::new()));
    let replica = match replica {
        Ok(r) => r,
        Err(code) => return (data.with_error_code(code.code()), 0, 0, true),
    };
    let epoch = replica.leader_epoch();
    if leader_epoch >= 0 && leader_epoch != epoch {
        let code = if leader_epoch < epoch {
            ResponseError::FencedLeaderEpoch
        } else {
            ResponseError::UnknownLeaderEpoch
        };
        return (data.with_error_code(code.code()), 0, 0, true);
    }
    let budget = (partition_max.max(0) as usize).min(remaining_bytes);
    if let Some(read) = replica.read_bytes(offset, budget, first, read_committed) {
        return bytes_answer(data, replica.as_ref(), read.await, budget, first);
    }
    // read_committed stops at the last stable offset and names the aborted transactions of
    // what it returns; both levels report the LSO (Kafka fills it for either).
    let isolated = match replica.read_isolated(offset, budget, first, read_committed) {
        Ok(read) => read,
        Err(e) => {
            crate::storage::report_damaged_read(replica.topic_partition(), &e);
            let code = crate::partition::append_error_code(&e);
            let hw = replica.high_watermark();
            let data = data
                .with_error_code(code.code())
                .with_high_watermark(hw)
                .with_last_stable_offset(replica.last_stable_offset().unwrap_or(hw))
                .with_log_start_offset(replica.log_start_offset().unwrap_or(-1));
            return (data, 0, 0, true);
        }
    };
    let aborted = isolated.aborted_transactions.map(aborted_answer);
    let read = isolated.read;
    let data = data
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(isolated.last_stable_offset)
        .with_log_start_offset(read.log_start_offset)
        .with_aborted_transactions(aborted);
    let slice = match read.slice.filter(|_| budget > 0 || first) {
        Some(s) if broker.config.log_fetch_verify_crc => {
            let read_size = s.size;
            match crate::storage::verified_slice(replica.as_ref(), s) {
                Ok(mut s) => {
                    if s.size < read_size {
                        // Cut before a damaged batch: count what is sent. Bytes that cannot
                        // be read again cannot be sent either: none counted.
                        s.data_records = strom_log::verify::data_records(&s).unwrap_or(0);
                    }
                    Some(s)
                }
                Err(code) => return (data.with_error_code(code), 0, 0, true),
            }
        }
        other => other,
    };
    let Some(slice) = slice else {
        return (data, 0, 0, false);
    };
    debug_assert!(slice.size <= budget || first, "a read beyond its budget");
    // The bytes stay in the file: the connection sends them with sendfile.
    let size = slice.size;
    let data_records = slice.data_records;
    let records = ranges.placeholder(FileRange {
        file: slice.file,
        position: slice.position,
        len: slice.size,
    });
    (data.with_records(Some(records)), size, data_records, false)
}

/// The answer for a read that carries its bytes (shared storage): nothing for sendfile.
/// A read's aborted transactions as the answer lists them.
fn aborted_answer(list: Vec<strom_log::AbortedTxn>) -> Vec<AbortedTransaction> {
    list.into_iter()
        .map(|t| {
            AbortedTransaction::default()
                .with_producer_id(proto_kafka::messages::ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect()
}

fn bytes_answer(
    data: PartitionData,
    replica: &dyn PartitionLog,
    read: Result<crate::partition::BytesRead, crate::partition::PartitionError>,
    budget: usize,
    first: bool,
) -> (PartitionData, usize, u64, bool) {
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            let code = super::produce::append_error_code(&e);
            let hw = replica.high_watermark();
            let data = data
                .with_error_code(code.code())
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(replica.log_start_offset().unwrap_or(-1));
            return (data, 0, 0, true);
        }
    };
    let aborted = read.aborted_transactions.map(aborted_answer);
    let data = data
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(read.last_stable_offset)
        .with_log_start_offset(read.log_start_offset)
        .with_aborted_transactions(aborted);
    if budget == 0 && !first {
        return (data, 0, 0, false);
    }
    let size = read.records.len();
    let records = strom_log::batch::data_records_in(&read.records, 0);
    (data.with_records(Some(read.records)), size, records, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_wait_is_capped_by_request_timeout_and_idle_time() {
        assert_eq!(max_wait(500, 600_000), Duration::from_millis(500));
        assert_eq!(max_wait(i32::MAX, 600_000), Duration::from_millis(30_000));
        assert_eq!(max_wait(i32::MAX, 2_000), Duration::from_millis(2_000));
        assert_eq!(max_wait(-7, 600_000), Duration::ZERO);
    }

    /// Produce, fetch and list_offsets answer NOT_LEADER_OR_FOLLOWER for a partition whose
    /// leader in the image is another broker (hosted here as a follower, or placed elsewhere
    /// only), and serve the partition this node leads as before.
    #[tokio::test]
    async fn only_the_images_leader_serves_a_partition() {
        use crate::metadata::MetadataRecord;
        use crate::replica_manager::test_broker::{broker, context, partition};
        use proto_kafka::messages::fetch_request::{FetchPartition, FetchTopic};
        use proto_kafka::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use proto_kafka::messages::{ApiKey, ListOffsetsRequest, ProduceRequest, ProduceResponse};
        use proto_kafka::protocol::Decodable;

        let tmp = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let records = [
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            partition(id, 0, vec![0], 0, 0),    // led here
            partition(id, 1, vec![0, 1], 1, 3), // a follower here
            partition(id, 2, vec![1], 1, 0),    // elsewhere only
        ];
        let broker = broker(tmp.path(), &records);
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        let name = || TopicName(str_bytes("t"));

        // Produce (v8: a header without tagged fields).
        let batch = crate::metadata::metadata_log::encode_internal_batch(
            [(None, Some(Bytes::from_static(b"v")))],
            0,
        )
        .unwrap()
        .freeze();
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name())
                .with_partition_data(
                    (0..3)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch.clone()))
                        })
                        .collect(),
                ),
        ]);
        let ctx = context(ApiKey::Produce, 8);
        let Reply::Later(pending) = super::super::produce::handle(&broker, ctx, req, Bytes::new())
        else {
            panic!("acks=1 answers later");
        };
        let Some(crate::request::ResponseFrame::Flat(frame)) = pending.await else {
            panic!("no flat produce response");
        };
        let mut body = frame.freeze().slice(8..); // size, correlation id
        let response = ProduceResponse::decode(&mut body, 8).unwrap();
        let codes: Vec<i16> = response.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![0, not_leader, not_leader]);

        // Fetch (v12, by name).
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name())
                .with_partitions(
                    (0..3)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]);
        let ctx = context(ApiKey::Fetch, 12);
        let (response, _ranges) = fetch(&broker, &ctx, req).await;
        let codes: Vec<i16> = response.responses[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, vec![0, not_leader, not_leader]);
        assert_eq!(response.responses[0].partitions[0].high_watermark, 1);

        // ListOffsets (latest).
        let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(name())
            .with_partitions(
                (0..3)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
        let ctx = context(ApiKey::ListOffsets, 7);
        let response = super::super::list_offsets::handle(&broker, &ctx, req);
        let answers: Vec<(i16, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset))
            .collect();
        assert_eq!(answers, vec![(0, 1), (not_leader, -1), (not_leader, -1)]);
    }
}
