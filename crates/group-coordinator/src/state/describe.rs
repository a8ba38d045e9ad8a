//! A group as DescribeGroups and the group-metadata record show it.

use super::*;

impl Group {
    pub fn summary(&self) -> GroupSummary {
        if let Some(c) = &self.consumer {
            return consumer_summary(c, self.state_name());
        }
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupSummary {
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// The group's record value; `assignments` replaces the members' current ones.
    pub fn group_value(&self, assignments: Option<&BTreeMap<String, Bytes>>) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: if self.members.is_empty() {
                None
            } else {
                self.leader_id.clone()
            },
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: assignments
                        .and_then(|a| a.get(&m.member_id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }
}

/// A consumer group in DescribeGroups' shape, as Kafka shows one (`asDescribedGroup`): the
/// assignor as the protocol, subscriptions and assignments in the consumer protocol's
/// encoding (version 0), so tools made for classic groups can read them.
fn consumer_summary(c: &ConsumerGroup, state: &'static str) -> GroupSummary {
    let encode = |version: i16, body: &dyn Fn(&mut bytes::BytesMut) -> bool| {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        if body(&mut buf) {
            buf.freeze()
        } else {
            Bytes::new()
        }
    };
    let topic = |n: &str| TopicName(StrBytes::from_string(n.to_string()));
    let members = c
        .members()
        .map(|m| {
            let sub = ConsumerProtocolSubscription::default()
                .with_topics(
                m.subscribed_topic_names
                    .iter()
                    .map(|t| StrBytes::from_string(t.clone()))
                    .collect(),
            );
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                c.named(&m.assigned)
                    .into_iter()
                    .map(|(_, name, parts)| {
                        proto_kafka::messages::consumer_protocol_assignment::TopicPartition::default()
                            .with_topic(topic(&name))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
            MemberSummary {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: encode(0, &|b| sub.encode(b, 0).is_ok()),
                assignment: encode(0, &|b| assignment.encode(b, 0).is_ok()),
            }
        })
        .collect();
    GroupSummary {
        state,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocol_data: c.assignor_name_or_empty().to_string(),
        members,
    }
}
