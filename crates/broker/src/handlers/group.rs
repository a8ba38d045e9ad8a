//! The group APIs on the wire: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Each maps
//! the request onto [`crate::group`] and the answer back, writing version-specific fields only
//! for the versions that have them.
//!
//! The group work runs when the request is handled, not when its reply is first polled, so
//! requests pipelined on one connection act on the group in the order they were sent; only
//! the wait (a rebalance step, durability) is deferred.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use proto_kafka::messages::delete_groups_response::DeletableGroupResult;
use proto_kafka::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use proto_kafka::messages::find_coordinator_response::Coordinator;
use proto_kafka::messages::join_group_response::JoinGroupResponseMember;
use proto_kafka::messages::leave_group_response::MemberResponse;
use proto_kafka::messages::list_groups_response::ListedGroup;
use proto_kafka::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use proto_kafka::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use proto_kafka::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use proto_kafka::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use proto_kafka::protocol::{Encodable, StrBytes};
use proto_kafka::ResponseError;
use strom_group_coordinator::runtime::coordinator_node;
use strom_metadata::MetadataImage;
use tracing::warn;

use super::str_bytes;
use crate::acl;
use crate::authz::{self, AclOperation as Op, ResourceType as Rt};
use crate::broker::Broker;
use crate::group::coordinator::{self, CommitEntry, Committer, FetchedOffsets, PendingCommit};
use crate::group::state::{
    CommittedOffset, JoinRequest, JoinResult, Outcome, SyncRequest, SyncResult,
};
use crate::request::WaitCancel;
use crate::request::{Reply, RequestContext, RequestError};

/// Beyond a member's own timeouts, how long a JoinGroup or SyncGroup may wait before it is
/// answered REBALANCE_IN_PROGRESS anyway: the group answers well before, this only bounds a
/// wait that something unforeseen left hanging.
const WAIT_SLACK_MS: u64 = 30_000;

fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

/// Counts an answer carrying an error code; MEMBER_ID_REQUIRED is a normal step of a join.
fn count_error(api: &'static str, e: Option<ResponseError>) {
    if let Some(e) = e.filter(|e| *e != ResponseError::MemberIdRequired) {
        crate::metrics::request_error_code(api, e.code());
    }
}

fn opt_str(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

fn later<R, F>(ctx: RequestContext, body: F) -> Reply
where
    R: Encodable + Send + 'static,
    F: Future<Output = R> + Send + 'static,
{
    Reply::Later(Box::pin(async move {
        let body = body.await;
        match ctx.respond(&body) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(api = ?ctx.api, error = %e, "cannot encode a group response");
                None
            }
        }
    }))
}

fn now<R: Encodable>(ctx: &RequestContext, body: &R) -> Result<Reply, RequestError> {
    Ok(Reply::Now(Some(ctx.respond(body)?)))
}

/// Waits for a deferred group answer, within `cap_ms`. A connection whose peer has gone (or
/// a broker shutting down) stops waiting at once, answering as a coordinator that went away:
/// the member stays in the group until its timeouts, as in Kafka.
async fn wait_for<T>(
    rx: tokio::sync::oneshot::Receiver<T>,
    cap_ms: u64,
    cancel: WaitCancel,
    gone: impl FnOnce() -> T,
    late: impl FnOnce() -> T,
) -> T {
    tokio::select! {
        waited = tokio::time::timeout(Duration::from_millis(cap_ms), rx) => match waited {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => gone(),
            Err(_) => late(),
        },
        _ = cancel.cancelled() => gone(),
    }
}

