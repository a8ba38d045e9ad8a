//! A shared-storage partition as one broker sees it: the batch index (cached from PostgreSQL,
//! kept current by this broker's commits and other brokers' notifications), the high
//! watermark, and the read path that patches offsets into batches as they go out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_log::{batch, AbortedTxn};
use tokio::sync::futures::Notified;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use crate::error::SharedStorageError;
use crate::sequencer::{txn_kind, Committed, IndexEntry, StagedBatch};
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
    /// The transactions of the index up to the high watermark (taken under the index's lock,
    /// in offset order as the high watermark passes each batch), so every broker derives the
    /// same last stable offset and aborted transactions from the same committed rows.
    txns: Mutex<TxnState>,
    marker_listener: Mutex<Option<MarkerListener>>,
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
    /// The first offset of the earliest open transaction, else the high watermark.
    pub last_stable_offset: i64,
    /// For a read_committed read: the aborted transactions overlapping what it returns.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

/// A partition's transactions as its committed batches tell them (Kafka's producer state for
/// the last stable offset, and its `.txnindex`).
#[derive(Debug, Default)]
struct TxnState {
    /// Open transactions: first offset to producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Producer id to its open transaction's first offset.
    by_producer: HashMap<i64, i64>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
    /// Markers passed since the listener was last told: (producer id, commit).
    decided: Vec<(i64, bool)>,
}

/// Told of each marker as the high watermark passes it: (producer id, commit).
pub type MarkerListener = Arc<dyn Fn(i64, bool) + Send + Sync>;

impl TxnState {
    fn apply(&mut self, e: &IndexEntry) {
        match e.txn_kind {
            txn_kind::DATA => {
                if let std::collections::hash_map::Entry::Vacant(v) =
                    self.by_producer.entry(e.producer_id)
                {
                    v.insert(e.base_offset);
                    self.ongoing.insert(e.base_offset, e.producer_id);
                }
            }
            txn_kind::COMMIT | txn_kind::ABORT => {
                self.decided
                    .push((e.producer_id, e.txn_kind == txn_kind::COMMIT));
                let first = self.by_producer.remove(&e.producer_id);
                if let Some(first) = first {
                    self.ongoing.remove(&first);
                }
                if e.txn_kind == txn_kind::ABORT {
                    self.aborted.push(AbortedTxn {
                        producer_id: e.producer_id,
                        first_offset: first.unwrap_or(e.base_offset),
                        last_offset: e.last_offset,
                        // As Kafka's: the next transaction still open, else just past this one.
                        last_stable_offset: self
                            .ongoing
                            .keys()
                            .next()
                            .copied()
                            .unwrap_or(e.last_offset + 1),
                    });
                }
            }
            _ => {}
        }
    }

    fn last_stable_offset(&self, high_watermark: i64, log_start_offset: i64) -> i64 {
        match self.ongoing.keys().next() {
            // A transaction begun below the log start holds it at the log start, as Kafka's.
            Some(first) => (*first).max(log_start_offset).min(high_watermark),
            None => high_watermark,
        }
    }

