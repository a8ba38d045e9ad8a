//! Idempotent producers (KIP-98), per partition log: the last batches of each producer id, so a
//! retried batch is answered with its original offsets instead of being written twice, a gap in
//! sequence numbers is refused, and a fenced epoch is refused (Kafka's ProducerStateManager).
//!
//! The state is derived from the log, and it survives a restart the way Kafka's does:
//!
//! - a snapshot `<offset>.snapshot` (20-digit offset, like segment names) is written when a
//!   segment rolls (`offset` = the new segment's base) and when the log closes (`offset` = the
//!   log end offset). It describes every batch below `offset`;
//! - on open (and after a truncation) the newest snapshot that is not beyond the log end and
//!   not older than the first segment is read, and the batches from its offset to the log end
//!   are replayed. A snapshot that cannot be read is skipped with a WARN and deleted (it is
//!   derived data; Kafka does the same), and an older one, or the whole log, is used instead;
//! - snapshots older than the first segment go with the segments they describe (retention,
//!   DeleteRecords); at a roll, only those of the last two segments and from the segment
//!   holding the recovery point are kept (Kafka's rule); a full truncation removes them all.
//!
//! Snapshot layout (Strom's own, not Kafka's: Kafka keeps only the last batch of each
//! producer, Strom keeps all five, so duplicates are recognised right after a restart too).
//! Big-endian:
//!
//! ```text
//! magic "SPST" | version i16 = 1 | crc u32: CRC-32C of everything after it
//! offset i64 (must match the file name) | producer count i32
//! per producer: producer id i64 | epoch i16 | coordinator epoch i32
//!     | current txn first offset i64 (-1: none) | last timestamp i64 | batch count i32 (0..=5)
//!     per batch: first seq i32 | last seq i32 | first offset i64 | last offset i64 | timestamp i64
//! ```
//!
//! Transactions (KIP-98): a transactional batch opens its producer's transaction (the first
//! offset is kept, and snapshotted) until a marker ([`crate::control`]) ends it; the ongoing
//! transactions, in first-offset order, give the log its last stable offset, and each marker
//! is a [`CompletedTxn`] (aborted ones go to the log's aborted-transaction index).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::{parse_header, BatchHeader};
use crate::checkpoint::TEMP_SUFFIX;
use crate::error::{BatchError, IoContext, LogError};
use crate::scan::{BatchScanner, ScanItem};
use crate::segment::LogSegment;
use crate::topic_partition::TopicPartition;

pub const PRODUCER_SNAPSHOT_FILE_SUFFIX: &str = ".snapshot";
/// Kafka keeps the last five batches per producer: the most a producer has in flight.
pub const CACHED_BATCHES_PER_PRODUCER: usize = 5;
/// Bound on producers remembered per partition; the least recently written is forgotten.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 10_000;
/// producer.id.expiration.ms (Kafka's default: one day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

const SNAPSHOT_MAGIC: &[u8; 4] = b"SPST";
const SNAPSHOT_VERSION: i16 = 1;
/// magic + version + crc.
const SNAPSHOT_CRC_START: usize = 4 + 2 + 4;
const PRODUCER_ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 8 + 4;
const BATCH_ENTRY_BYTES: usize = 4 + 4 + 8 + 8 + 8;
/// The largest snapshot a valid state can produce, with room to spare; a bigger file is damaged.
const MAX_SNAPSHOT_BYTES: u64 = (SNAPSHOT_CRC_START
    + 12
    + MAX_PRODUCERS_PER_PARTITION
        * (PRODUCER_ENTRY_BYTES + CACHED_BATCHES_PER_PRODUCER * BATCH_ENTRY_BYTES))
    as u64
    * 2;
/// The Kafka error codes of refused producer appends.
pub mod kafka_code {
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    pub const INVALID_RECORD: i16 = 87;
}

/// A transaction a marker ended (Kafka's CompletedTxn): its producer, its first offset (the
/// marker's own when the transaction wrote nothing here) and the marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub is_aborted: bool,
}

/// Bytes read at a time while replaying batch headers.
const REPLAY_CHUNK_BYTES: usize = 64 * 1024;

/// Where one batch of a producer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's maxTimestamp.
    pub timestamp_ms: i64,
}

/// What is known of one producer id in this partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    pub producer_epoch: i16,
    /// Oldest first, at most [`CACHED_BATCHES_PER_PRODUCER`].
    pub batches: VecDeque<BatchMetadata>,
    /// Epoch of the transaction coordinator that wrote the last marker; -1 until transactions.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, none until transactions exist.
    pub current_txn_first_offset: Option<i64>,
    /// maxTimestamp of the producer's last batch: what producer.id.expiration.ms counts from.
    pub last_timestamp_ms: i64,
}

impl ProducerStateEntry {
    fn new(producer_epoch: i16) -> Self {
        ProducerStateEntry {
            producer_epoch,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp_ms: -1,
        }
    }

    fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }
}

/// What to do with an append, decided before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// The batch was written before: answer with where it went.
    Duplicate {
        first_offset: i64,
        last_offset: i64,
    },
}

/// Why an append was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    #[error("producer {producer_id}: epoch {epoch} is older than the current {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    #[error("producer {producer_id}: sequence {sequence} does not follow {expected_after}")]
    OutOfOrderSequence {
        producer_id: i64,
        sequence: i32,
        /// The last sequence written, or -1 for a new epoch (which must start at 0).
        expected_after: i32,
    },
    #[error("producer {producer_id}: a retried batch within a request of several batches")]
    DuplicateSequence { producer_id: i64 },
    #[error("{0}")]
    InvalidRecord(&'static str),
    /// A non-transactional batch from a producer with a transaction open here.
    #[error("producer {producer_id}: a non-transactional write inside its open transaction")]
    InvalidTxnState { producer_id: i64 },
    /// A marker from a transaction coordinator older than the one that wrote the last marker.
    #[error("producer {producer_id}: coordinator epoch {coordinator_epoch} is older than the current {current_coordinator_epoch}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
}

impl ProducerStateError {
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProducerStateError::InvalidProducerEpoch { .. } => kafka_code::INVALID_PRODUCER_EPOCH,
            ProducerStateError::OutOfOrderSequence { .. } => {
                kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER
            }
            ProducerStateError::DuplicateSequence { .. } => kafka_code::DUPLICATE_SEQUENCE_NUMBER,
            ProducerStateError::InvalidRecord(_) => kafka_code::INVALID_RECORD,
            ProducerStateError::InvalidTxnState { .. } => kafka_code::INVALID_TXN_STATE,
            ProducerStateError::CoordinatorFenced { .. } => {
                kafka_code::TRANSACTION_COORDINATOR_FENCED
            }
        }
    }
}

/// Why a snapshot file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Corrupt(String),
}

fn corrupt(reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(reason.into())
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1))
        as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The headers of the batches in `records`, framing only (the log checks CRCs on append).
pub fn batch_headers(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let h = parse_header(&records[pos..], pos as u64)?;
        let size = h.size_bytes();
        if pos + size > records.len() {
            return Err(BatchError::Truncated {
                position: pos as u64,
                needed_bytes: size as u64,
                available_bytes: (records.len() - pos) as u64,
            });
        }
        out.push(h);
        pos += size;
    }
    if out.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(out)
}

pub fn snapshot_file_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!(
        "{}{PRODUCER_SNAPSHOT_FILE_SUFFIX}",
        crate::files::file_stem(offset)
    ))
}

fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(PRODUCER_SNAPSHOT_FILE_SUFFIX)?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The offsets of the snapshot files in `dir`.
fn list_snapshots(dir: &Path) -> Result<BTreeSet<i64>, LogError> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_snapshot_name) {
            out.insert(offset);
        }
    }
    Ok(out)
}

