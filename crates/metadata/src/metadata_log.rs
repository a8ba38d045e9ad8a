//! The metadata log: `__cluster_metadata-0` in the data directory, one record batch per
//! change, each record's value a JSON [`MetadataRecord`]. A change is durable (fsynced) before
//! it is applied to the image, so a restart replays exactly what clients were told happened.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_log::{Log, LogConfig, TopicPartition};

use crate::image::MetadataImage;
pub use crate::log_client::MetadataLogError;
use crate::log_client::{MetadataLogClient, MAX_READ_RECORDS, MAX_WAIT};
use crate::records::MetadataRecord;

pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Largest metadata batch: a CreateTopics with thousands of partitions fits in one.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// `__cluster_metadata-0` in the data directory: the first [`MetadataLogClient`].
pub struct MetadataLog {
    /// `None` once closed. A std mutex: every method blocks anyway (see [`MetadataLogClient`]).
    log: Mutex<Option<Log>>,
    /// Signalled after each append, for [`MetadataLogClient::wait_for_more`].
    appended: Condvar,
}

impl MetadataLog {
    /// Opens (or creates) the metadata log under `data_dir` and replays it into an image.
    pub fn open(data_dir: &Path) -> Result<(MetadataLog, MetadataImage), MetadataLogError> {
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        };
        let config = LogConfig {
            max_message_bytes: MAX_BATCH_BYTES,
            segment_bytes: 64 * 1024 * 1024,
            ..LogConfig::default()
        };
        let log = Log::open(&data_dir.join(tp.dir_name()), tp, config)?;
        let mut image = MetadataImage::empty();
        let end = log.log_end_offset();
        let mut next = log.log_start_offset();
        while next < end {
            let records = read_records(&log, next, MAX_READ_RECORDS)?;
            let Some((last, _)) = records.last() else {
                break;
            };
            let after = last + 1;
            for (offset, record) in records {
                image
                    .apply(offset, &record)
                    .map_err(|source| MetadataLogError::Apply { offset, source })?;
            }
            assert!(after > next, "a replay always moves forward");
            next = after;
        }
        let opened = MetadataLog {
            log: Mutex::new(Some(log)),
            appended: Condvar::new(),
        };
        Ok((opened, image))
    }

    /// Checks `records` against `image`, appends them durably as one batch, and returns the
    /// image with them applied. On error nothing is written and the image is unchanged.
    pub fn commit(
        &mut self,
        image: &MetadataImage,
        records: &[MetadataRecord],
    ) -> Result<MetadataImage, MetadataLogError> {
        let mut next = image.clone();
        let base = self.end_offset()?;
        for (i, r) in records.iter().enumerate() {
            let offset = base + i as i64;
            next.apply(offset, r)
                .map_err(|source| MetadataLogError::Apply { offset, source })?;
        }
        if !records.is_empty() {
            self.append(base, records, now_ms())?;
        }
        Ok(next)
    }

    pub fn close(self) -> Result<(), MetadataLogError> {
        MetadataLogClient::close(&self)
    }

    fn locked(&self) -> MutexGuard<'_, Option<Log>> {
        match self.log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl MetadataLogClient for MetadataLog {
    fn end_offset(&self) -> Result<i64, MetadataLogError> {
        let guard = self.locked();
        let log = guard.as_ref().ok_or(MetadataLogError::Closed)?;
        Ok(log.log_end_offset())
    }

    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        let mut guard = self.locked();
        let log = guard.as_mut().ok_or(MetadataLogError::Closed)?;
        let end = log.log_end_offset();
        if end != expected_offset {
            return Err(MetadataLogError::Conflict {
                expected: expected_offset,
                end,
            });
        }
        if records.is_empty() {
            return Ok(end);
        }
        let mut values = Vec::with_capacity(records.len());
        for r in records {
            let value =
                serde_json::to_vec(r).map_err(|e| MetadataLogError::Encode(e.to_string()))?;
            values.push((None, Some(Bytes::from(value))));
        }
        let mut buf = encode_internal_batch(values, timestamp_ms)
            .map_err(|e| MetadataLogError::Encode(e.to_string()))?;
        let info = log.append_as_leader(&mut buf, 0, timestamp_ms)?;
        assert_eq!(info.first_offset, end, "the batch went where it was aimed");
        let target = log.flush_target();
        target.sync()?;
        log.mark_flushed_target(&target)?;
        // The recovery point goes to disk with every change (not once a second as for
        // partitions): recovery then knows that every record below it was synced, so damage
        // there is refused instead of being cut off as a torn tail.
        log.checkpoint_recovery_point()?;
        drop(guard);
        self.appended.notify_all();
        Ok(info.first_offset)
    }

    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
        let guard = self.locked();
        let log = guard.as_ref().ok_or(MetadataLogError::Closed)?;
        read_records(log, from_offset, max_records)
    }

    fn wait_for_more(&self, offset: i64, timeout: Duration) -> Result<i64, MetadataLogError> {
        let deadline = Instant::now() + timeout.min(MAX_WAIT);
        let mut guard = self.locked();
        loop {
            let end = guard
                .as_ref()
                .ok_or(MetadataLogError::Closed)?
                .log_end_offset();
            let now = Instant::now();
            if end > offset || now >= deadline {
                return Ok(end);
            }
            guard = match self.appended.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn close(&self) -> Result<(), MetadataLogError> {
        let taken = self.locked().take();
        self.appended.notify_all();
        if let Some(mut log) = taken {
            log.close()?;
        }
        Ok(())
    }
}

/// The records of `log` from `from_offset` on, whole batches at a time, at most
/// `max_records` (capped at [`MAX_READ_RECORDS`]).
fn read_records(
    log: &Log,
    from_offset: i64,
    max_records: usize,
) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
    let max_records = max_records.min(MAX_READ_RECORDS);
    let end = log.log_end_offset();
    let mut next = from_offset.max(log.log_start_offset());
    let mut out = Vec::new();
    while next < end && out.len() < max_records {
        let slice = log.read(next, MAX_BATCH_BYTES, end, true)?;
        let mut bytes: Bytes = slice.read_bytes()?;
        if bytes.is_empty() {
            break;
        }
        // Recovery keeps (and reports) a synced batch whose CRC fails rather than cut it;
        // for the metadata that is fatal: replaying around a lost change would be wrong.
        strom_log::validate_batches(&bytes).map_err(|e| MetadataLogError::Corrupt {
            offset: next,
            reason: e.to_string(),
        })?;
        let sets =
            RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| MetadataLogError::Corrupt {
                offset: next,
                reason: e.to_string(),
            })?;
        let before = next;
        for record in sets.into_iter().flat_map(|s| s.records) {
            if record.offset < next || out.len() >= max_records {
                continue;
            }
            let value = record.value.unwrap_or_default();
            let parsed: MetadataRecord =
                serde_json::from_slice(&value).map_err(|e| MetadataLogError::Corrupt {
                    offset: record.offset,
                    reason: e.to_string(),
                })?;
            out.push((record.offset, parsed));
            next = record.offset + 1;
        }
        if next == before {
            // A batch with no record at or after `next`: nothing more to read here.
            break;
        }
    }
    Ok(out)
}

