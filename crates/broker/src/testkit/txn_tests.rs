//! The transaction APIs through the dispatcher of an in-process broker: coordinator lookup,
//! producer ids and fencing, partitions and offsets joining a transaction, the admin views.

use proto_kafka::messages::*;
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;

use super::TestBroker;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_id(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

async fn broker() -> TestBroker {
    TestBroker::start_with(&[
        ("transaction.state.log.num.partitions", "3"),
        ("offsets.topic.num.partitions", "3"),
        ("transaction.max.timeout.ms", "60000"),
    ])
    .await
    .expect("test broker")
}

async fn create_topic(tb: &TestBroker, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    let r = tb.request(7, &req).await.expect("CreateTopics answered");
    assert_eq!(r.topics[0].error_code, 0);
}

async fn find_txn_coordinator(tb: &TestBroker, id: &str) -> FindCoordinatorResponse {
    let req = FindCoordinatorRequest::default()
        .with_key(s(id))
        .with_key_type(1);
    tb.request(3, &req).await.expect("FindCoordinator answered")
}

async fn init(tb: &TestBroker, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    tb.request(4, &req).await.expect("InitProducerId answered")
}

async fn add_partitions(
    tb: &TestBroker,
    id: &str,
    pid: i64,
    epoch: i16,
    topic: &str,
    partitions: Vec<i32>,
) -> Vec<(i32, i16)> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions),
        ]);
    let r = tb
        .request(3, &req)
        .await
        .expect("AddPartitionsToTxn answered");
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| (p.partition_index, p.partition_error_code))
        })
        .collect()
}

async fn describe(tb: &TestBroker, id: &str) -> describe_transactions_response::TransactionState {
    let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]);
    let mut r = tb
        .request(0, &req)
        .await
        .expect("DescribeTransactions answered");
    r.transaction_states.remove(0)
}

#[tokio::test]
async fn find_coordinator_creates_the_state_topic_and_names_this_node() {
    let tb = broker().await;
    let r = find_txn_coordinator(&tb, "app-1").await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.node_id.0, 0);
    let image = tb.broker.image();
    let t = image
        .topic("__transaction_state")
        .expect("__transaction_state created");
    assert_eq!(t.partitions.len(), 3);
    // Batched (v4+): every key answered, an empty id refused.
    let req = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("a"), s(""), s("b")]);
    let r = tb.request(4, &req).await.expect("FindCoordinator v4");
    let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
    assert_eq!(codes, vec![0, ResponseError::InvalidRequest.code(), 0]);
}

#[tokio::test]
async fn init_producer_id_bumps_the_epoch_and_checks_the_timeout() {
    let tb = broker().await;
    find_txn_coordinator(&tb, "app").await;
    let first = init(&tb, "app", 10_000).await;
    assert_eq!(first.error_code, 0);
    assert_eq!(first.producer_epoch, 0);
    let second = init(&tb, "app", 10_000).await;
    assert_eq!(second.error_code, 0);
    assert_eq!(second.producer_id, first.producer_id);
    assert_eq!(second.producer_epoch, 1);
    let too_long = init(&tb, "other", 60_001).await;
    assert_eq!(
        too_long.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );
    // An idempotent producer (no transactional id) still gets its own id.
    let req = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let idem = tb.request(4, &req).await.expect("answered");
    assert_eq!(idem.error_code, 0);
    assert_ne!(idem.producer_id, first.producer_id);
}

