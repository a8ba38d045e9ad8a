//! Read-only view of Kafka record batch v2 headers, plus the few in-place patches a leader makes.
//!
//! Layout (all big endian), 61 bytes:
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32
//!
//! `batchLength` counts the bytes after itself, so a batch occupies `12 + batchLength` bytes.
//! The CRC-32C covers `attributes` to the end of the batch: baseOffset and partitionLeaderEpoch
//! can be rewritten without touching it. Records are never decoded (or decompressed) here.

use crate::error::BatchError;

/// baseOffset + batchLength: the framing every batch starts with.
pub const LOG_OVERHEAD: usize = 12;
pub const RECORD_BATCH_HEADER_SIZE: usize = 61;
/// Smallest legal batchLength: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (RECORD_BATCH_HEADER_SIZE - LOG_OVERHEAD) as i32;
pub const CURRENT_MAGIC: i8 = 2;

pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const BATCH_LENGTH_OFFSET: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_CODEC_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
const CONTROL_FLAG_MASK: i16 = 0x20;

/// Which clock a batch's timestamps come from (attribute bit 3; also the topic config
/// `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_codec(codec: u8) -> Option<Self> {
        match codec {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Decoded v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Bytes the whole batch occupies, framing included.
    pub fn size_bytes(&self) -> usize {
        debug_assert!(self.batch_length >= MIN_BATCH_LENGTH);
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Number of offsets the batch consumes (lastOffsetDelta + 1).
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    pub fn compression_codec(&self) -> u8 {
        (self.attributes & COMPRESSION_CODEC_MASK) as u8
    }

    pub fn compression(&self) -> Option<Compression> {
        Compression::from_codec(self.compression_codec())
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }

    /// Records a consumer gets from this batch: its record count, none for a control batch
    /// (a consumer skips transaction markers). Read from the header, never decompressed.
    pub fn data_records(&self) -> u64 {
        if self.is_control() {
            0
        } else {
            // parse_header refuses a negative count; max(0) keeps a hand-built header sane.
            self.records_count.max(0) as u64
        }
    }
}

/// The data records (see [`BatchHeader::data_records`]) of the whole batches at the start of
/// `bytes`; a partial or unreadable batch ends the count. `position` is where `bytes` start in
/// their file, for the header parser's error positions only.
pub fn data_records_in(bytes: &[u8], position: u64) -> u64 {
    let mut pos = 0usize;
    let mut records = 0u64;
    while pos < bytes.len() {
        let Ok(header) = parse_header(&bytes[pos..], position + pos as u64) else {
            break;
        };
        let end = pos.saturating_add(header.size_bytes());
        if end > bytes.len() {
            break;
        }
        records += header.data_records();
        pos = end;
    }
    records
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    i16::from_be_bytes(a)
}

/// Parses and sanity-checks the header of the batch starting at `buf[0]`. `buf` may hold only
/// the header (when scanning a file); whether the whole batch fits is the caller's check.
/// `position` only labels errors. Does not verify the CRC.
pub fn parse_header(buf: &[u8], position: u64) -> Result<BatchHeader, BatchError> {
    let available = buf.len() as u64;
    // Every message format (v0, v1, v2) keeps the magic byte at offset 16, so check it before
    // anything v2-specific to report old formats distinctly.
    if buf.len() < MAGIC_OFFSET + 1 {
        return Err(BatchError::Truncated {
            position,
            needed_bytes: RECORD_BATCH_HEADER_SIZE as u64,
            available_bytes: available,
        });
    }
    let magic = buf[MAGIC_OFFSET] as i8;
    if magic != CURRENT_MAGIC {
        return Err(BatchError::UnsupportedMagic { position, magic });
    }
    if buf.len() < RECORD_BATCH_HEADER_SIZE {
        return Err(BatchError::Truncated {
            position,
            needed_bytes: RECORD_BATCH_HEADER_SIZE as u64,
            available_bytes: available,
        });
    }
    let batch_length = read_i32(buf, BATCH_LENGTH_OFFSET);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidBatchLength {
            position,
            batch_length,
        });
    }
    let header = BatchHeader {
        base_offset: read_i64(buf, BASE_OFFSET_OFFSET),
        batch_length,
        partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
        magic,
        crc: read_u32(buf, CRC_OFFSET),
        attributes: read_i16(buf, ATTRIBUTES_OFFSET),
        last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_OFFSET),
        base_timestamp: read_i64(buf, BASE_TIMESTAMP_OFFSET),
        max_timestamp: read_i64(buf, MAX_TIMESTAMP_OFFSET),
        producer_id: read_i64(buf, PRODUCER_ID_OFFSET),
        producer_epoch: read_i16(buf, PRODUCER_EPOCH_OFFSET),
        base_sequence: read_i32(buf, BASE_SEQUENCE_OFFSET),
        records_count: read_i32(buf, RECORDS_COUNT_OFFSET),
    };
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidLastOffsetDelta {
            position,
            last_offset_delta: header.last_offset_delta,
        });
    }
    // Compaction can leave fewer records than offsets, never more. Producers always send
    // recordsCount == lastOffsetDelta + 1 but that is not required (empty batches are legal).
    if header.records_count < 0 || i64::from(header.records_count) > header.offset_count() {
        return Err(BatchError::InvalidRecordsCount {
            position,
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.compression().is_none() {
        return Err(BatchError::UnknownCompression {
            position,
            codec: header.compression_codec(),
        });
    }
    Ok(header)
}

/// CRC-32C of a complete batch as Kafka computes it (attributes to the end).
/// `batch` must hold at least the header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= RECORD_BATCH_HEADER_SIZE);
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Validates one or more concatenated batches: exact framing (no trailing partial batch),
/// header sanity, magic 2 and CRC-32C. Returns the headers in order.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    validate_batches_with(buf, |_, _| {})
}

/// What the walk of an uncompressed batch's records reports of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordInfo {
    /// The record's index within its batch (KIP-467's `batch_index`).
    pub index: i32,
    pub has_key: bool,
    pub timestamp_delta: i64,
}