/// Proof that the transaction coordinator was asked whether a producer's transaction
/// includes this partition (Kafka's VerificationGuard, KIP-890). It is made before the
/// question, so a marker written while the answer is on its way clears it, and the batch that
/// would then open a transaction nobody will end is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard(u64);

/// The producers of one partition and the snapshot files that persist them.
#[derive(Debug)]
pub struct ProducerStateManager {
    dir: PathBuf,
    topic_partition: TopicPartition,
    producers: HashMap<i64, ProducerStateEntry>,
    /// Offset after the last batch applied (Kafka's mapEndOffset).
    map_end_offset: i64,
    /// Offsets of the snapshot files on disk.
    snapshots: BTreeSet<i64>,
    /// The open transactions: first offset -> producer id (Kafka's ongoingTxns).
    ongoing: BTreeMap<i64, i64>,
    /// Transactions whose marker the high watermark has not passed yet: they still hold the
    /// last stable offset back (Kafka's unreplicatedTxns). First offset -> the transaction.
    unreplicated: BTreeMap<i64, CompletedTxn>,
    /// Aborted transactions found by a replay, with the last stable offset at their abort,
    /// for the log's aborted-transaction index.
    replayed_aborts: Vec<crate::txn_index::AbortedTxn>,
    /// Producers asked about with the coordinator and not yet in a transaction here, with the
    /// guard of that question. In memory only: a restart loses them, and the producer's retry
    /// asks again.
    verification_guards: HashMap<i64, VerificationGuard>,
    next_verification_guard: u64,
}

impl ProducerStateManager {
    /// An empty state for the log in `dir`, covering nothing below `map_end_offset`.
    pub fn new(dir: &Path, topic_partition: TopicPartition, map_end_offset: i64) -> Self {
        ProducerStateManager {
            dir: dir.to_path_buf(),
            topic_partition,
            producers: HashMap::new(),
            map_end_offset,
            snapshots: BTreeSet::new(),
            ongoing: BTreeMap::new(),
            unreplicated: BTreeMap::new(),
            replayed_aborts: Vec::new(),
            verification_guards: HashMap::new(),
            next_verification_guard: 0,
        }
    }