#[tokio::test]
async fn an_older_epoch_is_fenced_and_partitions_join_the_transaction() {
    let tb = broker().await;
    create_topic(&tb, "out", 4).await;
    find_txn_coordinator(&tb, "app").await;
    let old = init(&tb, "app", 10_000).await;
    let new = init(&tb, "app", 10_000).await;
    let pid = new.producer_id.0;
    let fenced = add_partitions(&tb, "app", pid, old.producer_epoch, "out", vec![0]).await;
    assert_eq!(fenced, vec![(0, ResponseError::ProducerFenced.code())]);
    // Before v2 a client knows no PRODUCER_FENCED: Kafka answers INVALID_PRODUCER_EPOCH.
    let old_client = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id("app"))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(old.producer_epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("out")))
                .with_partitions(vec![0]),
        ]);
    let r = tb.request(1, &old_client).await.expect("answered");
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        ResponseError::InvalidProducerEpoch.code()
    );
    let added = add_partitions(&tb, "app", pid, new.producer_epoch, "out", vec![0, 2]).await;
    assert_eq!(added, vec![(0, 0), (2, 0)]);
    let unknown = add_partitions(&tb, "app", pid, new.producer_epoch, "out", vec![1, 9]).await;
    assert_eq!(
        unknown,
        vec![
            (1, ResponseError::OperationNotAttempted.code()),
            (9, ResponseError::UnknownTopicOrPartition.code())
        ]
    );
    let d = describe(&tb, "app").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!(d.producer_id.0, pid);
    assert_eq!(d.topics.len(), 1);
    assert_eq!(d.topics[0].partitions, vec![0, 2]);
    let missing = describe(&tb, "nobody").await;
    assert_eq!(
        missing.error_code,
        ResponseError::TransactionalIdNotFound.code()
    );
    // ListTransactions: by state, with unknown state names echoed back.
    let req = ListTransactionsRequest::default()
        .with_state_filters(vec![s("Ongoing"), s("Bogus")])
        .with_duration_filter(-1);
    let r = tb
        .request(1, &req)
        .await
        .expect("ListTransactions answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
    let ids: Vec<&str> = r
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.as_str())
        .collect();
    assert_eq!(ids, vec!["app"]);
    // The batched verify-only form (v4) tells which partitions are in the transaction.
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id("app"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(new.producer_epoch)
            .with_verify_only(true)
            .with_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s("out")))
                    .with_partitions(vec![0, 1]),
            ]),
    ]);
    let r = tb.request(4, &req).await.expect("AddPartitionsToTxn v4");
    let codes: Vec<(i32, i16)> = r.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|p| (p.partition_index, p.partition_error_code))
        .collect();
    assert_eq!(codes[0], (0, 0));
    assert_ne!(codes[1].1, 0, "partition 1 was never added");
}

#[tokio::test]
async fn txn_offset_commit_needs_the_group_in_the_transaction_and_stays_pending() {
    let tb = broker().await;
    create_topic(&tb, "in", 1).await;
    find_txn_coordinator(&tb, "ctp").await;
    // The client finds the group's coordinator first, which creates __consumer_offsets.
    let req = FindCoordinatorRequest::default()
        .with_key(s("g"))
        .with_key_type(0);
    assert_eq!(tb.request(3, &req).await.expect("answered").error_code, 0);
    let p = init(&tb, "ctp", 10_000).await;
    let commit = |epoch: i16| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id("ctp"))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(p.producer_id)
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("in")))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42)
                            .with_committed_leader_epoch(-1),
                    ]),
            ])
    };
    let code_of = |r: &TxnOffsetCommitResponse| r.topics[0].partitions[0].error_code;
    let r = tb.request(3, &commit(0)).await.expect("answered");
    assert_eq!(code_of(&r), ResponseError::InvalidTxnState.code());
    let req = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("ctp"))
        .with_producer_id(p.producer_id)
        .with_producer_epoch(0)
        .with_group_id(GroupId(s("g")));
    let r = tb.request(3, &req).await.expect("AddOffsetsToTxn answered");
    assert_eq!(r.error_code, 0);
    let r = tb.request(3, &commit(0)).await.expect("answered");
    assert_eq!(code_of(&r), 0);
    assert!(tb.broker.groups.has_pending_txn_offset("g", "in", 0));
    // Pending offsets are not committed ones.
    let fetched = tb
        .broker
        .groups
        .fetch_offsets("g", Some(vec![("in".to_string(), vec![0])]));
    assert!(fetched[0].1[0].1.is_none(), "{fetched:?}");
    // A member id and generation of a group that does not exist: ILLEGAL_GENERATION.
    let r = tb
        .request(3, &commit(0).with_generation_id(5).with_member_id(s("m-1")))
        .await
        .expect("answered");
    assert_eq!(code_of(&r), ResponseError::IllegalGeneration.code());
    // An ABORT drops them (the marker's effect on the group).
    let offsets_partition = strom_group_coordinator::partition_for("g", 3);
    tb.broker
        .groups
        .complete_transaction(offsets_partition, p.producer_id.0, false);
    assert!(!tb.broker.groups.has_pending_txn_offset("g", "in", 0));
}

