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
    raw: &crate::config::RawConfig,
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
    // Only counts are worked out first: nothing is allocated from a client's number until it
    // has passed the partition limit below (i32::MAX partitions once aborted the process).
    let (num_partitions, replication_factor) = if req.assignments.is_empty() {
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
        (n, rf)
    } else {
        if req.num_partitions != -1 || req.replication_factor != -1 {
            return Err(ApiError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
        }
        let n = i32::try_from(req.assignments.len()).map_err(|_| {
            ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "Too many partitions in the replica assignment.",
            )
        })?;
        let rf = req.assignments.values().next().map_or(0, Vec::len);
        let rf = i16::try_from(rf).map_err(|_| {
            ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "Too many replicas in the replica assignment.",
            )
        })?;
        (n, rf)
    };
    // Checked before anything is built or committed: a topic whose logs cannot be opened must
    // not be half-created, and the partition list must not be allocated from an unchecked count.
    let wanted = planned_partitions
        .saturating_add(image.partition_count())
        .saturating_add(num_partitions as usize);
    if wanted > broker.max_partitions {
        return Err(ApiError::new(
            ResponseError::PolicyViolation,
            format!(
                "creating {num_partitions} partitions would exceed this broker's limit of {} partitions (at most {MAX_PARTITIONS_PER_BROKER}, and {} open file(s) each within the open-file limit)",
                broker.max_partitions,
                crate::memory::FILES_PER_PARTITION
            ),
        ));
    }
    let assignment: Vec<Vec<i32>> = if req.assignments.is_empty() {
        (0..num_partitions).map(|_| brokers.clone()).collect()
    } else {
        let mut out = Vec::with_capacity(req.assignments.len());
        for (i, (p, replicas)) in req.assignments.iter().enumerate() {
            if *p != i as i32 {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions should be 0-based and consecutive.",
                ));
            }
            let unique: HashSet<_> = replicas.iter().collect();
            if replicas.is_empty()
                || replicas.len() != replication_factor as usize
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
        out
    };
    TopicConfig::effective(raw, &req.configs)
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
    let raw = broker.raw_config_for(&image);
    for req in &requests {
        match plan_topic(broker, &image, &raw, req, planned) {
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
                        let given = value
                            .as_deref()
                            .unwrap_or("")
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty());
                        // Sets, so a value of a million items costs a million look-ups, not
                        // their square (with the metadata lock held).
                        if *op == 2 {
                            let mut present: HashSet<String> = items.iter().cloned().collect();
                            for item in given {
                                if present.insert(item.to_string()) {
                                    items.push(item.to_string());
                                }
                            }
                        } else {
                            let gone: HashSet<&str> = given.collect();
                            items.retain(|i| !gone.contains(i.as_str()));
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
            let pinned: Vec<&str> = next
                .keys()
                .filter(|k| current.get(*k) != next.get(*k))
                .filter_map(|k| broker.config.raw.pinned_by(k))
                .collect();
            if !pinned.is_empty() {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "Cannot update these configs dynamically: {} (given on this broker's command line, which wins over dynamic values)",
                        pinned.join(", ")
                    ),
                ));
            }
            let (cluster, this) = if resource_name.is_empty() {
                (next.clone(), image.broker_configs(&node))
            } else {
                (image.broker_configs(""), next.clone())
            };
            validate_broker_change(
                broker,
                &image,
                &raw,
                &current,
                &next,
                resource_name.is_empty(),
                &cluster,
                &this,
            )?;
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

/// Checks a change of dynamic broker settings completely, as it will be applied: each value
/// it sets must be one the broker takes (not left out as invalid), the whole broker
/// configuration must still parse, and no topic whose configuration is valid now may become
/// invalid under the new defaults. Nothing is stored unless this passes.
#[allow(clippy::too_many_arguments)]
fn validate_broker_change(
    broker: &Broker,
    image: &MetadataImage,
    raw_now: &crate::config::RawConfig,
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
    cluster_wide: bool,
    cluster: &BTreeMap<String, String>,
    this: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidConfig, m);
    let (candidate, ignored) = broker.config.raw.with_dynamic_checked(cluster, this);
    if let Some(i) = ignored
        .iter()
        .find(|i| i.per_broker != cluster_wide && current.get(&i.name) != next.get(&i.name))
    {
        // The reason names the setting and the value (the other reasons were refused above).
        return Err(invalid(i.reason.clone()));
    }
    crate::config::BrokerConfig::from_raw(candidate.clone()).map_err(|e| invalid(e.to_string()))?;
    for topic in image.topics.values() {
        let overrides = image.topic_configs(&topic.name);
        if TopicConfig::effective(raw_now, &overrides).is_err() {
            continue;
        }
        if let Err(e) = TopicConfig::effective(&candidate, &overrides) {
            return Err(invalid(format!(
                "the change would make the configuration of topic {} invalid: {e}",
                topic.name
            )));
        }
    }
    Ok(())
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
    // A topic named twice (by name or id) is refused for every copy and not deleted, as Kafka
    // does: before, the first copy deleted it.
    let mut named: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for t in &topics {
        let id = match t {
            TopicRef::Name(n) => image.topic(n).map(|t| t.id),
            TopicRef::Id(id) => Some(*id),
        };
        if let Some(id) = id {
            *named.entry(id).or_default() += 1;
        }
    }
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
            if named.get(&topic.id).copied().unwrap_or(0) > 1 {
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

#[cfg(test)]
mod limit_tests {
    use std::path::Path;

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
            crate::group_ports::coordinator,
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

    /// APPEND and SUBTRACT of a list value with 200,000 items finish in moments (they took
    /// the square of that in comparisons), keep the order and drop repeats.
    #[test]
    fn list_append_subtract_of_a_huge_value() {
        let current = BTreeMap::new();
        let huge: Vec<String> = (0..200_000).map(|i| format!("p{i}")).collect();
        let list = |_: &str| Some("delete".to_string());
        let started = std::time::Instant::now();
        let add = ConfigChange::Incremental(vec![(
            "cleanup.policy".into(),
            2,
            Some(format!("{},p0,delete", huge.join(","))),
        )]);
        let next = apply_change(&current, &add, &list).unwrap();
        let v = &next["cleanup.policy"];
        assert!(v.starts_with("delete,p0,p1,") && v.ends_with(",p199999"));
        let sub =
            ConfigChange::Incremental(vec![("cleanup.policy".into(), 3, Some(huge.join(",")))]);
        let next = apply_change(&next, &sub, &list).unwrap();
        assert_eq!(next["cleanup.policy"], "delete");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
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
