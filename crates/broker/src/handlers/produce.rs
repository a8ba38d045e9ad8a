//! Produce: batches are validated and appended as they came (offsets and leader epoch patched in
//! place, never decompressed); the answer waits for durability unless acks=0.

use crate::authz::{self, AclOperation, ResourceType};
use std::sync::Arc;

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use proto_kafka::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use proto_kafka::messages::{ProduceRequest, ProduceResponse, TopicName};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;
use tracing::{debug, warn};

use strom_log::validator::validate_client_batches;
use strom_log::{LogError, TopicPartition, VerificationGuard};

use crate::broker::Broker;
use crate::metadata::metadata_log::now_ms;
use crate::partition::{PartitionError, PartitionLog, PendingAppend};
use crate::request::{Reply, RequestContext};

/// Kept at its old path; it lives beside [`PartitionError`].
pub use crate::partition::append_error_code;

/// Why a partition's batches were refused, as the response carries it (KIP-467: the
/// error_message and the refused records by their index in the batch).
struct Refusal {
    code: ResponseError,
    message: Option<String>,
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

impl From<ResponseError> for Refusal {
    fn from(code: ResponseError) -> Self {
        Refusal {
            code,
            message: None,
            record_errors: Vec::new(),
        }
    }
}

impl Refusal {
    fn of_append(e: &PartitionError) -> Refusal {
        let code = append_error_code(e);
        match e {
            PartitionError::Log(LogError::InvalidRecords {
                message,
                record_errors,
                ..
            }) => Refusal {
                code,
                message: Some(message.clone()),
                record_errors: record_errors
                    .iter()
                    .map(|r| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(r.batch_index)
                            .with_batch_index_error_message(Some(StrBytes::from_string(
                                r.message.clone(),
                            )))
                    })
                    .collect(),
            },
            _ => Refusal::from(code),
        }
    }
}

/// Kafka's checks of what a client sends beyond each batch's own consistency (one batch,
/// based at offset 0). Batches that do not parse are left to the append, which says why.
fn check_client_batches(records: &[u8], topic: &str, partition: i32) -> Result<(), LogError> {
    let mut headers = Vec::new();
    let mut position = 0usize;
    while position < records.len() {
        let Ok(h) = strom_log::batch::parse_header(&records[position..], position as u64) else {
            return Ok(());
        };
        position = position.saturating_add(h.size_bytes());
        headers.push(h);
        if headers.len() > 1 {
            break;
        }
    }
    validate_client_batches(&headers, &TopicPartition::new(topic, partition))
}

struct Appended {
    topic: usize,
    partition: usize,
    completion: Completion,
    replica: Arc<dyn PartitionLog>,
}

/// What makes an accepted append durable and visible.
enum Completion {
    /// A local log: written, flushed up to this end offset.
    Flush(i64),
    /// Shared storage: the offsets exist once the intake's commit resolves.
    Pending(PendingAppend),
}

/// One append's outcome: None for a flushed local append (its offsets are in the answer
/// already), where a pending one went.
type Completed = (
    usize,
    usize,
    Arc<dyn PartitionLog>,
    bool,
    Result<Option<crate::partition::Appended>, PartitionError>,
);

/// Where a partition's record batches are.
enum Records {
    /// None or empty in the request.
    Missing,
    /// This range of the request frame.
    InFrame(Range<usize>),
    /// Outside the frame (a decoder that copied): our own copy.
    Copied(BytesMut),
}

/// The request with its record batches located in the frame instead of held as views of it,
/// so that the frame has no other owner and can be patched in place.
struct TopicData {
    name: String,
    partitions: Vec<(i32, Records)>,
}

/// Splits the request into its acks, where its batches are, and the frame as mutable bytes.
fn into_parts(req: ProduceRequest, frame: Bytes) -> (i16, Vec<TopicData>, BytesMut) {
    let (acks, topics) = locate(req, &frame);
    // Normally the last owner of the frame's memory, so this takes it without a copy; should
    // anything still share it, the frame is copied once (offsets must be patched before the
    // write, and shared bytes are immutable).
    let frame = frame
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    (acks, topics, frame)
}

