//! The coordinator runtime driven through in-memory ports: no broker, no disk, no wall clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::ResponseError;
use strom_metadata::{MetadataDelta, MetadataImage, MetadataPublisher, MetadataRecord};
use uuid::Uuid;

use crate::coordinator::{CommitEntry, Committer};
use crate::ports::{AppendedRange, Clock, Cluster, OffsetsLog, PortFuture, Ports, ReadError};
use crate::state::{JoinRequest, Outcome};
use crate::{partition_for, GroupConfig, GroupCoordinator, OFFSETS_TOPIC};

const NODE: i32 = 1;
const OTHER_NODE: i32 = 2;
const PARTITIONS: i32 = 4;

/// `__consumer_offsets` in memory: per partition, the batches with their base offsets.
#[derive(Default)]
struct MemLog {
    batches: Mutex<HashMap<i32, Vec<(i64, Bytes)>>>,
}

impl MemLog {
    fn end_offset(batches: &[(i64, Bytes)]) -> i64 {
        batches
            .last()
            .map_or(0, |(base, b)| base + last_offset_delta(b) as i64 + 1)
    }
}

fn last_offset_delta(batch: &[u8]) -> i32 {
    i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]])
}

impl OffsetsLog for MemLog {
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        _now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        let mut all = self.batches.lock().unwrap();
        let log = all.entry(partition).or_default();
        let base = MemLog::end_offset(log);
        // The base offset sits before the CRC'd part of the header: patching it is what a
        // real log does too.
        let mut patched = BytesMut::with_capacity(batch.len());
        patched.put_i64(base);
        patched.put_slice(&batch[8..]);
        let last = base + last_offset_delta(&patched) as i64;
        log.push((base, patched.freeze()));
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
        let all = self.batches.lock().unwrap();
        let end = all.get(&partition).map_or(0, |l| MemLog::end_offset(l));
        Some(Ok((0, end)))
    }

    fn read(
        &self,
        partition: i32,
        offset: i64,
        _max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError> {
        let all = self.batches.lock().unwrap();
        let mut out = BytesMut::new();
        for (base, b) in all.get(&partition).into_iter().flatten() {
            let last = base + last_offset_delta(b) as i64;
            if last >= offset && *base < end_offset {
                out.put_slice(b);
            }
        }
        Ok(out.freeze())
    }
}

/// A metadata image that tests rewrite: topics with their partitions' leaders.
struct MemCluster {
    image: Mutex<Arc<MetadataImage>>,
}

impl Cluster for MemCluster {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().unwrap().clone()
    }

    fn create_offsets_topic(
        &self,
        _partitions: i32,
        _replication_factor: i16,
        _configs: BTreeMap<String, String>,
    ) -> PortFuture<Result<(), String>> {
        Box::pin(async { Err("tests create topics through the image".to_string()) })
    }
}

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }
}

