//! The transaction APIs on the wire (KIP-98, KIP-447, KIP-664, KIP-890): InitProducerId with
//! a transactional id, AddPartitionsToTxn (v0-v3, and the batched verify-only v4),
//! AddOffsetsToTxn, EndTxn, TxnOffsetCommit, and the admin APIs DescribeTransactions,
//! ListTransactions and DescribeProducers. Each maps the request onto the transaction
//! coordinator (`broker.txns`) or the group coordinator (TxnOffsetCommit) and the answer back.

use std::sync::Arc;

use proto_kafka::messages as m;
use proto_kafka::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use proto_kafka::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use proto_kafka::messages::describe_transactions_response::{TopicData, TransactionState};
use proto_kafka::messages::list_transactions_response::TransactionState as ListedState;
use proto_kafka::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use proto_kafka::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;
use strom_group_coordinator::coordinator::{CommitEntry, Committer};
use strom_group_coordinator::writer::TxnProducer;
use strom_group_coordinator::OFFSETS_TOPIC;
use strom_transaction_coordinator::state::{TopicPartition, TxnResult, TxnState};
use strom_transaction_coordinator::PartitionVerifier;

use super::error_codes::ErrorCodes;
use super::str_bytes;
use crate::broker::Broker;
use crate::request::RequestContext;

fn code(r: &Result<(), ResponseError>) -> i16 {
    r.as_ref().err().map_or(0, |e| e.code())
}

/// PRODUCER_FENCED is KIP-588's (Kafka 2.7); to a request older than `since` Kafka answers
/// INVALID_PRODUCER_EPOCH instead, the code those clients handle the same way.
fn fenced_for(version: i16, since: i16, e: ResponseError) -> ResponseError {
    if e == ResponseError::ProducerFenced && version < since {
        ResponseError::InvalidProducerEpoch
    } else {
        e
    }
}

/// Who a partition leader asks whether a partition is in a transaction (KIP-890): the
/// transaction coordinator in process; in a cluster the port sends the question on to the
/// id's coordinator.
pub fn partition_verifier(broker: &Broker) -> Arc<dyn PartitionVerifier> {
    let local = strom_transaction_coordinator::LocalVerifier(broker.txns.clone());
    if broker.cluster().is_none() {
        return Arc::new(local);
    }
    Arc::new(ClusterVerifier {
        local,
        image: broker.image(),
        node_id: broker.config.node_id,
        listener: broker.config.inter_broker_listener_name.clone(),
    })
}

/// In a cluster the transactional id's coordinator may be another broker (the leader of its
/// `__transaction_state` partition): the leader asks it with AddPartitionsToTxn v4, one
/// transaction with `verify_only` (Kafka's `AddPartitionsToTxnManager`); its own ids it
/// answers in process.
struct ClusterVerifier {
    local: strom_transaction_coordinator::LocalVerifier,
    image: Arc<strom_metadata::MetadataImage>,
    node_id: i32,
    listener: String,
}

impl ClusterVerifier {
    /// The coordinator's node id and address, None when it is this broker.
    fn remote_coordinator(&self, transactional_id: &str) -> Option<(i32, String)> {
        let topic = self
            .image
            .topic(strom_transaction_coordinator::TRANSACTION_STATE_TOPIC)?;
        let count = i32::try_from(topic.partitions.len()).ok()?;
        let partition = strom_group_coordinator::partition_for(transactional_id, count);
        let leader = topic.partitions.get(&partition)?.leader;
        if leader == self.node_id || leader < 0 {
            return None;
        }
        let b = self.image.brokers.get(&leader)?;
        let ep = b
            .endpoints
            .iter()
            .find(|e| e.name == self.listener)
            .or_else(|| b.endpoints.first())?;
        Some((leader, format!("{}:{}", ep.host, ep.port)))
    }
}

impl PartitionVerifier for ClusterVerifier {
    fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        add: bool,
    ) -> strom_transaction_coordinator::ports::PortFuture<
        Result<strom_transaction_coordinator::state::Verified, ResponseError>,
    > {
        let Some((node, addr)) = self.remote_coordinator(transactional_id) else {
            return self.local.verify(
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                add,
            );
        };
        let transactional_id = transactional_id.to_string();
        Box::pin(async move {
            verify_remotely(
                node,
                &addr,
                (&transactional_id, producer_id, producer_epoch),
                partitions,
                add,
            )
            .await
        })
    }
}