#[tokio::test]
async fn a_committed_transaction_makes_its_offsets_the_groups() {
    let tb = broker().await;
    create_topic(&tb, "in", 1).await;
    find_txn_coordinator(&tb, "ctp").await;
    // The client finds the group's coordinator first, which creates __consumer_offsets.
    let req = FindCoordinatorRequest::default()
        .with_key(s("g"))
        .with_key_type(0);
    assert_eq!(tb.request(3, &req).await.expect("answered").error_code, 0);
    let p = init(&tb, "ctp", 10_000).await;
    let req = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("ctp"))
        .with_producer_id(p.producer_id)
        .with_producer_epoch(0)
        .with_group_id(GroupId(s("g")));
    assert_eq!(tb.request(3, &req).await.expect("answered").error_code, 0);
    let req = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id("ctp"))
        .with_group_id(GroupId(s("g")))
        .with_producer_id(p.producer_id)
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("in")))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(7),
                ]),
        ]);
    let r = tb.request(3, &req).await.expect("answered");
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let offsets_partition = strom_group_coordinator::partition_for("g", 3);
    tb.broker
        .groups
        .complete_transaction(offsets_partition, p.producer_id.0, true);
    let fetched = tb
        .broker
        .groups
        .fetch_offsets("g", Some(vec![("in".to_string(), vec![0])]));
    assert_eq!(fetched[0].1[0].1.as_ref().map(|c| c.offset), Some(7));
    // Sent again (a retried marker), nothing changes.
    tb.broker
        .groups
        .complete_transaction(offsets_partition, p.producer_id.0, true);
}

#[tokio::test]
async fn describe_producers_answers_per_partition() {
    let tb = broker().await;
    create_topic(&tb, "t", 1).await;
    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 5]),
    ]);
    let r = tb
        .request(0, &req)
        .await
        .expect("DescribeProducers answered");
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes[0], 0);
    assert_ne!(codes[1], 0);
}

/// One transactional batch of `n` records from `pid` at `epoch` (sequence `seq`).
fn txn_batch(pid: i64, epoch: i16, seq: i32, n: i64) -> bytes::Bytes {
    use proto_kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: seq + i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(bytes::Bytes::from(format!("r{i}"))),
            headers: Vec::new(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("batch encodes");
    buf.freeze()
}

/// A produce of `records` to partition `partition` of "out" at `version`: its error code.
async fn produce(
    tb: &TestBroker,
    version: i16,
    transactional_id: Option<&str>,
    partition: i32,
    records: bytes::Bytes,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(transactional_id.map(txn_id))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s("out")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])]);
    let r = tb.request(version, &req).await.expect("Produce answered");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn last_stable_offset(tb: &TestBroker, partition: i32) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(1)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s("out")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(-1),
            ])]);
    let r = tb.request(7, &req).await.expect("ListOffsets answered");
    r.topics[0].partitions[0].offset
}