fn locate(req: ProduceRequest, frame: &Bytes) -> (i16, Vec<TopicData>) {
    let base = frame.as_ptr() as usize;
    let topics = req
        .topic_data
        .into_iter()
        .map(|topic| TopicData {
            name: topic.name.0.to_string(),
            partitions: topic
                .partition_data
                .into_iter()
                .map(|data| {
                    let records = match data.records {
                        Some(r) if !r.is_empty() => {
                            let start = (r.as_ptr() as usize).wrapping_sub(base);
                            if start <= frame.len() && r.len() <= frame.len() - start {
                                Records::InFrame(start..start + r.len())
                            } else {
                                Records::Copied(BytesMut::from(&r[..]))
                            }
                        }
                        _ => Records::Missing,
                    };
                    (data.index, records)
                })
                .collect(),
        })
        .collect();
    (req.acks, topics)
}

/// Completes the appends of one request, all partitions at once: their fdatasyncs (on
/// different files) overlap instead of queueing behind each other.
async fn flush_all(appended: Vec<Appended>) -> Vec<Completed> {
    join_all(appended.into_iter().map(|a| async move {
        let (pending, result) = match a.completion {
            Completion::Flush(end) => (false, a.replica.complete_append(end).await.map(|()| None)),
            Completion::Pending(p) => (true, p.await.map(Some)),
        };
        (a.topic, a.partition, a.replica, pending, result)
    }))
    .await
}

/// What one partition's accepted batches gave: the response's fields and the bytes-in
/// figures (none for a retried duplicate).
struct Accepted {
    first_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    size_bytes: usize,
    records: u64,
}

/// Checks and appends one partition's batches (`None`: the request carried none). The append
/// is not yet durable: it is pushed onto `appended` for the flush that completes it.
fn append_partition(
    broker: &Broker,
    acks: i16,
    (name, index): (&str, i32),
    records: Option<&mut [u8]>,
    (produce_version, guard): (i16, Option<VerificationGuard>),
    now: i64,
) -> Result<(Accepted, Arc<dyn PartitionLog>, Completion), Refusal> {
    if acks != 0 && acks != 1 && acks != -1 {
        return Err(ResponseError::InvalidRequiredAcks.into());
    }
    // Kafka refuses client writes to internal topics; only the coordinator writes
    // __consumer_offsets.
    if name == crate::group::OFFSETS_TOPIC {
        return Err(ResponseError::InvalidTopicException.into());
    }
    let replica = broker.replicas.leader_partition(name, index)?;
    let buf = records.ok_or(ResponseError::CorruptMessage)?;
    // A node of one is the whole ISR.
    if acks == -1 && replica.min_insync_replicas() > 1 {
        return Err(ResponseError::NotEnoughReplicas.into());
    }
    check_client_batches(buf, name, index).map_err(|e| {
        debug!(topic = %name, partition = index, error = %e, "batch refused");
        Refusal::of_append(&PartitionError::Log(e))
    })?;
    if let Some(pending) = replica.start_append(buf, now) {
        let accepted = Accepted {
            first_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: replica.log_start_offset().unwrap_or(-1),
            size_bytes: buf.len(),
            records: strom_log::batch::data_records_in(buf, 0),
        };
        return Ok((accepted, replica, Completion::Pending(pending)));
    }
    let transactional = transactional_producer(buf).is_some();
    let info = replica
        .append_as_leader_verified(buf, now, guard)
        .map_err(|e| {
            if transactional
                && matches!(e, PartitionError::Rejected(ResponseError::InvalidTxnState))
            {
                // The verification no longer holds (the transaction ended since the coordinator's
                // answer): answered as the coordinator's refusal is.
                let (code, message) = super::txn::produce_verification_error(
                    ResponseError::InvalidTxnState,
                    produce_version,
                );
                return Refusal {
                    code,
                    message,
                    record_errors: Vec::new(),
                };
            }
            let refusal = Refusal::of_append(&e);
            if refusal.code == ResponseError::KafkaStorageError {
                warn!(topic = %name, partition = index, error = %e, "append failed");
            } else {
                debug!(topic = %name, partition = index, error = %e, "batch refused");
            }
            refusal
        })?;
    debug_assert!(info.last_offset >= info.first_offset);
    let (size_bytes, records) = if info.duplicate {
        (0, 0)
    } else {
        (
            buf.len(),
            (info.last_offset - info.first_offset + 1).max(0) as u64,
        )
    };
    let accepted = Accepted {
        first_offset: info.first_offset,
        log_append_time_ms: info.log_append_time_ms,
        log_start_offset: replica.log_start_offset().unwrap_or(-1),
        size_bytes,
        records,
    };
    Ok((accepted, replica, Completion::Flush(info.last_offset + 1)))
}

