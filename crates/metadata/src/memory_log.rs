//! A [`MetadataLogClient`] in memory: what the controller and loader tests drive (no disk, no
//! clock), and a stand-in for a shared log that two writers reach, to show the position fence.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::log_client::{MetadataLogClient, MAX_READ_RECORDS, MAX_WAIT};
use crate::metadata_log::MetadataLogError;
use crate::records::MetadataRecord;

#[derive(Default)]
struct State {
    records: Vec<MetadataRecord>,
    closed: bool,
    /// When set, the next append fails with this I/O error kind and writes nothing.
    fail_next_append: Option<std::io::ErrorKind>,
}

#[derive(Default)]
pub struct MemoryMetadataLog {
    state: Mutex<State>,
    appended: Condvar,
}

impl MemoryMetadataLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next append fail as a full or broken disk would.
    pub fn fail_next_append(&self, kind: std::io::ErrorKind) {
        self.locked().fail_next_append = Some(kind);
    }

    fn locked(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn open_state(&self) -> Result<MutexGuard<'_, State>, MetadataLogError> {
        let g = self.locked();
        if g.closed {
            return Err(MetadataLogError::Closed);
        }
        Ok(g)
    }
}

fn end_of(state: &State) -> i64 {
    state.records.len() as i64
}

impl MetadataLogClient for MemoryMetadataLog {
    fn end_offset(&self) -> Result<i64, MetadataLogError> {
        Ok(end_of(&*self.open_state()?))
    }

    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        _timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        let mut g = self.open_state()?;
        let end = end_of(&g);
        if end != expected_offset {
            return Err(MetadataLogError::Conflict {
                expected: expected_offset,
                end,
            });
        }
        if let Some(kind) = g.fail_next_append.take() {
            return Err(MetadataLogError::Io(std::io::Error::from(kind)));
        }
        g.records.extend_from_slice(records);
        drop(g);
        self.appended.notify_all();
        Ok(end)
    }

    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
        let g = self.open_state()?;
        let from = usize::try_from(from_offset.max(0)).unwrap_or(usize::MAX);
        Ok(g.records
            .iter()
            .enumerate()
            .skip(from)
            .take(max_records.min(MAX_READ_RECORDS))
            .map(|(i, r)| (i as i64, r.clone()))
            .collect())
    }

    fn wait_for_more(&self, offset: i64, timeout: Duration) -> Result<i64, MetadataLogError> {
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        let mut g = self.open_state()?;
        loop {
            if g.closed {
                return Err(MetadataLogError::Closed);
            }
            let end = end_of(&g);
            let now = Instant::now();
            if end > offset || now >= deadline {
                return Ok(end);
            }
            g = match self.appended.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn close(&self) -> Result<(), MetadataLogError> {
        self.locked().closed = true;
        self.appended.notify_all();
        Ok(())
    }
}