/// KIP-890 part 1: the leader asks the coordinator before it takes a transaction's first
/// batch on a partition; a partition never added to the transaction is refused (old clients:
/// INVALID_TXN_STATE, produce v11+: TRANSACTION_ABORTABLE), and nothing of it holds the LSO.
#[tokio::test]
async fn a_transactional_batch_outside_its_transaction_is_refused() {
    let tb = broker().await;
    create_topic(&tb, "out", 2).await;
    find_txn_coordinator(&tb, "app").await;
    let p = init(&tb, "app", 10_000).await;
    assert_eq!(p.error_code, 0);
    let (pid, epoch) = (p.producer_id.0, p.producer_epoch);

    // Not in a transaction at all.
    let (code, _) = produce(&tb, 9, Some("app"), 0, txn_batch(pid, epoch, 0, 3)).await;
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    let (code, _) = produce(&tb, 11, Some("app"), 0, txn_batch(pid, epoch, 0, 3)).await;
    assert_eq!(code, ResponseError::TransactionAbortable.code());
    // Partition 1 is added, partition 0 still is not.
    assert_eq!(
        add_partitions(&tb, "app", pid, epoch, "out", vec![1]).await,
        vec![(1, 0)]
    );
    let (code, _) = produce(&tb, 9, Some("app"), 0, txn_batch(pid, epoch, 0, 3)).await;
    assert_eq!(code, ResponseError::InvalidTxnState.code());
    assert_eq!(
        tb.broker
            .replicas
            .leader_partition("out", 0)
            .unwrap()
            .log_end_offset()
            .unwrap(),
        0
    );
    assert_eq!(last_stable_offset(&tb, 0).await, 0);

    // Transactional data without a transactional id is not authorized, as in Kafka.
    let (code, _) = produce(&tb, 9, None, 1, txn_batch(pid, epoch, 0, 3)).await;
    assert_eq!(
        code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    // An epoch older than the coordinator's is fenced (INVALID_PRODUCER_EPOCH to a produce).
    init(&tb, "other", 10_000).await;
    let newer = init(&tb, "other", 10_000).await;
    let (code, _) = produce(
        &tb,
        9,
        Some("other"),
        1,
        txn_batch(newer.producer_id.0, newer.producer_epoch - 1, 0, 1),
    )
    .await;
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());

    // The added partition takes the batch, and the transaction then holds its LSO.
    let (code, base) = produce(&tb, 9, Some("app"), 1, txn_batch(pid, epoch, 0, 3)).await;
    assert_eq!(code, 0);
    assert_eq!(base, 0);
    assert_eq!(last_stable_offset(&tb, 1).await, 0);
    // Later batches of the transaction on that partition are not asked about again: the
    // partition's open transaction of this producer vouches for them, until its marker.
    let part = tb.broker.replicas.leader_partition("out", 1).unwrap();
    assert!(part.has_ongoing_transaction(pid));
    let (code, base) = produce(&tb, 9, Some("app"), 1, txn_batch(pid, epoch, 3, 2)).await;
    assert_eq!(code, 0);
    assert_eq!(base, 3);
    // Once the transaction is committed, the next one must add the partition again.
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id("app"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(true);
    assert_eq!(tb.request(3, &req).await.expect("EndTxn").error_code, 0);
    for _ in 0..100 {
        if !part.has_ongoing_transaction(pid) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !part.has_ongoing_transaction(pid),
        "the COMMIT marker ends it"
    );
    assert_eq!(last_stable_offset(&tb, 1).await, 6);
    let (code, _) = produce(&tb, 9, Some("app"), 1, txn_batch(pid, epoch, 5, 1)).await;
    assert_eq!(code, ResponseError::InvalidTxnState.code());
}

/// A coordinator that cannot answer yet makes the produce retriable (NOT_ENOUGH_REPLICAS),
/// as Kafka translates it for every client; a fenced epoch is INVALID_PRODUCER_EPOCH.
#[test]
fn verification_errors_are_kafkas_produce_errors() {
    use crate::handlers::txn::produce_verification_error as map;
    assert_eq!(
        map(ResponseError::TransactionAbortable, 10).0,
        ResponseError::InvalidTxnState
    );
    assert_eq!(
        map(ResponseError::TransactionAbortable, 11).0,
        ResponseError::TransactionAbortable
    );
    assert_eq!(
        map(ResponseError::ProducerFenced, 11).0,
        ResponseError::InvalidProducerEpoch
    );
    for e in [
        ResponseError::ConcurrentTransactions,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::NotCoordinator,
    ] {
        let (code, message) = map(e, 9);
        assert_eq!(code, ResponseError::NotEnoughReplicas);
        assert!(message.is_some());
    }
    assert_eq!(
        map(ResponseError::InvalidProducerIdMapping, 9).0,
        ResponseError::InvalidProducerIdMapping
    );
}

async fn end_txn(
    tb: &TestBroker,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
) -> EndTxnResponse {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    tb.request(version, &req).await.expect("EndTxn answered")
}

/// Waits until partition `partition` of "out" has no open transaction of `pid` (its marker
/// is in).
async fn marker_written(tb: &TestBroker, partition: i32, pid: i64) {
    let part = tb
        .broker
        .replicas
        .leader_partition("out", partition)
        .unwrap();
    for _ in 0..200 {
        if !part.has_ongoing_transaction(pid) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no marker for producer {pid} on out-{partition}");
}

/// Transaction version 2 (KIP-890 part 2): advertised as a finalized feature only where
/// enabled; EndTxn v5 bumps the epoch at every end and answers it, the markers carry it (so
/// the old epoch is fenced on the partition), and Produce v12 adds its partition to the
/// transaction without an AddPartitionsToTxn.
#[tokio::test]
async fn transaction_version_2_bumps_the_epoch_and_adds_partitions_by_produce() {
    let off = broker().await;
    let r = off
        .request(3, &ApiVersionsRequest::default())
        .await
        .expect("ApiVersions");
    assert!(r.finalized_features.is_empty(), "not finalized by default");
    drop(off);

    let tb = TestBroker::start_with(&[
        ("transaction.state.log.num.partitions", "3"),
        ("transaction.max.timeout.ms", "60000"),
        ("transaction.version", "2"),
    ])
    .await
    .expect("test broker");
    let r = tb
        .request(3, &ApiVersionsRequest::default())
        .await
        .expect("ApiVersions");
    let tv: Vec<(&str, i16)> = r
        .finalized_features
        .iter()
        .map(|f| (f.name.as_str(), f.max_version_level))
        .collect();
    assert_eq!(tv, vec![("transaction.version", 2)]);
    let max_of = |key: ApiKey| {
        r.api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| k.max_version)
    };
    assert_eq!(max_of(ApiKey::EndTxn), Some(5));
    assert_eq!(max_of(ApiKey::Produce), Some(12));

    create_topic(&tb, "out", 2).await;
    find_txn_coordinator(&tb, "tv2").await;
    let p = init(&tb, "tv2", 10_000).await;
    let (pid, epoch) = (p.producer_id.0, p.producer_epoch);
    // Produce v12 adds partition 0 itself; the transaction is then ongoing with it.
    let (code, _) = produce(&tb, 12, Some("tv2"), 0, txn_batch(pid, epoch, 0, 2)).await;
    assert_eq!(code, 0);
    let d = describe(&tb, "tv2").await;
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!(d.topics[0].partitions, vec![0]);
    // An older produce of the same producer is still only verified: partition 1 is not in.
    let (code, _) = produce(&tb, 11, Some("tv2"), 1, txn_batch(pid, epoch, 0, 1)).await;
    assert_eq!(code, ResponseError::TransactionAbortable.code());

    // EndTxn v5: the coordinator bumps the epoch and answers the new one.
    let r = end_txn(&tb, 5, "tv2", pid, epoch, true).await;
    assert_eq!(r.error_code, 0);
    assert_eq!((r.producer_id.0, r.producer_epoch), (pid, epoch + 1));
    marker_written(&tb, 0, pid).await;
    assert_eq!(
        last_stable_offset(&tb, 0).await,
        3,
        "two records and the marker"
    );
    // Its retry (the old epoch) gets the same answer.
    let r = end_txn(&tb, 5, "tv2", pid, epoch, true).await;
    assert_eq!((r.error_code, r.producer_epoch), (0, epoch + 1));
    // A zombie write at the old epoch is fenced by the marker's epoch.
    let (code, _) = produce(&tb, 12, Some("tv2"), 0, txn_batch(pid, epoch, 2, 1)).await;
    assert_ne!(code, 0, "the old epoch is fenced");
    // The next transaction runs at the new epoch, its partitions again added by produce.
    let (code, base) = produce(&tb, 12, Some("tv2"), 0, txn_batch(pid, epoch + 1, 0, 1)).await;
    assert_eq!((code, base), (0, 3));
    let r = end_txn(&tb, 5, "tv2", pid, epoch + 1, false).await;
    assert_eq!((r.error_code, r.producer_epoch), (0, epoch + 2));
    marker_written(&tb, 0, pid).await;

    // TxnOffsetCommit v5 brings the group's offsets partition into the transaction itself.
    let req = FindCoordinatorRequest::default()
        .with_key(s("g2"))
        .with_key_type(0);
    assert_eq!(tb.request(3, &req).await.expect("answered").error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id("tv2"))
        .with_group_id(GroupId(s("g2")))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch + 2)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("out")))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(3)
                        .with_committed_leader_epoch(-1),
                ]),
        ]);
    // v4 still needs AddOffsetsToTxn first.
    let r = tb.request(4, &commit).await.expect("answered");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::InvalidTxnState.code()
    );
    let r = tb.request(5, &commit).await.expect("answered");
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert!(tb.broker.groups.has_pending_txn_offset("g2", "out", 0));
    assert_eq!(
        describe(&tb, "tv2").await.transaction_state.as_str(),
        "Ongoing"
    );

    // An old-protocol client keeps its epoch across EndTxn (v4).
    let q = init(&tb, "tv0", 10_000).await;
    let (qid, qepoch) = (q.producer_id.0, q.producer_epoch);
    assert_eq!(
        add_partitions(&tb, "tv0", qid, qepoch, "out", vec![1]).await,
        vec![(1, 0)]
    );
    let r = end_txn(&tb, 4, "tv0", qid, qepoch, true).await;
    assert_eq!(r.error_code, 0);
    let d = describe(&tb, "tv0").await;
    assert_eq!(d.producer_epoch, qepoch, "no bump for the old protocol");
}

