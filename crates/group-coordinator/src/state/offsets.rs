//! A group's committed offsets: Kafka's offset-commit validation, retention and deletion.

use super::*;

impl Group {
    /// Kafka's validateOffsetCommit plus the state checks of doCommitOffsets. A commit from
    /// a member counts as a heartbeat.
    pub fn validate_offset_commit(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        api_version: i16,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(c) = &self.consumer {
            return c.validate_offset_commit(member_id, generation_id, api_version);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            // A simple commit (an admin client, or a consumer that assigns its own partitions)
            // is taken whatever member id it carries: librdkafka's consumer-protocol client
            // sends the id it generated for itself even when it never joined.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            if let Some(e) = self.validate_member(member_id, group_instance_id) {
                return Err(e);
            }
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            // Only members may commit for a group that has members.
            return Err(ResponseError::UnknownMemberId);
        }
        match self.state {
            GroupState::Empty => Ok(()),
            // A commit during PreparingRebalance is still taken: the member learns of the
            // rebalance from its next heartbeat.
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms.max(0) as i64;
                }
                Ok(())
            }
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Applies an appended commit, unless a later record for the partition is already applied.
    pub fn apply_offset(&mut self, topic: &str, partition: i32, committed: CommittedOffset) {
        let key = (topic.to_string(), partition);
        match self.offsets.get(&key) {
            Some(current) if current.record_offset > committed.record_offset => {}
            _ => {
                self.offsets.insert(key, committed);
            }
        }
    }

    pub fn remove_offset(&mut self, topic: &str, partition: i32) -> bool {
        self.offsets
            .remove(&(topic.to_string(), partition))
            .is_some()
    }

    /// DeleteGroups: only an empty group goes; returns the offsets that went with it.
    pub fn mark_deleted(&mut self, now_ms: i64) -> Result<Vec<(String, i32)>, ResponseError> {
        if self.consumer.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(ResponseError::NonEmptyGroup);
        }
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.transition(GroupState::Dead, now_ms);
                let keys = self.offsets.keys().cloned().collect();
                self.offsets.clear();
                Ok(keys)
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// OffsetDelete (KIP-496): which of `partitions` may go. A consumer group with members
    /// keeps the offsets of topics it subscribes to.
    pub fn offsets_deletable(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if let Some(c) = self
            .consumer
            .as_ref()
            .filter(|_| self.state != GroupState::Dead)
        {
            return Ok(partitions
                .iter()
                .map(|(t, _)| {
                    c.is_subscribed_to(t)
                        .then_some(ResponseError::GroupSubscribedToTopic)
                })
                .collect());
        }
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => Ok(vec![None; partitions.len()]),
            _ if self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => Ok(partitions
                .iter()
                .map(|(t, _)| {
                    self.is_subscribed_to(t)
                        .then_some(ResponseError::GroupSubscribedToTopic)
                })
                .collect()),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Offsets past retention (Kafka's removeExpiredOffsets, KIP-211): of an empty group,
    /// counted from when it became empty; of a stable consumer group, only topics it no longer
    /// subscribes to; of a group that only stores offsets, from each commit.
    pub fn expire_offsets(&mut self, retention_ms: i64, now_ms: i64) -> Vec<(String, i32)> {
        let since_empty = self.state_timestamp_ms;
        let expired: Vec<(String, i32)> = if let Some(c) = &self.consumer {
            // A consumer group keeps the offsets of topics a member subscribes to; the others
            // expire from their commit, as in Kafka's new coordinator.
            self.offsets
                .iter()
                .filter(|((t, _), o)| {
                    !c.is_subscribed_to(t) && now_ms - o.commit_timestamp_ms >= retention_ms
                })
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            match (self.protocol_type.as_deref(), self.state) {
                (Some(_), GroupState::Empty) => self
                    .offsets
                    .keys()
                    .filter(|_| now_ms - since_empty >= retention_ms)
                    .cloned()
                    .collect(),
                (Some(CONSUMER_PROTOCOL_TYPE), GroupState::Stable)
                    if self.subscribed_topics.is_some() =>
                {
                    self.offsets
                        .iter()
                        .filter(|((t, _), o)| {
                            !self.is_subscribed_to(t)
                                && now_ms - o.commit_timestamp_ms >= retention_ms
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                }
                (None, _) => self
                    .offsets
                    .iter()
                    .filter(|(_, o)| now_ms - o.commit_timestamp_ms >= retention_ms)
                    .map(|(k, _)| k.clone())
                    .collect(),
                _ => Vec::new(),
            }
        };
        for k in &expired {
            self.offsets.remove(k);
        }
        expired
    }

    /// An empty group without offsets is forgotten (Kafka marks it Dead).
    pub fn mark_dead_if_unused(&mut self, now_ms: i64) -> bool {
        if self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
            && self.consumer.as_ref().is_none_or(|c| c.is_empty())
        {
            self.transition(GroupState::Dead, now_ms);
            return true;
        }
        false
    }
}