fn partition_response(
    name: &str,
    index: i32,
    result: Result<Accepted, Refusal>,
) -> PartitionProduceResponse {
    let base = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    match result {
        Ok(a) => {
            crate::metrics::topic_bytes_in(name, a.size_bytes, a.records);
            base.with_base_offset(a.first_offset)
                .with_log_append_time_ms(a.log_append_time_ms)
                .with_log_start_offset(a.log_start_offset)
        }
        Err(refusal) => {
            crate::metrics::request_error_code("Produce", refusal.code.code());
            base.with_error_code(refusal.code.code())
                .with_error_message(refusal.message.map(StrBytes::from_string))
                .with_record_errors(refusal.record_errors)
        }
    }
}

/// The transactional producer of a partition's batches, when they are transactional (Kafka
/// verifies by the partition's first batch; a request carries one batch per partition).
fn transactional_producer(records: &[u8]) -> Option<(i64, i16)> {
    let h = strom_log::batch::parse_header(records, 0).ok()?;
    (h.producer_id >= 0 && h.is_transactional()).then_some((h.producer_id, h.producer_epoch))
}

/// What must be known before a transactional produce appends (KIP-890 part 1): the
/// partitions whose transaction has not yet written to them here, for the coordinator to
/// confirm, and the errors already decided.
struct TxnCheck {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    to_verify: Vec<(String, i32)>,
    /// The guards of `to_verify`, made before the coordinator is asked (Kafka's order), so a
    /// marker written while it answers clears them.
    guards: Guards,
    /// Transaction version 2: the produce adds the partitions instead of having them checked.
    add: bool,
}

/// Each verified partition's guard.
type Guards = std::collections::HashMap<(String, i32), VerificationGuard>;

