//! Exclusive ownership of a data directory across processes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use fs2::FileExt;

use crate::error::{IoContext, LogError};

pub const LOCK_FILE_NAME: &str = ".lock";

/// Holds an exclusive `flock` on `<dir>/.lock` for as long as it lives. The kernel drops the lock
/// when the process dies, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    // Kept open only to hold the lock.
    _file: File,
}

impl DirLock {
    /// Creates `dir` if needed and locks it. Fails with [`LogError::DirLocked`] if another
    /// process (or another `DirLock` in this process) holds it.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<DirLock, LogError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).ctx(|| format!("create data directory {}", dir.display()))?;
        let lock_file = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_file)
            .ctx(|| format!("open lock file {}", lock_file.display()))?;
        file.try_lock_exclusive()
            .map_err(|source| LogError::DirLocked {
                dir: dir.to_path_buf(),
                lock_file: lock_file.clone(),
                source,
            })?;
        tracing::debug!(dir = %dir.display(), "acquired data directory lock");
        Ok(DirLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DirLock::acquire(&dir).unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(matches!(err, LogError::DirLocked { .. }));
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
        drop(first);
        DirLock::acquire(&dir).expect("lock is released on drop");
    }
}
