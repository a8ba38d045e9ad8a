//! The coordinator driven through in-memory ports: no broker, no disk, no wall clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_group_coordinator::{partition_for, OFFSETS_TOPIC};
use strom_metadata::{MetadataImage, MetadataRecord};
use uuid::Uuid;

use crate::ports::{
    AppendedRange, Clock, Cluster, MarkerSink, PortFuture, Ports, ReadError, TransactionLog,
};
use crate::state::{Marker, TxnResult, TxnState};
use crate::{TransactionCoordinator, TxnConfig, TRANSACTION_STATE_TOPIC};

const NODE: i32 = 1;
const OTHER_NODE: i32 = 2;
const PARTITIONS: i32 = 4;

#[derive(Default)]
struct MemLog {
    batches: Mutex<Vec<(i32, i64, Bytes)>>,
    fail_appends: AtomicBool,
}

fn last_offset_delta(batch: &[u8]) -> i64 {
    i64::from(i32::from_be_bytes([
        batch[23], batch[24], batch[25], batch[26],
    ]))
}

impl MemLog {
    fn end(&self, partition: i32) -> i64 {
        let all = self.batches.lock().unwrap();
        all.iter()
            .filter(|(p, _, _)| *p == partition)
            .last()
            .map_or(0, |(_, base, b)| base + last_offset_delta(b) + 1)
    }

    fn records_in(&self, partition: i32) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .count()
    }
}

impl TransactionLog for MemLog {
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        _now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        if self.fail_appends.load(Ordering::Acquire) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let base = self.end(partition);
        let mut patched = BytesMut::with_capacity(batch.len());
        patched.put_i64(base);
        patched.put_slice(&batch[8..]);
        let last = base + last_offset_delta(&patched);
        self.batches
            .lock()
            .unwrap()
            .push((partition, base, patched.freeze()));
        Ok(AppendedRange {
            first_offset: base,
            last_offset: last,
        })
    }

    fn wait_durable(
        &self,
        _partition: i32,
        _end_offset: i64,
    ) -> PortFuture<Result<(), ResponseError>> {
        Box::pin(async { Ok(()) })
    }

    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>> {
        Some(Ok((0, self.end(partition))))
    }

    fn read(
        &self,
        partition: i32,
        offset: i64,
        _max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError> {
        let mut out = BytesMut::new();
        for (p, base, b) in self.batches.lock().unwrap().iter() {
            if *p == partition && base + last_offset_delta(b) >= offset && *base < end_offset {
                out.put_slice(b);
            }
        }
        Ok(out.freeze())
    }
}

/// Partitions, replication factor and configs of a topic creation.
type TopicCreation = (i32, i16, BTreeMap<String, String>);

struct MemCluster {
    image: Mutex<Arc<MetadataImage>>,
    next_pid: AtomicI64,
    created: Mutex<Vec<TopicCreation>>,
}

impl Cluster for MemCluster {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().unwrap().clone()
    }

    fn next_producer_id(&self) -> Result<i64, ResponseError> {
        Ok(self.next_pid.fetch_add(1, Ordering::AcqRel))
    }

    fn create_transaction_state_topic(
        &self,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>> {
        self.created
            .lock()
            .unwrap()
            .push((partitions, replication_factor, configs));
        *self.image.lock().unwrap() = image(|_| NODE, 0);
        Box::pin(async { Ok(()) })
    }
}

/// Records the markers it is given; while `refuse` is set it answers a retriable error.
#[derive(Default)]
struct MemMarkers {
    written: Mutex<Vec<Marker>>,
    refuse: AtomicBool,
    calls: AtomicUsize,
}

impl MarkerSink for MemMarkers {
    fn write_markers(&self, markers: Vec<Marker>) -> PortFuture<Vec<Result<(), ResponseError>>> {
        let refuse = self.refuse.load(Ordering::Acquire);
        self.calls.fetch_add(1, Ordering::AcqRel);
        let out = markers
            .iter()
            .map(|_| {
                if refuse {
                    Err(ResponseError::NotEnoughReplicas)
                } else {
                    Ok(())
                }
            })
            .collect();
        if !refuse {
            self.written.lock().unwrap().extend(markers);
        }
        Box::pin(async move { out })
    }
}

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

