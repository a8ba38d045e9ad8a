//! Metadata changes, decided by this node as the (single-member) controller quorum: topic
//! creation and deletion. Each change is validated against the current image and committed as
//! metadata records.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use proto_kafka::ResponseError;
use thiserror::Error;
use uuid::Uuid;

use crate::broker::Broker;
use crate::metadata::metadata_log::{MetadataLogError, METADATA_TOPIC};
use crate::metadata::records::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::metadata::{MetadataImage, MetadataRecord, TopicImage};
use crate::partition::PartitionError;
use crate::topic_config::TopicConfig;

/// Explicit bound on partitions one broker hosts: each holds open files and memory.
pub const MAX_PARTITIONS_PER_BROKER: usize = 50_000;
const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error(transparent)]
    MetadataLog(#[from] MetadataLogError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// A refusal with Kafka's error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: i16,
    pub message: String,
}

impl ApiError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code: e.code(),
            message: message.into(),
        }
    }
}

impl From<ControllerError> for ApiError {
    fn from(e: ControllerError) -> Self {
        tracing::error!(error = %e, "metadata change failed");
        ApiError::new(ResponseError::KafkaStorageError, e.to_string())
    }
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("topic name {name:?} is illegal: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("it is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("it may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    if name == METADATA_TOPIC {
        return bad("it is reserved for the metadata log");
    }
    Ok(())
}

pub struct TopicRequest {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

fn plan_topic(
    broker: &Broker,
    image: &MetadataImage,
    req: &TopicRequest,
    planned_partitions: usize,
) -> Result<(Vec<MetadataRecord>, CreatedTopic), ApiError> {
    validate_topic_name(&req.name)?;
    if image.topic(&req.name).is_some() {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", req.name),
        ));
    }
    // '.' and '_' collide in metric names; Kafka refuses such pairs.
    let canonical = req.name.replace('.', "_");
    if let Some(other) = image
        .topics
        .keys()
        .find(|t| t.replace('.', "_") == canonical)
    {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!(
                "Topic '{}' collides with existing topic '{other}'",
                req.name
            ),
        ));
    }
    let brokers: Vec<i32> = vec![broker.node_id()];
    let (num_partitions, replication_factor, assignment): (i32, i16, Vec<Vec<i32>>) = if req
        .assignments
        .is_empty()
    {
        let n = if req.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            req.num_partitions
        };
        if n < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        // Before the plan is allocated from it (the limit with what exists is checked below).
        if n as usize > broker.max_partitions {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "creating {n} partitions would exceed this broker's limit of {} partitions",
                    broker.max_partitions
                ),
            ));
        }
        let rf = if req.replication_factor == -1 {
            broker.config.default_replication_factor
        } else {
            req.replication_factor
        };
        if rf < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0.",
            ));
        }
        if rf as usize > brokers.len() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.", brokers.len()),
            ));
        }
        (n, rf, (0..n).map(|_| brokers.clone()).collect())
    } else {
        if req.num_partitions != -1 || req.replication_factor != -1 {
            return Err(ApiError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
        }
        let n = req.assignments.len() as i32;
        let mut out = Vec::new();
        for (i, (p, replicas)) in req.assignments.iter().enumerate() {
            if *p != i as i32 {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions should be 0-based and consecutive.",
                ));
            }
            let unique: HashSet<_> = replicas.iter().collect();
            if replicas.is_empty()
                || unique.len() != replicas.len()
                || replicas.iter().any(|b| !brokers.contains(b))
            {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Invalid replica assignment for partition {p}: {replicas:?}"),
                ));
            }
            out.push(replicas.clone());
        }
        let rf = out[0].len() as i16;
        (n, rf, out)
    };
    // Checked before anything is committed: a topic whose logs cannot be opened must not be
    // half-created.
    if planned_partitions + image.partition_count() + num_partitions as usize
        > broker.max_partitions
    {
        return Err(ApiError::new(
            ResponseError::PolicyViolation,
            format!(
                "creating {num_partitions} partitions would exceed this broker's limit of {} partitions (at most {MAX_PARTITIONS_PER_BROKER}, and {} open file(s) each within the open-file limit)",
                broker.max_partitions,
                crate::memory::FILES_PER_PARTITION
            ),
        ));
    }
    TopicConfig::effective(&broker.raw_config(), &req.configs)
        .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;

    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        name: req.name.clone(),
        topic_id,
    }];
    for (name, value) in &req.configs {
        records.push(MetadataRecord::Config {
            resource_type: RESOURCE_TOPIC,
            resource_name: req.name.clone(),
            name: name.clone(),
            value: Some(value.clone()),
        });
    }
    for (p, replicas) in assignment.into_iter().enumerate() {
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: p as i32,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        });
    }
    Ok((
        records,
        CreatedTopic {
            topic_id,
            num_partitions,
            replication_factor,
        },
    ))
}

