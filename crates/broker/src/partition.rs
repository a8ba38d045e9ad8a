//! A partition replica hosted here: its log plus the replication state Kafka keeps beside it
//! (leader epoch, high watermark). A node of one is the leader and the whole ISR, so the high
//! watermark follows what is durable; replication will move it by follower acknowledgements.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use proto_kafka::ResponseError;
use strom_log::producer_state::batch_headers;
use strom_log::{
    AbortedTxn, FetchSlice, Log, LogError, SequenceCheck, TimestampAndOffset, TopicPartition,
    VerificationGuard,
};
use thiserror::Error;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::topic::TopicConfig;

#[derive(Debug, Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the log lock was poisoned by a panic")]
    Poisoned,
    #[error("rejected: {0:?}")]
    Rejected(ResponseError),
}

/// Kafka's error code for a failed append.
pub fn append_error_code(e: &PartitionError) -> ResponseError {
    match e {
        PartitionError::Log(e) => ResponseError::try_from_code(e.kafka_error_code())
            .unwrap_or(ResponseError::KafkaStorageError),
        PartitionError::Rejected(code) => *code,
        PartitionError::Io(_) | PartitionError::Poisoned => ResponseError::KafkaStorageError,
    }
}

/// Where an append went.
pub struct Appended {
    pub first_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    /// A retried idempotent batch: nothing new was written.
    pub duplicate: bool,
}

pub struct Partition {
    pub topic_partition: TopicPartition,
    pub topic_id: Uuid,
    /// The log, with the producer state it owns: a sequence check and the append it allows
    /// happen under one hold of this lock.
    log: Mutex<Log>,
    leader_epoch: AtomicI32,
    /// The leader the image names; requests that need the leader are refused elsewhere.
    leader_id: AtomicI32,
    high_watermark: AtomicI64,
    /// Everything below this offset has been fdatasynced.
    flushed_offset: AtomicI64,
    /// Records appended since the last flush, for log.flush.interval.messages.
    unflushed_messages: AtomicI64,
    /// One fsync at a time per partition; waiters behind it usually find their data already
    /// synced by the one before (group commit).
    flush_lock: tokio::sync::Mutex<()>,
    config: Mutex<TopicConfig>,
    /// The two settings every produce reads, kept out of the config lock.
    flush_messages: AtomicI64,
    min_insync_replicas: AtomicI32,
    /// Fires when the high watermark moves: only the fetches parked on this partition wake
    /// (Kafka's delayed-fetch purgatory is keyed by partition for the same reason).
    data_notify: Notify,
}

/// Who leads a partition, and in which epoch, as the image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub leader_id: i32,
    pub epoch: i32,
}

/// What a fetch sees of a partition at one moment.
pub struct PartitionRead {
    pub slice: Option<FetchSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// A read whose bytes are in memory (a shared-storage partition's: its cache or range GETs,
/// offsets patched in), so there is no file range to sendfile.
pub struct BytesRead {
    pub records: bytes::Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// As [`IsolatedRead::aborted_transactions`].
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

/// An append that resolves to where it went once it is durable and visible.
pub type PendingAppend = BoxFuture<'static, Result<Appended, PartitionError>>;

/// A fetch's read at an isolation level: read_committed stops at the last stable offset and
/// carries the aborted transactions of the range it returned.
pub struct IsolatedRead {
    pub read: PartitionRead,
    pub last_stable_offset: i64,
    /// Some (possibly empty) for read_committed, None for read_uncommitted (Kafka sends null).
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

impl Partition {
    pub fn new(log: Log, topic_id: Uuid, leader: Leadership, config: TopicConfig) -> Partition {
        let leo = log.log_end_offset();
        Partition {
            topic_partition: log.topic_partition().clone(),
            topic_id,
            log: Mutex::new(log),
            leader_epoch: AtomicI32::new(leader.epoch),
            leader_id: AtomicI32::new(leader.leader_id),
            // Recovery has already dropped anything torn, and what survived recovery is on
            // disk, so the whole log is visible again after a restart.
            high_watermark: AtomicI64::new(leo),
            flushed_offset: AtomicI64::new(leo),
            unflushed_messages: AtomicI64::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            flush_messages: AtomicI64::new(config.flush_messages),
            min_insync_replicas: AtomicI32::new(config.min_insync_replicas),
            config: Mutex::new(config),
            data_notify: Notify::new(),
        }
    }