    /// The guard of a question to the coordinator about `producer_id`'s transaction: the one
    /// already pending for the producer, else a new one.
    pub fn create_verification_guard(&mut self, producer_id: i64) -> VerificationGuard {
        if let Some(guard) = self.verification_guards.get(&producer_id) {
            return *guard;
        }
        // Same bound as the producers: the oldest question goes first (its produce then asks
        // again on retry).
        if self.verification_guards.len() >= MAX_PRODUCERS_PER_PARTITION {
            let oldest = self
                .verification_guards
                .iter()
                .min_by_key(|(_, g)| g.0)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.verification_guards.remove(&oldest);
            }
        }
        self.next_verification_guard = self.next_verification_guard.wrapping_add(1);
        let guard = VerificationGuard(self.next_verification_guard);
        self.verification_guards.insert(producer_id, guard);
        guard
    }

    /// The pending guard of `producer_id`, if a question is outstanding.
    pub fn verification_guard(&self, producer_id: i64) -> Option<VerificationGuard> {
        self.verification_guards.get(&producer_id).copied()
    }

    /// Kafka's check of a verified append (UnifiedLog's batchMissingRequiredVerification): a
    /// transactional batch that would open a new transaction here needs `guard` to be the
    /// producer's pending one, else INVALID_TXN_STATE. A batch of a transaction already open
    /// here needs none.
    pub fn check_verification(
        &self,
        headers: &[BatchHeader],
        guard: Option<VerificationGuard>,
    ) -> Result<(), ProducerStateError> {
        for h in headers {
            if h.producer_id < 0 || h.is_control() || !h.is_transactional() {
                continue;
            }
            let ongoing = self
                .producers
                .get(&h.producer_id)
                .is_some_and(|e| e.current_txn_first_offset.is_some());
            if !ongoing && (guard.is_none() || self.verification_guard(h.producer_id) != guard) {
                return Err(ProducerStateError::InvalidTxnState {
                    producer_id: h.producer_id,
                });
            }
        }
        Ok(())
    }

    /// The first offset of the earliest transaction not yet decided for readers: still open,
    /// or ended by a marker at or above `high_watermark`. None when there is none.
    pub fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self
            .unreplicated
            .values()
            .filter(|t| t.last_offset >= high_watermark)
            .map(|t| t.first_offset)
            .min();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last stable offset under `high_watermark` (Kafka's UnifiedLog.lastStableOffset):
    /// the first unstable offset, or the high watermark when every transaction below it is
    /// decided.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset(high_watermark)
            .map_or(high_watermark, |o| o.min(high_watermark))
    }

    /// Forgets ended transactions whose markers are below the high watermark.
    pub fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        if !self.unreplicated.is_empty() {
            self.unreplicated
                .retain(|_, t| t.last_offset >= high_watermark);
        }
    }

    /// The open transactions: (first offset, producer id), oldest first.
    pub fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(o, p)| (*o, *p))
    }

    /// Kafka's checks of a marker against the producer (AppendOrigin.Coordinator: no sequence
    /// rules): an older producer epoch is fenced (INVALID_PRODUCER_EPOCH), and so is an older
    /// coordinator epoch (TRANSACTION_COORDINATOR_FENCED).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerStateError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.producer_epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id,
                epoch: producer_epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerStateError::CoordinatorFenced {
                producer_id,
                coordinator_epoch,
                current_coordinator_epoch: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker written at `offset`: the producer's transaction ends (its epoch and
    /// coordinator epoch become the marker's). Returns the ended transaction and, when it was
    /// aborted, its aborted-index entry (with the last stable offset at the abort).
    pub fn complete_txn(
        &mut self,
        marker: &crate::control::TxnMarker,
        offset: i64,
        timestamp_ms: i64,
    ) -> (CompletedTxn, Option<crate::txn_index::AbortedTxn>) {
        self.map_end_offset = self.map_end_offset.max(offset + 1);
        self.make_room_for(marker.producer_id);
        let entry = self
            .producers
            .entry(marker.producer_id)
            .or_insert_with(|| ProducerStateEntry::new(marker.producer_epoch));
        if marker.producer_epoch != entry.producer_epoch {
            entry.batches.clear();
            entry.producer_epoch = marker.producer_epoch;
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp_ms = timestamp_ms;
        let first_offset = entry.current_txn_first_offset.take();
        if let Some(first) = first_offset {
            self.ongoing.remove(&first);
        }
        // The transaction the question was about has ended: its answer no longer holds.
        self.verification_guards.remove(&marker.producer_id);
        let completed = CompletedTxn {
            producer_id: marker.producer_id,
            first_offset: first_offset.unwrap_or(offset),
            last_offset: offset,
            is_aborted: !marker.commit,
        };
        self.unreplicated.insert(completed.first_offset, completed);
        let aborted = completed.is_aborted.then(|| crate::txn_index::AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            // Kafka's lastStableOffset(completedTxn): the next transaction still open, else
            // just past this one.
            last_stable_offset: self
                .ongoing
                .keys()
                .next()
                .copied()
                .unwrap_or(completed.last_offset + 1),
        });
        (completed, aborted)
    }

    /// The aborted transactions the last replay found, oldest first (taken once).
    pub(crate) fn take_replayed_aborts(&mut self) -> Vec<crate::txn_index::AbortedTxn> {
        std::mem::take(&mut self.replayed_aborts)
    }

    /// Rebuilds the open-transaction map from the producers (after a snapshot is loaded).
    fn rebuild_ongoing(&mut self) {
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(pid, e)| e.current_txn_first_offset.map(|o| (o, *pid)))
            .collect();
        self.unreplicated.clear();
    }

    /// Keeps the bound on producers: before a new one is added, the least recently written
    /// producer without an open transaction goes (one with an open transaction holds the last
    /// stable offset, so it stays unless every producer has one).
    fn make_room_for(&mut self, producer_id: i64) {
        if self.producers.contains_key(&producer_id)
            || self.producers.len() < MAX_PRODUCERS_PER_PARTITION
        {
            return;
        }
        let oldest = self
            .producers
            .iter()
            .filter(|(_, e)| e.current_txn_first_offset.is_none())
            .min_by_key(|(id, e)| (e.last_offset(), **id))
            .or_else(|| {
                self.producers
                    .iter()
                    .min_by_key(|(id, e)| (e.last_offset(), **id))
            })
            .map(|(id, _)| *id);
        if let Some(oldest) = oldest {
            if let Some(e) = self.producers.remove(&oldest) {
                if let Some(first) = e.current_txn_first_offset {
                    tracing::warn!(log = %self.topic_partition, producer_id = oldest, first_offset = first, "forgetting a producer with an open transaction: the producer bound is full of them");
                    self.ongoing.remove(&first);
                }
            }
        }
    }

    pub fn producers(&self) -> &HashMap<i64, ProducerStateEntry> {
        &self.producers
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// The base offset of each producer's last batch (what compaction must keep).
    pub fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.first_offset))
            .collect()
    }

    /// Offsets of the snapshot files, oldest first.
    pub fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.iter().copied().collect()
    }

    /// Checks the batches of one append against what each producer wrote before.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<SequenceCheck, ProducerStateError> {
        let idempotent: Vec<&BatchHeader> = headers.iter().filter(|h| h.producer_id >= 0).collect();
        if idempotent.is_empty() {
            return Ok(SequenceCheck::Append);
        }
        if headers.iter().any(|h| h.is_control()) {
            return Err(ProducerStateError::InvalidRecord(
                "control batches are written by transaction coordinators, never by clients",
            ));
        }
        for h in &idempotent {
            // Kafka's InvalidTxnStateException: a transaction's writes are all transactional.
            if !h.is_transactional()
                && self
                    .producers
                    .get(&h.producer_id)
                    .is_some_and(|e| e.current_txn_first_offset.is_some())
            {
                return Err(ProducerStateError::InvalidTxnState {
                    producer_id: h.producer_id,
                });
            }
        }
        // Walk the batches in order, as if each were appended, against a scratch copy.
        let mut expected: HashMap<i64, (i16, Option<i32>)> = HashMap::new();
        for h in &idempotent {
            let (epoch, last) = match expected.get(&h.producer_id) {
                Some(e) => *e,
                None => match self.producers.get(&h.producer_id) {
                    Some(entry) => (
                        entry.producer_epoch,
                        entry.batches.back().map(|b| b.last_seq),
                    ),
                    // Unknown producer: new, or its batches are gone with retention or
                    // DeleteRecords. Kafka accepts any sequence then.
                    None => (h.producer_epoch, None),
                },
            };
            let single_batch = idempotent.len() == 1 && headers.len() == 1;
            if let Some(duplicate) = self.check_batch(h, epoch, last, single_batch)? {
                return Ok(duplicate);
            }
            expected.insert(h.producer_id, (h.producer_epoch, Some(last_seq(h))));
        }
        Ok(SequenceCheck::Append)
    }

    /// Kafka's rules for one batch of a producer whose epoch and last sequence so far are
    /// `epoch` and `last` (none: nothing known, any sequence goes). `Some` is a retry of a
    /// batch already written, answered only when it is the request's only batch.
    fn check_batch(
        &self,
        h: &BatchHeader,
        epoch: i16,
        last: Option<i32>,
        single_batch: bool,
    ) -> Result<Option<SequenceCheck>, ProducerStateError> {
        if h.producer_epoch < epoch {
            return Err(ProducerStateError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: epoch,
            });
        }
        if h.producer_epoch > epoch {
            // A new epoch starts its sequences over.
            if h.base_sequence != 0 {
                return Err(ProducerStateError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    sequence: h.base_sequence,
                    expected_after: -1,
                });
            }
            return Ok(None);
        }
        let Some(last) = last else {
            return Ok(None);
        };
        if let Some(entry) = self.producers.get(&h.producer_id) {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq(h))
            {
                if single_batch {
                    return Ok(Some(SequenceCheck::Duplicate {
                        first_offset: dup.first_offset,
                        last_offset: dup.last_offset,
                    }));
                }
                return Err(ProducerStateError::DuplicateSequence {
                    producer_id: h.producer_id,
                });
            }
        }
        if h.base_sequence != next_seq(last) {
            return Err(ProducerStateError::OutOfOrderSequence {
                producer_id: h.producer_id,
                sequence: h.base_sequence,
                expected_after: last,
            });
        }
        Ok(None)
    }

    /// Records batches written to the log (their base offsets assigned), in log order: appends
    /// as they happen, and the batches replayed on recovery.
    pub fn update(&mut self, headers: &[BatchHeader]) {
        for h in headers {
            self.map_end_offset = self.map_end_offset.max(h.next_offset());
            // Markers end transactions through `complete_txn`, which needs their records.
            if h.producer_id < 0 || h.is_control() {
                continue;
            }
            self.make_room_for(h.producer_id);
            let entry = self
                .producers
                .entry(h.producer_id)
                .or_insert_with(|| ProducerStateEntry::new(h.producer_epoch));
            if h.producer_epoch != entry.producer_epoch {
                entry.batches.clear();
                entry.producer_epoch = h.producer_epoch;
            }
            entry.batches.push_back(BatchMetadata {
                first_seq: h.base_sequence,
                last_seq: last_seq(h),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
                timestamp_ms: h.max_timestamp,
            });
            while entry.batches.len() > CACHED_BATCHES_PER_PRODUCER {
                entry.batches.pop_front();
            }
            entry.last_timestamp_ms = h.max_timestamp;
            if h.is_transactional() && entry.current_txn_first_offset.is_none() {
                entry.current_txn_first_offset = Some(h.base_offset);
                self.ongoing.insert(h.base_offset, h.producer_id);
                // The open transaction now spares its later batches the question.
                self.verification_guards.remove(&h.producer_id);
            }
        }
        // The bound on what a partition's producers may take in memory.
        debug_assert!(self.producers.len() <= MAX_PRODUCERS_PER_PARTITION);
    }

    /// Forgets producers idle for `expiration_ms` (producer.id.expiration.ms), counted from
    /// their last batch's timestamp, as Kafka does; producers in a transaction stay. Returns
    /// how many went.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Writes the state as `<map end offset>.snapshot` (temp file, rename), fsynced if `sync`.
    /// The directory entry becomes durable with the log's next directory sync; a snapshot lost
    /// or torn by a power failure is only a longer rebuild.
    pub fn take_snapshot(&mut self, sync: bool) -> Result<(), LogError> {
        let offset = self.map_end_offset;
        let path = snapshot_file_path(&self.dir, offset);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TEMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let bytes = self.encode_snapshot();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        file.write_all(&bytes)
            .ctx(|| format!("write {}", tmp.display()))?;
        if sync {
            file.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        }
        drop(file);
        fs::rename(&tmp, &path)
            .ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
        self.snapshots.insert(offset);
        tracing::debug!(log = %self.topic_partition, offset, producers = self.producers.len(), "wrote producer state snapshot");
        Ok(())
    }

    /// At a roll (the newest of `segments` just created): the snapshot at its base, and the
    /// old snapshots go except those of the last two segments and from the one holding the
    /// recovery point (Kafka's rule), where a recovery or truncation starts. Never fails: the
    /// log is whole without a snapshot, and recovery rebuilds from an older one.
    pub(crate) fn on_segment_roll(
        &mut self,
        segments: &BTreeMap<i64, LogSegment>,
        recovery_point: i64,
    ) {
        if let Err(e) = self.take_snapshot(false) {
            tracing::warn!(log = %self.topic_partition, offset = self.map_end_offset, error = %e, "could not write the producer state snapshot");
        }
        let base_of = |offset: i64| {
            segments
                .range(..=offset)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b)
        };
        let previous_base = base_of(self.map_end_offset - 1);
        if let Err(e) = self.delete_snapshots_before(previous_base.min(base_of(recovery_point))) {
            tracing::warn!(log = %self.topic_partition, error = %e, "could not delete old producer state snapshots");
        }
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        // Sorted, so the same state always gives the same bytes.
        ids.sort_unstable();
        let mut b = Vec::with_capacity(
            SNAPSHOT_CRC_START
                + 12
                + self.producers.len()
                    * (PRODUCER_ENTRY_BYTES + CACHED_BATCHES_PER_PRODUCER * BATCH_ENTRY_BYTES),
        );
        b.extend_from_slice(SNAPSHOT_MAGIC);
        b.extend(SNAPSHOT_VERSION.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(self.map_end_offset.to_be_bytes());
        b.extend((ids.len() as i32).to_be_bytes());
        for id in ids {
            let Some(e) = self.producers.get(id) else {
                continue;
            };
            b.extend(id.to_be_bytes());
            b.extend(e.producer_epoch.to_be_bytes());
            b.extend(e.coordinator_epoch.to_be_bytes());
            b.extend(e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            b.extend(e.last_timestamp_ms.to_be_bytes());
            b.extend((e.batches.len() as i32).to_be_bytes());
            for m in &e.batches {
                b.extend(m.first_seq.to_be_bytes());
                b.extend(m.last_seq.to_be_bytes());
                b.extend(m.first_offset.to_be_bytes());
                b.extend(m.last_offset.to_be_bytes());
                b.extend(m.timestamp_ms.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b[SNAPSHOT_CRC_START..]);
        b[6..10].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads a snapshot file written for `offset`; every count is checked against what remains
    /// before anything is allocated from it.
    pub fn read_snapshot(
        path: &Path,
        offset: i64,
    ) -> Result<HashMap<i64, ProducerStateEntry>, SnapshotError> {
        let len = fs::metadata(path)?.len();
        if len > MAX_SNAPSHOT_BYTES {
            return Err(corrupt(format!(
                "{len} bytes, more than any valid snapshot"
            )));
        }
        let bytes = fs::read(path)?;
        decode_snapshot(&bytes, offset)
    }

    /// Rebuilds the state of a log whose segments are `segments` and whose end is
    /// `log_end_offset`: snapshots past the end or older than the first segment are deleted,
    /// the newest readable one is loaded, and the batches after it are replayed. Damaged
    /// snapshots are skipped (WARN, deleted); only I/O errors listing the directory fail.
    /// Returns the offset the replay started from (what the snapshot did not cover).
    pub(crate) fn load(
        &mut self,
        segments: &BTreeMap<i64, LogSegment>,
        log_end_offset: i64,
    ) -> Result<i64, LogError> {
        let started = std::time::Instant::now();
        let first_base = segments.keys().next().copied().unwrap_or(log_end_offset);
        self.producers.clear();
        self.snapshots = list_snapshots(&self.dir)?;
        let out_of_range: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| *o > log_end_offset || *o < first_base)
            .collect();
        for offset in out_of_range {
            tracing::info!(log = %self.topic_partition, offset, first_base, log_end_offset, "deleting producer state snapshot outside the log");
            self.delete_snapshot(offset)?;
        }
        self.map_end_offset = first_base;
        let mut loaded_from = None;
        while let Some(offset) = self.snapshots.last().copied() {
            let path = snapshot_file_path(&self.dir, offset);
            match Self::read_snapshot(&path, offset) {
                Ok(producers) => {
                    self.producers = producers;
                    self.map_end_offset = offset;
                    loaded_from = Some(offset);
                    break;
                }
                Err(e) => {
                    tracing::warn!(log = %self.topic_partition, file = %path.display(), error = %e, "ignoring damaged producer state snapshot; using an older one or the log");
                    self.delete_snapshot(offset)?;
                }
            }
        }
        self.rebuild_ongoing();
        self.replayed_aborts.clear();
        let from = self.map_end_offset;
        let replayed = self.replay(segments, from, log_end_offset)?;
        self.map_end_offset = log_end_offset;
        let level_info = replayed > 0;
        macro_rules! loaded {
            ($level:ident) => {
                tracing::$level!(log = %self.topic_partition, snapshot = ?loaded_from, replayed_batches = replayed, producers = self.producers.len(), elapsed_us = started.elapsed().as_micros() as u64, "loaded producer state")
            };
        }
        if level_info {
            loaded!(info);
        } else {
            loaded!(debug);
        }
        Ok(from)
    }

    /// Applies the batches of `segments` with offsets in [from, to). Returns how many.
    fn replay(
        &mut self,
        segments: &BTreeMap<i64, LogSegment>,
        from: i64,
        to: i64,
    ) -> Result<usize, LogError> {
        if from >= to {
            return Ok(0);
        }
        let floor = segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut count = 0;
        for segment in segments.range(floor..).map(|(_, s)| s) {
            if segment.base_offset() >= to {
                break;
            }
            if segment.next_offset() <= from {
                continue;
            }
            let start = if segment.base_offset() < from {
                u64::from(segment.offset_index().lookup(from).position)
            } else {
                0
            };
            let mut scanner = BatchScanner::new(
                segment.log_file(),
                segment.log_path(),
                start,
                segment.size_bytes(),
                REPLAY_CHUNK_BYTES,
            );
            loop {
                match scanner.next(false)? {
                    ScanItem::Batch { header, position } => {
                        if header.base_offset >= to {
                            break;
                        }
                        if header.last_offset() >= from {
                            self.update(std::slice::from_ref(&header));
                            if header.is_control() && header.producer_id >= 0 {
                                self.replay_marker(segment, position, &header)?;
                            }
                            count += 1;
                        }
                    }
                    ScanItem::End => break,
                    ScanItem::Invalid { position, error } => {
                        // Recovery has already cut torn tails; anything else is for the log's
                        // verification to report. The state covers what could be read.
                        tracing::warn!(log = %self.topic_partition, file = %segment.log_path().display(), position, %error, "stopped replaying producer state at an unreadable batch");
                        break;
                    }
                }
            }
        }
        Ok(count)
    }

    /// Ends the transaction of a replayed marker (the batch at `position` of `segment`).
    fn replay_marker(
        &mut self,
        segment: &LogSegment,
        position: u64,
        header: &BatchHeader,
    ) -> Result<(), LogError> {
        let size = header.size_bytes();
        if size > crate::control::MAX_CONTROL_BATCH_BYTES {
            tracing::warn!(log = %self.topic_partition, offset = header.base_offset, size_bytes = size, "skipping an oversized control batch");
            return Ok(());
        }
        let mut bytes = vec![0u8; size];
        std::os::unix::fs::FileExt::read_exact_at(&**segment.log_file(), &mut bytes, position)
            .ctx(|| format!("read {} at {position}", segment.log_path().display()))?;
        match crate::control::decode_marker(header, &bytes) {
            Ok(Some(marker)) => {
                let (_, aborted) =
                    self.complete_txn(&marker, header.base_offset, header.max_timestamp);
                self.replayed_aborts.extend(aborted);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(log = %self.topic_partition, offset = header.base_offset, error = %e, "skipping an unreadable control batch");
            }
        }
        Ok(())
    }

    /// After the log was cut to `log_end_offset` (a diverged replica): snapshots past it go
    /// and the state is rebuilt from the newest remaining one.
    pub(crate) fn truncate_and_reload(
        &mut self,
        segments: &BTreeMap<i64, LogSegment>,
        log_end_offset: i64,
    ) -> Result<i64, LogError> {
        self.load(segments, log_end_offset)
    }

    /// The log was emptied and restarts at `offset`: nothing of the old state applies.
    pub(crate) fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        self.producers.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
        self.replayed_aborts.clear();
        self.verification_guards.clear();
        let all: Vec<i64> = self.snapshots.iter().copied().collect();
        for o in all {
            self.delete_snapshot(o)?;
        }
        self.map_end_offset = offset;
        Ok(())
    }

    /// After retention or DeleteRecords deleted the segments below `first_base`: their
    /// snapshots go with them. The producers stay until they expire, as in Kafka, and so that
    /// a restart still knows them, a snapshot is written now if none is left at or above
    /// `first_base` (the batches they came from are no longer there to replay).
    pub(crate) fn on_segments_deleted(&mut self, first_base: i64) -> Result<(), LogError> {
        if self.snapshots.range(first_base..).next().is_none() {
            self.take_snapshot(false)?;
        }
        self.delete_snapshots_before(first_base)
    }

    /// Deletes the snapshots below `offset`: their segments are gone. The producers stay
    /// until they expire, as in Kafka (a newer snapshot still holds them).
    pub(crate) fn delete_snapshots_before(&mut self, offset: i64) -> Result<(), LogError> {
        let old: Vec<i64> = self.snapshots.range(..offset).copied().collect();
        for o in old {
            self.delete_snapshot(o)?;
        }
        Ok(())
    }

    fn delete_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        self.snapshots.remove(&offset);
        let path = snapshot_file_path(&self.dir, offset);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io(format!("delete {}", path.display()), e)),
        }
    }
}

