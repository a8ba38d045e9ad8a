//! Each handler's error paths, through the dispatcher of an in-process broker: every test
//! names the check it depends on, and fails if that check is removed.

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::*;
use proto_kafka::protocol::StrBytes;
use proto_kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proto_kafka::ResponseError;

use super::{decode_response, encode_request, TestBroker, TestRequestError};
use crate::request::RequestError;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

async fn broker() -> TestBroker {
    // Kafka's default auto-creates on Metadata; off here, so unknown stays unknown.
    TestBroker::start_with(&[("auto.create.topics.enable", "false")])
        .await
        .expect("test broker")
}

async fn create_topic(tb: &TestBroker, topic: &str, partitions: i32) {
    let r = create_topics(tb, topic, partitions, 1).await;
    assert_eq!(r.error_code, 0, "create {topic}: {:?}", r.error_message);
}

async fn create_topics(
    tb: &TestBroker,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> create_topics_response::CreatableTopicResult {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)])
        .with_timeout_ms(5000);
    let mut r = tb.request(7, &req).await.expect("CreateTopics answered");
    assert_eq!(r.topics.len(), 1);
    r.topics.remove(0)
}

/// A v2 batch of `n` records, as a producer without idempotence sends it.
fn record_batch(n: i64) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("batch encodes");
    buf
}

async fn produce(
    tb: &TestBroker,
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])]);
    let mut r = tb.request(9, &req).await.expect("Produce answered");
    assert_eq!(r.responses.len(), 1);
    let mut t = r.responses.remove(0);
    assert_eq!(t.partition_responses.len(), 1);
    t.partition_responses.remove(0)
}

