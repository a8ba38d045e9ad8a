//! The part the offset index and the time index share (Kafka's `AbstractIndex`): a sparse,
//! ordered run of fixed-size entries, each naming an offset relative to the segment's base,
//! kept in memory and written to its file as a prefix that only grows until a truncation cuts
//! it.
//!
//! Unlike Kafka's, the file is not memory-mapped and not preallocated: entries live in a `Vec`,
//! are read back whole at open and written by [`Index::persist`] (with the recovery-point
//! checkpoint, at a roll and at close), so that no descriptor stays open per index (the broker
//! hosts thousands of partitions within one open-file limit) and a flush does not sync it. A
//! file that lags behind the log is still a valid, sparser index: recovery scans the log from
//! its last entry. What Kafka's mmap size bounds (`segment.index.bytes`) is the entry capacity
//! here: a full index makes the segment roll.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, LogError};
use crate::files::open_read_write;

/// Relative offsets are stored as u32 but, as Kafka's ints, never exceed `i32::MAX`.
pub(crate) const MAX_RELATIVE_OFFSET: u32 = i32::MAX as u32;

/// One entry's place in its file: its fixed size and its big-endian codec.
pub trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE_BYTES: usize;
    /// What the file is called in messages ("index", "time index").
    const KIND: &'static str;
    /// The entry as callers see it, with an absolute offset.
    type Absolute;

    /// Offset of the entry minus the segment's base offset.
    fn relative_offset(&self) -> u32;
    fn encode(&self, out: &mut Vec<u8>);
    /// `bytes` holds exactly `SIZE_BYTES`.
    fn decode(bytes: &[u8]) -> Self;
    /// Whether `next` may follow `self` in the index: the order every entry keeps.
    fn precedes(&self, next: &Self) -> bool;
    fn to_absolute(&self, base_offset: i64) -> Self::Absolute;
}

/// Outcome of reading an index file back.
pub(crate) enum IndexLoad<T> {
    Loaded(T),
    /// Missing, mis-sized or inconsistent: the segment must rebuild it.
    Rebuild(String),
}

/// The shared base: entries of one kind for the segment starting at `base_offset`. The kinds
/// ([`crate::offset_index::OffsetIndex`], [`crate::time_index::TimeIndex`]) are this type with
/// their entry, plus their own append and lookup.
#[derive(Debug)]
pub struct Index<E> {
    path: PathBuf,
    base_offset: i64,
    entries: Vec<E>,
    /// How many of `entries` the file holds (always a prefix).
    persisted: usize,
    max_entries: usize,
}

fn max_entries_for<E: IndexEntry>(max_index_bytes: u64) -> usize {
    usize::try_from(max_index_bytes / E::SIZE_BYTES as u64).unwrap_or(usize::MAX)
}

impl<E: IndexEntry> Index<E> {
    fn open_rw(path: &Path, truncate: bool) -> Result<std::fs::File, LogError> {
        open_read_write(path, truncate).ctx(|| format!("open {} {}", E::KIND, path.display()))
    }

    /// Creates an empty index, discarding any existing file content. The (empty) file exists
    /// from the start: a missing index means a damaged segment.
    pub fn create(path: &Path, base_offset: i64, max_index_bytes: u64) -> Result<Self, LogError> {
        Self::open_rw(path, true)?;
        Ok(Index {
            path: path.to_path_buf(),
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            max_entries: max_entries_for::<E>(max_index_bytes),
        })
    }

