//! Topic changes: CreateTopics (and Metadata's auto-creation), CreatePartitions,
//! DeleteTopics. Each item is checked on its own; the valid ones commit as one batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use proto_kafka::ResponseError;
use uuid::Uuid;

use super::placement::place_replicas;
use super::{ApiError, Controller, MAX_PARTITIONS_PER_BROKER};
use crate::image::{MetadataImage, TopicImage};
use crate::metadata_log::METADATA_TOPIC;
use crate::records::{MetadataRecord, RESOURCE_TOPIC};

pub const MAX_TOPIC_NAME_LEN: usize = 249;

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

#[derive(Debug)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// One topic of a CreatePartitions request.
pub struct PartitionIncrease {
    pub topic: String,
    /// The partition count wanted, not the number added.
    pub count: i32,
    /// The replicas of each new partition, when the client chose them.
    pub assignments: Option<Vec<Vec<i32>>>,
}

pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

fn too_few_brokers(rf: impl std::fmt::Display, brokers: usize) -> ApiError {
    ApiError::new(
        ResponseError::InvalidReplicationFactor,
        format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered."),
    )
}

fn partition_records(topic_id: Uuid, first: i32, sets: Vec<Vec<i32>>) -> Vec<MetadataRecord> {
    sets.into_iter()
        .enumerate()
        .map(|(i, replicas)| {
            assert!(
                !replicas.is_empty(),
                "every replica set was checked non-empty"
            );
            MetadataRecord::Partition {
                topic_id,
                partition: first + i as i32,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            }
        })
        .collect()
}

/// Whether `replicas` is a valid replica set of `rf` distinct registered brokers.
fn valid_set(replicas: &[i32], rf: usize, brokers: &[i32]) -> bool {
    let unique: HashSet<_> = replicas.iter().collect();
    !replicas.is_empty()
        && replicas.len() == rf
        && unique.len() == replicas.len()
        && replicas.iter().all(|b| brokers.contains(b))
}

