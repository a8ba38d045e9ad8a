//! One segment of a partition log (Kafka's LogSegment): a `.log` file of record batches plus
//! its sparse `.index` and `.timeindex`, all named by the segment's base offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchHeader, RECORD_BATCH_HEADER_SIZE};
use crate::config::LogConfig;
use crate::error::{BatchError, IoContext, LogError};
use crate::index::IndexLoad;
use crate::offset_index::OffsetIndex;
use crate::scan::{BatchScanner, ScanItem};
use crate::time_index::{TimeIndex, TimestampAndOffset};

// The file names lived here before `files`: re-exported so that `segment::` paths in branches
// under way still compile (nothing outside strom-log used them when they moved).
pub use crate::files::{
    file_stem, index_file_path, log_file_path, time_index_file_path, CLEANED_FILE_SUFFIX,
    DELETED_FILE_SUFFIX, INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, SWAP_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
};

/// Relative offsets in the indexes are 32-bit; Kafka keeps them non-negative ints.
const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;
/// Read size when walking batch headers: big enough to cover many small batches per syscall,
/// small enough not to drag whole large batches into memory just to read their headers.
const HEADER_SCAN_CHUNK_BYTES: usize = 16 * 1024;
/// Read size when checksumming batches during recovery; large batches are streamed through it.
const CRC_SCAN_CHUNK_BYTES: usize = 256 * 1024;

/// How far a recovery scan got.
struct RecoveryScan {
    /// End of the last batch kept.
    valid_end: u64,
    /// Where the scan stopped and why, if before the end of the file.
    invalid: Option<(u64, String)>,
    /// A batch below the recovery point failed its CRC and was kept.
    damaged_synced_data: bool,
}

/// Where a read found data in this segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentRead {
    /// No batch in this segment reaches the start offset; try the next segment.
    NotInSegment,
    Slice {
        position: u64,
        size_bytes: usize,
        /// Base offset of the first batch, -1 when `size_bytes` is 0.
        first_offset: i64,
        /// The offset after the slice: the first batch left out, else the segment's next
        /// offset (Kafka's fetchUpperBoundOffset, what aborted transactions are cut at).
        upper_bound_offset: i64,
        /// Records of the slice's data batches, from their headers (control batches left
        /// out: consumers never see their markers).
        data_records: u64,
    },
}

#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    log_file: Arc<File>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    size_bytes: u64,
    next_offset: i64,
    /// Largest batch maxTimestamp in the segment, -1 if none.
    max_timestamp_so_far: i64,
    /// Base offset of the first batch reaching `max_timestamp_so_far`, -1 if none.
    offset_of_max_timestamp: i64,
    bytes_since_last_index_entry: u64,
    index_interval_bytes: u64,
    /// maxTimestamp of the first batch: what segment.ms measures age from (Kafka's rule).
    rolling_based_timestamp: Option<i64>,
    created_ms: i64,
}

fn open_log_file(path: &Path, truncate: bool) -> Result<File, LogError> {
    crate::files::open_read_write(path, truncate).ctx(|| format!("open segment {}", path.display()))
}