/// Kafka's rules for the transactional batches of a request: all from one producer
/// (INVALID_PRODUCER_ID_MAPPING for the request otherwise), and those of a partition that
/// has no open transaction of that producer yet verified with the coordinator before they
/// are appended, so a batch outside the producer's transaction never holds the LSO.
fn txn_check(
    broker: &Broker,
    produce_version: i16,
    transactional_id: Option<&str>,
    topic_data: &[TopicData],
    frame: &[u8],
) -> Result<Option<TxnCheck>, ResponseError> {
    let mut producer: Option<(i64, i16)> = None;
    let mut partitions = Vec::new();
    for topic in topic_data {
        for (index, records) in &topic.partitions {
            let bytes: &[u8] = match records {
                Records::Missing => continue,
                Records::InFrame(range) => &frame[range.clone()],
                Records::Copied(copy) => copy,
            };
            let Some(p) = transactional_producer(bytes) else {
                continue;
            };
            if producer.is_some_and(|q| q != p) {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            producer = Some(p);
            partitions.push((topic.name.clone(), *index));
        }
    }
    let Some((producer_id, producer_epoch)) = producer else {
        return Ok(None);
    };
    // Kafka answers transactional data without a transactional id as unauthorized.
    let transactional_id =
        transactional_id.ok_or(ResponseError::TransactionalIdAuthorizationFailed)?;
    let mut guards = Guards::new();
    let to_verify: Vec<(String, i32)> = partitions
        .into_iter()
        .filter(|(name, index)| {
            // A partition not led here is refused by the append itself.
            let Ok(p) = broker.replicas.leader_partition(name, *index) else {
                return false;
            };
            if p.has_ongoing_transaction(producer_id) {
                return false;
            }
            if let Some(guard) = p.create_verification_guard(producer_id) {
                guards.insert((name.clone(), *index), guard);
            }
            true
        })
        .collect();
    Ok((!to_verify.is_empty()).then(|| TxnCheck {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        to_verify,
        guards,
        add: super::txn::produce_adds_partitions(broker, produce_version),
    }))
}

/// The coordinator's answer for the partitions of `check`, as the refusals of those not in
/// the transaction.
async fn verify(
    broker: &Broker,
    produce_version: i16,
    check: TxnCheck,
) -> std::collections::HashMap<(String, i32), Refusal> {
    let verifier = super::txn::partition_verifier(broker);
    let answer = verifier
        .verify(
            &check.transactional_id,
            check.producer_id,
            check.producer_epoch,
            check.to_verify.clone(),
            check.add,
        )
        .await;
    let refusal = |e: ResponseError| {
        let (code, message) = super::txn::produce_verification_error(e, produce_version);
        Refusal {
            code,
            message,
            record_errors: Vec::new(),
        }
    };
    let mut out = std::collections::HashMap::new();
    match answer {
        Ok(verdicts) => {
            let mut verdicts: std::collections::HashMap<(String, i32), Result<(), ResponseError>> =
                verdicts.into_iter().collect();
            for tp in check.to_verify {
                // A partition the answer leaves out is not known to be in the transaction.
                match verdicts
                    .remove(&tp)
                    .unwrap_or(Err(ResponseError::InvalidTxnState))
                {
                    Ok(()) => {}
                    Err(e) => {
                        out.insert(tp, refusal(e));
                    }
                }
            }
        }
        Err(e) => {
            for tp in check.to_verify {
                out.insert(tp, refusal(e));
            }
        }
    }
    for ((topic, partition), r) in &out {
        debug!(%topic, partition, code = ?r.code, "transactional batch refused: not verified in its transaction");
    }
    out
}

/// The whole request refused with one error (Kafka's error response to a produce).
fn refuse_all(topic_data: Vec<TopicData>, code: ResponseError) -> Vec<TopicProduceResponse> {
    topic_data
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|(index, _)| partition_response(&topic.name, *index, Err(code.into())))
                .collect();
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(topic.name)))
                .with_partition_responses(partitions)
        })
        .collect()
}