/// Connections to other brokers' transaction coordinators, by address: every transactional
/// produce led off its coordinator is verified there, so one connection per coordinator is
/// kept rather than a connect and ApiVersions per produce. A closed one is replaced.
static COORDINATOR_CONNECTIONS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Arc<strom_client::Connection>>>,
> = std::sync::LazyLock::new(Default::default);

async fn coordinator_connection(
    addr: &str,
) -> Result<Arc<strom_client::Connection>, strom_client::Error> {
    let cached = COORDINATOR_CONNECTIONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(addr)
        .filter(|c| c.is_alive())
        .cloned();
    if let Some(conn) = cached {
        return Ok(conn);
    }
    let conn = Arc::new(
        strom_client::Connection::connect(addr, strom_client::ConnectionConfig::default()).await?,
    );
    COORDINATOR_CONNECTIONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(addr.to_string(), Arc::clone(&conn));
    Ok(conn)
}

async fn verify_remotely(
    node: i32,
    addr: &str,
    (transactional_id, producer_id, producer_epoch): (&str, i64, i16),
    partitions: Vec<TopicPartition>,
    add: bool,
) -> Result<strom_transaction_coordinator::state::Verified, ResponseError> {
    use m::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    let unreachable = |e: strom_client::error::Error| {
        tracing::debug!(node, error = %e, "cannot reach the transaction coordinator to verify");
        // Retriable: the produce answers NOT_ENOUGH_REPLICAS and the client sends again.
        ResponseError::CoordinatorNotAvailable
    };
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in &partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let topics: Vec<AddPartitionsToTxnTopic> = by_topic
        .iter()
        .map(|(t, ps)| {
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(ps.clone())
        })
        .collect();
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(str_bytes(transactional_id)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            // Adding (KIP-890 part 2) is the coordinator's answer to the same request
            // without verify_only.
            .with_verify_only(!add)
            .with_topics(topics),
    ]);
    let conn = coordinator_connection(addr).await.map_err(unreachable)?;
    let resp = conn.send(4, &req).await.map_err(unreachable)?;
    if resp.error_code != 0 {
        return Err(ResponseError::try_from_code(resp.error_code)
            .unwrap_or(ResponseError::CoordinatorNotAvailable));
    }
    let mut answers: std::collections::HashMap<TopicPartition, Result<(), ResponseError>> =
        Default::default();
    for t in resp.results_by_transaction {
        for topic in t.topic_results {
            for p in topic.results_by_partition {
                let r = match p.partition_error_code {
                    0 => Ok(()),
                    c => Err(ResponseError::try_from_code(c)
                        .unwrap_or(ResponseError::UnknownServerError)),
                };
                answers.insert((topic.name.0.to_string(), p.partition_index), r);
            }
        }
    }
    Ok(partitions
        .into_iter()
        .map(|tp| {
            let r = answers
                .get(&tp)
                .copied()
                .unwrap_or(Err(ResponseError::InvalidTxnState));
            (tp, r)
        })
        .collect())
}

/// Whether a produce of `produce_version` adds its partitions to the transaction itself
/// (KIP-890 part 2): Produce v12 from a client of transaction version 2, which only uses it
/// where the broker finalizes that version; an older produce is only verified.
pub fn produce_adds_partitions(broker: &Broker, produce_version: i16) -> bool {
    produce_version >= 12 && broker.config.txns.transaction_version_level >= 2
}

/// Kafka's translation of a failed verification into the error a produce answers (its
/// `ReplicaManager.handleProduceAppend` and `AddPartitionsToTxnManager`), with the message
/// Kafka gives where it gives one. Produce v11 and newer clients know TRANSACTION_ABORTABLE
/// (KIP-890); older ones get INVALID_TXN_STATE. The retriable coordinator errors become
/// NOT_ENOUGH_REPLICAS, which every client retries without a metadata refresh.
pub fn produce_verification_error(
    e: ResponseError,
    produce_version: i16,
) -> (ResponseError, Option<String>) {
    match e {
        ResponseError::TransactionAbortable if produce_version > 10 => (e, None),
        ResponseError::TransactionAbortable | ResponseError::InvalidTxnState => (
            ResponseError::InvalidTxnState,
            Some("Partition was not added to the transaction".to_string()),
        ),
        ResponseError::ProducerFenced => (ResponseError::InvalidProducerEpoch, None),
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => (
            ResponseError::NotEnoughReplicas,
            Some(format!(
                "Unable to verify the partition has been added to the transaction. Underlying error: {e:?}"
            )),
        ),
        other => (other, None),
    }
}

