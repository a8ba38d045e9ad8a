//! The `__consumer_offsets` records of consumer-protocol (KIP-848) groups, in Kafka's schemas
//! (keys non-flexible, values flexible version 0), so a restarted coordinator finds its
//! members, epochs and assignments as Kafka's does:
//!
//! | key (version)                                   | value                                              |
//! | ----------------------------------------------- | -------------------------------------------------- |
//! | ConsumerGroupMetadataKey (3): group             | epoch                                              |
//! | ConsumerGroupMemberMetadataKey (5): group, member | instance, rack, client, host, topics, regex, rebalance timeout, assignor |
//! | ConsumerGroupTargetAssignmentMetadataKey (6): group | assignment epoch                               |
//! | ConsumerGroupTargetAssignmentMemberKey (7): group, member | partitions by topic id                   |
//! | ConsumerGroupCurrentMemberAssignmentKey (8): group, member | epochs, state, assigned, pending revocation |
//!
//! Kafka's ConsumerGroupPartitionMetadata (4) is read past: Strom recomputes the subscribed
//! topics' metadata from the metadata image.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::assignor::Assignment;
use super::records::{Reader, RecordError};

pub const GROUP_METADATA_KEY: i16 = 3;
pub const PARTITION_METADATA_KEY: i16 = 4;
pub const MEMBER_METADATA_KEY: i16 = 5;
pub const TARGET_METADATA_KEY: i16 = 6;
pub const TARGET_MEMBER_KEY: i16 = 7;
pub const CURRENT_MEMBER_KEY: i16 = 8;

/// What ConsumerGroupMemberMetadataValue holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// What ConsumerGroupCurrentMemberAssignmentValue holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// Kafka's MemberState: 0 stable, 1 unrevoked partitions, 2 unreleased partitions.
    pub state: i8,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

fn put_str16(buf: &mut BytesMut, s: &str, what: &'static str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(what))?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// A key: its version, the group id, and the member id for member records.
pub fn key(version: i16, group: &str, member: Option<&str>) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(6 + group.len() + member.map_or(0, str::len));
    buf.put_i16(version);
    put_str16(&mut buf, group, "group id")?;
    if let Some(m) = member {
        put_str16(&mut buf, m, "member id")?;
    }
    Ok(buf.freeze())
}

fn put_uvarint(buf: &mut BytesMut, mut n: u64) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

fn put_compact_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => {
            put_uvarint(buf, s.len() as u64 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
}

fn put_len(buf: &mut BytesMut, n: usize) {
    put_uvarint(buf, n as u64 + 1);
}

const NO_TAGS: u8 = 0;

fn put_assignment(buf: &mut BytesMut, a: &Assignment) {
    put_len(buf, a.len());
    for (topic, parts) in a {
        buf.put_slice(topic.as_bytes());
        put_len(buf, parts.len());
        for p in parts {
            buf.put_i32(*p);
        }
        buf.put_u8(NO_TAGS);
    }
}

/// ConsumerGroupMetadataValue and ConsumerGroupTargetAssignmentMetadataValue: an epoch.
pub fn epoch_value(epoch: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(7);
    buf.put_i16(0);
    buf.put_i32(epoch);
    buf.put_u8(NO_TAGS);
    buf.freeze()
}

pub fn member_metadata_value(m: &MemberMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(0);
    put_compact_str(&mut buf, m.instance_id.as_deref());
    put_compact_str(&mut buf, m.rack_id.as_deref());
    put_compact_str(&mut buf, Some(&m.client_id));
    put_compact_str(&mut buf, Some(&m.client_host));
    put_len(&mut buf, m.subscribed_topic_names.len());
    for t in &m.subscribed_topic_names {
        put_compact_str(&mut buf, Some(t));
    }
    put_compact_str(&mut buf, m.subscribed_topic_regex.as_deref());
    buf.put_i32(m.rebalance_timeout_ms);
    put_compact_str(&mut buf, m.server_assignor.as_deref());
    buf.put_u8(NO_TAGS);
    buf.freeze()
}

pub fn target_member_value(a: &Assignment) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    buf.put_i16(0);
    put_assignment(&mut buf, a);
    buf.put_u8(NO_TAGS);
    buf.freeze()
}

