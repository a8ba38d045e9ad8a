//! The records of `__transaction_state`, in Kafka's own schemas (`TransactionLogKey` v0,
//! `TransactionLogValue` v0 and the flexible v1 of transaction version 2), so the topic reads
//! the same to Kafka's tools as to Strom. Each is prefixed by its version as an int16, as
//! Kafka's `MessageUtil.toVersionPrefixedBytes` writes them. A null value is a tombstone: the
//! transactional id expired.
//!
//! Decoding takes bytes from the log, which a damaged disk or another writer may have
//! filled: every count is checked against the bytes left before anything is allocated.

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
    #[error("unknown transaction state {0}")]
    UnknownState(i8),
    #[error("malformed {0}")]
    Malformed(&'static str),
}

pub const KEY_VERSION: i16 = 0;
/// The value version transaction versions 0 and 1 write.
pub const VALUE_VERSION_0: i16 = 0;
/// The flexible version of transaction version 2 (with tagged fields).
pub const VALUE_VERSION_1: i16 = 1;

/// The value version Kafka writes at a finalized `transaction.version` feature level: the
/// flexible v1 from level 1 on, v0 before (`TransactionVersion.transactionLogValueVersion`).
pub fn value_version_for(transaction_version_level: i16) -> i16 {
    if transaction_version_level >= 1 {
        VALUE_VERSION_1
    } else {
        VALUE_VERSION_0
    }
}

/// Kafka's `TransactionState`, with its ids in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's names, as DescribeTransactions and ListTransactions report them.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// States from which a new transaction may start, and in which the id may expire.
    pub(crate) fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// One topic's partitions in a transaction, as the value groups them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// `TransactionLogValue`: what the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    /// Tagged in v1 (tag 0), -1 by default; not in v0.
    pub previous_producer_id: i64,
    /// Tagged in v1 (tag 1), -1 by default; not in v0.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// None is Kafka's null array, written for the Empty state.
    pub partitions: Option<Vec<TopicPartitions>>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    /// Tagged in v1 (tag 2), 0 by default; not in v0.
    pub client_transaction_version: i16,
}

pub fn encode_key(transactional_id: &str) -> Result<Bytes, RecordError> {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    put_string(&mut b, transactional_id, "transactional id")?;
    Ok(b.freeze())
}

pub fn decode_key(mut b: Bytes) -> Result<String, RecordError> {
    let version = get_i16(&mut b)?;
    if version != KEY_VERSION {
        return Err(RecordError::UnsupportedVersion {
            what: "TransactionLogKey",
            version,
        });
    }
    get_string(&mut b)
}

/// Encodes `v` in `version` (0 or 1). Version 0 has no place for the tagged fields: they are
/// dropped, as Kafka drops them.
pub fn encode_value(v: &TxnValue, version: i16) -> Result<Bytes, RecordError> {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(version);
    b.put_i64(v.producer_id);
    b.put_i16(v.producer_epoch);
    b.put_i32(v.timeout_ms);
    b.put_i8(v.state.id());
    match version {
        VALUE_VERSION_0 => {
            match &v.partitions {
                None => b.put_i32(-1),
                Some(tps) => {
                    put_len_i32(&mut b, tps.len(), "partitions")?;
                    for tp in tps {
                        put_string(&mut b, &tp.topic, "topic")?;
                        put_len_i32(&mut b, tp.partitions.len(), "partition ids")?;
                        for p in &tp.partitions {
                            b.put_i32(*p);
                        }
                    }
                }
            }
            b.put_i64(v.last_update_timestamp_ms);
            b.put_i64(v.start_timestamp_ms);
        }
        VALUE_VERSION_1 => {
            match &v.partitions {
                None => put_uvarint(&mut b, 0),
                Some(tps) => {
                    put_uvarint(&mut b, compact_len(tps.len(), "partitions")?);
                    for tp in tps {
                        put_uvarint(&mut b, compact_len(tp.topic.len(), "topic")?);
                        b.put_slice(tp.topic.as_bytes());
                        put_uvarint(&mut b, compact_len(tp.partitions.len(), "partition ids")?);
                        for p in &tp.partitions {
                            b.put_i32(*p);
                        }
                        put_uvarint(&mut b, 0); // the struct's tagged fields: none
                    }
                }
            }
            b.put_i64(v.last_update_timestamp_ms);
            b.put_i64(v.start_timestamp_ms);
            // Tagged fields in tag order, only those off their defaults, as Kafka writes them.
            let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
            if v.previous_producer_id != -1 {
                tags.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
            }
            if v.next_producer_id != -1 {
                tags.push((1, v.next_producer_id.to_be_bytes().to_vec()));
            }
            if v.client_transaction_version != 0 {
                tags.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
            }
            put_uvarint(&mut b, tags.len() as u32);
            for (tag, data) in tags {
                put_uvarint(&mut b, tag);
                put_uvarint(&mut b, data.len() as u32);
                b.put_slice(&data);
            }
        }
        version => {
            return Err(RecordError::UnsupportedVersion {
                what: "TransactionLogValue",
                version,
            })
        }
    }
    Ok(b.freeze())
}

