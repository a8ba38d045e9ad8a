//! The seed corpus of the fuzz targets, built with the codecs rather than kept as opaque
//! files: a default request of every supported API at every version, requests with content
//! for the main paths (a topic created, produced to, fetched, a group joined and committed
//! to), record batches, metadata records and group records. `fuzz/corpus/` is written from
//! these by `scripts/fuzz.sh --seed` (the test `write_seed_corpus`).

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::*;
use proto_kafka::protocol::{Encodable, Request, StrBytes};
use proto_kafka::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use crate::group::{consumer_records, records as group_records};
use crate::metadata::records::{BrokerEndpoint, RESOURCE_TOPIC};
use crate::metadata::MetadataRecord;
use crate::request::SUPPORTED_APIS;

/// The topic id of the topic the metadata target's image starts with.
pub const SEED_TOPIC_ID: Uuid = Uuid::from_u128(0xf022);
const TOPIC: &str = "fuzz";
const GROUP: &str = "fuzz-group";

/// One seed: its file name and bytes.
pub type Seed = (String, Vec<u8>);

/// A request frame as `Harness::handle` takes it (no size prefix).
fn frame<R: Request>(req: &R, version: i16, correlation_id: i32) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz-seed")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).ok()?;
    req.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn default_frame(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    let c = version as i32;
    match api {
        ApiKey::Produce => frame(&ProduceRequest::default(), version, c),
        ApiKey::Fetch => frame(&FetchRequest::default(), version, c),
        ApiKey::ListOffsets => frame(&ListOffsetsRequest::default(), version, c),
        ApiKey::Metadata => frame(&MetadataRequest::default(), version, c),
        ApiKey::ApiVersions => frame(&ApiVersionsRequest::default(), version, c),
        ApiKey::CreateTopics => frame(&CreateTopicsRequest::default(), version, c),
        ApiKey::DeleteTopics => frame(&DeleteTopicsRequest::default(), version, c),
        ApiKey::DescribeConfigs => frame(&DescribeConfigsRequest::default(), version, c),
        ApiKey::DescribeCluster => frame(&DescribeClusterRequest::default(), version, c),
        ApiKey::InitProducerId => frame(&InitProducerIdRequest::default(), version, c),
        ApiKey::FindCoordinator => frame(&FindCoordinatorRequest::default(), version, c),
        ApiKey::JoinGroup => frame(&JoinGroupRequest::default(), version, c),
        ApiKey::SyncGroup => frame(&SyncGroupRequest::default(), version, c),
        ApiKey::Heartbeat => frame(&HeartbeatRequest::default(), version, c),
        ApiKey::LeaveGroup => frame(&LeaveGroupRequest::default(), version, c),
        ApiKey::OffsetCommit => frame(&OffsetCommitRequest::default(), version, c),
        ApiKey::OffsetFetch => frame(&OffsetFetchRequest::default(), version, c),
        ApiKey::ListGroups => frame(&ListGroupsRequest::default(), version, c),
        ApiKey::DescribeGroups => frame(&DescribeGroupsRequest::default(), version, c),
        ApiKey::DeleteGroups => frame(&DeleteGroupsRequest::default(), version, c),
        ApiKey::OffsetDelete => frame(&OffsetDeleteRequest::default(), version, c),
        ApiKey::CreatePartitions => frame(&CreatePartitionsRequest::default(), version, c),
        ApiKey::AlterConfigs => frame(&AlterConfigsRequest::default(), version, c),
        ApiKey::IncrementalAlterConfigs => {
            frame(&IncrementalAlterConfigsRequest::default(), version, c)
        }
        ApiKey::DeleteRecords => frame(&DeleteRecordsRequest::default(), version, c),
        ApiKey::DescribeLogDirs => frame(&DescribeLogDirsRequest::default(), version, c),
        ApiKey::DescribeTopicPartitions => {
            frame(&DescribeTopicPartitionsRequest::default(), version, c)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            frame(&ConsumerGroupHeartbeatRequest::default(), version, c)
        }
        ApiKey::ConsumerGroupDescribe => {
            frame(&ConsumerGroupDescribeRequest::default(), version, c)
        }
        ApiKey::AddPartitionsToTxn => frame(&AddPartitionsToTxnRequest::default(), version, c),
        ApiKey::AddOffsetsToTxn => frame(&AddOffsetsToTxnRequest::default(), version, c),
        ApiKey::EndTxn => frame(&EndTxnRequest::default(), version, c),
        ApiKey::TxnOffsetCommit => frame(&TxnOffsetCommitRequest::default(), version, c),
        ApiKey::DescribeTransactions => frame(&DescribeTransactionsRequest::default(), version, c),
        ApiKey::ListTransactions => frame(&ListTransactionsRequest::default(), version, c),
        ApiKey::DescribeProducers => frame(&DescribeProducersRequest::default(), version, c),
        _ => None,
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A v2 batch of `n` records with keys and values, optionally of an idempotent producer.
pub fn record_batch(n: i64, producer_id: i64, compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: if producer_id >= 0 { i as i32 } else { -1 },
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    match RecordBatchEncoder::encode(&mut buf, &records, &options) {
        Ok(()) => buf.to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Requests with content, in an order that makes sense as a sequence (the request target
/// keeps one broker across inputs).
fn content_frames() -> Vec<(&'static str, ApiKey, i16, Option<Vec<u8>>)> {
    let batch = Bytes::from(record_batch(3, -1, Compression::None));
    let mut out = Vec::new();
    for v in [2i16, 7] {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("3600000"))),
                ])])
            .with_timeout_ms(1000);
        out.push(("create-topic", ApiKey::CreateTopics, v, frame(&req, v, 1)));
    }
    for v in [1i16, 12] {
        let req =
            MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s(TOPIC))))]));
        out.push(("topic", ApiKey::Metadata, v, frame(&req, v, 2)));
    }
    for v in [3i16, 9, 11] {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.clone())),
                ])]);
        out.push(("batch", ApiKey::Produce, v, frame(&req, v, 3)));
    }
    for v in [4i16, 12] {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(s(TOPIC)))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        out.push(("from-0", ApiKey::Fetch, v, frame(&req, v, 4)));
    }
    for v in [1i16, 8] {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]);
        out.push(("latest", ApiKey::ListOffsets, v, frame(&req, v, 5)));
    }
    for v in [1i16, 6] {
        let req = FindCoordinatorRequest::default()
            .with_key(s(GROUP))
            .with_coordinator_keys(vec![s(GROUP)]);
        out.push(("group", ApiKey::FindCoordinator, v, frame(&req, v, 6)));
    }
    for v in [1i16, 9] {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x04fuzz"))]);
        out.push(("join", ApiKey::JoinGroup, v, frame(&req, v, 7)));
    }
    for v in [2i16, 9] {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(2)
                            .with_committed_metadata(Some(s("m"))),
                    ]),
            ]);
        out.push(("commit", ApiKey::OffsetCommit, v, frame(&req, v, 8)));
    }
    for v in [1i16, 9] {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(GROUP))),
            ]);
        out.push(("group", ApiKey::OffsetFetch, v, frame(&req, v, 9)));
    }
    for v in [0i16, 1] {
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("fuzz-cg")))
            .with_member_id(s("m-0000000000000000000001"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
            .with_topic_partitions(Some(Vec::new()));
        out.push((
            "join",
            ApiKey::ConsumerGroupHeartbeat,
            v,
            frame(&req, v, 10),
        ));
    }
    for v in [0i16, 1] {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s(TOPIC))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("7200000"))),
                ]),
        ]);
        out.push((
            "topic",
            ApiKey::IncrementalAlterConfigs,
            v,
            frame(&req, v, 11),
        ));
    }
    for v in [0i16, 3] {
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_count(3)
                    .with_assignments(None),
            ])
            .with_timeout_ms(1000);
        out.push(("to-3", ApiKey::CreatePartitions, v, frame(&req, v, 12)));
    }
    for v in [0i16, 2] {
        let req = DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1),
                ])])
            .with_timeout_ms(1000);
        out.push(("to-1", ApiKey::DeleteRecords, v, frame(&req, v, 13)));
    }
    out
}

