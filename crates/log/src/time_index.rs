//! Sparse timestamp → offset index of one segment (Kafka's `.timeindex` file).
//!
//! Entries are 12 bytes: timestamp i64 BE, relative offset u32 BE. An entry (T, O) means "the
//! largest batch maxTimestamp seen so far is T, first reached by the batch starting at O";
//! timestamps strictly increase. Kept in a `Vec`, written to the file by
//! [`TimeIndex::persist`] (as the offset index: no descriptor held, no sync per flush).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, LogError};
use crate::offset_index::IndexLoad;

pub const TIME_INDEX_ENTRY_SIZE_BYTES: usize = 12;

/// Answer to a timestamp lookup (ListOffsets). Batch-granular: `offset` is the base offset of
/// the first batch whose maxTimestamp >= the target, never past the true record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

#[derive(Debug)]
pub struct TimeIndex {
    path: PathBuf,
    base_offset: i64,
    /// (timestamp, relative offset)
    entries: Vec<(i64, u32)>,
    /// How many of `entries` the file holds.
    persisted: usize,
    max_entries: usize,
}

fn open_rw(path: &Path, truncate: bool) -> Result<std::fs::File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .ctx(|| format!("open time index {}", path.display()))
}

impl TimeIndex {
    pub fn create(path: &Path, base_offset: i64, max_index_bytes: u64) -> Result<Self, LogError> {
        open_rw(path, true)?;
        Ok(TimeIndex {
            path: path.to_path_buf(),
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            max_entries: (max_index_bytes / TIME_INDEX_ENTRY_SIZE_BYTES as u64) as usize,
        })
    }

    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
    ) -> Result<IndexLoad<Self>, LogError> {
        if !path.exists() {
            return Ok(IndexLoad::Rebuild("missing".into()));
        }
        let bytes = std::fs::read(path).ctx(|| format!("read time index {}", path.display()))?;
        if bytes.len() % TIME_INDEX_ENTRY_SIZE_BYTES != 0 {
            return Ok(IndexLoad::Rebuild(format!(
                "size {} is not a multiple of {TIME_INDEX_ENTRY_SIZE_BYTES}",
                bytes.len()
            )));
        }
        let mut entries: Vec<(i64, u32)> =
            Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_SIZE_BYTES);
        for c in bytes.chunks_exact(TIME_INDEX_ENTRY_SIZE_BYTES) {
            let ts = i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(&(prev_ts, prev_rel)) = entries.last() {
                if ts <= prev_ts || rel < prev_rel {
                    return Ok(IndexLoad::Rebuild(format!(
                        "entries out of order: ({prev_ts}, {prev_rel}) then ({ts}, {rel})"
                    )));
                }
            }
            if rel > i32::MAX as u32 {
                return Ok(IndexLoad::Rebuild(format!(
                    "relative offset {rel} out of range"
                )));
            }
            entries.push((ts, rel));
        }
        Ok(IndexLoad::Loaded(TimeIndex {
            path: path.to_path_buf(),
            base_offset,
            persisted: entries.len(),
            entries,
            max_entries: (max_index_bytes / TIME_INDEX_ENTRY_SIZE_BYTES as u64) as usize,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries not written to the file yet.
    pub fn unpersisted(&self) -> usize {
        self.entries.len() - self.persisted
    }

    /// Writes the entries the file lacks, then fdatasyncs it if `sync`.
    pub fn persist(&mut self, sync: bool) -> Result<(), LogError> {
        if self.persisted == self.entries.len() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.unpersisted() * TIME_INDEX_ENTRY_SIZE_BYTES);
        for &(timestamp, rel) in &self.entries[self.persisted..] {
            buf.extend_from_slice(&timestamp.to_be_bytes());
            buf.extend_from_slice(&rel.to_be_bytes());
        }
        let file = open_rw(&self.path, false)?;
        let at = (self.persisted * TIME_INDEX_ENTRY_SIZE_BYTES) as u64;
        file.write_all_at(&buf, at)
            .ctx(|| format!("write time index {}", self.path.display()))?;
        if sync {
            file.sync_data()
                .ctx(|| format!("fsync time index {}", self.path.display()))?;
        }
        self.persisted = self.entries.len();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    fn entry(&self, i: usize) -> TimestampOffset {
        let (timestamp, rel) = self.entries[i];
        TimestampOffset {
            timestamp,
            offset: self.base_offset + i64::from(rel),
        }
    }

    pub fn last_entry(&self) -> Option<TimestampOffset> {
        (!self.entries.is_empty()).then(|| self.entry(self.entries.len() - 1))
    }

    /// Appends (timestamp, offset) in memory if the timestamp is larger than the last entry's
    /// (Kafka's maybeAppend). `skip_full_check` lets the final entry of a sealed segment in.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64, skip_full_check: bool) {
        if !skip_full_check && self.is_full() {
            return;
        }
        let rel = offset - self.base_offset;
        // Both checks below are reachable with damaged batch headers (a sealed segment's are
        // read without their CRC): the entry is dropped, the index just gets sparser.
        if !(0..=i64::from(i32::MAX)).contains(&rel) {
            tracing::warn!(index = %self.path.display(), offset, "time index entry out of the segment's range; not added");
            return;
        }
        let rel = rel as u32;
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if timestamp <= last_ts {
                return;
            }
            if rel < last_rel {
                tracing::warn!(index = %self.path.display(), offset, timestamp, "time index entry would go backwards (a damaged batch timestamp?); not added");
                return;
            }
        }
        self.entries.push((timestamp, rel));
    }

    /// The entry with the largest timestamp <= `target`, or None. Batches before that entry's
    /// offset all have maxTimestamp < the entry's timestamp, so a search for the first batch
    /// with maxTimestamp >= target can start at the entry's offset.
    pub fn lookup(&self, target: i64) -> Option<TimestampOffset> {
        let n = self.entries.partition_point(|&(ts, _)| ts <= target);
        (n > 0).then(|| self.entry(n - 1))
    }

    /// Drops entries with offset >= `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) -> Result<(), LogError> {
        let rel = offset - self.base_offset;
        let keep = if rel <= 0 {
            0
        } else {
            let rel = rel.min(i64::from(u32::MAX)) as u32;
            self.entries.partition_point(|&(_, r)| r < rel)
        };
        self.truncate_entries(keep)
    }

    pub fn reset(&mut self) -> Result<(), LogError> {
        self.truncate_entries(0)
    }

    /// As the offset index: the file is cut at once if it holds dropped entries.
    fn truncate_entries(&mut self, keep: usize) -> Result<(), LogError> {
        if keep >= self.entries.len() {
            return Ok(());
        }
        if keep < self.persisted {
            open_rw(&self.path, false)?
                .set_len((keep * TIME_INDEX_ENTRY_SIZE_BYTES) as u64)
                .ctx(|| format!("truncate time index {}", self.path.display()))?;
            self.persisted = keep;
        }
        self.entries.truncate(keep);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_only_growing_timestamps_and_looks_up() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.timeindex");
        let mut idx = TimeIndex::create(&path, 50, 1200).unwrap();
        assert_eq!(idx.lookup(1_000), None);
        idx.maybe_append(100, 50, false);
        idx.maybe_append(100, 55, false); // not larger: skipped
        idx.maybe_append(90, 56, false); // smaller: skipped
        idx.maybe_append(200, 60, false);
        idx.maybe_append(300, 70, false);
        assert_eq!(idx.len(), 3);
        idx.persist(true).unwrap();
        assert_eq!(idx.lookup(99), None);
        assert_eq!(
            idx.lookup(100),
            Some(TimestampOffset {
                timestamp: 100,
                offset: 50
            })
        );
        assert_eq!(
            idx.lookup(250),
            Some(TimestampOffset {
                timestamp: 200,
                offset: 60
            })
        );
        assert_eq!(idx.lookup(i64::MAX).unwrap().offset, 70);
        idx.truncate_to_offset(70).unwrap();
        assert_eq!(
            idx.last_entry(),
            Some(TimestampOffset {
                timestamp: 200,
                offset: 60
            })
        );
        drop(idx);
        let IndexLoad::Loaded(idx) = TimeIndex::load(&path, 50, 1200).unwrap() else {
            panic!("should load");
        };
        assert_eq!(idx.len(), 2);
        std::fs::write(&path, [0u8; 13]).unwrap();
        assert!(matches!(
            TimeIndex::load(&path, 50, 1200).unwrap(),
            IndexLoad::Rebuild(_)
        ));
    }
}
