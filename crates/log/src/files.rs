//! The names of a partition directory's files: a segment's `.log`, `.index` and `.timeindex`
//! share one stem, the base offset in 20 digits (Kafka's `LogFileUtils`), and the suffixes that
//! mark files in the middle of a deletion, a cleaning or a swap.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

pub const LOG_FILE_SUFFIX: &str = ".log";
pub const INDEX_FILE_SUFFIX: &str = ".index";
pub const TIME_INDEX_FILE_SUFFIX: &str = ".timeindex";
pub const DELETED_FILE_SUFFIX: &str = ".deleted";
pub const CLEANED_FILE_SUFFIX: &str = ".cleaned";
pub const SWAP_FILE_SUFFIX: &str = ".swap";

pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

pub fn log_file_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}{LOG_FILE_SUFFIX}", file_stem(base_offset)))
}

pub fn index_file_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}{INDEX_FILE_SUFFIX}", file_stem(base_offset)))
}

pub fn time_index_file_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!(
        "{}{TIME_INDEX_FILE_SUFFIX}",
        file_stem(base_offset)
    ))
}

/// Opens a segment's file for reading and writing, creating it if absent (and emptying it if
/// `truncate`).
pub(crate) fn open_read_write(path: &Path, truncate: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}