impl LogSegment {
    /// Creates a new empty segment, replacing any leftover files with the same base offset.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let log_path = log_file_path(dir, base_offset);
        let log_file = open_log_file(&log_path, true)?;
        let offset_index = OffsetIndex::create(
            &index_file_path(dir, base_offset),
            base_offset,
            config.segment_index_bytes,
        )?;
        let time_index = TimeIndex::create(
            &time_index_file_path(dir, base_offset),
            base_offset,
            config.segment_index_bytes,
        )?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log_file: Arc::new(log_file),
            offset_index,
            time_index,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp_so_far: -1,
            offset_of_max_timestamp: -1,
            bytes_since_last_index_entry: 0,
            index_interval_bytes: config.index_interval_bytes,
            rolling_based_timestamp: None,
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment. Its in-memory state is not usable until the caller runs
    /// [`LogSegment::recover`] or [`LogSegment::load_tail`]. Returns why the indexes had to be
    /// recreated (empty), in which case only a full `recover(None)` is acceptable.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<(Self, Option<String>), LogError> {
        let log_path = log_file_path(dir, base_offset);
        let log_file = open_log_file(&log_path, false)?;
        let size_bytes = log_file
            .metadata()
            .ctx(|| format!("stat {}", log_path.display()))?
            .len();
        let index_path = index_file_path(dir, base_offset);
        let time_index_path = time_index_file_path(dir, base_offset);
        let mut rebuild_reason = None;
        let offset_index = match OffsetIndex::load(
            &index_path,
            base_offset,
            config.segment_index_bytes,
            size_bytes,
        )? {
            IndexLoad::Loaded(i) => Some(i),
            IndexLoad::Rebuild(reason) => {
                rebuild_reason = Some(format!("{}: {reason}", index_path.display()));
                None
            }
        };
        let time_index =
            match TimeIndex::load(&time_index_path, base_offset, config.segment_index_bytes)? {
                IndexLoad::Loaded(i) => Some(i),
                IndexLoad::Rebuild(reason) => {
                    rebuild_reason = Some(format!("{}: {reason}", time_index_path.display()));
                    None
                }
            };
        let (offset_index, time_index) = match (offset_index, time_index) {
            (Some(o), Some(t)) => (o, t),
            _ => (
                OffsetIndex::create(&index_path, base_offset, config.segment_index_bytes)?,
                TimeIndex::create(&time_index_path, base_offset, config.segment_index_bytes)?,
            ),
        };
        Ok((
            LogSegment {
                base_offset,
                log_path,
                log_file: Arc::new(log_file),
                offset_index,
                time_index,
                size_bytes,
                next_offset: base_offset,
                max_timestamp_so_far: -1,
                offset_of_max_timestamp: -1,
                bytes_since_last_index_entry: 0,
                index_interval_bytes: config.index_interval_bytes,
                rolling_based_timestamp: None,
                created_ms: now_ms,
            },
            rebuild_reason,
        ))
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch (the segment's log end offset).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log_file(&self) -> &Arc<File> {
        &self.log_file
    }

    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    pub fn max_timestamp_so_far(&self) -> i64 {
        self.max_timestamp_so_far
    }

    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    /// Writes index entries the index files lack; with `sync`, makes them durable. Flushes do
    /// not sync the indexes: they are hints that recovery can rebuild from the log.
    pub(crate) fn persist_indexes(&mut self, sync: bool) -> Result<(), LogError> {
        self.offset_index.persist(sync)?;
        self.time_index.persist(sync)
    }

    pub(crate) fn has_unpersisted_index_entries(&self) -> bool {
        self.offset_index.unpersisted() > 0 || self.time_index.unpersisted() > 0
    }

