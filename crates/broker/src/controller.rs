//! The controller lives in `strom_metadata::controller`: this module keeps the names the
//! handlers call (each takes the broker and hands the request to its controller). The
//! broker's side of the controller's config port is `config_validator`.

use std::sync::Arc;

use uuid::Uuid;

use crate::broker::Broker;
use crate::metadata::TopicImage;

pub use crate::metadata::controller::{
    validate_topic_name, ApiError, ConfigChange, ControllerError, CreatedTopic, PartitionIncrease,
    TopicRef, TopicRequest, MAX_PARTITIONS_PER_BROKER,
};

/// Creates topics (all checks first, then one commit for the valid ones). Results are in
/// request order.
pub async fn create_topics(
    broker: &Arc<Broker>,
    requests: Vec<TopicRequest>,
    validate_only: bool,
) -> Vec<Result<CreatedTopic, ApiError>> {
    if let Some(target) = forward_target(broker) {
        return forward_create_topics(broker, target, requests, validate_only).await;
    }
    broker
        .controller()
        .create_topics(requests, validate_only)
        .await
}

/// In a cluster, the active controller's address when it is another broker: topic creation
/// goes there (Kafka's forwarding of CreateTopics), so `kcat -P` to a new topic works on
/// any broker. `None`: decide here (the single node, or this node is the controller).
fn forward_target(broker: &Arc<Broker>) -> Option<(i32, String)> {
    let cluster = broker.cluster()?;
    if cluster.is_controller() {
        return None;
    }
    let id = cluster.controller_id();
    let image = broker.image();
    let b = image.brokers.get(&id)?;
    let ep = b
        .endpoints
        .iter()
        .find(|e| e.name == broker.config.inter_broker_listener_name)
        .or_else(|| b.endpoints.first())?;
    Some((id, format!("{}:{}", ep.host, ep.port)))
}

fn not_controller(message: String) -> ApiError {
    ApiError::new(proto_kafka::ResponseError::NotController, message)
}