/// Every aborted transaction of the log, from its batches alone (no snapshot): what a damaged
/// transaction index is rebuilt from. A transaction begun before `from` counts from its first
/// batch at or after `from`, the earliest of its data still there.
pub(crate) fn rebuild_aborted_transactions(
    segments: &BTreeMap<i64, LogSegment>,
    topic_partition: &TopicPartition,
    from: i64,
    to: i64,
) -> Result<Vec<crate::txn_index::AbortedTxn>, LogError> {
    let dir = segments
        .values()
        .next()
        .and_then(|s| s.log_path().parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut scratch = ProducerStateManager::new(&dir, topic_partition.clone(), from);
    scratch.replay(segments, from, to)?;
    Ok(scratch.take_replayed_aborts())
}

/// A bounds-checked big-endian reader over a snapshot's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let end = self
            .pos
            .checked_add(N)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| corrupt(format!("ends at byte {} inside a field", self.buf.len())))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, SnapshotError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// One producer's entry of a snapshot written for `offset` (every batch lies below it).
fn decode_producer(
    r: &mut Reader<'_>,
    offset: i64,
) -> Result<(i64, ProducerStateEntry), SnapshotError> {
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let coordinator_epoch = r.i32()?;
    let txn_first = r.i64()?;
    let last_timestamp_ms = r.i64()?;
    let batch_count = r.i32()?;
    let batch_count = usize::try_from(batch_count)
        .ok()
        .filter(|c| *c <= CACHED_BATCHES_PER_PRODUCER && *c <= r.remaining() / BATCH_ENTRY_BYTES)
        .ok_or_else(|| corrupt(format!("batch count {batch_count} out of range")))?;
    if producer_id < 0 {
        return Err(corrupt(format!("producer id {producer_id}")));
    }
    let mut batches = VecDeque::with_capacity(batch_count);
    for _ in 0..batch_count {
        let m = BatchMetadata {
            first_seq: r.i32()?,
            last_seq: r.i32()?,
            first_offset: r.i64()?,
            last_offset: r.i64()?,
            timestamp_ms: r.i64()?,
        };
        if m.first_offset < 0 || m.first_offset > m.last_offset || m.last_offset >= offset {
            return Err(corrupt(format!(
                "producer {producer_id}: batch at offsets {}..={} in a snapshot for {offset}",
                m.first_offset, m.last_offset
            )));
        }
        batches.push_back(m);
    }
    if txn_first >= offset {
        return Err(corrupt(format!(
            "producer {producer_id}: a transaction from offset {txn_first} in a snapshot for {offset}"
        )));
    }
    let entry = ProducerStateEntry {
        producer_epoch,
        batches,
        coordinator_epoch,
        current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
        last_timestamp_ms,
    };
    Ok((producer_id, entry))
}

