//! Transaction markers (KIP-98 control batches): what a transaction coordinator writes to every
//! partition of a transaction to end it, and how the log reads one back.
//!
//! A marker is a batch with magic 2, the transactional and control attributes, the producer's
//! id and epoch, base sequence -1, and one record: key = ControlRecordType (version i16 = 0,
//! type i16: 0 ABORT, 1 COMMIT), value = EndTxnMarker (version i16 = 0, coordinator epoch
//! i32, from proto-kafka's generated codec).

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::EndTxnMarker;
use proto_kafka::protocol::{Decodable, Encodable};
use proto_kafka::records::{
    Compression as WireCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as WireTimestampType,
};

use crate::batch::BatchHeader;
use crate::error::LogError;

/// ControlRecordType's key schema version (Kafka has only 0).
const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// EndTxnMarker's value schema version (Kafka has only 0).
const END_TXN_MARKER_VERSION: i16 = 0;
/// A marker batch is far smaller; a control batch bigger than this is not one Strom reads.
pub const MAX_CONTROL_BATCH_BYTES: usize = 4096;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

/// The key of a control record: ControlRecordType (version, type).
fn control_key(commit: bool) -> Bytes {
    let mut key = Vec::with_capacity(4);
    key.extend(CONTROL_KEY_VERSION.to_be_bytes());
    key.extend(
        if commit {
            CONTROL_TYPE_COMMIT
        } else {
            CONTROL_TYPE_ABORT
        }
        .to_be_bytes(),
    );
    Bytes::from(key)
}

/// One COMMIT (`commit`) or ABORT marker batch for the producer, at offset 0 (the log assigns
/// the real one), timestamped `timestamp_ms`, with a valid CRC-32C.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    timestamp_ms: i64,
) -> Result<BytesMut, LogError> {
    let marker = EndTxnMarker::default().with_coordinator_epoch(coordinator_epoch);
    let mut value = BytesMut::new();
    value.extend_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
    marker
        .encode(&mut value, END_TXN_MARKER_VERSION)
        .map_err(|e| LogError::InvalidBatch(format!("cannot encode an EndTxnMarker: {e}")))?;
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon_ms: None,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: WireTimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(control_key(commit)),
        value: Some(value.freeze()),
        headers: Vec::new(),
    };
    let options = RecordEncodeOptions {
        version: 2,
        compression: WireCompression::None,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, std::iter::once(&record), &options)
        .map_err(|e| LogError::InvalidBatch(format!("cannot encode a marker batch: {e}")))?;
    Ok(buf)
}

/// Why a control batch is not a marker Strom understands.
fn not_a_marker(reason: impl Into<String>) -> LogError {
    LogError::InvalidBatch(reason.into())
}

/// Reads the marker out of one whole control batch (`batch`, described by `header`). A control
/// record type other than ABORT and COMMIT (Kafka reserves others) is `Ok(None)`: no
/// transaction ends there.
pub fn decode_marker(header: &BatchHeader, batch: &[u8]) -> Result<Option<TxnMarker>, LogError> {
    if !header.is_control() {
        return Err(not_a_marker("not a control batch"));
    }
    if batch.len() > MAX_CONTROL_BATCH_BYTES {
        return Err(not_a_marker(format!(
            "a control batch of {} bytes",
            batch.len()
        )));
    }
    let mut bytes = Bytes::copy_from_slice(batch);
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| not_a_marker(format!("undecodable control batch: {e}")))?;
    let record = sets
        .iter()
        .flat_map(|s| s.records.iter())
        .next()
        .ok_or_else(|| not_a_marker("a control batch without records"))?;
    let key = record
        .key
        .as_ref()
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| not_a_marker("a control record without its type"))?;
    let version = i16::from_be_bytes([key[0], key[1]]);
    let kind = i16::from_be_bytes([key[2], key[3]]);
    if version != CONTROL_KEY_VERSION {
        return Err(not_a_marker(format!(
            "control record key version {version}"
        )));
    }
    let commit = match kind {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return Ok(None),
    };
    let mut value = record
        .value
        .clone()
        .filter(|v| v.len() >= 2)
        .ok_or_else(|| not_a_marker("a marker without its EndTxnMarker"))?;
    let value_version = i16::from_be_bytes([value[0], value[1]]);
    let _ = bytes::Buf::copy_to_bytes(&mut value, 2);
    let marker = EndTxnMarker::decode(&mut value, value_version)
        .map_err(|e| not_a_marker(format!("undecodable EndTxnMarker: {e}")))?;
    Ok(Some(TxnMarker {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        coordinator_epoch: marker.coordinator_epoch,
        commit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{compute_crc, validate_batches};

    #[test]
    fn a_marker_is_one_control_record_with_kafkas_layout() {
        for commit in [false, true] {
            let b = encode_marker(42, 7, 3, commit, 1_700).unwrap();
            let headers = validate_batches(&b).unwrap();
            assert_eq!(headers.len(), 1);
            let h = headers[0];
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(h.compression_codec(), 0);
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 7, -1)
            );
            assert_eq!((h.records_count, h.last_offset_delta), (1, 0));
            assert_eq!((h.base_timestamp, h.max_timestamp), (1_700, 1_700));
            assert_eq!(compute_crc(&b), h.crc);
            // Kafka's bytes: key = version 0, type; value = version 0, coordinator epoch.
            let expected_key = [0u8, 0, 0, u8::from(commit)];
            assert!(b.windows(4).any(|w| w == expected_key));
            assert!(b.windows(6).any(|w| w == [0u8, 0, 0, 0, 0, 3]));
            assert_eq!(
                decode_marker(&h, &b).unwrap(),
                Some(TxnMarker {
                    producer_id: 42,
                    producer_epoch: 7,
                    coordinator_epoch: 3,
                    commit
                })
            );
        }
    }

    #[test]
    fn a_data_batch_is_not_a_marker() {
        let b = crate::testutil::build_batch(&crate::testutil::BatchSpec::records(1));
        let h = validate_batches(&b).unwrap()[0];
        assert!(decode_marker(&h, &b).is_err());
    }
}