/// `__transaction_state` with leaders from `leader_of`, at `leader_epoch`.
fn image(leader_of: impl Fn(i32) -> i32, leader_epoch: i32) -> Arc<MetadataImage> {
    let mut image = MetadataImage::empty();
    let topic_id = Uuid::new_v4();
    let mut offset = 0;
    let mut records = vec![MetadataRecord::Topic {
        name: TRANSACTION_STATE_TOPIC.to_string(),
        topic_id,
    }];
    for p in 0..PARTITIONS {
        let leader = leader_of(p);
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: p,
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch,
            partition_epoch: 0,
        });
    }
    for r in records {
        image.apply(offset, &r).unwrap();
        offset += 1;
    }
    Arc::new(image)
}

struct Fixture {
    log: Arc<MemLog>,
    cluster: Arc<MemCluster>,
    markers: Arc<MemMarkers>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            log: Arc::new(MemLog::default()),
            cluster: Arc::new(MemCluster {
                image: Mutex::new(image(|_| NODE, 3)),
                next_pid: AtomicI64::new(1000),
                created: Mutex::new(Vec::new()),
            }),
            markers: Arc::new(MemMarkers::default()),
            clock: Arc::new(ManualClock(AtomicI64::new(1_000_000))),
        }
    }

    /// A coordinator over these ports, following the current image.
    async fn coordinator(&self) -> Arc<TransactionCoordinator> {
        self.coordinator_with(TxnConfig::default()).await
    }

    async fn coordinator_with(&self, config: TxnConfig) -> Arc<TransactionCoordinator> {
        let ports = Ports {
            log: self.log.clone(),
            cluster: self.cluster.clone(),
            markers: self.markers.clone(),
            clock: self.clock.clone(),
        };
        let c = TransactionCoordinator::new(ports, config, NODE);
        c.on_image(&self.cluster.image()).await;
        c
    }

    fn advance(&self, ms: i64) {
        self.clock.0.fetch_add(ms, Ordering::AcqRel);
    }
}

/// Lets spawned marker tasks run (time is paused, so their back-offs pass at once).
async fn settle() {
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn tp(topic: &str, p: i32) -> (String, i32) {
    (topic.to_string(), p)
}

#[tokio::test(start_paused = true)]
async fn commit_with_offsets_writes_markers_everywhere_then_completes() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    assert_eq!((pid, epoch), (1000, 0));
    c.add_partitions("tx", pid, epoch, &[tp("t", 0), tp("t", 1)])
        .await
        .unwrap();
    c.add_offsets("tx", pid, epoch, "g", 50).await.unwrap();
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit).await,
        Ok((pid, epoch))
    );
    settle().await;
    let m = c.describe("tx").unwrap().unwrap();
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert!(m.partitions.is_empty());
    let written = f.markers.written.lock().unwrap().clone();
    let mut targets: Vec<_> = written
        .iter()
        .map(|mk| (mk.topic.clone(), mk.partition))
        .collect();
    targets.sort();
    let offsets = tp(OFFSETS_TOPIC, partition_for("g", 50));
    assert_eq!(targets, vec![offsets, tp("t", 0), tp("t", 1)]);
    assert!(written.iter().all(|mk| mk.result == TxnResult::Commit
        && mk.coordinator_epoch == 3
        && mk.producer_id == pid));
    // Init, three adds (one each for the data and the offsets; the first add changes state),
    // prepare, complete: every change is a record of the id's partition.
    let p = partition_for("tx", PARTITIONS);
    assert_eq!(f.log.records_in(p), 5);
    // The retried EndTxn is answered with success and writes nothing.
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit).await,
        Ok((pid, epoch))
    );
    assert_eq!(f.log.records_in(p), 5);
}

