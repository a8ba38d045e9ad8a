//! A partition log (Kafka's UnifiedLog + LocalLog): an ordered set of segments in one
//! directory, with offset assignment, reads, crash recovery, truncation and retention.
//!
//! Concurrency: `Log` is a plain single-writer structure; the broker wraps it in a lock. The
//! slow parts (the pread of fetched bytes, the fdatasync of a flush) are split out as
//! [`FetchSlice`] and [`FlushTarget`] so they run without that lock.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::batch::{self, parse_header, TimestampType};
use crate::checkpoint::{
    sync_dir, OffsetCheckpointFile, LOG_START_OFFSET_CHECKPOINT_FILE,
    RECOVERY_POINT_CHECKPOINT_FILE, TEMP_SUFFIX,
};
use crate::cleaner::{CleanPlan, CleanedSegment};
use crate::config::LogConfig;
use crate::error::{IoContext, LogError};
use crate::files::{
    index_file_path, log_file_path, time_index_file_path, CLEANED_FILE_SUFFIX, DELETED_FILE_SUFFIX,
    INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, SWAP_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX,
};
use crate::producer_state::ProducerStateManager;
use crate::segment::{LogSegment, SegmentRead};
use crate::topic_partition::TopicPartition;
use crate::txn_index::{AbortedTxn, TxnIndex};

/// Defined beside the time index since the segment needs it too; re-exported at its old path.
pub use crate::time_index::TimestampAndOffset;

/// Recovery-point checkpoints are rewritten at most this often (except on close/truncation):
/// each write is two fsyncs, and a stale checkpoint only costs a longer recovery scan.
const RECOVERY_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Offsets a single append may span: they must be addressable relative to one segment base.
const MAX_APPEND_OFFSET_SPAN: i64 = i32::MAX as i64;

/// Result of a successful leader append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// Largest batch maxTimestamp of the append (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Base offset of the batch carrying `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// The broker time stamped into the batches, -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub valid_bytes: usize,
    pub record_count: i64,
    pub batch_count: usize,
}

/// Whole batches of one segment file, to be read (or sent) without holding the log lock.
/// The file handle keeps the data readable even if retention deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FetchSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub size: usize,
    /// Base offset of the first batch, -1 when empty.
    pub first_offset: i64,
    /// Records in its data batches, from their headers (control batches' markers not counted,
    /// nothing decompressed): what the fetch metrics count as records out.
    pub data_records: u64,
}

impl FetchSlice {
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Reads the slice with a single pread.
    pub fn read_bytes(&self) -> std::io::Result<Bytes> {
        if self.size == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0u8; self.size];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

/// What to fdatasync for the log to be durable up to `offset()`; obtained under the log lock,
/// synced without it, then reported back with [`Log::mark_flushed_target`] (or `mark_flushed`).
#[derive(Debug, Clone)]
pub struct FlushTarget {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
    offset: i64,
    generation: u64,
}

impl FlushTarget {
    /// The log end offset when the target was taken: everything below it is durable once
    /// `sync` returns Ok.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    pub fn sync(&self) -> std::io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        // New segment files are only durable once their directory entry is.
        if let Some(dir) = &self.dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    topic_partition: TopicPartition,
    config: LogConfig,
    /// Keyed by base offset; never empty while the log is open. The last one is active.
    segments: BTreeMap<i64, LogSegment>,
    log_start_offset: i64,
    /// Everything below this offset is known to be on disk (fsynced).
    recovery_point: i64,
    recovery_point_on_disk: i64,
    last_recovery_checkpoint: Option<Instant>,
    recovery_checkpoint: OffsetCheckpointFile,
    log_start_checkpoint: OffsetCheckpointFile,
    /// Base of the newest segment whose directory entry has not been fsynced yet.
    unsynced_segment_base: Option<i64>,
    /// Bumped by every truncation, so a flush target taken before one is not trusted after.
    generation: u64,
    /// Segments below this base have been compacted since the log was opened.
    cleaned_up_to: i64,
    closed: bool,
    /// Idempotent producers' last batches, rebuilt on open; updated by every append.
    producer_state: ProducerStateManager,
    /// The aborted transactions, per segment (`.txnindex` files).
    txn_index: TxnIndex,
}

/// Segments rolled by every log of the process, for the broker's metrics (strom-log itself
/// records no metrics).
pub static SEGMENT_ROLLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn remove_file_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("delete {}", path.display()), e)),
    }
}

/// Lists segment base offsets in `dir` (sorted), deleting leftovers of interrupted operations:
/// `.deleted`/`.cleaned`/`.swap`/`.tmp` files and indexes without a log file.
/// Returns the bases and whether anything was deleted.
fn scan_dir(dir: &Path) -> Result<(Vec<i64>, bool), LogError> {
    let mut log_bases = Vec::new();
    let mut index_files = Vec::new();
    let mut deleted_any = false;
    let entries = std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if [
            DELETED_FILE_SUFFIX,
            CLEANED_FILE_SUFFIX,
            SWAP_FILE_SUFFIX,
            TEMP_SUFFIX,
        ]
        .iter()
        .any(|s| name.ends_with(s))
        {
            tracing::info!(file = %path.display(), "deleting stray file");
            remove_file_if_exists(&path)?;
            deleted_any = true;
            continue;
        }
        let parse_base = |suffix: &str| -> Option<i64> {
            let stem = name.strip_suffix(suffix)?;
            if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            stem.parse::<i64>().ok()
        };
        if let Some(base) = parse_base(LOG_FILE_SUFFIX) {
            log_bases.push(base);
        } else if let Some(base) =
            parse_base(INDEX_FILE_SUFFIX).or_else(|| parse_base(TIME_INDEX_FILE_SUFFIX))
        {
            index_files.push((base, path));
        }
    }
    log_bases.sort_unstable();
    for (base, path) in index_files {
        if log_bases.binary_search(&base).is_err() {
            tracing::info!(file = %path.display(), "deleting index without a log file");
            remove_file_if_exists(&path)?;
            deleted_any = true;
        }
    }
    Ok((log_bases, deleted_any))
}

