//! Consumer groups: coordinator lookup, ListGroups, DescribeGroups,
//! OffsetFetch, OffsetCommit, DeleteGroups.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto_kafka::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use proto_kafka::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use proto_kafka::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use proto_kafka::protocol::{Decodable, StrBytes};

use crate::client::{BrokerMeta, Client};
use crate::connection::Connection;
use crate::error::{Error, KafkaCode, Result};

/// A member of a group's generation, committing offsets.
#[derive(Clone, Copy, Debug)]
pub struct Committer<'a> {
    pub member_id: &'a str,
    pub generation: i32,
}

/// A group as ListGroups reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty before ListGroups v4.
    pub state: String,
    /// Empty before ListGroups v5.
    pub group_type: String,
    pub coordinator: i32,
}

#[derive(Clone, Debug)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded from the member assignment when the protocol type is
    /// `consumer`: topic → partitions.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Clone, Debug)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
    pub coordinator: BrokerMeta,
}

/// topic → partition → committed offset (-1: none).
pub type CommittedOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Decodes a `consumer` protocol member assignment.
pub fn decode_assignment(bytes: &Bytes) -> Option<BTreeMap<String, Vec<i32>>> {
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes.slice(2..);
    let a = ConsumerProtocolAssignment::decode(&mut body, version).ok()?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        let mut parts = tp.partitions;
        parts.sort_unstable();
        out.entry(tp.topic.0.to_string()).or_default().extend(parts);
    }
    Some(out)
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

impl Client {
    /// FindCoordinator for a group, retrying while the coordinator loads.
    pub async fn find_coordinator(&self, group: &str) -> Result<BrokerMeta> {
        self.find_coordinator_of(0, group).await
    }

    /// FindCoordinator for a key of `key_type` (0: a group, 1: a transactional id).
    pub async fn find_coordinator_of(&self, key_type: i8, group: &str) -> Result<BrokerMeta> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            let conn = self.any_broker().await?;
            let version = conn.version::<FindCoordinatorRequest>()?;
            let mut req = FindCoordinatorRequest::default().with_key_type(key_type);
            if version >= 4 {
                req = req.with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
            } else {
                req = req.with_key(StrBytes::from_string(group.to_string()));
            }
            let resp = conn.send(version, &req).await?;
            let (code, message, node, host, port) = if version >= 4 {
                let c = resp.coordinators.first().ok_or_else(|| {
                    Error::Other(format!("no coordinator in the answer for group {group}"))
                })?;
                (
                    c.error_code,
                    c.error_message.as_ref().map(ToString::to_string),
                    c.node_id.0,
                    c.host.to_string(),
                    c.port,
                )
            } else {
                (
                    resp.error_code,
                    resp.error_message.as_ref().map(ToString::to_string),
                    resp.node_id.0,
                    resp.host.to_string(),
                    resp.port,
                )
            };
            if code == 0 {
                let meta = BrokerMeta {
                    node_id: node,
                    host,
                    port,
                    rack: None,
                };
                self.learn_broker(meta.clone());
                return Ok(meta);
            }
            if !KafkaCode(code).is_retriable() || tokio::time::Instant::now() >= deadline {
                return Err(Error::kafka(
                    format!("find the coordinator of {group}"),
                    code,
                    message,
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn coordinator_conn(&self, group: &str) -> Result<(BrokerMeta, Arc<Connection>)> {
        let meta = self.find_coordinator(group).await?;
        let conn = self.broker(meta.node_id).await?;
        Ok((meta, conn))
    }

    /// ListGroups on every broker.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (node, conn) in self.all_brokers().await? {
            let result = async {
                let conn = conn?;
                let version = conn.version::<ListGroupsRequest>()?;
                let resp = conn.send(version, &ListGroupsRequest::default()).await?;
                if resp.error_code != 0 {
                    return Err(Error::kafka(
                        format!("list groups on broker {node}"),
                        resp.error_code,
                        None,
                    ));
                }
                Ok(resp
                    .groups
                    .iter()
                    .map(|g| ListedGroup {
                        group_id: g.group_id.0.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        state: g.group_state.to_string(),
                        group_type: g.group_type.to_string(),
                        coordinator: node,
                    })
                    .collect::<Vec<_>>())
            }
            .await;
            match result {
                Ok(groups) => out.extend(groups),
                Err(e) => errors.push(e),
            }
        }
        if out.is_empty() {
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// DescribeGroups of one group, at its coordinator.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let (coordinator, conn) = self.coordinator_conn(group).await?;
        let version = conn.version::<DescribeGroupsRequest>()?;
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let resp = conn.send(version, &req).await?;
        let g = resp
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| {
                Error::Other(format!("the coordinator did not describe group {group}"))
            })?;
        if g.error_code != 0 {
            return Err(Error::kafka(
                format!("describe group {group}"),
                g.error_code,
                g.error_message.as_ref().map(ToString::to_string),
            ));
        }
        let consumer = g.protocol_type.as_str() == "consumer";
        let members = g
            .members
            .iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(ToString::to_string),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if consumer {
                    decode_assignment(&m.member_assignment).unwrap_or_default()
                } else {
                    BTreeMap::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
            coordinator,
        })
    }

