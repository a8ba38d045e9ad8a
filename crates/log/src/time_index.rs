//! Sparse timestamp → offset index of one segment (Kafka's `TimeIndex`, the `.timeindex`
//! file), over the shared [`Index`] base.
//!
//! Entries are 12 bytes: timestamp i64 BE, relative offset u32 BE. An entry (T, O) means "the
//! largest batch maxTimestamp seen so far is T, first reached by the batch starting at O";
//! timestamps strictly increase, offsets never decrease.

use std::path::Path;

use crate::error::LogError;
use crate::index::{Index, IndexEntry, IndexLoad};

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

/// An entry as stored: (timestamp, relative offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE_BYTES: usize = TIME_INDEX_ENTRY_SIZE_BYTES;
    const KIND: &'static str = "time index";
    type Absolute = TimestampOffset;

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            timestamp: i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn precedes(&self, next: &Self) -> bool {
        self.timestamp < next.timestamp && self.relative_offset <= next.relative_offset
    }

    fn to_absolute(&self, base_offset: i64) -> TimestampOffset {
        TimestampOffset {
            timestamp: self.timestamp,
            offset: base_offset + i64::from(self.relative_offset),
        }
    }
}

/// The time index: the shared base with timestamp entries.
pub type TimeIndex = Index<TimeEntry>;

impl Index<TimeEntry> {
    /// Reads an existing index. Structural problems yield `Rebuild`, not an error.
    pub(crate) fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
    ) -> Result<IndexLoad<Self>, LogError> {
        Index::load_with(path, base_offset, max_index_bytes, |_| None)
    }

    /// Appends (timestamp, offset) in memory if the timestamp is larger than the last entry's
    /// (Kafka's maybeAppend). `skip_full_check` lets the final entry of a sealed segment in.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64, skip_full_check: bool) {
        if !skip_full_check && self.is_full() {
            return;
        }
        // Both checks below are reachable with damaged batch headers (a sealed segment's are
        // read without their CRC): the entry is dropped, the index just gets sparser.
        let Some(relative_offset) = self.relative(offset) else {
            tracing::warn!(index = %self.path().display(), offset, "time index entry out of the segment's range; not added");
            return;
        };
        if let Some(last) = self.last() {
            if timestamp <= last.timestamp {
                return;
            }
            if relative_offset < last.relative_offset {
                tracing::warn!(index = %self.path().display(), offset, timestamp, "time index entry would go backwards (a damaged batch timestamp?); not added");
                return;
            }
        }
        self.push(TimeEntry {
            timestamp,
            relative_offset,
        });
    }

    /// The entry with the largest timestamp <= `target`, or None. Batches before that entry's
    /// offset all have maxTimestamp < the entry's timestamp, so a search for the first batch
    /// with maxTimestamp >= target can start at the entry's offset.
    pub fn lookup(&self, target: i64) -> Option<TimestampOffset> {
        self.largest_lower_bound(|e| e.timestamp, target)
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