/// An image with `__consumer_offsets` (leaders from `leader_of`) and a topic `t` of 2
/// partitions led here.
fn image(leader_of: impl Fn(i32) -> i32) -> Arc<MetadataImage> {
    let mut image = MetadataImage::empty();
    let mut offset = 0;
    let mut apply = |image: &mut MetadataImage, r: MetadataRecord| {
        image.apply(offset, &r).unwrap();
        offset += 1;
    };
    for (name, partitions, leaders) in [
        (
            OFFSETS_TOPIC,
            PARTITIONS,
            (0..PARTITIONS).map(&leader_of).collect::<Vec<_>>(),
        ),
        ("t", 2, vec![NODE, NODE]),
    ] {
        let topic_id = Uuid::new_v4();
        apply(
            &mut image,
            MetadataRecord::Topic {
                name: name.to_string(),
                topic_id,
            },
        );
        for p in 0..partitions {
            let leader = leaders[p as usize];
            apply(
                &mut image,
                MetadataRecord::Partition {
                    topic_id,
                    partition: p,
                    replicas: vec![leader],
                    isr: vec![leader],
                    leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            );
        }
    }
    Arc::new(image)
}

struct Fixture {
    log: Arc<MemLog>,
    cluster: Arc<MemCluster>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new(image: Arc<MetadataImage>) -> Fixture {
        Fixture {
            log: Arc::new(MemLog::default()),
            cluster: Arc::new(MemCluster {
                image: Mutex::new(image),
            }),
            clock: Arc::new(ManualClock(AtomicI64::new(1_000_000))),
        }
    }

    fn coordinator(&self) -> Arc<GroupCoordinator> {
        let ports = Ports {
            log: self.log.clone(),
            cluster: self.cluster.clone(),
            clock: self.clock.clone(),
        };
        Arc::new(GroupCoordinator::new(GroupConfig::default(), NODE, ports))
    }

    fn set_image(&self, image: Arc<MetadataImage>) {
        *self.cluster.image.lock().unwrap() = image;
    }
}

fn simple_commit(
    groups: &GroupCoordinator,
    group: &str,
    offset: i64,
) -> Vec<Option<ResponseError>> {
    let who = Committer {
        member_id: "",
        group_instance_id: None,
        generation_id: -1,
        api_version: 8,
    };
    let entry = CommitEntry {
        topic: "t".to_string(),
        partition: 1,
        offset,
        leader_epoch: -1,
        metadata: None,
    };
    groups.commit(group, who, vec![entry]).results
}

fn committed(groups: &GroupCoordinator, group: &str) -> Option<i64> {
    groups
        .fetch_offsets(group, Some(vec![("t".to_string(), vec![1])]))
        .pop()
        .and_then(|(_, mut ps)| ps.pop())
        .and_then(|(_, c)| c.map(|c| c.offset))
}

fn join_request() -> JoinRequest {
    JoinRequest {
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), Bytes::from_static(b"m"))],
        require_known_member_id: false,
    }
}

