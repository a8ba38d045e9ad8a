//! The metadata log: `__cluster_metadata-0` in the data directory, one record batch per
//! change, each record's value a JSON [`MetadataRecord`]. A change is durable (fsynced) before
//! it is applied to the image, so a restart replays exactly what clients were told happened.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use proto_kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_log::{Log, LogConfig, TopicPartition};
use thiserror::Error;

use super::image::{ImageError, MetadataImage};
use super::records::MetadataRecord;

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Largest metadata batch: a CreateTopics with thousands of partitions fits in one.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum MetadataLogError {
    #[error("metadata log: {0}")]
    Log(#[from] strom_log::LogError),
    #[error("metadata log I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata log record at offset {offset} is unreadable: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error("metadata record at offset {offset} does not apply: {source}")]
    Apply { offset: i64, source: ImageError },
    #[error("metadata log: cannot encode records: {0}")]
    Encode(String),
}

pub struct MetadataLog {
    log: Log,
}

impl MetadataLog {
    /// Opens (or creates) the metadata log under `data_dir` and replays it into an image.
    pub fn open(data_dir: &Path) -> Result<(MetadataLog, MetadataImage), MetadataLogError> {
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        };
        let config = LogConfig {
            max_message_bytes: MAX_BATCH_BYTES,
            segment_bytes: 64 * 1024 * 1024,
            ..LogConfig::default()
        };
        let log = Log::open(&data_dir.join(tp.dir_name()), tp, config)?;
        let mut image = MetadataImage::empty();
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        while next < end {
            let slice = log.read(next, MAX_BATCH_BYTES, end, true)?;
            let mut bytes: Bytes = slice.read_bytes()?;
            if bytes.is_empty() {
                break;
            }
            // Recovery keeps (and reports) a synced batch whose CRC fails rather than cut it;
            // for the metadata that is fatal: replaying around a lost change would be wrong.
            strom_log::validate_batches(&bytes).map_err(|e| MetadataLogError::Corrupt {
                offset: next,
                reason: e.to_string(),
            })?;
            let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| {
                MetadataLogError::Corrupt {
                    offset: next,
                    reason: e.to_string(),
                }
            })?;
            for set in sets {
                for record in set.records {
                    if record.offset < next {
                        continue;
                    }
                    let value = record.value.unwrap_or_default();
                    let parsed: MetadataRecord =
                        serde_json::from_slice(&value).map_err(|e| MetadataLogError::Corrupt {
                            offset: record.offset,
                            reason: e.to_string(),
                        })?;
                    image.apply(record.offset, &parsed).map_err(|source| {
                        MetadataLogError::Apply {
                            offset: record.offset,
                            source,
                        }
                    })?;
                    next = record.offset + 1;
                }
            }
        }
        Ok((MetadataLog { log }, image))
    }

    /// Checks `records` against `image`, appends them durably as one batch, and returns the
    /// image with them applied. On error nothing is written and the image is unchanged.
    pub fn commit(
        &mut self,
        image: &MetadataImage,
        records: &[MetadataRecord],
    ) -> Result<MetadataImage, MetadataLogError> {
        let mut next = image.clone();
        let base = self.log.log_end_offset();
        for (i, r) in records.iter().enumerate() {
            let offset = base + i as i64;
            next.apply(offset, r)
                .map_err(|source| MetadataLogError::Apply { offset, source })?;
        }
        if records.is_empty() {
            return Ok(next);
        }
        let now_ms = now_ms();
        let mut values = Vec::with_capacity(records.len());
        for r in records {
            let value =
                serde_json::to_vec(r).map_err(|e| MetadataLogError::Encode(e.to_string()))?;
            values.push((None, Some(Bytes::from(value))));
        }
        let mut buf = encode_internal_batch(values, now_ms)
            .map_err(|e| MetadataLogError::Encode(e.to_string()))?;
        let info = self.log.append_as_leader(&mut buf, 0, now_ms)?;
        debug_assert_eq!(info.first_offset, base);
        let target = self.log.flush_target();
        target.sync()?;
        self.log.mark_flushed_target(&target)?;
        // The recovery point goes to disk with every change (not once a second as for
        // partitions): recovery then knows that every record below it was synced, so damage
        // there is refused instead of being cut off as a torn tail.
        self.log.checkpoint_recovery_point()?;
        Ok(next)
    }

    pub fn close(mut self) -> Result<(), MetadataLogError> {
        self.log.close()?;
        Ok(())
    }
}

/// Encodes the broker's own records (metadata, group state) as one uncompressed v2 batch of
/// plain (non-idempotent, non-transactional) records with relative offsets 0, 1, ...
pub fn encode_internal_batch(
    entries: impl IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
    timestamp_ms: i64,
) -> Result<BytesMut, proto_kafka::ProtoError> {
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp_ms,
            key,
            value,
            headers: Vec::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