pub fn decode_value(mut b: Bytes) -> Result<TxnValue, RecordError> {
    let version = get_i16(&mut b)?;
    if version != VALUE_VERSION_0 && version != VALUE_VERSION_1 {
        return Err(RecordError::UnsupportedVersion {
            what: "TransactionLogValue",
            version,
        });
    }
    let flexible = version >= VALUE_VERSION_1;
    let producer_id = get_i64(&mut b)?;
    let producer_epoch = get_i16(&mut b)?;
    let timeout_ms = get_i32(&mut b)?;
    let state_id = get_i8(&mut b)?;
    let state = TxnState::from_id(state_id).ok_or(RecordError::UnknownState(state_id))?;
    let count = if flexible {
        get_compact_len(&mut b)?
    } else {
        get_len_i32(&mut b)?
    };
    let partitions = match count {
        None => None,
        Some(n) => {
            // A topic entry takes at least 5 bytes (v0: 2 + 4; v1: 1 + 1 + 1 + tags).
            check_room(&b, n, 3)?;
            let mut tps = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = if flexible {
                    let len = get_compact_len(&mut b)?.ok_or(RecordError::Malformed("topic"))?;
                    get_utf8(&mut b, len)?
                } else {
                    get_string(&mut b)?
                };
                let ids = if flexible {
                    get_compact_len(&mut b)?
                } else {
                    get_len_i32(&mut b)?
                }
                .ok_or(RecordError::Malformed("partition ids"))?;
                check_room(&b, ids, 4)?;
                let mut partitions = Vec::with_capacity(ids);
                for _ in 0..ids {
                    partitions.push(get_i32(&mut b)?);
                }
                if flexible {
                    skip_tagged_fields(&mut b, |_, _| Ok(()))?;
                }
                tps.push(TopicPartitions { topic, partitions });
            }
            Some(tps)
        }
    };
    let last_update_timestamp_ms = get_i64(&mut b)?;
    let start_timestamp_ms = get_i64(&mut b)?;
    let mut v = TxnValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version: 0,
    };
    if flexible {
        skip_tagged_fields(&mut b, |tag, mut data| {
            match tag {
                0 => v.previous_producer_id = get_i64(&mut data)?,
                1 => v.next_producer_id = get_i64(&mut data)?,
                2 => v.client_transaction_version = get_i16(&mut data)?,
                // Tags of later Kafka versions are skipped, as Kafka's readers do.
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(v)
}

fn check_room(b: &Bytes, n: usize, min_each: usize) -> Result<(), RecordError> {
    if n.checked_mul(min_each)
        .is_none_or(|need| need > b.remaining())
    {
        return Err(RecordError::Truncated);
    }
    Ok(())
}

fn skip_tagged_fields(
    b: &mut Bytes,
    mut f: impl FnMut(u32, Bytes) -> Result<(), RecordError>,
) -> Result<(), RecordError> {
    let n = get_uvarint(b)?;
    for _ in 0..n {
        let tag = get_uvarint(b)?;
        let size = get_uvarint(b)? as usize;
        if size > b.remaining() {
            return Err(RecordError::Truncated);
        }
        let data = b.split_to(size);
        f(tag, data)?;
    }
    Ok(())
}

fn put_string(b: &mut BytesMut, s: &str, what: &'static str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong(what))?;
    b.put_i16(len);
    b.put_slice(s.as_bytes());
    Ok(())
}

fn put_len_i32(b: &mut BytesMut, n: usize, what: &'static str) -> Result<(), RecordError> {
    b.put_i32(i32::try_from(n).map_err(|_| RecordError::TooLong(what))?);
    Ok(())
}

fn compact_len(n: usize, what: &'static str) -> Result<u32, RecordError> {
    u32::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(1))
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or(RecordError::TooLong(what))
}

fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn get_uvarint(b: &mut Bytes) -> Result<u32, RecordError> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = get_u8(b)?;
        v |= u32::from(byte & 0x7f)
            .checked_shl(shift)
            .ok_or(RecordError::Malformed("varint"))?;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RecordError::Malformed("varint"))
}

/// A compact (length + 1) count; None is null.
fn get_compact_len(b: &mut Bytes) -> Result<Option<usize>, RecordError> {
    let n = get_uvarint(b)?;
    Ok(n.checked_sub(1).map(|n| n as usize))
}

/// An int32 count; -1 is null, other negatives are malformed.
fn get_len_i32(b: &mut Bytes) -> Result<Option<usize>, RecordError> {
    match get_i32(b)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| RecordError::Malformed("array length")),
    }
}

fn get_string(b: &mut Bytes) -> Result<String, RecordError> {
    let len = usize::try_from(get_i16(b)?).map_err(|_| RecordError::Malformed("string length"))?;
    get_utf8(b, len)
}

fn get_utf8(b: &mut Bytes, len: usize) -> Result<String, RecordError> {
    if len > b.remaining() {
        return Err(RecordError::Truncated);
    }
    String::from_utf8(b.split_to(len).to_vec()).map_err(|_| RecordError::NotUtf8)
}

macro_rules! getter {
    ($name:ident, $t:ty, $get:ident) => {
        fn $name(b: &mut Bytes) -> Result<$t, RecordError> {
            if b.remaining() < std::mem::size_of::<$t>() {
                return Err(RecordError::Truncated);
            }
            Ok(b.$get())
        }
    };
}
getter!(get_u8, u8, get_u8);
getter!(get_i8, i8, get_i8);
getter!(get_i16, i16, get_i16);
getter!(get_i32, i32, get_i32);
getter!(get_i64, i64, get_i64);

#[cfg(test)]
mod tests;
