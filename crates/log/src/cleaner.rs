//! Log compaction (Kafka's `LogCleaner`), for logs whose cleanup.policy includes `compact`:
//! of each key only the latest record is kept, and a tombstone (null value) goes too once it
//! is older than delete.retention.ms.
//!
//! It works in two steps so that appends and reads are not held up:
//!
//! 1. [`clean`] reads the sealed segments of a [`CleanPlan`] (taken from the log under its
//!    lock, but run without it: sealed segments never change), builds a map from each key to
//!    its latest offset, and writes for every segment that loses records a `.cleaned` copy
//!    with only the survivors, fsynced and read back.
//! 2. [`crate::Log::install_cleaned`] (under the lock) replaces each segment whose file is
//!    still the one that was read: its indexes are deleted, the `.cleaned` file is renamed
//!    over the log file (atomic), and the segment is reopened with rebuilt indexes. A crash
//!    at any point leaves either the old or the new file, and missing indexes are rebuilt
//!    on open.
//!
//! Batches are the unit of storage: a batch whose records all survive is copied byte for
//! byte; one that loses some is decoded and re-encoded with its own compression codec,
//! producer fields and timestamps; one that loses all disappears. Offsets never change, so
//! consumers see gaps, as with Kafka. Segments are rewritten one for one (Kafka also merges
//! small neighbours); a segment emptied entirely stays as an empty file.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use proto_kafka::records::{RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};

use crate::error::{IoContext, LogError};
use crate::files::{log_file_path, CLEANED_FILE_SUFFIX};
use crate::scan::{BatchScanner, ScanItem};

/// Keys one cleaning pass maps (16 bytes of hash and 8 of offset each, plus the table's own
/// overhead: about 200 MB at the bound). Past it, only the segments mapped in full are
/// cleaned; the rest wait for the next pass.
pub const MAX_CLEANER_KEYS: usize = 4_000_000;
/// Bytes read at a time while scanning batch headers.
const SCAN_CHUNK_BYTES: usize = 256 * 1024;

/// What one cleaning pass covers: the sealed segments of a log, oldest first.
#[derive(Debug, Clone)]
pub struct CleanPlan {
    pub dir: PathBuf,
    /// (base offset, size in bytes) of each sealed segment.
    pub segments: Vec<(i64, u64)>,
    /// delete.retention.ms: how long a tombstone outlives what it deleted.
    pub delete_retention_ms: i64,
    /// The active segment's base when the plan was made: everything below it is covered.
    pub clean_to: i64,
    /// Base offsets of each idempotent producer's last batch. These are kept whole (Kafka
    /// keeps them, emptied if need be), so that producer state rebuilt from the log alone
    /// still knows each producer's epoch and last sequence.
    pub producer_last_batches: HashSet<i64>,
    /// The aborted transactions with data in the plan's segments: their batches are dropped
    /// and never count as a key's latest record (Kafka's cleaner discards aborted data; a
    /// committed record is never shadowed by an aborted one).
    pub aborted_transactions: Vec<crate::txn_index::AbortedTxn>,
}

impl CleanPlan {
    /// Whether the batch starting `batch` (a transactional data batch) belongs to an aborted
    /// transaction.
    fn is_aborted(&self, aborted: &HashMap<i64, Vec<(i64, i64)>>, batch: &[u8]) -> bool {
        let Ok(h) = crate::batch::parse_header(batch, 0) else {
            return false;
        };
        if !h.is_transactional() || h.is_control() || h.producer_id < 0 {
            return false;
        }
        aborted.get(&h.producer_id).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|(first, last)| *first <= h.base_offset && h.base_offset <= *last)
        })
    }

    fn aborted_by_producer(&self) -> HashMap<i64, Vec<(i64, i64)>> {
        let mut out: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in &self.aborted_transactions {
            out.entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        out
    }
}

/// A segment's cleaned copy, ready to be installed.
#[derive(Debug)]
pub struct CleanedSegment {
    pub base_offset: i64,
    /// The size of the segment that was read: installing checks it is still that file.
    pub input_size_bytes: u64,
    pub path: PathBuf,
    pub output_size_bytes: u64,
}

/// Figures of one pass, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_read: usize,
    pub segments_rewritten: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// A key's identity in the offset map: 128 bits from two independently seeded SipHashes, so
/// that two different keys taken for the same (and a live record dropped) is out of reach.
struct KeyHasher(RandomState, RandomState);