    /// Reads an existing index back (Kafka's sanity check). Structural problems, and entries
    /// `reject` finds fault with, yield `Rebuild`, not an error: only I/O errors are errors.
    pub(crate) fn load_with(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
        reject: impl Fn(&E) -> Option<String>,
    ) -> Result<IndexLoad<Self>, LogError> {
        if !path.exists() {
            return Ok(IndexLoad::Rebuild("missing".into()));
        }
        let bytes = std::fs::read(path).ctx(|| format!("read {} {}", E::KIND, path.display()))?;
        if bytes.len() % E::SIZE_BYTES != 0 {
            return Ok(IndexLoad::Rebuild(format!(
                "size {} is not a multiple of {}",
                bytes.len(),
                E::SIZE_BYTES
            )));
        }
        // The file's own length bounds this allocation (it was read whole above).
        let mut entries: Vec<E> = Vec::with_capacity(bytes.len() / E::SIZE_BYTES);
        for chunk in bytes.chunks_exact(E::SIZE_BYTES) {
            let entry = E::decode(chunk);
            if let Some(prev) = entries.last() {
                if !prev.precedes(&entry) {
                    return Ok(IndexLoad::Rebuild(format!(
                        "entries out of order: {prev:?} then {entry:?}"
                    )));
                }
            }
            if entry.relative_offset() > MAX_RELATIVE_OFFSET {
                return Ok(IndexLoad::Rebuild(format!(
                    "relative offset {} out of range in {entry:?}",
                    entry.relative_offset()
                )));
            }
            if let Some(reason) = reject(&entry) {
                return Ok(IndexLoad::Rebuild(reason));
            }
            entries.push(entry);
        }
        Ok(IndexLoad::Loaded(Index {
            path: path.to_path_buf(),
            base_offset,
            persisted: entries.len(),
            entries,
            max_entries: max_entries_for::<E>(max_index_bytes),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
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
        let mut buf = Vec::with_capacity(self.unpersisted() * E::SIZE_BYTES);
        for entry in &self.entries[self.persisted..] {
            entry.encode(&mut buf);
        }
        debug_assert_eq!(buf.len(), self.unpersisted() * E::SIZE_BYTES);
        let file = Self::open_rw(&self.path, false)?;
        let at = (self.persisted * E::SIZE_BYTES) as u64;
        file.write_all_at(&buf, at)
            .ctx(|| format!("write {} {}", E::KIND, self.path.display()))?;
        if sync {
            file.sync_data()
                .ctx(|| format!("fsync {} {}", E::KIND, self.path.display()))?;
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

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// What the entries take on disk once persisted.
    pub fn size_bytes(&self) -> u64 {
        (self.entries.len() * E::SIZE_BYTES) as u64
    }

    /// Changes the capacity to what `max_index_bytes` holds (Kafka's `resize`, for a change of
    /// `segment.index.bytes`), never below the entries already held: the file has no
    /// preallocated tail to grow or cut. Returns whether the capacity changed.
    pub fn resize(&mut self, max_index_bytes: u64) -> bool {
        let max_entries = max_entries_for::<E>(max_index_bytes).max(self.entries.len());
        let changed = max_entries != self.max_entries;
        self.max_entries = max_entries;
        changed
    }

    pub fn entries(&self) -> impl Iterator<Item = E::Absolute> + '_ {
        self.entries.iter().map(|e| e.to_absolute(self.base_offset))
    }

    pub fn last_entry(&self) -> Option<E::Absolute> {
        self.entries.last().map(|e| e.to_absolute(self.base_offset))
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Relative form of `offset`, if the segment can address it.
    pub(crate) fn relative(&self, offset: i64) -> Option<u32> {
        let rel = offset.checked_sub(self.base_offset)?;
        u32::try_from(rel)
            .ok()
            .filter(|r| *r <= MAX_RELATIVE_OFFSET)
    }

    /// Appends an entry in memory (see [`Index::persist`]). Callers filter what may not go in;
    /// an entry out of order here would make lookups point past the data they look for, so it
    /// is a bug, not a damaged input.
    pub(crate) fn push(&mut self, entry: E) {
        assert!(
            entry.relative_offset() <= MAX_RELATIVE_OFFSET,
            "{} {}: relative offset of {entry:?} out of range",
            E::KIND,
            self.path.display()
        );
        if let Some(last) = self.entries.last() {
            assert!(
                last.precedes(&entry),
                "{} {}: {entry:?} does not follow {last:?}",
                E::KIND,
                self.path.display()
            );
        }
        self.entries.push(entry);
    }

    /// The last entry whose key is <= `target` (Kafka's `largestLowerBoundSlotFor`); keys must
    /// not decrease along the entries.
    pub(crate) fn largest_lower_bound<K: Ord>(
        &self,
        key: impl Fn(&E) -> K,
        target: K,
    ) -> Option<E::Absolute> {
        let n = self.entries.partition_point(|e| key(e) <= target);
        n.checked_sub(1)
            .map(|i| self.entries[i].to_absolute(self.base_offset))
    }

    /// Drops entries with offset >= `offset` (Kafka's `truncateTo`).
    pub fn truncate_to_offset(&mut self, offset: i64) -> Result<(), LogError> {
        let rel = offset - self.base_offset;
        let keep = if rel <= 0 {
            0
        } else {
            let rel = rel.min(i64::from(u32::MAX)) as u32;
            self.entries.partition_point(|e| e.relative_offset() < rel)
        };
        self.truncate_entries(keep)
    }

    /// Drops every entry.
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
            Self::open_rw(&self.path, false)?
                .set_len((keep * E::SIZE_BYTES) as u64)
                .ctx(|| format!("truncate {} {}", E::KIND, self.path.display()))?;
            self.persisted = keep;
        }
        self.entries.truncate(keep);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::offset_index::{OffsetEntry, OffsetIndex, OffsetPosition};
    use crate::time_index::{TimeEntry, TimeIndex, TimestampOffset};

    fn loaded<T>(load: IndexLoad<T>) -> T {
        match load {
            IndexLoad::Loaded(t) => t,
            IndexLoad::Rebuild(reason) => panic!("should load, got rebuild: {reason}"),
        }
    }

    #[test]
    fn offset_index_append_lookup_trim_resize_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("00000000000000001000.index");
        let mut idx = OffsetIndex::create(&path, 1000, 80).unwrap();
        for i in 1..=10u32 {
            assert!(!idx.is_full());
            idx.append(1000 + i64::from(i) * 5, i * 100);
        }
        assert!(idx.is_full(), "80 bytes hold 10 entries");
        assert!(idx.resize(160));
        assert!(!idx.is_full());
        assert!(!idx.resize(160), "same capacity");
        assert!(idx.resize(8));
        assert!(idx.is_full(), "never below the entries held");
        assert_eq!(idx.len(), 10);

        assert_eq!(idx.lookup(1004).position, 0);
        assert_eq!(
            idx.lookup(1017),
            OffsetPosition {
                offset: 1015,
                position: 300
            }
        );
        idx.persist(true).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 80);
        assert_eq!(
            &bytes[..8],
            &[0, 0, 0, 5, 0, 0, 0, 100],
            "u32 BE rel, u32 BE pos"
        );

        idx.truncate_to_offset(1030).unwrap();
        assert_eq!(idx.len(), 5);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            40,
            "trim cuts the file"
        );
        let back = loaded(OffsetIndex::load(&path, 1000, 80, 1 << 20).unwrap());
        assert_eq!(
            back.entries().collect::<Vec<_>>(),
            idx.entries().collect::<Vec<_>>()
        );
        assert!(matches!(
            OffsetIndex::load(&path, 1000, 80, 500).unwrap(),
            IndexLoad::Rebuild(_)
        ));
        idx.reset().unwrap();
        assert!(idx.is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn time_index_append_lookup_trim_resize_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("00000000000000000010.timeindex");
        let mut idx = TimeIndex::create(&path, 10, 36).unwrap();
        idx.maybe_append(1_000, 10, false);
        idx.maybe_append(2_000, 12, false);
        idx.maybe_append(3_000, 12, false); // same offset, larger timestamp: kept
        assert!(idx.is_full(), "36 bytes hold 3 entries");
        idx.maybe_append(4_000, 20, false);
        assert_eq!(idx.len(), 3, "full: skipped");
        idx.maybe_append(4_000, 20, true);
        assert_eq!(
            idx.len(),
            4,
            "a sealed segment's last entry goes in past the capacity"
        );
        assert!(idx.resize(120));
        assert!(!idx.is_full());
        assert_eq!(idx.lookup(999), None);
        assert_eq!(
            idx.lookup(2_999),
            Some(TimestampOffset {
                timestamp: 2_000,
                offset: 12
            })
        );
        idx.persist(false).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 48);
        assert_eq!(
            &bytes[..12],
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 0, 0, 0],
            "i64 BE timestamp, u32 BE rel"
        );
        idx.truncate_to_offset(12).unwrap();
        assert_eq!(idx.len(), 1, "both entries at offset 12 go");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
        let back = loaded(TimeIndex::load(&path, 10, 120).unwrap());
        assert_eq!(
            back.entries().collect::<Vec<_>>(),
            idx.entries().collect::<Vec<_>>()
        );
    }

