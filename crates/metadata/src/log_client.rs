//! The metadata log seam: the log of metadata records as the controller and the loader see it
//! (Kafka's `RaftClient`, less the election). Today's implementation is the local
//! `__cluster_metadata-0` (`metadata_log::MetadataLog`); the cluster's is a table in
//! PostgreSQL, whose transactions make the position check of [`MetadataLogClient::append`]
//! the fence against a stale controller.
//!
//! Every method may block on I/O (an fsync, a network round trip): callers on an async
//! runtime run them with `spawn_blocking` or on a thread of their own.

use std::time::Duration;

use thiserror::Error;

use crate::image::ImageError;
use crate::records::MetadataRecord;

/// What a metadata log can fail with, whichever implementation it is.
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
    /// The log's end is not where the writer expected it: another writer appended first.
    #[error(
        "metadata log: an append expected to start at offset {expected}, but the log ends at {end}"
    )]
    Conflict { expected: i64, end: i64 },
    #[error("metadata log is closed")]
    Closed,
    /// A shared log refused the append because the writer's controller lease (its epoch) is
    /// no longer the current one: another controller may be writing, so nothing is written
    /// even where the offset would match.
    #[error(
        "metadata log: the append was fenced: controller epoch {epoch} is not current ({reason})"
    )]
    Fenced { epoch: i64, reason: String },
    /// A shared log cannot be reached now (a lost connection, a server restart). Retriable:
    /// the next call reconnects. The text never carries credentials.
    #[error("metadata log unavailable (retriable): {0}")]
    Unavailable(String),
}

impl MetadataLogError {
    /// Whether the same call may succeed later without anything else changing.
    pub fn is_retriable(&self) -> bool {
        matches!(self, MetadataLogError::Unavailable(_))
    }
}

/// Upper bound on the records one [`MetadataLogClient::read`] returns, whatever is asked: a
/// reader pages through a long log instead of holding it all at once.
pub const MAX_READ_RECORDS: usize = 100_000;

/// The longest one [`MetadataLogClient::wait_for_more`] waits: a caller's timeout is cut to
/// it, because `Instant::now() + Duration::MAX` overflows (a panic) and a wait of a year is
/// "forever" to a loader that loops anyway.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

pub trait MetadataLogClient: Send + Sync {
    /// The offset the next appended record will take: where an append must be aimed.
    fn end_offset(&self) -> Result<i64, MetadataLogError>;

    /// Appends `records` as one unit at `expected_offset`, durably (committed) when it
    /// returns, and returns the offset of the first. If the log's end is not
    /// `expected_offset` (another writer got there first, or this one is behind) nothing is
    /// written and the answer is [`MetadataLogError::Conflict`].
    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError>;

    /// Committed records from `from_offset` on, in order with their offsets, at most
    /// `max_records` (and at most [`MAX_READ_RECORDS`]). Empty at the end of the log.
    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError>;

    /// Waits until the log's end passes `offset` (a record at `offset` is committed) or
    /// `timeout` passes; returns the end offset then. A `timeout` beyond [`MAX_WAIT`]
    /// waits [`MAX_WAIT`], so `Duration::MAX` means "until something is committed".
    fn wait_for_more(&self, offset: i64, timeout: Duration) -> Result<i64, MetadataLogError>;

    /// Stops the log: later appends and reads fail with [`MetadataLogError::Closed`]. A
    /// second close does nothing.
    fn close(&self) -> Result<(), MetadataLogError>;
}
