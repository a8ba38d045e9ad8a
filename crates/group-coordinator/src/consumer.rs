//! A consumer group of the next-generation protocol (KIP-848): the coordinator assigns the
//! partitions, members only heartbeat. After Kafka's `ConsumerGroup`, its heartbeat handling
//! in `GroupMetadataManager` and its `CurrentAssignmentBuilder`.
//!
//! Three epochs: the **group epoch** rises whenever membership, a subscription or the
//! subscribed topics' partitions change; the **assignment epoch** is the group epoch the
//! target assignment was computed for; each **member epoch** is the epoch the member has
//! reconciled to. A member moves to the target in steps that never let two members own a
//! partition at once: first it is asked to revoke what it must give up (its epoch stays until
//! it confirms by no longer reporting them), then it gets the new epoch and whatever of its
//! target is free; partitions still held by others follow on later heartbeats.
//!
//! Like [`super::state`], no I/O and no clock: `now_ms` comes in, deadlines go out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proto_kafka::ResponseError;

use super::assignor::{Assignment, Assignor, MemberSpec, TopicMeta};
use super::consumer_records::{CurrentAssignment, MemberMetadata};
use super::GroupConfig;

/// The member epoch of a member leaving the group for good.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch of a static member leaving for a while: its assignment is kept for it
/// until its session times out.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Where a member is on its way to the target assignment (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Asked to revoke partitions; waiting for the member to confirm.
    UnrevokedPartitions,
    /// At the target epoch, but some target partitions are still owned by other members.
    UnreleasedPartitions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// Sorted, without duplicates.
    pub subscribed_topic_names: Vec<String>,
    /// Topics matching it (whole names, internal topics excepted) are subscribed too.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    session_deadline_ms: i64,
    /// Set while the member owes a revocation: if it has not revoked by then, it is fenced.
    rebalance_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    fn new(member_id: &str) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: 0,
            rebalance_deadline_ms: None,
        }
    }

    fn same_metadata(&self, m: &MemberMetadata) -> bool {
        self.instance_id == m.instance_id
            && self.rack_id == m.rack_id
            && self.client_id == m.client_id
            && self.client_host == m.client_host
            && self.subscribed_topic_names == m.subscribed_topic_names
            && self.subscribed_topic_regex == m.subscribed_topic_regex
            && self.rebalance_timeout_ms == m.rebalance_timeout_ms
            && self.server_assignor == m.server_assignor
    }

    fn metadata(&self) -> MemberMetadata {
        MemberMetadata {
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            subscribed_topic_names: self.subscribed_topic_names.clone(),
            subscribed_topic_regex: self.subscribed_topic_regex.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            server_assignor: self.server_assignor.clone(),
        }
    }

    /// Kafka's MemberState codes.
    fn state_code(&self) -> i8 {
        match self.state {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn same_current(&self, c: &CurrentAssignment) -> bool {
        self.member_epoch == c.member_epoch
            && self.previous_member_epoch == c.previous_member_epoch
            && self.state_code() == c.state
            && self.assigned == c.assigned
            && self.pending_revocation == c.pending_revocation
    }

    fn current(&self) -> CurrentAssignment {
        CurrentAssignment {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state_code(),
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
        }
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    #[cfg(test)]
    fn owns(&self, topic: &uuid::Uuid, partition: i32) -> bool {
        let has = |a: &Assignment| a.get(topic).is_some_and(|p| p.contains(&partition));
        has(&self.assigned) || has(&self.pending_revocation)
    }
}

/// A change for `__consumer_offsets` (see [`super::consumer_records`]); None is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    GroupEpoch(Option<i32>),
    AssignmentEpoch(Option<i32>),
    Member(String, Option<MemberMetadata>),
    Target(String, Option<Assignment>),
    Current(String, Option<CurrentAssignment>),
}

/// What `__consumer_offsets` holds of a group: the records [`ConsumerGroup::take_changes`]
/// last produced (or the load found).
#[derive(Debug, Default, Clone)]
pub struct Persisted {
    pub group_epoch: Option<i32>,
    pub assignment_epoch: Option<i32>,
    pub members: BTreeMap<String, MemberMetadata>,
    pub targets: BTreeMap<String, Assignment>,
    pub currents: BTreeMap<String, CurrentAssignment>,
}

impl Persisted {
    /// Applies one loaded record.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::GroupEpoch(e) => self.group_epoch = e,
            Change::AssignmentEpoch(e) => self.assignment_epoch = e,
            Change::Member(id, m) => put(&mut self.members, id, m),
            Change::Target(id, t) => put(&mut self.targets, id, t),
            Change::Current(id, c) => put(&mut self.currents, id, c),
        }
    }
}