#[tokio::test(start_paused = true)]
async fn ids_of_partitions_led_elsewhere_are_not_served() {
    let f = Fixture::new();
    let owned = partition_for("tx", PARTITIONS);
    *f.cluster.image.lock().unwrap() = image(|p| if p == owned { OTHER_NODE } else { NODE }, 0);
    let c = f.coordinator().await;
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await.unwrap_err(),
        ResponseError::NotCoordinator
    );
    assert!(!c.active_partitions().contains(&owned));
    // No topic at all: the coordinator is not available yet.
    let empty = Fixture::new();
    *empty.cluster.image.lock().unwrap() = Arc::new(MetadataImage::empty());
    let c = empty.coordinator().await;
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await.unwrap_err(),
        ResponseError::CoordinatorNotAvailable
    );
}

#[tokio::test(start_paused = true)]
async fn losing_leadership_unloads_and_a_new_epoch_reloads() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    c.on_image(&image(|_| OTHER_NODE, 4)).await;
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit)
            .await
            .unwrap_err(),
        ResponseError::NotCoordinator
    );
    c.on_image(&image(|_| NODE, 5)).await;
    // Reloaded from the log: still ongoing, and the markers carry the new epoch.
    assert_eq!(c.describe("tx").unwrap().unwrap().state, TxnState::Ongoing);
    c.end_txn("tx", pid, epoch, TxnResult::Abort).await.unwrap();
    settle().await;
    let written = f.markers.written.lock().unwrap().clone();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].coordinator_epoch, 5);
    assert_eq!(written[0].result, TxnResult::Abort);
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_prepare_commit_completes_the_transaction() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0), tp("t", 1)])
        .await
        .unwrap();
    // The partitions refuse markers: the first coordinator never gets past PrepareCommit.
    f.markers.refuse.store(true, Ordering::Release);
    c.end_txn("tx", pid, epoch, TxnResult::Commit)
        .await
        .unwrap();
    settle().await;
    assert_eq!(
        c.describe("tx").unwrap().unwrap().state,
        TxnState::PrepareCommit
    );
    // It "crashes": leadership goes; a new coordinator loads the same log.
    c.on_image(&image(|_| OTHER_NODE, 4)).await;
    drop(c);
    f.markers.refuse.store(false, Ordering::Release);
    let c2 = f.coordinator().await;
    settle().await;
    let m = c2.describe("tx").unwrap().unwrap();
    assert_eq!(m.state, TxnState::CompleteCommit, "{m:?}");
    let written = f.markers.written.lock().unwrap().clone();
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|mk| mk.result == TxnResult::Commit));
    // And the completion is in the log for the next load.
    let c3 = f.coordinator().await;
    assert_eq!(
        c3.describe("tx").unwrap().unwrap().state,
        TxnState::CompleteCommit
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    // The new producer is told to retry while the old transaction is aborted.
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await.unwrap_err(),
        ResponseError::ConcurrentTransactions
    );
    settle().await;
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await,
        Ok((pid, 2))
    );
    let written = f.markers.written.lock().unwrap().clone();
    assert_eq!(written.len(), 1);
    assert_eq!(
        (written[0].result, written[0].producer_epoch),
        (TxnResult::Abort, 1)
    );
    // The zombie's requests are fenced.
    assert_eq!(
        c.add_partitions("tx", pid, epoch, &[tp("t", 1)])
            .await
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit)
            .await
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
}

#[tokio::test(start_paused = true)]
async fn a_transaction_past_its_timeout_is_aborted() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 10_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    f.advance(10_000);
    assert!(c.abort_timed_out().await.is_empty());
    f.advance(1);
    assert_eq!(c.abort_timed_out().await, vec!["tx".to_string()]);
    settle().await;
    let m = c.describe("tx").unwrap().unwrap();
    assert_eq!((m.state, m.producer_epoch), (TxnState::CompleteAbort, 1));
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit)
            .await
            .unwrap_err(),
        ResponseError::ProducerFenced
    );
}

