//! Sparse offset → file position index of one segment (Kafka's `.index` file).
//!
//! Entries are 8 bytes: relative offset u32 BE, position u32 BE. An entry maps the base offset of
//! a batch to the byte position where that batch starts. The entries live in a `Vec`; the file is
//! read back at open and written by [`OffsetIndex::persist`], not at every append, so that no
//! descriptor stays open for it (the broker hosts thousands of partitions within one open-file
//! limit) and a flush does not have to sync it. A file that lags behind the log is still a
//! valid, sparser index: recovery scans the log from its last entry.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, LogError};

pub const OFFSET_INDEX_ENTRY_SIZE_BYTES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u32,
}

/// Outcome of reading an index file back.
pub(crate) enum IndexLoad<T> {
    Loaded(T),
    /// Missing, mis-sized or inconsistent: the segment must rebuild it.
    Rebuild(String),
}

#[derive(Debug)]
pub struct OffsetIndex {
    path: PathBuf,
    base_offset: i64,
    /// (relative offset, position)
    entries: Vec<(u32, u32)>,
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
        .ctx(|| format!("open index {}", path.display()))
}

impl OffsetIndex {
    /// Creates an empty index, discarding any existing file content.
    pub fn create(path: &Path, base_offset: i64, max_index_bytes: u64) -> Result<Self, LogError> {
        // The (empty) file exists from the start: a missing index means a damaged segment.
        open_rw(path, true)?;
        Ok(OffsetIndex {
            path: path.to_path_buf(),
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            max_entries: (max_index_bytes / OFFSET_INDEX_ENTRY_SIZE_BYTES as u64) as usize,
        })
    }