impl KeyHasher {
    fn new() -> KeyHasher {
        KeyHasher(RandomState::new(), RandomState::new())
    }

    fn hash(&self, key: &[u8]) -> u128 {
        (u128::from(self.0.hash_one(key)) << 64) | u128::from(self.1.hash_one(key))
    }
}

/// Calls `f` with the bytes of each batch in the segment's first `size` bytes.
fn for_each_batch(
    path: &Path,
    size: u64,
    mut f: impl FnMut(&[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let file = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut scanner = BatchScanner::new(&file, path, 0, size, SCAN_CHUNK_BYTES);
    let mut buf = Vec::new();
    loop {
        match scanner.next(false)? {
            ScanItem::End => return Ok(()),
            ScanItem::Invalid { position, error } => {
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("at {position}: {error}"),
                })
            }
            ScanItem::Batch { position, header } => {
                buf.resize(header.size_bytes(), 0);
                file.read_exact_at(&mut buf, position)
                    .ctx(|| format!("read {} at {position}", path.display()))?;
                f(&buf)?;
            }
        }
    }
}

/// Runs the first step of a cleaning pass: see the module documentation. Returns the cleaned
/// copies (only of segments that lose something) and the pass's figures.
pub fn clean(plan: &CleanPlan, now_ms: i64) -> Result<(Vec<CleanedSegment>, CleanStats), LogError> {
    let hasher = KeyHasher::new();
    let mut stats = CleanStats::default();
    let aborted = plan.aborted_by_producer();
    // 1. The latest offset of every key, over whole segments while the map has room.
    let (latest, mapped) = map_latest_offsets(plan, &aborted, &hasher, &mut stats)?;
    let cleaning = SegmentCleaning {
        plan,
        aborted: &aborted,
        hasher: &hasher,
        latest: &latest,
        tombstone_horizon_ms: now_ms.saturating_sub(plan.delete_retention_ms.max(0)),
    };
    // 2. A cleaned copy of each mapped segment that loses records.
    let mut out = Vec::new();
    for &(base, size) in &plan.segments[..mapped] {
        let path = log_file_path(&plan.dir, base);
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut removed = 0u64;
        let mut tombstones = 0u64;
        for_each_batch(&path, size, |batch| {
            let cleaned = cleaning.clean_batch(&path, batch)?;
            removed += cleaned.records_removed;
            tombstones += cleaned.tombstones_removed;
            kept.extend(cleaned.kept);
            Ok(())
        })?;
        if removed == 0 {
            continue;
        }
        let cleaned_path = PathBuf::from(format!("{}{CLEANED_FILE_SUFFIX}", path.display()));
        let written = write_cleaned(&cleaned_path, &kept);
        let written = written.and_then(|n| verify(&cleaned_path, n).map(|()| n));
        match written {
            Ok(n) => {
                stats.segments_rewritten += 1;
                stats.bytes_written += n;
                stats.records_removed += removed;
                stats.tombstones_removed += tombstones;
                out.push(CleanedSegment {
                    base_offset: base,
                    input_size_bytes: size,
                    path: cleaned_path,
                    output_size_bytes: n,
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&cleaned_path);
                for c in &out {
                    let _ = std::fs::remove_file(&c.path);
                }
                return Err(e);
            }
        }
    }
    Ok((out, stats))
}

/// The latest offset of each key in the plan's segments, taken whole while the map has room;
/// and how many segments that covers.
fn map_latest_offsets(
    plan: &CleanPlan,
    aborted: &HashMap<i64, Vec<(i64, i64)>>,
    hasher: &KeyHasher,
    stats: &mut CleanStats,
) -> Result<(HashMap<u128, i64>, usize), LogError> {
    let mut latest: HashMap<u128, i64> = HashMap::new();
    let mut mapped = 0usize;
    for &(base, size) in &plan.segments {
        if latest.len() >= MAX_CLEANER_KEYS {
            break;
        }
        let path = log_file_path(&plan.dir, base);
        for_each_batch(&path, size, |batch| {
            if plan.is_aborted(aborted, batch) {
                return Ok(());
            }
            // A batch that cannot be decoded (say, a codec this build lacks) is kept as it
            // is and its keys are not mapped: nothing is dropped because of it.
            if let Ok(set) = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch)) {
                for r in set.records.iter().filter(|r| !r.control) {
                    if let Some(k) = &r.key {
                        latest.insert(hasher.hash(k), r.offset);
                    }
                }
            }
            Ok(())
        })?;
        stats.bytes_read += size;
        mapped += 1;
    }
    stats.segments_read = mapped;
    Ok((latest, mapped))
}