#[tokio::test(start_paused = true)]
async fn idle_ids_expire_with_a_tombstone() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    f.advance(TxnConfig::default().transactional_id_expiration_ms - 1);
    assert!(c.expire_transactional_ids().await.is_empty());
    f.advance(1);
    assert_eq!(c.expire_transactional_ids().await, vec!["tx".to_string()]);
    assert_eq!(c.describe("tx").unwrap(), None);
    // The tombstone keeps it gone after a reload; a new init starts a new producer id.
    let c2 = f.coordinator().await;
    assert_eq!(c2.describe("tx").unwrap(), None);
    assert_eq!(
        c2.init_producer_id("tx", 60_000, None, 0).await,
        Ok((1001, 0))
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_changes_nothing() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    f.log.fail_appends.store(true, Ordering::Release);
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await.unwrap_err(),
        ResponseError::NotCoordinator
    );
    assert_eq!(
        c.describe("tx").unwrap(),
        None,
        "a half-made id is not kept"
    );
    f.log.fail_appends.store(false, Ordering::Release);
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    f.log.fail_appends.store(true, Ordering::Release);
    assert!(c
        .add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .is_err());
    assert_eq!(c.describe("tx").unwrap().unwrap().state, TxnState::Empty);
    f.log.fail_appends.store(false, Ordering::Release);
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    assert_eq!(
        c.verify_partitions("tx", pid, epoch, &[tp("t", 0), tp("t", 1)])
            .unwrap(),
        vec![
            (tp("t", 0), Ok(())),
            (tp("t", 1), Err(ResponseError::TransactionAbortable))
        ]
    );
    assert_eq!(
        c.init_producer_id("tx", 900_001, None, 0)
            .await
            .unwrap_err(),
        ResponseError::InvalidTransactionTimeout
    );
    // An empty transactional id is an invalid request in every API.
    assert_eq!(
        c.init_producer_id("", 60_000, None, 0).await.unwrap_err(),
        ResponseError::InvalidRequest
    );
    assert_eq!(
        c.add_partitions("", pid, epoch, &[tp("t", 0)])
            .await
            .unwrap_err(),
        ResponseError::InvalidRequest
    );
    assert_eq!(
        c.end_txn("", pid, epoch, TxnResult::Abort)
            .await
            .unwrap_err(),
        ResponseError::InvalidRequest
    );
    assert_eq!(
        c.verify_partitions("", pid, epoch, &[tp("t", 0)])
            .unwrap_err(),
        ResponseError::InvalidRequest
    );
}

#[tokio::test(start_paused = true)]
async fn transaction_version_2_answers_the_bumped_epoch() {
    let f = Fixture::new();
    let tv2 = TxnConfig {
        transaction_version_level: 2,
        ..TxnConfig::default()
    };
    let c = f.coordinator_with(tv2.clone()).await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 2).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit).await,
        Ok((pid, 1))
    );
    settle().await;
    assert_eq!(f.markers.written.lock().unwrap()[0].producer_epoch, 1);
    // The retry with the old epoch gets the same answer.
    assert_eq!(
        c.end_txn("tx", pid, epoch, TxnResult::Commit).await,
        Ok((pid, 1))
    );
    // The records are the flexible v1 ones; a reload reads them.
    let c2 = f.coordinator_with(tv2).await;
    let m = c2.describe("tx").unwrap().unwrap();
    assert_eq!(
        (m.state, m.producer_epoch, m.client_transaction_version),
        (TxnState::CompleteCommit, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn the_timers_abort_an_abandoned_transaction() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 10_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    let timers = tokio::spawn(c.clone().run_timers());
    settle().await;
    assert_eq!(c.describe("tx").unwrap().unwrap().state, TxnState::Ongoing);
    f.advance(10_001);
    // The next tick of transaction.abort.timed.out.transaction.cleanup.interval.ms (10 s).
    tokio::time::sleep(std::time::Duration::from_millis(10_000)).await;
    settle().await;
    let m = c.describe("tx").unwrap().unwrap();
    assert_eq!((m.state, m.producer_epoch), (TxnState::CompleteAbort, 1));
    assert_eq!(f.markers.written.lock().unwrap().len(), 1);
    timers.abort();
}

#[tokio::test(start_paused = true)]
async fn list_transactions_filters_by_state_producer_and_duration() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (a, ae) = c.init_producer_id("a", 60_000, None, 0).await.unwrap();
    let (b, _) = c.init_producer_id("b", 60_000, None, 0).await.unwrap();
    c.add_partitions("a", a, ae, &[tp("t", 0)]).await.unwrap();
    f.advance(5_000);
    let all = c.list(&[], &[], None).unwrap();
    assert_eq!(all.len(), 2);
    let ongoing = c.list(&[TxnState::Ongoing], &[], None).unwrap();
    assert_eq!(ongoing.len(), 1);
    assert_eq!(ongoing[0].transactional_id, "a");
    assert_eq!(c.list(&[], &[b], None).unwrap()[0].transactional_id, "b");
    assert_eq!(c.list(&[], &[], Some(5_000)).unwrap().len(), 1);
    assert!(c.list(&[], &[], Some(5_001)).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_marker_task_per_transaction() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    let (pid, epoch) = c.init_producer_id("tx", 60_000, None, 0).await.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("t", 0)])
        .await
        .unwrap();
    f.markers.refuse.store(true, Ordering::Release);
    c.end_txn("tx", pid, epoch, TxnResult::Commit)
        .await
        .unwrap();
    settle().await;
    let one_task = f.markers.calls.load(Ordering::Acquire);
    assert!(one_task > 5, "the task retries: {one_task}");
    // A second request for the same markers while the first task retries adds no task: the
    // partitions see the same rate of attempts.
    c.spawn_markers("tx".to_string());
    settle().await;
    let after = f.markers.calls.load(Ordering::Acquire) - one_task;
    assert!(after <= one_task + 1, "{after} attempts against {one_task}");
    f.markers.refuse.store(false, Ordering::Release);
    settle().await;
    assert_eq!(f.markers.written.lock().unwrap().len(), 1);
    assert_eq!(
        c.describe("tx").unwrap().unwrap().state,
        TxnState::CompleteCommit
    );
}