// --- FindCoordinator ----------------------------------------------------------

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn find_coordinator(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: FindCoordinatorRequest,
) -> Result<Reply, RequestError> {
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let key_type = req.key_type;
    if key_type == KEY_TYPE_GROUP && !broker.groups.offsets_topic_exists() {
        let broker = broker.clone();
        let version = ctx.version;
        let listener = ctx.info.listener_name.clone();
        return Ok(later(ctx, async move {
            let result = broker.groups.ensure_offsets_topic().await;
            coordinator_response(&broker, &listener, version, keys, result)
        }));
    }
    if key_type == KEY_TYPE_TRANSACTION {
        let broker = broker.clone();
        let version = ctx.version;
        let listener = ctx.info.listener_name.clone();
        let exists = broker
            .image()
            .topic(strom_transaction_coordinator::TRANSACTION_STATE_TOPIC)
            .is_some();
        if exists {
            let body = txn_coordinator_response(&broker, &listener, version, keys, Ok(()));
            return now(&ctx, &body);
        }
        // Kafka creates __transaction_state on the first FindCoordinator for an id.
        return Ok(later(ctx, async move {
            let result = broker.txns.ensure_state_topic().await;
            txn_coordinator_response(&broker, &listener, version, keys, result)
        }));
    }
    let result = match key_type {
        KEY_TYPE_GROUP => Ok(()),
        _ => Err(ResponseError::InvalidRequest),
    };
    let body = coordinator_response(broker, &ctx.info.listener_name, ctx.version, keys, result);
    now(&ctx, &body)
}

/// Where a client reaches `node` on `listener`: this node's advertised endpoint, or the
/// one another node registered in the image.
fn endpoint_of(
    broker: &Broker,
    image: &MetadataImage,
    node: i32,
    listener: &str,
) -> Option<(String, i32)> {
    if node == broker.node_id() {
        return broker
            .config
            .advertised(listener)
            .map(|ep| (ep.host.clone(), ep.port as i32));
    }
    image
        .brokers
        .get(&node)?
        .endpoints
        .iter()
        .find(|ep| ep.name == listener)
        .map(|ep| (ep.host.clone(), ep.port as i32))
}

/// One key's coordinator: the leader of its `__consumer_offsets` partition, from the image.
fn locate(
    broker: &Broker,
    image: &MetadataImage,
    listener: &str,
    key: &str,
    node_of: NodeOf,
) -> Result<(i32, String, i32), ResponseError> {
    let node = node_of(image, key).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let (host, port) =
        endpoint_of(broker, image, node, listener).ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((node, host, port))
}

/// Which node coordinates a key in an image: a group's or a transactional id's.
type NodeOf = fn(&MetadataImage, &str) -> Option<i32>;

fn coordinator_response(
    broker: &Broker,
    listener: &str,
    version: i16,
    keys: Vec<StrBytes>,
    result: Result<(), ResponseError>,
) -> FindCoordinatorResponse {
    keyed_coordinator_response(broker, listener, version, keys, result, false)
}

/// FindCoordinator for transactional ids: the leader of the id's `__transaction_state`
/// partition. An empty id is INVALID_REQUEST, as in Kafka.
fn txn_coordinator_response(
    broker: &Broker,
    listener: &str,
    version: i16,
    keys: Vec<StrBytes>,
    result: Result<(), ResponseError>,
) -> FindCoordinatorResponse {
    keyed_coordinator_response(broker, listener, version, keys, result, true)
}

fn keyed_coordinator_response(
    broker: &Broker,
    listener: &str,
    version: i16,
    keys: Vec<StrBytes>,
    result: Result<(), ResponseError>,
    transactional: bool,
) -> FindCoordinatorResponse {
    let node_of: NodeOf = if transactional {
        strom_transaction_coordinator::coordinator::coordinator_node
    } else {
        coordinator_node
    };
    let image = broker.image();
    let found: Vec<Result<(i32, String, i32), ResponseError>> = keys
        .iter()
        .map(|key| {
            result.and_then(|()| {
                if transactional && key.is_empty() {
                    return Err(ResponseError::InvalidRequest);
                }
                locate(broker, &image, listener, key.as_str(), node_of)
            })
        })
        .collect();
    for f in &found {
        count_error("FindCoordinator", f.as_ref().err().copied());
    }
    if version >= 4 {
        let coordinators = keys
            .into_iter()
            .zip(found)
            .map(|(key, f)| {
                let (error, node, host, port) = match f {
                    Ok((node, host, port)) => (None, node, host, port),
                    Err(e) => (Some(e), -1, String::new(), -1),
                };
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(&host))
                    .with_port(port)
                    .with_error_code(code(error))
                    .with_error_message(error.map(|e| StrBytes::from_string(e.to_string())))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, node, host, port) = match found.into_iter().next() {
        Some(Ok((node, host, port))) => (None, node, host, port),
        Some(Err(e)) => (Some(e), -1, String::new(), -1),
        None => (Some(ResponseError::InvalidRequest), -1, String::new(), -1),
    };
    let message = error.map(|e| StrBytes::from_string(e.to_string()));
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(code(error))
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(&host))
        .with_port(port);
    if version >= 1 {
        resp = resp.with_error_message(message);
    }
    resp
}

