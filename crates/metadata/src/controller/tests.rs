//! The controller over an in-memory log with a fixed clock and a config port of a few
//! rules: every answer is deterministic (topic ids aside), nothing touches the disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proto_kafka::ResponseError;

use super::*;
use crate::memory_log::MemoryMetadataLog;
use crate::publisher::{MetadataPublisher, PublishError};

/// Topic configs: `max.message.bytes` must be a number of at least 61; `cleanup.policy` is
/// the one list. Broker configs: `log.retention.ms` is dynamic, `log.dirs` is not,
/// `log.retention.hours` is pinned by a flag, and a `log.retention.ms` below 0 is invalid.
struct Rules;

impl ConfigValidator for Rules {
    fn validate_topic(
        &self,
        _image: &MetadataImage,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        match overrides.get("max.message.bytes").map(|v| v.parse::<i64>()) {
            Some(Ok(n)) if n < 61 => Err(format!("max.message.bytes {n} is below 61")),
            Some(Err(e)) => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    fn topic_list_default(
        &self,
        _image: &MetadataImage,
        name: &str,
    ) -> Result<Option<String>, String> {
        Ok((name == "cleanup.policy").then(|| "delete".to_string()))
    }

    fn broker_list_value(&self, _image: &MetadataImage, _name: &str) -> Option<String> {
        None
    }

    fn is_dynamic_broker_config(&self, name: &str) -> bool {
        name.starts_with("log.retention")
    }

    fn pinned_by(&self, name: &str) -> Option<String> {
        (name == "log.retention.hours").then(|| "--override".to_string())
    }

    fn validate_broker_change(
        &self,
        _image: &MetadataImage,
        _changed: &[String],
        _cluster_wide: bool,
        cluster: &BTreeMap<String, String>,
        this: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let bad = cluster
            .iter()
            .chain(this)
            .any(|(k, v)| k == "log.retention.ms" && v.parse::<i64>().map_or(true, |n| n < -1));
        if bad {
            return Err("log.retention.ms must be -1 or more".to_string());
        }
        Ok(())
    }
}

struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

fn config() -> ControllerConfig {
    ControllerConfig {
        node_id: 0,
        num_partitions: 1,
        default_replication_factor: 1,
        delete_topic_enable: true,
        max_partitions: 100,
        files_per_partition: 1,
        internal_topics: vec!["__consumer_offsets".to_string()],
    }
}

fn controller_on(log: Arc<MemoryMetadataLog>, config: ControllerConfig) -> Controller {
    let loader = Arc::new(MetadataLoader::new(MetadataImage::empty()));
    loader.catch_up(&*log).expect("the test log replays");
    Controller::new(
        config,
        Arc::new(Rules),
        Arc::new(FixedClock(1_700_000_000_000)),
        log,
        loader,
    )
}

fn controller() -> (Controller, Arc<MemoryMetadataLog>) {
    let log = Arc::new(MemoryMetadataLog::new());
    (controller_on(log.clone(), config()), log)
}

fn topic(name: &str, num_partitions: i32, replication_factor: i16) -> TopicRequest {
    TopicRequest {
        name: name.into(),
        num_partitions,
        replication_factor,
        assignments: BTreeMap::new(),
        configs: BTreeMap::new(),
    }
}

fn code<T>(r: &Result<T, ApiError>) -> i16 {
    r.as_ref().err().map_or(0, |e| e.code)
}

fn set(name: &str, value: &str) -> ConfigChange {
    ConfigChange::Incremental(vec![(name.to_string(), 0, Some(value.to_string()))])
}

#[test]
fn topic_names() {
    assert!(validate_topic_name("test").is_ok());
    assert!(validate_topic_name("a.b_c-D9").is_ok());
    for bad in [
        "",
        ".",
        "..",
        "bad/name",
        "sp ace",
        "ünï",
        "__cluster_metadata",
    ] {
        let e = validate_topic_name(bad).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTopicException.code(), "{bad}");
    }
    assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    assert!(validate_topic_name(&"x".repeat(250)).is_err());
}

#[tokio::test]
async fn create_topics_refusals_have_kafkas_codes() {
    let (c, log) = controller();
    assert_eq!(
        code(&c.create_topics(vec![topic("a.b", 2, 1)], false).await[0]),
        0
    );
    let mut bad_config = topic("cfg", 1, 1);
    bad_config
        .configs
        .insert("max.message.bytes".into(), "16".into());
    let mut both = topic("both", 1, 1);
    both.assignments.insert(0, vec![0]);
    let mut stranger = topic("stranger", -1, -1);
    stranger.assignments.insert(0, vec![7]);
    let cases = [
        (
            topic("bad/name", 1, 1),
            ResponseError::InvalidTopicException,
        ),
        (topic("a.b", 1, 1), ResponseError::TopicAlreadyExists),
        (topic("a_b", 1, 1), ResponseError::InvalidTopicException),
        (topic("zero", 0, 1), ResponseError::InvalidPartitions),
        (topic("rf0", 1, 0), ResponseError::InvalidReplicationFactor),
        (topic("rf2", 1, 2), ResponseError::InvalidReplicationFactor),
        (topic("huge", 99, 1), ResponseError::PolicyViolation),
        (topic("max", i32::MAX, 1), ResponseError::PolicyViolation),
        (bad_config, ResponseError::InvalidConfig),
        (both, ResponseError::InvalidRequest),
        (stranger, ResponseError::InvalidReplicaAssignment),
    ];
    let end = log.end_offset().unwrap();
    for (req, want) in cases {
        let name = req.name.clone();
        let got = c.create_topics(vec![req], false).await;
        assert_eq!(code(&got[0]), want.code(), "{name}");
    }
    assert_eq!(
        log.end_offset().unwrap(),
        end,
        "a refused request writes nothing"
    );
    // Validation only: answered as if created, nothing written.
    let got = c.create_topics(vec![topic("dry", 3, 1)], true).await;
    assert_eq!(got[0].as_ref().unwrap().num_partitions, 3);
    assert!(c.image().topic("dry").is_none());
    assert_eq!(log.end_offset().unwrap(), end);
    // The defaults stand in for -1.
    let got = c.create_topics(vec![topic("dflt", -1, -1)], false).await;
    let created = got[0].as_ref().unwrap();
    assert_eq!((created.num_partitions, created.replication_factor), (1, 1));
}

#[tokio::test]
async fn one_request_commits_its_valid_topics_in_one_append() {
    let (c, log) = controller();
    let got = c
        .create_topics(
            vec![topic("a", 1, 1), topic("", 1, 1), topic("b", 2, 1)],
            false,
        )
        .await;
    assert_eq!(got.iter().map(code).collect::<Vec<_>>(), vec![0, 17, 0]);
    // Topic + partition for a, topic + 2 partitions for b.
    assert_eq!(log.end_offset().unwrap(), 5);
    assert_eq!(c.image().offset, 4);
    assert_eq!(c.image().partition_count(), 3);
}

#[tokio::test]
async fn replicas_go_to_the_registered_brokers() {
    let (c, _log) = controller();
    let got = c.create_topics(vec![topic("solo", 2, 1)], false).await;
    assert_eq!(code(&got[0]), 0);
    let solo = c.image().topic("solo").cloned().unwrap();
    assert!(solo
        .partitions
        .values()
        .all(|p| p.replicas == vec![0] && p.leader == 0));
    for node_id in [1, 2] {
        c.register_broker(node_id, vec![], None).await.unwrap();
    }
    let got = c.create_topics(vec![topic("spread", 3, 2)], false).await;
    assert_eq!(code(&got[0]), 0);
    let spread = c.image().topic("spread").cloned().unwrap();
    let sets: Vec<Vec<i32>> = spread
        .partitions
        .values()
        .map(|p| p.replicas.clone())
        .collect();
    assert_eq!(sets, vec![vec![0, 1], vec![1, 2], vec![2, 0]]);
    assert_eq!(
        code(&c.create_topics(vec![topic("rf4", 1, 4)], false).await[0]),
        ResponseError::InvalidReplicationFactor.code()
    );
    // Added partitions keep the topic's replication factor and continue the stripe.
    let inc = PartitionIncrease {
        topic: "spread".into(),
        count: 4,
        assignments: None,
    };
    assert_eq!(code(&c.create_partitions(vec![inc], false).await[0]), 0);
    let spread = c.image().topic("spread").cloned().unwrap();
    assert_eq!(spread.partitions[&3].replicas, vec![0, 1]);
    // A chosen assignment may name any registered broker, and no other.
    let chosen = |replicas: Vec<i32>| PartitionIncrease {
        topic: "spread".into(),
        count: 5,
        assignments: Some(vec![replicas]),
    };
    assert_eq!(
        code(&c.create_partitions(vec![chosen(vec![2, 9])], false).await[0]),
        ResponseError::InvalidReplicaAssignment.code()
    );
    assert_eq!(
        code(&c.create_partitions(vec![chosen(vec![2, 1])], false).await[0]),
        0
    );
}

#[tokio::test]
async fn create_partitions_refusals_have_kafkas_codes() {
    let (c, _log) = controller();
    assert_eq!(
        code(&c.create_topics(vec![topic("t", 2, 1)], false).await[0]),
        0
    );
    let inc = |topic: &str, count| PartitionIncrease {
        topic: topic.into(),
        count,
        assignments: None,
    };
    let cases = [
        (inc("t", 2), ResponseError::InvalidPartitions),
        (inc("t", 1), ResponseError::InvalidPartitions),
        (inc("t", i32::MAX), ResponseError::PolicyViolation),
        (inc("nope", 3), ResponseError::UnknownTopicOrPartition),
    ];
    for (req, want) in cases {
        let count = req.count;
        assert_eq!(
            code(&c.create_partitions(vec![req], false).await[0]),
            want.code(),
            "{count}"
        );
    }
    let got = c
        .create_partitions(vec![inc("t", 3), inc("t", 4)], false)
        .await;
    assert_eq!(
        code(&got[1]),
        ResponseError::InvalidRequest.code(),
        "named twice"
    );
    assert_eq!(
        c.image().topic("t").unwrap().partitions.len(),
        3,
        "the first still counts"
    );
}

#[tokio::test]
async fn delete_topics_refusals_have_kafkas_codes() {
    let (c, _log) = controller();
    let names = ["t", "__consumer_offsets"];
    for n in names {
        assert_eq!(
            code(&c.create_topics(vec![topic(n, 1, 1)], false).await[0]),
            0
        );
    }
    let got = c
        .delete_topics(vec![
            TopicRef::Name("nope".into()),
            TopicRef::Id(uuid::Uuid::nil()),
            TopicRef::Name("__consumer_offsets".into()),
        ])
        .await;
    let codes: Vec<i16> = got.iter().map(code).collect();
    let want = [
        ResponseError::UnknownTopicOrPartition,
        ResponseError::UnknownTopicId,
        ResponseError::InvalidRequest,
    ];
    assert_eq!(codes, want.map(|e| e.code()));
    let id = c.image().topic("t").unwrap().id;
    let got = c
        .delete_topics(vec![TopicRef::Name("t".into()), TopicRef::Id(id)])
        .await;
    assert!(got
        .iter()
        .all(|r| code(r) == ResponseError::InvalidRequest.code()));
    let got = c.delete_topics(vec![TopicRef::Id(id)]).await;
    assert_eq!(got[0].as_ref().unwrap().0, "t");
    assert!(c.image().topic("t").is_none());

    let log = Arc::new(MemoryMetadataLog::new());
    let kept = controller_on(
        log,
        ControllerConfig {
            delete_topic_enable: false,
            ..config()
        },
    );
    assert_eq!(
        code(&kept.create_topics(vec![topic("t", 1, 1)], false).await[0]),
        0
    );
    let got = kept.delete_topics(vec![TopicRef::Name("t".into())]).await;
    assert_eq!(code(&got[0]), ResponseError::TopicDeletionDisabled.code());
}

#[tokio::test]
async fn config_changes_are_validated_through_the_port() {
    let (c, log) = controller();
    assert_eq!(
        code(&c.create_topics(vec![topic("t", 1, 1)], false).await[0]),
        0
    );
    let topics = |name: &str, change| vec![(name.to_string(), change)];
    let got = c
        .alter_topic_configs(topics("nope", set("retention.ms", "1")), false)
        .await;
    assert_eq!(code(&got[0]), ResponseError::UnknownTopicOrPartition.code());
    let got = c
        .alter_topic_configs(topics("t", set("max.message.bytes", "16")), false)
        .await;
    assert_eq!(code(&got[0]), ResponseError::InvalidConfig.code());
    let append =
        ConfigChange::Incremental(vec![("cleanup.policy".into(), 2, Some("compact".into()))]);
    assert_eq!(
        code(&c.alter_topic_configs(topics("t", append), false).await[0]),
        0
    );
    assert_eq!(
        c.image().topic_configs("t")["cleanup.policy"],
        "delete,compact"
    );

    let end = log.end_offset().unwrap();
    let cases = [
        (
            "7",
            set("log.retention.ms", "1"),
            ResponseError::InvalidRequest,
        ),
        ("", set("log.dirs", "/x"), ResponseError::InvalidRequest),
        (
            "",
            set("log.retention.hours", "1"),
            ResponseError::InvalidRequest,
        ),
        (
            "0",
            set("log.retention.ms", "-5"),
            ResponseError::InvalidConfig,
        ),
    ];
    for (resource, change, want) in cases {
        let got = c
            .alter_broker_configs(vec![(resource.to_string(), change)], false)
            .await;
        assert_eq!(code(&got[0]), want.code(), "broker {resource:?}");
    }
    assert_eq!(
        log.end_offset().unwrap(),
        end,
        "nothing refused was written"
    );
    let got = c
        .alter_broker_configs(vec![(String::new(), set("log.retention.ms", "5"))], false)
        .await;
    assert_eq!(code(&got[0]), 0);
    assert_eq!(c.image().broker_configs("")["log.retention.ms"], "5");
}

#[tokio::test]
async fn producer_ids_come_in_blocks_that_survive_a_restart() {
    let (c, log) = controller();
    let mut ids = Vec::new();
    for _ in 0..PRODUCER_ID_BLOCK_SIZE + 1 {
        ids.push(c.allocate_producer_id().await.unwrap());
    }
    let want: Vec<i64> = (0..=PRODUCER_ID_BLOCK_SIZE).collect();
    assert_eq!(ids, want);
    assert_eq!(log.end_offset().unwrap(), 2, "one record per block");
    // A controller that starts on the same log never hands out an id of the blocks taken.
    let again = controller_on(log.clone(), config());
    assert_eq!(
        again.allocate_producer_id().await.unwrap(),
        2 * PRODUCER_ID_BLOCK_SIZE
    );
}

/// Another writer appended after this controller's image: its append at the old position
/// is refused (NOT_CONTROLLER), nothing of it is written or published, and once the loader
/// has read what the other wrote, changes go through again.
#[tokio::test]
async fn a_stale_controller_is_fenced_by_the_log_position() {
    let (c, log) = controller();
    assert_eq!(
        code(&c.create_topics(vec![topic("mine", 1, 1)], false).await[0]),
        0
    );
    let other = controller_on(log.clone(), config());
    assert_eq!(
        code(
            &other
                .create_topics(vec![topic("theirs", 1, 1)], false)
                .await[0]
        ),
        0
    );
    let end = log.end_offset().unwrap();

    let got = c.create_topics(vec![topic("late", 1, 1)], false).await;
    assert_eq!(code(&got[0]), ResponseError::NotController.code());
    assert_eq!(log.end_offset().unwrap(), end);
    assert!(c.image().topic("late").is_none() && c.image().topic("theirs").is_none());
    assert!(c.allocate_producer_id().await.is_err());

    assert_eq!(c.loader().catch_up(&*log).unwrap(), 2);
    assert!(c.image().topic("theirs").is_some());
    assert_eq!(
        code(&c.create_topics(vec![topic("late", 1, 1)], false).await[0]),
        0
    );
}

#[tokio::test]
async fn a_failed_append_fails_every_valid_item_and_changes_nothing() {
    let (c, log) = controller();
    log.fail_next_append(std::io::ErrorKind::StorageFull);
    let got = c
        .create_topics(
            vec![topic("a", 1, 1), topic("", 1, 1), topic("b", 1, 1)],
            false,
        )
        .await;
    let storage = ResponseError::KafkaStorageError.code();
    assert_eq!(
        got.iter().map(code).collect::<Vec<_>>(),
        vec![storage, 17, storage]
    );
    assert_eq!(c.image().offset, -1);
    assert_eq!(
        code(&c.create_topics(vec![topic("a", 1, 1)], false).await[0]),
        0
    );
}

#[tokio::test]
async fn a_closed_controller_refuses_changes() {
    let (c, _log) = controller();
    c.close().await.unwrap();
    c.close().await.unwrap();
    let got = c.create_topics(vec![topic("a", 1, 1)], false).await;
    assert_eq!(code(&got[0]), ResponseError::KafkaStorageError.code());
}

/// Records each call in a shared list; fails while `fail` is set.
struct Recorder {
    name: &'static str,
    calls: Arc<Mutex<Vec<(&'static str, i64)>>>,
    fail: AtomicBool,
}

impl MetadataPublisher for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        assert!(delta.previous.offset < image.offset);
        self.calls.lock().unwrap().push((self.name, image.offset));
        if self.fail.load(Ordering::SeqCst) {
            return Err(PublishError {
                publisher: self.name,
                reason: "cannot open a log".into(),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn publishers_run_in_order_and_a_failure_never_uncommits() {
    let (c, log) = controller();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorder = |name| {
        Arc::new(Recorder {
            name,
            calls: calls.clone(),
            fail: AtomicBool::new(false),
        })
    };
    let (a, b, z) = (recorder("a"), recorder("b"), recorder("z"));
    c.loader().register(a);
    c.loader().register(b.clone());
    c.loader().register(z);
    assert_eq!(c.loader().publisher_names(), vec!["a", "b", "z"]);

    b.fail.store(true, Ordering::SeqCst);
    let got = c.create_topics(vec![topic("t", 1, 1)], false).await;
    assert_eq!(
        code(&got[0]),
        0,
        "the change is committed whatever a publisher says"
    );
    assert_eq!(*calls.lock().unwrap(), vec![("a", 1), ("b", 1), ("z", 1)]);
    assert!(c.image().topic("t").is_some());
    assert_eq!(log.end_offset().unwrap(), 2);
    assert!(!c.loader().is_healthy());
    assert_eq!(c.loader().publish_errors_total(), 1);
    assert_eq!(
        c.loader().failing(),
        vec![("b", "cannot open a log".to_string())]
    );

    b.fail.store(false, Ordering::SeqCst);
    assert_eq!(c.allocate_producer_id().await.unwrap(), 0);
    assert!(
        c.loader().is_healthy(),
        "a later success clears the failure"
    );
    assert_eq!(c.loader().publish_errors_total(), 1);
    assert_eq!(calls.lock().unwrap().len(), 6);
}

#[test]
#[should_panic(expected = "registered twice")]
fn a_publisher_is_registered_once() {
    let loader = MetadataLoader::new(MetadataImage::empty());
    let calls = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..2 {
        loader.register(Arc::new(Recorder {
            name: "same",
            calls: calls.clone(),
            fail: AtomicBool::new(false),
        }));
    }
}

/// Records the thread of each append, then appends to an in-memory log.
struct ThreadRecordingLog {
    inner: MemoryMetadataLog,
    append_threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl MetadataLogClient for ThreadRecordingLog {
    fn end_offset(&self) -> Result<i64, MetadataLogError> {
        self.inner.end_offset()
    }

    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        self.append_threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        self.inner.append(expected_offset, records, timestamp_ms)
    }

    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
        self.inner.read(from_offset, max_records)
    }

    fn wait_for_more(
        &self,
        offset: i64,
        timeout: std::time::Duration,
    ) -> Result<i64, MetadataLogError> {
        self.inner.wait_for_more(offset, timeout)
    }

    fn close(&self) -> Result<(), MetadataLogError> {
        self.inner.close()
    }
}

/// The append (an fsync, for the local log) and the publishers run off the runtime's
/// thread: on a current-thread runtime that thread is the test's own.
#[tokio::test]
async fn appends_and_publishers_run_off_the_async_thread() {
    let log = Arc::new(ThreadRecordingLog {
        inner: MemoryMetadataLog::new(),
        append_threads: Mutex::new(Vec::new()),
    });
    let loader = Arc::new(MetadataLoader::new(MetadataImage::empty()));
    let c = Controller::new(
        config(),
        Arc::new(Rules),
        Arc::new(FixedClock(0)),
        log.clone(),
        loader,
    );
    let published_on = Arc::new(Mutex::new(Vec::new()));
    struct ThreadOf(Arc<Mutex<Vec<std::thread::ThreadId>>>);
    impl MetadataPublisher for ThreadOf {
        fn name(&self) -> &'static str {
            "thread"
        }
        fn on_metadata_update(
            &self,
            _delta: &MetadataDelta,
            _image: &Arc<MetadataImage>,
        ) -> Result<(), PublishError> {
            self.0.lock().unwrap().push(std::thread::current().id());
            Ok(())
        }
    }
    c.loader()
        .register(Arc::new(ThreadOf(published_on.clone())));
    let runtime_thread = std::thread::current().id();
    assert_eq!(
        code(&c.create_topics(vec![topic("t", 1, 1)], false).await[0]),
        0
    );
    c.allocate_producer_id().await.unwrap();
    let appends = log.append_threads.lock().unwrap().clone();
    let publishes = published_on.lock().unwrap().clone();
    assert_eq!((appends.len(), publishes.len()), (2, 2));
    assert!(appends
        .iter()
        .chain(&publishes)
        .all(|t| *t != runtime_thread));
}

/// Readers see a change only once every publisher has applied it: while the replica
/// manager opens a new topic's logs, no request is told the topic exists.
#[tokio::test]
async fn readers_see_a_change_after_its_publishers() {
    struct SeenDuring {
        loader: std::sync::Weak<MetadataLoader>,
        seen: Mutex<Vec<(i64, i64)>>,
    }
    impl MetadataPublisher for SeenDuring {
        fn name(&self) -> &'static str {
            "seen"
        }
        fn on_metadata_update(
            &self,
            _delta: &MetadataDelta,
            image: &Arc<MetadataImage>,
        ) -> Result<(), PublishError> {
            let readers = self.loader.upgrade().map_or(-2, |l| l.image().offset);
            self.seen.lock().unwrap().push((readers, image.offset));
            Ok(())
        }
    }
    let (c, _log) = controller();
    let publisher = Arc::new(SeenDuring {
        loader: Arc::downgrade(c.loader()),
        seen: Mutex::new(Vec::new()),
    });
    c.loader().register(publisher.clone());
    assert_eq!(
        code(&c.create_topics(vec![topic("t", 1, 1)], false).await[0]),
        0
    );
    assert_eq!(*publisher.seen.lock().unwrap(), vec![(-1, 1)]);
    assert_eq!(c.image().offset, 1);
}

/// A shared log's lease fence is the same answer to the client as a lost position race
/// (NOT_CONTROLLER: retry against the active controller); a log that cannot be reached is a
/// retriable storage error.
#[test]
fn a_fenced_append_answers_not_controller() {
    let fenced = ControllerError::MetadataLog(MetadataLogError::Fenced {
        epoch: 3,
        reason: "lease epoch is 4".into(),
    });
    assert_eq!(
        ApiError::from(fenced).code,
        ResponseError::NotController.code()
    );
    let gone = MetadataLogError::Unavailable("connection reset".into());
    assert!(gone.is_retriable());
    assert_eq!(
        ApiError::from(ControllerError::MetadataLog(gone)).code,
        ResponseError::KafkaStorageError.code()
    );
}
