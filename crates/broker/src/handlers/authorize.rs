//! Authorization beside the handler table, for the APIs whose items Kafka refuses one by one
//! without the handler's help: the registry takes the refused items out of the request
//! (`split_*`), the handler answers the rest, and the refusals are added to its answer
//! (`add_*`). Clients match these answers by name, not by position, as with Kafka's (which
//! also lists the refused items after the others).

use proto_kafka::messages::alter_configs_response::AlterConfigsResourceResponse;
use proto_kafka::messages::create_partitions_response::CreatePartitionsTopicResult;
use proto_kafka::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use proto_kafka::messages::describe_configs_response::DescribeConfigsResult;
use proto_kafka::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use proto_kafka::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use proto_kafka::messages::{self as m};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;

use super::str_bytes;
use crate::authz::{self, AclOperation as Op, ResourceType as Rt};
use crate::broker::Broker;
use crate::metadata::records::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::request::RequestContext;

/// Kafka's BROKER_LOGGER config resource type.
const RESOURCE_BROKER_LOGGER: i8 = 8;

fn topic_ok(broker: &Broker, ctx: &RequestContext, op: Op, name: &str) -> bool {
    authz::authorize(broker, &ctx.info, op, Rt::Topic, name)
}

/// A config resource: `op` on the topic, or on the cluster for a broker resource. The error
/// code when refused. Other types go to the handler, which refuses them itself.
fn config_resource_denied(
    broker: &Broker,
    ctx: &RequestContext,
    op: Op,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    match resource_type {
        RESOURCE_TOPIC if !topic_ok(broker, ctx, op, name) => {
            Some(ResponseError::TopicAuthorizationFailed)
        }
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER
            if !authz::authorize_cluster(broker, &ctx.info, op) =>
        {
            Some(ResponseError::ClusterAuthorizationFailed)
        }
        _ => None,
    }
}

fn message(e: ResponseError) -> Option<StrBytes> {
    Some(str_bytes(&e.to_string()))
}

/// InitProducerId: WRITE on the transactional id when there is one, else IDEMPOTENT_WRITE on
/// the cluster or WRITE on some topic (KIP-679). The refusal to answer with, if refused.
pub fn init_producer_id(
    broker: &Broker,
    ctx: &RequestContext,
    req: &m::InitProducerIdRequest,
) -> Option<m::InitProducerIdResponse> {
    let code = match &req.transactional_id {
        Some(id) if !authz::authorize(broker, &ctx.info, Op::Write, Rt::TransactionalId, id) => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        Some(_) => return None,
        None if authz::authorize_cluster(broker, &ctx.info, Op::IdempotentWrite)
            || authz::authorize_any(broker, &ctx.info, Op::Write, Rt::Topic) =>
        {
            return None
        }
        None => ResponseError::ClusterAuthorizationFailed,
    };
    Some(
        m::InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(m::ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

/// ListOffsets: DESCRIBE on each topic.
pub fn split_list_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::ListOffsetsRequest,
) -> Vec<ListOffsetsTopicResponse> {
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic_ok(broker, ctx, Op::Describe, &t.name.0));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                        })
                        .collect(),
                )
        })
        .collect()
}

/// CreatePartitions: ALTER on each topic.
pub fn split_create_partitions(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic_ok(broker, ctx, Op::Alter, &t.name.0));
    req.topics = ok;
    let e = ResponseError::TopicAuthorizationFailed;
    denied
        .into_iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(e.code())
                .with_error_message(message(e))
        })
        .collect()
}

/// DeleteRecords: DELETE on each topic.
pub fn split_delete_records(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic_ok(broker, ctx, Op::Delete, &t.name.0));
    req.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        })
                        .collect(),
                )
        })
        .collect()
}

/// DescribeConfigs: DESCRIBE_CONFIGS on each topic, or on the cluster for broker resources.
pub fn split_describe_configs(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::DescribeConfigsRequest,
) -> Vec<DescribeConfigsResult> {
    let mut denied = Vec::new();
    req.resources.retain(|r| {
        match config_resource_denied(
            broker,
            ctx,
            Op::DescribeConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            None => true,
            Some(e) => {
                denied.push(
                    DescribeConfigsResult::default()
                        .with_error_code(e.code())
                        .with_error_message(message(e))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone()),
                );
                false
            }
        }
    });
    denied
}