#[test]
fn hosts_exactly_the_partitions_the_image_says_this_node_leads() {
    let fx = Fixture::new(image(|p| if p % 2 == 0 { NODE } else { OTHER_NODE }));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(
        groups.hosted_partitions().into_iter().collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn a_group_whose_partition_is_led_elsewhere_is_not_coordinated_here() {
    let fx = Fixture::new(image(|_| OTHER_NODE));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(
        simple_commit(&groups, "g", 5),
        vec![Some(ResponseError::NotCoordinator)]
    );
    assert_eq!(
        groups.heartbeat("g", "m", None, 1),
        Err(ResponseError::NotCoordinator)
    );
}

#[test]
fn gaining_a_partition_loads_its_groups_from_the_log() {
    let fx = Fixture::new(image(|_| NODE));
    let first = fx.coordinator();
    first.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(simple_commit(&first, "g", 42), vec![None]);
    assert_eq!(committed(&first, "g"), Some(42));
    // A second coordinator over the same log, first not leading the group's partition.
    let p = partition_for("g", PARTITIONS);
    let second = fx.coordinator();
    fx.set_image(image(|q| if q == p { OTHER_NODE } else { NODE }));
    second.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(committed(&second, "g"), None);
    assert!(!second.hosted_partitions().contains(&p));
    // Leadership moves here: the commit is read back from the log.
    fx.set_image(image(|_| NODE));
    let loaded = second.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(loaded, 1);
    assert_eq!(committed(&second, "g"), Some(42));
}

#[test]
fn losing_a_partition_unloads_its_groups_and_fails_their_waiters() {
    let fx = Fixture::new(image(|_| NODE));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    // A first join waits out the initial rebalance delay.
    let waiting = match groups.join("g", join_request()) {
        Outcome::Wait(rx) => rx,
        Outcome::Done(r) => panic!("join finished at once: {:?}", r.error),
    };
    let p = partition_for("g", PARTITIONS);
    fx.set_image(image(|q| if q == p { OTHER_NODE } else { NODE }));
    let delta = MetadataDelta {
        previous: image(|_| NODE),
        records: Vec::new(),
    };
    groups
        .on_metadata_update(&delta, &fx.cluster.image())
        .unwrap();
    assert!(groups.get("g").is_none(), "the group left memory");
    let answer = rt.block_on(waiting).unwrap();
    assert_eq!(answer.error, Some(ResponseError::NotCoordinator));
    assert_eq!(
        simple_commit(&groups, "g", 1),
        vec![Some(ResponseError::NotCoordinator)]
    );
}

#[test]
fn before_the_offsets_topic_exists_no_group_is_refused_as_foreign() {
    let mut empty = MetadataImage::empty();
    empty
        .apply(
            0,
            &MetadataRecord::Topic {
                name: "t".to_string(),
                topic_id: Uuid::new_v4(),
            },
        )
        .unwrap();
    let fx = Fixture::new(Arc::new(empty));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    assert!(groups.hosted_partitions().is_empty());
    assert_eq!(
        groups.heartbeat("g", "m", None, 1),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn deleted_topics_lose_their_committed_offsets() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Tombstones complete on a task, as they do in the broker.
    let _guard = rt.enter();
    let fx = Fixture::new(image(|_| NODE));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(simple_commit(&groups, "g", 7), vec![None]);
    let before = fx.cluster.image();
    let mut after = (*before).clone();
    let id = before.topic("t").unwrap().id;
    after
        .apply(
            before.offset + 1,
            &MetadataRecord::RemoveTopic { topic_id: id },
        )
        .unwrap();
    let after = Arc::new(after);
    fx.set_image(after.clone());
    let delta = MetadataDelta {
        previous: before,
        records: vec![MetadataRecord::RemoveTopic { topic_id: id }],
    };
    groups.on_metadata_update(&delta, &after).unwrap();
    assert_eq!(committed(&groups, "g"), None);
    // The tombstone is in the log: a reload does not bring the offset back.
    let reloaded = fx.coordinator();
    reloaded.on_image(&after).unwrap();
    assert_eq!(committed(&reloaded, "g"), None);
}

/// A transaction marker of `producer_id` as the transaction coordinator writes it: one
/// control record, key (version 0, type 1 COMMIT / 0 ABORT), value (version 0, coordinator
/// epoch).
fn marker_batch(producer_id: i64, commit: bool) -> BytesMut {
    use proto_kafka::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let mut key = BytesMut::new();
    key.put_i16(0);
    key.put_i16(i16::from(commit));
    let mut value = BytesMut::new();
    value.put_i16(0);
    value.put_i32(0);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon_ms: None,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_000_000,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Vec::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf
}

fn txn_commit(
    rt: &tokio::runtime::Runtime,
    groups: &GroupCoordinator,
    group: &str,
    producer_id: i64,
    offset: i64,
) -> Vec<Option<ResponseError>> {
    let who = Committer {
        member_id: "",
        group_instance_id: None,
        generation_id: -1,
        api_version: 3,
    };
    let entry = CommitEntry {
        topic: "t".to_string(),
        partition: 1,
        offset,
        leader_epoch: -1,
        metadata: None,
    };
    let producer = crate::writer::TxnProducer {
        producer_id,
        producer_epoch: 0,
    };
    rt.block_on(groups.txn_commit(group, producer, who, vec![entry]))
}

/// KIP-98's exactly-once across a coordinator restart: TxnOffsetCommit's offsets are in the
/// log as the producer's transactional batch from the start, so a load decides them by that
/// producer's marker alone: COMMIT applies them, ABORT drops them, none keeps them pending
/// (and its marker, when it comes, applies them), and a plain commit written after the
/// transactional one is not undone by the transaction's COMMIT.
#[test]
fn a_load_decides_transactional_offsets_by_their_producers_marker() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let first = fx.coordinator();
    first.on_image(&fx.cluster.image()).unwrap();
    let p = |g: &str| partition_for(g, PARTITIONS);
    assert_eq!(txn_commit(&rt, &first, "committed", 10, 5), vec![None]);
    assert_eq!(txn_commit(&rt, &first, "aborted", 11, 6), vec![None]);
    assert_eq!(txn_commit(&rt, &first, "open", 12, 7), vec![None]);
    assert_eq!(txn_commit(&rt, &first, "overtaken", 13, 100), vec![None]);
    assert_eq!(simple_commit(&first, "overtaken", 50), vec![None]);
    assert!(first.has_pending_txn_offset("open", "t", 1));
    // The transactional batches are in the log, nothing is committed yet.
    assert_eq!(committed(&first, "committed"), None);
    for (group, producer_id, commit) in [
        ("committed", 10, true),
        ("aborted", 11, false),
        ("overtaken", 13, true),
    ] {
        fx.log
            .append(p(group), &mut marker_batch(producer_id, commit), 0)
            .unwrap();
    }
    // The coordinator dies before it hears of the markers: a new one loads the log.
    let second = fx.coordinator();
    second.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(committed(&second, "committed"), Some(5));
    assert!(!second.has_pending_txn_offset("committed", "t", 1));
    assert_eq!(committed(&second, "aborted"), None);
    assert!(!second.has_pending_txn_offset("aborted", "t", 1));
    assert_eq!(committed(&second, "overtaken"), Some(50));
    assert_eq!(committed(&second, "open"), None);
    assert!(second.has_pending_txn_offset("open", "t", 1));
    // The open transaction's marker comes: its offsets are the group's, with no new write.
    let records_before = MemLog::end_offset(&fx.log.batches.lock().unwrap()[&p("open")]);
    fx.log
        .append(p("open"), &mut marker_batch(12, true), 0)
        .unwrap();
    second.complete_transaction(p("open"), 12, true);
    assert_eq!(committed(&second, "open"), Some(7));
    assert!(!second.has_pending_txn_offset("open", "t", 1));
    assert_eq!(
        MemLog::end_offset(&fx.log.batches.lock().unwrap()[&p("open")]),
        records_before + 1,
        "only the marker was written"
    );
    // And a third load agrees.
    let third = fx.coordinator();
    third.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(committed(&third, "open"), Some(7));
    assert!(!third.has_pending_txn_offset("open", "t", 1));
}

/// Losing the partition forgets its open transactions' offsets (the next leader loads them);
/// gaining it again brings them back pending from the log.
#[test]
fn unloading_forgets_pending_transactional_offsets_and_loading_restores_them() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let groups = fx.coordinator();
    groups.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(txn_commit(&rt, &groups, "g", 20, 9), vec![None]);
    let p = partition_for("g", PARTITIONS);
    fx.set_image(image(|q| if q == p { OTHER_NODE } else { NODE }));
    groups.on_image(&fx.cluster.image()).unwrap();
    assert!(!groups.has_pending_txn_offset("g", "t", 1));
    fx.set_image(image(|_| NODE));
    groups.on_image(&fx.cluster.image()).unwrap();
    assert!(groups.has_pending_txn_offset("g", "t", 1));
}

/// A log that runs a hook at its first read: something happening while a load is under way.
struct HookLog {
    inner: Arc<MemLog>,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl OffsetsLog for HookLog {
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        self.inner.append(partition, batch, now_ms)
    }

    fn wait_durable(
        &self,
        partition: i32,
        end_offset: i64,
    ) -> PortFuture<Result<(), ResponseError>> {
        self.inner.wait_durable(partition, end_offset)
    }

    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>> {
        self.inner.offsets(partition)
    }

    fn read(
        &self,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        end_offset: i64,
    ) -> Result<Bytes, ReadError> {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.read(partition, offset, max_bytes, end_offset)
    }
}

/// A marker that lands while its partition loads, past the end the load reads to, still
/// decides the offsets the load finds pending (they do not stay pending for ever).
#[test]
fn a_marker_during_the_load_applies_once_the_partition_is_active() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let first = fx.coordinator();
    first.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(txn_commit(&rt, &first, "g", 30, 8), vec![None]);
    let p = partition_for("g", PARTITIONS);
    let log = Arc::new(HookLog {
        inner: fx.log.clone(),
        hook: Mutex::new(None),
    });
    let second = Arc::new(GroupCoordinator::new(
        GroupConfig::default(),
        NODE,
        Ports {
            log: log.clone(),
            cluster: fx.cluster.clone(),
            clock: fx.clock.clone(),
        },
    ));
    let weak = Arc::downgrade(&second);
    let inner = fx.log.clone();
    *log.hook.lock().unwrap() = Some(Box::new(move || {
        inner.append(p, &mut marker_batch(30, true), 0).unwrap();
        if let Some(c) = weak.upgrade() {
            c.complete_transaction(p, 30, true);
        }
    }));
    second.on_image(&fx.cluster.image()).unwrap();
    assert!(log.hook.lock().unwrap().is_none(), "the hook ran");
    assert_eq!(committed(&second, "g"), Some(8));
    assert!(!second.has_pending_txn_offset("g", "t", 1));
}

