//! Sparse offset → file position index of one segment (Kafka's `OffsetIndex`, the `.index`
//! file), over the shared [`Index`] base.
//!
//! Entries are 8 bytes: relative offset u32 BE, position u32 BE. An entry maps the base offset of
//! a batch to the byte position where that batch starts; both strictly increase.

use std::path::Path;

use crate::error::LogError;
pub(crate) use crate::index::IndexLoad;
use crate::index::{Index, IndexEntry};

pub const OFFSET_INDEX_ENTRY_SIZE_BYTES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u32,
}

/// An entry as stored: (relative offset, position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE_BYTES: usize = OFFSET_INDEX_ENTRY_SIZE_BYTES;
    const KIND: &'static str = "index";
    type Absolute = OffsetPosition;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    fn precedes(&self, next: &Self) -> bool {
        self.relative_offset < next.relative_offset && self.position < next.position
    }

    fn to_absolute(&self, base_offset: i64) -> OffsetPosition {
        OffsetPosition {
            offset: base_offset + i64::from(self.relative_offset),
            position: self.position,
        }
    }
}

/// The offset index: the shared base with offset entries.
pub type OffsetIndex = Index<OffsetEntry>;

impl Index<OffsetEntry> {
    /// Reads an existing index. Structural problems yield `Rebuild`, not an error.
    /// `log_size_bytes` bounds the positions entries may point at.
    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
        log_size_bytes: u64,
    ) -> Result<IndexLoad<Self>, LogError> {
        Index::load_with(path, base_offset, max_index_bytes, |e: &OffsetEntry| {
            (u64::from(e.position) >= log_size_bytes)
                .then(|| format!("entry {e:?} outside the segment (log size {log_size_bytes})"))
        })
    }

    /// Appends an entry (in memory; see [`Index::persist`]); it must be strictly beyond the
    /// last one in both offset and position (otherwise it is skipped: the index is only a
    /// hint, and the segment never asks for one that is not).
    pub fn append(&mut self, offset: i64, position: u32) {
        let Some(relative_offset) = self.relative(offset) else {
            debug_assert!(false, "offset {offset} outside the segment's range");
            return;
        };
        let entry = OffsetEntry {
            relative_offset,
            position,
        };
        if self.last().is_some_and(|last| !last.precedes(&entry)) {
            debug_assert!(false, "non-monotonic index append");
            return;
        }
        self.push(entry);
    }

    /// The entry with the largest offset <= `target`, or (base offset, 0) if none: the batch
    /// holding `target` starts at or after the returned position.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        let start = OffsetPosition {
            offset: self.base_offset(),
            position: 0,
        };
        let rel = target - self.base_offset();
        if rel < 0 {
            return start;
        }
        let rel = rel.min(i64::from(u32::MAX)) as u32;
        self.largest_lower_bound(|e| e.relative_offset, rel)
            .unwrap_or(start)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

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