async fn forward_create_topics(
    broker: &Arc<Broker>,
    (controller_id, addr): (i32, String),
    requests: Vec<TopicRequest>,
    validate_only: bool,
) -> Vec<Result<CreatedTopic, ApiError>> {
    use strom_client::admin::NewTopic;
    use strom_client::client::{Client, ClientConfig};
    let mut results: Vec<Option<Result<CreatedTopic, ApiError>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut forwarded = Vec::new();
    let mut topics = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if !r.assignments.is_empty() {
            // The forward carries no replica assignments: every live broker is a replica
            // in a cluster anyway; the client may send it to the controller itself.
            results[i] = Some(Err(not_controller(format!(
                "broker {controller_id} is the controller; send replica assignments there"
            ))));
            continue;
        }
        forwarded.push(i);
        topics.push(NewTopic {
            name: r.name.clone(),
            partitions: r.num_partitions,
            replication_factor: r.replication_factor,
            configs: r
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
    }
    if !topics.is_empty() {
        let answered = match Client::connect(&addr, ClientConfig::default()).await {
            Ok(client) => client.create_topics(&topics, validate_only).await,
            Err(e) => Err(e),
        };
        match answered {
            Ok(answers) => {
                for (i, a) in forwarded.iter().zip(answers) {
                    results[*i] = Some(match a {
                        Ok(t) => Ok(CreatedTopic {
                            topic_id: t.id,
                            num_partitions: t.partitions,
                            replication_factor: t.replication_factor,
                        }),
                        Err(e) => Err(ApiError {
                            code: e
                                .code()
                                .unwrap_or(proto_kafka::ResponseError::NotController.code()),
                            message: e.to_string(),
                        }),
                    });
                }
            }
            Err(e) => {
                tracing::warn!(controller_id, error = %e, "cannot forward CreateTopics to the controller");
                for i in &forwarded {
                    results[*i] = Some(Err(not_controller(format!(
                        "cannot reach the controller (broker {controller_id}): {e}"
                    ))));
                }
            }
        }
        if !validate_only {
            // Answer once this broker's image has the new topics, as the controller's own
            // answer would: a client's next Metadata here then finds them.
            let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            wait_for_topics(broker, &names).await;
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(not_controller("no answer".into()))))
        .collect()
}

/// Catches up with the metadata log until every topic named is in the image, for a few
/// seconds at most.
async fn wait_for_topics(broker: &Arc<Broker>, names: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let image = broker.image();
        if names.iter().all(|n| image.topic(n).is_some()) || std::time::Instant::now() >= deadline {
            return;
        }
        if let Err(e) = broker.controller().catch_up().await {
            tracing::warn!(error = %e, "cannot catch up with the metadata log");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Creates a topic with the broker defaults if it does not exist yet (Metadata auto-creation).
pub async fn auto_create_topic(
    broker: &Arc<Broker>,
    name: &str,
) -> Result<Arc<TopicImage>, ApiError> {
    if forward_target(broker).is_none() {
        return broker.controller().auto_create_topic(name).await;
    }
    let req = TopicRequest {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: Default::default(),
        configs: Default::default(),
    };
    match create_topics(broker, vec![req], false).await.pop() {
        Some(Ok(_)) => {}
        Some(Err(e)) if e.code == proto_kafka::ResponseError::TopicAlreadyExists.code() => {}
        Some(Err(e)) => return Err(e),
        None => return Err(not_controller("no answer".into())),
    }
    broker.image().topic(name).cloned().ok_or_else(|| {
        ApiError::new(
            proto_kafka::ResponseError::LeaderNotAvailable,
            "the topic is being created",
        )
    })
}

/// Creates an internal topic (`__consumer_offsets`, `__transaction_state`) as its
/// coordinator asks on first use: one that exists already is no error, so concurrent first
/// uses all succeed.
pub async fn create_internal_topic(
    broker: &Arc<Broker>,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    configs: std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let req = TopicRequest {
        name: name.to_string(),
        num_partitions,
        replication_factor,
        assignments: std::collections::BTreeMap::new(),
        configs,
    };
    match create_topics(broker, vec![req], false).await.pop() {
        Some(Ok(created)) => {
            tracing::info!(partitions = created.num_partitions, "created {name}");
            Ok(())
        }
        Some(Err(e)) if e.code == proto_kafka::ResponseError::TopicAlreadyExists.code() => Ok(()),
        Some(Err(e)) => Err(e.message),
        None => Err("the controller gave no answer".to_string()),
    }
}

pub async fn allocate_producer_id(broker: &Arc<Broker>) -> Result<i64, ApiError> {
    match forward_target(broker) {
        None => broker.controller().allocate_producer_id().await,
        Some(target) => forward_init_producer_id(target).await,
    }
}

/// In a cluster, producer id blocks are the controller's (they are metadata records): a
/// broker that is not the controller asks it for an id with InitProducerId (Kafka's
/// brokers ask theirs with AllocateProducerIds, a block at a time).
async fn forward_init_producer_id((controller_id, addr): (i32, String)) -> Result<i64, ApiError> {
    use proto_kafka::messages::{InitProducerIdRequest, ProducerId};
    use strom_client::client::{Client, ClientConfig};
    let unreachable = |e: strom_client::error::Error| {
        tracing::warn!(controller_id, error = %e, "cannot forward InitProducerId to the controller");
        ApiError::new(
            proto_kafka::ResponseError::CoordinatorNotAvailable,
            format!("cannot reach the controller (broker {controller_id})"),
        )
    };
    let client = Client::connect(&addr, ClientConfig::default())
        .await
        .map_err(unreachable)?;
    let conn = client.controller().await.map_err(unreachable)?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = conn.send_latest(&req).await.map_err(unreachable)?;
    if resp.error_code != 0 {
        return Err(ApiError {
            code: resp.error_code,
            message: format!("the controller (broker {controller_id}) refused InitProducerId"),
        });
    }
    Ok(resp.producer_id.0)
}

/// Adds partitions to existing topics (CreatePartitions).
pub async fn create_partitions(
    broker: &Arc<Broker>,
    requests: Vec<PartitionIncrease>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    if let Some(target) = forward_target(broker) {
        if validate_only || requests.iter().any(|r| r.assignments.is_some()) {
            return refuse_all(requests.len(), &target);
        }
        let mut out = Vec::with_capacity(requests.len());
        let client = match connect(&target).await {
            Ok(c) => c,
            Err(e) => return (0..requests.len()).map(|_| Err(e.clone())).collect(),
        };
        for r in &requests {
            out.push(
                client
                    .create_partitions(&r.topic, r.count)
                    .await
                    .map_err(|e| forwarded_error(e, &target)),
            );
        }
        caught_up(broker).await;
        return out;
    }
    broker
        .controller()
        .create_partitions(requests, validate_only)
        .await
}

/// Every item of a request this broker cannot forward: NOT_CONTROLLER, naming the one.
fn refuse_all<T>(n: usize, (controller_id, _): &(i32, String)) -> Vec<Result<T, ApiError>> {
    (0..n)
        .map(|_| {
            Err(not_controller(format!(
                "broker {controller_id} is the active controller"
            )))
        })
        .collect()
}

async fn connect(
    (controller_id, addr): &(i32, String),
) -> Result<strom_client::client::Client, ApiError> {
    strom_client::client::Client::connect(addr, strom_client::client::ClientConfig::default())
        .await
        .map_err(|e| {
            tracing::warn!(controller_id, error = %e, "cannot reach the controller");
            not_controller(format!(
                "cannot reach the controller (broker {controller_id}): {e}"
            ))
        })
}

fn forwarded_error(e: strom_client::error::Error, (controller_id, _): &(i32, String)) -> ApiError {
    ApiError {
        code: e
            .code()
            .unwrap_or(proto_kafka::ResponseError::NotController.code()),
        message: format!("from the controller (broker {controller_id}): {e}"),
    }
}

/// After a forwarded change: the controller committed it before answering, so one read of
/// the log brings this broker's image up to it.
async fn caught_up(broker: &Arc<Broker>) {
    if let Err(e) = broker.controller().catch_up().await {
        tracing::warn!(error = %e, "cannot catch up with the metadata log");
    }
}

/// A config change as IncrementalAlterConfigs operations for the controller: SET and
/// DELETE as they are; a whole replacement (AlterConfigs) as setting what it names and
/// deleting the other overrides in force. `None` for APPEND/SUBTRACT, which the forward
/// cannot carry.
fn as_ops(
    change: &ConfigChange,
    current: &std::collections::BTreeMap<String, String>,
) -> Option<Vec<strom_client::admin::ConfigOp>> {
    use strom_client::admin::ConfigOp;
    match change {
        ConfigChange::Incremental(ops) => ops
            .iter()
            .map(|(name, op, value)| match (op, value) {
                (0, Some(v)) => Some(ConfigOp::Set(name.clone(), v.clone())),
                (1, _) => Some(ConfigOp::Delete(name.clone())),
                _ => None,
            })
            .collect(),
        ConfigChange::Replace(all) => {
            let mut ops: Vec<ConfigOp> = all
                .iter()
                .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
                .collect();
            ops.extend(
                current
                    .keys()
                    .filter(|k| !all.contains_key(*k))
                    .map(|k| ConfigOp::Delete(k.clone())),
            );
            Some(ops)
        }
    }
}

async fn forward_config_changes(
    broker: &Arc<Broker>,
    target: &(i32, String),
    resource_type: i8,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    if validate_only {
        return refuse_all(changes.len(), target);
    }
    let client = match connect(target).await {
        Ok(c) => c,
        Err(e) => return (0..changes.len()).map(|_| Err(e.clone())).collect(),
    };
    let image = broker.image();
    let mut out = Vec::with_capacity(changes.len());
    for (name, change) in &changes {
        let current = if resource_type == strom_metadata::records::RESOURCE_TOPIC {
            image.topic_configs(name)
        } else {
            image.broker_configs(name)
        };
        let Some(ops) = as_ops(change, &current) else {
            out.push(Err(not_controller(format!(
                "broker {} is the active controller; send APPEND and SUBTRACT there",
                target.0
            ))));
            continue;
        };
        out.push(
            client
                .incremental_alter_configs(resource_type, name, &ops)
                .await
                .map_err(|e| forwarded_error(e, target)),
        );
    }
    caught_up(broker).await;
    out
}

/// Changes topic configurations; the new values reach the partitions as the image is published.
pub async fn alter_topic_configs(
    broker: &Arc<Broker>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    if let Some(target) = forward_target(broker) {
        let topic = strom_metadata::records::RESOURCE_TOPIC;
        return forward_config_changes(broker, &target, topic, changes, validate_only).await;
    }
    broker
        .controller()
        .alter_topic_configs(changes, validate_only)
        .await
}

/// Changes dynamic broker settings (AlterConfigs on a BROKER resource): `""` for the
/// cluster-wide defaults, or this node's id (see [`crate::config::is_dynamic_broker_config`]).
pub async fn alter_broker_configs(
    broker: &Arc<Broker>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    if let Some(target) = forward_target(broker) {
        let kind = strom_metadata::records::RESOURCE_BROKER;
        return forward_config_changes(broker, &target, kind, changes, validate_only).await;
    }
    broker
        .controller()
        .alter_broker_configs(changes, validate_only)
        .await
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    topics: Vec<TopicRef>,
) -> Vec<Result<(String, Uuid), ApiError>> {
    if let Some(target) = forward_target(broker) {
        let image = broker.image();
        let named: Option<Vec<(String, Uuid)>> = topics
            .iter()
            .map(|t| match t {
                TopicRef::Name(n) => {
                    Some((n.clone(), image.topic(n).map_or(Uuid::nil(), |t| t.id)))
                }
                TopicRef::Id(_) => None,
            })
            .collect();
        let Some(named) = named else {
            return refuse_all(topics.len(), &target);
        };
        let client = match connect(&target).await {
            Ok(c) => c,
            Err(e) => return (0..topics.len()).map(|_| Err(e.clone())).collect(),
        };
        let names: Vec<String> = named.iter().map(|(n, _)| n.clone()).collect();
        let out = match client.delete_topics(&names).await {
            Ok(results) => named
                .into_iter()
                .zip(results)
                .map(|(t, r)| r.map(|()| t).map_err(|e| forwarded_error(e, &target)))
                .collect(),
            Err(e) => {
                let e = forwarded_error(e, &target);
                (0..topics.len()).map(|_| Err(e.clone())).collect()
            }
        };
        caught_up(broker).await;
        return out;
    }
    broker.controller().delete_topics(topics).await
}

#[cfg(test)]
mod limit_tests {
    use std::collections::BTreeMap;

    use std::path::Path;

    use proto_kafka::ResponseError;

    use super::*;
    use crate::config::{BrokerConfig, RawConfig};
    use crate::metadata::metadata_log::MetadataLog;
    use crate::replica_manager::ReplicaManager;

    fn test_broker(dir: &Path, pinned: &[(&str, &str)]) -> Arc<Broker> {
        let mut raw = RawConfig::defaults();
        raw.set("log.dirs", &dir.display().to_string(), "test")
            .unwrap();
        for (k, v) in pinned {
            raw.set_pinned(k, v, "test").unwrap();
        }
        let config = BrokerConfig::from_raw(raw).unwrap();
        let (log, image) = MetadataLog::open(dir).unwrap();
        let replicas = ReplicaManager::new(config.node_id, dir);
        Broker::new(
            config,
            "c".into(),
            log,
            image,
            replicas,
            crate::wiring::services,
        )
    }

    fn topic(name: &str, num_partitions: i32, replication_factor: i16) -> TopicRequest {
        TopicRequest {
            name: name.into(),
            num_partitions,
            replication_factor,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    fn code(r: &Result<impl Sized, ApiError>) -> i16 {
        r.as_ref().err().map_or(0, |e| e.code)
    }

    /// A coordinator's first use creates its topic; a second (another coordinator's
    /// concurrent first use) finds it and is content; a refused one says why.
    #[tokio::test]
    async fn internal_topic_created_once_and_found_after() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[]);
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        for _ in 0..2 {
            create_internal_topic(&b, "__consumer_offsets", 3, 1, configs.clone())
                .await
                .unwrap();
        }
        let image = b.image();
        let t = image.topic("__consumer_offsets").unwrap();
        assert_eq!(t.partitions.len(), 3);
        let refused = create_internal_topic(&b, "__transaction_state", 0, 1, BTreeMap::new())
            .await
            .unwrap_err();
        assert!(!refused.is_empty());
        assert!(b.image().topic("__transaction_state").is_none());
    }

    /// Every count of a CreateTopics at its extremes gets Kafka's error code, and nothing is
    /// allocated from it first: 2^31-1 partitions once aborted the process.
    #[tokio::test]
    async fn create_topics_counts_at_extremes() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[]);
        let policy = ResponseError::PolicyViolation.code();
        let partitions = ResponseError::InvalidPartitions.code();
        let rf = ResponseError::InvalidReplicationFactor.code();
        for validate_only in [true, false] {
            let cases = [
                (i32::MAX, 1, policy),
                (b.max_partitions as i32 + 1, 1, policy),
                (0, 1, partitions),
                (-2, 1, partitions),
                (i32::MIN, 1, partitions),
                (1, 0, rf),
                (1, -2, rf),
                (1, i16::MIN, rf),
                (1, i16::MAX, rf),
                (i32::MAX, i16::MAX, rf),
            ];
            for (n, r, want) in cases {
                let got = create_topics(&b, vec![topic("t", n, r)], validate_only).await;
                assert_eq!(code(&got[0]), want, "{n} partitions, rf {r}");
            }
        }
        // Two topics that each fit but together exceed the limit: the second is refused.
        let half = (b.max_partitions / 2 + 1) as i32;
        let got = create_topics(&b, vec![topic("a", half, 1), topic("b", half, 1)], true).await;
        assert_eq!((code(&got[0]), code(&got[1])), (0, policy));
        assert_eq!(b.image().partition_count(), 0, "nothing was created");

        let mut assigned = topic("x", -1, -1);
        assigned.assignments.insert(0, vec![0]);
        assigned.assignments.insert(1, vec![0, 0]);
        let got = create_topics(&b, vec![assigned], false).await;
        assert_eq!(
            code(&got[0]),
            ResponseError::InvalidReplicaAssignment.code()
        );
        let mut gap = topic("y", -1, -1);
        gap.assignments.insert(i32::MAX, vec![0]);
        let got = create_topics(&b, vec![gap], false).await;
        assert_eq!(
            code(&got[0]),
            ResponseError::InvalidReplicaAssignment.code()
        );
    }

    #[tokio::test]
    async fn delete_topics_named_twice_deletes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[]);
        assert!(create_topics(&b, vec![topic("t", 1, 1)], false).await[0].is_ok());
        let id = b.image().topic("t").unwrap().id;
        let refs = vec![
            TopicRef::Name("t".into()),
            TopicRef::Id(id),
            TopicRef::Name("t".into()),
        ];
        let got = delete_topics(&b, refs).await;
        let invalid = ResponseError::InvalidRequest.code();
        assert!(got.iter().all(|r| code(r) == invalid));
        assert!(b.image().topic("t").is_some(), "nothing was deleted");
        let many: Vec<TopicRef> = (0..20_000).map(|_| TopicRef::Name("t".into())).collect();
        assert_eq!(delete_topics(&b, many).await.len(), 20_000);
        assert!(b.image().topic("t").is_some());
    }

    #[tokio::test]
    async fn create_partitions_counts_at_extremes() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[]);
        let made = create_topics(&b, vec![topic("t", 2, 1)], false).await;
        assert!(made[0].is_ok());
        let inc = |count, assignments| PartitionIncrease {
            topic: "t".into(),
            count,
            assignments,
        };
        let policy = ResponseError::PolicyViolation.code();
        let partitions = ResponseError::InvalidPartitions.code();
        let assignment = ResponseError::InvalidReplicaAssignment.code();
        let cases = [
            (inc(i32::MAX, None), policy),
            (inc(i32::MAX, Some(vec![vec![0]])), policy),
            (inc(0, None), partitions),
            (inc(-1, None), partitions),
            (inc(i32::MIN, None), partitions),
            (inc(2, None), partitions),
            (inc(4, Some(vec![vec![0]])), assignment),
            (inc(3, Some(vec![vec![i32::MAX]])), assignment),
            (inc(3, Some(vec![vec![]])), assignment),
        ];
        for (req, want) in cases {
            let count = req.count;
            let got = create_partitions(&b, vec![req], false).await;
            assert_eq!(code(&got[0]), want, "count {count}");
        }
        assert_eq!(b.image().partition_count(), 2);
    }

    /// The scenario: message.max.bytes=16 for every broker is refused and not stored.
    #[tokio::test]
    async fn broker_change_invalid_for_a_log_is_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[("log.retention.hours", "2")]);
        let made = create_topics(&b, vec![topic("t", 1, 1)], false).await;
        assert!(made[0].is_ok());
        let set = |k: &str, v: &str| {
            vec![(
                String::new(),
                ConfigChange::Incremental(vec![(k.to_string(), 0, Some(v.to_string()))]),
            )]
        };
        for (k, v, want) in [
            ("message.max.bytes", "16", ResponseError::InvalidConfig),
            ("message.max.bytes", "-1", ResponseError::InvalidConfig),
            (
                "message.max.bytes",
                "9223372036854775807",
                ResponseError::InvalidConfig,
            ),
            ("log.segment.bytes", "20", ResponseError::InvalidConfig),
            (
                "log.index.size.max.bytes",
                "4",
                ResponseError::InvalidConfig,
            ),
            ("log.roll.ms", "soon", ResponseError::InvalidConfig),
            // Given on the command line (its family), which wins.
            ("log.retention.ms", "1000", ResponseError::InvalidRequest),
            ("log.retention.hours", "1", ResponseError::InvalidRequest),
        ] {
            for validate_only in [true, false] {
                let got = alter_broker_configs(&b, set(k, v), validate_only).await;
                assert_eq!(code(&got[0]), want.code(), "{k}={v}");
            }
        }
        assert!(b.image().broker_configs("").is_empty(), "nothing stored");
        // The broker still takes changes and creates topics.
        let got = alter_broker_configs(&b, set("message.max.bytes", "2000"), false).await;
        assert!(got[0].is_ok());
        assert!(create_topics(&b, vec![topic("u", 1, 1)], false).await[0].is_ok());
    }

    #[tokio::test]
    async fn topic_change_invalid_for_a_log_is_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let b = test_broker(tmp.path(), &[]);
        let mut t = topic("t", 1, 1);
        t.configs.insert("max.message.bytes".into(), "16".into());
        let got = create_topics(&b, vec![t], false).await;
        assert_eq!(code(&got[0]), ResponseError::InvalidConfig.code());
        assert!(create_topics(&b, vec![topic("t", 1, 1)], false).await[0].is_ok());
        for (k, v) in [
            ("max.message.bytes", "16"),
            ("segment.bytes", "14"),
            ("segment.index.bytes", "4"),
            ("segment.ms", "0"),
            ("retention.ms", "-2"),
            ("min.cleanable.dirty.ratio", "NaN"),
        ] {
            let change = ConfigChange::Incremental(vec![(k.into(), 0, Some(v.into()))]);
            let got = alter_topic_configs(&b, vec![("t".into(), change)], false).await;
            assert_eq!(
                code(&got[0]),
                ResponseError::InvalidConfig.code(),
                "{k}={v}"
            );
        }
        assert!(b.image().topic_configs("t").is_empty());
    }
}