/// InitProducerId with a transactional id: the id's producer id and a bumped epoch, which
/// fences the id's previous producer (KIP-98; KIP-360 when the producer gives its own).
pub async fn init_producer_id(
    broker: &Arc<Broker>,
    version: i16,
    transactional_id: &str,
    req: &m::InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(fenced_for(version, 4, e).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Err(e) = broker.txn_cluster.reserve_producer_ids().await {
        return fail(e);
    }
    let expected = (req.producer_id.0 >= 0 && req.producer_epoch >= 0)
        .then_some((req.producer_id.0, req.producer_epoch));
    match broker
        .txns
        .init_producer_id(transactional_id, req.transaction_timeout_ms, expected, 0)
        .await
    {
        Ok((id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => fail(e),
    }
}

/// The partitions of a request, by topic, with those of unknown topics split off: Kafka
/// answers those UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED.
fn partitions_of(
    broker: &Broker,
    topics: &[m::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> (Vec<TopicPartition>, bool) {
    let image = broker.image();
    let mut out = Vec::new();
    let mut unknown = false;
    for t in topics {
        for p in &t.partitions {
            let known = image
                .topic(t.name.as_str())
                .is_some_and(|tt| tt.partitions.contains_key(p));
            unknown |= !known;
            out.push((t.name.to_string(), *p));
        }
    }
    (out, unknown)
}

fn topic_results(
    broker: &Broker,
    partitions: &[TopicPartition],
    result: impl Fn(&TopicPartition) -> Result<(), ResponseError>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let _ = broker;
    let mut by_topic: std::collections::BTreeMap<&str, Vec<AddPartitionsToTxnPartitionResult>> =
        std::collections::BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.0.as_str()).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(tp.1)
                .with_partition_error_code(code(&result(tp))),
        );
    }
    by_topic
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(str_bytes(name)))
                .with_results_by_partition(parts)
        })
        .collect()
}

async fn add_one(
    broker: &Arc<Broker>,
    version: i16,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topics: &[m::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let (partitions, unknown) = partitions_of(broker, topics);
    if unknown {
        let image = broker.image();
        return topic_results(broker, &partitions, |(t, p)| {
            if image
                .topic(t)
                .is_some_and(|tt| tt.partitions.contains_key(p))
            {
                Err(ResponseError::OperationNotAttempted)
            } else {
                Err(ResponseError::UnknownTopicOrPartition)
            }
        });
    }
    if verify_only {
        return match broker.txns.verify_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
        ) {
            Ok(verified) => {
                let map: std::collections::HashMap<TopicPartition, Result<(), ResponseError>> =
                    verified.into_iter().collect();
                topic_results(broker, &partitions, |tp| {
                    map.get(tp)
                        .copied()
                        .unwrap_or(Err(ResponseError::InvalidTxnState))
                })
            }
            Err(e) => topic_results(broker, &partitions, |_| Err(e)),
        };
    }
    let r = broker
        .txns
        .add_partitions(transactional_id, producer_id, producer_epoch, &partitions)
        .await
        .map_err(|e| fenced_for(version, 2, e));
    topic_results(broker, &partitions, |_| r)
}

/// Most transactions one batched (v4+) AddPartitionsToTxn may carry: each is a coordinator
/// call, and the request's own size bounds nothing cheaper.
const MAX_BATCHED_TRANSACTIONS: usize = 1000;