/// Encodes the broker's own records (metadata, group state) as one uncompressed v2 batch of
/// plain (non-idempotent, non-transactional) records with relative offsets 0, 1, ...
pub fn encode_internal_batch(
    entries: impl IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
    timestamp_ms: i64,
) -> Result<BytesMut, proto_kafka::ProtoError> {
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp_ms,
            key,
            value,
            headers: Vec::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory_log::MemoryMetadataLog;

    fn broker(node_id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id,
            endpoints: vec![],
            rack: None,
        }
    }

    /// What every implementation of the seam must do, run on each.
    fn seam_contract(log: &dyn MetadataLogClient) {
        assert_eq!(log.end_offset().unwrap(), 0);
        assert_eq!(log.append(0, &[broker(0), broker(1)], 1).unwrap(), 0);
        assert_eq!(log.append(2, &[broker(2)], 2).unwrap(), 2);
        assert_eq!(log.end_offset().unwrap(), 3);
        // A second writer that validated against offset 2 (before the last append) is
        // refused, and nothing of it is written.
        match log.append(2, &[broker(9)], 3) {
            Err(MetadataLogError::Conflict {
                expected: 2,
                end: 3,
            }) => {}
            other => panic!("a stale writer must be refused, got {other:?}"),
        }
        assert!(matches!(
            log.append(4, &[broker(9)], 3),
            Err(MetadataLogError::Conflict { .. })
        ));
        assert_eq!(log.end_offset().unwrap(), 3);
        let all = log.read(0, usize::MAX).unwrap();
        assert_eq!(all, vec![(0, broker(0)), (1, broker(1)), (2, broker(2))]);
        assert_eq!(log.read(1, 1).unwrap(), vec![(1, broker(1))]);
        assert!(log.read(3, 10).unwrap().is_empty());
        // Nothing new: the wait ends at its timeout with the end unchanged.
        assert_eq!(log.wait_for_more(2, Duration::from_millis(1)).unwrap(), 3);
        // "Wait for ever" is a timeout of Duration::MAX, which must not overflow the deadline.
        assert_eq!(log.wait_for_more(1, Duration::MAX).unwrap(), 3);
        log.close().unwrap();
        log.close().unwrap();
        assert!(matches!(
            log.append(3, &[broker(3)], 4),
            Err(MetadataLogError::Closed)
        ));
        assert!(matches!(log.read(0, 1), Err(MetadataLogError::Closed)));
    }

    #[test]
    fn local_log_keeps_the_seam_contract_and_replays_on_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, image) = MetadataLog::open(tmp.path()).unwrap();
        assert_eq!(image.offset, -1);
        seam_contract(&log);
        let (log, image) = MetadataLog::open(tmp.path()).unwrap();
        assert_eq!(image.offset, 2);
        assert_eq!(
            image.brokers.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(log.end_offset().unwrap(), 3);
        assert_eq!(log.read(0, usize::MAX).unwrap().len(), 3);
    }

    #[test]
    fn memory_log_keeps_the_seam_contract() {
        seam_contract(&MemoryMetadataLog::new());
    }

    /// A waiter wakes when another thread appends, not only at its timeout.
    #[test]
    fn wait_for_more_wakes_on_append() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, _) = MetadataLog::open(tmp.path()).unwrap();
        let log = Arc::new(log);
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || log.wait_for_more(0, Duration::from_secs(60)))
        };
        // The waiter may start before or after the append; either way it sees offset 0.
        log.append(0, &[broker(0)], 1).unwrap();
        let started = Instant::now();
        assert_eq!(waiter.join().unwrap().unwrap(), 1);
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    /// An append that fails (the disk, here simulated) writes nothing and the log goes on.
    #[test]
    fn a_failed_append_leaves_the_position_alone() {
        let log = MemoryMetadataLog::new();
        log.fail_next_append(std::io::ErrorKind::StorageFull);
        assert!(matches!(
            log.append(0, &[broker(0)], 1),
            Err(MetadataLogError::Io(_))
        ));
        assert_eq!(log.end_offset().unwrap(), 0);
        assert_eq!(log.append(0, &[broker(0)], 1).unwrap(), 0);
    }
}