// --- JoinGroup ----------------------------------------------------------------

fn join_response(version: i16, r: JoinResult) -> JoinGroupResponse {
    count_error("JoinGroup", r.error);
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let jm = JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                jm.with_group_instance_id(opt_str(m.group_instance_id))
            } else {
                jm
            }
        })
        .collect();
    let resp = JoinGroupResponse::default()
        .with_error_code(code(r.error))
        .with_generation_id(r.generation_id)
        .with_leader(StrBytes::from_string(r.leader_id))
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(members);
    if version >= 7 {
        resp.with_protocol_type(opt_str(r.protocol_type))
            .with_protocol_name(opt_str(r.protocol_name))
    } else {
        // Not nullable before v7: Kafka sends "" for no protocol.
        resp.with_protocol_name(Some(StrBytes::from_string(
            r.protocol_name.unwrap_or_default(),
        )))
    }
}

pub fn join_group(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: JoinGroupRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    if group_denied(broker, &ctx, Op::Read, &group_id) {
        let r = JoinResult::error(&req.member_id, ResponseError::GroupAuthorizationFailed);
        return now(&ctx, &join_response(v, r));
    }
    let mut protocols: Vec<(String, bytes::Bytes)> = Vec::with_capacity(req.protocols.len());
    // A set: a request of n protocols costs n look-ups, not n^2 comparisons on a worker thread.
    let mut names = std::collections::HashSet::new();
    for p in req.protocols {
        let name = p.name.to_string();
        // Kafka keys the protocols by name: a repeated name is ignored.
        if names.insert(name.clone()) {
            protocols.push((name, p.metadata));
        }
    }
    let rebalance_timeout_ms = if v >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: if v >= 5 {
            req.group_instance_id.map(|s| s.to_string())
        } else {
            None
        },
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.info.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols,
        require_known_member_id: v >= 4,
    };
    let cap_ms = rebalance_timeout_ms.max(req.session_timeout_ms).max(0) as u64
        + broker.groups.config().initial_rebalance_delay_ms.max(0) as u64
        + WAIT_SLACK_MS;
    let member_id = join.member_id.clone();
    let cancel = ctx.info.cancel.clone();
    let wait = move |outcome: Outcome<JoinResult>| async move {
        match outcome {
            Outcome::Done(r) => r,
            Outcome::Wait(rx) => {
                wait_for(
                    rx,
                    cap_ms,
                    cancel,
                    || JoinResult::error(&member_id, ResponseError::NotCoordinator),
                    || JoinResult::error(&member_id, ResponseError::RebalanceInProgress),
                )
                .await
            }
        }
    };
    if !broker.groups.offsets_topic_exists() {
        let broker = broker.clone();
        return Ok(later(ctx, async move {
            if let Err(e) = broker.groups.ensure_offsets_topic().await {
                return join_response(v, JoinResult::error(&join.member_id, e));
            }
            let outcome = broker.groups.join(&group_id, join);
            join_response(v, wait(outcome).await)
        }));
    }
    match broker.groups.join(&group_id, join) {
        Outcome::Done(r) => now(&ctx, &join_response(v, r)),
        waiting => Ok(later(
            ctx,
            async move { join_response(v, wait(waiting).await) },
        )),
    }
}

// --- SyncGroup ----------------------------------------------------------------

