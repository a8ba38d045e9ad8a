//! The records of `__consumer_offsets`, in Kafka's own schemas (non-flexible versions), so the
//! topic reads the same to Kafka's tools as to Strom:
//!
//! | key (version prefix)                          | value (version prefix)                 |
//! | --------------------------------------------- | -------------------------------------- |
//! | OffsetCommitKey v1: group, topic, partition   | OffsetCommitValue v3: offset, leader epoch, metadata, commit timestamp |
//! | GroupMetadataKey v2: group                    | GroupMetadataValue v3: protocol type, generation, protocol, leader, state timestamp, members |
//!
//! A null value is a tombstone: the offset or the group is gone. Values of versions 0 to 3 are
//! read; the flexible v4 values that Kafka 3.x may write are reported as unsupported.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("{0} is too long for its field")]
    TooLong(&'static str),
}

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A record of a consumer-protocol group (keys 3 to 8, see
    /// [`super::consumer_records`]): its key version, group and member id (for member keys).
    Consumer {
        version: i16,
        group: String,
        member: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(buf: &mut BytesMut, s: &str, what: &'static str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(what))?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn put_nullable_str(
    buf: &mut BytesMut,
    s: Option<&str>,
    what: &'static str,
) -> Result<(), RecordError> {
    match s {
        Some(s) => put_str(buf, s, what),
        None => {
            buf.put_i16(-1);
            Ok(())
        }
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8], what: &'static str) -> Result<(), RecordError> {
    let len = i32::try_from(b.len()).map_err(|_| RecordError::TooLong(what))?;
    buf.put_i32(len);
    buf.put_slice(b);
    Ok(())
}

/// Reads record keys and values, bounding every length by the bytes left. The compact
/// (flexible-version) reads serve the consumer-group records of [`super::consumer_records`].
pub(super) struct Reader(pub(super) Bytes);

impl Reader {
    pub(super) fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError::Truncated)
        } else {
            Ok(())
        }
    }
    pub(super) fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    pub(super) fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    pub(super) fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len)?;
        let raw = self.0.split_to(len);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| RecordError::NotUtf8)
    }
    fn str(&mut self) -> Result<String, RecordError> {
        Ok(self.nullable_str()?.unwrap_or_default())
    }
    pub(super) fn i8(&mut self) -> Result<i8, RecordError> {
        self.need(1)?;
        Ok(self.0.get_i8())
    }
    pub(super) fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            self.need(1)?;
            let b = self.0.get_u8();
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(RecordError::Truncated)
    }
    /// A compact length (stored + 1); None for null. Every element takes at least a byte, so
    /// a length beyond the bytes left is refused.
    pub(super) fn compact_len(&mut self) -> Result<Option<usize>, RecordError> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        let n = usize::try_from(n - 1).map_err(|_| RecordError::Truncated)?;
        self.need(n)?;
        Ok(Some(n))
    }
    pub(super) fn compact_str(&mut self) -> Result<Option<String>, RecordError> {
        let Some(n) = self.compact_len()? else {
            return Ok(None);
        };
        let raw = self.0.split_to(n);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| RecordError::NotUtf8)
    }
    pub(super) fn skip_tags(&mut self) -> Result<(), RecordError> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).map_err(|_| RecordError::Truncated)?;
            self.need(size)?;
            self.0.advance(size);
        }
        Ok(())
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        self.need(len)?;
        Ok(self.0.split_to(len))
    }
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(8 + group.len() + topic.len());
    buf.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut buf, group, "group id")?;
    put_str(&mut buf, topic, "topic")?;
    buf.put_i32(partition);
    Ok(buf.freeze())
}

pub fn group_key(group: &str) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_KEY_VERSION);
    put_str(&mut buf, group, "group id")?;
    Ok(buf.freeze())
}

pub fn decode_key(bytes: Bytes) -> Result<RecordKey, RecordError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.str()?,
            topic: r.str()?,
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group { group: r.str()? }),
        version @ (3 | 4 | 6) => Ok(RecordKey::Consumer {
            version,
            group: r.str()?,
            member: None,
        }),
        version @ (5 | 7 | 8) => Ok(RecordKey::Consumer {
            version,
            group: r.str()?,
            member: Some(r.str()?),
        }),
        version => Err(RecordError::UnsupportedVersion {
            what: "key",
            version,
        }),
    }
}

