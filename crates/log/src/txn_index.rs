//! The aborted-transaction index (Kafka's `TransactionIndex`, one `<base>.txnindex` per
//! segment): every aborted transaction whose ABORT marker lies in the segment, in marker
//! order, so a read_committed fetch can tell consumers which producers' batches to drop.
//!
//! Entry layout, as Kafka's (34 bytes, big-endian): version i16 = 0 | producer id i64 |
//! first offset i64 | last offset i64 (the marker) | last stable offset i64 (at the abort).
//!
//! The index is derived from the log, so it is never trusted blindly: entries at or above the
//! producer-state snapshot a log loads from are re-derived by the replay; a file below it that
//! fails its checks (length, version, offsets outside its segment or out of order) makes the
//! log rebuild every segment's index from the batches. It is kept in memory as well (a few
//! bytes per aborted transaction), so a fetch never reads the files.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::TEMP_SUFFIX;
use crate::error::{IoContext, LogError};

pub const TXN_INDEX_FILE_SUFFIX: &str = ".txnindex";
const ENTRY_VERSION: i16 = 0;
pub const TXN_INDEX_ENTRY_BYTES: usize = 2 + 8 + 8 + 8 + 8;

/// One aborted transaction (Kafka's AbortedTxn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    /// The log's last stable offset once the abort was written.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(ENTRY_VERSION.to_be_bytes());
        out.extend(self.producer_id.to_be_bytes());
        out.extend(self.first_offset.to_be_bytes());
        out.extend(self.last_offset.to_be_bytes());
        out.extend(self.last_stable_offset.to_be_bytes());
    }
}

pub fn txn_index_file_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!(
        "{}{TXN_INDEX_FILE_SUFFIX}",
        crate::files::file_stem(base_offset)
    ))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The entries of one segment's file (`base`..`next_offset` its offsets), or why they cannot
/// be trusted. A missing file is an empty index (Kafka creates them lazily too).
fn read_entries(path: &Path, base: i64, next_offset: i64) -> Result<Vec<AbortedTxn>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("unreadable: {e}")),
    };
    if bytes.len() % TXN_INDEX_ENTRY_BYTES != 0 {
        return Err(format!(
            "{} bytes, not a whole number of entries",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_BYTES);
    let mut previous_last = i64::MIN;
    for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let version = i16::from_be_bytes([chunk[0], chunk[1]]);
        if version != ENTRY_VERSION {
            return Err(format!("entry version {version}"));
        }
        let txn = AbortedTxn {
            producer_id: i64_at(chunk, 2),
            first_offset: i64_at(chunk, 10),
            last_offset: i64_at(chunk, 18),
            last_stable_offset: i64_at(chunk, 26),
        };
        let valid = txn.producer_id >= 0
            && txn.first_offset >= 0
            && txn.first_offset <= txn.last_offset
            && txn.last_offset >= base
            && txn.last_offset < next_offset
            && txn.last_offset > previous_last
            && txn.last_stable_offset > txn.first_offset;
        if !valid {
            return Err(format!(
                "entry {txn:?} does not fit the segment {base}..{next_offset}"
            ));
        }
        previous_last = txn.last_offset;
        out.push(txn);
    }
    Ok(out)
}

/// The aborted transactions of a log, per segment, with their files.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    dir: PathBuf,
    /// Segment base -> the aborted transactions whose markers it holds, in marker order.
    segments: BTreeMap<i64, Vec<AbortedTxn>>,
    /// The open file of each segment's index that has one.
    files: BTreeMap<i64, Arc<File>>,
}

impl TxnIndex {
    pub(crate) fn new(dir: &Path) -> Self {
        TxnIndex {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    /// Reads the files of `segments` (base, next offset), deleting those of no segment. Returns
    /// the bases whose file failed its checks (their entries are left out).
    pub(crate) fn load(&mut self, segments: &[(i64, i64)]) -> Result<Vec<i64>, LogError> {
        self.segments.clear();
        self.files.clear();
        let mut damaged = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("list {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("list {}", self.dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(TXN_INDEX_FILE_SUFFIX) else {
                continue;
            };
            let base = stem
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| stem.parse::<i64>().ok())
                .flatten();
            if base.is_none_or(|b| !segments.iter().any(|(s, _)| *s == b)) {
                tracing::info!(file = %entry.path().display(), "deleting a transaction index without a segment");
                remove_if_exists(&entry.path())?;
            }
        }
        for &(base, next_offset) in segments {
            let path = txn_index_file_path(&self.dir, base);
            match read_entries(&path, base, next_offset) {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => {
                    self.segments.insert(base, entries);
                }
                Err(reason) => {
                    tracing::warn!(file = %path.display(), %reason, "damaged transaction index; rebuilding it from the log");
                    damaged.push(base);
                }
            }
        }
        Ok(damaged)
    }

