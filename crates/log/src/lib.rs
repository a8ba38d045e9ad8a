//! Strom's storage layer, shaped after Apache Kafka's (UnifiedLog / LogSegment / OffsetIndex).
//!
//! A [`Log`] is one partition's directory: a sequence of [`segment::LogSegment`]s named by their
//! base offset (`00000000000000000000.log`, `.index`, `.timeindex`). Record batches are stored
//! exactly as the producer sent them (magic v2), with only the base offset and the partition
//! leader epoch rewritten (both outside the CRC-32C), unless the log's `compression.type` names
//! another codec than a batch's: then [`validator`] re-compresses it, as Kafka does.
//!
//! Modules, bottom up (each imports only those above it; `import_graph_tests` checks that no
//! import circle of more than two files forms): `error`, `files` (names and suffixes),
//! `batch`, `config`, `topic_partition`, `checkpoint`, `lock`, `partition_metadata`; `scan`
//! (walking a file's batches); `index` (the base the offset and time indexes share, Kafka's
//! `AbstractIndex`) under `offset_index` and `time_index`; `segment`; `control` (transaction
//! markers) and `txn_index` (the aborted-transaction index); `producer_state` (idempotent
//! producers and open transactions), `cleaner`, `validator`; `log`; `verify`.
//!
//! CONTRACT (the broker codes against these signatures; keep them stable):
//!
//! ```ignore
//! pub struct LogConfig { segment_bytes: u64, segment_ms: i64, segment_index_bytes: u64,
//!     index_interval_bytes: u64, max_message_bytes: usize, message_timestamp_type: TimestampType,
//!     retention_ms: i64, retention_bytes: i64 }          // Kafka defaults via Default
//! Log::open(dir: &Path, topic_partition: TopicPartition, config: LogConfig) -> Result<Log, LogError>
//!     // creates the dir if absent, recovers from the recovery-point checkpoint
//! log.append_as_leader(records: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo, LogError>
//!     // validates every batch (header, magic 2, lengths, CRC-32C), assigns offsets from the log
//!     // end offset, patches baseOffset and partitionLeaderEpoch in place, writes, indexes,
//!     // rolls the segment first if needed (size, age, index full)
//! log.read(start_offset: i64, max_bytes: usize, max_offset: i64, min_one_batch: bool) -> Result<FetchSlice, LogError>
//!     // whole batches from one segment, starting at the batch containing start_offset, stopping
//!     // before max_offset (the high watermark, exclusive); OffsetOutOfRange outside [log start, LEO]
//! FetchSlice::read_bytes(&self) -> std::io::Result<bytes::Bytes>   // pread, callable without the log lock
//! log.log_start_offset() / log.log_end_offset() / log.size_bytes()
//! log.fetch_offset_by_timestamp(target_ms: i64) -> Result<Option<TimestampAndOffset>, LogError>
//!     // first offset whose timestamp >= target; -1 latest, -2 earliest, -3 max timestamp handled by caller
//! log.max_timestamp_and_offset() -> Option<TimestampAndOffset>
//! log.flush_target() -> FlushTarget ; FlushTarget::sync(&self) -> io::Result<()> (fdatasync, no lock)
//! log.mark_flushed(offset: i64)                         // advances the recovery point, checkpoints it
//! log.truncate_to(offset: i64)                          // for replicas, later
//! log.delete_records_before(offset: i64)                // advances log start offset (DeleteRecords)
//! log.enforce_retention(now_ms: i64) -> Result<usize, LogError>   // deletes whole old segments
//! log.close() / Log::delete(self)
//! batch::validate_batches(&[u8]) -> Result<Vec<BatchHeader>, BatchError>
//! DirLock::acquire(dir) -> Result<DirLock, LogError>    // flock on `<dir>/.lock`
//! ```
//!
//! AS IMPLEMENTED (additions to the contract above; nothing renamed):
//! - `mark_flushed`, `truncate_to`, `close` return `Result<(), LogError>`;
//!   `delete_records_before` returns `Result<i64, LogError>` (the new log start offset);
//!   `Log::delete(self) -> Result<(), LogError>`; `close` takes `&mut self` and later
//!   operations fail with `LogError::Closed`.
//! - `FlushTarget::offset()`, and `log.mark_flushed_target(&target)`, which ignores a target
//!   taken before a truncation (prefer it over `mark_flushed(offset)`).
//! - `log.checkpoint_recovery_point()` forces the rate-limited (1/s) checkpoint write.
//! - `FetchSlice { file, position, size, first_offset, data_records }`, `FetchSlice::is_empty()`;
//!   `data_records` counts the records of its non-control batches from their headers, and
//!   `verify::data_records` counts them again for a slice cut shorter.
//! - `log.roll(now_ms)`, `log.update_config(config)`, `log.recovery_point()`, `log.segments()`.
//! - `LogError::kafka_error_code()` / `BatchError::kafka_error_code()` give the Kafka error code.
//! - Transactions (KIP-98): `control::encode_marker` builds a COMMIT/ABORT marker batch;
//!   `log.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, leader_epoch,
//!   now_ms) -> Result<AppendInfo, LogError>` writes one (the coordinator's append: producer
//!   and coordinator epochs checked, no sequence rules); `log.last_stable_offset(hw)`,
//!   `log.on_high_watermark_updated(hw)`, `log.read_with_upper_bound(..)` and
//!   `log.aborted_transactions(start, upper_bound)` serve read_committed fetches.
//! - A read excludes any batch whose *last* offset is >= `max_offset` (Kafka's rule; identical
//!   to "base offset >= max_offset" when the high watermark is at a batch boundary).
pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod control;
pub mod error;
pub mod files;
pub mod index;
pub mod lock;
pub mod log;
pub mod offset_index;
pub mod partition_metadata;
pub mod producer_state;
pub(crate) mod scan;
pub mod segment;
pub mod time_index;
pub mod topic_partition;
pub mod txn_index;
pub mod validator;
pub mod verify;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod import_graph_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod txn_tests;

pub use batch::{validate_batches, BatchHeader, Compression, TimestampType};
pub use cleaner::{CleanPlan, CleanStats, CleanedSegment};
pub use config::LogConfig;
pub use control::{decode_marker, encode_marker, TxnMarker};
pub use error::{BatchError, LogError, RecordError};
pub use lock::DirLock;
pub use log::{AppendInfo, FetchSlice, FlushTarget, Log, TimestampAndOffset};
pub use producer_state::{
    CompletedTxn, ProducerStateError, ProducerStateManager, SequenceCheck, VerificationGuard,
};
pub use topic_partition::TopicPartition;
pub use txn_index::AbortedTxn;
