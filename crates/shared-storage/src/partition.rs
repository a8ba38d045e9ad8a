//! A shared-storage partition as one broker sees it: the batch index (cached from PostgreSQL,
//! kept current by this broker's commits and other brokers' notifications), the high
//! watermark, and the read path that patches offsets into batches as they go out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_log::batch;
use tokio::sync::futures::Notified;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::error::SharedStorageError;
use crate::sequencer::{Committed, IndexEntry, StagedBatch};
use crate::shared::{Inner, IntakeRequest};

pub struct SharedPartition {
    pub topic_id: Uuid,
    pub partition: i32,
    pub(crate) storage: Arc<Inner>,
    leader_epoch: AtomicI32,
    /// The topic's `message.timestamp.type` is LogAppendTime.
    log_append_time: AtomicBool,
    /// Offsets below this are committed and in the local index: what fetch may serve.
    high_watermark: AtomicI64,
    log_start_offset: AtomicI64,
    index: Mutex<BTreeMap<i64, IndexEntry>>,
    /// One catch-up read at a time; a second caller finds the work done.
    catch_up_turn: tokio::sync::Mutex<()>,
    data_notify: Notify,
}

/// What a fetch gets: whole batches, base offsets and leader epochs patched in.
#[derive(Debug)]
pub struct SharedRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl SharedPartition {
    pub(crate) fn new(
        storage: Arc<Inner>,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        log_start_offset: i64,
    ) -> SharedPartition {
        SharedPartition {
            topic_id,
            partition,
            storage,
            leader_epoch: AtomicI32::new(leader_epoch),
            log_append_time: AtomicBool::new(false),
            high_watermark: AtomicI64::new(log_start_offset),
            log_start_offset: AtomicI64::new(log_start_offset),
            index: Mutex::new(BTreeMap::new()),
            catch_up_turn: tokio::sync::Mutex::new(()),
            data_notify: Notify::new(),
        }
    }

    fn index(&self) -> MutexGuard<'_, BTreeMap<i64, IndexEntry>> {
        // The map is consistent after any panic (each insert is one call).
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Takes a newer leader epoch from the image (never moves back). The sequencer records it
    /// with the next commit, fencing every older leader from then on.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Whether appends from now on are stamped with the broker's clock (the topic's
    /// `message.timestamp.type` is LogAppendTime), as Kafka's leader stamps them when it takes
    /// them into its log: here when the intake seals their object, before the PUT and commit.
    pub fn set_log_append_time(&self, on: bool) {
        self.log_append_time.store(on, Ordering::Release);
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// Resolves once the high watermark moves after this call; take it before reading.
    pub fn wait_for_data(&self) -> Notified<'_> {
        self.data_notify.notified()
    }

    /// Validates producer batches (header and CRC), hands them to the broker's intake and
    /// resolves once they are committed in PostgreSQL (or refused).
    pub async fn append(&self, records: Bytes) -> Result<Committed, SharedStorageError> {
        self.submit(records)?.await
    }