/// Appends every partition of the request not refused already (`refused`), as the
/// response's topics and the appends still to be made durable.
#[allow(clippy::too_many_arguments)]
fn append_all(
    broker: &Broker,
    ctx: &RequestContext,
    acks: i16,
    txn_denied: bool,
    topic_data: Vec<TopicData>,
    frame: &mut BytesMut,
    mut refused: std::collections::HashMap<(String, i32), Refusal>,
    guards: &Guards,
    now: i64,
) -> (Vec<TopicProduceResponse>, Vec<Appended>) {
    let mut topics = Vec::with_capacity(topic_data.len());
    let mut appended = Vec::new();
    for (ti, topic) in topic_data.into_iter().enumerate() {
        let name = topic.name;
        let denied = if txn_denied {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !authz::authorize(
            broker,
            &ctx.info,
            AclOperation::Write,
            ResourceType::Topic,
            &name,
        ) {
            Some(ResponseError::TopicAuthorizationFailed)
        } else {
            None
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, (index, mut records)) in topic.partitions.into_iter().enumerate() {
            let buf: Option<&mut [u8]> = match &mut records {
                Records::Missing => None,
                Records::InFrame(range) => Some(&mut frame[range.clone()]),
                Records::Copied(copy) => Some(copy),
            };
            let result = match (denied, refused.remove(&(name.clone(), index))) {
                (Some(code), _) => Err(code.into()),
                (None, Some(refusal)) => Err(refusal),
                (None, None) => {
                    let guard = guards.get(&(name.clone(), index)).copied();
                    append_partition(broker, acks, (&name, index), buf, (ctx.version, guard), now)
                }
            };
            let result = result.map(|(accepted, replica, completion)| {
                appended.push(Appended {
                    topic: ti,
                    partition: pi,
                    completion,
                    replica,
                });
                accepted
            });
            partitions.push(partition_response(&name, index, result));
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partition_responses(partitions),
        );
    }
    (topics, appended)
}

/// Makes the appends durable and answers (unless acks=0, which is never answered).
async fn complete(
    ctx: RequestContext,
    acks: i16,
    mut topics: Vec<TopicProduceResponse>,
    appended: Vec<Appended>,
) -> Option<crate::request::ResponseFrame> {
    if acks == 0 {
        for (_, _, replica, _, result) in flush_all(appended).await {
            if let Err(e) = result {
                warn!(partition = %replica.topic_partition(), error = %e, "flush after acks=0 produce failed");
            }
        }
        return None;
    }
    for (ti, pi, replica, pending, result) in flush_all(appended).await {
        let slot = &mut topics[ti].partition_responses[pi];
        match result {
            Ok(None) => {}
            Ok(Some(done)) => {
                slot.base_offset = done.first_offset;
                slot.log_append_time_ms = done.log_append_time_ms;
                slot.log_start_offset = replica.log_start_offset().unwrap_or(-1);
            }
            Err(e) => {
                // A pending append's refusal keeps its code (a fenced leader, a sequence
                // gap, an outage's retriable error); a failed flush is a storage error.
                let code = if pending {
                    append_error_code(&e)
                } else {
                    ResponseError::KafkaStorageError
                };
                if pending && code.is_retriable() {
                    debug!(partition = %replica.topic_partition(), error = %e, "shared-storage append failed; produce not acknowledged");
                } else {
                    warn!(partition = %replica.topic_partition(), error = %e, "flush failed; produce not acknowledged");
                }
                if pending {
                    crate::metrics::request_error_code("Produce", code.code());
                }
                *slot = PartitionProduceResponse::default()
                    .with_index(slot.index)
                    .with_error_code(code.code())
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
            }
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
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: ProduceRequest,
    frame: Bytes,
) -> Reply {
    let now = now_ms();
    // Kafka's KafkaApis.handleProduceRequest: a transactional produce needs WRITE on its
    // transactional id (else every partition fails), then each topic WRITE.
    let transactional_id = req.transactional_id.as_ref().map(|id| id.to_string());
    let txn_denied = transactional_id.as_deref().is_some_and(|id| {
        !authz::authorize(
            broker,
            &ctx.info,
            AclOperation::Write,
            ResourceType::TransactionalId,
            id,
        )
    });
    let (acks, topic_data, mut frame) = into_parts(req, frame);
    let check = if txn_denied {
        Ok(None)
    } else {
        txn_check(
            broker,
            ctx.version,
            transactional_id.as_deref(),
            &topic_data,
            &frame,
        )
    };
    let check = match check {
        Ok(check) => check,
        Err(code) => {
            let topics = refuse_all(topic_data, code);
            return Reply::Later(Box::pin(complete(ctx, acks, topics, Vec::new())));
        }
    };
    let Some(check) = check else {
        let (topics, appended) = append_all(
            broker,
            &ctx,
            acks,
            txn_denied,
            topic_data,
            &mut frame,
            Default::default(),
            &Guards::new(),
            now,
        );
        if acks == 0 {
            // No answer is sent; the data still has to become durable and visible.
            if !appended.is_empty() {
                tokio::spawn(complete(ctx, acks, topics, appended));
            }
            return Reply::Now(None);
        }
        return Reply::Later(Box::pin(complete(ctx, acks, topics, appended)));
    };
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let guards = check.guards.clone();
        let refused = verify(&broker, ctx.version, check).await;
        let (topics, appended) = append_all(
            &broker, &ctx, acks, false, topic_data, &mut frame, refused, &guards, now,
        );
        complete(ctx, acks, topics, appended).await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proto_kafka::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use proto_kafka::messages::RequestHeader;
    use proto_kafka::protocol::{Decodable, Encodable, HeaderVersion};

    /// KIP-467: record-level refusals carry their message and every refused record by its
    /// index; batch-level ones only their code, as Kafka sends them.
    #[test]
    fn refusals_carry_record_errors() {
        let e = PartitionError::Log(LogError::InvalidRecords {
            code: 87,
            message: "One or more records".to_string(),
            record_errors: vec![strom_log::RecordError {
                batch_index: 3,
                message: "no key".to_string(),
            }],
        });
        let r = Refusal::of_append(&e);
        assert_eq!(r.code, ResponseError::InvalidRecord);
        assert_eq!(r.message.as_deref(), Some("One or more records"));
        assert_eq!(r.record_errors.len(), 1);
        assert_eq!(r.record_errors[0].batch_index, 3);
        let r = Refusal::of_append(&PartitionError::Log(LogError::InvalidBatch("x".into())));
        assert_eq!(r.code, ResponseError::InvalidRecord);
        assert!(r.message.is_none() && r.record_errors.is_empty());
        let two = [0u8; 0];
        assert!(check_client_batches(&two, "t", 0).is_ok());
    }

    /// Decoded as `request::handle` does, a produce request gives its frame back to be patched
    /// in place, without a copy, in the classic and the flexible encodings.
    #[test]
    fn record_batches_are_patched_in_the_frame() {
        for version in [3i16, 8, 9, 11] {
            let records = |fill: u8| Bytes::from(vec![fill; 1000]);
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records(1))),
                        PartitionProduceData::default().with_index(1),
                        PartitionProduceData::default()
                            .with_index(2)
                            .with_records(Some(records(2))),
                    ])]);
            let header_version = ProduceRequest::header_version(version);
            let header = RequestHeader::default()
                .with_request_api_key(0)
                .with_request_api_version(version)
                .with_client_id(Some(StrBytes::from_static_str("me")));
            let mut encoded = BytesMut::new();
            header.encode(&mut encoded, header_version).unwrap();
            req.encode(&mut encoded, version).unwrap();
            encoded.put_u8(0); // a frame's allocation may be larger than what was decoded

            let frame = encoded.freeze();
            let at = frame.as_ptr();
            let mut buf = frame.clone();
            drop(RequestHeader::decode(&mut buf, header_version).unwrap());
            let req = ProduceRequest::decode(&mut buf, version).unwrap();
            drop(buf);
            let (acks, topics, mut frame) = into_parts(req, frame);
            assert_eq!(acks, -1);
            assert_eq!(frame.as_ptr(), at, "v{version}: the frame was copied");
            let parts = &topics[0].partitions;
            assert!(matches!(parts[1], (1, Records::Missing)));
            for (i, fill) in [(0, 1u8), (2, 2)] {
                let Records::InFrame(range) = &parts[i].1 else {
                    panic!("v{version}: partition {i} not located in the frame");
                };
                assert!(frame[range.clone()].iter().all(|b| *b == fill));
                frame[range.clone()].fill(9);
            }
        }
    }
}
