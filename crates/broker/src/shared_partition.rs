//! A cluster partition whose data is in shared storage (`strom-shared-storage`: the record
//! bytes in an object store, PostgreSQL as the sequencer), behind the same partition seam as
//! a local log. Appends resolve to their offsets once committed ([`PartitionLog::start_append`]),
//! reads carry bytes rather than a file range ([`PartitionLog::read_bytes`]).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use proto_kafka::ResponseError;
use strom_log::{TimestampAndOffset, TopicPartition};
use strom_shared_storage::{SharedPartition, SharedStorageError};
use tokio::sync::futures::Notified;
use uuid::Uuid;

use crate::config::topic::TopicConfig;
use crate::partition::{
    Appended, BytesRead, Leadership, PartitionError, PartitionLog, PartitionRead, PendingAppend,
};

/// Kafka's answer for a shared-storage failure: both outages are retriable (an object store
/// failure is KAFKA_STORAGE_ERROR, PostgreSQL's REQUEST_TIMED_OUT), refusals keep their code.
pub fn partition_error(e: &SharedStorageError) -> PartitionError {
    PartitionError::Rejected(e.response_error())
}

fn appended(committed: strom_shared_storage::Committed) -> Appended {
    Appended {
        first_offset: committed.first_offset,
        last_offset: committed.last_offset,
        // -1 unless the topic uses LogAppendTime (the intake stamped the batches).
        log_append_time_ms: committed.log_append_time_ms,
        duplicate: committed.duplicate,
    }
}

fn log_append_time(config: &TopicConfig) -> bool {
    config.message_timestamp_type == crate::config::TimestampType::LogAppendTime
}

pub struct SharedLog {
    topic_partition: TopicPartition,
    inner: Arc<SharedPartition>,
    leader_id: AtomicI32,
    config: Mutex<TopicConfig>,
}

impl SharedLog {
    pub fn new(
        topic_partition: TopicPartition,
        inner: Arc<SharedPartition>,
        leader: Leadership,
        config: TopicConfig,
    ) -> SharedLog {
        inner.set_leader_epoch(leader.epoch);
        inner.set_log_append_time(log_append_time(&config));
        SharedLog {
            topic_partition,
            inner,
            leader_id: AtomicI32::new(leader.leader_id),
            config: Mutex::new(config),
        }
    }

    /// The image's leadership: a newer epoch is claimed with the next commit, which fences
    /// every older leader's commits from then on.
    pub fn set_leadership(&self, leader: Leadership) {
        self.inner.set_leader_epoch(leader.epoch);
        self.leader_id.store(leader.leader_id, Ordering::Release);
    }