#[tokio::test(start_paused = true)]
async fn the_state_topic_is_created_with_kafkas_settings_on_first_use() {
    let f = Fixture::new();
    *f.cluster.image.lock().unwrap() = Arc::new(MetadataImage::empty());
    let c = f.coordinator().await;
    c.ensure_state_topic().await.unwrap();
    c.ensure_state_topic().await.unwrap();
    let created = f.cluster.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1, "created once");
    let (partitions, rf, configs) = &created[0];
    assert_eq!((*partitions, *rf), (50, 1));
    assert_eq!(configs["cleanup.policy"], "compact");
    assert_eq!(configs["compression.type"], "uncompressed");
    assert_eq!(configs["unclean.leader.election.enable"], "false");
    assert_eq!(configs["segment.bytes"], "104857600");
    // Once the image has it, the coordinator serves its partitions.
    c.on_image(&f.cluster.image()).await;
    assert_eq!(
        c.init_producer_id("tx", 60_000, None, 0).await,
        Ok((1000, 0))
    );
}

/// Appends one batch of raw (key, value) records to partition `p`.
fn append_raw(log: &MemLog, p: i32, entries: Vec<(Option<Bytes>, Option<Bytes>)>) {
    let mut batch = strom_metadata::metadata_log::encode_internal_batch(entries, 0).unwrap();
    log.append(p, &mut batch, 0).unwrap();
}