    /// Resolves once the high watermark moves after this call (tokio's `notify_waiters`
    /// reaches a `Notified` from its creation, polled or not). Taken before reading, so an
    /// append between the read and the wait is not missed.
    pub fn wait_for_data(&self) -> Notified<'_> {
        self.data_notify.notified()
    }

    fn log(&self) -> Result<MutexGuard<'_, Log>, PartitionError> {
        self.log.lock().map_err(|_| PartitionError::Poisoned)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id.load(Ordering::Acquire)
    }

    /// Takes the image's leader and epoch. An epoch never moves back (the image refuses a
    /// stale one), so an older leadership arriving late changes nothing.
    pub fn set_leadership(&self, leader: Leadership) {
        let previous = self.leader_epoch.fetch_max(leader.epoch, Ordering::AcqRel);
        if leader.epoch >= previous {
            self.leader_id.store(leader.leader_id, Ordering::Release);
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn config(&self) -> TopicConfig {
        match self.config.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn log_start_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.log()?.log_start_offset())
    }

    pub fn log_end_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.log()?.log_end_offset())
    }

    pub fn size_bytes(&self) -> Result<u64, PartitionError> {
        Ok(self.log()?.size_bytes())
    }

    /// Appends producer batches (validated, offsets assigned in place). Durability and the
    /// high watermark follow in [`Partition::complete_append`].
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        self.append_producer_batches(records, now_ms, None)
    }

    /// [`Partition::append_as_leader`] of a produce that went through KIP-890 verification: a
    /// transactional batch that would open a transaction here needs `guard` to still be the
    /// producer's pending one (checked under the append's lock), so a marker written since
    /// the coordinator's answer makes it INVALID_TXN_STATE.
    pub fn append_as_leader_verified(
        &self,
        records: &mut [u8],
        now_ms: i64,
        guard: Option<VerificationGuard>,
    ) -> Result<Appended, PartitionError> {
        self.append_producer_batches(records, now_ms, Some(guard))
    }

    /// The guard to hold while the coordinator is asked about `producer_id`'s transaction.
    pub fn create_verification_guard(
        &self,
        producer_id: i64,
    ) -> Result<VerificationGuard, PartitionError> {
        Ok(self.log()?.create_verification_guard(producer_id))
    }

    /// `verification`: None for an append outside KIP-890, else the guard it holds.
    fn append_producer_batches(
        &self,
        records: &mut [u8],
        now_ms: i64,
        verification: Option<Option<VerificationGuard>>,
    ) -> Result<Appended, PartitionError> {
        let epoch = self.leader_epoch();
        let headers = batch_headers(records).map_err(|e| {
            PartitionError::Rejected(
                ResponseError::try_from_code(e.kafka_error_code())
                    .unwrap_or(ResponseError::CorruptMessage),
            )
        })?;
        let mut log = self.log()?;
        let check = log.producer_state().check(&headers).map_err(|e| {
            tracing::debug!(log = %self.topic_partition, error = %e, "refused producer append");
            PartitionError::Rejected(
                ResponseError::try_from_code(e.kafka_error_code())
                    .unwrap_or(ResponseError::InvalidRecord),
            )
        })?;
        if let Some(guard) = verification {
            log.producer_state()
                .check_verification(&headers, guard)
                .map_err(|e| {
                    tracing::debug!(log = %self.topic_partition, error = %e, "transactional batch without a pending verification");
                    PartitionError::Rejected(ResponseError::InvalidTxnState)
                })?;
        }
        if let SequenceCheck::Duplicate {
            first_offset,
            last_offset,
        } = check
        {
            return Ok(Appended {
                first_offset,
                last_offset,
                log_append_time_ms: -1,
                duplicate: true,
            });
        }
        let info = log.append_as_leader(records, epoch, now_ms)?;
        debug_assert!(info.first_offset <= info.last_offset);
        debug_assert_eq!(log.log_end_offset(), info.last_offset + 1);
        drop(log);
        self.unflushed_messages
            .fetch_add(info.last_offset - info.first_offset + 1, Ordering::AcqRel);
        Ok(Appended {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            duplicate: false,
        })
    }

    /// Appends a batch a coordinator wrote for a producer (the group coordinator's
    /// transactional offset commits): validated as any batch, and of the producer's state
    /// only its epoch is checked (an older one is INVALID_PRODUCER_EPOCH), as Kafka appends
    /// with the coordinator as origin; sequences and duplicates are the producer's own
    /// batches' business.
    pub fn append_as_coordinator(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        let epoch = self.leader_epoch();
        let headers = batch_headers(records).map_err(|e| {
            PartitionError::Rejected(
                ResponseError::try_from_code(e.kafka_error_code())
                    .unwrap_or(ResponseError::CorruptMessage),
            )
        })?;
        let mut log = self.log()?;
        for h in headers.iter().filter(|h| h.producer_id >= 0) {
            if h.is_control() {
                return Err(PartitionError::Rejected(ResponseError::InvalidRecord));
            }
            if log
                .producer_state()
                .producer(h.producer_id)
                .is_some_and(|e| h.producer_epoch < e.producer_epoch)
            {
                return Err(PartitionError::Rejected(
                    ResponseError::InvalidProducerEpoch,
                ));
            }
        }
        let info = log.append_as_leader(records, epoch, now_ms)?;
        drop(log);
        self.unflushed_messages
            .fetch_add(info.last_offset - info.first_offset + 1, Ordering::AcqRel);
        Ok(Appended {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            duplicate: false,
        })
    }

    /// Writes a COMMIT (`commit`) or ABORT marker for the producer (the transaction
    /// coordinator's WriteTxnMarkers) and makes it durable and visible as an acks=all append
    /// is; returns its offset. An older producer epoch is INVALID_PRODUCER_EPOCH, an older
    /// coordinator epoch TRANSACTION_COORDINATOR_FENCED (as `Rejected`), nothing written.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<i64, PartitionError> {
        let epoch = self.leader_epoch();
        let offset = {
            let mut log = self.log()?;
            log.on_high_watermark_updated(self.high_watermark());
            let info = log
                .append_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    epoch,
                    now_ms,
                )
                .map_err(|e| match e {
                    LogError::ProducerState { code, .. } => PartitionError::Rejected(
                        ResponseError::try_from_code(code)
                            .unwrap_or(ResponseError::InvalidProducerEpoch),
                    ),
                    other => PartitionError::Log(other),
                })?;
            info.first_offset
        };
        self.unflushed_messages.fetch_add(1, Ordering::AcqRel);
        self.complete_append(offset + 1).await?;
        Ok(offset)
    }

    /// The last stable offset now: the first offset of the earliest undecided transaction,
    /// else the high watermark.
    pub fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        let hw = self.high_watermark();
        Ok(self.log()?.last_stable_offset(hw))
    }

    /// [`Partition::read`] at an isolation level (`read_committed`: up to the last stable
    /// offset, with the aborted transactions of the batches returned).
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<IsolatedRead, PartitionError> {
        let log = self.log()?;
        let high_watermark = self.high_watermark();
        debug_assert!(high_watermark <= log.log_end_offset());
        let last_stable_offset = log.last_stable_offset(high_watermark);
        let max_offset = if read_committed {
            last_stable_offset
        } else {
            high_watermark
        };
        let (slice, upper_bound) =
            log.read_with_upper_bound(offset, max_bytes, max_offset, min_one_batch)?;
        let aborted_transactions = read_committed.then(|| {
            if slice.is_empty() {
                Vec::new()
            } else {
                log.aborted_transactions(offset, upper_bound)
            }
        });
        Ok(IsolatedRead {
            read: PartitionRead {
                slice: Some(slice),
                high_watermark,
                log_start_offset: log.log_start_offset(),
            },
            last_stable_offset,
            aborted_transactions,
        })
    }

    /// Makes an append visible per the flush policy: with flush.messages = 1 (Strom's default)
    /// the data is fsynced first and the high watermark never exposes unsynced data; otherwise
    /// it is visible at once and synced once flush.messages have accumulated.
    pub async fn complete_append(&self, end_offset: i64) -> Result<(), PartitionError> {
        let flush_messages = self.flush_messages.load(Ordering::Acquire);
        if flush_messages <= 1 {
            self.flush_to(end_offset).await
        } else {
            self.advance_high_watermark(end_offset);
            if self.unflushed_messages.load(Ordering::Acquire) >= flush_messages {
                self.flush_to(end_offset).await?;
            }
            Ok(())
        }
    }

    fn advance_high_watermark(&self, offset: i64) {
        let previous = self.high_watermark.fetch_max(offset, Ordering::AcqRel);
        if offset > previous {
            self.data_notify.notify_waiters();
        }
    }

    /// fdatasyncs the log up to at least `offset` (exclusive), sharing one sync among
    /// concurrent callers.
    pub async fn flush_to(&self, offset: i64) -> Result<(), PartitionError> {
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _turn = self.flush_lock.lock().await;
        if self.flushed_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let target = self.log()?.flush_target();
        let end = target.offset();
        self.unflushed_messages.store(0, Ordering::Release);
        let flush_started = std::time::Instant::now();
        let target = tokio::task::spawn_blocking(move || target.sync().map(|()| target))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        crate::metrics::log_flushed(flush_started);
        {
            let mut log = self.log()?;
            log.mark_flushed_target(&target)?;
            log.on_high_watermark_updated(self.high_watermark().max(end));
        }
        self.flushed_offset.fetch_max(end, Ordering::AcqRel);
        self.advance_high_watermark(end);
        Ok(())
    }

    /// Flushes whatever is unsynced (the periodic flusher and shutdown).
    pub async fn flush(&self) -> Result<(), PartitionError> {
        let end = self.log_end_offset()?;
        self.flush_to(end).await
    }

    /// Whole batches from `offset`, up to the high watermark. The bytes are read later,
    /// without the log lock.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<PartitionRead, PartitionError> {
        let log = self.log()?;
        let high_watermark = self.high_watermark();
        // The high watermark only ever takes an offset the log has written (an append's end,
        // a flush target), and the log end never moves back while the partition is open.
        debug_assert!(high_watermark <= log.log_end_offset());
        let slice = log.read(offset, max_bytes, high_watermark, min_one_batch)?;
        Ok(PartitionRead {
            slice: Some(slice),
            high_watermark,
            log_start_offset: log.log_start_offset(),
        })
    }

    /// One log-compaction pass, if the log is compacted and due. The rewrite runs on a
    /// blocking thread without the partition lock (sealed segments do not change); only the
    /// swap takes it. Returns the segments replaced and the pass's figures.
    pub async fn compact(
        &self,
        now_ms: i64,
    ) -> Result<Option<(usize, strom_log::CleanStats)>, PartitionError> {
        let Some(plan) = self.with_log(|log| log.cleaning_plan())? else {
            return Ok(None);
        };
        let job = plan.clone();
        let (cleaned, stats) =
            tokio::task::spawn_blocking(move || strom_log::cleaner::clean(&job, now_ms))
                .await
                .map_err(|e| PartitionError::Io(std::io::Error::other(e.to_string())))??;
        let replaced = self.with_log(|log| log.install_cleaned(&plan, cleaned, now_ms))??;
        Ok(Some((replaced, stats)))
    }

    pub fn with_log<R>(&self, f: impl FnOnce(&mut Log) -> R) -> Result<R, PartitionError> {
        let mut log = self.log()?;
        Ok(f(&mut log))
    }

    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas.load(Ordering::Acquire)
    }

    pub fn update_config(&self, config: TopicConfig) -> Result<(), PartitionError> {
        self.log()?.update_config(config.log_config())?;
        self.flush_messages
            .store(config.flush_messages, Ordering::Release);
        self.min_insync_replicas
            .store(config.min_insync_replicas, Ordering::Release);
        match self.config.lock() {
            Ok(mut c) => *c = config,
            Err(p) => *p.into_inner() = config,
        }
        Ok(())
    }
}