/// What survives of a log after recovery must still cover what its checkpoints say was
/// there: a log that ends below its recovery point has lost fsynced (acknowledged) data, a
/// log that starts above its log start offset has lost its first segments. Both mean files
/// were damaged or removed behind Strom's back.
fn check_recovered_extent(
    dir: &Path,
    topic_partition: &TopicPartition,
    first_base: i64,
    log_end_offset: i64,
    checkpointed_log_start: Option<i64>,
    checkpointed_recovery_point: i64,
) -> Result<(), LogError> {
    if log_end_offset < checkpointed_recovery_point {
        tracing::error!(
            log = %topic_partition,
            dir = %dir.display(),
            log_end_offset,
            recovery_point = checkpointed_recovery_point,
            "log ends below its recovery point: acknowledged data is missing"
        );
        return Err(LogError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!(
                "the log ends at offset {log_end_offset}, below its recovery point \
                 {checkpointed_recovery_point}: segment files holding acknowledged data were \
                 truncated or removed; restore them, or run `strom storage verify` for details"
            ),
        });
    }
    // Without a checkpoint the log has never moved its start, so it must begin at 0.
    let expected_start = checkpointed_log_start.unwrap_or(0);
    if first_base > expected_start {
        tracing::warn!(
            log = %topic_partition,
            dir = %dir.display(),
            first_segment_base = first_base,
            log_start_offset = expected_start,
            "the first segment starts above the log start offset: segments are missing, \
             offsets {expected_start}..{first_base} are gone"
        );
    }
    Ok(())
}

/// What an append stamps into its batches in place: offsets from `first_offset`, the leader
/// epoch and, under LogAppendTime, the broker's time.
struct BatchStamp {
    first_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
}

/// What stamping found in the batches.
struct AssignedOffsets {
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    record_count: i64,
    next_offset: i64,
}

impl BatchStamp {
    /// Patches each batch of `records` (described by `headers`, re-read after the patch).
    fn apply(
        &self,
        records: &mut [u8],
        headers: &mut [batch::BatchHeader],
    ) -> Result<AssignedOffsets, LogError> {
        let mut assigned = AssignedOffsets {
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            record_count: 0,
            next_offset: self.first_offset,
        };
        let mut position = 0usize;
        for header in headers.iter_mut() {
            let size = header.size_bytes();
            let bytes = &mut records[position..position + size];
            batch::set_base_offset(bytes, assigned.next_offset)?;
            batch::set_partition_leader_epoch(bytes, self.leader_epoch)?;
            if let Some(now_ms) = self.log_append_time_ms {
                batch::set_log_append_time(bytes, now_ms)?;
            }
            *header = parse_header(bytes, position as u64)?;
            debug_assert!(
                self.log_append_time_ms.is_none() || batch::compute_crc(bytes) == header.crc
            );
            if header.max_timestamp > assigned.max_timestamp {
                assigned.max_timestamp = header.max_timestamp;
                assigned.offset_of_max_timestamp = header.base_offset;
            }
            assigned.record_count += i64::from(header.records_count);
            assigned.next_offset = header.next_offset();
            position += size;
        }
        debug_assert_eq!(position, records.len());
        Ok(assigned)
    }
}

/// What opening a log directory's segment files found.
struct OpenedSegments {
    segments: BTreeMap<i64, LogSegment>,
    /// A torn tail was cut: the segments after it were dropped.
    tail_cut: bool,
    /// Bytes of whole segments scanned (at or above the recovery point, or index-less).
    recovered_bytes: u64,
    dir_changed: bool,
}

/// Opens the segments at `bases` (ascending), trusting those wholly below the recovery point
/// and recovering the others; after a cut tail, the later segments go.
fn open_segments(
    dir: &Path,
    topic_partition: &TopicPartition,
    config: &LogConfig,
    bases: &[i64],
    recovery_point: i64,
    now_ms: i64,
) -> Result<OpenedSegments, LogError> {
    let mut opened = OpenedSegments {
        segments: BTreeMap::new(),
        tail_cut: false,
        recovered_bytes: 0,
        dir_changed: false,
    };
    for (i, &base) in bases.iter().enumerate() {
        if opened.tail_cut {
            tracing::warn!(log = %topic_partition, base, "dropping segment after corrupt data");
            delete_segment_files(dir, base)?;
            opened.dir_changed = true;
            continue;
        }
        let next_base = bases.get(i + 1).copied();
        let (mut segment, rebuild) = LogSegment::open(dir, base, config, now_ms)?;
        let truncated_bytes = if let Some(reason) = rebuild {
            tracing::info!(log = %topic_partition, base, %reason, "rebuilding indexes");
            segment.recover(None, recovery_point)?
        } else if next_base.is_some_and(|n| n <= recovery_point) {
            if segment.load_tail()? {
                0
            } else {
                tracing::warn!(log = %topic_partition, base, "segment inconsistent with its index; recovering");
                segment.recover(None, recovery_point)?
            }
        } else if base >= recovery_point {
            opened.recovered_bytes += segment.size_bytes();
            segment.recover(None, recovery_point)?
        } else {
            segment.recover(Some(recovery_point), recovery_point)?
        };
        if truncated_bytes > 0 {
            opened.tail_cut = true;
            opened.dir_changed = true;
            segment
                .log_file()
                .sync_all()
                .ctx(|| format!("fsync {}", segment.log_path().display()))?;
        }
        if let Some(n) = next_base {
            if !opened.tail_cut && segment.next_offset() > n {
                tracing::error!(log = %topic_partition, base, next_offset = segment.next_offset(), next_base = n, "segments overlap");
            }
        }
        if next_base.is_some() && !opened.tail_cut {
            // Sealed segments carry their final max timestamp in the time index (written at
            // roll); a rebuilt index must too.
            segment.on_become_inactive()?;
        }
        opened.segments.insert(base, segment);
    }
    // What recovery re-indexed goes to the files now, so a second crash does not repeat the
    // work (nothing is pending after a clean shutdown).
    for segment in opened.segments.values_mut() {
        if segment.has_unpersisted_index_entries() {
            if let Err(e) = segment.persist_indexes(false) {
                tracing::warn!(log = %topic_partition, error = %e, "could not write rebuilt index entries");
            }
        }
    }
    Ok(opened)
}