#[test]
fn the_loader_keeps_the_last_record_of_an_id_and_skips_what_it_cannot_read() {
    use crate::records::{encode_key, encode_value, TopicPartitions, TxnValue};
    let log = MemLog::default();
    let value = |state, epoch| TxnValue {
        producer_id: 7,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch: epoch,
        timeout_ms: 60_000,
        state,
        partitions: Some(vec![TopicPartitions {
            topic: "t".into(),
            partitions: vec![0, 1],
        }]),
        last_update_timestamp_ms: 5,
        start_timestamp_ms: 4,
        client_transaction_version: 0,
    };
    let key = |id: &str| Some(encode_key(id).unwrap());
    let val = |v: &TxnValue| Some(encode_value(v, 0).unwrap());
    append_raw(
        &log,
        0,
        vec![
            (key("a"), val(&value(TxnState::Ongoing, 0))),
            (key("b"), val(&value(TxnState::Ongoing, 0))),
            // Garbage: a key of an unknown version, a value that does not decode, no key.
            (
                Some(Bytes::from_static(&[0, 9, 0, 0])),
                val(&value(TxnState::Ongoing, 0)),
            ),
            (key("a"), Some(Bytes::from_static(&[0, 0, 1]))),
            (None, val(&value(TxnState::Ongoing, 0))),
        ],
    );
    append_raw(
        &log,
        0,
        vec![
            (key("a"), val(&value(TxnState::PrepareCommit, 0))),
            (key("b"), None),
        ],
    );
    // A torn tail: half a batch.
    let mut tail = strom_metadata::metadata_log::encode_internal_batch(
        vec![(key("c"), val(&value(TxnState::Ongoing, 0)))],
        0,
    )
    .unwrap();
    tail.truncate(tail.len() / 2);
    log.batches.lock().unwrap().push((0, 7, tail.freeze()));

    let loaded = crate::loader::load_transactions(&log, 0).unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    let a = &loaded["a"];
    assert_eq!(a.state, TxnState::PrepareCommit);
    assert_eq!(a.pending_markers(9).len(), 2);
    // An empty partition: nothing loaded.
    assert!(crate::loader::load_transactions(&log, 3)
        .unwrap()
        .is_empty());
}

#[test]
fn find_coordinator_names_the_leader_of_the_ids_partition() {
    use crate::coordinator::{coordinator_node, led_partitions};
    let owned = partition_for("tx", PARTITIONS);
    let img = image(|p| if p == owned { OTHER_NODE } else { NODE }, 7);
    assert_eq!(coordinator_node(&img, "tx"), Some(OTHER_NODE));
    let led = led_partitions(&img, NODE);
    assert_eq!(led.len(), PARTITIONS as usize - 1);
    assert!(led.values().all(|epoch| *epoch == 7));
    assert!(!led.contains_key(&owned));
    // No leader, or no topic: no coordinator yet.
    assert_eq!(coordinator_node(&image(|_| -1, 0), "tx"), None);
    assert_eq!(coordinator_node(&MetadataImage::empty(), "tx"), None);
}

#[tokio::test(start_paused = true)]
async fn below_transaction_version_1_records_are_value_v0() {
    let f = Fixture::new();
    let c = f.coordinator().await;
    c.init_producer_id("tx", 60_000, None, 2).await.unwrap();
    let p = partition_for("tx", PARTITIONS);
    let loaded = crate::loader::load_transactions(f.log.as_ref(), p).unwrap();
    // v0 has no client version: a reload sees 0, as Kafka's would.
    assert_eq!(loaded["tx"].client_transaction_version, 0);
    let raw = f.log.read(p, 0, 1 << 20, i64::MAX).unwrap();
    let mut one = raw.clone();
    let batch = proto_kafka::records::RecordBatchDecoder::decode(&mut one).unwrap();
    let value = batch.records[0].value.clone().unwrap();
    assert_eq!(&value[..2], &[0, 0], "value version 0");
}

/// A `__transaction_state` whose offsets exist only once an append is committed (shared
/// storage): each append waits until the test lands or fails it.
#[derive(Default)]
struct CommitLog {
    mem: Arc<MemLog>,
    queued: Mutex<Vec<QueuedAppend>>,
}

type QueuedAppend = (
    i32,
    BytesMut,
    tokio::sync::oneshot::Sender<Result<AppendedRange, ResponseError>>,
);

impl CommitLog {
    fn queued(&self) -> usize {
        self.queued.lock().unwrap().len()
    }

    fn land(&self, i: usize) {
        let (p, mut batch, done) = self.queued.lock().unwrap().remove(i);
        let _ = done.send(self.mem.append(p, &mut batch, 0));
    }

    fn fail(&self, i: usize, e: ResponseError) {
        let (_, _, done) = self.queued.lock().unwrap().remove(i);
        let _ = done.send(Err(e));
    }
}