/// A log whose offsets exist only once an append is committed, as on shared storage: each
/// append waits in `queued` until the test lands it (in any order) or fails it.
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

    /// Commits the `i`th waiting append: only now does it get its offsets.
    fn land(&self, i: usize) {
        let (p, mut batch, done) = self.queued.lock().unwrap().remove(i);
        let range = self.mem.append(p, &mut batch, 0);
        let _ = done.send(range);
    }

    fn fail(&self, i: usize, e: ResponseError) {
        let (_, _, done) = self.queued.lock().unwrap().remove(i);
        let _ = done.send(Err(e));
    }
}

impl OffsetsLog for CommitLog {
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
            durable: Box::pin(
                async move { rx.await.unwrap_or(Err(ResponseError::NotCoordinator)) },
            ),
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

fn coordinator_over(log: Arc<CommitLog>, fx: &Fixture) -> Arc<GroupCoordinator> {
    let ports = Ports {
        log,
        cluster: fx.cluster.clone(),
        clock: fx.clock.clone(),
    };
    Arc::new(GroupCoordinator::new(GroupConfig::default(), NODE, ports))
}

fn simple_commit_pending(
    groups: &GroupCoordinator,
    group: &str,
    offset: i64,
) -> crate::coordinator::PendingCommit {
    let who = Committer {
        member_id: "",
        group_instance_id: None,
        generation_id: -1,
        api_version: 8,
    };
    let entry = CommitEntry {
        topic: "t".to_string(),
        partition: 1,
        offset,
        leader_epoch: -1,
        metadata: None,
    };
    groups.commit(group, who, vec![entry])
}

/// On a log that gives offsets only at commit, a commit is applied once durable, at its
/// record's offset: two commits that land in the other order leave the one last in the log,
/// which is what a new coordinator loading that log sees too.
#[test]
fn offsets_known_only_at_commit_are_applied_once_durable_in_log_order() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let log = Arc::new(CommitLog::default());
    let groups = coordinator_over(log.clone(), &fx);
    groups.on_image(&fx.cluster.image()).unwrap();
    let first = simple_commit_pending(&groups, "g", 5);
    let second = simple_commit_pending(&groups, "g", 9);
    assert_eq!(first.results, vec![None]);
    assert_eq!(log.queued(), 2);
    assert_eq!(committed(&groups, "g"), None, "nothing is durable yet");
    // The second commit lands first: its record is the partition's first.
    log.land(1);
    assert_eq!(rt.block_on(groups.finish_commit(second)), vec![None]);
    assert_eq!(committed(&groups, "g"), Some(9));
    log.land(0);
    assert_eq!(rt.block_on(groups.finish_commit(first)), vec![None]);
    assert_eq!(
        committed(&groups, "g"),
        Some(5),
        "the record last in the log wins"
    );
    let reloaded = coordinator_over(log.clone(), &fx);
    reloaded.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(committed(&reloaded, "g"), Some(5));
}