    /// OffsetFetch: the group's committed offsets, of the given topics and
    /// partitions or (None) of all topics.
    pub async fn fetch_committed(
        &self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<CommittedOffsets> {
        let (_, conn) = self.coordinator_conn(group).await?;
        let version = conn.version::<OffsetFetchRequest>()?;
        if topics.is_none() && version < 2 {
            return Err(Error::UnsupportedApi {
                addr: conn.addr().to_string(),
                api: "OffsetFetch".into(),
                detail: " for all topics (needs v2+)".into(),
            });
        }
        let req = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(TopicName(StrBytes::from_string(t.clone())))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect()
                }))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group_id(group))
                .with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(StrBytes::from_string(t.clone())))
                                .with_partition_indexes(ps.clone())
                        })
                        .collect()
                }))
        };
        let resp = conn.send(version, &req).await?;
        let context = || format!("fetch the committed offsets of group {group}");
        let mut out: CommittedOffsets = BTreeMap::new();
        if version >= 8 {
            let g = resp
                .groups
                .iter()
                .find(|g| g.group_id.0.as_str() == group)
                .ok_or_else(|| Error::Other(format!("no answer for group {group}")))?;
            if g.error_code != 0 {
                return Err(Error::kafka(context(), g.error_code, None));
            }
            for t in &g.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(Error::kafka(
                            format!("{} ({}[{}])", context(), t.name.0, p.partition_index),
                            p.error_code,
                            None,
                        ));
                    }
                    out.entry(t.name.0.to_string())
                        .or_default()
                        .insert(p.partition_index, p.committed_offset);
                }
            }
        } else {
            if version >= 2 && resp.error_code != 0 {
                return Err(Error::kafka(context(), resp.error_code, None));
            }
            for t in &resp.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(Error::kafka(
                            format!("{} ({}[{}])", context(), t.name.0, p.partition_index),
                            p.error_code,
                            None,
                        ));
                    }
                    out.entry(t.name.0.to_string())
                        .or_default()
                        .insert(p.partition_index, p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// OffsetCommit outside any generation (as a consumer with manual
    /// assignment does): generation -1, no member id. Kafka accepts it only
    /// while the group has no active members.
    pub async fn commit_offsets(&self, group: &str, offsets: &CommittedOffsets) -> Result<()> {
        self.commit_offsets_as(group, None, offsets).await
    }

    /// OffsetCommit, as a member of the group's current generation when `who` is given.
    pub async fn commit_offsets_as(
        &self,
        group: &str,
        who: Option<Committer<'_>>,
        offsets: &CommittedOffsets,
    ) -> Result<()> {
        let (_, conn) = self.coordinator_conn(group).await?;
        let version = conn.version::<OffsetCommitRequest>()?;
        let topics = offsets
            .iter()
            .map(|(t, parts)| {
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                            })
                            .collect(),
                    )
            })
            .collect();
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(who.as_ref().map_or(-1, |w| w.generation))
            .with_member_id(StrBytes::from_string(
                who.as_ref().map_or("", |w| w.member_id).to_string(),
            ))
            .with_topics(topics);
        let resp = conn.send(version, &req).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(Error::kafka(
                        format!(
                            "commit offsets of group {group} ({}[{}])",
                            t.name.0, p.partition_index
                        ),
                        p.error_code,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// DeleteGroups, each at its coordinator; one result per group.
    pub async fn delete_groups(&self, groups: &[String]) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let result = async {
                let (_, conn) = self.coordinator_conn(g).await?;
                let version = conn.version::<DeleteGroupsRequest>()?;
                let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(g)]);
                let resp = conn.send(version, &req).await?;
                let r = resp
                    .results
                    .iter()
                    .find(|r| r.group_id.0.as_str() == g.as_str())
                    .ok_or_else(|| Error::Other(format!("no answer for group {g}")))?;
                if r.error_code != 0 {
                    return Err(Error::kafka(
                        format!("delete group {g}"),
                        r.error_code,
                        None,
                    ));
                }
                Ok(())
            }
            .await;
            out.push(result);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use proto_kafka::messages::consumer_protocol_assignment::TopicPartition;
    use proto_kafka::protocol::Encodable;

    #[test]
    fn decodes_consumer_assignments() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(vec![2, 0]),
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![1]),
        ]);
        for version in [0i16, 1, 3] {
            let mut buf = BytesMut::new();
            buf.put_i16(version);
            a.encode(&mut buf, version).unwrap();
            let got = decode_assignment(&buf.freeze()).unwrap();
            assert_eq!(got.get("a"), Some(&vec![1]));
            assert_eq!(got.get("b"), Some(&vec![0, 2]));
        }
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_none());
        assert!(decode_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])).is_none());
    }
}
