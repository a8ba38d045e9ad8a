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
