//! Offline verification of a partition directory (what `kafka-dump-log --verify` and
//! `--index-sanity-check` do for Kafka): every batch's header and CRC-32C, offset continuity
//! within and across segments, the offset and time indexes against the log, and the
//! checkpoints against the segments. Read-only: nothing is opened for writing, truncated or
//! deleted, so it is safe to run on damaged data (but not while a broker writes the directory).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::checkpoint::{
    OffsetCheckpointFile, LOG_START_OFFSET_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE,
};
use crate::error::{BatchError, IoContext, LogError};
use crate::files::{index_file_path, log_file_path, time_index_file_path, LOG_FILE_SUFFIX};
use crate::index::IndexEntry;
use crate::offset_index::OffsetEntry;
use crate::scan::{BatchScanner, ScanItem};
use crate::time_index::TimeEntry;
use crate::topic_partition::TopicPartition;

/// Read size while checksumming: large batches stream through it.
const VERIFY_CHUNK_BYTES: usize = 1024 * 1024;
/// A badly damaged log would otherwise produce one line per batch.
const MAX_PROBLEMS_PER_LOG: usize = 100;
/// Offsets one segment can address (relative offsets are 32-bit).
const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// One thing wrong with a log: where (file, byte position, offset when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub position: Option<u64>,
    pub offset: Option<i64>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, " position {p}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset {o}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What [`verify_log_dir`] found.
#[derive(Debug, Clone, Default)]
pub struct LogVerification {
    pub segments: usize,
    pub batches: u64,
    pub records: u64,
    pub size_bytes: u64,
    /// Base offset of the first segment, -1 without segments.
    pub first_offset: i64,
    /// Offset after the last valid batch.
    pub next_offset: i64,
    /// Damage: the log does not hold what it should.
    pub problems: Vec<Problem>,
    /// Worth knowing, not damage (a missing index is rebuilt at the next open; gaps between
    /// segments are normal after compaction).
    pub warnings: Vec<Problem>,
    /// More problems were found than are listed.
    pub problems_truncated: bool,
    /// Largest partitionLeaderEpoch and producerId of any batch, -1 if none: what a rebuilt
    /// metadata log must not go below.
    pub max_leader_epoch: i32,
    pub max_producer_id: i64,
}

impl LogVerification {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS_PER_LOG {
            self.problems.push(problem);
        } else {
            self.problems_truncated = true;
        }
    }
}

fn segment_bases(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(LOG_FILE_SUFFIX)) else {
            continue;
        };
        if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Verifies the partition directory `dir` (named `<topic>-<partition>`).
pub fn verify_log_dir(dir: &Path) -> Result<LogVerification, LogError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| LogError::InvalidDirName(dir.display().to_string()))?;
    let tp = TopicPartition::parse_dir_name(name)?;
    let bases = segment_bases(dir)?;
    let mut report = LogVerification {
        segments: bases.len(),
        first_offset: bases.first().copied().unwrap_or(-1),
        next_offset: bases.first().copied().unwrap_or(0),
        max_leader_epoch: -1,
        max_producer_id: -1,
        ..Default::default()
    };
    for (i, &base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let next_offset = verify_segment(dir, base, next_base, &mut report)?;
        // The aborted-transaction index is derived: damage there is rebuilt at the next open.
        let txn_index = crate::txn_index::txn_index_file_path(dir, base);
        if let Err(reason) = crate::txn_index::read_entries(&txn_index, base, next_offset) {
            report.warnings.push(Problem {
                file: txn_index,
                position: None,
                offset: None,
                reason: format!(
                    "transaction index: {reason} (rebuilt from the log at the next open)"
                ),
            });
        }
        if let Some(n) = next_base {
            if next_offset < n {
                report.warnings.push(Problem {
                    file: log_file_path(dir, base),
                    position: None,
                    offset: Some(next_offset),
                    reason: format!(
                        "offsets {next_offset}..{n} are in no segment (normal only after compaction)"
                    ),
                });
            }
        }
        report.next_offset = next_offset;
    }
    let log_start = OffsetCheckpointFile::new(dir, LOG_START_OFFSET_CHECKPOINT_FILE).read(&tp)?;
    if let Some(&first) = bases.first() {
        let expected = log_start.unwrap_or(0);
        if first > expected {
            report.problem(Problem {
                file: log_file_path(dir, first),
                position: None,
                offset: Some(first),
                reason: format!(
                    "the first segment starts at {first}, above the log start offset {expected}: \
                     segments holding offsets {expected}..{first} are missing"
                ),
            });
        }
    }
    let recovery = OffsetCheckpointFile::new(dir, RECOVERY_POINT_CHECKPOINT_FILE);
    if let Some(rp) = recovery.read(&tp)? {
        if report.next_offset < rp {
            report.problem(Problem {
                file: recovery.path().to_path_buf(),
                position: None,
                offset: Some(report.next_offset),
                reason: format!(
                    "the log ends at {}, below its recovery point {rp}: fsynced data is missing",
                    report.next_offset
                ),
            });
        }
    }
    Ok(report)
}