/// What the second step needs to clean one batch.
struct SegmentCleaning<'a> {
    plan: &'a CleanPlan,
    aborted: &'a HashMap<i64, Vec<(i64, i64)>>,
    hasher: &'a KeyHasher,
    latest: &'a HashMap<u128, i64>,
    /// Tombstones in batches older than this (delete.retention.ms ago) go.
    tombstone_horizon_ms: i64,
}

/// One batch after cleaning.
struct CleanedBatch {
    /// The batch to write: as it was, re-encoded with the survivors, or none when all went.
    kept: Option<Vec<u8>>,
    records_removed: u64,
    tombstones_removed: u64,
}

impl SegmentCleaning<'_> {
    fn clean_batch(&self, path: &Path, batch: &[u8]) -> Result<CleanedBatch, LogError> {
        let unchanged = || CleanedBatch {
            kept: Some(batch.to_vec()),
            records_removed: 0,
            tombstones_removed: 0,
        };
        let base_offset = batch
            .first_chunk::<8>()
            .map_or(-1, |b| i64::from_be_bytes(*b));
        if self.plan.producer_last_batches.contains(&base_offset) {
            return Ok(unchanged());
        }
        if self.plan.is_aborted(self.aborted, batch) {
            // Aborted data goes whole; its marker and index entry stay.
            let records = crate::batch::parse_header(batch, 0).map_or(0, |h| h.records_count);
            return Ok(CleanedBatch {
                kept: None,
                records_removed: u64::try_from(records).unwrap_or(0),
                tombstones_removed: 0,
            });
        }
        let Ok(set) = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch)) else {
            return Ok(unchanged());
        };
        let max_timestamp = set.records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
        let survivors: Vec<&proto_kafka::records::Record> = set
            .records
            .iter()
            .filter(|r| {
                let Some(k) = &r.key else {
                    return true;
                };
                if r.control {
                    return true;
                }
                let newest = self
                    .latest
                    .get(&self.hasher.hash(k))
                    .is_none_or(|o| *o <= r.offset);
                if !newest {
                    return false;
                }
                // The newest record of a key is kept, unless it is a tombstone whose batch is
                // older than delete.retention.ms.
                r.value.is_some() || max_timestamp >= self.tombstone_horizon_ms
            })
            .collect();
        let records_removed = (set.records.len() - survivors.len()) as u64;
        if records_removed == 0 {
            return Ok(unchanged());
        }
        let is_tombstone = |r: &&proto_kafka::records::Record| r.key.is_some() && r.value.is_none();
        let tombstones_removed = (set.records.iter().filter(is_tombstone).count()
            - survivors.iter().copied().filter(is_tombstone).count())
            as u64;
        if survivors.is_empty() {
            return Ok(CleanedBatch {
                kept: None,
                records_removed,
                tombstones_removed,
            });
        }
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            survivors.iter().copied(),
            &RecordEncodeOptions {
                version: 2,
                compression: set.compression,
            },
        )
        .map_err(|e| LogError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("re-encoding a batch: {e}"),
        })?;
        Ok(CleanedBatch {
            kept: Some(buf.to_vec()),
            records_removed,
            tombstones_removed,
        })
    }
}

fn write_cleaned(path: &Path, batches: &[Vec<u8>]) -> Result<u64, LogError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .ctx(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut n = 0u64;
    for b in batches {
        w.write_all(b).ctx(|| format!("write {}", path.display()))?;
        n += b.len() as u64;
    }
    let file = w
        .into_inner()
        .map_err(|e| LogError::io(format!("write {}", path.display()), e.into_error()))?;
    // Durable before it may replace a segment that is.
    file.sync_all()
        .ctx(|| format!("fsync {}", path.display()))?;
    Ok(n)
}