/// [`validate_batches`], calling `on_record(batch index, record)` for every record of the
/// uncompressed batches it walks anyway, so the append path needs no second walk.
pub(crate) fn validate_batches_with(
    buf: &[u8],
    mut on_record: impl FnMut(usize, RecordInfo),
) -> Result<Vec<BatchHeader>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let position = pos as u64;
        let header = match parse_header(rest, position) {
            Ok(h) => h,
            // A header whose offsets and count disagree is refused as INVALID_RECORD when its
            // CRC holds (the client meant it, as Kafka's LogValidator sees it), and as a
            // corrupt batch when the CRC fails too (damaged on the way: retriable).
            Err(
                e @ (BatchError::InvalidLastOffsetDelta { .. }
                | BatchError::InvalidRecordsCount { .. }),
            ) => return Err(crc_error_or(rest, position, e)),
            Err(e) => return Err(e),
        };
        let size = header.size_bytes();
        if size > rest.len() {
            return Err(BatchError::Truncated {
                position,
                needed_bytes: size as u64,
                available_bytes: rest.len() as u64,
            });
        }
        let computed = compute_crc(&rest[..size]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                position,
                stored: header.crc,
                computed,
            });
        }
        if header.compression_codec() == 0 {
            let batch_index = headers.len();
            validate_records(
                &rest[RECORD_BATCH_HEADER_SIZE..size],
                header.records_count,
                |r| on_record(batch_index, r),
            )
            .map_err(|reason| BatchError::CorruptRecords { position, reason })?;
        }
        headers.push(header);
        pos += size;
    }
    debug_assert_eq!(pos, buf.len());
    Ok(headers)
}