async fn fetch(
    tb: &TestBroker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let mut r = tb.request(12, &req).await.expect("Fetch answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses.len(), 1);
    let mut t = r.responses.remove(0);
    assert_eq!(t.partitions.len(), 1);
    t.partitions.remove(0)
}

// The dispatcher: versions, keys, bodies.

#[tokio::test]
async fn api_versions_too_new_answers_v0_unsupported_version_with_our_ranges() {
    let tb = broker().await;
    let frame = encode_request(&ApiVersionsRequest::default(), 3, 77).unwrap();
    let mut frame = frame;
    // Rewrite the version to one newer than any we know; the body is never looked at.
    frame[2..4].copy_from_slice(&99i16.to_be_bytes());
    let bytes = tb.send_frame(frame).await.unwrap().expect("an answer");
    let r = decode_response::<ApiVersionsRequest>(&bytes, 0, 77).unwrap();
    assert_eq!(r.error_code, code(ResponseError::UnsupportedVersion));
    let produce = r.api_keys.iter().find(|a| a.api_key == 0).expect("Produce");
    assert_eq!((produce.min_version, produce.max_version), (0, 12));
}

#[tokio::test]
async fn a_version_outside_the_table_closes_the_connection() {
    let tb = broker().await;
    let frame = encode_request(&FetchRequest::default(), 4, 1).unwrap();
    let mut frame = frame;
    frame[2..4].copy_from_slice(&3i16.to_be_bytes());
    let err = tb.send_frame(frame).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::UnsupportedVersion {
                api: ApiKey::Fetch,
                version: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn produce_below_what_the_codec_decodes_is_refused_though_advertised() {
    let tb = broker().await;
    let frame = encode_request(&ProduceRequest::default(), 3, 1).unwrap();
    let mut frame = frame;
    frame[2..4].copy_from_slice(&2i16.to_be_bytes());
    let err = tb.send_frame(frame).await.unwrap_err();
    assert!(
        matches!(err, RequestError::UnsupportedVersion { version: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_and_unserved_api_keys_close_the_connection() {
    let tb = broker().await;
    let mut unknown = BytesMut::new();
    unknown.put_i16(9999);
    unknown.put_i16(0);
    unknown.put_i32(1);
    unknown.put_i16(-1);
    let err = tb.send_frame(unknown).await.unwrap_err();
    assert!(matches!(err, RequestError::UnknownApiKey(9999)), "{err}");

    let markers = encode_request(&WriteTxnMarkersRequest::default(), 1, 1).unwrap();
    let err = tb.send_frame(markers).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::UnsupportedVersion {
                api: ApiKey::WriteTxnMarkers,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_malformed_body_is_a_decode_error() {
    let tb = broker().await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
    ]));
    let mut frame = encode_request(&req, 12, 1).unwrap();
    // Cut inside the topic name: the codec runs out of bytes.
    let cut = frame.len() - 3;
    frame.truncate(cut);
    let err = tb.send_frame(frame).await.unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Decode {
                api: ApiKey::Metadata,
                version: 12,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_truncated_header_is_a_decode_error() {
    let tb = broker().await;
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::Metadata as i16);
    frame.put_i16(12);
    frame.put_i32(1);
    // The client id's length says 50 bytes; none follow.
    frame.put_i16(50);
    let err = tb.send_frame(frame).await.unwrap_err();
    assert!(matches!(err, RequestError::Decode { .. }), "{err}");
}

// Metadata.

#[tokio::test]
async fn metadata_of_an_unknown_topic_is_unknown_topic_or_partition() {
    let tb = broker().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("nope")))]))
        .with_allow_auto_topic_creation(true);
    let r = tb.request(12, &req).await.unwrap();
    assert_eq!(r.topics.len(), 1);
    assert_eq!(
        r.topics[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert!(
        tb.broker.image().topic("nope").is_none(),
        "not auto-created"
    );
}

// Produce.

#[tokio::test]
async fn produce_to_an_unknown_topic_or_partition() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let r = produce(&tb, "nope", 0, -1, record_batch(1).freeze()).await;
    assert_eq!(r.error_code, code(ResponseError::UnknownTopicOrPartition));
    let r = produce(&tb, "t", 5, -1, record_batch(1).freeze()).await;
    assert_eq!(r.error_code, code(ResponseError::UnknownTopicOrPartition));
    let r = produce(&tb, "t", 0, -1, record_batch(1).freeze()).await;
    assert_eq!(r.error_code, 0, "the baseline is accepted");
}

#[tokio::test]
async fn produce_with_a_corrupt_batch_is_refused_and_appends_nothing() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let mut batch = record_batch(3);
    let last = batch.len() - 1;
    batch[last] ^= 0xff; // inside the CRC-covered records
    let r = produce(&tb, "t", 0, -1, batch.freeze()).await;
    assert_eq!(r.error_code, code(ResponseError::CorruptMessage));
    let replica = tb.broker.replicas.get("t", 0).unwrap();
    assert_eq!(replica.high_watermark(), 0);
}

#[tokio::test]
async fn produce_with_a_lying_last_offset_delta_is_invalid_record() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let mut batch = record_batch(3);
    // lastOffsetDelta (bytes 23..27) claims 2^31-1 for 3 records; the CRC (bytes 17..21) covers
    // it, so it is recomputed over bytes 21.. to get past the CRC check.
    batch[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c_of(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    let r = produce(&tb, "t", 0, -1, batch.freeze()).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidRecord));
    assert_eq!(tb.broker.replicas.get("t", 0).unwrap().high_watermark(), 0);
}

/// CRC-32C (Castagnoli), bitwise: enough for a test's one batch.
fn crc32c_of(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn produce_without_records_is_corrupt_message() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(0),
            ])]);
    let r = tb.request(9, &req).await.unwrap();
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        code(ResponseError::CorruptMessage)
    );
}

#[tokio::test]
async fn produce_with_invalid_acks_is_invalid_required_acks() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let r = produce(&tb, "t", 0, 2, record_batch(1).freeze()).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidRequiredAcks));
}

#[tokio::test]
async fn produce_to_the_offsets_topic_is_invalid_topic() {
    let tb = broker().await;
    let r = produce(
        &tb,
        crate::group::OFFSETS_TOPIC,
        0,
        -1,
        record_batch(1).freeze(),
    )
    .await;
    assert_eq!(r.error_code, code(ResponseError::InvalidTopicException));
}

// Fetch.

