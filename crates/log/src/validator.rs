//! Kafka's `LogValidator` rules for a leader append, in Kafka's order: each batch's header
//! (offset range and record count consistent, no control batch from a client, a sequence for
//! every producer id), then its records (a key on compacted topics, no LogAppendTime set by
//! the producer), then the batch's maxTimestamp made to agree with its records, and finally
//! re-compression when the topic's `compression.type` names another codec than the batch's.
//!
//! Header checks never decompress. The records of an uncompressed batch are walked anyway
//! (by [`batch::validate_batches_with`]); a compressed batch is decompressed only when its
//! keys must be checked (compacted topic) or its codec changes, so the in-place path stays
//! copy-free whenever the codecs match.

use std::fmt::Write as _;
use std::io::Write as _;

use bytes::{Bytes, BytesMut};
use proto_kafka::error::ProtoError;
use proto_kafka::records::{
    Compression as WireCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as WireTimestampType,
};

use crate::batch::{self, BatchHeader, Compression, RecordInfo, TimestampType};
use crate::config::LogConfig;
use crate::error::{kafka_code, LogError, RecordError};
use crate::topic_partition::TopicPartition;

/// Record errors listed for one batch at most: a header-level reason (LogAppendTime from the
/// producer) applies to every record, and a hostile recordsCount must not size an allocation.
const MAX_RECORD_ERRORS: usize = 10_000;

/// What the record walk of one batch found.
#[derive(Default)]
struct Walk {
    max_timestamp_delta: Option<i64>,
    keyless: Vec<i32>,
}

/// Validates `records` (whole v2 batches) for a leader append under `config`: framing, CRC
/// and the LogValidator rules. Returns the headers and, when the topic's codec differs from
/// a batch's, the re-compressed batches to write instead of `records`. Uncompressed batches
/// whose maxTimestamp disagrees with their records are corrected in place (CRC recomputed).
pub(crate) fn validate_for_append(
    records: &mut [u8],
    topic_partition: &TopicPartition,
    config: &LogConfig,
) -> Result<(Vec<BatchHeader>, Option<Vec<u8>>), LogError> {
    let (headers, walks) = frame_and_walk(records, topic_partition, config.cleanup_compact)?;
    // Before anything is decompressed: a batch too large as sent is refused as sent.
    for h in &headers {
        if h.size_bytes() > config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                size_bytes: h.size_bytes(),
                max_bytes: config.max_message_bytes,
            });
        }
    }
    let decoded = check_batches(records, &headers, &walks, topic_partition, config)?;
    // Every batch is valid: now its header may be brought in line with its records.
    if config.message_timestamp_type == TimestampType::CreateTime {
        correct_max_timestamps(records, &headers, &walks, &decoded)?;
    }
    if !headers.iter().any(|h| needs_recompression(h, config)) {
        return Ok((headers, None));
    }
    let out = recompress_batches(records, &headers, decoded, config)?;
    let headers = batch::validate_batches(&out).map_err(|e| {
        LogError::Recompress(format!("the re-compressed batches do not validate: {e}"))
    })?;
    Ok((headers, Some(out)))
}