/// `header_error` unless the batch at `rest[0]` is whole and fails its CRC, then the CRC error.
fn crc_error_or(rest: &[u8], position: u64, header_error: BatchError) -> BatchError {
    let batch_length = read_i32(rest, BATCH_LENGTH_OFFSET);
    if batch_length < MIN_BATCH_LENGTH {
        return header_error;
    }
    let size = LOG_OVERHEAD + batch_length as usize;
    if size > rest.len() {
        return header_error;
    }
    let stored = read_u32(rest, CRC_OFFSET);
    let computed = compute_crc(&rest[..size]);
    if computed != stored {
        return BatchError::CrcMismatch {
            position,
            stored,
            computed,
        };
    }
    header_error
}

/// Reads a zig-zag varint (at most `max_bytes` long) at `*at`, advancing it.
fn read_varint(b: &[u8], at: &mut usize, max_bytes: usize) -> Result<i64, &'static str> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let byte = *b
            .get(*at)
            .ok_or("a varint runs past the end of the batch")?;
        *at += 1;
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err("a varint is too long")
}

/// Checks the framing of an uncompressed batch's records: every length fits, the fields of
/// each record add up to its declared size, and the count matches the header. Compressed
/// batches are not opened (they are stored as sent); their CRC still covers them.
fn validate_records(
    records: &[u8],
    expected_count: i32,
    mut on_record: impl FnMut(RecordInfo),
) -> Result<(), &'static str> {
    let mut at = 0usize;
    let mut count: i64 = 0;
    while at < records.len() {
        let length = read_varint(records, &mut at, 5)?;
        if length < 0 || length as usize > records.len() - at {
            return Err("a record length is negative or past the end of the batch");
        }
        let end = at + length as usize;
        let body = &records[..end];
        at += 1; // attributes
        let timestamp_delta = read_varint(body, &mut at, 10)?;
        read_varint(body, &mut at, 5)?; // offset delta
        let mut has_key = false;
        for field in 0..2 {
            // key, then value: -1 is null
            let len = read_varint(body, &mut at, 5)?;
            if len < -1 || (len > 0 && len as usize > end.saturating_sub(at)) {
                return Err("a key or value length is invalid");
            }
            if field == 0 {
                has_key = len >= 0;
            }
            at += len.max(0) as usize;
        }
        let headers = read_varint(body, &mut at, 5)?;
        if headers < 0 || headers as usize > end.saturating_sub(at) {
            return Err("the header count is invalid");
        }
        for _ in 0..headers {
            let key = read_varint(body, &mut at, 5)?;
            if key < 0 || key as usize > end.saturating_sub(at) {
                return Err("a header key length is invalid");
            }
            at += key as usize;
            let value = read_varint(body, &mut at, 5)?;
            if value < -1 || (value > 0 && value as usize > end.saturating_sub(at)) {
                return Err("a header value length is invalid");
            }
            at += value.max(0) as usize;
        }
        if at != end {
            return Err("a record's fields do not add up to its length");
        }
        if count < i64::from(i32::MAX) {
            on_record(RecordInfo {
                index: count as i32,
                has_key,
                timestamp_delta,
            });
        }
        count += 1;
    }
    if count != expected_count as i64 {
        return Err("the record count does not match the batch header");
    }
    Ok(())
}

fn ensure_header(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < RECORD_BATCH_HEADER_SIZE {
        return Err(BatchError::Truncated {
            position: 0,
            needed_bytes: RECORD_BATCH_HEADER_SIZE as u64,
            available_bytes: batch.len() as u64,
        });
    }
    Ok(())
}

/// Rewrites baseOffset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    ensure_header(batch)?;
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Rewrites partitionLeaderEpoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    ensure_header(batch)?;
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Reads the attributes field.
pub fn attributes(batch: &[u8]) -> Result<i16, BatchError> {
    ensure_header(batch)?;
    Ok(read_i16(batch, ATTRIBUTES_OFFSET))
}

