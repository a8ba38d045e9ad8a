//! Membership of a consumer group with the classic protocol, as Kafka's consumers do it:
//! JoinGroup (with the KIP-394 member-id round trip), the leader computes a `range`
//! assignment, SyncGroup hands it out, Heartbeat keeps the session and tells of a
//! rebalance, LeaveGroup on the way out. Rebalancing is eager: a member gives up everything
//! and rejoins. The classic protocol works with every Kafka-compatible broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::consumer_protocol_assignment::TopicPartition;
use proto_kafka::messages::join_group_request::JoinGroupRequestProtocol;
use proto_kafka::messages::leave_group_request::MemberIdentity;
use proto_kafka::messages::sync_group_request::SyncGroupRequestAssignment;
use proto_kafka::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest, TopicName,
};
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, KafkaCode, Result};
use crate::groups::{decode_assignment, Committer};

const PROTOCOL_TYPE: &str = "consumer";
const ASSIGNOR: &str = "range";
/// Kafka consumer defaults.
const SESSION_TIMEOUT_MS: i32 = 45_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Join attempts before giving up (each waits for the coordinator or a rebalance).
const MAX_JOIN_ATTEMPTS: usize = 50;

/// Topic → partitions assigned to this member.
pub type MemberAssignment = BTreeMap<String, Vec<i32>>;

pub struct Membership {
    client: Arc<Client>,
    group: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    rebalance: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Membership {
    pub fn new(client: Arc<Client>, group: &str, topics: &[String]) -> Membership {
        Membership {
            client,
            group: group.to_string(),
            topics: topics.to_vec(),
            member_id: String::new(),
            generation: -1,
            rebalance: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
        }
    }

    /// Whether the coordinator asked for a rebalance (or the session was lost): commit, then
    /// [`Membership::join`] again.
    pub fn rebalance_needed(&self) -> bool {
        self.rebalance.load(Ordering::Acquire)
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// How offsets are committed while a member of this generation.
    pub fn committer(&self) -> Committer<'_> {
        Committer {
            member_id: &self.member_id,
            generation: self.generation,
        }
    }

    /// Joins (or rejoins) the group and returns this member's assignment.
    pub async fn join(&mut self) -> Result<MemberAssignment> {
        self.stop_heartbeat();
        let rebalance_timeout_ms =
            (self.client.request_timeout().as_millis() as i32 - 5_000).clamp(1_000, 300_000);
        let mut last_error = None;
        for _ in 0..MAX_JOIN_ATTEMPTS {
            match self.try_join(rebalance_timeout_ms).await {
                Ok(a) => {
                    self.rebalance.store(false, Ordering::Release);
                    self.start_heartbeat();
                    return Ok(a);
                }
                Err(e) => {
                    let code = e.code();
                    if code == Some(KafkaCode::UNKNOWN_MEMBER_ID) {
                        self.member_id.clear();
                    } else if !e.is_retriable()
                        && !matches!(
                            code,
                            Some(KafkaCode::REBALANCE_IN_PROGRESS | KafkaCode::ILLEGAL_GENERATION)
                        )
                    {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "join failed; retrying");
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Other("cannot join the group".into())))
    }

    async fn try_join(&mut self, rebalance_timeout_ms: i32) -> Result<MemberAssignment> {
        let meta = self.client.find_coordinator(&self.group).await?;
        let conn = self.client.broker(meta.node_id).await?;
        let subscription = encode_versioned(
            &ConsumerProtocolSubscription::default().with_topics(
                self.topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            ),
        )?;
        let version = conn.version::<JoinGroupRequest>()?;
        let resp = loop {
            let req = JoinGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(rebalance_timeout_ms)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(subscription.clone())]);
            let resp = conn.send(version, &req).await?;
            // KIP-394: the first join only hands out a member id.
            if resp.error_code == KafkaCode::MEMBER_ID_REQUIRED {
                self.member_id = resp.member_id.to_string();
                continue;
            }
            break resp;
        };
        if resp.error_code != 0 {
            return Err(Error::kafka(
                format!("join group {}", self.group),
                resp.error_code,
                None,
            ));
        }
        self.member_id = resp.member_id.to_string();
        self.generation = resp.generation_id;
        let assignments = if resp.leader == resp.member_id {
            let members: Vec<(String, Vec<String>)> = resp
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata)))
                .collect();
            self.assign(&members).await?
        } else {
            Vec::new()
        };
        let version = conn.version::<SyncGroupRequest>()?;
        let req = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(member, bytes)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(member))
                            .with_assignment(bytes)
                    })
                    .collect(),
            );
        let resp = conn.send(version, &req).await?;
        if resp.error_code != 0 {
            return Err(Error::kafka(
                format!("sync group {}", self.group),
                resp.error_code,
                None,
            ));
        }
        Ok(decode_assignment(&resp.assignment).unwrap_or_default())
    }

    /// The leader's `range` assignment: per topic, members subscribed to it in member-id
    /// order get contiguous ranges, the first ones one more when it does not divide evenly.
    async fn assign(&self, members: &[(String, Vec<String>)]) -> Result<Vec<(String, Bytes)>> {
        let mut topics: Vec<&String> = members.iter().flat_map(|(_, t)| t).collect();
        topics.sort();
        topics.dedup();
        let mut counts = BTreeMap::new();
        for t in topics {
            match self.client.topic_metadata(t, false).await {
                Ok(m) => {
                    counts.insert(t.clone(), m.partitions.len());
                }
                Err(e) if e.code() == Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION) => {}
                Err(e) => return Err(e),
            }
        }
        let plan = range_assign(members, &counts);
        let mut out = Vec::with_capacity(members.len());
        for (member, _) in members {
            let parts = plan.get(member).cloned().unwrap_or_default();
            let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
                parts
                    .into_iter()
                    .map(|(t, ps)| {
                        TopicPartition::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
            out.push((member.clone(), encode_versioned(&a)?));
        }
        Ok(out)
    }

    fn start_heartbeat(&mut self) {
        let client = Arc::clone(&self.client);
        let group = self.group.clone();
        let member_id = self.member_id.clone();
        let generation = self.generation;
        let rebalance = Arc::clone(&self.rebalance);
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
                let sent = async {
                    let meta = client.find_coordinator(&group).await?;
                    let conn = client.broker(meta.node_id).await?;
                    let version = conn.version::<HeartbeatRequest>()?;
                    let req = HeartbeatRequest::default()
                        .with_group_id(group_id(&group))
                        .with_generation_id(generation)
                        .with_member_id(StrBytes::from_string(member_id.clone()));
                    conn.send(version, &req).await
                }
                .await;
                match sent {
                    Ok(r) if r.error_code == 0 => {}
                    Ok(r) => {
                        tracing::debug!(code = r.error_code, "heartbeat: rebalance");
                        rebalance.store(true, Ordering::Release);
                        return;
                    }
                    // The session outlives a lost heartbeat or two.
                    Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
                }
            }
        }));
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// LeaveGroup, so the others take over at once rather than after the session timeout.
    pub async fn leave(&mut self) -> Result<()> {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return Ok(());
        }
        let meta = self.client.find_coordinator(&self.group).await?;
        let conn = self.client.broker(meta.node_id).await?;
        let version = conn.version::<LeaveGroupRequest>()?;
        let req = if version >= 3 {
            LeaveGroupRequest::default().with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))])
        } else {
            LeaveGroupRequest::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
        };
        let resp = conn
            .send(version, &req.with_group_id(group_id(&self.group)))
            .await?;
        self.member_id.clear();
        if resp.error_code != 0 {
            return Err(Error::kafka(
                format!("leave group {}", self.group),
                resp.error_code,
                None,
            ));
        }
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