/// The seeds of the `request` target: frames as `Harness::handle` takes them.
pub fn request_seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    for (i, (name, api, version, frame)) in content_frames().into_iter().enumerate() {
        if let Some(f) = frame {
            out.push((format!("{i:02}-{api:?}-v{version}-{name}"), f));
        }
    }
    // Hostile counts at the limit of their fields, so mutations start beside them.
    for (name, version, num_partitions) in [("max-partitions", 2i16, i32::MAX), ("zero", 7, 0)] {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("fz-new")))
                .with_num_partitions(num_partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(5000)
            .with_validate_only(true);
        if let Some(f) = frame(&req, version, 9) {
            out.push((format!("hostile-CreateTopics-v{version}-{name}"), f));
        }
    }
    for spec in SUPPORTED_APIS {
        let api = spec.key;
        for version in spec.min_version..=spec.max_version {
            if let Some(f) = default_frame(api, version) {
                out.push((format!("{api:?}-v{version}-default"), f));
            }
        }
    }
    out
}

/// The seeds of the `batch` target: record batches as a producer sends them.
pub fn batch_seeds() -> Vec<Seed> {
    let mut out = vec![
        ("one".to_string(), record_batch(1, -1, Compression::None)),
        ("three".to_string(), record_batch(3, -1, Compression::None)),
        (
            "idempotent".to_string(),
            record_batch(5, 7, Compression::None),
        ),
        ("gzip".to_string(), record_batch(4, -1, Compression::Gzip)),
        ("zstd".to_string(), record_batch(4, -1, Compression::Zstd)),
    ];
    let mut two = record_batch(2, -1, Compression::None);
    two.extend(record_batch(3, -1, Compression::Snappy));
    out.push(("two-batches".to_string(), two));
    out.retain(|(_, b)| !b.is_empty());
    out
}

/// The records of the metadata target's starting image; the seeds refer to its topic.
pub fn seed_image_records() -> Vec<MetadataRecord> {
    vec![MetadataRecord::Topic {
        name: TOPIC.to_string(),
        topic_id: SEED_TOPIC_ID,
    }]
}