fn put<V>(map: &mut BTreeMap<String, V>, key: String, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// A ConsumerGroupHeartbeat, as the coordinator needs it. `None` fields did not change since
/// the member's last heartbeat.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when the request was a full one or the member's assignment changed.
    pub assignment: Option<Assignment>,
}

/// An error code and the message Kafka would send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatError {
    pub code: ResponseError,
    pub message: String,
}

fn err(code: ResponseError, message: impl Into<String>) -> HeartbeatError {
    HeartbeatError {
        code,
        message: message.into(),
    }
}

/// The state names Kafka reports for consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// The topics a group can subscribe to, as the current metadata has them.
pub trait TopicSource {
    fn topic(&self, name: &str) -> Option<TopicMeta>;
    /// Every topic a regex subscription may match (internal topics excepted).
    fn names(&self) -> Vec<String>;
}

pub type TopicLookup<'a> = &'a dyn TopicSource;

/// Longest subscription regex accepted: bounds compile time and the cache.
pub const MAX_REGEX_BYTES: usize = 1024;

/// A subscription regex as Kafka applies it: to whole topic names.
fn compile_regex(pattern: &str) -> Result<regex::Regex, HeartbeatError> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(err(
            ResponseError::InvalidRegularExpression,
            format!("SubscribedTopicRegex is longer than {MAX_REGEX_BYTES} bytes."),
        ));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            err(
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex {pattern} is not a valid regular expression: {e}"),
            )
        })
}