#[tokio::test]
async fn fetch_past_the_end_is_offset_out_of_range() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    assert_eq!(
        produce(&tb, "t", 0, -1, record_batch(3).freeze())
            .await
            .error_code,
        0
    );
    let p = fetch(&tb, "t", 0, 4).await;
    assert_eq!(p.error_code, code(ResponseError::OffsetOutOfRange));
    let p = fetch(&tb, "t", 0, 3).await;
    assert_eq!(p.error_code, 0, "the log end itself is in range");
    assert_eq!(p.high_watermark, 3);
}

#[tokio::test]
async fn fetch_of_an_unknown_partition_or_topic_id() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let p = fetch(&tb, "t", 3, 0).await;
    assert_eq!(p.error_code, code(ResponseError::UnknownTopicOrPartition));
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(uuid::Uuid::from_u128(0xdead))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = tb.request(13, &req).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
}

#[tokio::test]
async fn fetch_with_a_newer_leader_epoch_is_unknown_leader_epoch() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let epoch = tb.broker.replicas.get("t", 0).unwrap().leader_epoch();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(epoch + 1)
                .with_partition_max_bytes(1 << 20)])]);
    let r = tb.request(12, &req).await.unwrap();
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        code(ResponseError::UnknownLeaderEpoch)
    );
}

// ListOffsets.

#[tokio::test]
async fn list_offsets_of_an_unknown_partition() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("t"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(9)
                    .with_timestamp(-1),
            ])]);
    let r = tb.request(7, &req).await.unwrap();
    let parts = &r.topics[0].partitions;
    assert_eq!(parts[0].error_code, 0);
    assert_eq!(parts[0].offset, 0);
    assert_eq!(
        parts[1].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
}

// CreateTopics, DeleteTopics, CreatePartitions.

#[tokio::test]
async fn create_topics_with_an_invalid_name() {
    let tb = broker().await;
    for bad in ["bad/name", "", ".", ".."] {
        let r = create_topics(&tb, bad, 1, 1).await;
        assert_eq!(
            r.error_code,
            code(ResponseError::InvalidTopicException),
            "{bad:?}"
        );
    }
    let long = "x".repeat(250);
    let r = create_topics(&tb, &long, 1, 1).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidTopicException));
}

#[tokio::test]
async fn create_topics_with_invalid_partitions_or_replication_factor() {
    let tb = broker().await;
    let r = create_topics(&tb, "zero", 0, 1).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidPartitions));
    let r = create_topics(&tb, "negative", -5, 1).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidPartitions));
    let r = create_topics(&tb, "three", 1, 3).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidReplicationFactor));
    assert!(tb.broker.image().topic("zero").is_none());
    assert!(tb.broker.image().topic("three").is_none());
}

#[tokio::test]
async fn create_topics_of_an_existing_topic() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let r = create_topics(&tb, "t", 1, 1).await;
    assert_eq!(r.error_code, code(ResponseError::TopicAlreadyExists));
}

#[tokio::test]
async fn delete_topics_of_an_unknown_topic() {
    let tb = broker().await;
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(name("nope")))
        ])
        .with_timeout_ms(5000);
    let r = tb.request(6, &req).await.unwrap();
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
}

#[tokio::test]
async fn create_partitions_fewer_than_now_or_of_an_unknown_topic() {
    let tb = broker().await;
    create_topic(&tb, "t", 2).await;
    let req = |topic: &str, count: i32| {
        CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(count),
            ])
            .with_timeout_ms(5000)
    };
    let r = tb.request(3, &req("t", 1)).await.unwrap();
    assert_eq!(
        r.results[0].error_code,
        code(ResponseError::InvalidPartitions)
    );
    let r = tb.request(3, &req("nope", 3)).await.unwrap();
    assert_eq!(
        r.results[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(tb.broker.image().topic("t").unwrap().partitions.len(), 2);
}

// Configs and records.

#[tokio::test]
async fn describe_configs_of_an_unknown_topic() {
    let tb = broker().await;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2) // TOPIC
            .with_resource_name(StrBytes::from_static_str("nope")),
    ]);
    let r = tb.request(4, &req).await.unwrap();
    assert_eq!(
        r.results[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
}

#[tokio::test]
async fn delete_records_past_the_high_watermark_is_offset_out_of_range() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    assert_eq!(
        produce(&tb, "t", 0, -1, record_batch(2).freeze())
            .await
            .error_code,
        0
    );
    let req = |partition: i32, offset: i64| {
        DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ])])
            .with_timeout_ms(5000)
    };
    let r = tb.request(2, &req(0, 3)).await.unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::OffsetOutOfRange)
    );
    let r = tb.request(2, &req(4, 0)).await.unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        tb.broker
            .replicas
            .get("t", 0)
            .unwrap()
            .log_start_offset()
            .unwrap(),
        0
    );
}

