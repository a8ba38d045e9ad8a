//! Offset checkpoint files (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`),
//! in Kafka's text format, kept per partition directory:
//!
//! ```text
//! 0                      <- version
//! 1                      <- entry count
//! <topic> <partition> <offset>
//! ```
//!
//! Written atomically: temp file, fsync, rename, fsync of the directory, so a crash leaves either
//! the old or the new checkpoint, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, LogError};
use crate::topic_partition::TopicPartition;

pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
const CHECKPOINT_VERSION: i32 = 0;
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Clone)]
pub struct OffsetCheckpointFile {
    path: PathBuf,
}

impl OffsetCheckpointFile {
    pub fn new(dir: &Path, file_name: &str) -> Self {
        OffsetCheckpointFile {
            path: dir.join(file_name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, tp: &TopicPartition, offset: i64) -> Result<(), LogError> {
        let content = format!(
            "{CHECKPOINT_VERSION}\n1\n{} {} {offset}\n",
            tp.topic, tp.partition
        );
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(TEMP_SUFFIX);
        let tmp = PathBuf::from(tmp_name);
        let ctx = |op: &str| format!("{op} checkpoint {}", tmp.display());
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(|| ctx("create"))?;
        file.write_all(content.as_bytes()).ctx(|| ctx("write"))?;
        file.sync_all().ctx(|| ctx("fsync"))?;
        drop(file);
        fs::rename(&tmp, &self.path).ctx(|| format!("rename {} into place", tmp.display()))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// `Ok(None)` when the file is absent or unusable: callers then fall back to the safe
    /// default (recover everything / start at the first segment), so a damaged checkpoint costs
    /// time, never data.
    pub fn read(&self, tp: &TopicPartition) -> Result<Option<i64>, LogError> {
        let content = match fs::read_to_string(&self.path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                // Unreadable bytes (e.g. not UTF-8) are damage, not an I/O failure.
                if e.kind() == std::io::ErrorKind::InvalidData {
                    tracing::warn!(path = %self.path.display(), "ignoring unreadable checkpoint");
                    return Ok(None);
                }
                return Err(LogError::io(
                    format!("read checkpoint {}", self.path.display()),
                    e,
                ));
            }
        };
        match parse(&content, tp) {
            Some(offset) => Ok(Some(offset)),
            None => {
                tracing::warn!(path = %self.path.display(), "ignoring malformed checkpoint");
                Ok(None)
            }
        }
    }
}

fn parse(content: &str, tp: &TopicPartition) -> Option<i64> {
    let mut lines = content.lines();
    if lines.next()?.trim().parse::<i32>().ok()? != CHECKPOINT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut found = None;
    for _ in 0..count {
        let line = lines.next()?;
        let mut fields = line.split_whitespace();
        let (topic, partition, offset) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() {
            return None;
        }
        let partition: i32 = partition.parse().ok()?;
        let offset: i64 = offset.parse().ok()?;
        if topic == tp.topic && partition == tp.partition && offset >= 0 {
            found = Some(offset);
        }
    }
    found
}

/// fsync a directory so that creations, renames and deletions inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    let f = File::open(dir).ctx(|| format!("open directory {}", dir.display()))?;
    f.sync_all()
        .ctx(|| format!("fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 3);
        let cp = OffsetCheckpointFile::new(tmp.path(), RECOVERY_POINT_CHECKPOINT_FILE);
        assert_eq!(cp.read(&tp).unwrap(), None);
        cp.write(&tp, 42).unwrap();
        assert_eq!(cp.read(&tp).unwrap(), Some(42));
        cp.write(&tp, 43).unwrap();
        assert_eq!(cp.read(&tp).unwrap(), Some(43));
        assert_eq!(cp.read(&TopicPartition::new("t", 4)).unwrap(), None);
        let text = fs::read_to_string(cp.path()).unwrap();
        assert_eq!(text, "0\n1\nt 3 43\n");
        fs::write(cp.path(), "0\n1\nt 3 garbage\n").unwrap();
        assert_eq!(cp.read(&tp).unwrap(), None);
        fs::write(cp.path(), [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(cp.read(&tp).unwrap(), None);
    }
}
