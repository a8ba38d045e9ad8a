//! One consumer group's state machine, after Kafka's classic `GroupCoordinator`.
//!
//! No I/O and no clock: every call takes `now_ms`, deadlines are plain numbers that the
//! coordinator's timer turns into calls to [`Group::tick`], and writes to `__consumer_offsets`
//! leave as [`Effect`]s whose outcome comes back through [`Group::after_store`]. A JoinGroup or
//! SyncGroup that must wait gets a oneshot receiver; the group answers it when the rebalance
//! step completes (or fails), so a waiting request holds no lock.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use proto_kafka::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};
use proto_kafka::ResponseError;
use tokio::sync::oneshot;

use super::consumer::{
    Change, ConsumerGroup, HeartbeatError, HeartbeatRequest, HeartbeatResponse, TopicLookup,
};
use super::records::{GroupValue, MemberValue};
use super::GroupConfig;

/// How long a new member's JoinGroup may wait before the member is dropped (Kafka's
/// `NewMemberJoinTimeoutMs`): it has no member id to heartbeat with, so the session timeout
/// cannot apply, and a client that gave up must not stall the rebalance forever.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;

/// The protocol type of Kafka consumers, whose subscription metadata Strom understands.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka reports in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Where the commit's record sits in `__consumer_offsets`: the later record wins, as it
    /// will on replay.
    pub record_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub member_id: String,
    /// Every member's metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, e: ResponseError) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

pub enum Outcome<T> {
    Done(T),
    Wait(oneshot::Receiver<T>),
}

pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a member without an id gets one and must join again with it.
    pub require_known_member_id: bool,
}

pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A write the coordinator must make durable, then report back with [`Group::after_store`].
#[derive(Debug)]
pub enum Effect {
    StoreGroup { value: GroupValue, then: AfterStore },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStore {
    Nothing,
    /// The leader's assignment of `generation_id`, to hand out once durable.
    CompleteSync {
        generation_id: i32,
        assignments: BTreeMap<String, Bytes>,
    },
    /// A static member that replaced its old member id in a stable group (KIP-345).
    StaticRejoin {
        member_id: String,
        old_member_id: String,
        group_instance_id: String,
        generation_id: i32,
        leader_id: String,
    },
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    heartbeat_deadline_ms: i64,
    /// Joined during the current rebalance: expires by the new-member timeout instead.
    is_new: bool,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Members waiting in a rebalance step are not expected to heartbeat, except new ones.
    fn can_expire(&self) -> bool {
        self.is_new || (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
    }
}

/// What DescribeGroups shows of a member.
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberSummary>,
}

pub struct Group {
    pub group_id: String,
    state: GroupState,
    /// Wall-clock time of the last state change (Kafka's currentStateTimestamp): offsets of an
    /// empty group expire by it.
    state_timestamp_ms: i64,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending_members: BTreeMap<String, i64>,
    /// Members of the new generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    sync_deadline_ms: Option<i64>,
    join_deadline_ms: Option<i64>,
    /// While the first rebalance of an empty group is delayed (KIP-134): how much of the
    /// rebalance timeout is left for further delays.
    initial_delay_remaining_ms: Option<i64>,
    new_member_added: bool,
    /// Topics the members subscribe to; None when unknown (not a consumer group, or metadata
    /// that does not parse), which OffsetDelete and retention treat as "maybe subscribed".
    subscribed_topics: Option<HashSet<String>>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Set while this is a consumer-protocol (KIP-848) group; the classic fields then stay
    /// as an empty group's. Only an empty group changes protocol, as in Kafka.
    consumer: Option<ConsumerGroup>,
    /// The group stopped being a consumer group: its epoch records must go.
    consumer_tombstones_due: bool,
    effects: Vec<Effect>,
    /// The earliest deadline the coordinator's timer holds for this group.
    pub(crate) scheduled_ms: Option<i64>,
}

impl Group {
    pub fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            join_deadline_ms: None,
            initial_delay_remaining_ms: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            consumer: None,
            consumer_tombstones_due: false,
            effects: Vec::new(),
            scheduled_ms: None,
        }
    }

    /// A group as `__consumer_offsets` left it. Members come back as they were, as in Kafka:
    /// live clients carry on heartbeating; the others expire after their session timeout.
    pub fn restore(
        group_id: &str,
        value: Option<GroupValue>,
        offsets: BTreeMap<(String, i32), CommittedOffset>,
        now_ms: i64,
    ) -> Group {
        let mut g = Group::new(group_id, now_ms);
        g.offsets = offsets;
        let Some(v) = value else {
            return g;
        };
        g.generation_id = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type.clone());
        g.protocol_name = v.protocol.clone();
        if v.current_state_timestamp_ms >= 0 {
            g.state_timestamp_ms = v.current_state_timestamp_ms;
        }
        let protocol = v.protocol.clone().unwrap_or_default();
        for m in v.members {
            if let Some(iid) = &m.group_instance_id {
                g.static_members.insert(iid.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: v.protocol_type.clone(),
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    heartbeat_deadline_ms: now_ms + m.session_timeout_ms.max(0) as i64,
                    is_new: false,
                },
            );
        }
        if g.members.is_empty() {
            g.state = GroupState::Empty;
        } else {
            g.state = GroupState::Stable;
            g.leader_id = v
                .leader
                .filter(|l| g.members.contains_key(l))
                .or_else(|| g.members.keys().next().cloned());
        }
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The consumer-protocol side of the group, if it is one.
    pub fn consumer_group(&self) -> Option<&ConsumerGroup> {
        self.consumer.as_ref()
    }

    /// A consumer group restored from `__consumer_offsets`.
    pub fn set_consumer_group(&mut self, c: ConsumerGroup) {
        self.consumer = Some(c);
    }

    /// The consumer-group records to write since the last call.
    pub fn take_consumer_changes(&mut self) -> Vec<Change> {
        if std::mem::take(&mut self.consumer_tombstones_due) {
            return vec![Change::GroupEpoch(None), Change::AssignmentEpoch(None)];
        }
        match self.consumer.as_mut() {
            Some(c) => c.take_changes(),
            None => Vec::new(),
        }
    }

    /// The state name Kafka shows in ListGroups and DescribeGroups.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) if self.state != GroupState::Dead => c.state().name(),
            _ => self.state.name(),
        }
    }

    /// "consumer" for KIP-848 groups, "classic" otherwise (ListGroups v5).
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// ConsumerGroupHeartbeat. An empty classic group becomes a consumer group on a join; a
    /// classic group with members is not one.
    pub fn consumer_heartbeat(
        &mut self,
        req: HeartbeatRequest,
        cfg: &GroupConfig,
        topics: TopicLookup<'_>,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        if self.state == GroupState::Dead {
            return Err(HeartbeatError {
                code: ResponseError::CoordinatorNotAvailable,
                message: format!("Group {} is being removed.", self.group_id),
            });
        }
        if self.consumer.is_none() {
            // No consumer group here: this classic group (or a group loaded with offsets but
            // no consumer-group records) knows no member, so one that was in a consumer group
            // rejoins on UNKNOWN_MEMBER_ID. Loaded consumer groups come back with their members.
            if req.member_epoch != 0 {
                return Err(HeartbeatError {
                    code: ResponseError::UnknownMemberId,
                    message: format!("Member {} is not a member of the group.", req.member_id),
                });
            }
            if self.state != GroupState::Empty || !self.pending_members.is_empty() {
                return Err(HeartbeatError {
                    code: ResponseError::GroupIdNotFound,
                    message: format!("Group {} is not a consumer group.", self.group_id),
                });
            }
        }
        let c = self.consumer.get_or_insert_with(ConsumerGroup::new);
        let was_empty = c.is_empty();
        let out = c.heartbeat(req, cfg, topics, now_ms);
        if was_empty != c.is_empty() {
            self.state_timestamp_ms = now_ms;
        }
        out
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn offsets(&self) -> &BTreeMap<(String, i32), CommittedOffset> {
        &self.offsets
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        self.state = to;
        self.state_timestamp_ms = now_ms;
    }

    /// The longest rebalance timeout of the members: how long a rebalance waits for them.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as i64)
            .max()
            .unwrap_or(0)
    }

    fn awaiting_join_count(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    /// Kafka's supportsProtocols: an empty group takes any non-empty protocol list; otherwise
    /// the type must match and one protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(p, _)| self.members.values().all(|m| m.supports(p)))
    }

    /// The protocol every member supports with the most first-choice votes; ties go to the
    /// leader's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&str> = match self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())
        {
            Some(first) => first
                .protocols
                .iter()
                .map(|(p, _)| p.as_str())
                .filter(|p| self.members.values().all(|m| m.supports(p)))
                .collect(),
            None => return None,
        };
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m
                .protocols
                .iter()
                .find(|(p, _)| candidates.contains(&p.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == choice) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (c, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            if !m.supports(protocol) {
                return None;
            }
            topics.extend(parse_subscription(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Whether members of a consumer group may be consuming `topic` (when unknown: yes).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_none_or(|t| t.contains(topic))
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn current_join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.current_member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    /// Kafka's validateCurrentMember: a static member must be the one mapped to its instance
    /// id (else it is a zombie: FENCED_INSTANCE_ID), and the member must exist.
    fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if let Some(iid) = group_instance_id {
            return match self.static_members.get(iid) {
                Some(current) if current != member_id => Some(ResponseError::FencedInstanceId),
                Some(_) => None,
                None => Some(ResponseError::UnknownMemberId),
            };
        }
        (!self.members.contains_key(member_id)).then_some(ResponseError::UnknownMemberId)
    }

    fn accept_joining_member(&self, member_id: &str, cfg: &GroupConfig) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            // Counting members that have rejoined lets the last ones to rejoin be refused when
            // the bound was lowered below the group's size.
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self.awaiting_join_count() < cfg.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < cfg.max_size
            }
        }
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let outcome = self.join_inner(req, cfg, now_ms);
        self.try_complete_join(now_ms);
        self.tick(cfg, now_ms);
        outcome
    }

    fn join_inner(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let done = |id: &str, e| Outcome::Done(JoinResult::error(id, e));
        match &self.consumer {
            Some(c) if !c.is_empty() => {
                return done(&req.member_id, ResponseError::GroupIdNotFound)
            }
            Some(_) => {
                self.consumer = None;
                self.consumer_tombstones_due = true;
            }
            None => {}
        }
        if !self.accept_joining_member(&req.member_id, cfg) {
            if self.members.contains_key(&req.member_id) {
                self.remove(&req.member_id);
            }
            return done("", ResponseError::GroupMaxSizeReached);
        }
        if self.state == GroupState::Dead {
            return done(&req.member_id, ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return done(&req.member_id, ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
            let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if let Some(iid) = req.group_instance_id.clone() {
                return match self.static_members.get(&iid).cloned() {
                    Some(old) => {
                        self.replace_static_member_and_rebalance(&old, new_id, req, cfg, now_ms)
                    }
                    None => self.add_member_and_rebalance(new_id, req, cfg, now_ms),
                };
            }
            if req.require_known_member_id {
                // A bound of our own: a flood of id-less joins must not grow the pending set
                // without limit while the group is still empty.
                if self.pending_members.len() >= cfg.max_size {
                    return done("", ResponseError::GroupMaxSizeReached);
                }
                let deadline = now_ms + req.session_timeout_ms.max(0) as i64;
                self.pending_members.insert(new_id.clone(), deadline);
                return done(&new_id, ResponseError::MemberIdRequired);
            }
            return self.add_member_and_rebalance(new_id, req, cfg, now_ms);
        }
        if self.pending_members.contains_key(&req.member_id) {
            if let Some(iid) = &req.group_instance_id {
                if self
                    .static_members
                    .get(iid)
                    .is_some_and(|m| *m != req.member_id)
                {
                    return done(&req.member_id, ResponseError::FencedInstanceId);
                }
            }
            let id = req.member_id.clone();
            return self.add_member_and_rebalance(id, req, cfg, now_ms);
        }
        if let Some(e) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return done(&req.member_id, e);
        }
        let member_id = req.member_id.clone();
        let (is_leader, same) = match self.members.get(&member_id) {
            Some(m) => (
                self.leader_id.as_deref() == Some(member_id.as_str()),
                m.matches(&req.protocols),
            ),
            None => return done(&member_id, ResponseError::UnknownMemberId),
        };
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, cfg, now_ms),
            // The member lost the JoinGroup answer: give it the current generation again.
            GroupState::CompletingRebalance if same => {
                Outcome::Done(self.current_join_result(&member_id, is_leader))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(req, cfg, now_ms),
            // A leader's rejoin forces a rebalance: that is how it reacts to changes (new
            // partitions) that do not show in its metadata.
            GroupState::Stable if is_leader || !same => {
                self.update_member_and_rebalance(req, cfg, now_ms)
            }
            GroupState::Stable => Outcome::Done(self.current_join_result(&member_id, false)),
            GroupState::Empty | GroupState::Dead => {
                done(&member_id, ResponseError::UnknownMemberId)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(iid) = &req.group_instance_id {
            self.static_members.insert(iid.clone(), member_id.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        self.pending_members.remove(&member_id);
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                session_timeout_ms: req.session_timeout_ms,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(tx),
                awaiting_sync: None,
                heartbeat_deadline_ms: now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
                is_new: true,
            },
        );
        self.maybe_prepare_rebalance(cfg, now_ms);
        Outcome::Wait(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            // A retried JoinGroup supersedes the earlier one, which is answered now rather
            // than left hanging.
            if let Some(old) = m.awaiting_join.replace(tx) {
                let _ = old.send(JoinResult::error(
                    &req.member_id,
                    ResponseError::RebalanceInProgress,
                ));
            }
        }
        self.maybe_prepare_rebalance(cfg, now_ms);
        Outcome::Wait(rx)
    }

    /// KIP-345: a static member that comes back without its member id takes over its old
    /// entry under a new id; the old id is fenced. A stable group whose protocol choice stays
    /// the same does not rebalance: the member gets the current generation once the new
    /// mapping is durable.
    fn replace_static_member_and_rebalance(
        &mut self,
        old_member_id: &str,
        new_member_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<JoinResult> {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        let Some(iid) = req.group_instance_id.clone() else {
            return Outcome::Done(JoinResult::error("", ResponseError::UnknownServerError));
        };
        self.replace_member_id(&iid, old_member_id, &new_member_id);
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&new_member_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
            m.awaiting_join = Some(tx);
        }
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    let value = self.group_value(None);
                    self.effects.push(Effect::StoreGroup {
                        value,
                        then: AfterStore::StaticRejoin {
                            member_id: new_member_id,
                            old_member_id: old_member_id.to_string(),
                            group_instance_id: iid,
                            generation_id: self.generation_id,
                            leader_id: current_leader,
                        },
                    });
                } else {
                    self.maybe_prepare_rebalance(cfg, now_ms);
                }
            }
            GroupState::CompletingRebalance => self.maybe_prepare_rebalance(cfg, now_ms),
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => self.maybe_prepare_rebalance(cfg, now_ms),
        }
        Outcome::Wait(rx)
    }

    fn replace_member_id(&mut self, group_instance_id: &str, old: &str, new: &str) {
        let Some(mut m) = self.members.remove(old) else {
            return;
        };
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(old, ResponseError::FencedInstanceId));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        m.member_id = new.to_string();
        self.members.insert(new.to_string(), m);
        if self.leader_id.as_deref() == Some(old) {
            self.leader_id = Some(new.to_string());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(new.to_string());
        }
        self.static_members
            .insert(group_instance_id.to_string(), new.to_string());
    }

    fn maybe_prepare_rebalance(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(cfg, now_ms);
        }
    }

    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress, now_ms);
        }
        self.sync_deadline_ms = None;
        self.pending_sync.clear();
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        if self.state == GroupState::Empty {
            let delay = cfg.initial_rebalance_delay_ms;
            self.join_deadline_ms = Some(now_ms + delay);
            self.initial_delay_remaining_ms = Some((rebalance_timeout_ms - delay).max(0));
            self.new_member_added = false;
        } else {
            self.join_deadline_ms = Some(now_ms + rebalance_timeout_ms);
            self.initial_delay_remaining_ms = None;
        }
        self.transition(GroupState::PreparingRebalance, now_ms);
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "preparing to rebalance");
    }

    /// Completes the join phase once every member has rejoined and no KIP-394 member is
    /// still expected (an initial delay always runs its course).
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_remaining_ms.is_none()
            && self.pending_members.is_empty()
            && self.awaiting_join_count() == self.members.len()
        {
            self.complete_join(now_ms);
        }
    }

    fn on_join_deadline(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if let Some(remaining) = self.initial_delay_remaining_ms {
            // Members still arriving: wait a further delay, within the rebalance timeout.
            if self.new_member_added && remaining > 0 {
                self.new_member_added = false;
                let delay = cfg.initial_rebalance_delay_ms.min(remaining);
                self.initial_delay_remaining_ms = Some((remaining - delay).max(0));
                self.join_deadline_ms = Some(now_ms + delay);
                return;
            }
        }
        self.complete_join(now_ms);
    }

    fn complete_join(&mut self, now_ms: i64) {
        self.initial_delay_remaining_ms = None;
        self.join_deadline_ms = None;
        // Dynamic members that did not rejoin in time are out; static ones keep their place
        // until their session times out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.group_id, member = %id, "member did not rejoin in time; removed");
            self.remove(&id);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them to rejoin or
            // for their sessions to end.
            self.join_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
            return;
        }
        self.init_next_generation(now_ms);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.group_id, generation = self.generation_id, "group is empty");
            let value = self.group_value(None);
            self.effects.push(Effect::StoreGroup {
                value,
                then: AfterStore::Nothing,
            });
            return;
        }
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""), "rebalance: join phase complete");
        let all = self.current_member_metadata();
        let leader = self.leader_id.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = JoinResult {
                error: None,
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader_id: leader.clone(),
                member_id: id.clone(),
                members: if id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
            };
            if let Some(m) = self.members.get_mut(&id) {
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(result);
                }
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
                m.is_new = false;
            }
            self.pending_sync.insert(id);
        }
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.member_id.clone())
        {
            Some(id) => {
                self.leader_id = Some(id);
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = self.generation_id.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
    }

    fn reset_and_propagate_assignment_error(&mut self, e: ResponseError, now_ms: i64) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(e), now_ms);
    }

    fn propagate_assignment(&mut self, error: Option<ResponseError>, now_ms: i64) {
        let (protocol_type, protocol_name) = match error {
            None => (self.protocol_type.clone(), self.protocol_name.clone()),
            Some(_) => (None, None),
        };
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: m.assignment.clone(),
                });
                // Expiry was suspended while the member waited; its session starts afresh.
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
            }
        }
    }

    /// Removes a member (no rebalance by itself).
    fn remove(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(iid) = &m.group_instance_id {
                if self.static_members.get(iid).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(iid);
                }
            }
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    fn remove_member_and_update(&mut self, member_id: &str, cfg: &GroupConfig, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            // A removed member's waiting request learns it must join again.
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error("", ResponseError::UnknownMemberId));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
        }
        self.remove(member_id);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(cfg, now_ms)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
        }
    }

    pub fn sync(
        &mut self,
        req: SyncRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Outcome<SyncResult> {
        let outcome = self.sync_inner(req, now_ms);
        self.tick(cfg, now_ms);
        outcome
    }

    fn sync_inner(&mut self, req: SyncRequest, now_ms: i64) -> Outcome<SyncResult> {
        let fail = |e| Outcome::Done(SyncResult::error(e));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(e) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(e);
        }
        if req.generation_id != self.generation_id {
            return fail(ResponseError::IllegalGeneration);
        }
        if req.protocol_type.is_some() && req.protocol_type != self.protocol_type {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.protocol_name.is_some() && req.protocol_name != self.protocol_name {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    if let Some(old) = m.awaiting_sync.replace(tx) {
                        let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline_ms = None;
                }
                if self.leader_id.as_deref() == Some(req.member_id.as_str()) {
                    // Members the leader left out get an empty assignment; ids that are not
                    // members are ignored.
                    let mut given: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
                    let assignments: BTreeMap<String, Bytes> = self
                        .members
                        .keys()
                        .map(|id| (id.clone(), given.remove(id).unwrap_or_default()))
                        .collect();
                    let value = self.group_value(Some(&assignments));
                    self.effects.push(Effect::StoreGroup {
                        value,
                        then: AfterStore::CompleteSync {
                            generation_id: self.generation_id,
                            assignments,
                        },
                    });
                }
                Outcome::Wait(rx)
            }
            GroupState::Stable => {
                self.pending_sync.remove(&req.member_id);
                if self.pending_sync.is_empty() {
                    self.sync_deadline_ms = None;
                }
                match self.members.get_mut(&req.member_id) {
                    Some(m) => {
                        m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
                        Outcome::Done(SyncResult {
                            error: None,
                            protocol_type: self.protocol_type.clone(),
                            protocol_name: self.protocol_name.clone(),
                            assignment: m.assignment.clone(),
                        })
                    }
                    None => fail(ResponseError::UnknownMemberId),
                }
            }
        }
    }

    /// The outcome of an [`Effect::StoreGroup`]. A completed sync only applies if the group
    /// is still in the generation it was for.
    pub fn after_store(
        &mut self,
        then: AfterStore,
        result: Result<(), ResponseError>,
        cfg: &GroupConfig,
        now_ms: i64,
    ) {
        match then {
            AfterStore::Nothing => {
                if let Err(e) = result {
                    tracing::warn!(group = %self.group_id, error = ?e, "could not persist the group's metadata");
                }
            }
            AfterStore::CompleteSync {
                generation_id,
                assignments,
            } => {
                if self.state != GroupState::CompletingRebalance
                    || generation_id != self.generation_id
                {
                    return;
                }
                match result {
                    Ok(()) => {
                        for (id, a) in assignments {
                            if let Some(m) = self.members.get_mut(&id) {
                                m.assignment = a;
                            }
                        }
                        self.propagate_assignment(None, now_ms);
                        self.transition(GroupState::Stable, now_ms);
                        tracing::info!(group = %self.group_id, generation = self.generation_id, "group is stable");
                    }
                    Err(e) => {
                        tracing::warn!(group = %self.group_id, error = ?e, "could not persist the assignment; rebalancing again");
                        self.reset_and_propagate_assignment_error(e, now_ms);
                        self.maybe_prepare_rebalance(cfg, now_ms);
                    }
                }
            }
            AfterStore::StaticRejoin {
                member_id,
                old_member_id,
                group_instance_id,
                generation_id,
                leader_id,
            } => {
                if self.state != GroupState::Stable || generation_id != self.generation_id {
                    // A rebalance started meanwhile; the member's JoinGroup is part of it.
                    return;
                }
                match result {
                    Ok(()) => {
                        let result = JoinResult {
                            // The old leader id: the returning member must not believe it
                            // leads and compute an assignment a stable group never sends.
                            leader_id,
                            ..self.current_join_result(&member_id, false)
                        };
                        if let Some(tx) = self
                            .members
                            .get_mut(&member_id)
                            .and_then(|m| m.awaiting_join.take())
                        {
                            let _ = tx.send(result);
                        }
                    }
                    Err(e) => {
                        // Not durable: restore the old id so the group matches the log.
                        let waiter = self
                            .members
                            .get_mut(&member_id)
                            .and_then(|m| m.awaiting_join.take());
                        self.replace_member_id(&group_instance_id, &member_id, &old_member_id);
                        if let Some(tx) = waiter {
                            let _ = tx.send(JoinResult::error("", e));
                        }
                    }
                }
            }
        }
        self.tick(cfg, now_ms);
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(e) = self.validate_member(member_id, group_instance_id) {
            return Err(e);
        }
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let state = self.state;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        match state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
                Ok(())
            }
            GroupState::PreparingRebalance => {
                m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
                Err(ResponseError::RebalanceInProgress)
            }
        }
    }

    /// LeaveGroup for each (member id, instance id); a member id of "" removes a static
    /// member by its instance id (administrative removal). Per-member errors, in order.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut out = Vec::with_capacity(leaving.len());
        for (member_id, iid) in leaving {
            if member_id.is_empty() {
                match iid
                    .as_ref()
                    .and_then(|i| self.static_members.get(i).cloned())
                {
                    Some(current) => {
                        tracing::info!(group = %self.group_id, member = %current, "static member removed by LeaveGroup");
                        self.remove_member_and_update(&current, cfg, now_ms);
                        out.push(None);
                    }
                    None => out.push(Some(ResponseError::UnknownMemberId)),
                }
            } else if self.pending_members.contains_key(member_id) {
                self.pending_members.remove(member_id);
                self.try_complete_join(now_ms);
                out.push(None);
            } else if let Some(e) = self.validate_member(member_id, iid.as_deref()) {
                out.push(Some(e));
            } else {
                tracing::info!(group = %self.group_id, member = %member_id, "member left the group");
                self.remove_member_and_update(member_id, cfg, now_ms);
                out.push(None);
            }
        }
        self.tick(cfg, now_ms);
        Ok(out)
    }

    /// Answers every waiting JoinGroup and SyncGroup with `e` (the coordinator stops).
    pub fn fail_waiters(&mut self, e: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(&m.member_id, e));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(e));
            }
        }
    }

    /// Runs whatever is due at `now_ms`: expired sessions, lapsed KIP-394 ids, members that
    /// never synced, the end of the join phase.
    pub fn tick(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if let Some(c) = &mut self.consumer {
            let had_members = !c.is_empty();
            c.tick(now_ms);
            if had_members && c.is_empty() {
                self.state_timestamp_ms = now_ms;
            }
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.can_expire() && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "member session expired; removing it");
            self.remove_member_and_update(&id, cfg, now_ms);
        }
        let lapsed: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            self.pending_members.remove(&id);
            self.try_complete_join(now_ms);
        }
        if self.sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            self.sync_deadline_ms = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
            {
                let missing: Vec<String> = self.pending_sync.drain().collect();
                for id in &missing {
                    tracing::info!(group = %self.group_id, member = %id, "member did not sync in time; removing it");
                    if let Some(tx) = self
                        .members
                        .get_mut(id)
                        .and_then(|m| m.awaiting_sync.take())
                    {
                        let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
                    }
                    self.remove(id);
                }
                self.prepare_rebalance(cfg, now_ms);
            }
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            self.on_join_deadline(cfg, now_ms);
        }
    }

    /// The earliest moment [`Group::tick`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter(|m| m.can_expire())
            .map(|m| m.heartbeat_deadline_ms);
        let join = self
            .join_deadline_ms
            .filter(|_| self.state == GroupState::PreparingRebalance);
        members
            .chain(self.pending_members.values().copied())
            .chain(self.sync_deadline_ms)
            .chain(join)
            .chain(self.consumer.as_ref().and_then(|c| c.next_deadline_ms()))
            .min()
    }
}

/// The topics of a consumer's subscription (ConsumerProtocolSubscription: a version, then
/// the fields of that version; newer versions only append fields).
pub fn parse_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    if metadata.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    if version < 0 {
        return None;
    }
    let mut body = Bytes::copy_from_slice(&metadata[2..]);
    let sub = ConsumerProtocolSubscription::decode(&mut body, version.min(3)).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

mod describe;
mod offsets;

#[cfg(test)]
mod tests;
