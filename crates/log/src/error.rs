//! Typed errors. Every variant maps to a Kafka error code so the broker never has to guess.

use std::io;
use std::path::PathBuf;

/// Kafka protocol error codes the storage layer can produce.
pub mod kafka_code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const INVALID_RECORD: i16 = 87;
}

/// KIP-467: one refused record of a batch, by its index in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// Why a byte range is not a sequence of well-formed v2 record batches.
/// `position` is the byte offset of the offending batch within the validated buffer (or file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("no record batch in the request")]
    Empty,
    #[error("truncated record batch at byte {position}: needs {needed_bytes} bytes, {available_bytes} available")]
    Truncated {
        position: u64,
        needed_bytes: u64,
        available_bytes: u64,
    },
    #[error("record batch at byte {position} has invalid batchLength {batch_length}")]
    InvalidBatchLength { position: u64, batch_length: i32 },
    #[error("record batch at byte {position} has magic {magic}, only magic 2 is supported")]
    UnsupportedMagic { position: u64, magic: i8 },
    #[error("record batch at byte {position} failed CRC-32C check: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        position: u64,
        stored: u32,
        computed: u32,
    },
    #[error("record batch at byte {position} has invalid recordsCount {records_count} (lastOffsetDelta {last_offset_delta})")]
    InvalidRecordsCount {
        position: u64,
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("record batch at byte {position} has invalid lastOffsetDelta {last_offset_delta}")]
    InvalidLastOffsetDelta {
        position: u64,
        last_offset_delta: i32,
    },
    #[error("record batch at byte {position} has unknown compression codec {codec}")]
    UnknownCompression { position: u64, codec: u8 },
    #[error("record batch at byte {position} holds malformed records: {reason}")]
    CorruptRecords { position: u64, reason: &'static str },
}

impl BatchError {
    /// The Kafka error code a produce response should carry for this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::Empty => kafka_code::INVALID_RECORD,
            // Old (v0/v1) message formats are well-formed but unsupported; anything else in the
            // magic byte is garbage.
            BatchError::UnsupportedMagic { magic, .. } if (0..2).contains(magic) => {
                kafka_code::UNSUPPORTED_FOR_MESSAGE_FORMAT
            }
            // Offsets and count that disagree under a valid CRC (validate_batches reports a
            // CRC failure instead when there is one): Kafka's LogValidator answers
            // INVALID_RECORD, which clients do not retry.
            BatchError::InvalidLastOffsetDelta { .. } | BatchError::InvalidRecordsCount { .. } => {
                kafka_code::INVALID_RECORD
            }
            _ => kafka_code::CORRUPT_MESSAGE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {max_bytes}")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    #[error("append of {size_bytes} bytes exceeds segment.bytes {segment_bytes}")]
    RecordListTooLarge {
        size_bytes: usize,
        segment_bytes: u64,
    },
    /// A batch refused as a whole by Kafka's LogValidator rules (INVALID_RECORD, no message
    /// in the response, as Kafka sends none for these).
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// Records refused one by one (KIP-467): the response carries `message` as its
    /// error_message and `record_errors` by index in the batch.
    #[error("{message}")]
    InvalidRecords {
        code: i16,
        message: String,
        record_errors: Vec<RecordError>,
    },
    #[error("cannot re-compress a batch: {0}")]
    Recompress(String),
    #[error("append spans {offset_count} offsets, more than a segment can address")]
    OffsetOverflow { offset_count: i64 },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("corrupt log data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data directory {dir} is locked by another process (lock file {lock_file})")]
    DirLocked {
        dir: PathBuf,
        lock_file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid partition directory name {0:?}: expected <topic>-<partition>")]
    InvalidDirName(String),
    #[error("log {0} is closed")]
    Closed(String),
    /// A producer's write or marker refused by its producer state (fenced epoch, a
    /// non-transactional write inside a transaction, a fenced coordinator): `code` is Kafka's.
    #[error("{message}")]
    ProducerState { code: i16, message: String },
}

impl LogError {
    /// The Kafka error code a response should carry for this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            LogError::Batch(e) => e.kafka_error_code(),
            LogError::MessageTooLarge { .. } => kafka_code::MESSAGE_TOO_LARGE,
            LogError::RecordListTooLarge { .. } => kafka_code::RECORD_LIST_TOO_LARGE,
            LogError::OffsetOverflow { .. } | LogError::InvalidBatch(_) => {
                kafka_code::INVALID_RECORD
            }
            LogError::InvalidRecords { code, .. } => *code,
            // A compressed batch that does not decode: its bytes are not what they claim.
            LogError::Recompress(_) => kafka_code::CORRUPT_MESSAGE,
            LogError::OffsetOutOfRange { .. } => kafka_code::OFFSET_OUT_OF_RANGE,
            LogError::Io { .. } | LogError::Corrupt { .. } => kafka_code::KAFKA_STORAGE_ERROR,
            LogError::Closed(_) => kafka_code::NOT_LEADER_OR_FOLLOWER,
            LogError::ProducerState { code, .. } => *code,
            LogError::DirLocked { .. }
            | LogError::InvalidConfig(_)
            | LogError::InvalidDirName(_) => kafka_code::UNKNOWN_SERVER_ERROR,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attaches a human context (operation + path) to io errors.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, LogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, LogError> {
        self.map_err(|source| LogError::io(context(), source))
    }
}