fn sync_response(version: i16, r: SyncResult) -> SyncGroupResponse {
    count_error("SyncGroup", r.error);
    let resp = SyncGroupResponse::default()
        .with_error_code(code(r.error))
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(opt_str(r.protocol_type))
            .with_protocol_name(opt_str(r.protocol_name))
    } else {
        resp
    }
}

pub fn sync_group(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: SyncGroupRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    if group_denied(broker, &ctx, Op::Read, &req.group_id.0) {
        let r = SyncResult::error(ResponseError::GroupAuthorizationFailed);
        return now(&ctx, &sync_response(v, r));
    }
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: if v >= 3 {
            req.group_instance_id.map(|s| s.to_string())
        } else {
            None
        },
        generation_id: req.generation_id,
        protocol_type: if v >= 5 {
            req.protocol_type.map(|s| s.to_string())
        } else {
            None
        },
        protocol_name: if v >= 5 {
            req.protocol_name.map(|s| s.to_string())
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let (outcome, rebalance_timeout_ms) = broker.groups.sync(&req.group_id.0, sync);
    match outcome {
        Outcome::Done(r) => now(&ctx, &sync_response(v, r)),
        Outcome::Wait(rx) => {
            let cap_ms = rebalance_timeout_ms.max(0) as u64 + WAIT_SLACK_MS;
            let cancel = ctx.info.cancel.clone();
            Ok(later(ctx, async move {
                let r = wait_for(
                    rx,
                    cap_ms,
                    cancel,
                    || SyncResult::error(ResponseError::NotCoordinator),
                    || SyncResult::error(ResponseError::RebalanceInProgress),
                )
                .await;
                sync_response(v, r)
            }))
        }
    }
}

// --- Heartbeat, LeaveGroup ------------------------------------------------------

pub fn heartbeat(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: HeartbeatRequest,
) -> Result<Reply, RequestError> {
    if group_denied(broker, &ctx, Op::Read, &req.group_id.0) {
        let e = ResponseError::GroupAuthorizationFailed;
        count_error("Heartbeat", Some(e));
        return now(
            &ctx,
            &HeartbeatResponse::default().with_error_code(e.code()),
        );
    }
    let iid = if ctx.version >= 3 {
        req.group_instance_id.as_deref()
    } else {
        None
    };
    let result = broker
        .groups
        .heartbeat(&req.group_id.0, &req.member_id, iid, req.generation_id);
    count_error("Heartbeat", result.err());
    now(
        &ctx,
        &HeartbeatResponse::default().with_error_code(code(result.err())),
    )
}

pub fn leave_group(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: LeaveGroupRequest,
) -> Result<Reply, RequestError> {
    if group_denied(broker, &ctx, Op::Read, &req.group_id.0) {
        let e = ResponseError::GroupAuthorizationFailed;
        count_error("LeaveGroup", Some(e));
        return now(
            &ctx,
            &LeaveGroupResponse::default().with_error_code(e.code()),
        );
    }
    let v = ctx.version;
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let result = broker.groups.leave(&req.group_id.0, &members);
    count_error(
        "LeaveGroup",
        match &result {
            Err(e) => Some(*e),
            Ok(errors) => errors.iter().flatten().next().copied(),
        },
    );
    let body = match result {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(errors) if v < 3 => {
            LeaveGroupResponse::default().with_error_code(code(errors.into_iter().flatten().next()))
        }
        Ok(errors) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(errors)
                .map(|((id, iid), e)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(opt_str(iid))
                        .with_error_code(code(e))
                })
                .collect(),
        ),
    };
    now(&ctx, &body)
}

// --- OffsetCommit, OffsetFetch, OffsetDelete --------------------------------------