    fn file(&mut self, base: i64) -> Result<Arc<File>, LogError> {
        if let Some(f) = self.files.get(&base) {
            return Ok(Arc::clone(f));
        }
        let path = txn_index_file_path(&self.dir, base);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let file = Arc::new(file);
        self.files.insert(base, Arc::clone(&file));
        Ok(file)
    }

    /// Adds an aborted transaction whose marker is in the segment at `base`.
    pub(crate) fn append(&mut self, base: i64, txn: AbortedTxn) -> Result<(), LogError> {
        let mut bytes = Vec::with_capacity(TXN_INDEX_ENTRY_BYTES);
        txn.encode(&mut bytes);
        let file = self.file(base)?;
        (&*file)
            .write_all(&bytes)
            .ctx(|| format!("write {}", txn_index_file_path(&self.dir, base).display()))?;
        self.segments.entry(base).or_default().push(txn);
        Ok(())
    }

    /// The files holding entries of segments from `min_base` on: what a flush syncs with the
    /// log, so the index is never less durable than the markers it describes.
    pub(crate) fn files_from(&self, min_base: i64) -> impl Iterator<Item = &Arc<File>> {
        self.files.range(min_base..).map(|(_, f)| f)
    }

    /// fdatasyncs the index file of the segment at `base`, if it has one.
    pub(crate) fn sync_segment(&self, base: i64) -> Result<(), LogError> {
        if let Some(f) = self.files.get(&base) {
            f.sync_data()
                .ctx(|| format!("fsync {}", txn_index_file_path(&self.dir, base).display()))?;
        }
        Ok(())
    }

    /// Every entry, in marker order.
    pub(crate) fn all(&self) -> Vec<AbortedTxn> {
        self.segments.values().flatten().copied().collect()
    }

    /// Replaces the entries whose markers are at or above `from` with `entries` (each put in
    /// the segment `segment_of` its marker), rewriting the files that change.
    pub(crate) fn replace_from(
        &mut self,
        from: i64,
        entries: Vec<AbortedTxn>,
        segment_of: impl Fn(i64) -> i64,
    ) -> Result<(), LogError> {
        let mut touched: Vec<i64> = Vec::new();
        for (base, list) in self.segments.iter_mut() {
            let before = list.len();
            list.retain(|t| t.last_offset < from);
            if list.len() != before {
                touched.push(*base);
            }
        }
        for txn in entries.into_iter().filter(|t| t.last_offset >= from) {
            let base = segment_of(txn.last_offset);
            self.segments.entry(base).or_default().push(txn);
            touched.push(base);
        }
        touched.sort_unstable();
        touched.dedup();
        for base in touched {
            if let Some(list) = self.segments.get_mut(&base) {
                list.sort_by_key(|t| t.last_offset);
                list.dedup();
            }
            self.rewrite(base)?;
        }
        Ok(())
    }

    /// Writes the segment's file anew from memory (temp file, fsync, rename); removes it when
    /// the segment has no entries.
    fn rewrite(&mut self, base: i64) -> Result<(), LogError> {
        self.files.remove(&base);
        let path = txn_index_file_path(&self.dir, base);
        let entries = self.segments.get(&base).cloned().unwrap_or_default();
        if entries.is_empty() {
            self.segments.remove(&base);
            return remove_if_exists(&path);
        }
        let mut bytes = Vec::with_capacity(entries.len() * TXN_INDEX_ENTRY_BYTES);
        for t in &entries {
            t.encode(&mut bytes);
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TEMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        file.write_all(&bytes)
            .ctx(|| format!("write {}", tmp.display()))?;
        file.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, &path)
            .ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }

    /// The segment at `base` is gone (retention, DeleteRecords, truncation): its index too.
    pub(crate) fn remove_segment(&mut self, base: i64) -> Result<(), LogError> {
        self.segments.remove(&base);
        self.files.remove(&base);
        remove_if_exists(&txn_index_file_path(&self.dir, base))
    }

    /// Drops the entries whose markers are at or above `offset` (a truncation).
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<(), LogError> {
        self.replace_from(offset, Vec::new(), |o| o)
    }

    /// Kafka's collectAbortedTxns over the segments from the one holding `start_offset`: the
    /// aborted transactions overlapping [start_offset, upper_bound_offset), stopping at the
    /// first entry whose last stable offset reaches the upper bound (no transaction aborted
    /// after it can have started below the bound).
    pub(crate) fn collect(&self, start_offset: i64, upper_bound_offset: i64) -> Vec<AbortedTxn> {
        let floor = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for list in self.segments.range(floor..).map(|(_, l)| l) {
            for t in list {
                if t.last_offset >= start_offset && t.first_offset < upper_bound_offset {
                    out.push(*t);
                }
                if t.last_stable_offset >= upper_bound_offset {
                    return out;
                }
            }
        }
        out
    }
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("delete {}", path.display()), e)),
    }
}