/// Stamps a batch with the broker's clock (topic config LogAppendTime): sets the timestamp-type
/// bit and maxTimestamp. Both are covered by the CRC, so the CRC is recomputed, as Kafka does.
/// Skips the work when the batch already carries exactly these values.
/// `batch` must be exactly one complete batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<(), BatchError> {
    ensure_header(batch)?;
    let attrs = read_i16(batch, ATTRIBUTES_OFFSET);
    let new_attrs = attrs | TIMESTAMP_TYPE_MASK;
    if attrs == new_attrs && read_i64(batch, MAX_TIMESTAMP_OFFSET) == timestamp_ms {
        return Ok(());
    }
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&new_attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Sets CreateTime and maxTimestamp (both under the CRC, which is recomputed), as Kafka's
/// validator does for a batch whose header disagrees with its records. Skips the work when
/// the batch already carries exactly these values. `batch` must be exactly one batch.
pub fn set_create_time_max_timestamp(
    batch: &mut [u8],
    timestamp_ms: i64,
) -> Result<(), BatchError> {
    ensure_header(batch)?;
    let attrs = read_i16(batch, ATTRIBUTES_OFFSET);
    let new_attrs = attrs & !TIMESTAMP_TYPE_MASK;
    if attrs == new_attrs && read_i64(batch, MAX_TIMESTAMP_OFFSET) == timestamp_ms {
        return Ok(());
    }
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&new_attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_batch, BatchSpec};

    /// Rewrites the CRC after tampering, so only the record framing is wrong.
    fn reseal(batch: &mut [u8]) {
        let crc = compute_crc(batch);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn malformed_records_under_a_valid_crc_are_refused() {
        let good = build_batch(&BatchSpec::records(3));
        assert!(validate_batches(&good).is_ok());

        let mut garbage = good.clone();
        for b in &mut garbage[RECORD_BATCH_HEADER_SIZE..] {
            *b = 0x7f;
        }
        reseal(&mut garbage);
        let e = validate_batches(&garbage).unwrap_err();
        assert!(matches!(e, BatchError::CorruptRecords { .. }), "{e}");
        assert_eq!(e.kafka_error_code(), 2);

        let mut wrong_count = good.clone();
        wrong_count[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
            .copy_from_slice(&4i32.to_be_bytes());
        reseal(&mut wrong_count);
        // Refused either by the header's count check or by the record walk.
        assert!(validate_batches(&wrong_count).is_err());

        let mut cut = good.clone();
        cut.truncate(cut.len() - 1);
        let len = (cut.len() - LOG_OVERHEAD) as i32;
        cut[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        reseal(&mut cut);
        assert!(matches!(
            validate_batches(&cut),
            Err(BatchError::CorruptRecords { .. })
        ));
    }

    #[test]
    fn parses_a_valid_batch() {
        let b = build_batch(&BatchSpec {
            records: 3,
            base_timestamp: 1000,
            ..Default::default()
        });
        let headers = validate_batches(&b).unwrap();
        assert_eq!(headers.len(), 1);
        let h = headers[0];
        assert_eq!(h.magic, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.size_bytes(), b.len());
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.compression(), Some(Compression::None));
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional() && !h.is_control());
    }

    #[test]
    fn validates_concatenated_batches() {
        let mut buf = build_batch(&BatchSpec::records(2));
        buf.extend(build_batch(&BatchSpec::records(5)));
        buf.extend(build_batch(&BatchSpec::records(1)));
        let headers = validate_batches(&buf).unwrap();
        let counts: Vec<i32> = headers.iter().map(|h| h.records_count).collect();
        assert_eq!(counts, vec![2, 5, 1]);
    }

    #[test]
    fn rejects_empty_and_trailing_partial_batch() {
        assert_eq!(validate_batches(&[]), Err(BatchError::Empty));
        let mut buf = build_batch(&BatchSpec::records(2));
        let one = buf.len();
        buf.extend(build_batch(&BatchSpec::records(2)));
        for cut in [one + 1, one + 16, one + 20, one + 60, buf.len() - 1] {
            let err = validate_batches(&buf[..cut]).unwrap_err();
            assert!(
                matches!(err, BatchError::Truncated { position, .. } if position == one as u64),
                "cut {cut}: {err:?}"
            );
            assert_eq!(err.kafka_error_code(), 2);
        }
    }

    #[test]
    fn detects_crc_corruption_anywhere_in_crc_range() {
        let b = build_batch(&BatchSpec::records(4));
        for i in ATTRIBUTES_OFFSET..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            let err = validate_batches(&c).unwrap_err();
            // Flipping header fields may trip a sanity check before the CRC; either way it fails.
            assert_eq!(err.kafka_error_code(), 2, "byte {i}: {err:?}");
        }
        let mut c = b.clone();
        c[b.len() - 1] ^= 1;
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn rejects_old_magic_distinctly() {
        let mut b = build_batch(&BatchSpec::records(1));
        b[MAGIC_OFFSET] = 1;
        let err = validate_batches(&b).unwrap_err();
        assert_eq!(
            err,
            BatchError::UnsupportedMagic {
                position: 0,
                magic: 1
            }
        );
        assert_eq!(err.kafka_error_code(), 43);
        b[MAGIC_OFFSET] = 7;
        assert_eq!(validate_batches(&b).unwrap_err().kafka_error_code(), 2);
    }

    #[test]
    fn rejects_bad_lengths_and_counts() {
        let b = build_batch(&BatchSpec::records(2));
        let mut c = b.clone();
        c[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::InvalidBatchLength { .. })
        ));
        let mut c = b.clone();
        c[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::InvalidBatchLength { .. })
        ));
        let mut c = b.clone();
        c[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&(b.len() as i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::Truncated { .. })
        ));
        let bad = build_batch(&BatchSpec {
            records: 2,
            last_offset_delta: Some(-1),
            ..Default::default()
        });
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::InvalidLastOffsetDelta { .. })
        ));
        let bad = build_batch(&BatchSpec {
            records: 5,
            last_offset_delta: Some(1),
            ..Default::default()
        });
        assert!(matches!(
            validate_batches(&bad),
            Err(BatchError::InvalidRecordsCount { .. })
        ));
        // Fewer records than offsets (compacted or compressed batch): legal.
        let sparse = build_batch(&BatchSpec {
            records: 2,
            last_offset_delta: Some(9),
            attributes: 1,
            ..Default::default()
        });
        assert_eq!(validate_batches(&sparse).unwrap()[0].offset_count(), 10);
        let bad_codec = build_batch(&BatchSpec {
            records: 1,
            attributes: 6,
            ..Default::default()
        });
        assert!(matches!(
            validate_batches(&bad_codec),
            Err(BatchError::UnknownCompression { codec: 6, .. })
        ));
    }

    #[test]
    fn patches_outside_crc_keep_batch_valid() {
        let mut b = build_batch(&BatchSpec::records(3));
        set_base_offset(&mut b, 123_456).unwrap();
        set_partition_leader_epoch(&mut b, 42).unwrap();
        let h = validate_batches(&b).unwrap()[0];
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.partition_leader_epoch, 42);
        assert_eq!(h.last_offset(), 123_458);
        assert!(set_base_offset(&mut b[..60], 1).is_err());
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = build_batch(&BatchSpec {
            records: 3,
            attributes: 0x10, // transactional, to check other bits survive
            ..Default::default()
        });
        let before = validate_batches(&b).unwrap()[0];
        set_log_append_time(&mut b, 99_999).unwrap();
        let after = validate_batches(&b).expect("CRC must be recomputed")[0];
        assert_eq!(after.max_timestamp, 99_999);
        assert_eq!(after.timestamp_type(), TimestampType::LogAppendTime);
        assert!(after.is_transactional());
        assert_ne!(before.crc, after.crc);
        assert_eq!(attributes(&b).unwrap() & 0x08, 0x08);
    }
}