/// A consumer-protocol message with its version in front (version 0).
fn encode_versioned<M: Encodable>(m: &M) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    m.encode(&mut buf, 0)
        .map_err(|e| Error::Other(format!("cannot encode a group message: {e}")))?;
    Ok(buf.freeze())
}

fn decode_subscription(bytes: &Bytes) -> Vec<String> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes.slice(2..);
    ConsumerProtocolSubscription::decode(&mut body, version)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// member id → topic → partitions.
pub fn range_assign(
    members: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, usize>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, n) in partition_counts {
        let mut takers: Vec<&str> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m.as_str())
            .collect();
        if takers.is_empty() {
            continue;
        }
        takers.sort_unstable();
        let per = n / takers.len();
        let extra = n % takers.len();
        let mut next = 0usize;
        for (k, m) in takers.iter().enumerate() {
            let size = per + usize::from(k < extra);
            if size > 0 {
                out.entry(m.to_string()).or_default().insert(
                    topic.clone(),
                    (next..next + size).map(|p| p as i32).collect(),
                );
            }
            next += size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_splits_like_kafka() {
        let members = vec![
            ("b".to_string(), vec!["t".to_string()]),
            ("a".to_string(), vec!["t".to_string(), "u".to_string()]),
        ];
        let counts = BTreeMap::from([("t".to_string(), 5), ("u".to_string(), 2)]);
        let plan = range_assign(&members, &counts);
        assert_eq!(plan["a"]["t"], vec![0, 1, 2]);
        assert_eq!(plan["b"]["t"], vec![3, 4]);
        assert_eq!(plan["a"]["u"], vec![0, 1]);
        assert!(!plan["b"].contains_key("u"));
    }

    #[test]
    fn subscriptions_round_trip() {
        let s = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("x")]);
        let bytes = encode_versioned(&s).unwrap();
        assert_eq!(decode_subscription(&bytes), vec!["x".to_string()]);
        assert!(decode_subscription(&Bytes::from_static(b"\x00")).is_empty());
    }
}