    /// Reads an existing index. Structural problems yield `Rebuild`, not an error.
    /// `log_size_bytes` bounds the positions entries may point at.
    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
        log_size_bytes: u64,
    ) -> Result<IndexLoad<Self>, LogError> {
        if !path.exists() {
            return Ok(IndexLoad::Rebuild("missing".into()));
        }
        let bytes = std::fs::read(path).ctx(|| format!("read index {}", path.display()))?;
        if bytes.len() % OFFSET_INDEX_ENTRY_SIZE_BYTES != 0 {
            return Ok(IndexLoad::Rebuild(format!(
                "size {} is not a multiple of {OFFSET_INDEX_ENTRY_SIZE_BYTES}",
                bytes.len()
            )));
        }
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_SIZE_BYTES);
        for chunk in bytes.chunks_exact(OFFSET_INDEX_ENTRY_SIZE_BYTES) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if let Some(&(prev_rel, prev_pos)) = entries.last() {
                if rel <= prev_rel || pos <= prev_pos {
                    return Ok(IndexLoad::Rebuild(format!(
                        "entries out of order: ({prev_rel}, {prev_pos}) then ({rel}, {pos})"
                    )));
                }
            }
            if rel > i32::MAX as u32 || u64::from(pos) >= log_size_bytes {
                return Ok(IndexLoad::Rebuild(format!(
                    "entry ({rel}, {pos}) outside the segment (log size {log_size_bytes})"
                )));
            }
            entries.push((rel, pos));
        }
        Ok(IndexLoad::Loaded(OffsetIndex {
            path: path.to_path_buf(),
            base_offset,
            persisted: entries.len(),
            entries,
            max_entries: (max_index_bytes / OFFSET_INDEX_ENTRY_SIZE_BYTES as u64) as usize,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries not written to the file yet.
    pub fn unpersisted(&self) -> usize {
        self.entries.len() - self.persisted
    }

    /// Writes the entries the file lacks, then fdatasyncs it if `sync`. Opens the file only
    /// when there is something to write.
    pub fn persist(&mut self, sync: bool) -> Result<(), LogError> {
        if self.persisted == self.entries.len() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(self.unpersisted() * OFFSET_INDEX_ENTRY_SIZE_BYTES);
        for &(rel, position) in &self.entries[self.persisted..] {
            buf.extend_from_slice(&rel.to_be_bytes());
            buf.extend_from_slice(&position.to_be_bytes());
        }
        let file = open_rw(&self.path, false)?;
        let at = (self.persisted * OFFSET_INDEX_ENTRY_SIZE_BYTES) as u64;
        file.write_all_at(&buf, at)
            .ctx(|| format!("write index {}", self.path.display()))?;
        if sync {
            file.sync_data()
                .ctx(|| format!("fsync index {}", self.path.display()))?;
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

    pub fn size_bytes(&self) -> u64 {
        (self.entries.len() * OFFSET_INDEX_ENTRY_SIZE_BYTES) as u64
    }

    fn entry(&self, i: usize) -> OffsetPosition {
        let (rel, position) = self.entries[i];
        OffsetPosition {
            offset: self.base_offset + i64::from(rel),
            position,
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = OffsetPosition> + '_ {
        (0..self.entries.len()).map(|i| self.entry(i))
    }

    pub fn last_entry(&self) -> Option<OffsetPosition> {
        (!self.entries.is_empty()).then(|| self.entry(self.entries.len() - 1))
    }

    /// Appends an entry (in memory; see [`OffsetIndex::persist`]); it must be strictly beyond
    /// the last one in both offset and position (otherwise it is skipped: the index is only a
    /// hint).
    pub fn append(&mut self, offset: i64, position: u32) {
        let rel = offset - self.base_offset;
        debug_assert!(
            (0..=i64::from(i32::MAX)).contains(&rel),
            "relative offset {rel}"
        );
        if !(0..=i64::from(i32::MAX)).contains(&rel) {
            return;
        }
        let rel = rel as u32;
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if rel <= last_rel || position <= last_pos {
                debug_assert!(false, "non-monotonic index append");
                return;
            }
        }
        self.entries.push((rel, position));
    }

    /// The entry with the largest offset <= `target`, or (base offset, 0) if none: the batch
    /// holding `target` starts at or after the returned position.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        let rel = target - self.base_offset;
        if rel < 0 {
            return OffsetPosition {
                offset: self.base_offset,
                position: 0,
            };
        }
        let rel = rel.min(i64::from(u32::MAX)) as u32;
        let n = self.entries.partition_point(|&(r, _)| r <= rel);
        if n == 0 {
            OffsetPosition {
                offset: self.base_offset,
                position: 0,
            }
        } else {
            self.entry(n - 1)
        }
    }

    /// Drops entries with offset >= `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) -> Result<(), LogError> {
        let rel = offset - self.base_offset;
        let keep = if rel <= 0 {
            0
        } else {
            let rel = rel.min(i64::from(u32::MAX)) as u32;
            self.entries.partition_point(|&(r, _)| r < rel)
        };
        self.truncate_entries(keep)
    }

    pub fn reset(&mut self) -> Result<(), LogError> {
        self.truncate_entries(0)
    }

    /// Cuts the file at once when it holds dropped entries (truncations are rare), so it never
    /// describes data the log no longer has.
    fn truncate_entries(&mut self, keep: usize) -> Result<(), LogError> {
        if keep >= self.entries.len() {
            return Ok(());
        }
        if keep < self.persisted {
            open_rw(&self.path, false)?
                .set_len((keep * OFFSET_INDEX_ENTRY_SIZE_BYTES) as u64)
                .ctx(|| format!("truncate index {}", self.path.display()))?;
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
    fn lookup_append_truncate_and_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&path, 100, 1024).unwrap();
        assert_eq!(
            idx.lookup(150),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        for i in 1..=10u32 {
            idx.append(100 + i64::from(i) * 10, i * 1000);
        }
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "not written yet"
        );
        assert_eq!(idx.unpersisted(), 10);
        idx.persist(false).unwrap();
        assert_eq!(idx.unpersisted(), 0);
        assert_eq!(idx.lookup(99).position, 0);
        assert_eq!(idx.lookup(109).position, 0);
        assert_eq!(
            idx.lookup(110),
            OffsetPosition {
                offset: 110,
                position: 1000
            }
        );
        assert_eq!(
            idx.lookup(155),
            OffsetPosition {
                offset: 150,
                position: 5000
            }
        );
        assert_eq!(idx.lookup(i64::MAX).position, 10_000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);

        idx.truncate_to_offset(150).unwrap();
        assert_eq!(
            idx.last_entry(),
            Some(OffsetPosition {
                offset: 140,
                position: 4000
            })
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
        drop(idx);

        let IndexLoad::Loaded(idx) = OffsetIndex::load(&path, 100, 1024, 1 << 20).unwrap() else {
            panic!("should load");
        };
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.lookup(145).position, 4000);
        // An entry pointing past the end of the log is inconsistent.
        assert!(matches!(
            OffsetIndex::load(&path, 100, 1024, 4000).unwrap(),
            IndexLoad::Rebuild(_)
        ));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all_at(&[1, 2, 3], 32)
            .unwrap();
        assert!(matches!(
            OffsetIndex::load(&path, 100, 1024, 1 << 20).unwrap(),
            IndexLoad::Rebuild(_)
        ));
    }

    /// The file always holds a prefix of the entries: a truncation below what was written cuts
    /// it at once, and the next persist continues from there.
    #[test]
    fn persist_after_truncation_keeps_file_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.index");
        let mut idx = OffsetIndex::create(&path, 0, 1024).unwrap();
        for i in 1..=4u32 {
            idx.append(i64::from(i) * 10, i * 100);
        }
        idx.persist(true).unwrap();
        idx.truncate_to_offset(20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        idx.append(25, 250);
        idx.append(35, 350);
        idx.truncate_to_offset(35).unwrap(); // only in memory
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        idx.persist(false).unwrap();
        let IndexLoad::Loaded(back) = OffsetIndex::load(&path, 0, 1024, 1 << 20).unwrap() else {
            panic!("should load");
        };
        let entries: Vec<_> = back.entries().map(|e| (e.offset, e.position)).collect();
        assert_eq!(entries, [(10, 100), (25, 250)]);
    }

    #[test]
    fn full_when_max_entries_reached() {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx = OffsetIndex::create(&tmp.path().join("0.index"), 0, 20).unwrap();
        idx.append(1, 10);
        assert!(!idx.is_full());
        idx.append(2, 20);
        assert!(idx.is_full());
    }
}