/// Reads the cleaned copy back as recovery would (headers and CRCs, to its exact end), so
/// that nothing installed can later be cut off as corrupt.
fn verify(path: &Path, size: u64) -> Result<(), LogError> {
    let file = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut scanner = BatchScanner::new(&file, path, 0, size, SCAN_CHUNK_BYTES);
    loop {
        match scanner.next(true)? {
            ScanItem::End => return Ok(()),
            ScanItem::Batch { .. } => {}
            ScanItem::Invalid { position, error } => {
                return Err(LogError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("cleaned copy invalid at {position}: {error}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proto_kafka::records::{Compression, Record, TimestampType};

    use super::*;
    use crate::config::LogConfig;
    use crate::log::Log;
    use crate::topic_partition::TopicPartition;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 2048,
            index_interval_bytes: 128,
            cleanup_delete: false,
            cleanup_compact: true,
            delete_retention_ms: 60_000,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        }
    }

    fn record(key: &str, value: Option<&str>, ts: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: ts,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    /// Appends one batch of (key, value) records; a None value is a tombstone.
    fn append(log: &mut Log, recs: &[(String, Option<String>)], ts: i64, compression: Compression) {
        let records: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut r = record(k, v.as_deref(), ts);
                r.offset = i as i64;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        log.append_as_leader(&mut buf, 0, ts).unwrap();
    }

    /// Every record of the log: (offset, key, value).
    fn read_all(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut at = log.log_start_offset();
        while at < log.log_end_offset() {
            let slice = log.read(at, 1 << 20, i64::MAX, true).unwrap();
            if slice.size == 0 {
                break;
            }
            let mut bytes = slice.read_bytes().unwrap();
            let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
            for set in sets {
                for r in set.records {
                    if r.offset >= at {
                        let s = |b: &Option<Bytes>| {
                            b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
                        };
                        out.push((r.offset, s(&r.key).unwrap_or_default(), s(&r.value)));
                    }
                    at = at.max(r.offset + 1);
                }
            }
        }
        out
    }

    /// An idempotent producer's batch of keyed records, sequences from `seq`.
    fn append_idempotent(log: &mut Log, keys: &[&str], pid: i64, epoch: i16, seq: i32, ts: i64) {
        let records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut r = record(k, Some("v"), ts);
                r.offset = i as i64;
                r.producer_id = pid;
                r.producer_epoch = epoch;
                r.sequence = seq + i as i32;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let headers = crate::producer_state::batch_headers(&buf).unwrap();
        assert_eq!(
            log.producer_state().check(&headers),
            Ok(crate::SequenceCheck::Append)
        );
        log.append_as_leader(&mut buf, 0, ts).unwrap();
    }

    #[test]
    fn a_producers_last_batch_survives_compaction_for_a_rebuild_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        for i in 0..3 {
            append_idempotent(&mut log, &["a", "b"], 5, 2, i * 2, NOW_MS);
        }
        // Newer values of every key the producer wrote, over several segments.
        for round in 0..40 {
            let recs = vec![
                ("a".to_string(), Some(format!("a{round}"))),
                ("b".to_string(), Some(format!("b{round}"))),
            ];
            append(&mut log, &recs, NOW_MS, Compression::None);
        }
        log.roll(NOW_MS).unwrap();
        let stats = pass(&mut log, NOW_MS);
        assert!(stats.records_removed > 0);
        let live = log
            .producer_state()
            .producer(5)
            .cloned()
            .expect("producer 5");
        assert_eq!(live.producer_epoch, 2);
        // After a crash, the snapshots (the newest at the active segment, above anything
        // compacted) give back exactly the live state.
        let live_all = log.producer_state().producers().clone();
        drop(log);
        let log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        assert_eq!(log.producer_state().producers(), &live_all);
        // A rebuild from the log alone (every snapshot lost) still knows the producer.
        drop(log);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        let rebuilt = log
            .producer_state()
            .producer(5)
            .cloned()
            .expect("producer 5 rebuilt");
        assert_eq!(rebuilt.producer_epoch, live.producer_epoch);
        assert_eq!(rebuilt.batches.back(), live.batches.back());
        assert_eq!(rebuilt.batches.back().map(|b| b.last_seq), Some(5));
    }

    fn pass(log: &mut Log, now_ms: i64) -> CleanStats {
        let plan = log.cleaning_plan().expect("a plan");
        let (cleaned, stats) = clean(&plan, now_ms).unwrap();
        log.install_cleaned(&plan, cleaned, now_ms).unwrap();
        stats
    }

    #[test]
    fn keeps_the_latest_of_each_key_and_old_tombstones_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        for round in 0..30 {
            let recs: Vec<(String, Option<String>)> = (0..4)
                .map(|k| (format!("k{k}"), Some(format!("v{round}-{k}"))))
                .collect();
            append(
                &mut log,
                &recs,
                NOW_MS,
                if round % 2 == 0 {
                    Compression::None
                } else {
                    Compression::Lz4
                },
            );
        }
        // k0 deleted long ago, k1 deleted just now.
        append(
            &mut log,
            &[("k0".into(), None)],
            NOW_MS - 120_000,
            Compression::None,
        );
        append(&mut log, &[("k1".into(), None)], NOW_MS, Compression::None);
        for i in 0..40 {
            append(
                &mut log,
                &[(format!("fill{i}"), Some("x".repeat(40)))],
                NOW_MS,
                Compression::None,
            );
        }
        let before = read_all(&log);
        let end = log.log_end_offset();
        assert!(log.segment_count() > 3);
        let stats = pass(&mut log, NOW_MS);
        assert!(stats.records_removed > 100, "{stats:?}");
        assert_eq!(stats.tombstones_removed, 1);
        let after = read_all(&log);
        assert_eq!(log.log_end_offset(), end);
        // Offsets keep increasing and are a subset of the original ones.
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
        let latest: BTreeMap<&str, (i64, &Option<String>)> = before
            .iter()
            .map(|(o, k, v)| (k.as_str(), (*o, v)))
            .collect();
        for (o, k, v) in &after {
            assert!(before.iter().any(|b| b.0 == *o && &b.1 == k && &b.2 == v));
        }
        // Each key's latest record survives, except k0's old tombstone.
        let kept: BTreeMap<&str, i64> = after.iter().map(|(o, k, _)| (k.as_str(), *o)).collect();
        for (k, (o, _)) in &latest {
            if *k == "k0" {
                assert!(!kept.contains_key(k));
            } else {
                assert_eq!(kept.get(k), Some(o), "key {k}");
            }
        }
        assert_eq!(after.iter().filter(|(_, k, _)| k == "k2").count(), 1);
        // The cleaned log reopens as it is.
        log.close().unwrap();
        let log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        assert_eq!(read_all(&log), after);
        assert_eq!(log.log_end_offset(), end);
    }

    #[test]
    fn nothing_to_clean_twice_and_a_vanished_segment_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), TopicPartition::new("t", 0), config()).unwrap();
        for i in 0..60 {
            append(
                &mut log,
                &[(format!("k{}", i % 3), Some("y".repeat(50)))],
                NOW_MS,
                Compression::None,
            );
        }
        assert!(log.dirty_bytes().unwrap_or(0) > 0);
        pass(&mut log, NOW_MS);
        // Everything sealed is clean now; no new segment, no plan.
        assert!(log.cleaning_plan().is_none());
        assert_eq!(log.dirty_bytes(), Some(0));
        for i in 0..60 {
            append(
                &mut log,
                &[(format!("k{}", i % 3), Some("z".repeat(50)))],
                NOW_MS,
                Compression::None,
            );
        }
        let plan = log.cleaning_plan().expect("new dirty segments");
        assert!(log.dirty_bytes().unwrap_or(0) > 0);
        let (cleaned, _) = clean(&plan, NOW_MS).unwrap();
        assert!(!cleaned.is_empty());
        // DeleteRecords removes the first segments before the copies are installed.
        let cut = log.segment_base_offsets()[2];
        log.delete_records_before(cut).unwrap();
        let before = read_all(&log);
        let paths: Vec<PathBuf> = cleaned.iter().map(|c| c.path.clone()).collect();
        log.install_cleaned(&plan, cleaned, NOW_MS).unwrap();
        assert!(
            paths.iter().all(|p| !p.exists()),
            "no .cleaned file left behind"
        );
        let after = read_all(&log);
        assert!(after.iter().all(|r| before.contains(r)));
        assert!(after.iter().all(|(o, _, _)| *o >= cut));
    }

    proptest! {
        /// Whatever the keys: the latest value of every key that was not deleted is what the
        /// compacted log holds, and nothing else of it.
        #[test]
        fn compaction_keeps_exactly_the_latest(ops in proptest::collection::vec((0u8..6, any::<bool>()), 20..120)) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = LogConfig { delete_retention_ms: 0, ..config() };
            let mut log = Log::open(dir.path(), TopicPartition::new("t", 0), cfg.clone()).unwrap();
            let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
            for (i, (k, delete)) in ops.iter().enumerate() {
                let key = format!("key-{k}");
                let value = (!delete).then(|| format!("value-{i}-{}", "p".repeat(30)));
                append(&mut log, &[(key.clone(), value.clone())], NOW_MS - 10, Compression::None);
                expected.insert(key, value);
            }
            // A last batch in the active segment so that everything before is sealed.
            log.roll(NOW_MS).unwrap();
            append(&mut log, &[("tail".into(), Some("t".into()))], NOW_MS, Compression::None);
            expected.insert("tail".into(), Some("t".into()));
            if let Some(plan) = log.cleaning_plan() {
                let (cleaned, _) = clean(&plan, NOW_MS).unwrap();
                log.install_cleaned(&plan, cleaned, NOW_MS).unwrap();
            }
            let after = read_all(&log);
            let got: BTreeMap<String, Option<String>> = after.iter().map(|(_, k, v)| (k.clone(), v.clone())).collect();
            let live: BTreeMap<String, Option<String>> = expected.into_iter().filter(|(_, v)| v.is_some()).collect();
            prop_assert_eq!(got, live);
            prop_assert_eq!(after.len(), after.iter().map(|(_, k, _)| k).collect::<std::collections::BTreeSet<_>>().len());
        }
    }

    /// A transactional batch of (key, value) records from producer `pid`, epoch 0.
    fn append_txn(log: &mut Log, recs: &[(&str, &str)], pid: i64, seq: i32, ts: i64) {
        let records: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut r = record(k, Some(v), ts);
                r.offset = i as i64;
                r.producer_id = pid;
                r.producer_epoch = 0;
                r.sequence = seq + i as i32;
                r.transactional = true;
                r
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let headers = crate::producer_state::batch_headers(&buf).unwrap();
        assert_eq!(
            log.producer_state().check(&headers),
            Ok(crate::SequenceCheck::Append)
        );
        log.append_as_leader(&mut buf, 0, ts).unwrap();
    }

    /// Kafka's cleaner with transactions: aborted data goes (and never shadows a committed
    /// record of its key), markers stay, and nothing from the first open transaction on is
    /// cleaned.
    #[test]
    fn aborted_data_goes_committed_data_and_markers_stay_open_transactions_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), TopicPartition::new("c", 0), config()).unwrap();
        append_txn(&mut log, &[("k", "committed")], 1, 0, NOW_MS); // 0
        log.append_marker(1, 0, 0, true, 0, NOW_MS).unwrap(); // 1
        append_txn(
            &mut log,
            &[("k", "aborted"), ("x", "aborted")],
            2,
            0,
            NOW_MS,
        ); // 2, 3
        log.append_marker(2, 0, 0, false, 0, NOW_MS).unwrap(); // 4
        append_txn(&mut log, &[("z", "later")], 1, 1, NOW_MS); // 5
        log.append_marker(1, 0, 0, true, 0, NOW_MS).unwrap(); // 6
        append_txn(&mut log, &[("y", "later")], 2, 2, NOW_MS); // 7
        log.append_marker(2, 0, 0, true, 0, NOW_MS).unwrap(); // 8
        log.roll(NOW_MS).unwrap();
        append_txn(&mut log, &[("k", "open")], 3, 0, NOW_MS); // 9, never ended
        append_txn(
            &mut log,
            &[("w", "in the open one's segment")],
            4,
            0,
            NOW_MS,
        ); // 10
        log.append_marker(4, 0, 0, false, 0, NOW_MS).unwrap(); // 11
        log.roll(NOW_MS).unwrap();
        let target = log.flush_target();
        target.sync().unwrap();
        log.mark_flushed_target(&target).unwrap();
        let plan = log.cleaning_plan().unwrap();
        assert_eq!(
            plan.segments.len(),
            1,
            "the open transaction's segment waits"
        );
        assert_eq!(plan.clean_to, 9);
        let (cleaned, stats) = clean(&plan, NOW_MS).unwrap();
        assert_eq!(stats.records_removed, 2, "the aborted batch, whole");
        log.install_cleaned(&plan, cleaned, NOW_MS).unwrap();
        let all = read_all(&log);
        let offsets: Vec<i64> = all.iter().map(|r| r.0).collect();
        assert_eq!(offsets, vec![0, 1, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(all[0].2.as_deref(), Some("committed"));
        assert!(all.iter().all(|r| r.2.as_deref() != Some("aborted")));
        // The index still names the abort, for consumers reading from before it.
        assert_eq!(log.all_aborted_transactions().len(), 2);
    }
}