/// Commits the records planned for the valid items of a request in one batch; if that fails,
/// every item that was valid fails with the storage error (nothing was applied).
fn commit_all_or_none<T>(
    broker: &Arc<Broker>,
    log: &mut Option<crate::metadata::metadata_log::MetadataLog>,
    records: &[MetadataRecord],
    results: Vec<Result<T, ApiError>>,
    validate_only: bool,
) -> Vec<Result<T, ApiError>> {
    if validate_only || records.is_empty() {
        return results;
    }
    match broker.commit_locked(log, records) {
        Ok(_) => results,
        Err(e) => {
            let e = ApiError::from(e);
            results.into_iter().map(|r| r.and(Err(e.clone()))).collect()
        }
    }
}

/// Creates topics (all checks first, then one commit for the valid ones). Results are in
/// request order.
pub async fn create_topics(
    broker: &Arc<Broker>,
    requests: Vec<TopicRequest>,
    validate_only: bool,
) -> Vec<Result<CreatedTopic, ApiError>> {
    let mut log = broker.metadata_log.lock().await;
    let image = broker.image();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut planned = 0usize;
    for req in &requests {
        match plan_topic(broker, &image, req, planned) {
            Ok((r, created)) => {
                planned += created.num_partitions as usize;
                records.extend(r);
                results.push(Ok(created));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    commit_all_or_none(broker, &mut log, &records, results, validate_only)
}

/// Creates a topic with the broker defaults if it does not exist yet (Metadata auto-creation).
/// Returns the topic as it now is.
pub async fn auto_create_topic(
    broker: &Arc<Broker>,
    name: &str,
) -> Result<Arc<TopicImage>, ApiError> {
    let req = TopicRequest {
        name: name.to_string(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: BTreeMap::new(),
        configs: BTreeMap::new(),
    };
    let result = create_topics(broker, vec![req], false).await.pop();
    match result {
        Some(Ok(_)) => {}
        // Lost a race with another creator: fine, the topic exists.
        Some(Err(e)) if e.code == ResponseError::TopicAlreadyExists.code() => {}
        Some(Err(e)) => return Err(e),
        None => {
            return Err(ApiError::new(
                ResponseError::UnknownServerError,
                "no result",
            ))
        }
    }
    broker.image().topic(name).cloned().ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            "topic vanished after creation",
        )
    })
}

/// Producer ids come in blocks recorded in the metadata log before use.
const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

pub async fn allocate_producer_id(broker: &Arc<Broker>) -> Result<i64, ApiError> {
    let take = |b: &Broker| -> Option<i64> {
        let mut ids = match b.producer_ids.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        (ids.0 < ids.1).then(|| {
            ids.0 += 1;
            ids.0 - 1
        })
    };
    if let Some(id) = take(broker) {
        return Ok(id);
    }
    let mut log = broker.metadata_log.lock().await;
    if let Some(id) = take(broker) {
        return Ok(id);
    }
    let start = broker.image().next_producer_id;
    let end = start + PRODUCER_ID_BLOCK_SIZE;
    broker.commit_locked(
        &mut log,
        &[MetadataRecord::ProducerIds {
            next_producer_id: end,
        }],
    )?;
    let mut ids = match broker.producer_ids.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *ids = (start + 1, end);
    Ok(start)
}

/// One topic of a CreatePartitions request.
pub struct PartitionIncrease {
    pub topic: String,
    /// The partition count wanted, not the number added.
    pub count: i32,
    /// The replicas of each new partition, when the client chose them.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// Adds partitions to existing topics (CreatePartitions).
pub async fn create_partitions(
    broker: &Arc<Broker>,
    requests: Vec<PartitionIncrease>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    let mut log = broker.metadata_log.lock().await;
    let image = broker.image();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut added = 0usize;
    let mut seen = HashSet::new();
    for PartitionIncrease {
        topic: name,
        count,
        assignments,
    } in requests
    {
        let result = (|| {
            if !seen.insert(name.clone()) {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Duplicate topic {name} in request"),
                ));
            }
            let topic = image.topic(&name).ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )
            })?;
            let current = topic.partitions.len() as i32;
            if count < current {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
                ));
            }
            if count == current {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!("Topic already has {current} partitions."),
                ));
            }
            let new = (count - current) as usize;
            if image.partition_count() + added + new > broker.max_partitions {
                return Err(ApiError::new(
                    ResponseError::PolicyViolation,
                    format!(
                        "adding {new} partitions would exceed this broker's limit of {} partitions",
                        broker.max_partitions
                    ),
                ));
            }
            let replicas_per_partition = topic
                .partitions
                .values()
                .next()
                .map(|p| p.replicas.len())
                .unwrap_or(1);
            let plan: Vec<Vec<i32>> = match assignments {
                Some(a) => {
                    if a.len() != new {
                        return Err(ApiError::new(
                            ResponseError::InvalidReplicaAssignment,
                            format!("Increasing the number of partitions by {new} but {} assignments provided.", a.len()),
                        ));
                    }
                    for replicas in &a {
                        let unique: HashSet<_> = replicas.iter().collect();
                        if replicas.len() != replicas_per_partition
                            || unique.len() != replicas.len()
                            || replicas.iter().any(|b| *b != broker.node_id())
                        {
                            return Err(ApiError::new(
                                ResponseError::InvalidReplicaAssignment,
                                format!("Invalid replica assignment {replicas:?}"),
                            ));
                        }
                    }
                    a
                }
                None => (0..new).map(|_| vec![broker.node_id()]).collect(),
            };
            for (i, replicas) in plan.into_iter().enumerate() {
                records.push(MetadataRecord::Partition {
                    topic_id: topic.id,
                    partition: current + i as i32,
                    leader: replicas[0],
                    isr: replicas.clone(),
                    replicas,
                    leader_epoch: 0,
                    partition_epoch: 0,
                });
            }
            added += new;
            Ok(())
        })();
        results.push(result);
    }
    commit_all_or_none(broker, &mut log, &records, results, validate_only)
}