impl TransactionLog for CommitLog {
    fn append(&self, _: i32, _: &mut BytesMut, _: i64) -> Result<AppendedRange, ResponseError> {
        panic!("a log that sequences at commit has no synchronous append")
    }

    fn start_append(
        &self,
        partition: i32,
        batch: BytesMut,
        _transactional: bool,
        _now_ms: i64,
    ) -> Result<crate::ports::StartedAppend, ResponseError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queued.lock().unwrap().push((partition, batch, tx));
        Ok(crate::ports::StartedAppend {
            range: None,
            durable: Box::pin(async move {
                rx.await.unwrap_or(Err(ResponseError::NotLeaderOrFollower))
            }),
        })
    }

    fn wait_durable(&self, _: i32, _: i64) -> PortFuture<Result<(), ResponseError>> {
        Box::pin(async { Ok(()) })
    }

    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>> {
        self.mem.offsets(partition)
    }

    fn read(
        &self,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError> {
        self.mem.read(partition, offset, max_bytes, end_offset)
    }
}

async fn coordinator_over(f: &Fixture, log: Arc<CommitLog>) -> Arc<TransactionCoordinator> {
    let ports = Ports {
        log,
        cluster: f.cluster.clone(),
        markers: f.markers.clone(),
        clock: f.clock.clone(),
    };
    let c = TransactionCoordinator::new(ports, TxnConfig::default(), NODE);
    c.on_image(&f.cluster.image()).await;
    c
}

async fn until_queued(log: &CommitLog, n: usize) {
    while log.queued() < n {
        tokio::task::yield_now().await;
    }
}

/// On a log that gives offsets only at commit, InitProducerId's transition is applied (and
/// answered) once its record is committed, not before; a new coordinator loading the log
/// after the first one is gone finds the id with its producer id and epoch, and a second
/// InitProducerId there bumps that epoch (fencing the first producer) rather than starting
/// a new id. A record refused at commit (a fenced leader) answers NOT_COORDINATOR and
/// changes nothing.
#[tokio::test(start_paused = true)]
async fn transitions_on_a_log_sequenced_at_commit_apply_once_committed() {
    let f = Fixture::new();
    let log = Arc::new(CommitLog::default());
    let c = coordinator_over(&f, log.clone()).await;
    let init = {
        let c = c.clone();
        tokio::spawn(async move { c.init_producer_id("tx", 60_000, None, 0).await })
    };
    until_queued(&log, 1).await;
    let before = c.describe("tx").unwrap().unwrap();
    // Kafka's placeholder for a new id: the transition pending, its epoch not yet given.
    assert_eq!(before.producer_epoch, -1, "not applied before committed");
    assert!(before.pending.is_some());
    log.land(0);
    let (pid, epoch) = init.await.unwrap().unwrap();
    let after = c.describe("tx").unwrap().unwrap();
    assert_eq!((after.producer_id, after.producer_epoch), (pid, epoch));
    assert!(after.pending.is_none());

    let refused = {
        let c = c.clone();
        tokio::spawn(async move { c.init_producer_id("other", 60_000, None, 0).await })
    };
    until_queued(&log, 1).await;
    log.fail(0, ResponseError::NotLeaderOrFollower);
    assert_eq!(refused.await.unwrap(), Err(ResponseError::NotCoordinator));
    let other = c.describe("other").unwrap();
    assert!(
        other.is_none_or(|m| m.producer_epoch == -1 && m.pending.is_none()),
        "nothing applied"
    );

    drop(c);
    let next = coordinator_over(&f, log.clone()).await;
    let m = next.describe("tx").unwrap().unwrap();
    assert_eq!((m.producer_id, m.producer_epoch), (pid, epoch));
    let again = {
        let c = next.clone();
        tokio::spawn(async move { c.init_producer_id("tx", 60_000, None, 0).await })
    };
    // Until every append of it lands (an ongoing transaction's abort first would add more).
    loop {
        until_queued(&log, 1).await;
        log.land(0);
        tokio::task::yield_now().await;
        if again.is_finished() {
            break;
        }
    }
    assert_eq!(again.await.unwrap(), Ok((pid, epoch + 1)));
}