fn segment_ranges(segments: &BTreeMap<i64, LogSegment>) -> Vec<(i64, i64)> {
    segments
        .values()
        .map(|s| (s.base_offset(), s.next_offset()))
        .collect()
}

fn segment_base_of(segments: &BTreeMap<i64, LogSegment>, offset: i64) -> i64 {
    segments
        .range(..=offset)
        .next_back()
        .map_or(offset, |(b, _)| *b)
}

/// Completes the aborted-transaction index after the producer state was loaded from
/// `replay_from`: what the replay found replaces the entries at and above it; if a file below
/// it was damaged, every entry is rebuilt from the whole log instead.
fn load_txn_index(
    txn_index: &mut TxnIndex,
    producer_state: &mut ProducerStateManager,
    segments: &BTreeMap<i64, LogSegment>,
    topic_partition: &TopicPartition,
    replay_from: i64,
    damaged: &[i64],
    log_end_offset: i64,
) -> Result<(), LogError> {
    let replayed = producer_state.take_replayed_aborts();
    let first_base = segments.keys().next().copied().unwrap_or(log_end_offset);
    // A damaged file holding anything below the replay's start cannot be completed by it.
    if damaged.iter().any(|base| *base < replay_from) {
        let rebuilt = crate::producer_state::rebuild_aborted_transactions(
            segments,
            topic_partition,
            first_base,
            log_end_offset,
        )?;
        tracing::info!(log = %topic_partition, aborted = rebuilt.len(), "rebuilt the transaction index from the log");
        return txn_index.replace_from(i64::MIN, rebuilt, |o| segment_base_of(segments, o));
    }
    txn_index.replace_from(replay_from, replayed, |o| segment_base_of(segments, o))
}

fn delete_segment_files(dir: &Path, base: i64) -> Result<(), LogError> {
    for path in [
        log_file_path(dir, base),
        index_file_path(dir, base),
        time_index_file_path(dir, base),
    ] {
        remove_file_if_exists(&path)?;
    }
    Ok(())
}