/// How a topic's configuration changes: AlterConfigs replaces the whole set of overrides,
/// IncrementalAlterConfigs edits them one by one.
pub enum ConfigChange {
    Replace(BTreeMap<String, String>),
    /// (name, operation, value): 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// The Config records that take a resource's settings from `current` to `next`.
fn config_records(
    resource_type: i8,
    resource_name: &str,
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
    records: &mut Vec<MetadataRecord>,
) {
    let record = |name: &str, value: Option<&String>| MetadataRecord::Config {
        resource_type,
        resource_name: resource_name.to_string(),
        name: name.to_string(),
        value: value.cloned(),
    };
    for (k, v) in next {
        if current.get(k) != Some(v) {
            records.push(record(k, Some(v)));
        }
    }
    for k in current.keys().filter(|k| !next.contains_key(*k)) {
        records.push(record(k, None));
    }
}

/// The settings after `change`. `list_value` gives the current value of a list setting (for
/// APPEND and SUBTRACT), None for a setting that is not a list.
fn apply_change(
    current: &BTreeMap<String, String>,
    change: &ConfigChange,
    list_value: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidConfig, m);
    match change {
        ConfigChange::Replace(all) => Ok(all.clone()),
        ConfigChange::Incremental(ops) => {
            let mut next = current.clone();
            let mut touched = HashSet::new();
            for (name, op, value) in ops {
                if !touched.insert(name.clone()) {
                    return Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("Error due to duplicate config keys: {name}"),
                    ));
                }
                let list_default = list_value(name);
                match op {
                    0 => {
                        let v = value.clone().ok_or_else(|| {
                            invalid(format!("Null value not supported for: {name}"))
                        })?;
                        next.insert(name.clone(), v);
                    }
                    1 => {
                        next.remove(name);
                    }
                    2 | 3 => {
                        let Some(list_default) = list_default else {
                            return Err(invalid(format!("Config value append/subtract is not allowed for config key: {name}")));
                        };
                        let base = next.get(name).cloned().unwrap_or(list_default);
                        let mut items: Vec<String> = base
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        for item in value
                            .as_deref()
                            .unwrap_or("")
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                        {
                            if *op == 2 {
                                if !items.iter().any(|i| i == item) {
                                    items.push(item.to_string());
                                }
                            } else {
                                items.retain(|i| i != item);
                            }
                        }
                        next.insert(name.clone(), items.join(","));
                    }
                    other => {
                        return Err(ApiError::new(
                            ResponseError::InvalidRequest,
                            format!("Unknown config operation {other}"),
                        ))
                    }
                }
            }
            Ok(next)
        }
    }
}