    pub fn set_config(&self, config: TopicConfig) {
        self.inner.set_log_append_time(log_append_time(&config));
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn shared(&self) -> &Arc<SharedPartition> {
        &self.inner
    }
}

impl PartitionLog for SharedLog {
    fn topic_partition(&self) -> &TopicPartition {
        &self.topic_partition
    }
    fn topic_id(&self) -> Uuid {
        self.inner.topic_id
    }
    fn leader_epoch(&self) -> i32 {
        self.inner.leader_epoch()
    }
    fn leader_id(&self) -> i32 {
        self.leader_id.load(Ordering::Acquire)
    }
    fn high_watermark(&self) -> i64 {
        self.inner.high_watermark()
    }
    fn log_start_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.inner.log_start_offset())
    }
    fn log_end_offset(&self) -> Result<i64, PartitionError> {
        // Nothing is visible before it is committed: the log ends at the high watermark.
        Ok(self.inner.high_watermark())
    }
    fn size_bytes(&self) -> Result<u64, PartitionError> {
        Ok(self.inner.size_bytes())
    }
    fn min_insync_replicas(&self) -> i32 {
        // The object store is the replication: acks=all is satisfied by the commit.
        1
    }
    fn config(&self) -> TopicConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn append_as_leader(
        &self,
        _records: &mut [u8],
        _now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        // Offsets come from the commit: producers go through start_append. Only internal
        // topics take synchronous appends, and those stay local logs.
        Err(PartitionError::Rejected(ResponseError::KafkaStorageError))
    }
    fn complete_append(&self, _end_offset: i64) -> BoxFuture<'_, Result<(), PartitionError>> {
        Box::pin(async { Ok(()) })
    }
    fn read(
        &self,
        _offset: i64,
        _max_bytes: usize,
        _min_one_batch: bool,
    ) -> Result<PartitionRead, PartitionError> {
        // No file range: fetch reads through read_bytes.
        Ok(PartitionRead {
            slice: None,
            high_watermark: self.inner.high_watermark(),
            log_start_offset: self.inner.log_start_offset(),
        })
    }
    fn fetch_offset_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampAndOffset>, PartitionError> {
        Ok(self
            .inner
            .offset_for_timestamp(timestamp_ms)
            .map(|(offset, timestamp)| TimestampAndOffset {
                timestamp,
                offset,
                leader_epoch: None,
            }))
    }
    fn max_timestamp_and_offset(&self) -> Result<Option<TimestampAndOffset>, PartitionError> {
        Ok(self
            .inner
            .max_timestamp_and_offset()
            .map(|(offset, timestamp)| TimestampAndOffset {
                timestamp,
                offset,
                leader_epoch: None,
            }))
    }
    fn delete_records_before(&self, _offset: i64) -> Result<i64, PartitionError> {
        // The log start is moved in PostgreSQL: DeleteRecords goes through
        // start_delete_records, never a worker thread blocked on it.
        Err(PartitionError::Rejected(ResponseError::KafkaStorageError))
    }
    fn start_delete_records(
        &self,
        offset: i64,
    ) -> Option<BoxFuture<'_, Result<i64, PartitionError>>> {
        Some(Box::pin(async move {
            self.inner
                .delete_records_before(offset)
                .await
                .map_err(|e| partition_error(&e))
        }))
    }
    fn wait_for_data(&self) -> Notified<'_> {
        self.inner.wait_for_data()
    }
    fn segment_path_containing(&self, _offset: i64) -> Option<std::path::PathBuf> {
        None
    }
    fn start_append(&self, records: &[u8], _now_ms: i64) -> Option<PendingAppend> {
        // One copy: the intake keeps the bytes until the object is PUT, beyond the request's
        // frame. Handed to the intake here, in request order (idempotent producers' requests
        // in flight are sequenced in the order they were sent).
        let records = bytes::Bytes::copy_from_slice(records);
        let submitted = self.inner.submit(records);
        Some(Box::pin(async move {
            let committed = submitted
                .map_err(|e| partition_error(&e))?
                .await
                .map_err(|e| partition_error(&e))?;
            Ok(appended(committed))
        }))
    }
    fn start_append_as_coordinator(&self, records: &[u8], _now_ms: i64) -> Option<PendingAppend> {
        let records = bytes::Bytes::copy_from_slice(records);
        let submitted = self.inner.submit_as_coordinator(records);
        Some(Box::pin(async move {
            let committed = submitted
                .map_err(|e| partition_error(&e))?
                .await
                .map_err(|e| partition_error(&e))?;
            Ok(appended(committed))
        }))
    }
    fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<i64, PartitionError>> {
        Box::pin(async move {
            let committed = self
                .inner
                .append_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    now_ms,
                )
                .await
                .map_err(|e| partition_error(&e))?;
            Ok(committed.first_offset)
        })
    }
    fn last_stable_offset(&self) -> Result<i64, PartitionError> {
        Ok(self.inner.last_stable_offset())
    }
    fn read_bytes(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Option<BoxFuture<'_, Result<BytesRead, PartitionError>>> {
        Some(Box::pin(async move {
            if offset > self.inner.high_watermark() {
                // The leader may have acknowledged a commit whose notification has not
                // reached this broker yet: read the index once before answering
                // OFFSET_OUT_OF_RANGE, so a client reads its own writes on any broker.
                self.inner
                    .catch_up()
                    .await
                    .map_err(|e| partition_error(&e))?;
            }
            let read = self
                .inner
                .read_isolated(offset, max_bytes, min_one_batch, read_committed)
                .await
                .map_err(|e| partition_error(&e))?;
            Ok(BytesRead {
                records: read.records,
                high_watermark: read.high_watermark,
                last_stable_offset: read.last_stable_offset,
                log_start_offset: read.log_start_offset,
                aborted_transactions: read.aborted_transactions,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn batch(transactional: bool) -> Vec<u8> {
        let mut b = crate::metadata::metadata_log::encode_internal_batch(
            [(None, Some(bytes::Bytes::from_static(b"v")))],
            1_700_000_000_000,
        )
        .unwrap()
        .to_vec();
        if transactional {
            // The attributes' transactional bit (the header is not CRC-checked here).
            b[22] |= 0x10;
        }
        b
    }

    /// A transactional producer's batch: producer fields set, CRC recomputed.
    /// A shared partition `topic`-0 (leader 1, epoch 0) of broker `node_id` over the test
    /// PostgreSQL database `url` and object store `s3`, with a 1 ms linger; the storage is
    /// returned too, as its tasks live only as long as it does.
    async fn open_log(
        url: &str,
        s3: &strom_shared_storage::testing::TestS3,
        topic: &str,
        topic_id: Uuid,
        node_id: i32,
    ) -> (strom_shared_storage::SharedStorage, SharedLog) {
        let mut config = s3.config(topic);
        config.produce_linger_ms = 1;
        let storage = strom_shared_storage::SharedStorage::start(url, config, node_id)
            .await
            .unwrap();
        let inner = storage.open_partition(topic_id, 0, 0).await.unwrap();
        let log = SharedLog::new(
            TopicPartition::new(topic, 0),
            inner,
            Leadership {
                leader_id: 1,
                epoch: 0,
            },
            TopicConfig::broker_defaults(&RawConfig::defaults()).unwrap(),
        );
        (storage, log)
    }

    fn txn_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Vec<u8> {
        let mut b = batch(true);
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
        b[53..57].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = strom_log::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Transactions through the seam as the handlers and the coordinators use it: a
    /// transactional produce is taken (it was UNSUPPORTED_FOR_MESSAGE_FORMAT), holds the last
    /// stable offset until its marker, a read_committed read stops there and then lists the
    /// aborted transaction; the coordinator's batch at the producer's sequence is no
    /// duplicate of the producer's.
    #[test]
    fn transactions_through_the_seam() {
        let pg = strom_metadata_postgres::testing::TestPostgres::shared();
        let url = pg.url(&pg.create_database());
        let s3 = strom_shared_storage::testing::TestS3::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_storage, log) = open_log(&url, &s3, "txn", Uuid::new_v4(), 1).await;
            let first = log
                .start_append(&txn_batch(7, 0, 0), 0)
                .unwrap()
                .await
                .unwrap();
            assert_eq!(first.first_offset, 0);
            log.start_append(&batch(false), 0).unwrap().await.unwrap();
            assert_eq!(log.high_watermark(), 2);
            assert_eq!(log.last_stable_offset().unwrap(), 0);
            let held = log
                .read_bytes(0, 1 << 20, true, true)
                .unwrap()
                .await
                .unwrap();
            assert!(held.records.is_empty());
            assert_eq!((held.last_stable_offset, held.high_watermark), (0, 2));
            assert_eq!(held.aborted_transactions, Some(Vec::new()));
            let by_coordinator = log
                .start_append_as_coordinator(&txn_batch(7, 0, 0), 0)
                .unwrap()
                .await
                .unwrap();
            assert!(!by_coordinator.duplicate);
            assert_eq!(by_coordinator.first_offset, 2);
            let marker = log.append_marker(7, 0, 0, false, 0).await.unwrap();
            assert_eq!(marker, 3);
            assert_eq!(log.last_stable_offset().unwrap(), 4);
            let read = log
                .read_bytes(0, 1 << 20, true, true)
                .unwrap()
                .await
                .unwrap();
            assert_eq!(read.last_stable_offset, 4);
            let aborted = read.aborted_transactions.unwrap();
            assert_eq!(
                aborted
                    .iter()
                    .map(|t| (t.producer_id, t.first_offset, t.last_offset))
                    .collect::<Vec<_>>(),
                [(7, 0, 3)]
            );
            let fenced = log.append_marker(7, -1, 0, true, 0).await;
            assert!(
                matches!(
                    fenced,
                    Err(PartitionError::Rejected(
                        ResponseError::InvalidProducerEpoch
                    ))
                ),
                "{fenced:?}"
            );
        });
    }

    /// DeleteRecords through the seam, as the handler calls it, on a current-thread runtime
    /// (where blocking a worker is impossible): the log start moves in PostgreSQL, a read below
    /// it is OFFSET_OUT_OF_RANGE and the log start offset is the new one.
    #[test]
    fn delete_records_is_asynchronous_through_the_seam() {
        let pg = strom_metadata_postgres::testing::TestPostgres::shared();
        let url = pg.url(&pg.create_database());
        let s3 = strom_shared_storage::testing::TestS3::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_storage, log) = open_log(&url, &s3, "dr", Uuid::new_v4(), 1).await;
            for _ in 0..4 {
                log.start_append(&batch(false), 0).unwrap().await.unwrap();
            }
            assert_eq!(log.high_watermark(), 4);
            let low = match log.start_delete_records(3) {
                Some(pending) => pending.await,
                None => log.delete_records_before(3),
            }
            .unwrap();
            assert_eq!(low, 3);
            assert_eq!(log.log_start_offset().unwrap(), 3);
            let below = log.read_bytes(2, 1 << 20, true, false).unwrap().await;
            assert!(
                matches!(
                    below,
                    Err(PartitionError::Rejected(ResponseError::OffsetOutOfRange))
                ),
                "{:?}",
                below.err()
            );
            let from = log
                .read_bytes(3, 1 << 20, true, false)
                .unwrap()
                .await
                .unwrap();
            assert_eq!(from.log_start_offset, 3);
            assert!(!from.records.is_empty());
        });
    }

    /// Read-your-writes across brokers: a broker that has not yet heard of another broker's
    /// commit (its notification listener has not run: its runtime is not driven meanwhile)
    /// reads the index before answering a fetch beyond its high watermark.
    #[test]
    fn a_fetch_beyond_the_high_watermark_catches_up_first() {
        let pg = strom_metadata_postgres::testing::TestPostgres::shared();
        let url = pg.url(&pg.create_database());
        let s3 = strom_shared_storage::testing::TestS3::start();
        let writer_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reader_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let topic_id = Uuid::new_v4();
        let open = |rt: &tokio::runtime::Runtime, node_id: i32| {
            rt.block_on(open_log(&url, &s3, "ryw", topic_id, node_id))
        };
        let (_writer_storage, writer) = open(&writer_rt, 1);
        let (_reader_storage, reader) = open(&reader_rt, 2);
        writer_rt.block_on(async {
            for _ in 0..3 {
                writer
                    .start_append(&batch(false), 0)
                    .unwrap()
                    .await
                    .unwrap();
            }
        });
        assert_eq!(writer.high_watermark(), 3);
        let read = reader_rt
            .block_on(reader.read_bytes(2, 1 << 20, true, false).unwrap())
            .unwrap();
        assert_eq!(read.high_watermark, 3);
        assert!(!read.records.is_empty());
    }

    /// `object.store.url` needs `cluster.metadata.url`, and a bad value is the setting's
    /// start-up error; unset, nothing changes.
    #[test]
    fn object_store_settings_are_checked_at_start_up() {
        let mut raw = RawConfig::defaults();
        assert!(crate::config::object_store(&raw).unwrap().is_none());
        raw.set("object.store.url", "s3://bucket/prefix", "test")
            .unwrap();
        let e = crate::config::object_store(&raw).unwrap_err().to_string();
        assert!(
            e.contains("object.store.url") && e.contains("cluster.metadata.url"),
            "{e}"
        );
        raw.set(
            "cluster.metadata.url",
            "postgres://u:p@127.0.0.1:5432/db",
            "test",
        )
        .unwrap();
        let c = crate::config::object_store(&raw).unwrap().unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bucket", "prefix"));
        assert_eq!(c.produce_linger_ms, 5);
        raw.set("object.store.url", "http://not-s3", "test")
            .unwrap();
        assert!(crate::config::object_store(&raw).is_err());
    }
}
