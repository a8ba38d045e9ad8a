//! read_committed through the dispatcher of an in-process broker: transactional batches and
//! markers written on the partition (as the transaction coordinator's marker sink will),
//! then Fetch and ListOffsets at both isolation levels as clients send them.

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::*;
use proto_kafka::protocol::StrBytes;
use proto_kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proto_kafka::ResponseError;

use super::TestBroker;
use crate::partition::{PartitionError, PartitionLog};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A batch of `n` records from producer `pid` (epoch 0, sequence `seq`; -1: no producer).
fn batch(pid: i64, seq: i32, n: i64, transactional: bool) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: if pid < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: if pid < 0 { -1 } else { seq + i as i32 },
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(format!("p{pid} r{i}"))),
            headers: Vec::new(),
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

async fn append(p: &dyn PartitionLog, mut b: BytesMut) -> i64 {
    let appended = p.append_as_leader(&mut b, 1_700_000_000_000).unwrap();
    p.complete_append(appended.last_offset + 1).await.unwrap();
    appended.first_offset
}

async fn fetch(tb: &TestBroker, offset: i64, isolation_level: i8) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("tx"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let mut r = tb.request(12, &req).await.expect("Fetch answered");
    assert_eq!(r.error_code, 0);
    r.responses.remove(0).partitions.remove(0)
}

async fn latest(tb: &TestBroker, isolation_level: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("tx"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let r = tb.request(7, &req).await.expect("ListOffsets answered");
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// (offset, is control) of every record in a fetch answer.
fn offsets(data: &fetch_response::PartitionData) -> Vec<(i64, bool)> {
    let mut bytes = data.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .unwrap()
        .iter()
        .flat_map(|s| s.records.iter().map(|r| (r.offset, r.control)))
        .collect()
}

fn aborted(data: &fetch_response::PartitionData) -> Option<Vec<(i64, i64)>> {
    data.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect()
    })
}

#[tokio::test]
async fn read_committed_stops_at_the_lso_and_names_the_aborted_transactions() {
    let tb = TestBroker::start().await.expect("test broker");
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name("tx"))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    let r = tb.request(7, &req).await.expect("CreateTopics answered");
    assert_eq!(r.topics[0].error_code, 0);
    let p = tb.broker.replicas.leader_partition("tx", 0).unwrap();
    let p = p.as_ref();

    let a = append(p, batch(1, 0, 3, true)).await; // 0..=2, aborted below
    let plain = append(p, batch(-1, -1, 1, false)).await; // 3
    let b = append(p, batch(2, 0, 2, true)).await; // 4..=5, committed below
    assert_eq!((a, plain, b), (0, 3, 4));
    // Both open: read_committed sees nothing, read_uncommitted everything.
    let rc = fetch(&tb, 0, 1).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (6, 0));
    assert!(offsets(&rc).is_empty());
    assert_eq!(aborted(&rc), Some(vec![]));
    let ru = fetch(&tb, 0, 0).await;
    assert_eq!((ru.high_watermark, ru.last_stable_offset), (6, 0));
    assert_eq!(offsets(&ru).len(), 6);
    assert_eq!(aborted(&ru), None);
    assert_eq!((latest(&tb, 1).await, latest(&tb, 0).await), (0, 6));

    let abort_a = p
        .append_marker(1, 0, 0, false, 1_700_000_000_100)
        .await
        .unwrap();
    let commit_b = p
        .append_marker(2, 0, 0, true, 1_700_000_000_100)
        .await
        .unwrap();
    assert_eq!((abort_a, commit_b), (6, 7));
    let c = append(p, batch(3, 0, 1, true)).await; // 8, still open
    assert_eq!(c, 8);

    let rc = fetch(&tb, 0, 1).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (9, 8));
    let seen = offsets(&rc);
    assert_eq!(seen.first(), Some(&(0, false)));
    assert_eq!(
        seen.last(),
        Some(&(7, true)),
        "up to B's commit marker, not C"
    );
    assert_eq!(aborted(&rc), Some(vec![(1, 0)]));
    // Past A's marker its abort is not news.
    assert_eq!(aborted(&fetch(&tb, 7, 1).await), Some(vec![]));
    let ru = fetch(&tb, 0, 0).await;
    assert_eq!(ru.last_stable_offset, 8);
    assert_eq!(offsets(&ru).last(), Some(&(8, false)));
    assert_eq!((latest(&tb, 1).await, latest(&tb, 0).await), (8, 9));

    // A fenced producer epoch writes no marker, with Kafka's error.
    let fenced = p.append_marker(3, -1, 0, false, 1_700_000_000_200).await;
    assert!(matches!(
        fenced,
        Err(PartitionError::Rejected(
            ResponseError::InvalidProducerEpoch
        ))
    ));
    p.append_marker(3, 0, 0, false, 1_700_000_000_200)
        .await
        .unwrap();
    let rc = fetch(&tb, 8, 1).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (10, 10));
    assert_eq!(offsets(&rc), vec![(8, false), (9, true)]);
    assert_eq!(aborted(&rc), Some(vec![(3, 8)]));
    assert_eq!(latest(&tb, 1).await, 10);
}