pub fn current_assignment_value(c: &CurrentAssignment) -> Bytes {
    let mut buf = BytesMut::with_capacity(48);
    buf.put_i16(0);
    buf.put_i32(c.member_epoch);
    buf.put_i32(c.previous_member_epoch);
    buf.put_i8(c.state);
    put_assignment(&mut buf, &c.assigned);
    put_assignment(&mut buf, &c.pending_revocation);
    buf.put_u8(NO_TAGS);
    buf.freeze()
}

impl Reader {
    fn uuid(&mut self) -> Result<Uuid, RecordError> {
        self.need(16)?;
        let mut b = [0u8; 16];
        self.0.copy_to_slice(&mut b);
        Ok(Uuid::from_bytes(b))
    }
    fn version0(&mut self, what: &'static str) -> Result<(), RecordError> {
        match self.i16()? {
            0 => Ok(()),
            version => Err(RecordError::UnsupportedVersion { what, version }),
        }
    }
    fn assignment(&mut self) -> Result<Assignment, RecordError> {
        let mut a = Assignment::new();
        for _ in 0..self.compact_len()?.unwrap_or(0) {
            let topic = self.uuid()?;
            let parts = a.entry(topic).or_default();
            for _ in 0..self.compact_len()?.unwrap_or(0) {
                parts.insert(self.i32()?);
            }
            self.skip_tags()?;
        }
        a.retain(|_, p| !p.is_empty());
        Ok(a)
    }
}

pub fn decode_epoch_value(bytes: Bytes) -> Result<i32, RecordError> {
    let mut r = Reader(bytes);
    r.version0("consumer group epoch value")?;
    r.i32()
}

pub fn decode_member_metadata_value(bytes: Bytes) -> Result<MemberMetadata, RecordError> {
    let mut r = Reader(bytes);
    r.version0("consumer group member value")?;
    let instance_id = r.compact_str()?;
    let rack_id = r.compact_str()?;
    let client_id = r.compact_str()?.unwrap_or_default();
    let client_host = r.compact_str()?.unwrap_or_default();
    let mut subscribed_topic_names = Vec::new();
    for _ in 0..r.compact_len()?.unwrap_or(0) {
        subscribed_topic_names.push(r.compact_str()?.unwrap_or_default());
    }
    let subscribed_topic_regex = r.compact_str()?;
    let rebalance_timeout_ms = r.i32()?;
    let server_assignor = r.compact_str()?;
    r.skip_tags()?;
    Ok(MemberMetadata {
        instance_id,
        rack_id,
        client_id,
        client_host,
        subscribed_topic_names,
        subscribed_topic_regex,
        rebalance_timeout_ms,
        server_assignor,
    })
}

pub fn decode_target_member_value(bytes: Bytes) -> Result<Assignment, RecordError> {
    let mut r = Reader(bytes);
    r.version0("consumer group target assignment value")?;
    r.assignment()
}

pub fn decode_current_assignment_value(bytes: Bytes) -> Result<CurrentAssignment, RecordError> {
    let mut r = Reader(bytes);
    r.version0("consumer group current assignment value")?;
    Ok(CurrentAssignment {
        member_epoch: r.i32()?,
        previous_member_epoch: r.i32()?,
        state: r.i8()?,
        assigned: r.assignment()?,
        pending_revocation: r.assignment()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(decode_epoch_value(epoch_value(7)).unwrap(), 7);
        let m = MemberMetadata {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/10.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("x.*".into()),
            rebalance_timeout_ms: 30_000,
            server_assignor: Some("range".into()),
        };
        assert_eq!(
            decode_member_metadata_value(member_metadata_value(&m)).unwrap(),
            m
        );
        let mut a = Assignment::new();
        a.insert(Uuid::from_u128(5), [0, 3].into());
        assert_eq!(
            decode_target_member_value(target_member_value(&a)).unwrap(),
            a
        );
        let c = CurrentAssignment {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned: a.clone(),
            pending_revocation: Assignment::new(),
        };
        assert_eq!(
            decode_current_assignment_value(current_assignment_value(&c)).unwrap(),
            c
        );
        // Kafka's layout: version 0, epoch, no tagged fields.
        assert_eq!(&epoch_value(1)[..], &[0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&key(3, "g", None).unwrap()[..], &[0, 3, 0, 1, b'g']);
    }

    #[test]
    fn hostile_lengths_are_errors() {
        // A topic list claiming 2^32 elements in a 10-byte value.
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_target_member_value(b.freeze()).is_err());
        assert!(decode_current_assignment_value(Bytes::from_static(&[0, 0, 0])).is_err());
        assert!(decode_epoch_value(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0])).is_err());
    }
}