fn all_metadata_records() -> Vec<MetadataRecord> {
    vec![
        MetadataRecord::RegisterBroker {
            node_id: 0,
            endpoints: vec![BrokerEndpoint {
                name: "PLAINTEXT".to_string(),
                host: "localhost".to_string(),
                port: 9092,
            }],
            rack: None,
        },
        MetadataRecord::Topic {
            name: "other".to_string(),
            topic_id: Uuid::from_u128(0xf023),
        },
        MetadataRecord::Partition {
            topic_id: SEED_TOPIC_ID,
            partition: 0,
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: 0,
            partition_epoch: 0,
        },
        MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: TOPIC.to_string(),
            name: "retention.ms".to_string(),
            value: Some("1000".to_string()),
        },
        MetadataRecord::ProducerIds {
            next_producer_id: 1000,
        },
        MetadataRecord::RemoveTopic {
            topic_id: SEED_TOPIC_ID,
        },
    ]
}

/// The seeds of the `metadata` target: first byte 0 = a metadata log batch (as replayed at
/// start-up), otherwise lines of JSON records applied in order to the seed image.
pub fn metadata_seeds() -> Vec<Seed> {
    let records = all_metadata_records();
    let mut out = Vec::new();
    let mut lines = vec![1u8];
    for (i, r) in records.iter().enumerate() {
        let Ok(json) = serde_json::to_vec(r) else {
            continue;
        };
        let mut one = vec![1u8];
        one.extend_from_slice(&json);
        out.push((format!("record-{i}"), one));
        lines.extend_from_slice(&json);
        lines.push(b'\n');
    }
    out.push(("records".to_string(), lines));
    let values = records.iter().filter_map(|r| {
        serde_json::to_vec(r)
            .ok()
            .map(|v| (None, Some(Bytes::from(v))))
    });
    if let Ok(batch) =
        crate::metadata::metadata_log::encode_internal_batch(values, 1_700_000_000_000)
    {
        let mut b = vec![0u8];
        b.extend_from_slice(&batch);
        out.push(("batch".to_string(), b));
    }
    out
}

/// The seeds of the `group_records` target: first byte chooses the value decoder, the rest is
/// `u16 key length, key, value`.
pub fn group_record_seeds() -> Vec<Seed> {
    fn seed(selector: u8, key: Option<Bytes>, value: Option<Bytes>) -> Option<Vec<u8>> {
        let key = key?;
        let value = value.unwrap_or_default();
        let mut b = BytesMut::new();
        b.put_u8(selector);
        b.put_u16(u16::try_from(key.len()).ok()?);
        b.put_slice(&key);
        b.put_slice(&value);
        Some(b.to_vec())
    }
    let offset = group_records::OffsetValue {
        offset: 42,
        leader_epoch: 3,
        metadata: "meta".to_string(),
        commit_timestamp_ms: 1_700_000_000_000,
    };
    let member = group_records::MemberValue {
        member_id: "m-1".to_string(),
        group_instance_id: None,
        client_id: "c".to_string(),
        client_host: "/127.0.0.1".to_string(),
        rebalance_timeout_ms: 10_000,
        session_timeout_ms: 10_000,
        subscription: Bytes::from_static(b"\x00\x01"),
        assignment: Bytes::from_static(b"\x00\x02"),
    };
    let group = group_records::GroupValue {
        protocol_type: "consumer".to_string(),
        generation: 4,
        protocol: Some("range".to_string()),
        leader: Some("m-1".to_string()),
        current_state_timestamp_ms: 1_700_000_000_000,
        members: vec![member],
    };
    let metadata = consumer_records::MemberMetadata::default();
    let current = consumer_records::CurrentAssignment::default();
    let seeds = [
        (
            "offset",
            seed(
                0,
                group_records::offset_key(GROUP, TOPIC, 0).ok(),
                group_records::encode_offset_value(&offset).ok(),
            ),
        ),
        (
            "group",
            seed(
                1,
                group_records::group_key(GROUP).ok(),
                group_records::encode_group_value(&group).ok(),
            ),
        ),
        (
            "epoch",
            seed(
                2,
                consumer_records::key(3, GROUP, None).ok(),
                Some(consumer_records::epoch_value(5)),
            ),
        ),
        (
            "member-metadata",
            seed(
                3,
                consumer_records::key(5, GROUP, Some("m-1")).ok(),
                Some(consumer_records::member_metadata_value(&metadata)),
            ),
        ),
        (
            "target-member",
            seed(
                4,
                consumer_records::key(7, GROUP, Some("m-1")).ok(),
                Some(consumer_records::target_member_value(&Default::default())),
            ),
        ),
        (
            "current-assignment",
            seed(
                5,
                consumer_records::key(8, GROUP, Some("m-1")).ok(),
                Some(consumer_records::current_assignment_value(&current)),
            ),
        ),
        (
            "tombstone",
            seed(0, group_records::offset_key(GROUP, TOPIC, 1).ok(), None),
        ),
    ];
    seeds
        .into_iter()
        .filter_map(|(name, s)| s.map(|s| (name.to_string(), s)))
        .collect()
}