/// A partition as the request handlers see it (Kafka's `Partition` with its `UnifiedLog`):
/// what produce, fetch, list_offsets, delete_records and the coordinator's writes need, and
/// nothing of how the bytes are kept. [`Partition`] (a local log) implements it today; the
/// cluster's shared-storage partition implements it without the handlers changing.
pub trait PartitionLog: Send + Sync {
    fn topic_partition(&self) -> &TopicPartition;
    fn topic_id(&self) -> Uuid;
    fn leader_epoch(&self) -> i32;
    /// The leader the image names for this partition.
    fn leader_id(&self) -> i32;
    fn high_watermark(&self) -> i64;
    fn log_start_offset(&self) -> Result<i64, PartitionError>;
    fn log_end_offset(&self) -> Result<i64, PartitionError>;
    fn size_bytes(&self) -> Result<u64, PartitionError>;
    fn min_insync_replicas(&self) -> i32;
    fn config(&self) -> TopicConfig;
    /// Validates and appends producer batches in place; visible and durable only after
    /// [`PartitionLog::complete_append`].
    fn append_as_leader(&self, records: &mut [u8], now_ms: i64)
        -> Result<Appended, PartitionError>;
    /// Appends a coordinator's batch for a producer (see [`Partition::append_as_coordinator`]);
    /// a partition kind without producer state takes it as any append.
    fn append_as_coordinator(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        self.append_as_leader(records, now_ms)
    }
    /// [`Partition::append_as_leader_verified`]; a partition kind without producer state
    /// takes it as any append.
    fn append_as_leader_verified(
        &self,
        records: &mut [u8],
        now_ms: i64,
        guard: Option<VerificationGuard>,
    ) -> Result<Appended, PartitionError> {
        let _ = guard;
        self.append_as_leader(records, now_ms)
    }
    /// [`Partition::create_verification_guard`]; None from a partition kind that keeps no
    /// producer state.
    fn create_verification_guard(&self, producer_id: i64) -> Option<VerificationGuard> {
        let _ = producer_id;
        None
    }
    /// Makes an append up to `end_offset` durable and visible (the high watermark).
    fn complete_append(&self, end_offset: i64) -> BoxFuture<'_, Result<(), PartitionError>>;
    /// Whole batches from `offset` up to the high watermark, as a file range fetch sends with
    /// sendfile.
    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<PartitionRead, PartitionError>;
    /// The first batch with a record at or after `timestamp_ms` (ListOffsets by time).
    fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, PartitionError>;
    /// The batch holding the largest timestamp (ListOffsets MAX_TIMESTAMP).
    fn max_timestamp_and_offset(&self) -> Result<Option<TimestampAndOffset>, PartitionError>;
    /// Moves the log start to `offset` (DeleteRecords); returns the new low watermark.
    fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError>;
    /// Resolves once the high watermark moves after this call; take it before reading.
    fn wait_for_data(&self) -> Notified<'_>;
    /// Where the bytes at `offset` are kept, for error logs; None if nowhere local.
    fn segment_path_containing(&self, offset: i64) -> Option<std::path::PathBuf>;
    /// Writes a transaction marker (WriteTxnMarkers), durable and visible as an acks=all
    /// append before it resolves; the marker's offset. A partition kind without transactions
    /// refuses it.
    fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<i64, PartitionError>> {
        let _ = (
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
        );
        Box::pin(async {
            Err(PartitionError::Rejected(
                ResponseError::UnsupportedForMessageFormat,
            ))
        })
    }
    /// The last stable offset (the high watermark where no transaction is undecided).
    fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.high_watermark())
    }
    /// Whether `producer_id` has an open transaction here (Kafka's
    /// `UnifiedLog.hasOngoingTransaction`): a transactional produce to such a partition needs
    /// no new verification with the coordinator (KIP-890), as its transaction already wrote
    /// here. A partition kind that cannot tell answers false, so every batch is verified.
    fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        let _ = producer_id;
        false
    }
    /// Starts an append of producer batches whose offsets exist only once it is durable (a
    /// shared-storage partition: the broker's intake PUTs many partitions' batches as one
    /// object, then PostgreSQL sequences them), resolving to where it went. None: this kind
    /// appends with [`PartitionLog::append_as_leader`] and [`PartitionLog::complete_append`].
    fn start_append(&self, records: &[u8], now_ms: i64) -> Option<PendingAppend> {
        let _ = (records, now_ms);
        None
    }
    /// [`PartitionLog::start_append`] of a coordinator's batch for a producer (see
    /// [`Partition::append_as_coordinator`]: its epoch checked, not its sequences). None: this
    /// kind appends with [`PartitionLog::append_as_coordinator`].
    fn start_append_as_coordinator(&self, records: &[u8], now_ms: i64) -> Option<PendingAppend> {
        let _ = (records, now_ms);
        None
    }
    /// [`PartitionLog::delete_records_before`] for a kind whose log start lives elsewhere (a
    /// shared-storage partition: a PostgreSQL update), so no worker thread waits on it. None:
    /// call `delete_records_before`.
    fn start_delete_records(
        &self,
        offset: i64,
    ) -> Option<BoxFuture<'_, Result<i64, PartitionError>>> {
        let _ = offset;
        None
    }
    /// [`PartitionLog::read_isolated`] for a kind whose bytes are not in a local file (shared
    /// storage): the bytes themselves. None: read with `read_isolated`.
    fn read_bytes(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Option<BoxFuture<'_, Result<BytesRead, PartitionError>>> {
        let _ = (offset, max_bytes, min_one_batch, read_committed);
        None
    }
    /// [`PartitionLog::read`] at an isolation level: read_committed stops at the last stable
    /// offset and lists the aborted transactions of what it returns.
    fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<IsolatedRead, PartitionError> {
        let read = self.read(offset, max_bytes, min_one_batch)?;
        let last_stable_offset = read.high_watermark;
        Ok(IsolatedRead {
            read,
            last_stable_offset,
            aborted_transactions: read_committed.then(Vec::new),
        })
    }
}

