//! Per-log configuration, mirroring Kafka's topic-level configs and their defaults.

use crate::batch::{Compression, TimestampType, RECORD_BATCH_HEADER_SIZE};
use crate::error::LogError;

pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_SEGMENT_INDEX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024 + 12;
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_RETENTION_BYTES: i64 = -1;
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
/// KIP-390 levels, Kafka's defaults and ranges (gzip -1 is zlib's default, 6).
pub const DEFAULT_GZIP_LEVEL: i32 = -1;
pub const GZIP_LEVELS: std::ops::RangeInclusive<i32> = 1..=9;
pub const DEFAULT_LZ4_LEVEL: i32 = 9;
pub const LZ4_LEVELS: std::ops::RangeInclusive<i32> = 1..=17;
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -131_072..=22;

/// Index positions are 32-bit (as in Kafka, where segment.bytes is an int), which caps a segment.
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// segment.bytes: roll when the active segment would grow past this.
    pub segment_bytes: u64,
    /// segment.ms: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// segment.index.bytes: cap on each index file; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// index.interval.bytes: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u64,
    /// max.message.bytes: largest accepted record batch, framing included.
    pub max_message_bytes: usize,
    /// message.timestamp.type
    pub message_timestamp_type: TimestampType,
    /// retention.ms: delete segments whose newest timestamp is older; negative = unlimited.
    pub retention_ms: i64,
    /// retention.bytes: delete oldest segments beyond this total size; negative = unlimited.
    pub retention_bytes: i64,
    /// cleanup.policy includes `delete`: retention.ms and retention.bytes apply.
    pub cleanup_delete: bool,
    /// cleanup.policy includes `compact`: the cleaner keeps the latest record of each key.
    pub cleanup_compact: bool,
    /// delete.retention.ms: how long a tombstone is kept after its batch's newest timestamp.
    pub delete_retention_ms: i64,
    /// min.cleanable.dirty.ratio: clean once this share of the sealed bytes is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// compression.type: the codec batches are stored in, `None` for `producer` (as sent).
    pub compression: Option<Compression>,
    /// compression.gzip.level, compression.lz4.level, compression.zstd.level (KIP-390).
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            segment_index_bytes: DEFAULT_SEGMENT_INDEX_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: DEFAULT_RETENTION_BYTES,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            compression: None,
            compression_gzip_level: DEFAULT_GZIP_LEVEL,
            compression_lz4_level: DEFAULT_LZ4_LEVEL,
            compression_zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes < RECORD_BATCH_HEADER_SIZE as u64
            || self.segment_bytes > MAX_SEGMENT_BYTES
        {
            return Err(LogError::InvalidConfig(format!(
                "segment_bytes {} must be in [{RECORD_BATCH_HEADER_SIZE}, {MAX_SEGMENT_BYTES}]",
                self.segment_bytes
            )));
        }
        if self.segment_ms <= 0 {
            return Err(LogError::InvalidConfig(format!(
                "segment_ms {} must be positive",
                self.segment_ms
            )));
        }
        // Room for at least one entry in each index, otherwise every append would roll.
        if self.segment_index_bytes < 12 {
            return Err(LogError::InvalidConfig(format!(
                "segment_index_bytes {} must be at least 12",
                self.segment_index_bytes
            )));
        }
        if self.max_message_bytes < RECORD_BATCH_HEADER_SIZE {
            return Err(LogError::InvalidConfig(format!(
                "max_message_bytes {} must be at least {RECORD_BATCH_HEADER_SIZE}",
                self.max_message_bytes
            )));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(LogError::InvalidConfig(format!(
                "min_cleanable_dirty_ratio {} must be in [0, 1]",
                self.min_cleanable_dirty_ratio
            )));
        }
        let levels = [
            (
                "compression_gzip_level",
                self.compression_gzip_level,
                GZIP_LEVELS,
            ),
            (
                "compression_lz4_level",
                self.compression_lz4_level,
                LZ4_LEVELS,
            ),
            (
                "compression_zstd_level",
                self.compression_zstd_level,
                ZSTD_LEVELS,
            ),
        ];
        for (name, level, range) in levels {
            let gzip_default = name == "compression_gzip_level" && level == DEFAULT_GZIP_LEVEL;
            if !range.contains(&level) && !gzip_default {
                return Err(LogError::InvalidConfig(format!(
                    "{name} {level} must be in [{}, {}]",
                    range.start(),
                    range.end()
                )));
            }
        }
        Ok(())
    }
}