#[derive(Debug, Default)]
pub struct ConsumerGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// Member id → its target assignment at `assignment_epoch`.
    target: BTreeMap<String, Assignment>,
    /// The subscribed topics as of the last epoch bump: a change bumps the epoch again.
    subscription_metadata: BTreeMap<String, TopicMeta>,
    assignor: Option<Assignor>,
    /// Compiled subscription regexes of the members, by pattern.
    regexes: HashMap<String, regex::Regex>,
    /// The topics each regex matched at the last heartbeat.
    regex_matches: BTreeMap<String, Vec<String>>,
    persisted: Persisted,
    /// Restored from records, whose subscribed-topic metadata Strom does not keep: the first
    /// heartbeat takes the image's as it is when the loaded target assignment still covers
    /// it exactly, instead of bumping the epoch.
    metadata_unknown: bool,
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup::default()
    }

    /// The group as `__consumer_offsets` left it. Members carry on where they were; their
    /// sessions start again now, so those that are gone expire after the session timeout.
    pub fn restore(p: Persisted, cfg: &GroupConfig, now_ms: i64) -> ConsumerGroup {
        let mut g = ConsumerGroup {
            group_epoch: p.group_epoch.unwrap_or(0),
            assignment_epoch: p.assignment_epoch.unwrap_or(0),
            ..ConsumerGroup::default()
        };
        for (id, meta) in &p.members {
            let mut m = ConsumerMember::new(id);
            m.instance_id = meta.instance_id.clone();
            m.rack_id = meta.rack_id.clone();
            m.client_id = meta.client_id.clone();
            m.client_host = meta.client_host.clone();
            m.subscribed_topic_names = meta.subscribed_topic_names.clone();
            m.subscribed_topic_regex = meta.subscribed_topic_regex.clone();
            m.rebalance_timeout_ms = meta.rebalance_timeout_ms;
            m.server_assignor = meta.server_assignor.clone();
            if let Some(c) = p.currents.get(id) {
                m.member_epoch = c.member_epoch;
                m.previous_member_epoch = c.previous_member_epoch;
                m.state = match c.state {
                    1 => MemberState::UnrevokedPartitions,
                    2 => MemberState::UnreleasedPartitions,
                    _ => MemberState::Stable,
                };
                m.assigned = c.assigned.clone();
                m.pending_revocation = c.pending_revocation.clone();
            }
            m.session_deadline_ms = now_ms + cfg.consumer_session_timeout_ms;
            if m.state == MemberState::UnrevokedPartitions {
                m.rebalance_deadline_ms = Some(now_ms + m.rebalance_timeout_ms.max(0) as i64);
            }
            if let Some(iid) = &m.instance_id {
                g.static_members.insert(iid.clone(), id.clone());
            }
            if let Some(t) = p.targets.get(id) {
                g.target.insert(id.clone(), t.clone());
            }
            g.members.insert(id.clone(), m);
        }
        g.persisted = p;
        g.metadata_unknown = !g.members.is_empty();
        g
    }

    /// What changed since the last call, for `__consumer_offsets`: Kafka's records of the
    /// group, in an order whose replay gives this state.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        let p = &mut self.persisted;
        if p.group_epoch != Some(self.group_epoch) {
            p.group_epoch = Some(self.group_epoch);
            out.push(Change::GroupEpoch(Some(self.group_epoch)));
        }
        for (id, m) in &self.members {
            if !p.members.get(id).is_some_and(|x| m.same_metadata(x)) {
                let meta = m.metadata();
                p.members.insert(id.clone(), meta.clone());
                out.push(Change::Member(id.clone(), Some(meta)));
            }
        }
        for (id, t) in &self.target {
            if p.targets.get(id) != Some(t) {
                p.targets.insert(id.clone(), t.clone());
                out.push(Change::Target(id.clone(), Some(t.clone())));
            }
        }
        if p.assignment_epoch != Some(self.assignment_epoch) {
            p.assignment_epoch = Some(self.assignment_epoch);
            out.push(Change::AssignmentEpoch(Some(self.assignment_epoch)));
        }
        for (id, m) in &self.members {
            if !p.currents.get(id).is_some_and(|c| m.same_current(c)) {
                let c = m.current();
                p.currents.insert(id.clone(), c.clone());
                out.push(Change::Current(id.clone(), Some(c)));
            }
        }
        let gone_targets: Vec<String> = p
            .targets
            .keys()
            .filter(|id| !self.target.contains_key(*id))
            .cloned()
            .collect();
        for id in gone_targets {
            p.targets.remove(&id);
            out.push(Change::Target(id, None));
        }
        let gone: Vec<String> = p
            .members
            .keys()
            .chain(p.currents.keys())
            .filter(|id| !self.members.contains_key(*id))
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        for id in gone {
            if p.currents.remove(&id).is_some() {
                out.push(Change::Current(id.clone(), None));
            }
            if p.members.remove(&id).is_some() {
                out.push(Change::Member(id, None));
            }
        }
        out
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn target_of(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }

    /// The assignor of the last target assignment, or the one the next would use.
    pub fn assignor_name(&self, cfg: &GroupConfig) -> &'static str {
        self.assignor
            .unwrap_or_else(|| self.pick_assignor(cfg))
            .name()
    }

    /// The assignor of the current target assignment; empty before the first one.
    pub fn assignor_name_or_empty(&self) -> &'static str {
        self.assignor.map_or("", |a| a.name())
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .all(|m| m.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Stable
        } else {
            ConsumerGroupState::Reconciling
        }
    }

    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| {
            m.subscribed_topic_names
                .binary_search_by(|t| t.as_str().cmp(topic))
                .is_ok()
                || m.subscribed_topic_regex
                    .as_ref()
                    .and_then(|r| self.regexes.get(r))
                    .is_some_and(|r| r.is_match(topic))
        })
    }

    /// A member's topics: its names and what its regex matched, sorted, without duplicates.
    fn member_topics(&self, m: &ConsumerMember) -> Vec<String> {
        let Some(matched) = m
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| self.regex_matches.get(r))
        else {
            return m.subscribed_topic_names.clone();
        };
        let mut all: Vec<String> = m
            .subscribed_topic_names
            .iter()
            .chain(matched)
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The members as the assignors see them, with `topics` from
    /// [`ConsumerGroup::all_member_topics`] and the current target as the stickiness hint.
    fn member_specs<'a>(&'a self, topics: &'a [Vec<String>]) -> Vec<MemberSpec<'a>> {
        self.members
            .values()
            .zip(topics)
            .map(|(m, topics)| MemberSpec {
                member_id: &m.member_id,
                topics,
                current: self.target.get(&m.member_id),
            })
            .collect()
    }

    /// [`ConsumerGroup::member_topics`] of every member, in member order.
    fn all_member_topics(&self) -> Vec<Vec<String>> {
        self.members
            .values()
            .map(|m| self.member_topics(m))
            .collect()
    }

    /// Whether the target assignment gives out exactly the partitions of `metadata`, each to
    /// a member subscribed to it.
    fn target_covers(&self, metadata: &BTreeMap<String, TopicMeta>) -> bool {
        let member_topics = self.all_member_topics();
        let specs = self.member_specs(&member_topics);
        let mut target = self.target.clone();
        for m in self.members.keys() {
            target.entry(m.clone()).or_default();
        }
        super::assignor::check_complete(&specs, metadata, &target)
    }

    /// Matches every member's regex against the topics, compiling new ones and forgetting
    /// those no member uses any more.
    fn resolve_regexes(&mut self, topics: TopicLookup<'_>) {
        let used: BTreeSet<String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.clone())
            .collect();
        self.regexes.retain(|p, _| used.contains(p));
        self.regex_matches.retain(|p, _| used.contains(p));
        if used.is_empty() {
            return;
        }
        let names = topics.names();
        for pattern in used {
            let re = match self.regexes.get(&pattern) {
                Some(re) => re.clone(),
                None => match compile_regex(&pattern) {
                    Ok(re) => {
                        self.regexes.insert(pattern.clone(), re.clone());
                        re
                    }
                    Err(_) => continue,
                },
            };
            let matched: Vec<String> = names.iter().filter(|n| re.is_match(n)).cloned().collect();
            self.regex_matches.insert(pattern, matched);
        }
    }

    /// Handles one ConsumerGroupHeartbeat (join, heartbeat, or leave).
    pub fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        cfg: &GroupConfig,
        topics: TopicLookup<'_>,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        validate(&req, cfg)?;
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
            || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
        {
            return self.leave(&req, cfg);
        }
        let joining = req.member_epoch == 0;
        let member = self.member_for(&req, cfg)?;
        let mut updated = member.clone();
        if let Some(iid) = &req.instance_id {
            updated.instance_id = Some(iid.clone());
        }
        if let Some(rack) = &req.rack_id {
            updated.rack_id = Some(rack.clone());
        }
        if req.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            updated.server_assignor = Some(a.clone());
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            updated.subscribed_topic_names = names;
        }
        if let Some(r) = &req.subscribed_topic_regex {
            updated.subscribed_topic_regex = (!r.is_empty()).then(|| r.clone());
        }
        updated.client_id = req.client_id.clone();
        updated.client_host = req.client_host.clone();
        let is_new = !self.members.contains_key(&updated.member_id);
        let mut bump = is_new
            || updated.subscribed_topic_names != member.subscribed_topic_names
            || updated.subscribed_topic_regex != member.subscribed_topic_regex
            || updated.server_assignor != member.server_assignor;
        if let Some(iid) = &updated.instance_id {
            self.static_members
                .insert(iid.clone(), updated.member_id.clone());
        }
        self.members
            .insert(updated.member_id.clone(), updated.clone());
        // The subscribed topics' metadata is checked on every heartbeat: a topic created or
        // grown after members subscribed to it bumps the epoch like a subscription change.
        self.resolve_regexes(topics);
        let metadata = self.compute_subscription_metadata(topics);
        if std::mem::take(&mut self.metadata_unknown) && self.target_covers(&metadata) {
            self.subscription_metadata = metadata;
        } else if metadata != self.subscription_metadata {
            self.subscription_metadata = metadata;
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
            tracing::info!(member = %updated.member_id, epoch = self.group_epoch, "consumer group epoch bumped");
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target_assignment(cfg);
        }
        let reconciled = self.reconcile(&updated.member_id, req.owned.as_ref(), now_ms);
        if let Some(m) = self.members.get_mut(&reconciled.member_id) {
            *m = reconciled.clone();
            m.session_deadline_ms = now_ms + cfg.consumer_session_timeout_ms;
        }
        let full = joining
            || (req.rebalance_timeout_ms != -1
                && req.subscribed_topic_names.is_some()
                && req.owned.is_some());
        Ok(HeartbeatResponse {
            member_id: reconciled.member_id.clone(),
            member_epoch: reconciled.member_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms as i32,
            assignment: (full || reconciled.assigned != member.assigned)
                .then(|| reconciled.assigned.clone()),
        })
    }

    /// The member a non-leaving heartbeat is about, created or replaced on a join; checks its
    /// epoch (Kafka's getOrMaybeSubscribe*ConsumerGroupMember).
    fn member_for(
        &mut self,
        req: &HeartbeatRequest,
        cfg: &GroupConfig,
    ) -> Result<ConsumerMember, HeartbeatError> {
        let joining = req.member_epoch == 0;
        if joining {
            let known = self.members.contains_key(&req.member_id)
                || req
                    .instance_id
                    .as_ref()
                    .is_some_and(|i| self.static_members.contains_key(i));
            if !known && self.members.len() >= cfg.consumer_max_size {
                return Err(err(
                    ResponseError::GroupMaxSizeReached,
                    format!(
                        "The consumer group has reached its maximum capacity of {} members.",
                        cfg.consumer_max_size
                    ),
                ));
            }
        }
        if let Some(iid) = &req.instance_id {
            let existing = self.static_members.get(iid).cloned();
            if joining {
                let Some(old_id) = existing else {
                    return Ok(self.fresh_member(&req.member_id));
                };
                let Some(old) = self.members.get(&old_id).cloned() else {
                    return Ok(self.fresh_member(&req.member_id));
                };
                if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    return Err(err(
                        ResponseError::UnreleasedInstanceId,
                        format!(
                            "Static member {old_id} with instance id {iid} is still active; \
                             it must leave before another member takes its instance id."
                        ),
                    ));
                }
                // The returning instance takes over the old member and its assignment.
                self.members.remove(&old_id);
                let target = self.target.remove(&old_id);
                let mut m = old;
                m.member_id = req.member_id.clone();
                m.member_epoch = 0;
                m.previous_member_epoch = 0;
                if let Some(t) = target {
                    self.target.insert(req.member_id.clone(), t);
                }
                tracing::info!(member = %req.member_id, instance = %iid, replaced = %old_id, "static member rejoined");
                return Ok(m);
            }
            match existing {
                None => {
                    return Err(err(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {iid} is unknown."),
                    ))
                }
                Some(id) if id != req.member_id => {
                    return Err(err(
                        ResponseError::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {iid} was fenced by member {id}.",
                            req.member_id
                        ),
                    ))
                }
                Some(_) => {}
            }
        } else if joining {
            return Ok(self.fresh_member(&req.member_id));
        }
        let member = self.members.get(&req.member_id).cloned().ok_or_else(|| {
            err(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of the group.", req.member_id),
            )
        })?;
        check_epoch(&member, req.member_epoch, req.owned.as_ref())?;
        Ok(member)
    }

    /// A member joining with epoch 0. A member id the group already knows is a member that
    /// lost track (it sent no owned partitions): it starts over.
    fn fresh_member(&mut self, member_id: &str) -> ConsumerMember {
        if self.remove_member(member_id) {
            self.group_epoch += 1;
        }
        tracing::info!(member = %member_id, "member joins the consumer group");
        ConsumerMember::new(member_id)
    }

    fn leave(
        &mut self,
        req: &HeartbeatRequest,
        cfg: &GroupConfig,
    ) -> Result<HeartbeatResponse, HeartbeatError> {
        let member_id = match &req.instance_id {
            Some(iid) => match self.static_members.get(iid) {
                Some(id) if *id == req.member_id => id.clone(),
                Some(id) => {
                    return Err(err(
                        ResponseError::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {iid} was fenced by member {id}.",
                            req.member_id
                        ),
                    ))
                }
                None => {
                    return Err(err(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {iid} is unknown."),
                    ))
                }
            },
            None => req.member_id.clone(),
        };
        if !self.members.contains_key(&member_id) {
            return Err(err(
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of the group."),
            ));
        }
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // Its partitions stay reserved until its session times out.
            if let Some(m) = self.members.get_mut(&member_id) {
                m.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            }
            tracing::info!(member = %member_id, "static member left for now");
        } else {
            self.remove_member(&member_id);
            self.group_epoch += 1;
            tracing::info!(member = %member_id, epoch = self.group_epoch, "member left the consumer group");
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: cfg.consumer_heartbeat_interval_ms as i32,
            assignment: None,
        })
    }

    fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(m) = self.members.remove(member_id) else {
            return false;
        };
        if let Some(iid) = &m.instance_id {
            if self
                .static_members
                .get(iid)
                .is_some_and(|id| id == member_id)
            {
                self.static_members.remove(iid);
            }
        }
        self.target.remove(member_id);
        true
    }

    fn compute_subscription_metadata(
        &self,
        topics: TopicLookup<'_>,
    ) -> BTreeMap<String, TopicMeta> {
        let names: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| self.member_topics(m))
            .collect();
        names
            .into_iter()
            .filter_map(|n| topics.topic(&n).map(|t| (n, t)))
            .collect()
    }

    /// The assignor most members asked for, or the first configured one.
    fn pick_assignor(&self, cfg: &GroupConfig) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .and_then(|(name, _)| Assignor::from_name(name))
            .or_else(|| cfg.consumer_assignors.first().copied())
            .unwrap_or(Assignor::Uniform)
    }

    fn compute_target_assignment(&mut self, cfg: &GroupConfig) {
        let assignor = self.pick_assignor(cfg);
        let member_topics = self.all_member_topics();
        let specs = self.member_specs(&member_topics);
        let target = assignor.assign(&specs, &self.subscription_metadata);
        self.target = target;
        self.assignor = Some(assignor);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves `member_id` towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(
        &self,
        member_id: &str,
        owned: Option<&Assignment>,
        now_ms: i64,
    ) -> ConsumerMember {
        let Some(member) = self.members.get(member_id) else {
            return ConsumerMember::new(member_id);
        };
        let epoch = self.assignment_epoch;
        if member.is_reconciled_to(epoch) {
            return member.clone();
        }
        let mut next = match member.state {
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(member, member.member_epoch, owned)
            }
            MemberState::UnrevokedPartitions => {
                if owns_any(owned, &member.pending_revocation) {
                    return member.clone();
                }
                self.next_assignment(member, member.member_epoch + 1, owned)
            }
        };
        if next != *member {
            next.previous_member_epoch = member.member_epoch;
        }
        next.rebalance_deadline_ms = match next.state {
            MemberState::UnrevokedPartitions
                if member.state == MemberState::UnrevokedPartitions =>
            {
                member.rebalance_deadline_ms
            }
            MemberState::UnrevokedPartitions => {
                Some(now_ms + next.rebalance_timeout_ms.max(0) as i64)
            }
            _ => None,
        };
        next
    }

    fn next_assignment(
        &self,
        member: &ConsumerMember,
        member_epoch: i32,
        owned: Option<&Assignment>,
    ) -> ConsumerMember {
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let mut assigned = Assignment::new();
        let mut revoke = Assignment::new();
        let mut pending_assign = Assignment::new();
        let mut unreleased = false;
        // What the other members hold (assigned or still to revoke), in one pass: O(partitions)
        // per reconciliation rather than a scan of every member per partition.
        let held: std::collections::HashSet<(uuid::Uuid, i32)> = self
            .members
            .values()
            .filter(|m| m.member_id != member.member_id)
            .flat_map(|m| m.assigned.iter().chain(&m.pending_revocation))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect();
        let topic_ids: BTreeSet<&uuid::Uuid> =
            target.keys().chain(member.assigned.keys()).collect();
        for topic in topic_ids {
            let want = target.get(topic).cloned().unwrap_or_default();
            let have = member.assigned.get(topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let gone: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut add: BTreeSet<i32> = want.difference(&keep).copied().collect();
            let before = add.len();
            add.retain(|p| !held.contains(&(*topic, *p)));
            unreleased |= add.len() != before;
            if !keep.is_empty() {
                assigned.insert(*topic, keep);
            }
            if !gone.is_empty() {
                revoke.insert(*topic, gone);
            }
            if !add.is_empty() {
                pending_assign.insert(*topic, add);
            }
        }
        let mut next = member.clone();
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            next.state = MemberState::UnrevokedPartitions;
            next.member_epoch = member_epoch;
            next.assigned = assigned;
            next.pending_revocation = revoke;
            return next;
        }
        for (topic, parts) in pending_assign {
            assigned.entry(topic).or_default().extend(parts);
        }
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.member_epoch = self.assignment_epoch;
        next.assigned = assigned;
        next.pending_revocation = Assignment::new();
        next
    }

    fn topic_name(&self, id: &uuid::Uuid) -> Option<&str> {
        self.subscription_metadata
            .iter()
            .find(|(_, t)| t.id == *id)
            .map(|(n, _)| n.as_str())
    }

    /// Partitions with their topic names, for describing; a topic no longer subscribed (so
    /// no longer named here) shows with an empty name.
    pub fn named(&self, a: &Assignment) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
        a.iter()
            .map(|(id, parts)| {
                (
                    *id,
                    self.topic_name(id).unwrap_or_default().to_string(),
                    parts.iter().copied().collect(),
                )
            })
            .collect()
    }

    /// OffsetCommit for a consumer group (Kafka's `ConsumerGroup.validateOffsetCommit`).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
    ) -> Result<(), ResponseError> {
        // An admin client or a consumer managing its own partitions may commit while the
        // group has no members.
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if api_version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch v9+ from a member (Kafka's `ConsumerGroup.validateOffsetFetch`).
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        // Only a request without a member id and without an epoch (an admin client, or any
        // client reading offsets for itself) skips the member checks.
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let m = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Fences members whose session lapsed or who did not revoke in time; each departure
    /// bumps the group epoch so the others pick up the partitions.
    pub fn tick(&mut self, now_ms: i64) {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline_ms <= now_ms {
                    Some((m.member_id.clone(), "session timed out"))
                } else if m.rebalance_deadline_ms.is_some_and(|d| d <= now_ms) {
                    Some((m.member_id.clone(), "did not revoke its partitions in time"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            tracing::info!(member = %id, "consumer group member fenced: {why}");
            self.remove_member(&id);
            self.group_epoch += 1;
        }
    }

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.rebalance_deadline_ms))
            .min()
    }
}

/// Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid.
fn validate(req: &HeartbeatRequest, cfg: &GroupConfig) -> Result<(), HeartbeatError> {
    let invalid = |m: &str| Err(err(ResponseError::InvalidRequest, m));
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    // An empty regex means "no regex" (librdkafka sends one with every subscription).
    if let Some(r) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        compile_regex(r)?;
    }
    if req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let no_names = req
                .subscribed_topic_names
                .as_ref()
                .is_none_or(|t| t.is_empty());
            let no_regex = req
                .subscribed_topic_regex
                .as_ref()
                .is_none_or(|r| r.is_empty());
            if no_names && no_regex {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH if req.instance_id.is_none() => {
            return invalid("InstanceId can't be null.");
        }
        e if e > 0 || e == LEAVE_GROUP_MEMBER_EPOCH || e == LEAVE_GROUP_STATIC_MEMBER_EPOCH => {}
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(name) = &req.server_assignor {
        if !Assignor::from_name(name).is_some_and(|a| cfg.consumer_assignors.contains(&a)) {
            let names: Vec<&str> = cfg.consumer_assignors.iter().map(|a| a.name()).collect();
            return Err(err(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Kafka's throwIfConsumerGroupMemberEpochIsInvalid: a member one epoch behind is accepted
/// if it owns no more than it is assigned (the response with its new epoch may have been lost).
fn check_epoch(
    member: &ConsumerMember,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), HeartbeatError> {
    if received > member.member_epoch {
        return Err(err(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one \
                 known by the group coordinator ({}). The member must abandon all its partitions \
                 and rejoin.",
                member.member_epoch
            ),
        ));
    }
    if received < member.member_epoch {
        let subset = owned.is_some_and(|o| is_subset(o, &member.assigned));
        if received != member.previous_member_epoch || !subset {
            return Err(err(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({received}) than the \
                     one known by the group coordinator ({}). The member must abandon all its \
                     partitions and rejoin.",
                    member.member_epoch
                ),
            ));
        }
    }
    Ok(())
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    a.iter().all(|(topic, parts)| {
        parts.is_empty() || b.get(topic).is_some_and(|have| parts.is_subset(have))
    })
}

/// Whether the member's reported partitions include any of `partitions`; a heartbeat that
/// reports nothing (unchanged) is taken to still own them.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned
        .iter()
        .any(|(topic, parts)| partitions.get(topic).is_some_and(|p| !p.is_disjoint(parts)))
}

#[cfg(test)]
mod tests;