pub fn offset_commit(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: OffsetCommitRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let iid = if v >= 7 {
        req.group_instance_id.map(|s| s.to_string())
    } else {
        None
    };
    let generation = req.generation_id_or_member_epoch;
    // The response lists topics and partitions as the request did.
    let shape: Vec<(TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let group_denied = group_denied(broker, &ctx, Op::Read, &group_id);
    // Kafka: READ on the group for the whole commit, READ on each topic for its partitions.
    let allowed: Vec<bool> = req
        .topics
        .iter()
        .flat_map(|t| {
            let ok = topic_allowed(broker, &ctx, Op::Read, &t.name.0);
            std::iter::repeat_n(ok, t.partitions.len())
        })
        .collect();
    let entries: Vec<CommitEntry> = req
        .topics
        .into_iter()
        .filter(|t| topic_allowed(broker, &ctx, Op::Read, &t.name.0))
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions.into_iter().map(move |p| CommitEntry {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.map(|m| m.to_string()),
            })
        })
        .collect();
    let all_denied = entries.is_empty() && !allowed.is_empty();
    let respond = move |results: Vec<Option<ResponseError>>| {
        let results = if group_denied {
            vec![Some(ResponseError::GroupAuthorizationFailed); allowed.len()]
        } else {
            merge_denied(&allowed, results)
        };
        count_error("OffsetCommit", results.iter().flatten().next().copied());
        let mut it = results.into_iter();
        let topics = shape
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code(it.next().flatten()))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    };
    if group_denied || all_denied {
        return now(&ctx, &respond(Vec::new()));
    }
    // A commit of unknown partitions only is answered without the coordinator, so it
    // creates neither a group nor `__consumer_offsets`.
    let any_known = {
        let image = broker.image();
        entries
            .iter()
            .any(|e| coordinator::partition_exists(&image, &e.topic, e.partition))
    };
    if any_known && !broker.groups.offsets_topic_exists() {
        let broker = broker.clone();
        return Ok(later(ctx, async move {
            let results = match broker.groups.ensure_offsets_topic().await {
                Ok(()) => {
                    let who = Committer {
                        member_id: &member_id,
                        group_instance_id: iid.as_deref(),
                        generation_id: generation,
                        api_version: v,
                    };
                    let pending = broker.groups.commit(&group_id, who, entries);
                    broker.groups.finish_commit(pending).await
                }
                Err(e) => vec![Some(e); entries.len()],
            };
            respond(results)
        }));
    }
    let who = Committer {
        member_id: &member_id,
        group_instance_id: iid.as_deref(),
        generation_id: generation,
        api_version: v,
    };
    let pending: PendingCommit = broker.groups.commit(&group_id, who, entries);
    let broker = broker.clone();
    Ok(later(ctx, async move {
        respond(broker.groups.finish_commit(pending).await)
    }))
}