    #[test]
    fn load_rebuilds_what_breaks_the_order_or_range() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("0.timeindex");
        let write = |entries: &[TimeEntry]| {
            let mut buf = Vec::new();
            for e in entries {
                e.encode(&mut buf);
            }
            std::fs::write(&path, buf).unwrap();
        };
        let e = |timestamp, relative_offset| TimeEntry {
            timestamp,
            relative_offset,
        };
        write(&[e(5, 1), e(5, 2)]);
        assert!(matches!(
            TimeIndex::load(&path, 0, 1200).unwrap(),
            IndexLoad::Rebuild(_)
        ));
        write(&[e(5, 2), e(6, 1)]);
        assert!(matches!(
            TimeIndex::load(&path, 0, 1200).unwrap(),
            IndexLoad::Rebuild(_)
        ));
        write(&[e(5, MAX_RELATIVE_OFFSET + 1)]);
        assert!(matches!(
            TimeIndex::load(&path, 0, 1200).unwrap(),
            IndexLoad::Rebuild(_)
        ));
        write(&[e(5, 1), e(6, 1)]);
        assert_eq!(loaded(TimeIndex::load(&path, 0, 1200).unwrap()).len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            TimeIndex::load(&path, 0, 1200).unwrap(),
            IndexLoad::Rebuild(_)
        ));
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn push_out_of_order_is_a_bug() {
        let tmp = tempfile::tempdir().unwrap();
        let mut idx: Index<OffsetEntry> =
            Index::create(&tmp.path().join("0.index"), 0, 1024).unwrap();
        idx.push(OffsetEntry {
            relative_offset: 5,
            position: 50,
        });
        idx.push(OffsetEntry {
            relative_offset: 6,
            position: 50,
        });
    }

    /// Strictly increasing (delta offset, delta position) steps, as the segment appends them.
    fn steps() -> impl Strategy<Value = Vec<(u16, u16)>> {
        proptest::collection::vec((1u16..50, 1u16..5000), 0..60)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append,
        Persist,
        Truncate(u32),
        Reset,
        /// A crash: what was not persisted is lost, the file is read back.
        Reopen,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                6 => Just(Op::Append),
                2 => Just(Op::Persist),
                1 => (0u32..200).prop_map(Op::Truncate),
                1 => Just(Op::Reset),
                1 => Just(Op::Reopen),
            ],
            0..60,
        )
    }

    fn encoded<E: IndexEntry>(entries: &[E]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            e.encode(&mut out);
        }
        out
    }

    /// Drives an index of one kind against a model (the entries, and how many the file
    /// holds): after every step the file is exactly the encoded persisted prefix, and a reopen
    /// gives back that prefix. `entry_at(k)` is strictly ordered in `k`.
    fn run_against_model<E: IndexEntry + PartialEq>(
        ops: &[Op],
        entry_at: impl Fn(u32) -> E,
    ) -> Result<(), TestCaseError> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("00000000000000000500.idx");
        let base = 500;
        let mut idx: Index<E> = Index::create(&path, base, 1 << 20).unwrap();
        let mut model: Vec<E> = Vec::new();
        let mut persisted = 0usize;
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Append => {
                    idx.push(entry_at(next));
                    model.push(entry_at(next));
                    next += 1;
                }
                Op::Persist => {
                    idx.persist(false).unwrap();
                    persisted = model.len();
                }
                Op::Truncate(rel) => {
                    idx.truncate_to_offset(base + i64::from(*rel)).unwrap();
                    model.retain(|e| e.relative_offset() < *rel);
                    persisted = persisted.min(model.len());
                }
                Op::Reset => {
                    idx.reset().unwrap();
                    model.clear();
                    persisted = 0;
                }
                Op::Reopen => {
                    drop(idx);
                    idx = loaded(Index::load_with(&path, base, 1 << 20, |_| None).unwrap());
                    model.truncate(persisted);
                }
            }
            prop_assert_eq!(idx.len(), model.len());
            prop_assert_eq!(idx.unpersisted(), model.len() - persisted);
            prop_assert_eq!(&idx.entries, &model);
            prop_assert_eq!(std::fs::read(&path).unwrap(), encoded(&model[..persisted]));
        }
        Ok(())
    }

    proptest! {
        // Each case makes a directory and writes files at most steps: fewer cases suffice.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn offset_index_file_is_always_the_persisted_prefix(ops in ops()) {
            run_against_model(&ops, |k| OffsetEntry {
                relative_offset: k * 3 + 1,
                position: k * 7 + 1,
            })?;
        }

        #[test]
        fn time_index_file_is_always_the_persisted_prefix(ops in ops()) {
            run_against_model(&ops, |k| TimeEntry {
                timestamp: i64::from(k) * 5 - 40,
                relative_offset: k / 2,
            })?;
        }
    }

    proptest! {
        #[test]
        fn offset_lookup_agrees_with_a_linear_scan(
            base in 0i64..1_000_000,
            steps in steps(),
            targets in proptest::collection::vec(-100i64..200_000, 1..40),
            cut in 0i64..200_000,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("0.index");
            let mut idx = OffsetIndex::create(&path, base, 1 << 20).unwrap();
            let (mut offset, mut position) = (base, 0u32);
            let mut all = Vec::new();
            for (d_offset, d_position) in steps {
                offset += i64::from(d_offset);
                position += u32::from(d_position);
                idx.append(offset, position);
                all.push(OffsetPosition { offset, position });
            }
            let linear = |entries: &[OffsetPosition], target: i64| {
                entries.iter().rev().find(|e| e.offset <= target).copied()
                    .unwrap_or(OffsetPosition { offset: base, position: 0 })
            };
            for &t in &targets {
                prop_assert_eq!(idx.lookup(base + t), linear(&all, base + t));
            }
            idx.persist(false).unwrap();
            idx.truncate_to_offset(base + cut).unwrap();
            all.retain(|e| e.offset < base + cut);
            prop_assert_eq!(idx.entries().collect::<Vec<_>>(), all.clone());
            let back = loaded(OffsetIndex::load(&path, base, 1 << 20, u64::MAX).unwrap());
            for &t in &targets {
                prop_assert_eq!(back.lookup(base + t), linear(&all, base + t));
            }
        }

        #[test]
        fn time_lookup_agrees_with_a_linear_scan(
            base in 0i64..1_000_000,
            appends in proptest::collection::vec((-20i64..100, 0u16..20), 0..80),
            targets in proptest::collection::vec(-100i64..5_000, 1..40),
            cut in 0i64..2_000,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("0.timeindex");
            let mut idx = TimeIndex::create(&path, base, 1 << 20).unwrap();
            // Timestamps wander (batches' maxTimestamps do); offsets only grow.
            let (mut timestamp, mut offset) = (0i64, base);
            let mut all: Vec<TimestampOffset> = Vec::new();
            for (d_timestamp, d_offset) in appends {
                timestamp += d_timestamp;
                offset += i64::from(d_offset);
                idx.maybe_append(timestamp, offset, false);
                if all.last().is_none_or(|l| timestamp > l.timestamp) {
                    all.push(TimestampOffset { timestamp, offset });
                }
            }
            prop_assert_eq!(idx.entries().collect::<Vec<_>>(), all.clone());
            let linear = |entries: &[TimestampOffset], target: i64| {
                entries.iter().rev().find(|e| e.timestamp <= target).copied()
            };
            for &t in &targets {
                prop_assert_eq!(idx.lookup(t), linear(&all, t));
            }
            idx.persist(false).unwrap();
            idx.truncate_to_offset(base + cut).unwrap();
            all.retain(|e| e.offset < base + cut);
            let back = loaded(TimeIndex::load(&path, base, 1 << 20).unwrap());
            prop_assert_eq!(back.entries().collect::<Vec<_>>(), all.clone());
            for &t in &targets {
                prop_assert_eq!(back.lookup(t), linear(&all, t));
            }
        }
    }
}