/// A commit whose append fails at commit (a fenced leader's: NOT_LEADER_OR_FOLLOWER) answers
/// NOT_COORDINATOR, as Kafka maps it, and changes nothing in memory or in the log.
#[test]
fn a_commit_fenced_at_commit_answers_not_coordinator_and_applies_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let log = Arc::new(CommitLog::default());
    let groups = coordinator_over(log.clone(), &fx);
    groups.on_image(&fx.cluster.image()).unwrap();
    let pending = simple_commit_pending(&groups, "g", 5);
    log.fail(0, ResponseError::NotLeaderOrFollower);
    assert_eq!(
        rt.block_on(groups.finish_commit(pending)),
        vec![Some(ResponseError::NotCoordinator)]
    );
    assert_eq!(committed(&groups, "g"), None);
    let p = partition_for("g", PARTITIONS);
    assert_eq!(log.offsets(p).unwrap().unwrap(), (0, 0));
}

/// TxnOffsetCommit on a log that gives offsets only at commit: the offsets are pending for
/// the producer once durable (not before), and its COMMIT marker applies them.
#[test]
fn transactional_offsets_known_only_at_commit_are_pending_once_durable() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = Fixture::new(image(|_| NODE));
    let log = Arc::new(CommitLog::default());
    let groups = coordinator_over(log.clone(), &fx);
    groups.on_image(&fx.cluster.image()).unwrap();
    let (answer, pending_before) = rt.block_on(async {
        let g = groups.clone();
        let task = tokio::spawn(async move {
            let who = Committer {
                member_id: "",
                group_instance_id: None,
                generation_id: -1,
                api_version: 3,
            };
            let entry = CommitEntry {
                topic: "t".to_string(),
                partition: 1,
                offset: 7,
                leader_epoch: -1,
                metadata: None,
            };
            let producer = crate::writer::TxnProducer {
                producer_id: 12,
                producer_epoch: 0,
            };
            g.txn_commit("g", producer, who, vec![entry]).await
        });
        while log.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let before = groups.has_pending_txn_offset("g", "t", 1);
        log.land(0);
        (task.await.unwrap(), before)
    });
    assert_eq!(answer, vec![None]);
    assert!(!pending_before, "not pending before it is durable");
    assert!(groups.has_pending_txn_offset("g", "t", 1));
    let p = partition_for("g", PARTITIONS);
    log.mem.append(p, &mut marker_batch(12, true), 0).unwrap();
    groups.complete_transaction(p, 12, true);
    assert_eq!(committed(&groups, "g"), Some(7));
}