/// The batches' framing and CRCs, and a walk of the records of those not compressed: their
/// largest timestamp delta and (on a compacted topic) which have no key.
fn frame_and_walk(
    records: &[u8],
    topic_partition: &TopicPartition,
    compacted: bool,
) -> Result<(Vec<BatchHeader>, Vec<Walk>), LogError> {
    let mut walks: Vec<Walk> = Vec::new();
    let headers = batch::validate_batches_with(records, |batch_index, r: RecordInfo| {
        if walks.len() <= batch_index {
            walks.resize_with(batch_index + 1, Walk::default);
        }
        let w = &mut walks[batch_index];
        w.max_timestamp_delta = Some(
            w.max_timestamp_delta
                .map_or(r.timestamp_delta, |m| m.max(r.timestamp_delta)),
        );
        if compacted && !r.has_key {
            w.keyless.push(r.index);
        }
    });
    let headers = match headers {
        Ok(h) => h,
        // Records that do not add up under a valid CRC: Kafka's batch rules come first (a
        // count that disagrees with the offsets is INVALID_RECORD, not corruption).
        Err(e @ crate::error::BatchError::CorruptRecords { position, .. }) => {
            let at = usize::try_from(position).unwrap_or(usize::MAX);
            if let Some(h) = records
                .get(at..)
                .and_then(|b| batch::parse_header(b, position).ok())
            {
                validate_header(&h, topic_partition)?;
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    walks.resize_with(headers.len(), Walk::default);
    Ok((headers, walks))
}

/// Kafka's LogValidator rules for each batch and its records; returns the records of the
/// batches that had to be decompressed for them (a compacted topic's keys, re-compression).
fn check_batches(
    records: &[u8],
    headers: &[BatchHeader],
    walks: &[Walk],
    topic_partition: &TopicPartition,
    config: &LogConfig,
) -> Result<Vec<Option<Vec<Record>>>, LogError> {
    let compacted = config.cleanup_compact;
    let mut position = 0usize;
    let mut decoded: Vec<Option<Vec<Record>>> = Vec::with_capacity(headers.len());
    for (h, walk) in headers.iter().zip(walks) {
        let size = h.size_bytes();
        validate_header(h, topic_partition)?;
        let compressed = h.compression() != Some(Compression::None);
        let recompress = needs_recompression(h, config);
        let records_of_batch = if compressed && (compacted || recompress) {
            Some(decode(&records[position..position + size])?)
        } else {
            None
        };
        let keyless: Vec<i32> = match &records_of_batch {
            Some(rs) if compacted => rs
                .iter()
                .enumerate()
                .filter(|(_, r)| r.key.is_none())
                .map(|(i, _)| i32::try_from(i).unwrap_or(i32::MAX))
                .collect(),
            _ => walk.keyless.clone(),
        };
        check_records(h, &keyless, topic_partition, config)?;
        decoded.push(records_of_batch);
        position += size;
    }
    Ok(decoded)
}

/// Under CreateTime, sets each batch's maxTimestamp to its records' own maximum.
fn correct_max_timestamps(
    records: &mut [u8],
    headers: &[BatchHeader],
    walks: &[Walk],
    decoded: &[Option<Vec<Record>>],
) -> Result<(), LogError> {
    let mut position = 0usize;
    for ((h, walk), records_of_batch) in headers.iter().zip(walks).zip(decoded) {
        let size = h.size_bytes();
        // The records' own maximum: walked (uncompressed) or decoded anyway (a compacted
        // topic's keys); otherwise the header's (a departure: Kafka decompresses).
        let from_records = match records_of_batch {
            Some(rs) => rs.iter().map(|r| r.timestamp).max(),
            None => walk
                .max_timestamp_delta
                .map(|delta| h.base_timestamp.saturating_add(delta)),
        };
        if let Some(records_max) = from_records {
            let max = if h.timestamp_type() == TimestampType::LogAppendTime {
                h.max_timestamp
            } else {
                records_max
            };
            batch::set_create_time_max_timestamp(&mut records[position..position + size], max)?;
        }
        position += size;
    }
    Ok(())
}

/// The batches again, those in another codec than the topic's re-compressed into it.
fn recompress_batches(
    records: &[u8],
    headers: &[BatchHeader],
    decoded: Vec<Option<Vec<Record>>>,
    config: &LogConfig,
) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::with_capacity(records.len());
    let mut position = 0usize;
    for (h, records_of_batch) in headers.iter().zip(decoded) {
        let bytes = &records[position..position + h.size_bytes()];
        position += h.size_bytes();
        if !needs_recompression(h, config) {
            out.extend_from_slice(bytes);
            continue;
        }
        let records_of_batch = match records_of_batch {
            Some(rs) => rs,
            None => decode(bytes)?,
        };
        recompress(h, records_of_batch, config, &mut out)?;
    }
    Ok(out)
}

/// Checks Kafka applies to what a client sends, beyond a batch's own consistency: one batch
/// per partition (Kafka: "Compressed outer record has more than one batch") starting at
/// offset 0.
pub fn validate_client_batches(
    headers: &[BatchHeader],
    topic_partition: &TopicPartition,
) -> Result<(), LogError> {
    if headers.len() > 1 {
        return Err(LogError::InvalidBatch(
            "Compressed outer record has more than one batch".to_string(),
        ));
    }
    if let Some(h) = headers.first() {
        if h.base_offset != 0 {
            return Err(LogError::InvalidBatch(format!(
                "The baseOffset of the record batch in the append to {topic_partition} should be 0, but it is {}",
                h.base_offset
            )));
        }
    }
    Ok(())
}

fn needs_recompression(h: &BatchHeader, config: &LogConfig) -> bool {
    match config.compression {
        None => false,
        Some(target) => h.compression() != Some(target),
    }
}

/// Kafka's `validateBatch` for a client's v2 batch.
fn validate_header(h: &BatchHeader, tp: &TopicPartition) -> Result<(), LogError> {
    let base = h.base_offset;
    let last = h.last_offset();
    let count_from_offsets = i64::from(h.last_offset_delta) + 1;
    if count_from_offsets <= 0 {
        return Err(LogError::InvalidBatch(format!(
            "Batch has an invalid offset range: [{base}, {last}] in topic partition {tp}"
        )));
    }
    let count = i64::from(h.records_count);
    if count <= 0 {
        return Err(LogError::InvalidBatch(format!(
            "Invalid reported count for record batch: {count} in topic partition {tp}"
        )));
    }
    if count_from_offsets != count {
        return Err(LogError::InvalidBatch(format!(
            "Inconsistent batch offset range [{base}, {last}] and count of records {count} in topic partition {tp}"
        )));
    }
    if h.is_control() {
        return Err(LogError::InvalidBatch(format!(
            "Clients are not allowed to write control records in topic partition {tp}"
        )));
    }
    if h.producer_id >= 0 && h.base_sequence < 0 {
        return Err(LogError::InvalidBatch(format!(
            "Invalid sequence number {} in record batch with producerId {} in topic partition {tp}",
            h.base_sequence, h.producer_id
        )));
    }
    Ok(())
}

/// Kafka's `validateRecord` for each record (a key first, then the timestamp type), then
/// `processRecordErrors`: one refused record fails the whole batch.
fn check_records(
    h: &BatchHeader,
    keyless: &[i32],
    tp: &TopicPartition,
    config: &LogConfig,
) -> Result<(), LogError> {
    // Under LogAppendTime every record's timestamp is the batch's maxTimestamp, so this is a
    // header-level fact: Kafka refuses it unless the topic keeps CreateTime and the batch
    // carries a timestamp.
    let bad_timestamp_type = h.timestamp_type() == TimestampType::LogAppendTime
        && (config.message_timestamp_type == TimestampType::LogAppendTime || h.max_timestamp == -1);
    if keyless.is_empty() && !bad_timestamp_type {
        return Ok(());
    }
    let key_message =
        format!("Compacted topic cannot accept message without key in topic partition {tp}");
    let mut errors: Vec<RecordError> = keyless
        .iter()
        .take(MAX_RECORD_ERRORS)
        .map(|&i| RecordError {
            batch_index: i,
            message: key_message.clone(),
        })
        .collect();
    if bad_timestamp_type {
        let records = usize::try_from(h.records_count).unwrap_or(0);
        let timestamp_errors: Vec<RecordError> = (0..records.min(MAX_RECORD_ERRORS))
            .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
            .filter(|i| keyless.binary_search(i).is_err())
            .map(|i| RecordError {
                batch_index: i,
                message: format!(
                    "Invalid timestamp type in message with index {i}. Producer should not set timestamp type to LogAppendTime."
                ),
            })
            .collect();
        if !timestamp_errors.is_empty() {
            errors.extend(timestamp_errors);
            errors.sort_by_key(|e| e.batch_index);
            errors.truncate(MAX_RECORD_ERRORS);
            return Err(LogError::InvalidRecords {
                code: kafka_code::INVALID_TIMESTAMP,
                message: "One or more records have been rejected due to invalid timestamp"
                    .to_string(),
                record_errors: errors,
            });
        }
    }
    let mut message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [",
        keyless.len()
    );
    for (n, e) in errors.iter().take(3).enumerate() {
        if n > 0 {
            message.push_str(", ");
        }
        let _ = write!(
            message,
            "RecordError(batchIndex={}, message='{}')",
            e.batch_index, e.message
        );
    }
    message.push(']');
    Err(LogError::InvalidRecords {
        code: kafka_code::INVALID_RECORD,
        message,
        record_errors: errors,
    })
}

fn decode(batch: &[u8]) -> Result<Vec<Record>, LogError> {
    RecordBatchDecoder::decode_with_custom_compression(
        &mut Bytes::copy_from_slice(batch),
        Some(|data: &mut Bytes, codec: WireCompression| {
            bounded_decompress(data, codec, MAX_DECOMPRESSED_BATCH_BYTES)
        }),
    )
    .map(|set| set.records)
    .map_err(|e| match e {
        ProtoError::Compression { source, .. } if source.to_string() == TOO_LARGE => {
            LogError::InvalidBatch(format!(
                "the batch's records decompress to more than {MAX_DECOMPRESSED_BATCH_BYTES} bytes"
            ))
        }
        e => LogError::Recompress(format!("cannot decode the batch's records: {e}")),
    })
}

/// Largest size a batch's records may decompress to when the validator opens it: a few
/// hundred bytes of zstd or gzip can claim gigabytes, and this is memory a client asks for.
pub const MAX_DECOMPRESSED_BATCH_BYTES: u64 = 256 << 20;
const TOO_LARGE: &str = "decompressed records exceed the limit";

/// Decompresses a batch's records, refusing output past `limit_bytes` before it is
/// allocated. Snappy's format bounds its own expansion (about 21 times), and proto-kafka's
/// decoder sizes each block from its header, so it keeps proto-kafka's own codec.
fn bounded_decompress(
    data: &mut Bytes,
    codec: WireCompression,
    limit_bytes: u64,
) -> Result<Bytes, ProtoError> {
    use proto_kafka::compression::{Decompressor, Snappy};
    use std::io::Read;
    let failed = |codec: &'static str, e: std::io::Error| ProtoError::Compression {
        operation: "decompress",
        codec,
        source: Box::new(e),
    };
    let mut out = Vec::new();
    let read = |reader: &mut dyn Read, out: &mut Vec<u8>| {
        reader.take(limit_bytes.saturating_add(1)).read_to_end(out)
    };
    match codec {
        WireCompression::None => return Ok(data.split_off(0)),
        WireCompression::Snappy => {
            return <Snappy as Decompressor<Bytes>>::decompress(data, |b: &mut Bytes| {
                Ok(b.split_off(0))
            })
        }
        WireCompression::Gzip => {
            read(&mut flate2::read::GzDecoder::new(&data[..]), &mut out)
                .map_err(|e| failed("gzip", e))?;
        }
        WireCompression::Lz4 => {
            let mut d = lz4::Decoder::new(&data[..]).map_err(|e| failed("lz4", e))?;
            read(&mut d, &mut out).map_err(|e| failed("lz4", e))?;
        }
        WireCompression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::new(&data[..]).map_err(|e| failed("zstd", e))?;
            read(&mut d, &mut out).map_err(|e| failed("zstd", e))?;
        }
    }
    if out.len() as u64 > limit_bytes {
        return Err(ProtoError::Compression {
            operation: "decompress",
            codec: codec.name(),
            source: TOO_LARGE.into(),
        });
    }
    Ok(Bytes::from(out))
}