/// ListTransactions v2 (KIP-1152): the transactional id pattern is matched against the whole
/// id; a pattern that does not compile is INVALID_REGULAR_EXPRESSION.
#[tokio::test]
async fn list_transactions_filters_by_an_id_pattern() {
    let tb = broker().await;
    find_txn_coordinator(&tb, "app-1").await;
    for id in ["app-1", "app-2", "other-app"] {
        assert_eq!(init(&tb, id, 10_000).await.error_code, 0);
    }
    let list = |version: i16, pattern: Option<&str>| {
        let req = ListTransactionsRequest::default()
            .with_duration_filter(-1)
            .with_transactional_id_pattern(pattern.map(s));
        let tb = &tb;
        async move {
            tb.request(version, &req)
                .await
                .expect("ListTransactions answered")
        }
    };
    let ids = |r: &ListTransactionsResponse| -> Vec<String> {
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.to_string())
            .collect()
    };
    let r = list(2, Some("app-.*")).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(ids(&r), vec!["app-1", "app-2"]);
    // A whole-id match, as Java's matches(): "app" alone matches nothing.
    assert!(ids(&list(2, Some("app")).await).is_empty());
    assert_eq!(ids(&list(2, Some("")).await).len(), 3);
    assert_eq!(ids(&list(2, None).await).len(), 3);
    assert_eq!(
        list(2, Some("app-(")).await.error_code,
        ResponseError::InvalidRegularExpression.code()
    );
}