/// A log one of whose partitions cannot be read for now (shared storage with PostgreSQL or the
/// object store away).
struct UnreadableLog {
    mem: Arc<MemLog>,
    unreadable: Mutex<Option<i32>>,
}

impl OffsetsLog for UnreadableLog {
    fn append(
        &self,
        partition: i32,
        batch: &mut BytesMut,
        now_ms: i64,
    ) -> Result<AppendedRange, ResponseError> {
        self.mem.append(partition, batch, now_ms)
    }

    fn wait_durable(&self, _: i32, _: i64) -> PortFuture<Result<(), ResponseError>> {
        Box::pin(async { Ok(()) })
    }

    fn offsets(&self, partition: i32) -> Option<Result<(i64, i64), ReadError>> {
        if *self.unreadable.lock().unwrap() == Some(partition) {
            return Some(Err(ReadError {
                partition: format!("{OFFSETS_TOPIC}-{partition}"),
                reason: "PostgreSQL is away".to_string(),
            }));
        }
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

/// A partition whose load fails does not keep the others from loading, stays unhosted
/// (NOT_COORDINATOR for its groups), and is loaded, with what its log holds, by a retry once
/// it can be read.
#[test]
fn a_failed_load_leaves_the_other_partitions_loaded_and_is_retried() {
    let fx = Fixture::new(image(|_| NODE));
    let g = "g";
    let p = partition_for(g, PARTITIONS);
    // An earlier coordinator committed the group's offset.
    let first = fx.coordinator();
    first.on_image(&fx.cluster.image()).unwrap();
    assert_eq!(simple_commit(&first, g, 42), vec![None]);
    drop(first);
    let log = Arc::new(UnreadableLog {
        mem: fx.log.clone(),
        unreadable: Mutex::new(Some(p)),
    });
    let ports = Ports {
        log: log.clone(),
        cluster: fx.cluster.clone(),
        clock: fx.clock.clone(),
    };
    let groups = Arc::new(GroupCoordinator::new(GroupConfig::default(), NODE, ports));
    assert!(groups.on_image(&fx.cluster.image()).is_err());
    let hosted: Vec<i32> = groups.hosted_partitions().into_iter().collect();
    let others: Vec<i32> = (0..PARTITIONS).filter(|q| *q != p).collect();
    assert_eq!(hosted, others, "every other partition is loaded");
    assert_eq!(
        simple_commit(&groups, g, 43),
        vec![Some(ResponseError::NotCoordinator)]
    );
    assert!(
        groups.retry_loads(&fx.cluster.image()).is_err(),
        "still unreadable"
    );
    *log.unreadable.lock().unwrap() = None;
    assert_eq!(groups.retry_loads(&fx.cluster.image()).unwrap(), 1);
    assert_eq!(committed(&groups, g), Some(42));
    assert_eq!(groups.hosted_partitions().len(), PARTITIONS as usize);
}