    /// The aborted transactions overlapping `start_offset..upper_bound_offset`.
    fn aborted_between(&self, start_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|t| t.last_offset >= start_offset && t.first_offset < upper_bound_offset)
            .copied()
            .collect()
    }
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
            txns: Mutex::new(TxnState::default()),
            marker_listener: Mutex::new(None),
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

    fn txns(&self) -> MutexGuard<'_, TxnState> {
        // Each change is applied whole under the lock.
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last stable offset: the first offset of the earliest transaction still open (no
    /// marker under the high watermark), else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let txns = self.txns();
        txns.last_stable_offset(self.high_watermark(), self.log_start_offset())
    }

    /// Whether `producer_id` has a transaction open here, as far as this broker has read.
    pub fn has_ongoing_transaction(&self, producer_id: i64) -> bool {
        self.txns().by_producer.contains_key(&producer_id)
    }

    /// Tells `listener` of every marker the high watermark passes from now on (the group
    /// coordinator of `__consumer_offsets`, whose transactional offsets a marker decides,
    /// whichever broker wrote it).
    pub fn set_marker_listener(&self, listener: MarkerListener) {
        *self
            .marker_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Hands the markers passed so far to the listener, outside the index's lock.
    fn deliver_markers(&self) {
        let decided = std::mem::take(&mut self.txns().decided);
        if decided.is_empty() {
            return;
        }
        let listener = self
            .marker_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(listener) = listener {
            for (producer_id, commit) in decided {
                listener(producer_id, commit);
            }
        }
    }

    /// Every aborted transaction this broker has read, oldest marker first.
    pub fn aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.txns().aborted.clone()
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
        self.submit_as(records, false)
    }

    /// [`SharedPartition::submit`] of a batch a coordinator writes for a producer (the group
    /// coordinator's transactional offsets): the producer's epoch is checked at the commit,
    /// not its sequences (Kafka's AppendOrigin.Coordinator).
    pub fn submit_as_coordinator(
        &self,
        records: Bytes,
    ) -> Result<
        impl std::future::Future<Output = Result<Committed, SharedStorageError>> + Send + 'static,
        SharedStorageError,
    > {
        self.submit_as(records, true)
    }

    /// Writes a COMMIT (`commit`) or ABORT marker for the producer through the intake (the
    /// transaction coordinator's WriteTxnMarkers); resolves once committed, to the marker's
    /// offset. An older producer epoch is INVALID_PRODUCER_EPOCH, an older coordinator epoch
    /// TRANSACTION_COORDINATOR_FENCED, nothing written.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<Committed, SharedStorageError> {
        if producer_id < 0 {
            return Err(SharedStorageError::Rejected(ResponseError::InvalidRecord));
        }
        let marker = strom_log::encode_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
        )
        .map_err(|e| SharedStorageError::Corrupt(e.to_string()))?;
        self.submit_as(marker.freeze(), true)?.await
    }

    fn submit_as(
        &self,
        records: Bytes,
        coordinator: bool,
    ) -> Result<
        impl std::future::Future<Output = Result<Committed, SharedStorageError>> + Send + 'static,
        SharedStorageError,
    > {
        let request = self.intake_request(records, coordinator)?;
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
        coordinator: bool,
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
            let mut coordinator_epoch = -1;
            let kind = if h.is_control() {
                // Only a coordinator writes control batches (Kafka refuses them from clients).
                if !coordinator {
                    return Err(SharedStorageError::Rejected(ResponseError::InvalidRecord));
                }
                let start = position as usize;
                let bytes = records
                    .get(start..start + h.size_bytes())
                    .ok_or(SharedStorageError::Rejected(ResponseError::CorruptMessage))?;
                match strom_log::decode_marker(h, bytes)
                    .map_err(|_| SharedStorageError::Rejected(ResponseError::InvalidRecord))?
                {
                    Some(m) => {
                        coordinator_epoch = m.coordinator_epoch;
                        if m.commit {
                            txn_kind::COMMIT
                        } else {
                            txn_kind::ABORT
                        }
                    }
                    None => txn_kind::NONE,
                }
            } else if h.is_transactional() {
                txn_kind::DATA
            } else {
                txn_kind::NONE
            };
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
                txn_kind: kind,
                coordinator_epoch,
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
            coordinator,
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
        self.deliver_markers();
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
        let mut txns = self.txns();
        let start = self.high_watermark();
        let mut end = start;
        for (_, e) in index.range(start..) {
            if e.base_offset != end {
                break;
            }
            txns.apply(e);
            end = e.last_offset + 1;
        }
        if end > start {
            self.high_watermark.fetch_max(end, Ordering::AcqRel);
            drop(txns);
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
        drop(index);
        self.deliver_markers();
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
        self.read_isolated(offset, max_bytes, min_one_batch, false)
            .await
    }

    /// [`SharedPartition::read`] at an isolation level: `read_committed` stops at the last
    /// stable offset and returns the aborted transactions of what it reads, as a local log's
    /// read_committed fetch.
    pub async fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<SharedRead, SharedStorageError> {
        let (high_watermark, last_stable_offset) = {
            let txns = self.txns();
            let hw = self.high_watermark();
            (hw, txns.last_stable_offset(hw, self.log_start_offset()))
        };
        let bound = if read_committed {
            last_stable_offset
        } else {
            high_watermark
        };
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
                    if e.base_offset >= bound {
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
        let aborted_transactions = read_committed.then(|| match plan.last() {
            Some(last) => self.txns().aborted_between(offset, last.last_offset + 1),
            None => Vec::new(),
        });
        Ok(SharedRead {
            records: out.freeze(),
            high_watermark,
            log_start_offset,
            last_stable_offset,
            aborted_transactions,
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
