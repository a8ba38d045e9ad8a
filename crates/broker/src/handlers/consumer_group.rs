//! The consumer group protocol of KIP-848 on the wire: ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, mapped onto [`crate::group::consumer`].

use std::sync::Arc;

use proto_kafka::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use proto_kafka::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use proto_kafka::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;
use uuid::Uuid;

use crate::acl;
use crate::broker::Broker;
use crate::group::assignor::Assignment;
use crate::group::consumer::{ConsumerGroup, HeartbeatError, HeartbeatRequest, HeartbeatResponse};
use crate::request::{Reply, RequestContext, RequestError};

/// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;
/// Partitions one heartbeat may report as owned: bounds the work a request can cause.
const MAX_OWNED_PARTITIONS: usize = 100_000;

fn string(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn heartbeat(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> Result<Reply, RequestError> {
    // Kafka: READ on the group.
    if !crate::authz::authorize(
        broker,
        &ctx.info,
        crate::authz::AclOperation::Read,
        crate::authz::ResourceType::Group,
        &req.group_id.0,
    ) {
        let e = ResponseError::GroupAuthorizationFailed;
        let body = error_response(e, &e.to_string());
        return Ok(Reply::Now(Some(ctx.respond(&body)?)));
    }
    // Kafka 4: DESCRIBE on every topic the member subscribes to by name.
    let mut undescribable: Vec<&str> = req
        .subscribed_topic_names
        .iter()
        .flatten()
        .map(|t| t.0.as_str())
        .filter(|t| {
            !crate::authz::authorize(
                broker,
                &ctx.info,
                crate::authz::AclOperation::Describe,
                crate::authz::ResourceType::Topic,
                t,
            )
        })
        .collect();
    if !undescribable.is_empty() {
        undescribable.sort_unstable();
        undescribable.dedup();
        let body = error_response(
            ResponseError::TopicAuthorizationFailed,
            &format!(
                "The following topics are not authorized: {}",
                undescribable.join(", ")
            ),
        );
        return Ok(Reply::Now(Some(ctx.respond(&body)?)));
    }
    let mut member_id = req.member_id.to_string();
    // v0 lets the coordinator name a joining member; from v1 the client does (KIP-1082).
    if ctx.version == 0 && req.member_epoch == 0 && member_id.is_empty() {
        member_id = Uuid::new_v4().simple().to_string();
    }
    let owned_count: usize = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| t.partitions.len())
        .sum();
    if owned_count > MAX_OWNED_PARTITIONS {
        let body = error_response(ResponseError::InvalidRequest, "Too many owned partitions.");
        return Ok(Reply::Now(Some(ctx.respond(&body)?)));
    }
    let owned = req.topic_partitions.map(|ts| {
        let mut a = Assignment::new();
        for t in ts {
            a.entry(t.topic_id).or_default().extend(t.partitions);
        }
        a.retain(|_, p| !p.is_empty());
        a
    });
    let hb = HeartbeatRequest {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: if ctx.version >= 1 {
            req.subscribed_topic_regex.map(|s| s.to_string())
        } else {
            None
        },
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.info.peer.ip()),
    };
    let group_id = req.group_id.0.to_string();
    let broker = broker.clone();
    // The group changes now, so pipelined requests act in order; only the wait for the
    // records to be durable is deferred. The first join of all creates __consumer_offsets.
    let pending = if broker.groups.offsets_topic_exists() {
        Ok(broker.groups.consumer_heartbeat(&group_id, hb))
    } else {
        Err(hb)
    };
    Ok(Reply::Later(Box::pin(async move {
        let (out, write) = match pending {
            Ok(p) => p,
            Err(hb) => match broker.groups.ensure_offsets_topic().await {
                Ok(()) => broker.groups.consumer_heartbeat(&group_id, hb),
                Err(e) => (
                    Err(HeartbeatError {
                        code: e,
                        message: "The coordinator is not available.".to_string(),
                    }),
                    None,
                ),
            },
        };
        let out = match write {
            None => out,
            Some(w) => match w.complete(ResponseError::UnknownServerError).await {
                Ok(_) => out,
                Err(e) => Err(HeartbeatError {
                    code: e,
                    message: "The group's records could not be written.".to_string(),
                }),
            },
        };
        match ctx.respond(&heartbeat_response(out)) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a ConsumerGroupHeartbeat response");
                None
            }
        }
    })))
}