fn fetched_values(c: Option<&CommittedOffset>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: OffsetFetchRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    let groups = &broker.groups;
    // KIP-447: a read_committed consumer asks for stable offsets only; one a transaction
    // still holds is UNSTABLE_OFFSET_COMMIT, which the client retries.
    let require_stable = v >= 7 && req.require_stable;
    let unstable = |group: &str, topic: &str, p: i32| {
        require_stable && groups.has_pending_txn_offset(group, topic, p)
    };
    if v >= 8 {
        let out = req
            .groups
            .into_iter()
            .map(|g| {
                // v9: a consumer-group member fetches with its member id and epoch.
                let member_error = if v >= 9 {
                    let member_id = g.member_id.as_ref().map(|m| m.to_string());
                    groups
                        .inspect(&g.group_id.0, |grp, _| {
                            grp.consumer_group().map(|c| {
                                c.validate_offset_fetch(member_id.as_deref(), g.member_epoch)
                            })
                        })
                        .flatten()
                        .and_then(|r| r.err())
                } else {
                    None
                };
                let member_error = if group_denied(broker, &ctx, Op::Describe, &g.group_id.0) {
                    Some(ResponseError::GroupAuthorizationFailed)
                } else {
                    member_error
                };
                if let Some(e) = member_error {
                    count_error("OffsetFetch", Some(e));
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let named = topics.is_some();
                let fetched: FetchedOffsets = groups.fetch_offsets(&g.group_id.0, topics);
                let group_id = g.group_id.0.to_string();
                let topics = fetched
                    .into_iter()
                    .filter(|(t, _)| named || topic_allowed(broker, &ctx, Op::Describe, t))
                    .map(|(t, parts)| {
                        let denied = !topic_allowed(broker, &ctx, Op::Describe, &t);
                        let partitions = parts
                            .into_iter()
                            .map(|(p, c)| {
                                if unstable(&group_id, &t, p) {
                                    return OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_error_code(
                                            ResponseError::UnstableOffsetCommit.code(),
                                        );
                                }
                                let (offset, epoch, metadata) = fetched_values(c.as_ref());
                                let part = OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p);
                                if denied {
                                    return part
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_error_code(
                                            ResponseError::TopicAuthorizationFailed.code(),
                                        );
                                }
                                part.with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(StrBytes::from_string(metadata)))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(t)))
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return now(&ctx, &OffsetFetchResponse::default().with_groups(out));
    }
    if group_denied(broker, &ctx, Op::Describe, &req.group_id.0) {
        let e = ResponseError::GroupAuthorizationFailed;
        count_error("OffsetFetch", Some(e));
        return now(
            &ctx,
            &OffsetFetchResponse::default().with_error_code(e.code()),
        );
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let named = topics.is_some();
    let fetched: FetchedOffsets = groups.fetch_offsets(&req.group_id.0, topics);
    let topics = fetched
        .into_iter()
        .filter(|(t, _)| named || topic_allowed(broker, &ctx, Op::Describe, t))
        .map(|(t, parts)| {
            let denied = !topic_allowed(broker, &ctx, Op::Describe, &t);
            let partitions = parts
                .into_iter()
                .map(|(p, c)| {
                    if unstable(&req.group_id.0, &t, p) {
                        return OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(-1)
                            .with_error_code(ResponseError::UnstableOffsetCommit.code());
                    }
                    let (offset, epoch, metadata) = fetched_values(c.as_ref());
                    let part = OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_metadata(Some(StrBytes::from_string(metadata)));
                    let part = if denied {
                        part.with_committed_offset(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    } else {
                        part
                    };
                    if v >= 5 {
                        part.with_committed_leader_epoch(epoch)
                    } else {
                        part
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(partitions)
        })
        .collect();
    now(&ctx, &OffsetFetchResponse::default().with_topics(topics))
}

pub fn offset_delete(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: OffsetDeleteRequest,
) -> Result<Reply, RequestError> {
    if group_denied(broker, &ctx, Op::Delete, &req.group_id.0) {
        let e = ResponseError::GroupAuthorizationFailed;
        count_error("OffsetDelete", Some(e));
        return now(
            &ctx,
            &OffsetDeleteResponse::default().with_error_code(e.code()),
        );
    }
    let broker = broker.clone();
    let group_id = req.group_id.0.to_string();
    let shape: Vec<(TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let partitions: Vec<(String, i32)> = shape
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.0.to_string(), *p)))
        .collect();
    Ok(later(ctx, async move {
        match broker.groups.delete_offsets(&group_id, partitions).await {
            Err(e) => {
                count_error("OffsetDelete", Some(e));
                OffsetDeleteResponse::default().with_error_code(e.code())
            }
            Ok(results) => {
                count_error("OffsetDelete", results.iter().flatten().next().copied());
                let mut it = results.into_iter();
                let topics = shape
                    .into_iter()
                    .map(|(name, ps)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(name)
                            .with_partitions(
                                ps.into_iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(code(it.next().flatten()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetDeleteResponse::default().with_topics(topics)
            }
        }
    }))
}

// --- ListGroups, DescribeGroups, DeleteGroups ---------------------------------------

pub fn list_groups(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: ListGroupsRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    // Sets: a filter list of any length costs one look-up per group, not its length.
    let lower = |xs: &[StrBytes]| -> std::collections::HashSet<String> {
        xs.iter().map(|s| s.to_ascii_lowercase()).collect()
    };
    let states = if v >= 4 {
        lower(&req.states_filter)
    } else {
        Default::default()
    };
    let types = if v >= 5 {
        lower(&req.types_filter)
    } else {
        Default::default()
    };
    let all_groups = authz::authorize_cluster(broker, &ctx.info, Op::Describe);
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.contains(g.group_type))
        // Kafka: DESCRIBE on the cluster lists every group, else those the principal may
        // describe.
        .filter(|g| all_groups || !group_denied(broker, &ctx, Op::Describe, &g.group_id))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if v >= 4 {
                listed.with_group_state(str_bytes(g.state))
            } else {
                listed
            };
            if v >= 5 {
                listed.with_group_type(str_bytes(g.group_type))
            } else {
                listed
            }
        })
        .collect();
    now(&ctx, &ListGroupsResponse::default().with_groups(groups))
}

pub fn describe_groups(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: DescribeGroupsRequest,
) -> Result<Reply, RequestError> {
    let v = ctx.version;
    let include_ops = v >= 3 && req.include_authorized_operations;
    let groups = req
        .groups
        .into_iter()
        // A group named again is not described again: a list repeating a large group must
        // not multiply the response (Strom answers each distinct group once).
        .filter({
            let mut seen = std::collections::HashSet::new();
            move |gid| seen.insert(gid.0.clone())
        })
        .map(|gid| {
            if group_denied(broker, &ctx, Op::Describe, &gid.0) {
                return DescribedGroup::default()
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_group_id(gid)
                    .with_authorized_operations(acl::OPS_NOT_REQUESTED);
            }
            let described = match broker.groups.describe(&gid.0) {
                Some(s) => {
                    let members = s
                        .members
                        .into_iter()
                        .map(|m| {
                            let dm = DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if v >= 4 {
                                dm.with_group_instance_id(opt_str(m.group_instance_id))
                            } else {
                                dm
                            }
                        })
                        .collect();
                    DescribedGroup::default()
                        .with_group_state(str_bytes(s.state))
                        .with_protocol_type(StrBytes::from_string(s.protocol_type))
                        .with_protocol_data(StrBytes::from_string(s.protocol_data))
                        .with_members(members)
                }
                // Kafka describes an unknown group as Dead; v6 reports it as not found.
                None if v >= 6 => DescribedGroup::default()
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Group {} not found.",
                        &*gid.0
                    ))))
                    .with_group_state(str_bytes("Dead")),
                None => DescribedGroup::default().with_group_state(str_bytes("Dead")),
            };
            // As Kafka: only a group described without an error gets its operations.
            let ops = authz::authorized_operations_if(
                broker,
                &ctx.info,
                include_ops && described.error_code == 0,
                Rt::Group,
                &gid.0,
            );
            described.with_group_id(gid).with_authorized_operations(ops)
        })
        .collect();
    now(&ctx, &DescribeGroupsResponse::default().with_groups(groups))
}

pub fn delete_groups(
    broker: &Arc<Broker>,
    ctx: RequestContext,
    req: DeleteGroupsRequest,
) -> Result<Reply, RequestError> {
    let denied: Vec<bool> = req
        .groups_names
        .iter()
        .map(|g| group_denied(broker, &ctx, Op::Delete, &g.0))
        .collect();
    let broker = broker.clone();
    Ok(later(ctx, async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for (gid, denied) in req.groups_names.into_iter().zip(denied) {
            let r = if denied {
                Err(ResponseError::GroupAuthorizationFailed)
            } else {
                broker.groups.delete_group(&gid.0).await
            };
            count_error("DeleteGroups", r.err());
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid)
                    .with_error_code(code(r.err())),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }))
}

/// Kafka's group check: `op` on the group, else GROUP_AUTHORIZATION_FAILED.
fn group_denied(broker: &Broker, ctx: &RequestContext, op: Op, group: &str) -> bool {
    !authz::authorize(broker, &ctx.info, op, Rt::Group, group)
}

fn topic_allowed(broker: &Broker, ctx: &RequestContext, op: Op, topic: &str) -> bool {
    authz::authorize(broker, &ctx.info, op, Rt::Topic, topic)
}

/// Results for every entry: TOPIC_AUTHORIZATION_FAILED where `allowed` is false, the
/// coordinator's results (of the allowed entries, in order) elsewhere.
fn merge_denied(
    allowed: &[bool],
    results: Vec<Option<ResponseError>>,
) -> Vec<Option<ResponseError>> {
    let mut it = results.into_iter();
    allowed
        .iter()
        .map(|ok| {
            if *ok {
                it.next().flatten()
            } else {
                Some(ResponseError::TopicAuthorizationFailed)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strom_group_coordinator::{partition_for, OFFSETS_TOPIC};
    use strom_metadata::records::BrokerEndpoint;
    use strom_metadata::MetadataRecord;
    use uuid::Uuid;

    use super::*;
    use crate::config::{BrokerConfig, RawConfig};
    use crate::metadata::metadata_log::MetadataLog;
    use crate::replica_manager::ReplicaManager;

    const PARTITIONS: i32 = 4;

    /// A broker (node 0) whose image has node 7 registered and leading the odd partitions of
    /// `__consumer_offsets`.
    fn broker_with_foreign_leaders(dir: &std::path::Path) -> Arc<Broker> {
        let mut raw = RawConfig::defaults();
        raw.set("log.dirs", &dir.display().to_string(), "test")
            .unwrap();
        let config = BrokerConfig::from_raw(raw).unwrap();
        let (log, mut image) = MetadataLog::open(dir).unwrap();
        let topic_id = Uuid::new_v4();
        let mut records = vec![
            MetadataRecord::RegisterBroker {
                node_id: 7,
                endpoints: vec![BrokerEndpoint {
                    name: "PLAINTEXT".to_string(),
                    host: "other.example".to_string(),
                    port: 9999,
                }],
                rack: None,
            },
            MetadataRecord::Topic {
                name: OFFSETS_TOPIC.to_string(),
                topic_id,
            },
        ];
        for p in 0..PARTITIONS {
            let leader = if p % 2 == 1 { 7 } else { 0 };
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: p,
                replicas: vec![leader],
                isr: vec![leader],
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        for (i, r) in records.iter().enumerate() {
            image.apply(i as i64, r).unwrap();
        }
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

    /// A group id whose partition is led by `node` in the image above.
    fn group_led_by(node: i32) -> String {
        (0..)
            .map(|i| format!("g{i}"))
            .find(|g| (partition_for(g, PARTITIONS) % 2 == 1) == (node == 7))
            .unwrap()
    }

    #[test]
    fn find_coordinator_names_each_keys_partition_leader_from_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_with_foreign_leaders(dir.path());
        let (here, there) = (group_led_by(0), group_led_by(7));
        let keys = vec![str_bytes(&here), str_bytes(&there)];
        let resp = coordinator_response(&broker, "PLAINTEXT", 4, keys, Ok(()));
        let found: Vec<(i32, String, i32, i16)> = resp
            .coordinators
            .iter()
            .map(|c| (c.node_id.0, c.host.to_string(), c.port, c.error_code))
            .collect();
        let own = broker.config.advertised("PLAINTEXT").unwrap();
        assert_eq!(
            found,
            vec![
                (0, own.host.clone(), own.port as i32, 0),
                (7, "other.example".to_string(), 9999, 0),
            ]
        );
        // v3 and older answer one key, the same way.
        let resp = coordinator_response(&broker, "PLAINTEXT", 3, vec![str_bytes(&there)], Ok(()));
        assert_eq!((resp.node_id.0, resp.port), (7, 9999));
    }

    #[test]
    fn find_coordinator_without_the_leaders_endpoint_is_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_with_foreign_leaders(dir.path());
        let resp = coordinator_response(
            &broker,
            "NO_SUCH_LISTENER",
            4,
            vec![str_bytes(&group_led_by(7))],
            Ok(()),
        );
        assert_eq!(
            resp.coordinators[0].error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(resp.coordinators[0].node_id.0, -1);
    }

    #[test]
    fn a_group_led_elsewhere_is_refused_here() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_with_foreign_leaders(dir.path());
        broker.groups.on_image(&broker.image()).unwrap();
        let foreign = group_led_by(7);
        assert_eq!(
            broker.groups.heartbeat(&foreign, "m", None, 1),
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            broker
                .groups
                .hosted_partitions()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![0, 2]
        );
    }
}