    /// [`SharedPartition::append`] whose hand-over to the intake happens in this call when the
    /// intake's queue has room: appends submitted one after another reach the intake (and are
    /// sequenced) in that order, which an idempotent producer's requests in flight rely on.
    /// Only a full queue defers the hand-over to the returned future (back-pressure).
    pub fn submit(
        &self,
        records: Bytes,
    ) -> Result<
        impl std::future::Future<Output = Result<Committed, SharedStorageError>> + Send + 'static,
        SharedStorageError,
    > {
        let request = self.intake_request(records)?;
        let intake = self.storage.intake.clone();
        let (request, answer) = request;
        let queued = match intake.try_send(request) {
            Ok(()) => None,
            Err(tokio::sync::mpsc::error::TrySendError::Full(r)) => Some(r),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                return Err(SharedStorageError::IntakeStopped)
            }
        };
        Ok(async move {
            if let Some(r) = queued {
                intake
                    .send(r)
                    .await
                    .map_err(|_| SharedStorageError::IntakeStopped)?;
            }
            answer
                .await
                .map_err(|_| SharedStorageError::IntakeStopped)?
        })
    }

    #[allow(clippy::type_complexity)]
    fn intake_request(
        &self,
        records: Bytes,
    ) -> Result<
        (
            IntakeRequest,
            oneshot::Receiver<Result<Committed, SharedStorageError>>,
        ),
        SharedStorageError,
    > {
        let headers = batch::validate_batches(&records).map_err(|e| {
            SharedStorageError::Rejected(
                ResponseError::try_from_code(e.kafka_error_code())
                    .unwrap_or(ResponseError::CorruptMessage),
            )
        })?;
        let mut batches = Vec::with_capacity(headers.len());
        let mut position = 0u64;
        for h in &headers {
            if h.magic != batch::CURRENT_MAGIC {
                return Err(SharedStorageError::Rejected(
                    ResponseError::UnsupportedForMessageFormat,
                ));
            }
            let size = h.size_bytes() as u64;
            batches.push(StagedBatch {
                byte_start: position,
                byte_length: u32::try_from(size)
                    .map_err(|_| SharedStorageError::Rejected(ResponseError::RecordListTooLarge))?,
                offset_count: h.offset_count(),
                max_timestamp_ms: h.max_timestamp,
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
                records_count: h.records_count,
            });
            position += size;
        }
        let (reply, answer) = oneshot::channel();
        let request = IntakeRequest {
            topic_id: self.topic_id,
            partition: self.partition,
            leader_epoch: self.leader_epoch(),
            records,
            batches,
            log_append_time: self.log_append_time.load(Ordering::Acquire),
            reply,
        };
        Ok((request, answer))
    }

    /// Takes index rows this broker just committed (their bytes already in the cache). Rows
    /// that do not follow the local index (another broker committed in between) wait for a
    /// catch-up read, so the high watermark never spans a hole.
    pub(crate) fn apply_committed(self: &Arc<Self>, entries: &[IndexEntry]) {
        if entries.is_empty() {
            return;
        }
        let contiguous = {
            let mut index = self.index();
            for e in entries {
                index.insert(e.base_offset, e.clone());
            }
            self.advance_contiguous(&index)
        };
        if !contiguous {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = me.catch_up().await {
                    tracing::warn!(topic_id = %me.topic_id, partition = me.partition, error = %e, "catch-up after a commit failed");
                }
            });
        }
    }

    /// Moves the high watermark over every contiguous index entry; false if a hole remains
    /// before the newest entry.
    fn advance_contiguous(&self, index: &BTreeMap<i64, IndexEntry>) -> bool {
        let start = self.high_watermark();
        let mut end = start;
        for (_, e) in index.range(start..) {
            if e.base_offset != end {
                break;
            }
            end = e.last_offset + 1;
        }
        if end > start {
            self.high_watermark.fetch_max(end, Ordering::AcqRel);
            self.data_notify.notify_waiters();
        }
        index
            .last_key_value()
            .map(|(_, e)| e.last_offset < end)
            .unwrap_or(true)
    }

    /// Reads the index rows committed since the local index's end (any broker's) and the log
    /// start offset.
    pub async fn catch_up(&self) -> Result<(), SharedStorageError> {
        let _turn = self.catch_up_turn.lock().await;
        let from = self.high_watermark();
        let (rows, log_start) = self
            .storage
            .read_index(self.topic_id, self.partition, from)
            .await?;
        self.log_start_offset.fetch_max(log_start, Ordering::AcqRel);
        let mut index = self.index();
        for e in rows {
            index.insert(e.base_offset, e);
        }
        if self.high_watermark() < log_start {
            self.high_watermark.fetch_max(log_start, Ordering::AcqRel);
        }
        self.advance_contiguous(&index);
        Ok(())
    }

    /// Whole batches from `offset`, at most `max_bytes` of them unless `min_one_batch` lets
    /// the first one exceed it.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<SharedRead, SharedStorageError> {
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        if offset < log_start_offset || offset > high_watermark {
            return Err(SharedStorageError::Rejected(
                ResponseError::OffsetOutOfRange,
            ));
        }
        let plan: Vec<IndexEntry> = {
            let index = self.index();
            let first = index
                .range(..=offset)
                .next_back()
                .filter(|(_, e)| e.last_offset >= offset)
                .map(|(k, _)| *k)
                .or_else(|| index.range(offset..).next().map(|(k, _)| *k));
            let mut plan = Vec::new();
            let mut total = 0usize;
            if let Some(first) = first {
                for (_, e) in index.range(first..) {
                    if e.base_offset >= high_watermark {
                        break;
                    }
                    let len = e.byte_length as usize;
                    if total + len > max_bytes && !(plan.is_empty() && min_one_batch) {
                        break;
                    }
                    total += len;
                    plan.push(e.clone());
                }
            }
            plan
        };
        let mut out = BytesMut::with_capacity(plan.iter().map(|e| e.byte_length as usize).sum());
        let stored = self.storage.batches_bytes(&plan).await?;
        for (e, bytes) in plan.iter().zip(stored) {
            let start = out.len();
            out.extend_from_slice(&bytes);
            let stored = &mut out[start..];
            // The batch was stored as the producer sent it; its offsets are the index's.
            batch::set_base_offset(stored, e.base_offset)
                .and_then(|()| batch::set_partition_leader_epoch(stored, e.leader_epoch))
                .map_err(|err| SharedStorageError::Corrupt(format!("{}: {err}", e.object_key)))?;
        }
        Ok(SharedRead {
            records: out.freeze(),
            high_watermark,
            log_start_offset,
        })
    }

    /// The first batch at or after the log start whose largest timestamp is at least
    /// `timestamp_ms`: its base offset and that timestamp (ListOffsets by time, at batch
    /// granularity).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let index = self.index();
        index
            .range(..hw)
            .map(|(_, e)| e)
            .filter(|e| e.last_offset >= start)
            .find(|e| e.max_timestamp_ms >= timestamp_ms)
            .map(|e| (e.base_offset.max(start), e.max_timestamp_ms))
    }

    /// The batch with the largest timestamp (the first such, as Kafka): its last offset and
    /// that timestamp (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let index = self.index();
        let mut best: Option<(i64, i64)> = None;
        for e in index
            .range(..hw)
            .map(|(_, e)| e)
            .filter(|e| e.last_offset >= start)
        {
            if best.is_none_or(|(_, t)| e.max_timestamp_ms > t) {
                best = Some((e.last_offset, e.max_timestamp_ms));
            }
        }
        best
    }

    /// Moves the log start to `offset` (DeleteRecords) in PostgreSQL; the new low watermark.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, SharedStorageError> {
        if offset > self.high_watermark() || offset < 0 {
            return Err(SharedStorageError::Rejected(
                ResponseError::OffsetOutOfRange,
            ));
        }
        let start = self
            .storage
            .advance_log_start(self.topic_id, self.partition, offset)
            .await?;
        self.log_start_offset.fetch_max(start, Ordering::AcqRel);
        Ok(self.log_start_offset())
    }

    /// Range GETs this broker has sent (all partitions).
    pub fn get_requests(&self) -> u64 {
        self.storage
            .get_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of the committed batches from the log start.
    pub fn size_bytes(&self) -> u64 {
        let start = self.log_start_offset();
        let hw = self.high_watermark();
        self.index()
            .range(..hw)
            .map(|(_, e)| e)
            .filter(|e| e.last_offset >= start)
            .map(|e| u64::from(e.byte_length))
            .sum()
    }
}