// Groups.

#[tokio::test]
async fn join_group_with_an_empty_group_id_is_invalid_group_id() {
    let tb = broker().await;
    let req = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))]);
    let r = tb.request(9, &req).await.unwrap();
    assert_eq!(r.error_code, code(ResponseError::InvalidGroupId));
}

#[tokio::test]
async fn heartbeat_of_an_unknown_member() {
    let tb = broker().await;
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("nobody"));
    let r = tb.request(4, &req).await.unwrap();
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
}

// Over a socket.

#[tokio::test]
async fn the_loopback_listener_answers_and_closes_on_a_bad_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tb = broker().await;
    let addr = tb.serve_loopback().await.unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let frame = encode_request(&ApiVersionsRequest::default(), 0, 5).unwrap();
    socket
        .write_all(&(frame.len() as i32).to_be_bytes())
        .await
        .unwrap();
    socket.write_all(&frame).await.unwrap();
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).await.unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut body).await.unwrap();
    let mut whole = size.to_vec();
    whole.extend_from_slice(&body);
    let r = decode_response::<ApiVersionsRequest>(&whole, 0, 5).unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(r.api_keys.len(), strom_protocol::SUPPORTED_APIS.len());

    // An unserved API: the connection is closed, nothing is answered.
    let frame = encode_request(&WriteTxnMarkersRequest::default(), 1, 6).unwrap();
    socket
        .write_all(&(frame.len() as i32).to_be_bytes())
        .await
        .unwrap();
    socket.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(super::REQUEST_DEADLINE, socket.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer to a refused request");
}

#[tokio::test]
async fn a_refused_test_request_is_reported_as_refused() {
    let tb = broker().await;
    let err = tb
        .request(1, &WriteTxnMarkersRequest::default())
        .await
        .expect_err("WriteTxnMarkers is not served");
    assert!(matches!(err, TestRequestError::Refused(_)), "{err}");
}

// The registry's wiring.

/// Sends `R::default()` at every version the table advertises and the codec decodes, and
/// checks the answer decodes as `R`'s response: an API wired to another API's handler answers
/// with the wrong message (or none).
async fn answers_default<R: proto_kafka::protocol::Request + Default>(tb: &TestBroker) {
    let api = ApiKey::try_from(R::KEY).expect("a known key");
    let (min, max) = strom_protocol::supported_range(api).expect("served");
    for version in min.max(R::VERSIONS.min)..=max {
        match tb.request(version, &R::default()).await {
            Ok(_) => {}
            // A default Produce has acks=0.
            Err(TestRequestError::NoResponse) if api == ApiKey::Produce => {}
            Err(e) => panic!("{api:?} v{version}: {e}"),
        }
    }
}