impl Log {
    /// Opens (creating if absent) the log in `dir`, recovering anything written after the
    /// recovery point: batches there are checked (header + CRC-32C) and the log is cut at the
    /// first invalid byte, later segments dropped. Indexes that are missing or inconsistent are
    /// rebuilt.
    pub fn open(
        dir: &Path,
        topic_partition: TopicPartition,
        config: LogConfig,
    ) -> Result<Log, LogError> {
        config.validate()?;
        std::fs::create_dir_all(dir).ctx(|| format!("create log directory {}", dir.display()))?;
        let started = Instant::now();
        let now_ms = wall_clock_ms();
        let (bases, mut dir_changed) = scan_dir(dir)?;
        let recovery_checkpoint = OffsetCheckpointFile::new(dir, RECOVERY_POINT_CHECKPOINT_FILE);
        let log_start_checkpoint = OffsetCheckpointFile::new(dir, LOG_START_OFFSET_CHECKPOINT_FILE);
        let checkpointed_recovery_point = recovery_checkpoint.read(&topic_partition)?.unwrap_or(0);
        let checkpointed_log_start = log_start_checkpoint.read(&topic_partition)?;

        let OpenedSegments {
            mut segments,
            tail_cut,
            recovered_bytes,
            dir_changed: segments_changed,
        } = open_segments(
            dir,
            &topic_partition,
            &config,
            &bases,
            checkpointed_recovery_point,
            now_ms,
        )?;
        dir_changed |= segments_changed;
        if segments.is_empty() {
            let base = checkpointed_log_start.unwrap_or(0);
            segments.insert(base, LogSegment::create(dir, base, &config, now_ms)?);
            dir_changed = true;
        }
        if dir_changed {
            sync_dir(dir)?;
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end_offset = segments
            .values()
            .next_back()
            .map_or(first_base, |s| s.next_offset());
        let log_start_offset = checkpointed_log_start
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        check_recovered_extent(
            dir,
            &topic_partition,
            first_base,
            log_end_offset,
            checkpointed_log_start,
            checkpointed_recovery_point,
        )?;
        let recovery_point = checkpointed_recovery_point.min(log_end_offset);
        let mut producer_state =
            ProducerStateManager::new(dir, topic_partition.clone(), log_end_offset);
        let mut txn_index = TxnIndex::new(dir);
        let damaged = txn_index.load(&segment_ranges(&segments))?;
        let replay_from = producer_state.load(&segments, log_end_offset)?;
        load_txn_index(
            &mut txn_index,
            &mut producer_state,
            &segments,
            &topic_partition,
            replay_from,
            &damaged,
            log_end_offset,
        )?;
        let log = Log {
            dir: dir.to_path_buf(),
            topic_partition,
            config,
            segments,
            log_start_offset,
            recovery_point,
            recovery_point_on_disk: checkpointed_recovery_point,
            last_recovery_checkpoint: None,
            recovery_checkpoint,
            log_start_checkpoint,
            unsynced_segment_base: None,
            generation: 0,
            cleaned_up_to: i64::MIN,
            closed: false,
            producer_state,
            txn_index,
        };
        log.debug_check_invariants();
        log.trace_opened(recovered_bytes > 0 || tail_cut, recovered_bytes, started);
        Ok(log)
    }

    /// A broker opens thousands of logs at start-up: only those that needed recovery work are
    /// worth a line at info.
    fn trace_opened(&self, recovered: bool, scanned_bytes: u64, started: Instant) {
        macro_rules! opened {
            ($level:ident) => {
                tracing::$level!(
                    log = %self.topic_partition,
                    segments = self.segments.len(),
                    log_start_offset = self.log_start_offset,
                    log_end_offset = self.log_end_offset(),
                    recovery_point = self.recovery_point,
                    scanned_whole_segment_bytes = scanned_bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "opened log"
                )
            };
        }
        if recovered {
            opened!(info);
        } else {
            opened!(debug);
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The idempotent producers of this log: check an append against it (under the same lock
    /// as the append) before [`Log::append_as_leader`], which updates it.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producer_state
    }

    /// The guard to hold while the transaction coordinator is asked whether `producer_id`'s
    /// transaction includes this partition (see [`ProducerStateManager::check_verification`]).
    pub fn create_verification_guard(
        &mut self,
        producer_id: i64,
    ) -> crate::producer_state::VerificationGuard {
        self.producer_state.create_verification_guard(producer_id)
    }

    /// Forgets producers idle for producer.id.expiration.ms. Returns how many went.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producer_state
            .remove_expired_producers(now_ms, expiration_ms)
    }

    /// Applies a new configuration to future appends, rolls and retention.
    pub fn update_config(&mut self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active_segment().next_offset()
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(LogSegment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Of a compacted log, the sealed bytes not cleaned since it was opened: what the next
    /// cleaning pass would read (Kafka's cleaner "dirty" bytes). None if not compacted.
    pub fn dirty_bytes(&self) -> Option<u64> {
        if !self.config.cleanup_compact {
            return None;
        }
        let active_base = self.active_segment().base_offset();
        Some(
            self.segments
                .values()
                .filter(|s| s.base_offset() != active_base && s.base_offset() >= self.cleaned_up_to)
                .map(LogSegment::size_bytes)
                .sum(),
        )
    }

    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// The file of the segment holding `offset` (for error reports).
    pub fn segment_path_containing(&self, offset: i64) -> Option<PathBuf> {
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s.log_path().to_path_buf())
    }

    pub fn segments(&self) -> impl Iterator<Item = &LogSegment> {
        self.segments.values()
    }

    pub fn active_segment(&self) -> &LogSegment {
        // Invariant: an open log always has a segment; `open` and every deletion keep one.
        match self.segments.values().next_back() {
            Some(s) => s,
            None => unreachable!("log {} has no segment", self.topic_partition),
        }
    }

    fn active_segment_mut(&mut self) -> &mut LogSegment {
        match self.segments.values_mut().next_back() {
            Some(s) => s,
            None => unreachable!("log has no segment"),
        }
    }

    /// What every operation leaves true, whatever the files held at open (overlapping or
    /// damaged segments are logged there, not refused, so they are not checked here).
    fn debug_check_invariants(&self) {
        let log_end_offset = self.log_end_offset();
        debug_assert!(
            !self.segments.is_empty(),
            "{}: no segment",
            self.topic_partition
        );
        debug_assert!(
            self.active_segment().base_offset() <= log_end_offset,
            "{}: active segment starts past the log end offset",
            self.topic_partition
        );
        debug_assert!(
            self.log_start_offset <= log_end_offset,
            "{}: log start offset {} past the log end offset {log_end_offset}",
            self.topic_partition,
            self.log_start_offset
        );
        debug_assert!(
            self.recovery_point <= log_end_offset,
            "{}: recovery point {} past the log end offset {log_end_offset}",
            self.topic_partition,
            self.recovery_point
        );
    }

    fn ensure_open(&self) -> Result<(), LogError> {
        if self.closed {
            return Err(LogError::Closed(self.topic_partition.to_string()));
        }
        Ok(())
    }

    /// Validates `records` (one or more v2 batches), assigns offsets from the log end offset,
    /// stamps the leader epoch (and the append time under LogAppendTime) in place, and writes
    /// them with one write to the active segment, rolling it first if needed. Nothing is
    /// written unless every batch is valid.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_open()?;
        // Kafka's LogValidator rules; a batch in another codec than the topic's comes back
        // re-compressed, to be written instead of `records`.
        let (mut headers, recompressed) =
            crate::validator::validate_for_append(records, &self.topic_partition, &self.config)?;
        let mut recompressed = recompressed;
        let records: &mut [u8] = match recompressed.as_mut() {
            Some(rebuilt) => rebuilt,
            None => records,
        };
        let (first_offset, last_offset) = self.offsets_for_append(&headers, records.len())?;
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let stamp = BatchStamp {
            first_offset,
            leader_epoch,
            log_append_time_ms: log_append_time.then_some(now_ms),
        };
        let assigned = stamp.apply(records, &mut headers)?;
        debug_assert_eq!(assigned.next_offset, last_offset + 1);
        let AssignedOffsets {
            max_timestamp,
            offset_of_max_timestamp,
            record_count,
            ..
        } = assigned;
        let roll_reason = self.active_segment().should_roll(
            &self.config,
            records.len() as u64,
            max_timestamp,
            last_offset,
            now_ms,
        );
        if let Some(reason) = roll_reason {
            self.roll_segment(now_ms, reason)?;
        }
        // Sequence rules are the caller's check (`producer_state().check`, which the broker runs
        // under the same lock), not an invariant here: this API takes any valid batches, and
        // the fuzz target feeds it unchecked ones.
        self.active_segment_mut().append(records, &headers)?;
        self.producer_state.update(&headers);
        debug_assert_eq!(self.log_end_offset(), last_offset + 1);
        self.debug_check_invariants();
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp,
            offset_of_max_timestamp,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            valid_bytes: records.len(),
            record_count,
            batch_count: headers.len(),
        })
    }

