//! Admin APIs that change or inspect topics after creation: CreatePartitions, AlterConfigs,
//! IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs, DescribeTopicPartitions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use proto_kafka::messages::create_partitions_response::CreatePartitionsTopicResult;
use proto_kafka::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use proto_kafka::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use proto_kafka::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use proto_kafka::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;

use super::str_bytes;
use crate::acl::{self, ResourceType};
use crate::broker::Broker;
use crate::controller::{self, ApiError, ConfigChange};
use crate::metadata::records::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::request::RequestContext;

/// Bound on partitions described in one DescribeTopicPartitions response (Kafka's
/// max.request.partition.size.limit default).
const MAX_DESCRIBED_PARTITIONS: usize = 2000;

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let requests = req
        .topics
        .iter()
        .map(|t| {
            let assignments = t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            });
            controller::PartitionIncrease {
                topic: t.name.0.to_string(),
                count: t.count,
                assignments,
            }
        })
        .collect();
    let results = controller::create_partitions(broker, requests, req.validate_only).await;
    let results = req
        .topics
        .iter()
        .zip(results)
        .map(|(t, r)| {
            let base = CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_message(None);
            match r {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

type AlterOutcome = (i8, StrBytes, Option<Result<(), ApiError>>);
/// A resource type, its changes by resource name, and where each answer goes.
type ChangesOfType = (i8, Vec<(String, ConfigChange)>, Vec<usize>);

/// A resource named twice in one request is refused for every copy, as Kafka does: the
/// changes would otherwise be validated apart and then applied one over the other.
fn refuse_duplicates(resources: &mut [(i8, StrBytes, Result<ConfigChange, ApiError>)]) {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    for (ty, name, _) in resources.iter() {
        *counts.entry((*ty, &**name)).or_default() += 1;
    }
    let dup: HashSet<(i8, String)> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((t, n), _)| (t, n.to_string()))
        .collect();
    if dup.is_empty() {
        return;
    }
    for (ty, name, change) in resources.iter_mut() {
        if dup.contains(&(*ty, name.to_string())) {
            *change = Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Each resource must appear at most once.",
            ));
        }
    }
}

/// Kafka's checks of one resource's entries before anything else: each name once, and a value
/// for every entry that sets one.
fn check_entries<'a>(entries: impl Iterator<Item = (&'a str, bool)>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    let mut nulls = Vec::new();
    for (name, null_value) in entries {
        if !seen.insert(name) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Error due to duplicate config keys",
            ));
        }
        if null_value {
            nulls.push(name);
        }
    }
    if !nulls.is_empty() {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("Null value not supported for : {}", nulls.join(", ")),
        ));
    }
    Ok(())
}

async fn alter(
    broker: &Arc<Broker>,
    mut resources: Vec<(i8, StrBytes, Result<ConfigChange, ApiError>)>,
    validate_only: bool,
) -> Vec<(i8, StrBytes, Result<(), ApiError>)> {
    refuse_duplicates(&mut resources);
    let mut out: Vec<AlterOutcome> = Vec::new();
    // Topic and broker changes each commit all or none, topics first.
    let mut by_type: [ChangesOfType; 2] = [
        (RESOURCE_TOPIC, Vec::new(), Vec::new()),
        (RESOURCE_BROKER, Vec::new(), Vec::new()),
    ];
    for (ty, name, change) in resources {
        let change = match change {
            Ok(c) => c,
            Err(e) => {
                out.push((ty, name, Some(Err(e))));
                continue;
            }
        };
        match by_type.iter_mut().find(|(t, _, _)| *t == ty) {
            Some((_, changes, slots)) => {
                slots.push(out.len());
                changes.push((name.to_string(), change));
                out.push((ty, name, None));
            }
            None => out.push((
                ty,
                name,
                Some(Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("resource type {ty} cannot be altered"),
                ))),
            )),
        }
    }
    for (ty, changes, slots) in by_type {
        if changes.is_empty() {
            continue;
        }
        let results = if ty == RESOURCE_TOPIC {
            controller::alter_topic_configs(broker, changes, validate_only).await
        } else {
            controller::alter_broker_configs(broker, changes, validate_only).await
        };
        for (slot, r) in slots.into_iter().zip(results) {
            out[slot].2 = Some(r);
        }
    }
    out.into_iter()
        .map(|(t, n, r)| {
            (
                t,
                n,
                r.unwrap_or_else(|| {
                    Err(ApiError::new(
                        ResponseError::UnknownServerError,
                        "no result",
                    ))
                }),
            )
        })
        .collect()
}