fn error_response(code: ResponseError, message: &str) -> ConsumerGroupHeartbeatResponse {
    crate::metrics::request_error_code("ConsumerGroupHeartbeat", code.code());
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(string(message)))
        .with_member_epoch(-1)
}

fn heartbeat_response(
    out: Result<HeartbeatResponse, HeartbeatError>,
) -> ConsumerGroupHeartbeatResponse {
    match out {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(string(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                HeartbeatAssignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(parts.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(e) => error_response(e.code, &e.message),
    }
}

fn described_assignment(c: &ConsumerGroup, a: Option<&Assignment>) -> DescribedAssignment {
    let topics = a
        .map(|a| {
            c.named(a)
                .into_iter()
                .map(|(id, name, parts)| {
                    DescribedTopic::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(string(name)))
                        .with_partitions(parts)
                })
                .collect()
        })
        .unwrap_or_default();
    DescribedAssignment::default().with_topic_partitions(topics)
}

pub fn describe(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    let groups = req
        .group_ids
        .into_iter()
        // A group named again is not described again: a list repeating a large group must
        // not multiply the response (Strom answers each distinct group once).
        .filter({
            let mut seen = std::collections::HashSet::new();
            move |gid| seen.insert(gid.0.clone())
        })
        .map(|gid| {
            if !crate::authz::authorize(
                broker,
                &ctx.info,
                crate::authz::AclOperation::Describe,
                crate::authz::ResourceType::Group,
                &gid.0,
            ) {
                return DescribedGroup::default()
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_group_id(gid)
                    .with_authorized_operations(acl::OPS_NOT_REQUESTED);
            }
            let found = broker.groups.inspect(&gid.0, |g, cfg| {
                let c = g.consumer_group()?;
                let members = c
                    .members()
                    .map(|m| {
                        let member = Member::default()
                            .with_member_id(string(m.member_id.clone()))
                            .with_instance_id(m.instance_id.clone().map(string))
                            .with_rack_id(m.rack_id.clone().map(string))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(string(m.client_id.clone()))
                            .with_client_host(string(m.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.subscribed_topic_names
                                    .iter()
                                    .map(|t| TopicName(string(t.clone())))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.subscribed_topic_regex.clone().map(string),
                            )
                            .with_assignment(described_assignment(c, Some(&m.assigned)))
                            .with_target_assignment(described_assignment(
                                c,
                                c.target_of(&m.member_id),
                            ));
                        if v >= 1 {
                            member.with_member_type(MEMBER_TYPE_CONSUMER)
                        } else {
                            member
                        }
                    })
                    .collect();
                Some(
                    DescribedGroup::default()
                        .with_group_state(string(g.state_name()))
                        .with_group_epoch(c.group_epoch())
                        .with_assignment_epoch(c.assignment_epoch())
                        .with_assignor_name(string(c.assignor_name(cfg)))
                        .with_members(members),
                )
            });
            let described = match found {
                Some(Some(d)) => d,
                Some(None) => DescribedGroup::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(string(format!(
                        "Group {} is not a consumer group.",
                        &*gid.0
                    )))),
                None => DescribedGroup::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(string(format!("Group {} not found.", &*gid.0)))),
            };
            // As Kafka: only a group described without an error gets its operations.
            let ops = crate::authz::authorized_operations_if(
                broker,
                &ctx.info,
                req.include_authorized_operations && described.error_code == 0,
                crate::authz::ResourceType::Group,
                &gid.0,
            );
            described.with_group_id(gid).with_authorized_operations(ops)
        })
        .collect();
    Ok(Reply::Now(Some(ctx.respond(
        &ConsumerGroupDescribeResponse::default().with_groups(groups),
    )?)))
}