/// Checks one segment; returns the offset after its last valid batch.
fn verify_segment(
    dir: &Path,
    base: i64,
    next_base: Option<i64>,
    report: &mut LogVerification,
) -> Result<i64, LogError> {
    let path = log_file_path(dir, base);
    let file = File::open(&path).ctx(|| format!("open {}", path.display()))?;
    let len = file
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .len();
    report.size_bytes += len;
    let mut scanner = BatchScanner::new(&file, &path, 0, len, VERIFY_CHUNK_BYTES);
    let mut chain = Chain {
        path: &path,
        base,
        next_base,
        expected: base,
        starts: HashMap::new(),
    };
    loop {
        match scanner.next(true)? {
            ScanItem::Batch { position, header } => chain.check(&header, position, report),
            ScanItem::End => break,
            ScanItem::Invalid { position, error } => {
                if let Some(header) = scanner.skip_bad_crc() {
                    report.problem(chain.problem(position, header.base_offset, error.to_string()));
                    chain.check(&header, position, report);
                    continue;
                }
                let reason = match error {
                    BatchError::Truncated { .. } => {
                        format!("{error} (a batch length is wrong or the file was cut)")
                    }
                    _ => error.to_string(),
                };
                report.problem(chain.problem(
                    position,
                    chain.expected,
                    format!(
                        "{reason}; the {} bytes from here are unreadable",
                        len - position
                    ),
                ));
                break;
            }
        }
    }
    let Chain {
        expected, starts, ..
    } = chain;
    verify_offset_index(dir, base, &starts, report)?;
    verify_time_index(dir, base, expected, report)?;
    Ok(expected)
}

/// The offset chain of one segment while it is walked.
struct Chain<'a> {
    path: &'a Path,
    base: i64,
    next_base: Option<i64>,
    /// The offset the next batch must not go below.
    expected: i64,
    /// Batch start positions and their base offsets, to check the index against.
    starts: HashMap<u64, i64>,
}

impl Chain<'_> {
    fn problem(&self, position: u64, offset: i64, reason: String) -> Problem {
        Problem {
            file: self.path.to_path_buf(),
            position: Some(position),
            offset: Some(offset),
            reason,
        }
    }

    fn check(&mut self, header: &BatchHeader, position: u64, report: &mut LogVerification) {
        if header.base_offset < self.expected {
            report.problem(self.problem(
                position,
                header.base_offset,
                format!(
                    "baseOffset {} goes backwards (the previous batch ends at {})",
                    header.base_offset,
                    self.expected - 1
                ),
            ));
        } else if header.last_offset() - self.base > MAX_RELATIVE_OFFSET {
            report.problem(self.problem(
                position,
                header.base_offset,
                format!(
                    "last offset {} is beyond what segment {} can address",
                    header.last_offset(),
                    self.base
                ),
            ));
        } else if let Some(n) = self.next_base.filter(|n| header.last_offset() >= *n) {
            report.problem(self.problem(
                position,
                header.base_offset,
                format!(
                    "last offset {} reaches into the next segment (base {n})",
                    header.last_offset()
                ),
            ));
        }
        self.starts.insert(position, header.base_offset);
        self.expected = self.expected.max(header.next_offset());
        report.max_leader_epoch = report.max_leader_epoch.max(header.partition_leader_epoch);
        report.max_producer_id = report.max_producer_id.max(header.producer_id);
        report.batches += 1;
        report.records += u64::from(header.records_count.max(0).unsigned_abs());
    }
}

/// An index file's entries, or `None` (with the warning or problem recorded) when it is
/// missing or its size is not a whole number of entries; the whole entries of a mis-sized file
/// are still returned for checking.
fn read_index_entries<E: IndexEntry>(
    path: &Path,
    report: &mut LogVerification,
) -> Result<Option<Vec<E>>, LogError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.warnings.push(Problem {
                file: path.to_path_buf(),
                position: None,
                offset: None,
                reason: "missing (rebuilt at the next open)".into(),
            });
            return Ok(None);
        }
        Err(e) => return Err(LogError::io(format!("read {}", path.display()), e)),
    };
    if bytes.len() % E::SIZE_BYTES != 0 {
        report.problem(Problem {
            file: path.to_path_buf(),
            position: None,
            offset: None,
            reason: format!(
                "size {} is not a multiple of {}",
                bytes.len(),
                E::SIZE_BYTES
            ),
        });
    }
    Ok(Some(
        bytes.chunks_exact(E::SIZE_BYTES).map(E::decode).collect(),
    ))
}