pub fn encode_offset_value(v: &OffsetValue) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(26 + v.metadata.len());
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(v.offset);
    buf.put_i32(v.leader_epoch);
    put_str(&mut buf, &v.metadata, "offset metadata")?;
    buf.put_i64(v.commit_timestamp_ms);
    Ok(buf.freeze())
}

pub fn decode_offset_value(bytes: Bytes) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    match version {
        0 => Ok(OffsetValue {
            offset: r.i64()?,
            metadata: r.str()?,
            commit_timestamp_ms: r.i64()?,
            leader_epoch: -1,
        }),
        1 => {
            let offset = r.i64()?;
            let metadata = r.str()?;
            let commit_timestamp_ms = r.i64()?;
            let _expire_timestamp_ms = r.i64()?;
            Ok(OffsetValue {
                offset,
                metadata,
                commit_timestamp_ms,
                leader_epoch: -1,
            })
        }
        2 => Ok(OffsetValue {
            offset: r.i64()?,
            metadata: r.str()?,
            commit_timestamp_ms: r.i64()?,
            leader_epoch: -1,
        }),
        3 => Ok(OffsetValue {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.str()?,
            commit_timestamp_ms: r.i64()?,
        }),
        version => Err(RecordError::UnsupportedVersion {
            what: "offset value",
            version,
        }),
    }
}

pub fn encode_group_value(v: &GroupValue) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type, "protocol type")?;
    buf.put_i32(v.generation);
    put_nullable_str(&mut buf, v.protocol.as_deref(), "protocol")?;
    put_nullable_str(&mut buf, v.leader.as_deref(), "leader")?;
    buf.put_i64(v.current_state_timestamp_ms);
    let count = i32::try_from(v.members.len()).map_err(|_| RecordError::TooLong("members"))?;
    buf.put_i32(count);
    for m in &v.members {
        put_str(&mut buf, &m.member_id, "member id")?;
        put_nullable_str(
            &mut buf,
            m.group_instance_id.as_deref(),
            "group instance id",
        )?;
        put_str(&mut buf, &m.client_id, "client id")?;
        put_str(&mut buf, &m.client_host, "client host")?;
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription, "subscription")?;
        put_bytes(&mut buf, &m.assignment, "assignment")?;
    }
    Ok(buf.freeze())
}

pub fn decode_group_value(bytes: Bytes) -> Result<GroupValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "group value",
            version,
        });
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 {
            r.nullable_str()?
        } else {
            None
        };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if version >= 1 {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_match_kafkas_layout() {
        let k = offset_key("g", "t", 7).unwrap();
        // version 1, "g", "t", partition 7
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(
            decode_key(k).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7
            }
        );
        let k = group_key("grp").unwrap();
        assert_eq!(&k[..], &[0, 2, 0, 3, b'g', b'r', b'p']);
        assert_eq!(
            decode_key(k).unwrap(),
            RecordKey::Group {
                group: "grp".into()
            }
        );
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 9, 0, 0])),
            Err(RecordError::UnsupportedVersion {
                what: "key",
                version: 9
            })
        );
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 2, 0, 5, b'x'])),
            Err(RecordError::Truncated)
        );
    }

    #[test]
    fn values_round_trip() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(
            decode_offset_value(encode_offset_value(&v).unwrap()).unwrap(),
            v
        );
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            current_state_timestamp_ms: 99,
            members: vec![MemberValue {
                member_id: "c-1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(
            decode_group_value(encode_group_value(&g).unwrap()).unwrap(),
            g
        );
        let empty = GroupValue {
            protocol_type: "consumer".into(),
            generation: 6,
            ..Default::default()
        };
        assert_eq!(
            decode_group_value(encode_group_value(&empty).unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn old_offset_value_versions_decode() {
        // v1: offset, metadata, commit timestamp, expire timestamp
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(10);
        b.put_i16(2);
        b.put_slice(b"md");
        b.put_i64(5);
        b.put_i64(6);
        let v = decode_offset_value(b.freeze()).unwrap();
        assert_eq!(
            v,
            OffsetValue {
                offset: 10,
                leader_epoch: -1,
                metadata: "md".into(),
                commit_timestamp_ms: 5
            }
        );
        assert!(decode_offset_value(Bytes::from_static(&[0, 3, 0])).is_err());
    }
}