fn wire_compression(c: Compression) -> WireCompression {
    match c {
        Compression::None => WireCompression::None,
        Compression::Gzip => WireCompression::Gzip,
        Compression::Snappy => WireCompression::Snappy,
        Compression::Lz4 => WireCompression::Lz4,
        Compression::Zstd => WireCompression::Zstd,
    }
}

/// Java's `DefaultRecordBatch.incrementSequence`: wraps past `i32::MAX` to 0.
fn sequence_at(base_sequence: i32, delta: i32) -> i32 {
    if base_sequence < 0 {
        return -1;
    }
    if base_sequence > i32::MAX - delta {
        delta - (i32::MAX - base_sequence) - 1
    } else {
        base_sequence + delta
    }
}

/// Re-encodes one batch's records in the topic's codec, as Kafka's
/// `buildRecordsAndAssignOffsets` does: consecutive offsets (assigned relative to 0 here, the
/// log patches the base), the first batch's producer fields, record timestamps kept.
fn recompress(
    h: &BatchHeader,
    mut records: Vec<Record>,
    config: &LogConfig,
    out: &mut Vec<u8>,
) -> Result<(), LogError> {
    let target = config.compression.unwrap_or(Compression::None);
    let base_sequence = if h.producer_id >= 0 {
        h.base_sequence
    } else {
        -1
    };
    for (i, r) in records.iter_mut().enumerate() {
        let delta = i32::try_from(i)
            .map_err(|_| LogError::Recompress("too many records in one batch".to_string()))?;
        r.offset = i64::from(delta);
        r.sequence = sequence_at(base_sequence, delta);
        r.producer_id = h.producer_id;
        r.producer_epoch = h.producer_epoch;
        r.transactional = h.is_transactional();
        r.control = false;
        r.delete_horizon_ms = None;
        r.partition_leader_epoch = h.partition_leader_epoch;
        r.timestamp_type = WireTimestampType::Creation;
    }
    let options = RecordEncodeOptions {
        version: 2,
        compression: wire_compression(target),
    };
    let mut buf = BytesMut::new();
    let levels = (
        config.compression_gzip_level,
        config.compression_lz4_level,
        config.compression_zstd_level,
    );
    let encoded = match target {
        // No level to apply: the codec's own default path.
        Compression::None | Compression::Snappy => {
            RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        }
        Compression::Gzip | Compression::Lz4 | Compression::Zstd => {
            RecordBatchEncoder::encode_with_custom_compression(
                &mut buf,
                records.iter(),
                &options,
                Some(
                    |plain: &mut BytesMut, dest: &mut BytesMut, codec: WireCompression| {
                        compress_at_level(plain, dest, codec, levels)
                    },
                ),
            )
        }
    };
    encoded.map_err(|e| LogError::Recompress(e.to_string()))?;
    out.extend_from_slice(&buf);
    Ok(())
}