fn verify_offset_index(
    dir: &Path,
    base: i64,
    starts: &HashMap<u64, i64>,
    report: &mut LogVerification,
) -> Result<(), LogError> {
    let path = index_file_path(dir, base);
    let Some(entries) = read_index_entries::<OffsetEntry>(&path, report)? else {
        return Ok(());
    };
    let mut previous: Option<&OffsetEntry> = None;
    for (i, entry) in entries.iter().enumerate() {
        let position = entry.position;
        let offset = base + i64::from(entry.relative_offset);
        let bad = |reason: String| Problem {
            file: path.clone(),
            position: Some((i * OffsetEntry::SIZE_BYTES) as u64),
            offset: Some(offset),
            reason,
        };
        if previous.is_some_and(|p| !p.precedes(entry)) {
            report.problem(bad(format!(
                "entry ({offset}, {position}) is not above the previous one"
            )));
        }
        match starts.get(&u64::from(position)) {
            Some(&found) if found == offset => {}
            Some(&found) => report.problem(bad(format!(
                "entry maps offset {offset} to position {position}, where the batch has baseOffset {found}"
            ))),
            None => report.problem(bad(format!(
                "entry maps offset {offset} to position {position}, where no batch starts"
            ))),
        }
        previous = Some(entry);
    }
    Ok(())
}

fn verify_time_index(
    dir: &Path,
    base: i64,
    next_offset: i64,
    report: &mut LogVerification,
) -> Result<(), LogError> {
    let path = time_index_file_path(dir, base);
    let Some(entries) = read_index_entries::<TimeEntry>(&path, report)? else {
        return Ok(());
    };
    let mut previous: Option<&TimeEntry> = None;
    for (i, entry) in entries.iter().enumerate() {
        let timestamp = entry.timestamp;
        let offset = base + i64::from(entry.relative_offset);
        let bad = |reason: String| Problem {
            file: path.clone(),
            position: Some((i * TimeEntry::SIZE_BYTES) as u64),
            offset: Some(offset),
            reason,
        };
        if offset >= next_offset {
            report.problem(bad(format!(
                "entry points at offset {offset}, past the segment's last offset {}",
                next_offset - 1
            )));
        }
        // The order the broker's own load requires (timestamps strictly rising), so that
        // verify passes no index that an open would throw away.
        if previous.is_some_and(|p| !p.precedes(entry)) {
            report.problem(bad(format!(
                "entry ({timestamp}, {offset}) is not above the previous one"
            )));
        }
        previous = Some(entry);
    }
    Ok(())
}

/// The first batch of a fetched slice that fails its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBatch {
    /// Byte position in the segment file.
    pub position: u64,
    /// Base offset, when the header still parses.
    pub offset: Option<i64>,
    pub error: BatchError,
}

/// The data records of the whole batches in `slice` (a pread of its bytes), for a slice cut
/// shorter than it was read (see [`check_slice`]); a partial batch at its end is not counted.
pub fn data_records(slice: &crate::log::FetchSlice) -> std::io::Result<u64> {
    let bytes = slice.read_bytes()?;
    Ok(crate::batch::data_records_in(&bytes, slice.position))
}

/// Checks the header and CRC-32C of every batch in `slice` (a pread of its bytes). Returns
/// how many leading bytes are whole valid batches, and the first bad batch if there is one.
pub fn check_slice(slice: &crate::log::FetchSlice) -> std::io::Result<(usize, Option<BadBatch>)> {
    let bytes = slice.read_bytes()?;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let position = slice.position + pos as u64;
        let bad = |offset, error| BadBatch {
            position,
            offset,
            error,
        };
        let header = match crate::batch::parse_header(&bytes[pos..], position) {
            Ok(h) => h,
            Err(e) => return Ok((pos, Some(bad(None, e)))),
        };
        let end = pos + header.size_bytes();
        if end > bytes.len() {
            let error = BatchError::Truncated {
                position,
                needed_bytes: header.size_bytes() as u64,
                available_bytes: (bytes.len() - pos) as u64,
            };
            return Ok((pos, Some(bad(Some(header.base_offset), error))));
        }
        let computed = crate::batch::compute_crc(&bytes[pos..end]);
        if computed != header.crc {
            let error = BatchError::CrcMismatch {
                position,
                stored: header.crc,
                computed,
            };
            return Ok((pos, Some(bad(Some(header.base_offset), error))));
        }
        pos = end;
    }
    Ok((pos, None))
}