#[tokio::test]
async fn every_served_api_answers_its_default_request_with_its_own_response() {
    let tb = broker().await;
    // Waits (a default Fetch, JoinGroup) end at once.
    tb.cancel_waits();
    answers_default::<ProduceRequest>(&tb).await;
    answers_default::<FetchRequest>(&tb).await;
    answers_default::<ListOffsetsRequest>(&tb).await;
    answers_default::<MetadataRequest>(&tb).await;
    answers_default::<ApiVersionsRequest>(&tb).await;
    answers_default::<CreateTopicsRequest>(&tb).await;
    answers_default::<DeleteTopicsRequest>(&tb).await;
    answers_default::<DescribeConfigsRequest>(&tb).await;
    answers_default::<DescribeClusterRequest>(&tb).await;
    answers_default::<InitProducerIdRequest>(&tb).await;
    answers_default::<FindCoordinatorRequest>(&tb).await;
    answers_default::<JoinGroupRequest>(&tb).await;
    answers_default::<SyncGroupRequest>(&tb).await;
    answers_default::<HeartbeatRequest>(&tb).await;
    answers_default::<LeaveGroupRequest>(&tb).await;
    answers_default::<OffsetCommitRequest>(&tb).await;
    answers_default::<OffsetFetchRequest>(&tb).await;
    answers_default::<ListGroupsRequest>(&tb).await;
    answers_default::<DescribeGroupsRequest>(&tb).await;
    answers_default::<DeleteGroupsRequest>(&tb).await;
    answers_default::<OffsetDeleteRequest>(&tb).await;
    answers_default::<CreatePartitionsRequest>(&tb).await;
    answers_default::<AlterConfigsRequest>(&tb).await;
    answers_default::<IncrementalAlterConfigsRequest>(&tb).await;
    answers_default::<DeleteRecordsRequest>(&tb).await;
    answers_default::<DescribeLogDirsRequest>(&tb).await;
    answers_default::<DescribeTopicPartitionsRequest>(&tb).await;
    answers_default::<ConsumerGroupHeartbeatRequest>(&tb).await;
    answers_default::<ConsumerGroupDescribeRequest>(&tb).await;
    answers_default::<SaslHandshakeRequest>(&tb).await;
    answers_default::<SaslAuthenticateRequest>(&tb).await;
    answers_default::<DescribeAclsRequest>(&tb).await;
    answers_default::<CreateAclsRequest>(&tb).await;
    answers_default::<DeleteAclsRequest>(&tb).await;
    answers_default::<AddPartitionsToTxnRequest>(&tb).await;
    answers_default::<AddOffsetsToTxnRequest>(&tb).await;
    answers_default::<EndTxnRequest>(&tb).await;
    answers_default::<TxnOffsetCommitRequest>(&tb).await;
    answers_default::<DescribeTransactionsRequest>(&tb).await;
    answers_default::<ListTransactionsRequest>(&tb).await;
    answers_default::<DescribeProducersRequest>(&tb).await;
    answers_default::<AlterUserScramCredentialsRequest>(&tb).await;
    answers_default::<DescribeUserScramCredentialsRequest>(&tb).await;
    assert_eq!(
        crate::handlers::registry::REGISTRY.len(),
        43,
        "a new API: add it above"
    );
}

/// Without an authorizer Kafka answers the ACL APIs SECURITY_DISABLED, one result per item.
#[tokio::test]
async fn acl_apis_answer_security_disabled_without_an_authorizer() {
    let tb = broker().await;
    let disabled = ResponseError::SecurityDisabled.code();
    let r = tb
        .request(3, &DescribeAclsRequest::default())
        .await
        .expect("DescribeAcls answered");
    assert_eq!(r.error_code, disabled);
    let creations = vec![
        create_acls_request::AclCreation::default(),
        create_acls_request::AclCreation::default(),
    ];
    let r = tb
        .request(3, &CreateAclsRequest::default().with_creations(creations))
        .await
        .expect("CreateAcls answered");
    assert_eq!(
        r.results.iter().map(|x| x.error_code).collect::<Vec<_>>(),
        vec![disabled, disabled]
    );
    let filters = vec![delete_acls_request::DeleteAclsFilter::default()];
    let r = tb
        .request(3, &DeleteAclsRequest::default().with_filters(filters))
        .await
        .expect("DeleteAcls answered");
    assert_eq!(r.filter_results.len(), 1);
    assert_eq!(r.filter_results[0].error_code, disabled);
}

/// A PLAINTEXT listener has no SASL: the handshake and authenticate are ILLEGAL_SASL_STATE,
/// and the connection keeps serving.
#[tokio::test]
async fn sasl_on_a_plaintext_listener_is_an_illegal_state() {
    let tb = broker().await;
    let illegal = ResponseError::IllegalSaslState.code();
    let r = tb
        .request(
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )
        .await
        .expect("SaslHandshake answered");
    assert_eq!(r.error_code, illegal);
    assert!(r.mechanisms.is_empty());
    let r = tb
        .request(2, &SaslAuthenticateRequest::default())
        .await
        .expect("SaslAuthenticate answered");
    assert_eq!(r.error_code, illegal);
    let r = tb
        .request(12, &MetadataRequest::default())
        .await
        .expect("still served after");
    assert_eq!(r.error_code, 0);
}