fn compression_error(codec: &'static str, e: std::io::Error) -> ProtoError {
    ProtoError::Compression {
        operation: "compress",
        codec,
        source: Box::new(e),
    }
}

/// Compresses a batch's encoded records with the KIP-390 level of the codec.
fn compress_at_level(
    plain: &mut BytesMut,
    dest: &mut BytesMut,
    codec: WireCompression,
    (gzip_level, lz4_level, zstd_level): (i32, i32, i32),
) -> Result<(), ProtoError> {
    let mut writer = Vec::new();
    match codec {
        WireCompression::Gzip => {
            // -1 is zlib's default (6), which flate2 calls `default`.
            let level = u32::try_from(gzip_level)
                .map(flate2::Compression::new)
                .unwrap_or_default();
            let mut e = flate2::write::GzEncoder::new(&mut writer, level);
            e.write_all(plain)
                .and_then(|()| e.finish().map(|_| ()))
                .map_err(|e| compression_error("gzip", e))?;
        }
        WireCompression::Lz4 => {
            // Kafka uses lz4's fast compressor at its default level (9) and the high
            // compression one (lz4 HC) at any other level; liblz4's frame API does the same
            // with level 0 and levels 3 and above.
            let level = if lz4_level == crate::config::DEFAULT_LZ4_LEVEL {
                0
            } else {
                u32::try_from(lz4_level).unwrap_or(0)
            };
            let mut e = lz4::EncoderBuilder::new()
                .level(level)
                .block_mode(lz4::BlockMode::Independent)
                .build(&mut writer)
                .map_err(|e| compression_error("lz4", e))?;
            e.write_all(plain)
                .map_err(|e| compression_error("lz4", e))?;
            let (_, result) = e.finish();
            result.map_err(|e| compression_error("lz4", e))?;
        }
        WireCompression::Zstd => {
            zstd::stream::copy_encode(&plain[..], &mut writer, zstd_level)
                .map_err(|e| compression_error("zstd", e))?;
        }
        WireCompression::None | WireCompression::Snappy => {
            return Err(ProtoError::Compression {
                operation: "compress",
                codec: codec.name(),
                source: "no level applies to this codec".into(),
            });
        }
    }
    dest.extend_from_slice(&writer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_header, CRC_OFFSET};
    use crate::log::Log;
    use crate::testutil::{build_batch, BatchSpec};
    use proptest::prelude::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// A batch of `records` records encoded by proto-kafka, keyed unless `keyless` holds the
    /// record's index.
    fn encoded(
        records: usize,
        keyless: &[usize],
        codec: WireCompression,
        producer_id: i64,
    ) -> Vec<u8> {
        let rs: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon_ms: None,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: WireTimestampType::Creation,
                offset: i as i64,
                sequence: if producer_id >= 0 { 5 + i as i32 } else { -1 },
                timestamp: NOW_MS + i as i64,
                key: (!keyless.contains(&i)).then(|| Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(100)))),
                headers: Vec::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            rs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    fn reseal(b: &mut [u8]) {
        let crc = batch::compute_crc(b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    fn with_i32(mut b: Vec<u8>, at: usize, v: i32) -> Vec<u8> {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        reseal(&mut b);
        b
    }

    fn refusal(mut b: Vec<u8>, config: &LogConfig) -> LogError {
        validate_for_append(&mut b, &tp(), config).unwrap_err()
    }

    #[test]
    fn a_last_offset_delta_past_the_records_is_refused_and_the_log_does_not_move() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), tp(), LogConfig::default()).unwrap();
        let mut b = with_i32(build_batch(&BatchSpec::records(3)), 23, i32::MAX);
        let e = log.append_as_leader(&mut b, 0, NOW_MS).unwrap_err();
        assert_eq!(e.kafka_error_code(), kafka_code::INVALID_RECORD, "{e}");
        assert!(
            e.to_string()
                .contains("Inconsistent batch offset range [0, 2147483647] and count of records 3"),
            "{e}"
        );
        assert_eq!(log.log_end_offset(), 0);
        let info = log
            .append_as_leader(&mut build_batch(&BatchSpec::records(3)), 0, NOW_MS)
            .unwrap();
        assert_eq!((info.first_offset, info.last_offset), (0, 2));
    }

    #[test]
    fn header_rules_in_kafkas_words() {
        let config = LogConfig::default();
        let three = || build_batch(&BatchSpec::records(3));
        // recordsCount 0 with lastOffsetDelta 2: fewer records than offsets.
        let e = refusal(with_i32(three(), 57, 0), &config);
        assert!(
            e.to_string()
                .contains("Invalid reported count for record batch: 0"),
            "{e}"
        );
        // An empty batch whose header claims one offset.
        let e = refusal(
            build_batch(&BatchSpec {
                records: 0,
                ..Default::default()
            }),
            &config,
        );
        assert_eq!(e.kafka_error_code(), kafka_code::INVALID_RECORD, "{e}");
        // A negative lastOffsetDelta under a valid CRC: INVALID_RECORD, not corruption.
        let e = refusal(with_i32(three(), 23, -1), &config);
        assert_eq!(e.kafka_error_code(), kafka_code::INVALID_RECORD, "{e}");
        // The same bytes with a stale CRC: corruption (retriable).
        let mut torn = three();
        torn[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            refusal(torn, &config).kafka_error_code(),
            kafka_code::CORRUPT_MESSAGE
        );
        // A control batch from a client.
        let control = build_batch(&BatchSpec {
            records: 1,
            attributes: 0x20,
            ..Default::default()
        });
        assert!(refusal(control, &config)
            .to_string()
            .contains("control records"));
        // A producer id without a sequence.
        let mut idem = three();
        idem[43..51].copy_from_slice(&7i64.to_be_bytes());
        reseal(&mut idem);
        let e = refusal(idem, &config);
        assert!(
            e.to_string()
                .contains("Invalid sequence number -1 in record batch with producerId 7"),
            "{e}"
        );
    }

    #[test]
    fn client_batches_are_one_batch_at_offset_zero() {
        let one = parse_header(&build_batch(&BatchSpec::records(2)), 0).unwrap();
        assert!(validate_client_batches(&[one], &tp()).is_ok());
        assert!(validate_client_batches(&[one, one], &tp()).is_err());
        let moved = parse_header(
            &build_batch(&BatchSpec {
                base_offset: 5,
                ..Default::default()
            }),
            0,
        )
        .unwrap();
        let e = validate_client_batches(&[moved], &tp()).unwrap_err();
        assert_eq!(e.kafka_error_code(), kafka_code::INVALID_RECORD);
    }

    #[test]
    fn keyless_records_on_a_compacted_topic_are_listed_by_index() {
        let compacted = LogConfig {
            cleanup_compact: true,
            ..LogConfig::default()
        };
        for codec in [
            WireCompression::None,
            WireCompression::Lz4,
            WireCompression::Zstd,
        ] {
            let e = refusal(encoded(5, &[1, 3], codec, -1), &compacted);
            let LogError::InvalidRecords {
                code,
                message,
                record_errors,
            } = &e
            else {
                panic!("{codec:?}: {e:?}");
            };
            assert_eq!(*code, kafka_code::INVALID_RECORD);
            assert!(
                message
                    .starts_with("One or more records have been rejected due to 2 record errors"),
                "{message}"
            );
            let indexes: Vec<i32> = record_errors.iter().map(|r| r.batch_index).collect();
            assert_eq!(indexes, vec![1, 3], "{codec:?}");
            assert!(record_errors[0]
                .message
                .contains("Compacted topic cannot accept message without key"));
            // Keyed batches pass, and keyless ones on a topic that is not compacted.
            let mut keyed = encoded(5, &[], codec, -1);
            assert!(validate_for_append(&mut keyed, &tp(), &compacted).is_ok());
            let mut plain = encoded(5, &[0, 1], codec, -1);
            assert!(validate_for_append(&mut plain, &tp(), &LogConfig::default()).is_ok());
        }
    }

    #[test]
    fn log_append_time_from_a_producer_is_refused_where_kafka_refuses_it() {
        let lat_batch = build_batch(&BatchSpec {
            records: 2,
            attributes: 0x08,
            ..Default::default()
        });
        let lat_topic = LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let e = refusal(lat_batch.clone(), &lat_topic);
        assert_eq!(e.kafka_error_code(), kafka_code::INVALID_TIMESTAMP, "{e}");
        let LogError::InvalidRecords { record_errors, .. } = e else {
            unreachable!()
        };
        assert_eq!(record_errors.len(), 2);
        // CreateTime topic with a timestamp present: accepted, as Kafka does, as CreateTime.
        let mut b = lat_batch;
        validate_for_append(&mut b, &tp(), &LogConfig::default()).unwrap();
        let h = parse_header(&b, 0).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(batch::validate_batches(&b).is_ok());
    }

    #[test]
    fn max_timestamp_is_made_to_agree_with_the_records() {
        let mut b = build_batch(&BatchSpec {
            records: 3,
            base_timestamp: 1000,
            max_timestamp: Some(i64::MAX),
            ..Default::default()
        });
        validate_for_append(&mut b, &tp(), &LogConfig::default()).unwrap();
        let h = batch::validate_batches(&b).unwrap()[0];
        assert_eq!(h.max_timestamp, 1002);
    }

    #[test]
    fn a_decoded_compressed_batch_gets_its_records_max_timestamp() {
        let compacted = LogConfig {
            cleanup_compact: true,
            ..LogConfig::default()
        };
        let mut b = encoded(4, &[], WireCompression::Lz4, -1);
        let at = 35;
        b[at..at + 8].copy_from_slice(&i64::MAX.to_be_bytes());
        reseal(&mut b);
        validate_for_append(&mut b, &tp(), &compacted).unwrap();
        let h = batch::validate_batches(&b).unwrap()[0];
        assert_eq!(h.max_timestamp, NOW_MS + 3);
        assert_eq!(h.compression(), Some(Compression::Lz4));
    }

    #[test]
    fn decompression_is_bounded() {
        // 4 MiB of zeros compress to a few KiB in every codec; a limit of 1 MiB refuses them
        // before more than the limit is held.
        let plain = vec![0u8; 4 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::stream::encode_all(&plain[..], 3).unwrap();
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz.write_all(&plain).unwrap();
        let (lz, r) = lz.finish();
        r.unwrap();
        for (codec, data) in [
            (WireCompression::Gzip, gz),
            (WireCompression::Zstd, zs),
            (WireCompression::Lz4, lz),
        ] {
            assert!(data.len() < 100_000, "{codec:?}");
            let e = bounded_decompress(&mut Bytes::from(data.clone()), codec, 1 << 20).unwrap_err();
            assert!(e.to_string().contains(TOO_LARGE), "{codec:?}: {e}");
            let back = bounded_decompress(&mut Bytes::from(data), codec, 8 << 20).unwrap();
            assert_eq!(back.len(), plain.len());
        }
    }

    #[test]
    fn every_codec_into_every_topic_codec() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            for to in codecs {
                let config = LogConfig {
                    compression: Some(to),
                    ..LogConfig::default()
                };
                let mut b = encoded(20, &[], wire_compression(from), 42);
                let original = decode(&b).unwrap();
                let (headers, rebuilt) = validate_for_append(&mut b, &tp(), &config).unwrap();
                assert_eq!(rebuilt.is_some(), from != to, "{from:?} -> {to:?}");
                let stored = rebuilt.unwrap_or(b);
                assert_eq!(headers.len(), 1);
                let h = headers[0];
                assert_eq!(h.compression(), Some(to));
                assert_eq!((h.records_count, h.last_offset_delta), (20, 19));
                assert_eq!(
                    (h.producer_id, h.producer_epoch, h.base_sequence),
                    (42, 0, 5)
                );
                assert_eq!(h.max_timestamp, NOW_MS + 19);
                let back = decode(&stored).unwrap();
                let pairs = |rs: &[Record]| -> Vec<(Option<Bytes>, Option<Bytes>, i64)> {
                    rs.iter()
                        .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
                        .collect()
                };
                assert_eq!(pairs(&back), pairs(&original), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn levels_change_the_bytes_and_bad_levels_are_refused() {
        let size_at = |config: LogConfig| {
            let mut b = encoded(200, &[], WireCompression::None, -1);
            validate_for_append(&mut b, &tp(), &config)
                .unwrap()
                .1
                .unwrap()
                .len()
        };
        let gzip = |level| LogConfig {
            compression: Some(Compression::Gzip),
            compression_gzip_level: level,
            ..LogConfig::default()
        };
        assert!(size_at(gzip(9)) <= size_at(gzip(1)));
        let zstd = |level| LogConfig {
            compression: Some(Compression::Zstd),
            compression_zstd_level: level,
            ..LogConfig::default()
        };
        assert_ne!(size_at(zstd(-50)), size_at(zstd(19)));
        let lz4 = |level| LogConfig {
            compression: Some(Compression::Lz4),
            compression_lz4_level: level,
            ..LogConfig::default()
        };
        assert!(size_at(lz4(17)) <= size_at(lz4(9)));
        assert!(
            gzip(-1).validate().is_ok()
                && gzip(0).validate().is_err()
                && gzip(10).validate().is_err()
        );
        assert!(lz4(0).validate().is_err() && lz4(18).validate().is_err());
        assert!(zstd(23).validate().is_err() && zstd(-131_073).validate().is_err());
    }

    #[test]
    fn matching_codecs_keep_the_bytes_as_sent() {
        let config = LogConfig {
            compression: Some(Compression::Lz4),
            ..LogConfig::default()
        };
        let sent = encoded(10, &[], WireCompression::Lz4, -1);
        let mut b = sent.clone();
        let (_, rebuilt) = validate_for_append(&mut b, &tp(), &config).unwrap();
        assert!(rebuilt.is_none());
        assert_eq!(b, sent);
    }

    proptest! {
        /// Whatever a CRC-valid header says, a batch the validator accepts spans exactly its
        /// records: the log end offset never jumps.
        #[test]
        fn accepted_batches_span_exactly_their_records(
            records in 1i32..6,
            delta in any::<i32>(),
            count in any::<i32>(),
        ) {
            let mut b = build_batch(&BatchSpec::records(records));
            b[23..27].copy_from_slice(&delta.to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            reseal(&mut b);
            if let Ok((headers, _)) = validate_for_append(&mut b, &tp(), &LogConfig::default()) {
                prop_assert_eq!(headers[0].offset_count(), i64::from(records));
                prop_assert_eq!(headers[0].records_count, records);
            }
        }
    }
}