    /// The first and last offsets an append of `headers` (`size_bytes` in all, as they will be
    /// written) gets, once it is known to fit: each batch within max.message.bytes (after any
    /// re-compression), the whole within one segment, its offsets within one segment's range.
    fn offsets_for_append(
        &self,
        headers: &[batch::BatchHeader],
        size_bytes: usize,
    ) -> Result<(i64, i64), LogError> {
        for h in headers {
            if h.size_bytes() > self.config.max_message_bytes {
                return Err(LogError::MessageTooLarge {
                    size_bytes: h.size_bytes(),
                    max_bytes: self.config.max_message_bytes,
                });
            }
        }
        if size_bytes as u64 > self.config.segment_bytes {
            return Err(LogError::RecordListTooLarge {
                size_bytes,
                segment_bytes: self.config.segment_bytes,
            });
        }
        // Each batch spans at most 2^31 offsets and there are at most len/61 batches: no overflow.
        let offset_count: i64 = headers.iter().map(|h| h.offset_count()).sum();
        let first_offset = self.log_end_offset();
        match first_offset.checked_add(offset_count - 1) {
            Some(last) if offset_count - 1 <= MAX_APPEND_OFFSET_SPAN => Ok((first_offset, last)),
            _ => Err(LogError::OffsetOverflow { offset_count }),
        }
    }