pub async fn alter_configs(broker: &Arc<Broker>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources = req
        .resources
        .iter()
        .map(|r| {
            let change = check_entries(r.configs.iter().map(|c| (&*c.name, c.value.is_none())))
                .map(|()| {
                    let all: BTreeMap<String, String> = r
                        .configs
                        .iter()
                        .filter_map(|c| {
                            c.value
                                .as_ref()
                                .map(|v| (c.name.to_string(), v.to_string()))
                        })
                        .collect();
                    ConfigChange::Replace(all)
                });
            (r.resource_type, r.resource_name.clone(), change)
        })
        .collect();
    let responses = alter(broker, resources, req.validate_only)
        .await
        .into_iter()
        .map(|(ty, name, r)| {
            let base = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(ty)
                .with_resource_name(name)
                .with_error_message(None);
            match r {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter_configs(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources = req
        .resources
        .iter()
        .map(|r| {
            // DELETE (1) is the one operation that needs no value.
            let change = check_entries(
                r.configs
                    .iter()
                    .map(|c| (&*c.name, c.config_operation != 1 && c.value.is_none())),
            )
            .map(|()| {
                ConfigChange::Incremental(
                    r.configs
                        .iter()
                        .map(|c| {
                            (
                                c.name.to_string(),
                                c.config_operation,
                                c.value.as_ref().map(|v| v.to_string()),
                            )
                        })
                        .collect(),
                )
            });
            (r.resource_type, r.resource_name.clone(), change)
        })
        .collect();
    let responses = alter(broker, resources, req.validate_only)
        .await
        .into_iter()
        .map(|(ty, name, r)| {
            let base = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(ty)
                .with_resource_name(name)
                .with_error_message(None);
            match r {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// DeleteRecords: moves the log start offset up; whole segments below it are deleted. A
/// shared-storage partition's log start is moved in PostgreSQL, awaited here.
pub async fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let replica = match broker
                .replicas
                .leader_partition(&t.name.0, p.partition_index)
            {
                Ok(r) => r,
                Err(e) => {
                    partitions.push(base.with_error_code(e.code()));
                    continue;
                }
            };
            let hw = replica.high_watermark();
            // -1 means "up to the high watermark".
            let offset = if p.offset == -1 { hw } else { p.offset };
            if offset < 0 || offset > hw {
                partitions.push(base.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            let deleted = match replica.start_delete_records(offset) {
                Some(pending) => pending.await,
                None => replica.delete_records_before(offset),
            };
            partitions.push(match deleted {
                Ok(low) => base.with_low_watermark(low),
                Err(e) => base.with_error_code(crate::partition::append_error_code(&e).code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let image = broker.image();
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    // A set, so the cost is one look-up per hosted partition, not the product of the request's
    // length and the partition count.
    let requested: Option<HashSet<(&str, i32)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (&*t.topic.0, *p)))
            .collect()
    });
    let wanted = |topic: &str, p: i32| match &requested {
        None => true,
        Some(set) => set.contains(&(topic, p)),
    };
    for topic in image.topics.values() {
        for p in topic.partitions.keys() {
            if !wanted(&topic.name, *p) {
                continue;
            }
            if let Some(replica) = broker.replicas.hosted(&topic.name, *p) {
                by_topic.entry(topic.name.clone()).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(*p)
                        .with_partition_size(replica.size_bytes().unwrap_or(0) as i64)
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                );
            }
        }
    }
    let dir = std::fs::canonicalize(&broker.config.log_dir)
        .unwrap_or_else(|_| broker.config.log_dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&dir.display().to_string()))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(TopicName(str_bytes(&name)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    if ctx.version >= 4 {
        let (total, usable) = crate::disk_space::of(&dir).unwrap_or((-1, -1));
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

pub fn describe_topic_partitions(
    broker: &Arc<Broker>,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let limit = (req.response_partition_limit.max(1) as usize).min(MAX_DESCRIBED_PARTITIONS);
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index),
        None => (None, 0),
    };
    let mut topics = Vec::new();
    let mut budget = limit;
    let mut next_cursor = None;
    for name in names {
        if let Some(start) = &start_topic {
            if name < *start {
                continue;
            }
        }
        let first = if start_topic.as_deref() == Some(name.as_str()) {
            start_partition
        } else {
            0
        };
        let Some(topic) = image.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(str_bytes(&name))))
                    // Kafka reports them for every topic it answers, known or not.
                    .with_topic_authorized_operations(acl::authorized_operations(
                        ResourceType::Topic,
                        &name,
                    )),
            );
            continue;
        };
        if budget == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(TopicName(str_bytes(&name)))
                    .with_partition_index(first),
            );
            break;
        }
        let mut partitions = Vec::new();
        for (p, reg) in topic.partitions.range(first..) {
            if budget == 0 {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(str_bytes(&name)))
                        .with_partition_index(*p),
                );
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(*p)
                    .with_leader_id(BrokerId(reg.leader))
                    .with_leader_epoch(reg.leader_epoch)
                    .with_replica_nodes(reg.replicas.iter().map(|b| BrokerId(*b)).collect())
                    .with_isr_nodes(reg.isr.iter().map(|b| BrokerId(*b)).collect())
                    .with_eligible_leader_replicas(None)
                    .with_last_known_elr(None),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(topic.id)
                .with_partitions(partitions)
                .with_topic_authorized_operations(acl::authorized_operations(
                    ResourceType::Topic,
                    &name,
                )),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