    /// Largest timestamp for time-based retention; falls back to the file's mtime when no
    /// batch carries a timestamp (as Kafka does).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp_so_far >= 0 {
            return self.max_timestamp_so_far;
        }
        self.log_file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_millis() as i64)
    }

    /// Why the segment should be rolled before appending, if it should (Kafka's shouldRoll).
    /// An empty segment is never rolled.
    pub(crate) fn should_roll(
        &self,
        config: &LogConfig,
        append_size_bytes: u64,
        max_timestamp_in_append: i64,
        last_offset_in_append: i64,
        now_ms: i64,
    ) -> Option<&'static str> {
        if self.size_bytes == 0 {
            return None;
        }
        if self.size_bytes + append_size_bytes > config.segment_bytes {
            return Some("segment.bytes reached");
        }
        let waited_ms = match self.rolling_based_timestamp {
            Some(t) if t >= 0 => max_timestamp_in_append.saturating_sub(t),
            _ => now_ms.saturating_sub(self.created_ms),
        };
        if waited_ms > config.segment_ms {
            return Some("segment.ms reached");
        }
        if self.offset_index.is_full() {
            return Some("offset index full");
        }
        if self.time_index.is_full() {
            return Some("time index full");
        }
        if last_offset_in_append - self.base_offset > MAX_RELATIVE_OFFSET {
            return Some("relative offset overflow");
        }
        None
    }

    /// Accounts for a batch that now sits at `position`: max timestamp, sparse index entries
    /// (Kafka's rule: one entry per `index.interval.bytes`), next offset.
    fn index_batch(&mut self, header: &BatchHeader, position: u64) {
        // Recovery refuses a batch beyond the 32-bit range (`out_of_sequence`) and an append
        // starts below segment.bytes (at most i32::MAX): a larger one would index a wrapped
        // position.
        assert!(
            position <= u64::from(u32::MAX),
            "segment {}: batch position {position} beyond the index's 32-bit range",
            self.log_path.display()
        );
        debug_assert!(header.base_offset >= self.base_offset);
        if header.max_timestamp > self.max_timestamp_so_far {
            self.max_timestamp_so_far = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        if self.rolling_based_timestamp.is_none() && position == 0 {
            self.rolling_based_timestamp = Some(header.max_timestamp);
        }
        if self.bytes_since_last_index_entry > self.index_interval_bytes {
            if !self.offset_index.is_full() {
                self.offset_index
                    .append(header.base_offset, position as u32);
            }
            if self.offset_of_max_timestamp >= 0 {
                self.time_index.maybe_append(
                    self.max_timestamp_so_far,
                    self.offset_of_max_timestamp,
                    false,
                );
            }
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.size_bytes() as u64;
        self.next_offset = header.next_offset();
    }

    /// Appends already validated, offset-assigned batches with a single write.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        headers: &[BatchHeader],
    ) -> Result<(), LogError> {
        debug_assert_eq!(
            headers.iter().map(|h| h.size_bytes()).sum::<usize>(),
            records.len()
        );
        // Offsets the segment cannot hold would be written under a wrong relative offset
        // (its indexes, then reads, would point elsewhere): the log assigns them, so a
        // violation is a bug to stop at, before any byte is written.
        if let (Some(first), Some(last)) = (headers.first(), headers.last()) {
            assert!(
                first.base_offset >= self.next_offset && first.base_offset >= self.base_offset,
                "segment {}: append at offset {} below its next offset {}",
                self.log_path.display(),
                first.base_offset,
                self.next_offset
            );
            assert!(
                last.last_offset() - self.base_offset <= MAX_RELATIVE_OFFSET,
                "segment {}: offset {} beyond the relative range of base {}",
                self.log_path.display(),
                last.last_offset(),
                self.base_offset
            );
        }
        debug_assert!(headers
            .windows(2)
            .all(|w| w[1].base_offset == w[0].next_offset()));
        let position = self.size_bytes;
        if let Err(e) = self.log_file.write_all_at(records, position) {
            // Cut a partial write so the file never holds bytes the segment does not account for.
            if let Err(trim) = self.log_file.set_len(position) {
                tracing::error!(path = %self.log_path.display(), error = %trim, "failed to trim partial write");
            }
            return Err(LogError::io(
                format!("append to {}", self.log_path.display()),
                e,
            ));
        }
        self.size_bytes += records.len() as u64;
        let mut batch_position = position;
        for header in headers {
            self.index_batch(header, batch_position);
            batch_position += header.size_bytes() as u64;
        }
        Ok(())
    }

    /// A walk of batch headers from the batch the offset index names for `offset` (at or
    /// before the one holding it).
    fn headers_from(&self, offset: i64) -> BatchScanner<'_> {
        let start = u64::from(self.offset_index.lookup(offset).position);
        BatchScanner::new(
            &self.log_file,
            &self.log_path,
            start,
            self.size_bytes,
            HEADER_SCAN_CHUNK_BYTES,
        )
    }

    /// Position and header of the first batch whose last offset is >= `offset`, searching from
    /// the index hint.
    pub(crate) fn translate_offset(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut scanner = self.headers_from(offset);
        loop {
            match scanner.next(false)? {
                ScanItem::Batch { position, header } => {
                    if header.last_offset() >= offset {
                        return Ok(Some((position, header)));
                    }
                }
                ScanItem::End => return Ok(None),
                ScanItem::Invalid { position, error } => {
                    return Err(LogError::Corrupt {
                        path: self.log_path.clone(),
                        reason: format!("at byte {position}: {error}"),
                    })
                }
            }
        }
    }

    /// Whole batches starting with the one containing `start_offset`, up to `max_bytes`
    /// (KIP-74: the first batch is returned whole even if larger, when `min_one_batch`),
    /// excluding batches that reach `max_offset`.
    pub(crate) fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<SegmentRead, LogError> {
        let mut scanner = self.headers_from(start_offset);
        let corrupt = |position: u64, error: BatchError| LogError::Corrupt {
            path: self.log_path.clone(),
            reason: format!("at byte {position}: {error}"),
        };
        let (first_position, first) = loop {
            match scanner.next(false)? {
                ScanItem::Batch { position, header } if header.last_offset() >= start_offset => {
                    break (position, header)
                }
                ScanItem::Batch { .. } => {}
                ScanItem::End => return Ok(SegmentRead::NotInSegment),
                ScanItem::Invalid { position, error } => return Err(corrupt(position, error)),
            }
        };
        let empty = SegmentRead::Slice {
            position: first_position,
            size_bytes: 0,
            first_offset: -1,
            upper_bound_offset: first.base_offset,
            data_records: 0,
        };
        // Kafka excludes the batch containing the high watermark: nothing at or above it may be
        // exposed. At batch boundaries this is "base offset >= max_offset".
        if first.last_offset() >= max_offset {
            return Ok(empty);
        }
        let mut total = first.size_bytes();
        if total > max_bytes && !min_one_batch {
            return Ok(empty);
        }
        let mut data_records = first.data_records();
        let mut upper_bound_offset = self.next_offset;
        loop {
            match scanner.next(false)? {
                ScanItem::Batch { header, .. } => {
                    if header.last_offset() >= max_offset || total + header.size_bytes() > max_bytes
                    {
                        upper_bound_offset = header.base_offset;
                        break;
                    }
                    total += header.size_bytes();
                    data_records += header.data_records();
                }
                ScanItem::End => break,
                ScanItem::Invalid { position, error } => {
                    // Serve what precedes it; the next read starting here reports the corruption.
                    tracing::error!(segment = %self.log_path.display(), position, %error, "corrupt batch while reading");
                    break;
                }
            }
        }
        Ok(SegmentRead::Slice {
            position: first_position,
            size_bytes: total,
            first_offset: first.base_offset,
            upper_bound_offset,
            data_records,
        })
    }

    /// First batch at or after `min_offset` whose maxTimestamp >= `target_ms`.
    pub(crate) fn find_offset_by_timestamp(
        &self,
        target_ms: i64,
        min_offset: i64,
    ) -> Result<Option<TimestampAndOffset>, LogError> {
        let from_offset = self
            .time_index
            .lookup(target_ms)
            .map_or(self.base_offset, |e| e.offset)
            .max(min_offset);
        let mut scanner = self.headers_from(from_offset);
        loop {
            match scanner.next(false)? {
                ScanItem::Batch { header, .. } => {
                    if header.max_timestamp >= target_ms && header.last_offset() >= min_offset {
                        return Ok(Some(TimestampAndOffset {
                            timestamp: header.max_timestamp,
                            offset: header.base_offset.max(min_offset),
                            leader_epoch: Some(header.partition_leader_epoch).filter(|e| *e >= 0),
                        }));
                    }
                }
                ScanItem::End => return Ok(None),
                ScanItem::Invalid { position, error } => {
                    return Err(LogError::Corrupt {
                        path: self.log_path.clone(),
                        reason: format!("at byte {position}: {error}"),
                    })
                }
            }
        }
    }

    /// Header of the batch starting exactly at `position`, if one parses there.
    fn batch_at(&self, position: u64) -> Result<Option<BatchHeader>, LogError> {
        let mut scanner = BatchScanner::new(
            &self.log_file,
            &self.log_path,
            position,
            self.size_bytes,
            RECORD_BATCH_HEADER_SIZE,
        );
        Ok(match scanner.next(false)? {
            ScanItem::Batch { header, .. } => Some(header),
            _ => None,
        })
    }

    fn reset_state(&mut self, next_offset: i64) {
        self.next_offset = next_offset;
        self.bytes_since_last_index_entry = 0;
        match self.time_index.last_entry() {
            Some(e) => {
                self.max_timestamp_so_far = e.timestamp;
                self.offset_of_max_timestamp = e.offset;
            }
            None => {
                self.max_timestamp_so_far = -1;
                self.offset_of_max_timestamp = -1;
            }
        }
    }

    /// Validates (header + CRC-32C, offset continuity) the batches from the last index entry
    /// before `from_offset` (or from the start when `None`, rebuilding the indexes),
    /// re-indexing them. Returns the number of bytes truncated.
    ///
    /// `synced_below` is the log's recovery point: offsets below it were fsynced (and so
    /// acknowledged), only what lies at or above it can be a torn write. An invalid batch at or
    /// above it starts the torn tail, which is cut off (Kafka's rule). Below it, nothing is
    /// ever cut: a batch whose CRC alone fails is logged (ERROR, file and position) and kept,
    /// since its framing still leads to the next batch; anything that breaks the chain
    /// (unparseable header, length past the end, offsets out of sequence) is
    /// [`LogError::Corrupt`], and the caller must refuse the log rather than lose what follows.
    pub(crate) fn recover(
        &mut self,
        from_offset: Option<i64>,
        synced_below: i64,
    ) -> Result<u64, LogError> {
        let file_len = self
            .log_file
            .metadata()
            .ctx(|| format!("stat {}", self.log_path.display()))?
            .len();
        self.size_bytes = file_len;
        let (start_position, start_offset) = self.recovery_start(from_offset)?;
        self.reset_state(start_offset);
        if start_position == 0 {
            self.rolling_based_timestamp = None;
        }
        let scan = self.scan_and_index(start_position, file_len, synced_below)?;
        let truncated_bytes = file_len - scan.valid_end;
        if truncated_bytes > 0 {
            self.cut_torn_tail(&scan, truncated_bytes, synced_below)?;
            if self
                .time_index
                .last_entry()
                .is_some_and(|e| e.offset >= self.next_offset)
            {
                // Entries kept from before the recovery point describe data that turned out to
                // be corrupt: start over from scratch on the (now shorter) file.
                return Ok(truncated_bytes + self.recover(None, synced_below)?);
            }
        }
        if self.rolling_based_timestamp.is_none() && self.size_bytes > 0 {
            self.rolling_based_timestamp = self.batch_at(0)?.map(|h| h.max_timestamp);
        }
        Ok(truncated_bytes)
    }

    /// Where a recovery scan starts: the last index entry below `from_offset` (the recovery
    /// point) if it matches the log, else the segment's start with both indexes emptied.
    fn recovery_start(&mut self, from_offset: Option<i64>) -> Result<(u64, i64), LogError> {
        if let Some(recovery_point) = from_offset {
            // Index entries below the recovery point were fsynced with their data; the rest are
            // unverified.
            self.offset_index.truncate_to_offset(recovery_point)?;
            self.time_index.truncate_to_offset(recovery_point)?;
            let (position, offset) = self
                .offset_index
                .last_entry()
                .map_or((0, self.base_offset), |e| (u64::from(e.position), e.offset));
            match self.batch_at(position)? {
                Some(h)
                    if h.base_offset == offset
                        || (position == 0 && h.base_offset >= self.base_offset) =>
                {
                    return Ok((position, offset));
                }
                None if position == 0 => return Ok((0, self.base_offset)),
                _ => {
                    tracing::warn!(segment = %self.log_path.display(), "index entry does not match the log; rebuilding")
                }
            }
        }
        self.offset_index.reset()?;
        self.time_index.reset()?;
        Ok((0, self.base_offset))
    }

    /// Checks and re-indexes the batches from `start_position` up to the first that breaks
    /// the chain; below `synced_below` a batch whose CRC alone fails is kept (see
    /// [`LogSegment::recover`]).
    fn scan_and_index(
        &mut self,
        start_position: u64,
        file_len: u64,
        synced_below: i64,
    ) -> Result<RecoveryScan, LogError> {
        let file = Arc::clone(&self.log_file);
        let path = self.log_path.clone();
        let mut scanner =
            BatchScanner::new(&file, &path, start_position, file_len, CRC_SCAN_CHUNK_BYTES);
        let mut scan = RecoveryScan {
            valid_end: start_position,
            invalid: None,
            damaged_synced_data: false,
        };
        loop {
            match scanner.next(true)? {
                ScanItem::Batch { position, header } => {
                    if let Some(reason) = self.out_of_sequence(&header, position) {
                        scan.invalid = Some((position, reason));
                        break;
                    }
                    self.index_batch(&header, position);
                    scan.valid_end = position + header.size_bytes() as u64;
                }
                ScanItem::End => break,
                ScanItem::Invalid { position, error } => {
                    if self.next_offset < synced_below {
                        if let Some(header) = scanner.skip_bad_crc() {
                            if self.keep_damaged_synced_batch(
                                header,
                                position,
                                synced_below,
                                &error,
                            ) {
                                scan.damaged_synced_data = true;
                                scan.valid_end = position + header.size_bytes() as u64;
                                continue;
                            }
                        }
                    }
                    scan.invalid = Some((position, error.to_string()));
                    break;
                }
            }
        }
        Ok(scan)
    }

    /// A batch below the recovery point that fails its CRC but whose framing still holds: it
    /// is kept (logged, indexed without its timestamp) if its offsets fit where it stands.
    fn keep_damaged_synced_batch(
        &mut self,
        header: BatchHeader,
        position: u64,
        synced_below: i64,
        error: &BatchError,
    ) -> bool {
        // Its lastOffsetDelta sits inside the failed CRC: a synced batch ends at or below the
        // recovery point, so one claiming more is not trusted to say where the next offset is.
        if self.out_of_sequence(&header, position).is_some() || header.next_offset() > synced_below
        {
            return false;
        }
        tracing::error!(
            segment = %self.log_path.display(),
            position,
            base_offset = header.base_offset,
            last_offset = header.last_offset(),
            recovery_point = synced_below,
            %error,
            "acknowledged record batch is damaged (fails its CRC below the recovery point); kept as it is, not truncated"
        );
        // Nor is its maxTimestamp (also inside the CRC) let into the time index.
        let mut header = header;
        header.max_timestamp = -1;
        self.index_batch(&header, position);
        true
    }

    /// Cuts what follows the last valid batch, unless it holds acknowledged data (below the
    /// recovery point, or after a damaged synced batch): that is [`LogError::Corrupt`].
    fn cut_torn_tail(
        &mut self,
        scan: &RecoveryScan,
        truncated_bytes: u64,
        synced_below: i64,
    ) -> Result<(), LogError> {
        let valid_end = scan.valid_end;
        let (position, reason) = scan
            .invalid
            .clone()
            .unwrap_or((valid_end, "unknown".to_string()));
        // Once synced data was found damaged, nothing after it in the segment is taken for a
        // torn write: the offsets that tell the two apart came from a damaged header.
        if self.next_offset < synced_below || scan.damaged_synced_data {
            tracing::error!(
                segment = %self.log_path.display(),
                position,
                offset = self.next_offset,
                recovery_point = synced_below,
                %reason,
                "acknowledged data is damaged (below the recovery point); refusing to truncate it"
            );
            return Err(LogError::Corrupt {
                path: self.log_path.clone(),
                reason: format!(
                    "at byte {position} (offset {}), below the recovery point {synced_below}, so acknowledged data: {reason}; \
                     not truncated ({truncated_bytes} bytes from there kept); run `strom storage verify` for details",
                    self.next_offset
                ),
            });
        }
        tracing::warn!(
            segment = %self.log_path.display(),
            position,
            offset = self.next_offset,
            valid_bytes = valid_end,
            truncated_bytes,
            %reason,
            "truncating the torn tail of the segment (written after the last fsync)"
        );
        self.log_file
            .set_len(valid_end)
            .ctx(|| format!("truncate {}", self.log_path.display()))?;
        self.size_bytes = valid_end;
        Ok(())
    }

    /// Why a CRC-valid batch still cannot belong at this point of the segment.
    fn out_of_sequence(&self, header: &BatchHeader, position: u64) -> Option<String> {
        if header.base_offset < self.next_offset || header.base_offset < self.base_offset {
            return Some(format!(
                "batch base offset {} goes backwards (expected >= {})",
                header.base_offset, self.next_offset
            ));
        }
        if header.last_offset() - self.base_offset > MAX_RELATIVE_OFFSET
            || header.last_offset() == i64::MAX
        {
            return Some(format!(
                "batch last offset {} out of segment range",
                header.last_offset()
            ));
        }
        if position > u64::from(u32::MAX) {
            return Some(format!(
                "batch position {position} beyond 32-bit index range"
            ));
        }
        None
    }

    /// Restores in-memory state of a segment trusted to be intact (wholly below the recovery
    /// point): reads headers from the last index entry to the end, without CRC checks.
    /// `Ok(false)` means the files are inconsistent and the caller must `recover(None)`.
    pub(crate) fn load_tail(&mut self) -> Result<bool, LogError> {
        self.size_bytes = self
            .log_file
            .metadata()
            .ctx(|| format!("stat {}", self.log_path.display()))?
            .len();
        self.restore_tail_state()
    }

    fn restore_tail_state(&mut self) -> Result<bool, LogError> {
        let (start_position, start_offset) = self
            .offset_index
            .last_entry()
            .map_or((0, self.base_offset), |e| (u64::from(e.position), e.offset));
        self.reset_state(start_offset);
        let file = Arc::clone(&self.log_file);
        let path = self.log_path.clone();
        let mut scanner = BatchScanner::new(
            &file,
            &path,
            start_position,
            self.size_bytes,
            HEADER_SCAN_CHUNK_BYTES,
        );
        let mut first = true;
        loop {
            match scanner.next(false)? {
                ScanItem::Batch { position, header } => {
                    let expected_first = start_position == 0 || header.base_offset == start_offset;
                    if (first && !expected_first)
                        || self.out_of_sequence(&header, position).is_some()
                    {
                        return Ok(false);
                    }
                    first = false;
                    self.index_batch(&header, position);
                }
                ScanItem::End => break,
                ScanItem::Invalid { .. } => return Ok(false),
            }
        }
        if self
            .time_index
            .last_entry()
            .is_some_and(|e| e.offset >= self.next_offset)
        {
            return Ok(false);
        }
        self.rolling_based_timestamp = if self.size_bytes > 0 {
            self.batch_at(0)?.map(|h| h.max_timestamp)
        } else {
            None
        };
        Ok(true)
    }

    /// Removes every batch whose last offset is >= `offset` (a batch straddling `offset` goes
    /// whole, as in Kafka). Returns the number of bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64, LogError> {
        let Some((position, header)) = self.translate_offset(offset)? else {
            return Ok(0);
        };
        self.offset_index.truncate_to_offset(header.base_offset)?;
        self.time_index.truncate_to_offset(header.base_offset)?;
        self.log_file
            .set_len(position)
            .ctx(|| format!("truncate {}", self.log_path.display()))?;
        let removed = self.size_bytes - position;
        self.size_bytes = position;
        if !self.restore_tail_state()? {
            return Err(LogError::Corrupt {
                path: self.log_path.clone(),
                reason: "inconsistent after truncation".into(),
            });
        }
        Ok(removed)
    }

    /// Called when the segment stops being the active one (roll) or the log closes: records the
    /// final max timestamp so that a reopened segment knows it without a scan, and makes the
    /// indexes durable (a sealed segment's are trusted at the next open).
    pub(crate) fn on_become_inactive(&mut self) -> Result<(), LogError> {
        if self.offset_of_max_timestamp >= 0 {
            self.time_index.maybe_append(
                self.max_timestamp_so_far,
                self.offset_of_max_timestamp,
                true,
            );
        }
        self.persist_indexes(true)
    }

    /// Deletes the segment's files. The log file is first renamed `.deleted`, so a crash midway
    /// leaves a stray file that the next open removes, never a half-deleted segment.
    pub(crate) fn delete(self) -> Result<(), LogError> {
        let mut deleted = self.log_path.as_os_str().to_owned();
        deleted.push(DELETED_FILE_SUFFIX);
        let deleted = PathBuf::from(deleted);
        std::fs::rename(&self.log_path, &deleted)
            .ctx(|| format!("rename {} for deletion", self.log_path.display()))?;
        for path in [
            self.offset_index.path(),
            self.time_index.path(),
            deleted.as_path(),
        ] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(format!("delete {}", path.display()), e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_batch, BatchSpec};

    fn batch_at(base_offset: i64, records: i32) -> (Vec<u8>, Vec<BatchHeader>) {
        let bytes = build_batch(&BatchSpec {
            base_offset,
            ..BatchSpec::records(records)
        });
        let headers = crate::batch::validate_batches(&bytes).unwrap();
        (bytes, headers)
    }

    fn segment_at(base_offset: i64) -> (tempfile::TempDir, LogSegment) {
        let tmp = tempfile::tempdir().unwrap();
        let segment =
            LogSegment::create(tmp.path(), base_offset, &LogConfig::default(), 0).unwrap();
        (tmp, segment)
    }

    #[test]
    fn appends_at_and_after_the_next_offset() {
        let (_tmp, mut segment) = segment_at(100);
        let (bytes, headers) = batch_at(100, 3);
        segment.append(&bytes, &headers).unwrap();
        let (bytes, headers) = batch_at(103, 2);
        segment.append(&bytes, &headers).unwrap();
        assert_eq!(segment.next_offset(), 105);
    }

    #[test]
    #[should_panic(expected = "below its next offset")]
    fn an_append_below_the_next_offset_is_a_bug() {
        let (_tmp, mut segment) = segment_at(100);
        let (bytes, headers) = batch_at(100, 3);
        segment.append(&bytes, &headers).unwrap();
        let (bytes, headers) = batch_at(101, 1);
        let _ = segment.append(&bytes, &headers);
    }

    #[test]
    #[should_panic(expected = "below its next offset")]
    fn an_append_below_the_base_offset_is_a_bug() {
        let (_tmp, mut segment) = segment_at(100);
        let (bytes, headers) = batch_at(50, 1);
        let _ = segment.append(&bytes, &headers);
    }

    #[test]
    #[should_panic(expected = "beyond the relative range")]
    fn an_append_past_the_relative_range_is_a_bug() {
        let (_tmp, mut segment) = segment_at(0);
        let (bytes, headers) = batch_at(i64::from(i32::MAX), 2);
        let _ = segment.append(&bytes, &headers);
    }
}