impl PartitionLog for Partition {
    fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }
    fn topic_id(&self) -> Uuid {
        self.topic_id
    }
    fn leader_epoch(&self) -> i32 {
        Partition::leader_epoch(self)
    }
    fn leader_id(&self) -> i32 {
        Partition::leader_id(self)
    }
    fn high_watermark(&self) -> i64 {
        Partition::high_watermark(self)
    }
    fn log_start_offset(&self) -> Result<i64, PartitionError> {
        Partition::log_start_offset(self)
    }
    fn log_end_offset(&self) -> Result<i64, PartitionError> {
        Partition::log_end_offset(self)
    }
    fn size_bytes(&self) -> Result<u64, PartitionError> {
        Partition::size_bytes(self)
    }
    fn min_insync_replicas(&self) -> i32 {
        Partition::min_insync_replicas(self)
    }
    fn config(&self) -> TopicConfig {
        Partition::config(self)
    }
    fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        Partition::append_as_leader(self, records, now_ms)
    }
    fn append_as_coordinator(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        Partition::append_as_coordinator(self, records, now_ms)
    }
    fn append_as_leader_verified(
        &self,
        records: &mut [u8],
        now_ms: i64,
        guard: Option<VerificationGuard>,
    ) -> Result<Appended, PartitionError> {
        Partition::append_as_leader_verified(self, records, now_ms, guard)
    }
    fn create_verification_guard(&self, producer_id: i64) -> Option<VerificationGuard> {
        Partition::create_verification_guard(self, producer_id).ok()
    }
    fn complete_append(&self, end_offset: i64) -> BoxFuture<'_, Result<(), PartitionError>> {
        Box::pin(Partition::complete_append(self, end_offset))
    }
    fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<PartitionRead, PartitionError> {
        Partition::read(self, offset, max_bytes, min_one_batch)
    }
    fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, PartitionError> {
        Ok(self.log()?.fetch_offset_by_timestamp(timestamp_ms)?)
    }
    fn max_timestamp_and_offset(&self) -> Result<Option<TimestampAndOffset>, PartitionError> {
        Ok(self.log()?.max_timestamp_and_offset())
    }
    fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        Ok(self.log()?.delete_records_before(offset)?)
    }
    fn wait_for_data(&self) -> Notified<'_> {
        Partition::wait_for_data(self)
    }
    fn segment_path_containing(&self, offset: i64) -> Option<std::path::PathBuf> {
        self.log().ok()?.segment_path_containing(offset)
    }
    fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<i64, PartitionError>> {
        Box::pin(Partition::append_marker(
            self,
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
        ))
    }
    fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        Partition::last_stable_offset(self)
    }
    fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.log().is_ok_and(|log| {
            log.producer_state()
                .producer(producer_id)
                .is_some_and(|e| e.current_txn_first_offset.is_some())
        })
    }
    fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<IsolatedRead, PartitionError> {
        Partition::read_isolated(self, offset, max_bytes, min_one_batch, read_committed)
    }
}