/// AlterConfigs: ALTER_CONFIGS on each topic, or on the cluster for broker resources.
pub fn split_alter_configs(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::AlterConfigsRequest,
) -> Vec<AlterConfigsResourceResponse> {
    let mut denied = Vec::new();
    req.resources.retain(|r| {
        match config_resource_denied(
            broker,
            ctx,
            Op::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            None => true,
            Some(e) => {
                denied.push(
                    AlterConfigsResourceResponse::default()
                        .with_error_code(e.code())
                        .with_error_message(message(e))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone()),
                );
                false
            }
        }
    });
    denied
}

/// IncrementalAlterConfigs: as AlterConfigs.
pub fn split_incremental_alter_configs(
    broker: &Broker,
    ctx: &RequestContext,
    req: &mut m::IncrementalAlterConfigsRequest,
) -> Vec<IncrementalResult> {
    let mut denied = Vec::new();
    req.resources.retain(|r| {
        match config_resource_denied(
            broker,
            ctx,
            Op::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            None => true,
            Some(e) => {
                denied.push(
                    IncrementalResult::default()
                        .with_error_code(e.code())
                        .with_error_message(message(e))
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone()),
                );
                false
            }
        }
    });
    denied
}

/// DescribeLogDirs: DESCRIBE on the cluster (Kafka answers CLUSTER_AUTHORIZATION_FAILED).
pub fn describe_log_dirs(
    broker: &Broker,
    ctx: &RequestContext,
) -> Option<m::DescribeLogDirsResponse> {
    if authz::authorize_cluster(broker, &ctx.info, Op::Describe) {
        return None;
    }
    Some(
        m::DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
    )
}

/// DescribeTopicPartitions: DESCRIBE on each topic. A topic the request named is answered
/// TOPIC_AUTHORIZATION_FAILED; from "every topic" the undescribable ones are left out. The
/// authorized operations are the principal's.
pub fn filter_describe_topic_partitions(
    broker: &Broker,
    ctx: &RequestContext,
    named: bool,
    resp: &mut m::DescribeTopicPartitionsResponse,
) {
    if broker.authz.is_none() {
        return;
    }
    let topics = std::mem::take(&mut resp.topics);
    resp.topics = topics
        .into_iter()
        .filter_map(|mut t| {
            let Some(name) = t.name.clone() else {
                return Some(t);
            };
            if topic_ok(broker, ctx, Op::Describe, &name.0) {
                t.topic_authorized_operations =
                    authz::authorized_operations(broker, &ctx.info, Rt::Topic, &name.0);
                return Some(t);
            }
            named.then(|| {
                m::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_name(Some(name))
                    .with_topic_authorized_operations(authz::OPS_NOT_REQUESTED)
            })
        })
        .collect();
}

/// FindCoordinator: DESCRIBE on the group (key type 0) or the transactional id (key type 1).
/// Answered here, with the error code to count, when every key asked for is refused
/// (clients ask for one key at a time); a batch (v4+) mixing refused and allowed keys goes
/// to the handler whole.
pub fn find_coordinator(
    broker: &Broker,
    ctx: &RequestContext,
    req: &m::FindCoordinatorRequest,
) -> Option<(m::FindCoordinatorResponse, i16)> {
    use proto_kafka::messages::find_coordinator_response::Coordinator;
    let (rt, refusal) = match req.key_type {
        0 => (Rt::Group, ResponseError::GroupAuthorizationFailed),
        1 => (
            Rt::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
        _ => return None,
    };
    let keys: Vec<&StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.iter().collect()
    } else {
        vec![&req.key]
    };
    let denied = |k: &str| !authz::authorize(broker, &ctx.info, Op::Describe, rt, k);
    if keys.is_empty() || !keys.iter().all(|k| denied(k)) {
        return None;
    }
    if ctx.version >= 4 {
        let coordinators = keys
            .into_iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(m::BrokerId(-1))
                    .with_host(str_bytes(""))
                    .with_port(-1)
                    .with_error_code(refusal.code())
                    .with_error_message(message(refusal))
            })
            .collect();
        return Some((
            m::FindCoordinatorResponse::default().with_coordinators(coordinators),
            refusal.code(),
        ));
    }
    let resp = m::FindCoordinatorResponse::default()
        .with_error_code(refusal.code())
        .with_node_id(m::BrokerId(-1))
        .with_host(str_bytes(""))
        .with_port(-1);
    let resp = if ctx.version >= 1 {
        resp.with_error_message(message(refusal))
    } else {
        resp
    };
    Some((resp, refusal.code()))
}