pub async fn add_partitions_to_txn(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version <= 3 {
        let results = add_one(
            broker,
            ctx.version,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    if req.transactions.len() > MAX_BATCHED_TRANSACTIONS {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            broker,
            ctx.version,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// The `__consumer_offsets` partitions a group id is placed over: the topic's, or the
/// configured count before it exists.
fn offsets_partitions(broker: &Broker) -> i32 {
    broker
        .image()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .filter(|n| *n > 0)
        .unwrap_or(broker.config.groups.offsets_topic_num_partitions)
}

pub async fn add_offsets_to_txn(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let r = add_group_offsets(
        broker,
        req.transactional_id.as_str(),
        (req.producer_id.0, req.producer_epoch),
        req.group_id.as_str(),
    )
    .await
    .map_err(|e| fenced_for(ctx.version, 2, e));
    AddOffsetsToTxnResponse::default().with_error_code(code(&r))
}

pub async fn end_txn(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let fail = |e: ResponseError| {
        EndTxnResponse::default()
            .with_error_code(fenced_for(ctx.version, 2, e).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    // An exhausted epoch takes a new producer id at the end of the transaction.
    if let Err(e) = broker.txn_cluster.reserve_producer_ids().await {
        return fail(e);
    }
    let result = if req.committed {
        TxnResult::Commit
    } else {
        TxnResult::Abort
    };
    // EndTxn v5 is the client of transaction version 2 (Kafka's own test of the version):
    // its every end bumps the epoch, and the answer carries the epoch to continue with.
    let client_transaction_version = if ctx.version > 4 { 2 } else { 0 };
    match broker
        .txns
        .end_txn_as(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            result,
            client_transaction_version,
        )
        .await
    {
        Ok((id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => fail(e),
    }
}

/// AddOffsetsToTxn's work on behalf of a transaction version 2 TxnOffsetCommit.
async fn join_offsets_partition(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
) -> Result<(), ResponseError> {
    add_group_offsets(
        broker,
        req.transactional_id.as_str(),
        (req.producer_id.0, req.producer_epoch),
        req.group_id.as_str(),
    )
    .await
}

/// Adds the group's `__consumer_offsets` partition to the transaction (AddOffsetsToTxn, and
/// a version 2 TxnOffsetCommit doing its work).
async fn add_group_offsets(
    broker: &Broker,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    group_id: &str,
) -> Result<(), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    broker
        .txns
        .add_offsets(
            transactional_id,
            producer_id,
            producer_epoch,
            group_id,
            offsets_partitions(broker),
        )
        .await
}

/// The transaction's own check of a TxnOffsetCommit, where this node coordinates it: the
/// producer must be the id's current one and the group's partition in the transaction
/// (Kafka gets the same from the producer-epoch check of the offsets append). Elsewhere the
/// group's checks alone apply.
fn check_txn_for_offsets(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
) -> Result<(), ResponseError> {
    let id = req.transactional_id.as_str();
    let m = match broker.txns.describe(id) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(ResponseError::InvalidProducerIdMapping),
        Err(ResponseError::NotCoordinator) => return Ok(()),
        Err(e) => return Err(e),
    };
    if m.producer_id != req.producer_id.0 {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if req.producer_epoch < m.producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    let partition =
        strom_group_coordinator::partition_for(req.group_id.as_str(), offsets_partitions(broker));
    if m.state != TxnState::Ongoing
        || !m
            .partitions
            .contains(&(OFFSETS_TOPIC.to_string(), partition))
    {
        return Err(ResponseError::InvalidTxnState);
    }
    Ok(())
}

pub async fn txn_offset_commit(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let entries: Vec<CommitEntry> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitEntry {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if ctx.version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|s| s.to_string()),
            })
        })
        .collect();
    let keys: Vec<(String, i32)> = entries
        .iter()
        .map(|e| (e.topic.clone(), e.partition))
        .collect();
    let joined = if ctx.version >= 5 && broker.config.txns.transaction_version_level >= 2 {
        // Transaction version 2: the commit brings the group's partition of the offsets
        // topic into the transaction itself, with no AddOffsetsToTxn (KIP-890 part 2).
        match join_offsets_partition(broker, &req).await {
            // Coordinated elsewhere: the group's own checks decide, as for older versions.
            Err(ResponseError::NotCoordinator) => Ok(()),
            other => other.map_err(|e| fenced_for(ctx.version, 2, e)),
        }
    } else {
        Ok(())
    };
    let checked = joined.and_then(|()| check_txn_for_offsets(broker, &req));
    let results: Vec<Option<ResponseError>> = match checked {
        Err(e) => vec![Some(e); entries.len()],
        Ok(()) => {
            let (member_id, instance, generation) = if ctx.version >= 3 {
                (
                    req.member_id.as_str(),
                    req.group_instance_id.as_ref().map(|s| s.as_str()),
                    req.generation_id,
                )
            } else {
                ("", None, -1)
            };
            broker
                .groups
                .txn_commit(
                    req.group_id.as_str(),
                    TxnProducer {
                        producer_id: req.producer_id.0,
                        producer_epoch: req.producer_epoch,
                    },
                    Committer {
                        member_id,
                        group_instance_id: instance,
                        generation_id: generation,
                        api_version: ctx.version,
                    },
                    entries,
                )
                .await
        }
    };
    let mut by_topic: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for ((topic, partition), r) in keys.into_iter().zip(results) {
        let part = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(r.map_or(0, |e| fenced_for(ctx.version, 3, e).code()));
        match by_topic.last_mut() {
            Some(t) if t.name.as_str() == topic => t.partitions.push(part),
            _ => by_topic.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_partitions(vec![part]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_topics(by_topic)
}

/// Most ids one DescribeTransactions may name; each costs a look-up and an answer.
const MAX_DESCRIBED_IDS: usize = 10_000;

pub fn describe_transactions(
    broker: &Arc<Broker>,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut seen = std::collections::HashSet::new();
    let states = req
        .transactional_ids
        .into_iter()
        .filter(|id| seen.insert(id.to_string()))
        .take(MAX_DESCRIBED_IDS)
        .map(|id| {
            let base = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            match broker.txns.describe(id.as_str()) {
                Ok(Some(m)) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (t, p) in &m.partitions {
                        match topics.last_mut() {
                            Some(td) if td.topic.as_str() == t => td.partitions.push(*p),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(t)))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    base.with_transaction_state(str_bytes(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_timestamp_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics)
                }
                Ok(None) => base.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Err(ResponseError::InvalidRequest) => {
                    base.with_error_code(ResponseError::TransactionalIdNotFound.code())
                }
                Err(e) => base.with_error_code(e.code()),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

const ALL_STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub fn list_transactions(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for s in &req.state_filters {
        match ALL_STATES.iter().find(|st| st.name() == s.as_str()) {
            Some(st) => states.push(*st),
            None => unknown.push(s.clone()),
        }
    }
    let resp = ListTransactionsResponse::default().with_unknown_state_filters(unknown.clone());
    // Only unknown states asked for: none can match.
    if states.is_empty() && !unknown.is_empty() {
        return resp;
    }
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration_ms =
        (ctx.version >= 1 && req.duration_filter >= 0).then_some(req.duration_filter);
    // v2 (KIP-1152): an empty or null pattern lists every id.
    let pattern = match req
        .transactional_id_pattern
        .as_ref()
        .filter(|p| ctx.version >= 2 && !p.is_empty())
    {
        Some(p) => match strom_transaction_coordinator::coordinator::transactional_id_matcher(p) {
            Ok(m) => Some(m),
            Err(e) => return resp.with_error_code(e.code()),
        },
        None => None,
    };
    match broker.txns.list(&states, &producer_ids, min_duration_ms) {
        Ok(listed) => resp.with_transaction_states(
            listed
                .into_iter()
                .filter(|l| {
                    pattern
                        .as_ref()
                        .is_none_or(|m| m.is_match(&l.transactional_id))
                })
                .map(|l| {
                    ListedState::default()
                        .with_transactional_id(TransactionalId(str_bytes(&l.transactional_id)))
                        .with_producer_id(ProducerId(l.producer_id))
                        .with_transaction_state(str_bytes(l.state.name()))
                })
                .collect(),
        ),
        Err(e) => resp.with_error_code(e.code()),
    }
}

pub fn describe_producers(
    broker: &Arc<Broker>,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| describe_partition_producers(broker, t.name.as_str(), *p))
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe_partition_producers(broker: &Broker, topic: &str, p: i32) -> PartitionResponse {
    let base = PartitionResponse::default().with_partition_index(p);
    let fail = |e: ResponseError| {
        PartitionResponse::default()
            .with_partition_index(p)
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(e.to_string())))
    };
    if let Err(e) = broker.replicas.leader_partition(topic, p) {
        return fail(e);
    }
    let Some(replica) = broker.replicas.get(topic, p) else {
        return fail(ResponseError::NotLeaderOrFollower);
    };
    let producers = replica.with_log(|log| {
        let mut out: Vec<ProducerState> = log
            .producer_state()
            .producers()
            .iter()
            .map(|(id, e)| {
                ProducerState::default()
                    .with_producer_id(ProducerId(*id))
                    .with_producer_epoch(i32::from(e.producer_epoch))
                    .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                    .with_last_timestamp(e.last_timestamp_ms)
                    .with_coordinator_epoch(e.coordinator_epoch)
                    .with_current_txn_start_offset(e.current_txn_first_offset.unwrap_or(-1))
            })
            .collect();
        out.sort_by_key(|s| s.producer_id.0);
        out
    });
    match producers {
        Ok(list) => base.with_active_producers(list),
        Err(_) => fail(ResponseError::KafkaStorageError),
    }
}

impl ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
        let topics = self.results_by_topic_v3_and_below.iter().chain(
            self.results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results),
        );
        for t in topics {
            out.extend(
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code),
            );
        }
    }
}

impl ErrorCodes for AddOffsetsToTxnResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for EndTxnResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        for t in &self.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}

impl ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.extend(self.transaction_states.iter().map(|s| s.error_code));
    }
}

impl ErrorCodes for ListTransactionsResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        out.push(self.error_code);
    }
}

impl ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, out: &mut Vec<i16>) {
        for t in &self.topics {
            out.extend(t.partitions.iter().map(|p| p.error_code));
        }
    }
}