/// Resolves when any one of several waits resolves: a fetch over many partitions wakes when
/// any of them gets data, and never for an append elsewhere.
pub struct AnyData<'a> {
    waits: Vec<Pin<Box<Notified<'a>>>>,
}

impl<'a> AnyData<'a> {
    pub fn new(waits: impl IntoIterator<Item = Notified<'a>>) -> Self {
        AnyData {
            waits: waits.into_iter().map(Box::pin).collect(),
        }
    }
}

impl Future for AnyData<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // With nothing to wait on only the fetch's timeout can end the wait.
        for wait in self.waits.iter_mut() {
            if wait.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;
    use bytes::Bytes;
    use futures_util::FutureExt;

    fn partition(dir: &std::path::Path, name: &str) -> Partition {
        let config = TopicConfig::broker_defaults(&RawConfig::defaults()).unwrap();
        let tp = TopicPartition::new(name, 0);
        let log = Log::open(&dir.join(tp.dir_name()), tp, config.log_config()).unwrap();
        let leader = Leadership {
            leader_id: 0,
            epoch: 0,
        };
        Partition::new(log, Uuid::new_v4(), leader, config)
    }

    async fn append_one(p: &Partition) {
        let now = crate::metadata::metadata_log::now_ms();
        let mut batch = crate::metadata::metadata_log::encode_internal_batch(
            [(
                Some(Bytes::from_static(b"k")),
                Some(Bytes::from_static(b"v")),
            )],
            now,
        )
        .unwrap();
        let appended = p.append_as_leader(&mut batch, now).unwrap();
        p.complete_append(appended.last_offset + 1).await.unwrap();
    }

    #[tokio::test]
    async fn an_append_wakes_only_the_waiters_on_its_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let a = partition(tmp.path(), "a");
        let b = partition(tmp.path(), "b");
        let mut on_a = std::pin::pin!(a.wait_for_data());
        let mut on_b = std::pin::pin!(b.wait_for_data());
        assert!(on_a.as_mut().now_or_never().is_none());
        assert!(on_b.as_mut().now_or_never().is_none());
        append_one(&a).await;
        assert!(on_a.now_or_never().is_some(), "the waiter on A woke");
        assert!(
            on_b.now_or_never().is_none(),
            "an append to A must not wake a waiter on B"
        );
        assert_eq!(a.high_watermark(), 1);
        assert_eq!(b.high_watermark(), 0);
    }

    /// A fetch over several partitions wakes when any one of them gets data, and not before.
    #[tokio::test]
    async fn a_wait_on_many_partitions_wakes_on_any_of_them() {
        let tmp = tempfile::tempdir().unwrap();
        let parts: Vec<Partition> = (0..3)
            .map(|i| partition(tmp.path(), &format!("p{i}")))
            .collect();
        let other = partition(tmp.path(), "other");
        let mut any = AnyData::new(parts.iter().map(|p| p.wait_for_data()));
        assert!((&mut any).now_or_never().is_none());
        append_one(&other).await;
        assert!(
            (&mut any).now_or_never().is_none(),
            "woken by an append elsewhere"
        );
        append_one(&parts[2]).await;
        assert!(any.now_or_never().is_some());
        // Nothing to wait on: only the fetch's own timeout ends it.
        assert!(AnyData::new(std::iter::empty()).now_or_never().is_none());
    }

    /// One transactional batch of `records` from producer `pid` (epoch 0, sequence `seq`).
    pub(crate) fn txn_batch(pid: i64, seq: i32, records: usize, now_ms: i64) -> bytes::BytesMut {
        use proto_kafka::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: true,
                control: false,
                delete_horizon_ms: None,
                partition_leader_epoch: 0,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Vec::new(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    #[tokio::test]
    async fn a_marker_is_durable_and_moves_the_last_stable_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let p = partition(tmp.path(), "t");
        let now = crate::metadata::metadata_log::now_ms();
        let mut data = txn_batch(5, 0, 3, now);
        let appended = p.append_as_leader(&mut data, now).unwrap();
        p.complete_append(appended.last_offset + 1).await.unwrap();
        assert_eq!(p.high_watermark(), 3);
        assert_eq!(p.last_stable_offset().unwrap(), 0);
        let committed = p.read_isolated(0, 1 << 20, true, true).unwrap();
        assert!(committed.read.slice.unwrap().is_empty());
        assert_eq!(committed.last_stable_offset, 0);
        assert_eq!(committed.aborted_transactions, Some(Vec::new()));
        let uncommitted = p.read_isolated(0, 1 << 20, true, false).unwrap();
        assert!(!uncommitted.read.slice.unwrap().is_empty());
        assert_eq!(uncommitted.aborted_transactions, None);
        let offset = p.append_marker(5, 0, 0, false, now).await.unwrap();
        assert_eq!(offset, 3);
        // Durable and visible before it returns.
        assert_eq!(p.high_watermark(), 4);
        assert_eq!(p.last_stable_offset().unwrap(), 4);
        let read = p.read_isolated(0, 1 << 20, true, true).unwrap();
        assert!(!read.read.slice.unwrap().is_empty());
        let aborted = read.aborted_transactions.unwrap();
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id, aborted[0].first_offset), (5, 0));
        // A fenced epoch is refused with Kafka's error and writes nothing.
        let err = p.append_marker(5, -1, 0, true, now).await.err().unwrap();
        assert!(matches!(
            err,
            PartitionError::Rejected(ResponseError::InvalidProducerEpoch)
        ));
        assert_eq!(p.log_end_offset().unwrap(), 4);
    }

    /// KIP-890's race: the coordinator said yes, then the transaction's marker was written
    /// (an EndTxn racing the produce, or a timeout abort) before the batch arrived. The batch
    /// would open a transaction no coordinator will end and hold read_committed readers at the
    /// last stable offset; the guard the marker cleared refuses it.
    #[tokio::test]
    async fn txn_batch_after_its_marker_is_refused_by_the_cleared_guard() {
        let tmp = tempfile::tempdir().unwrap();
        let p = partition(tmp.path(), "t");
        let now = crate::metadata::metadata_log::now_ms();
        // A first transaction of producer 5, committed: the producer is known here.
        let guard = p.create_verification_guard(5).unwrap();
        let mut data = txn_batch(5, 0, 2, now);
        let appended = p
            .append_as_leader_verified(&mut data, now, Some(guard))
            .unwrap();
        p.complete_append(appended.last_offset + 1).await.unwrap();
        p.append_marker(5, 0, 0, true, now).await.unwrap();
        let end = p.log_end_offset().unwrap();

        // Verified (the guard is made before the question), then the marker, then the batch.
        let guard = p.create_verification_guard(5).unwrap();
        p.append_marker(5, 0, 0, false, now).await.unwrap();
        let end = end.max(p.log_end_offset().unwrap());
        let mut stray = txn_batch(5, 2, 1, now);
        let err = p
            .append_as_leader_verified(&mut stray, now, Some(guard))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            PartitionError::Rejected(ResponseError::InvalidTxnState)
        ));
        assert_eq!(p.log_end_offset().unwrap(), end, "nothing written");
        assert_eq!(p.last_stable_offset().unwrap(), p.high_watermark());
        // Nor does a batch that skipped the question (its partition's transaction looked
        // open when the produce was checked) open one.
        let mut unasked = txn_batch(5, 2, 1, now);
        assert!(p
            .append_as_leader_verified(&mut unasked, now, None)
            .is_err());

        // Verified, then appended: the batch opens the transaction, whose next batch needs no
        // new question.
        let guard = p.create_verification_guard(5).unwrap();
        let mut data = txn_batch(5, 2, 1, now);
        let appended = p
            .append_as_leader_verified(&mut data, now, Some(guard))
            .unwrap();
        assert_eq!(appended.first_offset, end);
        let mut next = txn_batch(5, 3, 1, now);
        let next = p.append_as_leader_verified(&mut next, now, None).unwrap();
        p.complete_append(next.last_offset + 1).await.unwrap();
        assert_eq!(p.last_stable_offset().unwrap(), end);
    }
}