fn decode_snapshot(
    bytes: &[u8],
    expected_offset: i64,
) -> Result<HashMap<i64, ProducerStateEntry>, SnapshotError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if &r.take::<4>()? != SNAPSHOT_MAGIC {
        return Err(corrupt("not a Strom producer state snapshot (bad magic)"));
    }
    let version = r.i16()?;
    if version != SNAPSHOT_VERSION {
        return Err(corrupt(format!("unknown snapshot version {version}")));
    }
    let stored_crc = u32::from_be_bytes(r.take()?);
    let computed = crc32c::crc32c(&bytes[SNAPSHOT_CRC_START..]);
    if stored_crc != computed {
        return Err(corrupt(format!(
            "CRC mismatch (stored {stored_crc:#010x}, computed {computed:#010x})"
        )));
    }
    let offset = r.i64()?;
    if offset != expected_offset {
        return Err(corrupt(format!(
            "written for offset {offset}, named for {expected_offset}"
        )));
    }
    let count = r.i32()?;
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_PRODUCERS_PER_PARTITION && *c <= r.remaining() / PRODUCER_ENTRY_BYTES)
        .ok_or_else(|| corrupt(format!("producer count {count} out of range")))?;
    let mut producers = HashMap::with_capacity(count);
    for _ in 0..count {
        let (producer_id, entry) = decode_producer(&mut r, offset)?;
        if producers.insert(producer_id, entry).is_some() {
            return Err(corrupt(format!("producer {producer_id} appears twice")));
        }
    }
    if r.remaining() != 0 {
        return Err(corrupt(format!(
            "{} bytes after the last entry",
            r.remaining()
        )));
    }
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn at(mut h: BatchHeader, base_offset: i64) -> BatchHeader {
        h.base_offset = base_offset;
        h
    }

    fn manager(dir: &Path) -> ProducerStateManager {
        ProducerStateManager::new(dir, TopicPartition::new("t", 0), 0)
    }

    /// KIP-890's guard: a marker between the coordinator's answer and the append clears the
    /// question, so the batch that would open a transaction no coordinator will end is
    /// refused; without a marker the verified batch opens it, and its later batches need no
    /// guard.
    #[test]
    fn txn_verification_guard_cleared_by_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        let mut txn = header(7, 0, 0, 2);
        txn.attributes = 0x10;
        let marker = crate::control::TxnMarker {
            producer_id: 7,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: false,
        };

        // Verified, then the transaction aborted (a timeout, or an EndTxn racing the produce).
        let guard = s.create_verification_guard(7);
        s.complete_txn(&marker, 0, 0);
        assert_eq!(
            s.check_verification(&[txn], Some(guard)),
            Err(ProducerStateError::InvalidTxnState { producer_id: 7 })
        );
        // Never asked: refused too.
        assert!(s.check_verification(&[txn], None).is_err());
        // A guard from an older question is not the pending one.
        let stale = guard;
        let fresh = s.create_verification_guard(7);
        assert_ne!(stale, fresh);
        assert!(s.check_verification(&[txn], Some(stale)).is_err());

        // Verified, then appended: accepted, and the open transaction needs no guard after.
        assert_eq!(s.check_verification(&[txn], Some(fresh)), Ok(()));
        s.update(&[at(txn, 1)]);
        assert_eq!(s.verification_guard(7), None);
        let mut next = header(7, 0, 2, 1);
        next.attributes = 0x10;
        assert_eq!(s.check_verification(&[next], None), Ok(()));
        // Non-transactional batches are not this check's business.
        assert_eq!(s.check_verification(&[header(8, 0, 0, 1)], None), Ok(()));
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        let b0 = header(7, 0, 0, 3);
        assert_eq!(s.check(&[b0]), Ok(SequenceCheck::Append));
        s.update(&[at(b0, 100)]);
        // A retry of the same batch is answered with its first placement.
        assert_eq!(
            s.check(&[b0]),
            Ok(SequenceCheck::Duplicate {
                first_offset: 100,
                last_offset: 102
            })
        );
        let b1 = header(7, 0, 3, 2);
        assert_eq!(
            s.check(&[b0, b1]).map_err(|e| e.kafka_error_code()),
            Err(46)
        );
        assert_eq!(s.check(&[b1]), Ok(SequenceCheck::Append));
        s.update(&[at(b1, 103)]);
        assert_eq!(
            s.check(&[header(7, 0, 9, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(
            s.check(&[header(7, 1, 5, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(&[header(7, 1, 0, 1)]), Ok(SequenceCheck::Append));
        s.update(&[at(header(7, 1, 0, 1), 105)]);
        assert_eq!(
            s.check(&[header(7, 0, 5, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::INVALID_PRODUCER_EPOCH)
        );
        // Non-idempotent batches are never checked.
        assert_eq!(s.check(&[header(-1, -1, -1, 4)]), Ok(SequenceCheck::Append));
        // Unknown producers are accepted at any sequence.
        assert_eq!(s.check(&[header(99, 3, 42, 1)]), Ok(SequenceCheck::Append));
        // In one request, the second batch must follow the first.
        assert_eq!(
            s.check(&[header(5, 0, 0, 2), header(5, 0, 3, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(
            s.check(&[header(5, 0, 0, 2), header(5, 0, 2, 1)]),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sequences_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        s.update(&[header(1, 0, i32::MAX - 1, 2)]);
        assert_eq!(s.check(&[header(1, 0, 0, 1)]), Ok(SequenceCheck::Append));
        assert!(s.check(&[header(1, 0, 1, 1)]).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        for i in 0..7 {
            s.update(&[at(header(1, 0, i, 1), i64::from(i))]);
        }
        assert!(matches!(
            s.check(&[header(1, 0, 6, 1)]),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert!(matches!(
            s.check(&[header(1, 0, 2, 1)]),
            Ok(SequenceCheck::Duplicate { .. })
        ));
        assert!(s.check(&[header(1, 0, 1, 1)]).is_err());
    }

    #[test]
    fn control_batches_from_clients_are_refused_and_transactions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        let mut h = header(1, 0, 0, 1);
        h.attributes = 0x20;
        assert_eq!(s.check(&[h]).map_err(|e| e.kafka_error_code()), Err(87));
        h.attributes = 0x10;
        assert_eq!(s.check(&[h]), Ok(SequenceCheck::Append));
        s.update(&[at(h, 10)]);
        assert_eq!(s.last_stable_offset(20), 10);
        // Inside its transaction a producer writes only transactional batches.
        assert_eq!(
            s.check(&[header(1, 0, 1, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::INVALID_TXN_STATE)
        );
        assert_eq!(
            s.check_marker(1, 0, 0).map_err(|e| e.kafka_error_code()),
            Ok(())
        );
        let marker = crate::control::TxnMarker {
            producer_id: 1,
            producer_epoch: 1,
            coordinator_epoch: 5,
            commit: false,
        };
        let (done, aborted) = s.complete_txn(&marker, 12, 0);
        assert_eq!(
            (done.first_offset, done.last_offset, done.is_aborted),
            (10, 12, true)
        );
        assert_eq!(aborted.map(|a| a.last_stable_offset), Some(13));
        // Until the high watermark passes the marker the transaction is not decided.
        assert_eq!(s.last_stable_offset(12), 10);
        assert_eq!(s.last_stable_offset(13), 13);
        s.on_high_watermark_updated(13);
        assert_eq!(s.first_unstable_offset(0), None);
        // The marker bumped the epoch: the old one is fenced, for data and markers alike.
        assert_eq!(
            s.check(&[header(1, 0, 2, 1)])
                .map_err(|e| e.kafka_error_code()),
            Err(kafka_code::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            s.check_marker(1, 0, 5).map_err(|e| e.kafka_error_code()),
            Err(kafka_code::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            s.check_marker(1, 1, 4).map_err(|e| e.kafka_error_code()),
            Err(kafka_code::TRANSACTION_COORDINATOR_FENCED)
        );
    }

    #[test]
    fn expiry_forgets_idle_producers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        let mut old = at(header(1, 0, 0, 1), 0);
        old.max_timestamp = 1_000;
        let mut recent = at(header(2, 0, 0, 1), 1);
        recent.max_timestamp = 50_000;
        s.update(&[old, recent]);
        assert_eq!(s.remove_expired_producers(60_000, 20_000), 1);
        assert!(s.producer(1).is_none());
        assert!(s.producer(2).is_some());
    }

    #[test]
    fn the_producer_bound_forgets_the_least_recent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = manager(dir.path());
        for i in 0..MAX_PRODUCERS_PER_PARTITION as i64 + 1 {
            s.update(&[at(header(i, 0, 0, 1), i)]);
        }
        assert_eq!(s.producers().len(), MAX_PRODUCERS_PER_PARTITION);
        assert!(s.producer(0).is_none());
        assert!(s.producer(1).is_some());
    }

    fn sample_state(dir: &Path) -> ProducerStateManager {
        let mut s = manager(dir);
        let mut offset = 0i64;
        for pid in 0..20i64 {
            for seq in 0..(pid % 8) as i32 {
                let mut h = at(header(pid, (pid % 3) as i16, seq * 2, 2), offset);
                h.max_timestamp = 1_000 + offset;
                s.update(&[h]);
                offset += 2;
            }
        }
        s.producers
            .get_mut(&3)
            .map(|e| {
                e.coordinator_epoch = 4;
                e.current_txn_first_offset = Some(2)
            })
            .unwrap();
        s
    }

    #[test]
    fn snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample_state(dir.path());
        s.take_snapshot(true).unwrap();
        let offset = s.map_end_offset();
        assert_eq!(s.snapshot_offsets(), vec![offset]);
        let path = snapshot_file_path(dir.path(), offset);
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(".snapshot"));
        let read = ProducerStateManager::read_snapshot(&path, offset).unwrap();
        assert_eq!(&read, s.producers());
        // Every byte matters: any flip is detected, never loaded as a different state.
        let bytes = fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(decode_snapshot(&damaged, offset).is_err(), "byte {i}");
        }
        for len in 0..bytes.len() {
            assert!(
                decode_snapshot(&bytes[..len], offset).is_err(),
                "cut at {len}"
            );
        }
        // A snapshot renamed to another offset is not trusted.
        assert!(decode_snapshot(&bytes, offset + 1).is_err());
    }

    #[test]
    fn hostile_counts_are_refused_before_allocation() {
        let mut b = Vec::new();
        b.extend_from_slice(SNAPSHOT_MAGIC);
        b.extend(SNAPSHOT_VERSION.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(10i64.to_be_bytes());
        b.extend(i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&b[SNAPSHOT_CRC_START..]);
        b[6..10].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_snapshot(&b, 10),
            Err(SnapshotError::Corrupt(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn snapshot_round_trips_any_state(ops in proptest::collection::vec((0i64..6, 0i16..3, 0i32..50, 1i32..4), 0..80)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = manager(dir.path());
            let mut offset = 0;
            for (pid, epoch, seq, count) in ops {
                s.update(&[at(header(pid, epoch, seq, count), offset)]);
                offset += i64::from(count);
            }
            s.take_snapshot(false).unwrap();
            let path = snapshot_file_path(dir.path(), s.map_end_offset());
            let read = ProducerStateManager::read_snapshot(&path, s.map_end_offset()).unwrap();
            proptest::prop_assert_eq!(&read, s.producers());
        }
    }
}

/// The state as the log keeps it across rolls, crashes, clean restarts, truncation, retention
/// and DeleteRecords.
#[cfg(test)]
mod log_tests {
    use std::collections::HashMap;
    use std::fs;
    use std::path::Path;

    use proptest::prelude::*;

    use super::{snapshot_file_path, ProducerStateEntry, SequenceCheck};
    use crate::config::LogConfig;
    use crate::log::Log;
    use crate::testutil::{build_batch, BatchSpec};
    use crate::topic_partition::TopicPartition;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024,
            ..LogConfig::default()
        }
    }

    fn open(dir: &Path) -> Log {
        Log::open(dir, TopicPartition::new("p", 0), config()).unwrap()
    }

    /// A v2 batch of `records` from producer `pid` (-1: not idempotent), CRC recomputed.
    fn batch(pid: i64, epoch: i16, seq: i32, records: i32, ts: i64) -> Vec<u8> {
        let mut b = build_batch(&BatchSpec {
            records,
            base_timestamp: ts,
            ..BatchSpec::default()
        });
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&(if pid < 0 { -1 } else { epoch }).to_be_bytes());
        b[53..57].copy_from_slice(&(if pid < 0 { -1 } else { seq }).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Checks and appends as the broker does; returns the check's answer.
    fn produce(log: &mut Log, mut b: Vec<u8>) -> SequenceCheck {
        let headers = super::batch_headers(&b).unwrap();
        let check = log.producer_state().check(&headers).unwrap();
        if check == SequenceCheck::Append {
            log.append_as_leader(&mut b, 0, 1_000).unwrap();
        }
        check
    }

    fn state(log: &Log) -> HashMap<i64, ProducerStateEntry> {
        log.producer_state().producers().clone()
    }

    /// Producers 0..n each write `batches` batches of 2 records, interleaved, rolling every
    /// `roll_every` batches.
    fn fill(log: &mut Log, producers: i64, batches: i32, roll_every: usize) {
        let mut written = 0;
        for i in 0..batches {
            for pid in 0..producers {
                produce(log, batch(pid, 0, i * 2, 2, 1_000 + i64::from(i)));
                written += 1;
                if written % roll_every == 0 {
                    log.roll(1_000).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_retry_after_a_crash_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for seq in 0..3 {
            produce(&mut log, batch(9, 0, seq * 4, 4, 1_000));
        }
        let live = state(&log);
        // kill -9: no close, no snapshot at all (no roll happened).
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(state(&log), live);
        assert_eq!(
            produce(&mut log, batch(9, 0, 8, 4, 1_000)),
            SequenceCheck::Duplicate {
                first_offset: 8,
                last_offset: 11
            }
        );
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(
            produce(&mut log, batch(9, 0, 12, 1, 1_000)),
            SequenceCheck::Append
        );
        let err = log
            .producer_state()
            .check(&super::batch_headers(&batch(9, 0, 20, 1, 1_000)).unwrap())
            .unwrap_err();
        assert_eq!(err.kafka_error_code(), 45);
    }

    #[test]
    fn snapshots_at_rolls_and_close_and_a_clean_restart_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        fill(&mut log, 3, 6, 4);
        let bases = log.segment_base_offsets();
        assert!(bases.len() > 3);
        // Nothing flushed yet: the recovery point is in the first segment, so every segment's
        // snapshot is kept.
        assert_eq!(log.producer_state().snapshot_offsets(), bases[1..].to_vec());
        // Once the recovery point moves on, a roll keeps only the last two.
        let end = log.log_end_offset();
        log.mark_flushed(end).unwrap();
        assert_eq!(
            produce(&mut log, batch(0, 0, 12, 2, 1_000)),
            SequenceCheck::Append
        );
        log.roll(1_000).unwrap();
        let bases = log.segment_base_offsets();
        assert_eq!(
            log.producer_state().snapshot_offsets(),
            bases[bases.len() - 2..].to_vec()
        );
        let live = state(&log);
        let end = log.log_end_offset();
        log.close().unwrap();
        assert!(snapshot_file_path(dir.path(), end).exists());
        let log = open(dir.path());
        assert_eq!(state(&log), live);
        assert_eq!(log.producer_state().map_end_offset(), end);
    }

    #[test]
    fn damaged_snapshots_are_skipped_for_older_ones_or_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        fill(&mut log, 4, 6, 7);
        let live = state(&log);
        let end = log.log_end_offset();
        log.close().unwrap();
        let mut snapshots = open(dir.path()).producer_state().snapshot_offsets();
        assert!(snapshots.len() >= 3, "{snapshots:?}");
        // The newest is flipped, the next cut short, the next emptied: each is skipped.
        let newest = snapshots.pop().unwrap();
        let path = snapshot_file_path(dir.path(), newest);
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let next = snapshots.pop().unwrap();
        let path = snapshot_file_path(dir.path(), next);
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let third = snapshots.pop().unwrap();
        fs::write(snapshot_file_path(dir.path(), third), b"").unwrap();
        let log = open(dir.path());
        assert_eq!(state(&log), live);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.producer_state().snapshot_offsets(), snapshots);
        drop(log);
        // Every snapshot damaged: a full rebuild from the log.
        for o in &snapshots {
            fs::write(snapshot_file_path(dir.path(), *o), b"garbage").unwrap();
        }
        let log = open(dir.path());
        assert_eq!(state(&log), live);
        assert!(log.producer_state().snapshot_offsets().is_empty());
        assert_eq!(log.log_end_offset(), end);
    }

    #[test]
    fn a_snapshot_past_the_log_end_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        fill(&mut log, 2, 3, 100);
        let live = state(&log);
        let end = log.log_end_offset();
        drop(log);
        // As if a snapshot had been written for data the crash then lost.
        let src = tempfile::tempdir().unwrap();
        let mut ahead = open(src.path());
        fill(&mut ahead, 5, 10, 1_000);
        ahead.close().unwrap();
        let far = ahead.log_end_offset();
        assert!(far > end);
        fs::copy(
            snapshot_file_path(src.path(), far),
            snapshot_file_path(dir.path(), far),
        )
        .unwrap();
        let log = open(dir.path());
        assert_eq!(state(&log), live);
        assert!(!snapshot_file_path(dir.path(), far).exists());
    }

    #[test]
    fn truncation_rebuilds_the_state_of_what_remains() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut at_offset = Vec::new();
        for i in 0..12 {
            at_offset.push((log.log_end_offset(), state(&log)));
            produce(&mut log, batch(1, 0, i * 3, 3, 1_000));
            produce(&mut log, batch(-1, 0, 0, 2, 1_000));
            if i % 4 == 3 {
                log.roll(1_000).unwrap();
            }
        }
        for (offset, expected) in at_offset.into_iter().rev().step_by(3) {
            log.truncate_to(offset).unwrap();
            assert_eq!(state(&log), expected, "after truncate_to({offset})");
            assert!(log
                .producer_state()
                .snapshot_offsets()
                .iter()
                .all(|o| *o <= offset));
        }
        log.truncate_to(0).unwrap();
        assert!(state(&log).is_empty());
        assert!(log.producer_state().snapshot_offsets().is_empty());
    }

    #[test]
    fn retention_and_delete_records_take_old_snapshots_not_producers() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        fill(&mut log, 3, 8, 4);
        let live = state(&log);
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4);
        log.delete_records_before(bases[2]).unwrap();
        let first = log.segment_base_offsets()[0];
        assert_eq!(first, bases[2]);
        assert!(log
            .producer_state()
            .snapshot_offsets()
            .iter()
            .all(|o| *o >= first));
        assert_eq!(state(&log), live);
        // Producers whose batches are gone are still known after a crash: the snapshot at
        // the first segment carries them.
        drop(log);
        let log = open(dir.path());
        assert_eq!(state(&log), live);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Produce { pid: i64, records: i32 },
        Plain,
        Bump { pid: i64 },
        Roll,
        Flush,
        Crash,
        Restart,
        Retry { pid: i64 },
        Truncate { back: i64 },
        DeleteRecords { back: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0i64..4, 1i32..4).prop_map(|(pid, records)| Op::Produce { pid, records }),
            1 => Just(Op::Plain),
            1 => (0i64..4).prop_map(|pid| Op::Bump { pid }),
            3 => Just(Op::Roll),
            1 => Just(Op::Flush),
            2 => Just(Op::Crash),
            1 => Just(Op::Restart),
            2 => (0i64..4).prop_map(|pid| Op::Retry { pid }),
            1 => (0i64..12).prop_map(|back| Op::Truncate { back }),
            1 => (0i64..12).prop_map(|back| Op::DeleteRecords { back }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever happened (rolls, crashes, clean restarts, truncations, DeleteRecords), a
        /// reopened log has exactly the state the live one had and answers retries the same
        /// way; and until records are deleted, a truncation gives back exactly the state the
        /// log had at that offset.
        #[test]
        fn rebuild_equals_live_state(ops in proptest::collection::vec(op(), 1..70)) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open(dir.path());
            // The epoch each producer sends with.
            let mut epochs: HashMap<i64, i16> = HashMap::new();
            // The state before each append, by the offset it went to.
            let mut history: std::collections::BTreeMap<i64, HashMap<i64, ProducerStateEntry>> =
                std::collections::BTreeMap::new();
            let mut deleted_any = false;
            for op in ops {
                match op {
                    Op::Produce { pid, records } => {
                        let epoch = *epochs.entry(pid).or_insert(0);
                        let seq = match log.producer_state().producer(pid) {
                            Some(e) if e.producer_epoch == epoch => {
                                e.batches.back().map_or(0, |b| b.last_seq + 1)
                            }
                            _ => 0,
                        };
                        history.insert(log.log_end_offset(), state(&log));
                        let answer = produce(&mut log, batch(pid, epoch, seq, records, 1_000));
                        prop_assert_eq!(answer, SequenceCheck::Append);
                    }
                    Op::Plain => {
                        history.insert(log.log_end_offset(), state(&log));
                        produce(&mut log, batch(-1, 0, 0, 2, 1_000));
                    }
                    Op::Bump { pid } => *epochs.entry(pid).or_insert(0) += 1,
                    Op::Roll => log.roll(1_000).unwrap(),
                    Op::Flush => {
                        let end = log.log_end_offset();
                        log.mark_flushed(end).unwrap();
                    }
                    Op::Crash | Op::Restart => {
                        let live = state(&log);
                        if matches!(op, Op::Restart) {
                            log.close().unwrap();
                        }
                        drop(log);
                        log = open(dir.path());
                        prop_assert_eq!(state(&log), live);
                    }
                    Op::Retry { pid } => {
                        let last = log
                            .producer_state()
                            .producer(pid)
                            .and_then(|e| e.batches.back().map(|b| (e.producer_epoch, *b)));
                        if let Some((epoch, b)) = last {
                            let end = log.log_end_offset();
                            let retry = batch(pid, epoch, b.first_seq, b.last_seq - b.first_seq + 1, 1_000);
                            let answer = produce(&mut log, retry);
                            prop_assert_eq!(answer, SequenceCheck::Duplicate {
                                first_offset: b.first_offset,
                                last_offset: b.last_offset,
                            });
                            prop_assert_eq!(log.log_end_offset(), end);
                        }
                    }
                    Op::Truncate { back } => {
                        let old_end = log.log_end_offset();
                        history.insert(old_end, state(&log));
                        let to = (old_end - back).max(log.log_start_offset());
                        log.truncate_to(to).unwrap();
                        let end = log.log_end_offset();
                        history.split_off(&(end + 1));
                        if !deleted_any {
                            let expected = history.get(&end).cloned().unwrap_or_default();
                            prop_assert_eq!(state(&log), expected, "after truncate_to({})", to);
                        }
                        let snapshots = log.producer_state().snapshot_offsets();
                        prop_assert!(snapshots.iter().all(|o| *o <= end), "{:?}", snapshots);
                    }
                    Op::DeleteRecords { back } => {
                        let to = (log.log_end_offset() - back).max(log.log_start_offset());
                        let live = state(&log);
                        log.delete_records_before(to).unwrap();
                        deleted_any |= log.segment_base_offsets()[0] > 0;
                        // Producers outlive their batches (until they expire), as in Kafka.
                        prop_assert_eq!(state(&log), live);
                    }
                }
            }
        }
    }
}

/// What rebuilding costs at open: `cargo test --release -p strom-log replay_cost -- --ignored
/// --nocapture`.
#[cfg(test)]
mod cost {
    use std::time::Instant;

    use crate::config::LogConfig;
    use crate::log::Log;
    use crate::testutil::{build_batch, BatchSpec};
    use crate::topic_partition::TopicPartition;

    #[test]
    #[ignore]
    fn replay_cost() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("cost", 0);
        let mut log = Log::open(dir.path(), tp.clone(), LogConfig::default()).unwrap();
        let batches = 200_000i32;
        for i in 0..batches {
            let mut b = build_batch(&BatchSpec {
                records: 10,
                value_size_bytes: 100,
                ..BatchSpec::default()
            });
            b[43..51].copy_from_slice(&i64::from(i % 100).to_be_bytes());
            b[51..53].copy_from_slice(&0i16.to_be_bytes());
            b[53..57].copy_from_slice(&((i / 100) * 10).to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            log.append_as_leader(&mut b, 0, 1_000).unwrap();
        }
        let end = log.log_end_offset();
        let size = log.size_bytes();
        log.close().unwrap();
        let t = Instant::now();
        drop(Log::open(dir.path(), tp.clone(), LogConfig::default()).unwrap());
        let with_snapshot = t.elapsed();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let t = Instant::now();
        let log = Log::open(dir.path(), tp, LogConfig::default()).unwrap();
        let replayed = t.elapsed();
        assert_eq!(log.producer_state().producers().len(), 100);
        println!(
            "{batches} batches, {end} records, {size} bytes: open with a snapshot at the end {with_snapshot:?}, \
             with no snapshot (replaying every batch) {replayed:?}"
        );
    }
}