    /// Starts a new active segment at the log end offset (no-op if the active one is empty).
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        self.roll_segment(now_ms, "requested")
    }

    fn roll_segment(&mut self, now_ms: i64, reason: &str) -> Result<(), LogError> {
        if self.active_segment().is_empty() {
            return Ok(());
        }
        let new_base = self.log_end_offset();
        self.active_segment_mut().on_become_inactive()?;
        // The snapshot taken at the roll covers this segment: its aborted transactions must be
        // on disk before a recovery would start past them.
        let sealed_base = self.active_segment().base_offset();
        self.txn_index.sync_segment(sealed_base)?;
        let segment = LogSegment::create(&self.dir, new_base, &self.config, now_ms)?;
        tracing::info!(log = %self.topic_partition, new_base, reason, "rolled segment");
        self.segments.insert(new_base, segment);
        self.unsynced_segment_base = Some(new_base);
        self.producer_state
            .on_segment_roll(&self.segments, self.recovery_point);
        SEGMENT_ROLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Whole batches from the one containing `start_offset`, within one segment, at most
    /// `max_bytes` (unless `min_one_batch` and the first batch alone is larger: KIP-74), and
    /// none reaching `max_offset` (exclusive; the high watermark). An empty slice when there is
    /// nothing to return; `OffsetOutOfRange` outside [log start, log end].
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<FetchSlice, LogError> {
        self.read_with_upper_bound(start_offset, max_bytes, max_offset, min_one_batch)
            .map(|(slice, _)| slice)
    }

    /// [`Log::read`], and the offset after what it returned (the first batch left out, or the
    /// end of the segment read): the bound of [`Log::aborted_transactions`] for that read.
    pub fn read_with_upper_bound(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<(FetchSlice, i64), LogError> {
        self.ensure_open()?;
        let log_end_offset = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end_offset {
            return Err(self.out_of_range(start_offset));
        }
        let active = self.active_segment();
        let empty_at_end = FetchSlice {
            file: Arc::clone(active.log_file()),
            position: active.size_bytes(),
            size: 0,
            first_offset: -1,
            data_records: 0,
        };
        let max_offset = max_offset.min(log_end_offset);
        if start_offset >= max_offset {
            return Ok((empty_at_end, start_offset));
        }
        let floor = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(floor..).map(|(_, s)| s) {
            match segment.read(start_offset, max_bytes, max_offset, min_one_batch)? {
                SegmentRead::NotInSegment => continue,
                SegmentRead::Slice {
                    position,
                    size_bytes,
                    first_offset,
                    upper_bound_offset,
                    data_records,
                } => {
                    let slice = FetchSlice {
                        file: Arc::clone(segment.log_file()),
                        position,
                        size: size_bytes,
                        first_offset,
                        data_records,
                    };
                    return Ok((slice, upper_bound_offset));
                }
            }
        }
        Ok((empty_at_end, start_offset))
    }

    /// The aborted transactions a read_committed fetch of [start_offset, upper_bound_offset)
    /// returns (Kafka's collectAbortedTransactions).
    pub fn aborted_transactions(
        &self,
        start_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        self.txn_index.collect(start_offset, upper_bound_offset)
    }

    /// Every entry of the aborted-transaction index, oldest marker first.
    pub fn all_aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.txn_index.all()
    }

    /// The last stable offset under `high_watermark`: the first offset of the earliest
    /// transaction still undecided, else the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let lso = self.producer_state.last_stable_offset(high_watermark);
        // As Kafka: a transaction begun in segments retention or DeleteRecords removed holds
        // the LSO at the log start, not below it.
        if lso < high_watermark {
            lso.max(self.log_start_offset).min(high_watermark)
        } else {
            lso
        }
    }

    /// Tells the log its high watermark moved, so transactions whose markers it passed stop
    /// holding the last stable offset back.
    pub fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        self.producer_state
            .on_high_watermark_updated(high_watermark);
    }

    /// Writes a COMMIT (`commit`) or ABORT marker for the producer at the log end, as the
    /// transaction coordinator's append (Kafka's AppendOrigin.Coordinator): no sequence rules,
    /// but an older producer epoch answers INVALID_PRODUCER_EPOCH and an older coordinator
    /// epoch TRANSACTION_COORDINATOR_FENCED, with nothing written. The producer's open
    /// transaction here ends; an abort goes to the transaction index.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.ensure_open()?;
        if producer_id < 0 {
            return Err(LogError::InvalidBatch(format!(
                "a transaction marker for producer id {producer_id}"
            )));
        }
        self.producer_state
            .check_marker(producer_id, producer_epoch, coordinator_epoch)
            .map_err(|e| LogError::ProducerState {
                code: e.kafka_error_code(),
                message: e.to_string(),
            })?;
        let mut batch = crate::control::encode_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            now_ms,
        )?;
        let mut headers = batch::validate_batches(&batch)?;
        let (first_offset, last_offset) = self.offsets_for_append(&headers, batch.len())?;
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let stamp = BatchStamp {
            first_offset,
            leader_epoch,
            log_append_time_ms: log_append_time.then_some(now_ms),
        };
        let assigned = stamp.apply(&mut batch, &mut headers)?;
        if let Some(reason) = self.active_segment().should_roll(
            &self.config,
            batch.len() as u64,
            assigned.max_timestamp,
            last_offset,
            now_ms,
        ) {
            self.roll_segment(now_ms, reason)?;
        }
        self.active_segment_mut().append(&batch, &headers)?;
        self.producer_state.update(&headers);
        let marker = crate::control::TxnMarker {
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
        };
        let (_, aborted) =
            self.producer_state
                .complete_txn(&marker, first_offset, assigned.max_timestamp);
        if let Some(aborted) = aborted {
            let base = self.active_segment().base_offset();
            self.txn_index.append(base, aborted)?;
        }
        self.debug_check_invariants();
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp: assigned.max_timestamp,
            offset_of_max_timestamp: assigned.offset_of_max_timestamp,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            valid_bytes: batch.len(),
            record_count: assigned.record_count,
            batch_count: headers.len(),
        })
    }

    /// The first batch at or after the log start offset whose maxTimestamp >= `target_ms`
    /// (ListOffsets by timestamp). Special targets (-1 latest, -2 earliest, -3 max timestamp)
    /// are the caller's business.
    pub fn fetch_offset_by_timestamp(
        &self,
        target_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, LogError> {
        self.ensure_open()?;
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset
                || segment.max_timestamp_so_far() < target_ms
            {
                continue;
            }
            if let Some(found) =
                segment.find_offset_by_timestamp(target_ms, self.log_start_offset)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Largest batch timestamp in the log and the base offset of the (first) batch carrying it.
    pub fn max_timestamp_and_offset(&self) -> Option<TimestampAndOffset> {
        let mut best: Option<&LogSegment> = None;
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset
                || segment.offset_of_max_timestamp() < 0
            {
                continue;
            }
            if best.is_none_or(|b| segment.max_timestamp_so_far() > b.max_timestamp_so_far()) {
                best = Some(segment);
            }
        }
        let segment = best?;
        let offset = segment.offset_of_max_timestamp().max(self.log_start_offset);
        let leader_epoch = match segment.translate_offset(offset) {
            Ok(Some((_, h))) => Some(h.partition_leader_epoch).filter(|e| *e >= 0),
            _ => None,
        };
        Some(TimestampAndOffset {
            timestamp: segment.max_timestamp_so_far(),
            offset,
            leader_epoch,
        })
    }

    /// Files to fdatasync (every segment holding data above the recovery point) and the log
    /// end offset they cover. Takes no I/O; call [`FlushTarget::sync`] outside the log lock.
    pub fn flush_target(&self) -> FlushTarget {
        let active_base = self.active_segment().base_offset();
        let files = self
            .segments
            .values()
            .filter(|s| s.next_offset() > self.recovery_point || s.base_offset() == active_base)
            .map(|s| Arc::clone(s.log_file()))
            .chain(
                self.txn_index
                    .files_from(segment_base_of(&self.segments, self.recovery_point))
                    .cloned(),
            )
            .collect();
        FlushTarget {
            files,
            dir: self.unsynced_segment_base.map(|_| self.dir.clone()),
            offset: self.log_end_offset(),
            generation: self.generation,
        }
    }

    /// Records that everything below `offset` is durable (after a successful
    /// [`FlushTarget::sync`]) and checkpoints the recovery point, at most once per second.
    /// Prefer [`Log::mark_flushed_target`], which also ignores targets predating a truncation.
    pub fn mark_flushed(&mut self, offset: i64) -> Result<(), LogError> {
        let offset = offset.min(self.log_end_offset());
        if offset > self.recovery_point {
            self.recovery_point = offset;
        }
        // A target covering offsets past the newest segment's base was taken after its creation
        // and therefore synced the directory.
        if self.unsynced_segment_base.is_some_and(|base| offset > base) {
            self.unsynced_segment_base = None;
        }
        self.write_recovery_checkpoint(false)
    }

    /// [`Log::mark_flushed`] for a synced target, ignoring it if the log was truncated since
    /// the target was taken (its files may no longer hold those offsets).
    pub fn mark_flushed_target(&mut self, target: &FlushTarget) -> Result<(), LogError> {
        if target.generation != self.generation {
            return Ok(());
        }
        self.mark_flushed(target.offset)
    }

    /// Writes the recovery-point checkpoint now if it changed, regardless of the rate limit.
    pub fn checkpoint_recovery_point(&mut self) -> Result<(), LogError> {
        self.write_recovery_checkpoint(true)
    }

    fn write_recovery_checkpoint(&mut self, force: bool) -> Result<(), LogError> {
        if self.recovery_point == self.recovery_point_on_disk {
            return Ok(());
        }
        if !force
            && self
                .last_recovery_checkpoint
                .is_some_and(|t| t.elapsed() < RECOVERY_CHECKPOINT_INTERVAL)
        {
            return Ok(());
        }
        // The indexes go to their files first, so that after a crash recovery scans the log
        // from near the recovery point rather than from an older entry. Not synced: a lost or
        // torn tail only costs a longer scan or a rebuild, never data.
        if let Err(e) = self.persist_indexes(false) {
            tracing::warn!(log = %self.topic_partition, error = %e, "could not write index entries");
        }
        self.recovery_checkpoint
            .write(&self.topic_partition, self.recovery_point)?;
        self.recovery_point_on_disk = self.recovery_point;
        self.last_recovery_checkpoint = Some(Instant::now());
        Ok(())
    }

    /// Writes index entries not yet in the index files (all segments; normally only the active
    /// one has any), fdatasyncing them if `sync`.
    pub fn persist_indexes(&mut self, sync: bool) -> Result<(), LogError> {
        for segment in self.segments.values_mut() {
            if segment.has_unpersisted_index_entries() {
                segment.persist_indexes(sync)?;
            }
        }
        Ok(())
    }

    /// Removes everything at and above `offset` (a batch straddling it goes whole), for a
    /// replica whose log diverged from the leader's.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.ensure_open()?;
        if offset < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.generation += 1;
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        if offset <= first_base || offset < self.log_start_offset {
            self.truncate_fully_and_start_at(offset)?;
        } else {
            let doomed: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
            for base in doomed {
                if let Some(segment) = self.segments.remove(&base) {
                    segment.delete()?;
                }
                self.txn_index.remove_segment(base)?;
            }
            let active = self.active_segment_mut();
            let removed_bytes = active.truncate_to(offset)?;
            // Make the cut durable: the dropped bytes are valid batches a later recovery would
            // otherwise happily resurrect.
            active
                .log_file()
                .sync_all()
                .ctx(|| format!("fsync {}", active.log_path().display()))?;
            tracing::info!(log = %self.topic_partition, offset, removed_bytes, log_end_offset = self.log_end_offset(), "truncated log");
        }
        sync_dir(&self.dir)?;
        let log_end_offset = self.log_end_offset();
        let replay_from = self
            .producer_state
            .truncate_and_reload(&self.segments, log_end_offset)?;
        let replayed = self.producer_state.take_replayed_aborts();
        self.txn_index.truncate_from(log_end_offset)?;
        let segments = &self.segments;
        self.txn_index
            .replace_from(replay_from, replayed, |o| segment_base_of(segments, o))?;
        self.log_start_offset = self.log_start_offset.min(log_end_offset);
        if self.recovery_point > log_end_offset {
            self.recovery_point = log_end_offset;
            self.write_recovery_checkpoint(true)?;
        }
        self.debug_check_invariants();
        Ok(())
    }

    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        tracing::info!(log = %self.topic_partition, offset, "truncating fully");
        // The new (empty) segment exists before the old ones go, so the log is never left
        // without a segment, even if a deletion fails midway.
        let others: Vec<i64> = self
            .segments
            .keys()
            .copied()
            .filter(|b| *b != offset)
            .collect();
        match self.segments.get_mut(&offset) {
            Some(segment) => {
                segment.truncate_to(offset)?;
            }
            None => {
                let segment = LogSegment::create(&self.dir, offset, &self.config, wall_clock_ms())?;
                self.segments.insert(offset, segment);
                self.unsynced_segment_base = Some(offset);
            }
        }
        for base in others.into_iter().rev() {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete()?;
            }
            self.txn_index.remove_segment(base)?;
        }
        self.txn_index.truncate_from(i64::MIN)?;
        debug_assert_eq!(self.segment_base_offsets(), vec![offset]);
        self.producer_state.truncate_fully_and_start_at(offset)?;
        self.log_start_offset = offset;
        self.log_start_checkpoint
            .write(&self.topic_partition, offset)?;
        self.recovery_point = self.recovery_point.min(offset);
        self.write_recovery_checkpoint(true)
    }

    /// DeleteRecords: advances the log start offset to `offset` and deletes segments wholly
    /// below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        self.ensure_open()?;
        if offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        // Persist first: a crash after deleting must not move the start offset back.
        self.log_start_checkpoint
            .write(&self.topic_partition, offset)?;
        let deleted = self.delete_segments_below_log_start()?;
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        tracing::info!(log = %self.topic_partition, log_start_offset = offset, deleted_segments = deleted, "advanced log start offset");
        self.debug_check_invariants();
        Ok(offset)
    }

    fn delete_oldest_segment(&mut self) -> Result<(), LogError> {
        // Every later operation needs an active segment to append to.
        assert!(
            self.segments.len() > 1,
            "{}: never delete the active segment",
            self.topic_partition
        );
        if let Some((_, segment)) = self.segments.pop_first() {
            tracing::info!(log = %self.topic_partition, base = segment.base_offset(), size_bytes = segment.size_bytes(), "deleting segment");
            let base = segment.base_offset();
            segment.delete()?;
            self.txn_index.remove_segment(base)?;
        }
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        self.producer_state.on_segments_deleted(first_base)
    }

    /// Deletes non-active segments all of whose offsets are below the log start offset.
    fn delete_segments_below_log_start(&mut self) -> Result<usize, LogError> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let second_base = self.segments.keys().nth(1).copied().unwrap_or(i64::MAX);
            if second_base > self.log_start_offset {
                break;
            }
            self.delete_oldest_segment()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes whole segments past retention.ms (by their largest timestamp), beyond
    /// retention.bytes, or below the log start offset; never the active segment.
    /// Returns how many segments were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.ensure_open()?;
        let mut deleted = 0;
        // A compact-only log keeps everything the cleaner keeps (Kafka's rule).
        if self.config.cleanup_delete && self.config.retention_ms >= 0 {
            while self.segments.len() > 1 {
                let oldest = self
                    .segments
                    .values()
                    .next()
                    .map_or(i64::MAX, |s| s.largest_timestamp());
                if now_ms.saturating_sub(oldest) <= self.config.retention_ms {
                    break;
                }
                self.delete_oldest_segment()?;
                deleted += 1;
            }
        }
        if self.config.cleanup_delete && self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            while self.segments.len() > 1 {
                let oldest_size = self
                    .segments
                    .values()
                    .next()
                    .map_or(0, |s| s.size_bytes() as i64);
                if excess - oldest_size < 0 {
                    break;
                }
                excess -= oldest_size;
                self.delete_oldest_segment()?;
                deleted += 1;
            }
        }
        deleted += self.delete_segments_below_log_start()?;
        if deleted > 0 {
            let first_base = self.segments.keys().next().copied().unwrap_or(0);
            if first_base > self.log_start_offset {
                self.log_start_offset = first_base;
                self.log_start_checkpoint
                    .write(&self.topic_partition, first_base)?;
            }
            sync_dir(&self.dir)?;
        }
        self.debug_check_invariants();
        Ok(deleted)
    }

    /// A cleaning pass over the sealed segments, when the log is compacted and enough of it is
    /// dirty (min.cleanable.dirty.ratio of the sealed bytes not cleaned since this process
    /// opened the log: after a restart everything counts as dirty once).
    pub fn cleaning_plan(&self) -> Option<CleanPlan> {
        if !self.config.cleanup_compact || self.closed {
            return None;
        }
        let active_base = self.active_segment().base_offset();
        // Kafka's firstUncleanableDirtyOffset: nothing from the first undecided transaction
        // on is cleaned (whether its data is aborted is not known yet).
        let unstable = self
            .producer_state
            .first_unstable_offset(self.recovery_point)
            .unwrap_or(i64::MAX);
        let sealed: Vec<(i64, u64)> = self
            .segments
            .values()
            .filter(|s| s.base_offset() != active_base && s.next_offset() <= unstable)
            .map(|s| (s.base_offset(), s.size_bytes()))
            .collect();
        let clean_to = sealed
            .last()
            .and_then(|(b, _)| self.segments.get(b))
            .map_or(active_base, |s| s.next_offset().min(active_base));
        let total: u64 = sealed.iter().map(|(_, n)| n).sum();
        let dirty: u64 = sealed
            .iter()
            .filter(|(b, _)| *b >= self.cleaned_up_to)
            .map(|(_, n)| n)
            .sum();
        if dirty == 0 || (dirty as f64) < self.config.min_cleanable_dirty_ratio * total as f64 {
            return None;
        }
        Some(CleanPlan {
            dir: self.dir.clone(),
            segments: sealed,
            delete_retention_ms: self.config.delete_retention_ms,
            clean_to,
            producer_last_batches: self.producer_state.last_batch_offsets(),
            aborted_transactions: self.txn_index.all(),
        })
    }

    /// The second step of a cleaning pass (see [`crate::cleaner`]): each cleaned copy replaces
    /// its segment if that is still the file that was read; copies that no longer apply (the
    /// segment went to retention or DeleteRecords meanwhile) are deleted. Returns how many
    /// segments were replaced.
    pub fn install_cleaned(
        &mut self,
        plan: &CleanPlan,
        cleaned: Vec<CleanedSegment>,
        now_ms: i64,
    ) -> Result<usize, LogError> {
        if let Err(e) = self.ensure_open() {
            for c in &cleaned {
                remove_file_if_exists(&c.path)?;
            }
            return Err(e);
        }
        let active_base = self.active_segment().base_offset();
        let mut replaced = 0;
        for c in cleaned {
            let current = self
                .segments
                .get(&c.base_offset)
                .filter(|s| s.base_offset() != active_base)
                .map(|s| s.size_bytes());
            if current != Some(c.input_size_bytes) {
                remove_file_if_exists(&c.path)?;
                continue;
            }
            // Indexes first: whatever happens next, a segment without indexes gets them
            // rebuilt from its (old or new) log file on open.
            if let Some(old) = self.segments.remove(&c.base_offset) {
                drop(old);
            }
            remove_file_if_exists(&index_file_path(&self.dir, c.base_offset))?;
            remove_file_if_exists(&time_index_file_path(&self.dir, c.base_offset))?;
            let log_path = log_file_path(&self.dir, c.base_offset);
            std::fs::rename(&c.path, &log_path)
                .ctx(|| format!("rename {} to {}", c.path.display(), log_path.display()))?;
            let (mut segment, _) =
                LogSegment::open(&self.dir, c.base_offset, &self.config, now_ms)?;
            let cut = segment.recover(None, i64::MIN)?;
            debug_assert_eq!(cut, 0, "a verified cleaned copy lost bytes on recovery");
            segment.on_become_inactive()?;
            self.segments.insert(c.base_offset, segment);
            replaced += 1;
        }
        sync_dir(&self.dir)?;
        self.cleaned_up_to = self.cleaned_up_to.max(plan.clean_to);
        self.debug_check_invariants();
        Ok(replaced)
    }

    /// Makes everything durable and records recovery point = log end offset, so the next open
    /// has nothing to recover. Further operations fail with [`LogError::Closed`].
    pub fn close(&mut self) -> Result<(), LogError> {
        if self.closed {
            return Ok(());
        }
        self.active_segment_mut().on_become_inactive()?;
        self.persist_indexes(true)?;
        for file in self.txn_index.files_from(i64::MIN) {
            file.sync_data()
                .ctx(|| format!("fsync the transaction index of {}", self.dir.display()))?;
        }
        // Before the directory sync below, which makes its name durable. A failure (a full
        // disk, say) costs the next start a replay of the log, not the close.
        if let Err(e) = self.producer_state.take_snapshot(true) {
            tracing::warn!(log = %self.topic_partition, error = %e, "could not write the producer state snapshot");
        }
        let mut target = self.flush_target();
        target.dir = Some(self.dir.clone());
        target
            .sync()
            .ctx(|| format!("flush log {}", self.dir.display()))?;
        self.recovery_point = target.offset;
        self.unsynced_segment_base = None;
        self.write_recovery_checkpoint(true)?;
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        if self.log_start_offset > first_base {
            self.log_start_checkpoint
                .write(&self.topic_partition, self.log_start_offset)?;
        }
        self.closed = true;
        tracing::debug!(log = %self.topic_partition, log_end_offset = target.offset, "closed log");
        Ok(())
    }

    /// Deletes the partition directory and everything in it.
    pub fn delete(mut self) -> Result<(), LogError> {
        self.closed = true;
        self.segments.clear();
        std::fs::remove_dir_all(&self.dir)
            .ctx(|| format!("delete log directory {}", self.dir.display()))?;
        tracing::info!(log = %self.topic_partition, "deleted log");
        Ok(())
    }
}