/// Changes topic configurations; the new values reach the partitions as the image is applied.
pub async fn alter_topic_configs(
    broker: &Arc<Broker>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    let mut log = broker.metadata_log.lock().await;
    let image = broker.image();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let raw = broker.raw_config_for(&image);
    let defaults = match TopicConfig::broker_defaults(&raw) {
        Ok(d) => d,
        Err(e) => {
            return changes
                .iter()
                .map(|_| Err(ApiError::new(ResponseError::InvalidConfig, e.to_string())))
                .collect()
        }
    };
    let list_value = |name: &str| -> Option<String> {
        crate::config::TOPIC_CONFIGS
            .iter()
            .any(|(t, _, ty)| *t == name && *ty == crate::config::ConfigType::List)
            .then(|| defaults.cleanup_policy.clone())
    };
    for (name, change) in &changes {
        let result = (|| {
            if image.topic(name).is_none() {
                return Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                ));
            }
            let current = image.topic_configs(name);
            let next = apply_change(&current, change, &list_value)?;
            TopicConfig::effective(&raw, &next)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
            config_records(RESOURCE_TOPIC, name, &current, &next, &mut records);
            Ok(())
        })();
        results.push(result);
    }
    commit_all_or_none(broker, &mut log, &records, results, validate_only)
}

/// Changes dynamic broker settings (AlterConfigs on a BROKER resource): `""` for the
/// cluster-wide defaults, or this node's id. Only the topic defaults may change (see
/// [`crate::config::is_dynamic_broker_config`]); the values must leave every topic default
/// valid. They reach the partitions as the image is applied.
pub async fn alter_broker_configs(
    broker: &Arc<Broker>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), ApiError>> {
    let mut log = broker.metadata_log.lock().await;
    let image = broker.image();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let node = broker.node_id().to_string();
    for (resource_name, change) in &changes {
        let result = (|| {
            if !resource_name.is_empty() && *resource_name != node {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unexpected broker id, expected {node} or empty but received {resource_name}"),
                ));
            }
            let current = image.broker_configs(resource_name);
            let raw = broker.raw_config_for(&image);
            let list_value = |name: &str| -> Option<String> {
                crate::config::BROKER_CONFIGS
                    .iter()
                    .any(|d| d.name == name && d.ty == crate::config::ConfigType::List)
                    .then(|| raw.get(name).unwrap_or_default().to_string())
            };
            let next = apply_change(&current, change, &list_value)?;
            let fixed: Vec<&String> = next
                .keys()
                .filter(|k| current.get(*k) != next.get(*k))
                .filter(|k| !crate::config::is_dynamic_broker_config(k))
                .collect();
            if !fixed.is_empty() {
                let names: Vec<&str> = fixed.iter().map(|k| k.as_str()).collect();
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Cannot update these configs dynamically: {} (only topic defaults such as log.retention.ms are dynamic; set the others in the config file, environment or flags and restart)",
                        names.join(", ")
                    ),
                ));
            }
            let (cluster, this) = if resource_name.is_empty() {
                (next.clone(), image.broker_configs(&node))
            } else {
                (image.broker_configs(""), next.clone())
            };
            let candidate = broker.config.raw.with_dynamic(&cluster, &this);
            TopicConfig::broker_defaults(&candidate)
                .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
            config_records(
                RESOURCE_BROKER,
                resource_name,
                &current,
                &next,
                &mut records,
            );
            Ok(())
        })();
        results.push(result);
    }
    commit_all_or_none(broker, &mut log, &records, results, validate_only)
}

pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    topics: Vec<TopicRef>,
) -> Vec<Result<(String, Uuid), ApiError>> {
    let mut log = broker.metadata_log.lock().await;
    let image = broker.image();
    let mut results = Vec::new();
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    for t in topics {
        let found = match &t {
            TopicRef::Name(n) => image.topic(n).cloned().ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )
            }),
            TopicRef::Id(id) => image.topic_by_id(id).cloned().ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicId,
                    "This server does not host this topic ID.",
                )
            }),
        };
        let result = found.and_then(|topic| {
            if topic.name == crate::group::OFFSETS_TOPIC {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Topic {} is internal and cannot be deleted", topic.name),
                ));
            }
            if !broker.config.delete_topic_enable {
                return Err(ApiError::new(
                    ResponseError::TopicDeletionDisabled,
                    "Topic deletion is disabled.",
                ));
            }
            if !seen.insert(topic.id) {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "Duplicate topic in request.",
                ));
            }
            records.push(MetadataRecord::RemoveTopic { topic_id: topic.id });
            Ok((topic.name.clone(), topic.id))
        });
        results.push(result);
    }
    commit_all_or_none(broker, &mut log, &records, results, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("test").is_ok());
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "bad/name",
            "sp ace",
            "ünï",
            "__cluster_metadata",
        ] {
            let e = validate_topic_name(bad).unwrap_err();
            assert_eq!(e.code, ResponseError::InvalidTopicException.code(), "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