impl Controller {
    fn check_new_name(&self, image: &MetadataImage, name: &str) -> Result<(), ApiError> {
        validate_topic_name(name)?;
        if image.topic(name).is_some() {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        // '.' and '_' collide in metric names; Kafka refuses such pairs.
        let canonical = name.replace('.', "_");
        if let Some(other) = image
            .topics
            .keys()
            .find(|t| t.replace('.', "_") == canonical)
        {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic '{other}'"),
            ));
        }
        Ok(())
    }

    /// The partition count and replication factor a request asks for, checked, before
    /// anything is allocated from them (i32::MAX partitions once aborted the process).
    fn topic_counts(&self, req: &TopicRequest, brokers: usize) -> Result<(i32, i16), ApiError> {
        if !req.assignments.is_empty() {
            if req.num_partitions != -1 || req.replication_factor != -1 {
                return Err(ApiError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
            }
            let invalid = |m: &str| ApiError::new(ResponseError::InvalidReplicaAssignment, m);
            let n = i32::try_from(req.assignments.len())
                .map_err(|_| invalid("Too many partitions in the replica assignment."))?;
            let rf = req.assignments.values().next().map_or(0, Vec::len);
            let rf = i16::try_from(rf)
                .map_err(|_| invalid("Too many replicas in the replica assignment."))?;
            return Ok((n, rf));
        }
        let n = match req.num_partitions {
            -1 => self.config.num_partitions,
            n => n,
        };
        if n < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        let rf = match req.replication_factor {
            -1 => self.config.default_replication_factor,
            rf => rf,
        };
        if rf < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0.",
            ));
        }
        if rf as usize > brokers {
            return Err(too_few_brokers(rf, brokers));
        }
        Ok((n, rf))
    }

    fn check_capacity(
        &self,
        image: &MetadataImage,
        planned: usize,
        new: usize,
    ) -> Result<(), ApiError> {
        let wanted = planned
            .saturating_add(image.partition_count())
            .saturating_add(new);
        if wanted > self.config.max_partitions {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "creating {new} partitions would exceed this broker's limit of {} partitions (at most {MAX_PARTITIONS_PER_BROKER}, and {} open file(s) each within the open-file limit)",
                    self.config.max_partitions, self.config.files_per_partition
                ),
            ));
        }
        Ok(())
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        req: &TopicRequest,
        planned_partitions: usize,
    ) -> Result<(Vec<MetadataRecord>, CreatedTopic), ApiError> {
        self.check_new_name(image, &req.name)?;
        let brokers = self.placement_brokers(image);
        let (num_partitions, replication_factor) = self.topic_counts(req, brokers.len())?;
        // A cluster lists every live broker as a replica of every partition (the data is in
        // shared storage, so there is nothing to copy): the factor asked is only checked.
        let placed_factor = if self.live_brokers().is_some() {
            brokers.len()
        } else {
            replication_factor as usize
        };
        // Checked before anything is built or committed: a topic whose logs cannot be opened
        // must not be half-created, nor a partition list allocated from an unchecked count.
        self.check_capacity(image, planned_partitions, num_partitions as usize)?;
        let sets = if req.assignments.is_empty() {
            place_replicas(&brokers, 0, num_partitions as usize, placed_factor)
        } else {
            let mut out = Vec::with_capacity(req.assignments.len());
            for (i, (p, replicas)) in req.assignments.iter().enumerate() {
                if *p != i as i32 {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        "Partitions should be 0-based and consecutive.",
                    ));
                }
                if !valid_set(replicas, replication_factor as usize, &brokers) {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Invalid replica assignment for partition {p}: {replicas:?}"),
                    ));
                }
                out.push(replicas.clone());
            }
            out
        };
        self.validator
            .validate_topic(image, &req.configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e))?;

        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: req.name.clone(),
            topic_id,
        }];
        records.extend(
            req.configs
                .iter()
                .map(|(name, value)| MetadataRecord::Config {
                    resource_type: RESOURCE_TOPIC,
                    resource_name: req.name.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                }),
        );
        records.extend(partition_records(topic_id, 0, sets));
        let created = CreatedTopic {
            topic_id,
            num_partitions,
            replication_factor,
        };
        Ok((records, created))
    }

    /// Creates topics (all checks first, then one commit for the valid ones). Results are in
    /// request order.
    pub async fn create_topics(
        &self,
        requests: Vec<TopicRequest>,
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(requests.len());
        let mut planned = 0usize;
        for req in &requests {
            match self.plan_topic(&image, req, planned) {
                Ok((r, created)) => {
                    planned += created.num_partitions as usize;
                    records.extend(r);
                    results.push(Ok(created));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.commit_all_or_none(guard, records, results, validate_only)
            .await
    }

    /// Creates a topic with the broker defaults if it does not exist yet (Metadata
    /// auto-creation). Returns the topic as it now is.
    pub async fn auto_create_topic(&self, name: &str) -> Result<Arc<TopicImage>, ApiError> {
        let req = TopicRequest {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        };
        match self.create_topics(vec![req], false).await.pop() {
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
        self.image().topic(name).cloned().ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                "topic vanished after creation",
            )
        })
    }

    fn plan_increase(
        &self,
        image: &MetadataImage,
        inc: PartitionIncrease,
        added: usize,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let PartitionIncrease {
            topic: name,
            count,
            assignments,
        } = inc;
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
        self.check_increase_capacity(image, added, new)?;
        let rf = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len());
        let brokers = self.placement_brokers(image);
        let rf = if self.live_brokers().is_some() {
            brokers.len()
        } else {
            rf
        };
        let sets = match assignments {
            Some(a) => {
                if a.len() != new {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Increasing the number of partitions by {new} but {} assignments provided.", a.len()),
                    ));
                }
                if let Some(bad) = a.iter().find(|r| !valid_set(r, rf, &brokers)) {
                    return Err(ApiError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Invalid replica assignment {bad:?}"),
                    ));
                }
                a
            }
            None if rf == 0 || rf > brokers.len() => {
                return Err(too_few_brokers(rf, brokers.len()))
            }
            None => place_replicas(&brokers, current, new, rf),
        };
        Ok(partition_records(topic.id, current, sets))
    }

    fn check_increase_capacity(
        &self,
        image: &MetadataImage,
        added: usize,
        new: usize,
    ) -> Result<(), ApiError> {
        let wanted = image
            .partition_count()
            .saturating_add(added)
            .saturating_add(new);
        if wanted > self.config.max_partitions {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "adding {new} partitions would exceed this broker's limit of {} partitions",
                    self.config.max_partitions
                ),
            ));
        }
        Ok(())
    }

    /// Adds partitions to existing topics (CreatePartitions).
    pub async fn create_partitions(
        &self,
        requests: Vec<PartitionIncrease>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(requests.len());
        let mut added = 0usize;
        let mut seen = HashSet::new();
        for inc in requests {
            if !seen.insert(inc.topic.clone()) {
                results.push(Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Duplicate topic {} in request", inc.topic),
                )));
                continue;
            }
            let result = self.plan_increase(&image, inc, added).map(|r| {
                added += r.len();
                records.extend(r);
            });
            results.push(result);
        }
        self.commit_all_or_none(guard, records, results, validate_only)
            .await
    }

    pub async fn delete_topics(
        &self,
        topics: Vec<TopicRef>,
    ) -> Vec<Result<(String, Uuid), ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut results = Vec::with_capacity(topics.len());
        let mut records = Vec::new();
        // A topic named twice (by name or id) is refused for every copy and not deleted, as
        // Kafka does.
        let mut named: HashMap<Uuid, usize> = HashMap::new();
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
                self.check_deletable(&topic, named.get(&topic.id).copied().unwrap_or(0))?;
                records.push(MetadataRecord::RemoveTopic { topic_id: topic.id });
                Ok((topic.name.clone(), topic.id))
            });
            results.push(result);
        }
        self.commit_all_or_none(guard, records, results, false)
            .await
    }

    fn check_deletable(&self, topic: &TopicImage, times_named: usize) -> Result<(), ApiError> {
        if self.config.internal_topics.contains(&topic.name) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Topic {} is internal and cannot be deleted", topic.name),
            ));
        }
        if !self.config.delete_topic_enable {
            return Err(ApiError::new(
                ResponseError::TopicDeletionDisabled,
                "Topic deletion is disabled.",
            ));
        }
        if times_named > 1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Duplicate topic in request.",
            ));
        }
        Ok(())
    }
}
