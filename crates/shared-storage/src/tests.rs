//! Against a real PostgreSQL (Debian's binaries, `TestPostgres`) and a real S3-compatible
//! server (`s3s-fs` on loopback, `TestS3`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_kafka::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proto_kafka::ResponseError;
use strom_metadata_postgres::testing::TestPostgres;
use uuid::Uuid;

use crate::storage::now_ms;
use crate::testing::TestS3;
use crate::{Committed, ObjectStoreConfig, SharedPartition, SharedStorage, SharedStorageError};

struct Producer {
    id: i64,
    epoch: i16,
}

fn batch(values: &[String], timestamp_ms: i64, producer: Option<(&Producer, i32)>) -> Bytes {
    encode_batch(values, timestamp_ms, producer, false)
}

/// A transactional producer's batch of `values` from sequence `sequence`.
fn txn_batch(values: &[&str], producer: &Producer, sequence: i32) -> Bytes {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    encode_batch(&values, 1_000, Some((producer, sequence)), true)
}

fn encode_batch(
    values: &[String],
    timestamp_ms: i64,
    producer: Option<(&Producer, i32)>,
    transactional: bool,
) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional,
            control: false,
            delete_horizon_ms: None,
            partition_leader_epoch: -1,
            producer_id: producer.map(|p| p.0.id).unwrap_or(-1),
            producer_epoch: producer.map(|p| p.0.epoch).unwrap_or(-1),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map(|p| p.1 + i as i32).unwrap_or(-1),
            timestamp: timestamp_ms,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn one(value: &str) -> Bytes {
    batch(&[value.to_string()], 1_000, None)
}

/// (offset, value) of every record in fetched bytes.
fn decode(mut records: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]) as usize;
        let mut one = records.split_to(12 + len);
        let set = RecordBatchDecoder::decode(&mut one).expect("decode");
        for r in set.records {
            let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
            out.push((r.offset, v.unwrap_or_default()));
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

struct Env {
    pg: Arc<TestPostgres>,
    db_url: String,
    s3: TestS3,
}

fn env_with(pg: Arc<TestPostgres>) -> Env {
    let db = pg.create_database();
    Env {
        db_url: pg.url(&db),
        pg,
        s3: TestS3::start(),
    }
}

fn env() -> Env {
    env_with(TestPostgres::shared())
}

impl Env {
    fn config(&self) -> ObjectStoreConfig {
        let mut c = self.s3.config("cluster");
        c.produce_linger_ms = 2;
        c.request_timeout_ms = 2_000;
        c
    }

    async fn broker(&self, node_id: i32) -> SharedStorage {
        SharedStorage::start(&self.db_url, self.config(), node_id)
            .await
            .expect("start shared storage")
    }
}

async fn read_all(p: &SharedPartition) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        let r = p.read(offset, 1 << 20, true).await.expect("read");
        let got = decode(r.records);
        let Some(last) = got.last() else { break };
        offset = last.0 + 1;
        out.extend(got);
    }
    out
}

async fn wait_for_hw(p: &SharedPartition, hw: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.high_watermark() < hw {
        let wait = p.wait_for_data();
        if p.high_watermark() >= hw {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "high watermark stuck at {}",
            p.high_watermark()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), wait).await;
    }
}

fn rejected(e: &SharedStorageError) -> Option<ResponseError> {
    match e {
        SharedStorageError::Rejected(code) => Some(*code),
        _ => None,
    }
}

#[test]
fn produce_then_fetch_round_trip_with_offsets_patched() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        let first = p
            .append(batch(&["a".into(), "b".into(), "c".into()], 5, None))
            .await
            .expect("append");
        assert_eq!(
            (first.first_offset, first.last_offset, first.duplicate),
            (0, 2, false)
        );
        let second = p.append(one("d")).await.expect("append");
        assert_eq!((second.first_offset, second.last_offset), (3, 3));
        assert_eq!(p.high_watermark(), 4);
        let got = read_all(&p).await;
        let want: Vec<(i64, String)> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.to_string()))
            .collect();
        assert_eq!(got, want);
        // From the middle of a batch: the whole batch comes back (as Kafka's fetch does).
        let mid = p.read(1, 1 << 20, true).await.expect("read");
        assert_eq!(decode(mid.records).first().map(|r| r.0), Some(0));
        // At the end: nothing; beyond it: out of range.
        assert!(p
            .read(4, 1 << 20, true)
            .await
            .expect("read")
            .records
            .is_empty());
        let beyond = p.read(5, 1 << 20, true).await.expect_err("beyond the end");
        assert_eq!(rejected(&beyond), Some(ResponseError::OffsetOutOfRange));
        // A corrupt batch is refused before anything is written.
        let mut bad = BytesMut::from(&one("x")[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let e = p.append(bad.freeze()).await.expect_err("bad CRC");
        assert_eq!(rejected(&e), Some(ResponseError::CorruptMessage));
        assert_eq!(p.high_watermark(), 4);
        // A new broker instance reads it all back from PostgreSQL and the object store.
        drop(p);
        drop(broker);
        let again = env.broker(2).await;
        let p = again
            .open_partition(first_topic(&env).await, 0, 0)
            .await
            .expect("reopen");
        assert_eq!(read_all(&p).await, want);
    });
}

/// The only topic id the round-trip test wrote.
async fn first_topic(env: &Env) -> Uuid {
    let (client, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .query_one("SELECT topic_id FROM shared_storage_partitions", &[])
        .await
        .expect("one partition")
        .get(0)
}

#[test]
fn two_brokers_get_dense_ordered_offsets_and_see_each_other() {
    let env = env();
    runtime().block_on(async {
        let a = env.broker(1).await;
        let b = env.broker(2).await;
        let topic = Uuid::new_v4();
        let pa = a.open_partition(topic, 0, 3).await.expect("open a");
        let pb = b.open_partition(topic, 0, 3).await.expect("open b");
        let n = 40;
        let run = |p: Arc<SharedPartition>, tag: &'static str| async move {
            let mut got = Vec::new();
            for i in 0..n {
                let c = p.append(one(&format!("{tag}{i}"))).await.expect("append");
                got.push(c.first_offset);
            }
            got
        };
        let (oa, ob) = tokio::join!(run(pa.clone(), "a"), run(pb.clone(), "b"));
        // Each broker's own appends are in order.
        assert!(oa.windows(2).all(|w| w[0] < w[1]));
        assert!(ob.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<i64> = oa.iter().chain(&ob).copied().collect();
        all.sort();
        assert_eq!(
            all,
            (0..2 * n as i64).collect::<Vec<_>>(),
            "dense, none shared"
        );
        // Each broker learns the other's commits by NOTIFY and serves all of them.
        wait_for_hw(&pa, 2 * n as i64).await;
        wait_for_hw(&pb, 2 * n as i64).await;
        let from_a = read_all(&pa).await;
        let from_b = read_all(&pb).await;
        assert_eq!(from_a, from_b);
        assert_eq!(from_a.len(), 2 * n);
        for (offset, value) in &from_a {
            let mine = if value.starts_with('a') { &oa } else { &ob };
            let i: usize = value[1..].parse().expect("index");
            assert_eq!(
                mine[i], *offset,
                "{value} read back at the offset it was acknowledged with"
            );
        }
    });
}

#[test]
fn a_long_poll_wakes_on_another_brokers_commit() {
    let env = env();
    runtime().block_on(async {
        let a = env.broker(1).await;
        let b = env.broker(2).await;
        let topic = Uuid::new_v4();
        let pa = a.open_partition(topic, 0, 0).await.expect("open a");
        let pb = b.open_partition(topic, 0, 0).await.expect("open b");
        let mut woke_after = Vec::new();
        for i in 0..3 {
            let waiting = pb.wait_for_data();
            let started = Instant::now();
            pa.append(one(&format!("hello{i}"))).await.expect("append");
            let acked_after = started.elapsed();
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("woken by the NOTIFY");
            woke_after.push((acked_after, started.elapsed()));
            assert_eq!(pb.high_watermark(), i + 1);
        }
        let values: Vec<String> = read_all(&pb).await.into_iter().map(|r| r.1).collect();
        assert_eq!(values, ["hello0", "hello1", "hello2"]);
        eprintln!("(acknowledged, follower woke) after the append started: {woke_after:?}");
    });
}

#[test]
fn a_fenced_leaders_commit_fails_and_its_object_is_recorded_for_collection() {
    let env = env();
    runtime().block_on(async {
        let old = env.broker(1).await;
        let new = env.broker(2).await;
        let topic = Uuid::new_v4();
        let p_old = old.open_partition(topic, 0, 1).await.expect("open old");
        p_old
            .append(one("before"))
            .await
            .expect("the leader of epoch 1 appends");
        let p_new = new.open_partition(topic, 0, 2).await.expect("open new");
        let e = p_old.append(one("stale")).await.expect_err("fenced");
        assert_eq!(rejected(&e), Some(ResponseError::NotLeaderOrFollower));
        assert!(e.is_retriable());
        let c = p_new
            .append(one("after"))
            .await
            .expect("new leader appends");
        assert_eq!(c.first_offset, 1, "the fenced append took no offset");
        let orphans = old.orphan_objects().await.expect("orphans");
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        assert!(orphans[0].starts_with("cluster/intake/"));
        assert!(
            orphans[0].contains("-1-"),
            "written by node 1: {}",
            orphans[0]
        );
        assert!(
            env.s3.bucket_dir().join(&orphans[0]).is_file(),
            "the object exists until collected"
        );
        // Collection: not before its age, then the object and its record are gone and the
        // committed data is untouched.
        assert_eq!(
            old.collect_orphans(Duration::from_secs(3600))
                .await
                .expect("collect"),
            0
        );
        assert!(env.s3.bucket_dir().join(&orphans[0]).is_file());
        assert_eq!(
            new.collect_orphans(Duration::ZERO).await.expect("collect"),
            1
        );
        assert!(!env.s3.bucket_dir().join(&orphans[0]).exists(), "deleted");
        assert!(old.orphan_objects().await.expect("orphans").is_empty());
        wait_for_hw(&p_old, 2).await;
        let values: Vec<String> = read_all(&p_old).await.into_iter().map(|r| r.1).collect();
        assert_eq!(values, ["before", "after"]);
    });
}

#[test]
fn an_idempotent_retry_gets_its_first_offsets_and_sequence_gaps_are_refused() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        let producer = Producer { id: 4000, epoch: 0 };
        let other = Producer { id: 4001, epoch: 0 };
        let b0 = batch(&["x0".into(), "x1".into()], 1, Some((&producer, 0)));
        let first = p.append(b0.clone()).await.expect("append");
        p.append(batch(&["y".into()], 1, Some((&other, 0))))
            .await
            .expect("other producer");
        let retry = p.append(b0).await.expect("retry");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.first_offset, retry.last_offset),
            (first.first_offset, first.last_offset)
        );
        let next = p
            .append(batch(&["x2".into()], 1, Some((&producer, 2))))
            .await
            .expect("in sequence");
        assert_eq!(next.first_offset, 3);
        let gap = p
            .append(batch(&["x9".into()], 1, Some((&producer, 9))))
            .await
            .expect_err("gap");
        assert_eq!(
            rejected(&gap),
            Some(ResponseError::OutOfOrderSequenceNumber)
        );
        p.append(batch(&["old".into()], 1, Some((&producer, 3))))
            .await
            .expect("the refused gap took nothing: 3 is still next");
        let bumped = Producer { id: 4000, epoch: 1 };
        p.append(batch(&["new".into()], 1, Some((&bumped, 0))))
            .await
            .expect("a new epoch starts at 0");
        let old_epoch = p
            .append(batch(&["late".into()], 1, Some((&producer, 5))))
            .await
            .expect_err("old epoch");
        assert_eq!(
            rejected(&old_epoch),
            Some(ResponseError::InvalidProducerEpoch)
        );
        let values: Vec<String> = read_all(&p).await.into_iter().map(|r| r.1).collect();
        assert_eq!(values, ["x0", "x1", "y", "x2", "old", "new"]);
    });
}

#[test]
fn list_offsets_by_timestamp_and_delete_records() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        for (i, ts) in [100, 300, 200].iter().enumerate() {
            p.append(batch(&[format!("v{i}")], *ts, None))
                .await
                .expect("append");
        }
        assert_eq!(p.offset_for_timestamp(150), Some((1, 300)));
        assert_eq!(p.offset_for_timestamp(0), Some((0, 100)));
        assert_eq!(p.offset_for_timestamp(301), None);
        assert_eq!(p.max_timestamp_and_offset(), Some((1, 300)));
        assert_eq!(p.delete_records_before(2).await.expect("delete"), 2);
        assert_eq!(p.log_start_offset(), 2);
        let e = p
            .read(1, 1 << 20, true)
            .await
            .expect_err("below the log start");
        assert_eq!(rejected(&e), Some(ResponseError::OffsetOutOfRange));
        assert_eq!(read_all(&p).await, vec![(2, "v2".to_string())]);
        assert_eq!(p.offset_for_timestamp(0), Some((2, 200)));
    });
}

/// Appends `value` until it is acknowledged, as a Kafka client retries retriable errors;
/// returns the errors seen on the way.
async fn append_until_acked(
    p: &SharedPartition,
    records: Bytes,
    give_up: Duration,
) -> (i64, Vec<ResponseError>) {
    let deadline = Instant::now() + give_up;
    let mut errors = Vec::new();
    loop {
        match p.append(records.clone()).await {
            Ok(c) => return (c.first_offset, errors),
            Err(e) => {
                assert!(e.is_retriable(), "not retriable: {e}");
                errors.push(e.response_error());
                assert!(
                    Instant::now() < deadline,
                    "still failing after {give_up:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[test]
fn an_object_store_outage_gives_retriable_errors_and_service_resumes() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let topic = Uuid::new_v4();
        let p = broker.open_partition(topic, 0, 0).await.expect("open");
        let producer = Producer { id: 77, epoch: 0 };
        let mut acked = Vec::new();
        for i in 0..5 {
            let c = p
                .append(batch(&[format!("m{i}")], 1, Some((&producer, i))))
                .await
                .expect("append");
            acked.push((c.first_offset, format!("m{i}")));
        }
        env.s3.stop();
        let down = Instant::now();
        let mut errors = Vec::new();
        while down.elapsed() < Duration::from_secs(10) {
            let e = p
                .append(batch(&["during".into()], 1, Some((&producer, 5))))
                .await
                .expect_err("store is down");
            assert!(e.is_retriable(), "{e}");
            errors.push(e.response_error());
        }
        assert!(
            errors
                .iter()
                .all(|e| *e == ResponseError::KafkaStorageError),
            "{errors:?}"
        );
        assert_eq!(
            p.high_watermark(),
            5,
            "nothing acknowledged during the outage"
        );
        env.s3.resume();
        for i in 5..8 {
            let (offset, _) = append_until_acked(
                &p,
                batch(&[format!("m{i}")], 1, Some((&producer, i))),
                Duration::from_secs(20),
            )
            .await;
            acked.push((offset, format!("m{i}")));
        }
        // Read through another broker, whose cache is empty: every byte comes from the store.
        let other = env.broker(2).await;
        let q = other.open_partition(topic, 0, 0).await.expect("open");
        assert_eq!(
            read_all(&q).await,
            acked,
            "every acknowledged record, once, in order"
        );
        eprintln!("{} retriable errors during the 10 s outage", errors.len());
    });
}

#[test]
fn a_postgresql_restart_is_survived_with_nothing_lost_or_doubled() {
    let env = env_with(Arc::new(TestPostgres::start()));
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let topic = Uuid::new_v4();
        let p = broker.open_partition(topic, 0, 0).await.expect("open");
        let producer = Producer { id: 99, epoch: 0 };
        let mut acked = Vec::new();
        let mut seen_errors = Vec::new();
        for i in 0..20 {
            if i == 10 {
                let pg = Arc::clone(&env.pg);
                tokio::task::spawn_blocking(move || pg.stop())
                    .await
                    .expect("stop");
                let e = p
                    .append(batch(&[format!("r{i}")], 1, Some((&producer, i))))
                    .await
                    .expect_err("PostgreSQL is down");
                seen_errors.push(e.response_error());
                let pg = Arc::clone(&env.pg);
                tokio::task::spawn_blocking(move || pg.restart())
                    .await
                    .expect("restart");
            }
            let (offset, errors) = append_until_acked(
                &p,
                batch(&[format!("r{i}")], 1, Some((&producer, i))),
                Duration::from_secs(30),
            )
            .await;
            seen_errors.extend(errors);
            acked.push((offset, format!("r{i}")));
        }
        assert!(!seen_errors.is_empty(), "the restart was noticed");
        assert!(
            seen_errors
                .iter()
                .all(|e| *e == ResponseError::RequestTimedOut),
            "{seen_errors:?}"
        );
        wait_for_hw(&p, 20).await;
        assert_eq!(read_all(&p).await, acked);
        let offsets: Vec<i64> = acked.iter().map(|a| a.0).collect();
        assert_eq!(
            offsets,
            (0..20).collect::<Vec<_>>(),
            "dense: no retry was written twice"
        );
        // The listener reconnected: another broker's commit still reaches this one.
        let other = env.broker(2).await;
        let q = other.open_partition(topic, 0, 0).await.expect("open");
        q.append(one("from-2")).await.expect("append");
        wait_for_hw(&p, 21).await;
    });
}

/// A first figure for one partition against the local s3s-fs and PostgreSQL (debug build):
/// `cargo test -p strom-shared-storage first_measurement -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn first_measurement() {
    let env = env();
    runtime().block_on(async {
        let value = "x".repeat(1000);
        let batch_of = |n: usize| batch(&vec![value.clone(); n], 1, None);
        for linger_ms in [0u64, 5] {
            let mut config = env.config();
            config.produce_linger_ms = linger_ms;
            config.request_timeout_ms = 10_000;
            let broker = SharedStorage::start(&env.db_url, config, 1).await.expect("start");
            let p = broker.open_partition(Uuid::new_v4(), 0, 0).await.expect("open");
            // Latency: one producer, one 1-record batch at a time (acks=all-like).
            let mut lat = Vec::new();
            for _ in 0..300 {
                let t = Instant::now();
                p.append(batch_of(1)).await.expect("append");
                lat.push(t.elapsed());
            }
            lat.sort();
            let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
            eprintln!(
                "linger {linger_ms} ms: produce latency, 1 x 1 KiB record per append: p50 {:?} p99 {:?}",
                pct(0.5),
                pct(0.99)
            );
            // Throughput: 16 appends in flight, 64 x 1 KiB records (about 64 KiB) each.
            let started = Instant::now();
            let rounds = 40;
            let mut tasks = Vec::new();
            for _ in 0..16 {
                let p = Arc::clone(&p);
                let b = batch_of(64);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..rounds {
                        p.append(b.clone()).await.expect("append");
                    }
                    b.len() * rounds
                }));
            }
            let mut bytes = 0usize;
            for t in tasks {
                bytes += t.await.expect("task");
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "linger {linger_ms} ms: produce throughput {:.1} MB/s ({} appends in {secs:.2} s)",
                bytes as f64 / secs / 1e6,
                16 * rounds
            );
            // Fetch: from the leader (its cache) and from a fresh broker (range GETs).
            for (label, q) in [
                ("leader, from memory", Arc::clone(&p)),
                (
                    "another broker, range GETs",
                    SharedStorage::start(&env.db_url, env.config(), 2)
                        .await
                        .expect("start")
                        .open_partition(p.topic_id, 0, 0)
                        .await
                        .expect("open"),
                ),
            ] {
                let started = Instant::now();
                let mut offset = 0;
                let mut bytes = 0usize;
                let mut reads = 0;
                let mut read_secs = 0f64;
                while offset < q.high_watermark() {
                    let t = Instant::now();
                    let r = q.read(offset, 1 << 20, true).await.expect("read");
                    read_secs += t.elapsed().as_secs_f64();
                    reads += 1;
                    bytes += r.records.len();
                    let got = decode(r.records);
                    let Some(last) = got.last() else { break };
                    offset = last.0 + 1;
                }
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "linger {linger_ms} ms: fetch, {label}: {:.1} MB/s ({} MB, {} range GETs, {reads} reads, {:.1} s reading)",
                    bytes as f64 / secs / 1e6,
                    bytes / 1_000_000,
                    q.get_requests(),
                    read_secs,
                );
            }
        }
    });
}

#[test]
fn pipelined_idempotent_appends_commit_in_request_order() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        let producer = Producer { id: 31, epoch: 0 };
        // Five requests in flight at once, as a Kafka producer's max.in.flight of 5 sends
        // them: the intake must commit them in the order they were handed over.
        for round in 0..4 {
            let appends: Vec<_> = (0..5)
                .map(|i| {
                    let seq = round * 5 + i;
                    p.append(batch(&[format!("p{seq}")], 1, Some((&producer, seq))))
                })
                .collect();
            let done = futures_util::future::join_all(appends).await;
            for (i, c) in done.into_iter().enumerate() {
                let c = c.expect("in order, so in sequence");
                assert_eq!(c.first_offset, i64::from(round * 5) + i as i64);
            }
        }
        let values: Vec<String> = read_all(&p).await.into_iter().map(|r| r.1).collect();
        let want: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        assert_eq!(values, want);
    });
}

#[test]
#[ignore = "a measurement, not a check"]
fn get_range_timing() {
    let s3 = TestS3::start();
    runtime().block_on(async {
        let store = crate::store::Store::new(&s3.config("t")).expect("store");
        let body = Bytes::from(vec![7u8; 8 << 20]);
        store.put("t/obj", body).await.expect("put");
        for start in [0u64, 4 << 20] {
            for len in [4096u64, 65536, 1 << 20] {
                let t = Instant::now();
                for _ in 0..10 {
                    store
                        .get_range("t/obj", start..start + len)
                        .await
                        .expect("get");
                }
                eprintln!("GET {len} bytes at {start}: {:?} each", t.elapsed() / 10);
            }
        }
    });
}

#[test]
fn the_leader_serves_its_own_writes_from_memory_and_others_cache_their_gets() {
    let env = env();
    runtime().block_on(async {
        let leader = env.broker(1).await;
        let topic = Uuid::new_v4();
        let p = leader.open_partition(topic, 0, 0).await.expect("open");
        for i in 0..10 {
            p.append(one(&format!("c{i}"))).await.expect("append");
        }
        assert_eq!(read_all(&p).await.len(), 10);
        assert_eq!(
            p.get_requests(),
            0,
            "no GET for what this broker just wrote"
        );
        assert!(leader.cache_size_bytes() > 0);

        let mut small = env.config();
        small.cache_max_bytes = 0;
        let uncached = SharedStorage::start(&env.db_url, small, 3)
            .await
            .expect("start");
        let q = uncached.open_partition(topic, 0, 0).await.expect("open");
        assert_eq!(read_all(&q).await.len(), 10);
        let first_pass = q.get_requests();
        assert!(first_pass > 0);
        read_all(&q).await;
        assert!(
            q.get_requests() > first_pass,
            "a zero-byte cache keeps nothing"
        );

        let other = env.broker(2).await;
        let r = other.open_partition(topic, 0, 0).await.expect("open");
        assert_eq!(read_all(&r).await.len(), 10);
        let gets = r.get_requests();
        assert!(gets > 0);
        assert_eq!(read_all(&r).await.len(), 10);
        assert_eq!(
            r.get_requests(),
            gets,
            "the second read comes from the cache"
        );
    });
}

/// Log lines written while the store starts, works and fails (PostgreSQL and the object store
/// both stopped) hold neither the PostgreSQL password nor the S3 secret key.
#[test]
fn no_secret_is_ever_logged() {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let env = env_with(Arc::new(TestPostgres::start()));
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: a scoped subscriber misses callsites whose interest another test's
    // thread (with no subscriber) cached first. Other tests' lines land here too, harmlessly.
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let broker = env.broker(1).await;
            let p = broker
                .open_partition(Uuid::new_v4(), 0, 0)
                .await
                .expect("open");
            p.append(one("a")).await.expect("append");
            env.s3.stop();
            p.append(one("b")).await.expect_err("store down");
            env.s3.resume();
            let pg = Arc::clone(&env.pg);
            pg.stop();
            p.append(one("c")).await.expect_err("PostgreSQL down");
            pg.restart();
            append_until_acked(&p, one("d"), Duration::from_secs(30)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
    }
    let text =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        text.contains("intake PUT failed"),
        "the failures were logged: {text}"
    );
    assert!(text.contains("intake commit failed"), "{text}");
    assert!(
        !text.contains(env.pg.password()),
        "PostgreSQL password in the log"
    );
    assert!(
        !text.contains(crate::testing::TEST_SECRET_KEY),
        "S3 secret in the log"
    );
}

/// Appends submitted one after another are sequenced in that order whichever is awaited
/// first: a broker hands an idempotent producer's requests in flight to the intake in request
/// order, and their answers are awaited later, in any order.
#[test]
fn submitted_appends_are_sequenced_in_submission_order() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        let producer = Producer { id: 5000, epoch: 0 };
        let pending: Vec<_> = (0..5)
            .map(|i| {
                p.submit(batch(&[format!("s{i}")], 1, Some((&producer, i))))
                    .expect("submitted")
            })
            .collect();
        // Awaited last first: a hand-over at await time would reach the sequencer as 4, 3, …
        // and be refused as out of order.
        let mut offsets = Vec::new();
        for f in pending.into_iter().rev() {
            offsets.push(f.await.expect("in sequence").first_offset);
        }
        assert_eq!(offsets, [4, 3, 2, 1, 0]);
        let values: Vec<String> = read_all(&p).await.into_iter().map(|r| r.1).collect();
        assert_eq!(values, ["s0", "s1", "s2", "s3", "s4"]);
    });
}

/// Many partitions' idempotent producers, each with its requests handed over one after
/// another (as a broker does with a producer's requests in flight), while slow PUTs keep
/// several objects in flight: every append commits, each partition's offsets are dense and in
/// submission order, and more than one PUT was under way at a time.
#[test]
fn several_objects_in_flight_keep_every_partitions_order() {
    let env = env();
    runtime().block_on(async {
        let mut config = env.config();
        config.produce_max_in_flight_objects = 4;
        let broker = SharedStorage::start(&env.db_url, config, 1)
            .await
            .expect("start");
        // Each PUT takes 40 ms, far longer than the 2 ms linger: without pipelining at most
        // one would be under way.
        broker.inject_put_faults(0, 40);
        let topic = Uuid::new_v4();
        let mut parts = Vec::new();
        for i in 0..6 {
            parts.push(broker.open_partition(topic, i, 0).await.expect("open"));
        }
        let producers: Vec<Producer> = (0..6)
            .map(|i| Producer {
                id: 7000 + i,
                epoch: 0,
            })
            .collect();
        let rounds = 30;
        let mut pending = Vec::new();
        for round in 0..rounds {
            for (i, p) in parts.iter().enumerate() {
                let value = format!("p{i}-{round}");
                let f = p
                    .submit(batch(&[value], 1, Some((&producers[i], round))))
                    .expect("submitted");
                pending.push((i, round, tokio::spawn(f)));
            }
            // Spread the requests over many objects.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        for (i, round, f) in pending {
            let c = f.await.expect("task").expect("committed in sequence");
            assert_eq!(c.first_offset, i64::from(round), "partition {i}");
        }
        for (i, p) in parts.iter().enumerate() {
            let values: Vec<String> = read_all(p).await.into_iter().map(|r| r.1).collect();
            let want: Vec<String> = (0..rounds).map(|r| format!("p{i}-{r}")).collect();
            assert_eq!(values, want, "partition {i}");
        }
        let most = broker.most_puts_at_once();
        assert!(
            (2..=4).contains(&most),
            "PUTs under way at once: {most} (bound 4)"
        );
    });
}

/// A PUT failing in the middle of a pipeline fails its own appends and those of the objects
/// sealed behind it, never letting a later request of the same producer commit past the gap:
/// what commits is a prefix of each producer's requests, nothing failed is in the log, and a
/// retry from the first failed request completes the log exactly once, in order.
#[test]
fn a_failed_put_in_the_pipeline_fails_exactly_the_appends_behind_it() {
    failure_in_the_pipeline(Fault::Put);
}

/// The same for a commit that fails (PostgreSQL refusing it, as when it goes away).
#[test]
fn a_failed_commit_in_the_pipeline_fails_exactly_the_appends_behind_it() {
    failure_in_the_pipeline(Fault::Commit);
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Put,
    Commit,
}

fn failure_in_the_pipeline(fault: Fault) {
    let env = env();
    runtime().block_on(async {
        let mut config = env.config();
        config.produce_max_in_flight_objects = 4;
        let broker = SharedStorage::start(&env.db_url, config, 1)
            .await
            .expect("start");
        let topic = Uuid::new_v4();
        let mut parts = Vec::new();
        for i in 0..3 {
            parts.push(broker.open_partition(topic, i, 0).await.expect("open"));
        }
        let producers: Vec<Producer> = (0..3)
            .map(|i| Producer {
                id: 8000 + i,
                epoch: 0,
            })
            .collect();
        // PUTs are slow so the objects after the failing one are sealed meanwhile.
        match fault {
            // The 4th PUT fails.
            Fault::Put => broker.inject_put_faults(4, 60),
            // The 2nd commit fails.
            Fault::Commit => {
                broker.inject_put_faults(0, 60);
                broker.inject_commit_failure(2);
            }
        }
        let injected_kind = |e: &SharedStorageError| match (fault, e) {
            (Fault::Put, SharedStorageError::ObjectStore(m))
            | (Fault::Commit, SharedStorageError::Sequencer(m)) => Some(m.clone()),
            _ => None,
        };
        let rounds = 12;
        let mut pending = Vec::new();
        for round in 0..rounds {
            for (i, p) in parts.iter().enumerate() {
                let f = p
                    .submit(batch(
                        &[format!("p{i}-{round}")],
                        1,
                        Some((&producers[i], round)),
                    ))
                    .expect("submitted");
                pending.push((i, round, tokio::spawn(f)));
            }
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
        let mut results: Vec<Vec<Result<Committed, SharedStorageError>>> =
            (0..3).map(|_| Vec::new()).collect();
        for (i, _, f) in pending {
            results[i].push(f.await.expect("task"));
        }
        let mut injected = 0;
        let mut behind = 0;
        for (i, rs) in results.iter().enumerate() {
            let committed = rs.iter().take_while(|r| r.is_ok()).count();
            assert!(
                rs[committed..].iter().all(|r| r.is_err()),
                "partition {i}: an append committed past a failed one: {rs:?}"
            );
            assert!(committed < rounds as usize, "partition {i}: nothing failed");
            for r in &rs[committed..] {
                let Err(e) = r else { continue };
                match injected_kind(e) {
                    Some(m) if m.contains("before this one") => behind += 1,
                    Some(m) if m.contains("injected") => injected += 1,
                    // Sealed after the failure was seen: the sequencer refuses the gap.
                    _ if rejected(e) == Some(ResponseError::OutOfOrderSequenceNumber) => {}
                    _ => panic!("partition {i}: unexpected {e:?}"),
                }
            }
            let values: Vec<String> = read_all(&parts[i]).await.into_iter().map(|r| r.1).collect();
            let want: Vec<String> = (0..committed).map(|r| format!("p{i}-{r}")).collect();
            assert_eq!(
                values, want,
                "partition {i}: exactly the acknowledged appends"
            );
        }
        assert!(
            injected >= 1,
            "the failed object's appends were answered with its error"
        );
        // More than one round of requests failed with the fault (a commit may have taken
        // every object whose PUT was done, so those behind it failed as its own).
        assert!(injected + behind > 3, "{injected} + {behind}");
        if fault == Fault::Put {
            assert!(behind >= 1, "objects behind the failed one were failed");
        }
        // The producers retry from their first failed request, in order.
        broker.inject_put_faults(0, 0);
        broker.inject_commit_failure(0);
        for (i, rs) in results.iter().enumerate() {
            let committed = rs.iter().take_while(|r| r.is_ok()).count() as i32;
            for round in committed..rounds {
                let c = parts[i]
                    .append(batch(
                        &[format!("p{i}-{round}")],
                        1,
                        Some((&producers[i], round)),
                    ))
                    .await
                    .expect("retry commits");
                assert_eq!(c.first_offset, i64::from(round));
            }
            let values: Vec<String> = read_all(&parts[i]).await.into_iter().map(|r| r.1).collect();
            let want: Vec<String> = (0..rounds).map(|r| format!("p{i}-{r}")).collect();
            assert_eq!(values, want, "partition {i}: every record once, in order");
        }
    });
}

/// A LogAppendTime topic's batches carry the intake's clock (max timestamp and the
/// timestamp-type bit, with the CRC recomputed) taken between the append and its commit, in
/// the index too; an idempotent retry answers the stored time; a CreateTime partition's
/// batches are stored as sent.
#[test]
fn log_append_time_is_stamped_with_a_valid_crc() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let topic = Uuid::new_v4();
        let stamped = broker.open_partition(topic, 0, 0).await.expect("open");
        let kept = broker.open_partition(topic, 1, 0).await.expect("open");
        stamped.set_log_append_time(true);
        let producer = Producer { id: 9100, epoch: 0 };
        let values = ["a".to_string(), "b".to_string()];
        let before = now_ms();
        let c = stamped
            .append(batch(&values, 1_000, Some((&producer, 0))))
            .await
            .expect("commit");
        let after = now_ms();
        assert!(
            (before..=after).contains(&c.log_append_time_ms),
            "{before} <= {} <= {after}",
            c.log_append_time_ms
        );
        let read = stamped.read(0, 1 << 20, true).await.expect("read");
        let headers = strom_log::batch::validate_batches(&read.records).expect("CRC still valid");
        assert_eq!(headers.len(), 1);
        assert_eq!(
            headers[0].timestamp_type(),
            strom_log::batch::TimestampType::LogAppendTime
        );
        assert_eq!(headers[0].max_timestamp, c.log_append_time_ms);
        let set = RecordBatchDecoder::decode(&mut read.records.clone()).expect("decode");
        // (The records' own timestamps are the batch's max under LogAppendTime, which
        // clients apply; this decoder gives the deltas' sums.)
        assert!(set
            .records
            .iter()
            .all(|r| r.timestamp_type == TimestampType::LogAppend));
        assert_eq!(
            stamped.offset_for_timestamp(before),
            Some((0, c.log_append_time_ms))
        );
        let retry = stamped
            .append(batch(&values, 1_000, Some((&producer, 0))))
            .await
            .expect("duplicate");
        assert!(retry.duplicate);
        assert_eq!(retry.log_append_time_ms, c.log_append_time_ms);

        let c = kept.append(one("x")).await.expect("commit");
        assert_eq!(c.log_append_time_ms, -1);
        let read = kept.read(0, 1 << 20, true).await.expect("read");
        let headers = strom_log::batch::validate_batches(&read.records).expect("valid");
        assert_eq!(
            headers[0].timestamp_type(),
            strom_log::batch::TimestampType::CreateTime
        );
        assert_eq!(headers[0].max_timestamp, 1_000);
    });
}

/// (offset, value) of the data records in fetched bytes (markers left out).
fn decode_data(mut records: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]) as usize;
        let mut one = records.split_to(12 + len);
        let set = RecordBatchDecoder::decode(&mut one).expect("decode");
        for r in set.records.into_iter().filter(|r| !r.control) {
            let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
            out.push((r.offset, v.unwrap_or_default()));
        }
    }
    out
}

/// What a read_committed consumer keeps of a read from `offset`: the records below the last
/// stable offset not in an aborted transaction (Kafka's client drops a batch of an aborted
/// producer from its first offset up to its ABORT marker).
async fn read_committed(p: &SharedPartition, offset: i64) -> (Vec<String>, i64, Vec<i64>) {
    let r = p
        .read_isolated(offset, 1 << 20, true, true)
        .await
        .expect("read_committed");
    let aborted = r.aborted_transactions.clone().expect("aborted list");
    let mut producers = Vec::new();
    let mut records = r.records.clone();
    let mut kept = Vec::new();
    while !records.is_empty() {
        let len = i32::from_be_bytes([records[8], records[9], records[10], records[11]]) as usize;
        let mut one = records.split_to(12 + len);
        let set = RecordBatchDecoder::decode(&mut one).expect("decode");
        for rec in set.records.into_iter().filter(|r| !r.control) {
            let dropped = aborted.iter().any(|t| {
                t.producer_id == rec.producer_id
                    && rec.offset >= t.first_offset
                    && rec.offset <= t.last_offset
            });
            if !dropped {
                kept.push(String::from_utf8_lossy(&rec.value.unwrap_or_default()).into_owned());
            }
        }
    }
    for t in &aborted {
        producers.push(t.producer_id);
    }
    (kept, r.last_stable_offset, producers)
}

async fn pg_client(env: &Env) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&env.db_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// One transaction committed and one aborted across two partitions, written by one broker and
/// read by another: an open transaction holds the last stable offset on every broker, a
/// read_committed read stops there and lists the aborted transaction, which PostgreSQL's
/// aborted index keeps too; a broker opening the partition later derives the same.
#[test]
fn transactions_commit_and_abort_across_partitions_with_lso_on_every_broker() {
    let env = env();
    runtime().block_on(async {
        let a = env.broker(1).await;
        let b = env.broker(2).await;
        let topic = Uuid::new_v4();
        let a0 = a.open_partition(topic, 0, 0).await.expect("open");
        let a1 = a.open_partition(topic, 1, 0).await.expect("open");
        let b0 = b.open_partition(topic, 0, 0).await.expect("open");
        // The other broker learns of each marker as its partition passes it (the group
        // coordinator's listener in `__consumer_offsets`).
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        b0.set_marker_listener(Arc::new(move |producer_id, commit| {
            sink.lock().expect("lock").push((producer_id, commit));
        }));
        let t = Producer { id: 5000, epoch: 0 };
        let u = Producer { id: 5001, epoch: 0 };
        // Transaction T: one batch in each partition, then a plain record after it in p0.
        a0.append(txn_batch(&["t0a", "t0b"], &t, 0))
            .await
            .expect("t in p0");
        a1.append(txn_batch(&["t1"], &t, 0)).await.expect("t in p1");
        a0.append(one("plain")).await.expect("plain");
        assert_eq!((a0.high_watermark(), a0.last_stable_offset()), (3, 0));
        wait_for_hw(&b0, 3).await;
        assert_eq!(b0.last_stable_offset(), 0, "held on the other broker too");
        let (kept, lso, _) = read_committed(&b0, 0).await;
        assert!(kept.is_empty(), "nothing below the LSO yet: {kept:?}");
        assert_eq!(lso, 0);
        // The read_uncommitted consumer sees everything up to the high watermark.
        assert_eq!(
            decode_data(b0.read(0, 1 << 20, true).await.expect("read").records).len(),
            3
        );
        for p in [&a0, &a1] {
            p.append_marker(t.id, t.epoch, 0, true, 1_000)
                .await
                .expect("commit marker");
        }
        assert_eq!(a0.last_stable_offset(), a0.high_watermark());
        // Transaction U: aborted in both partitions.
        a0.append(txn_batch(&["u0"], &u, 0)).await.expect("u in p0");
        a1.append(txn_batch(&["u1"], &u, 0)).await.expect("u in p1");
        for p in [&a0, &a1] {
            p.append_marker(u.id, u.epoch, 0, false, 1_000)
                .await
                .expect("abort marker");
        }
        a0.append(one("after")).await.expect("after");
        wait_for_hw(&b0, a0.high_watermark()).await;
        assert_eq!(b0.last_stable_offset(), b0.high_watermark());
        let (kept, _, aborted) = read_committed(&b0, 0).await;
        assert_eq!(kept, ["t0a", "t0b", "plain", "after"]);
        assert_eq!(aborted, [u.id]);
        assert_eq!(*heard.lock().expect("lock"), [(t.id, true), (u.id, false)]);
        let (kept1, _, _) = read_committed(&a1, 0).await;
        assert_eq!(kept1, ["t1"]);
        // PostgreSQL's aborted index and open transactions.
        let client = pg_client(&env).await;
        let rows = client
            .query(
                "SELECT partition, producer_id, first_offset, last_offset
                   FROM shared_storage_aborted_txns WHERE topic_id = $1 ORDER BY partition",
                &[&topic],
            )
            .await
            .expect("aborted index");
        let got: Vec<(i32, i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        // p0: t0a t0b plain COMMIT u0 ABORT after; p1: t1 COMMIT u1 ABORT.
        assert_eq!(got, [(0, u.id, 4, 5), (1, u.id, 2, 3)]);
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM shared_storage_ongoing_txns WHERE topic_id = $1",
                &[&topic],
            )
            .await
            .expect("ongoing")
            .get(0);
        assert_eq!(open, 0);
        // A transaction left open holds the LSO at its first offset, on both brokers.
        let v = Producer { id: 5002, epoch: 0 };
        let opened = a0.append(txn_batch(&["v0"], &v, 0)).await.expect("v");
        a0.append(one("behind")).await.expect("behind");
        wait_for_hw(&b0, a0.high_watermark()).await;
        assert_eq!(a0.last_stable_offset(), opened.first_offset);
        assert_eq!(b0.last_stable_offset(), opened.first_offset);
        let (kept, lso, _) = read_committed(&b0, opened.first_offset).await;
        assert!(kept.is_empty());
        assert_eq!(lso, opened.first_offset);
        // A broker opening the partition now derives the same from the index.
        let c = env.broker(3).await;
        let c0 = c.open_partition(topic, 0, 0).await.expect("open");
        assert_eq!(c0.high_watermark(), a0.high_watermark());
        assert_eq!(c0.last_stable_offset(), opened.first_offset);
        assert_eq!(c0.aborted_transactions(), a0.aborted_transactions());
        assert_eq!(c0.aborted_transactions(), b0.aborted_transactions());
    });
}

/// Markers and a coordinator's batch take no sequence: a coordinator's sequence-0 batch is
/// not the producer's duplicate. Markers are fenced by the producer epoch
/// (INVALID_PRODUCER_EPOCH) and the coordinator epoch (TRANSACTION_COORDINATOR_FENCED); a
/// marker with a bumped epoch fences the producer's old epoch, whose sequences start again at
/// 0; a client's own control batch is refused.
#[test]
fn markers_are_fenced_by_epoch_and_never_taken_for_duplicates() {
    let env = env();
    runtime().block_on(async {
        let broker = env.broker(1).await;
        let p = broker
            .open_partition(Uuid::new_v4(), 0, 0)
            .await
            .expect("open");
        let producer = Producer { id: 6000, epoch: 0 };
        let first = p
            .append(txn_batch(&["a"], &producer, 0))
            .await
            .expect("txn batch");
        // A coordinator's transactional batch for the same producer, also at sequence 0
        // (TxnOffsetCommit's): a new batch, not a retry of the producer's.
        let by_coordinator = p
            .submit_as_coordinator(txn_batch(&["offsets"], &producer, 0))
            .expect("submit")
            .await
            .expect("coordinator batch");
        assert!(!by_coordinator.duplicate);
        assert_eq!(by_coordinator.first_offset, first.last_offset + 1);
        let commit = p
            .append_marker(producer.id, 0, 3, true, 1_000)
            .await
            .expect("marker");
        assert_eq!(commit.first_offset, by_coordinator.last_offset + 1);
        assert!(!commit.duplicate);
        // The same marker again (the coordinator retrying) is written again, never dropped.
        let again = p
            .append_marker(producer.id, 0, 3, true, 1_000)
            .await
            .expect("marker again");
        assert_eq!(again.first_offset, commit.first_offset + 1);
        let stale_coordinator = p
            .append_marker(producer.id, 0, 2, false, 1_000)
            .await
            .expect_err("older coordinator epoch");
        assert_eq!(
            rejected(&stale_coordinator),
            Some(ResponseError::TransactionCoordinatorFenced)
        );
        // The producer's retry of its own batch is still its duplicate.
        let retry = p
            .append(txn_batch(&["a"], &producer, 0))
            .await
            .expect("retry");
        assert!(retry.duplicate);
        assert_eq!(retry.first_offset, first.first_offset);
        // A timeout abort bumps the epoch: the old epoch is fenced, for data and markers.
        p.append(txn_batch(&["b"], &producer, 1))
            .await
            .expect("next transaction");
        p.append_marker(producer.id, 1, 3, false, 1_000)
            .await
            .expect("abort with a bumped epoch");
        let late = p
            .append(txn_batch(&["late"], &producer, 2))
            .await
            .expect_err("old epoch");
        assert_eq!(rejected(&late), Some(ResponseError::InvalidProducerEpoch));
        let old_marker = p
            .append_marker(producer.id, 0, 3, true, 1_000)
            .await
            .expect_err("old epoch marker");
        assert_eq!(
            rejected(&old_marker),
            Some(ResponseError::InvalidProducerEpoch)
        );
        let bumped = Producer { id: 6000, epoch: 1 };
        p.append(txn_batch(&["c"], &bumped, 0))
            .await
            .expect("the new epoch starts at sequence 0");
        let late_coordinator = p
            .submit_as_coordinator(txn_batch(&["offsets"], &producer, 0))
            .expect("submit")
            .await
            .expect_err("a coordinator batch of the old epoch");
        assert_eq!(
            rejected(&late_coordinator),
            Some(ResponseError::InvalidProducerEpoch)
        );
        // A client may not write markers itself.
        let forged = strom_log::encode_marker(producer.id, 1, 9, true, 1_000)
            .expect("marker")
            .freeze();
        let e = p.append(forged).await.expect_err("client control batch");
        assert_eq!(rejected(&e), Some(ResponseError::InvalidRecord));
        let values: Vec<String> =
            decode_data(p.read(0, 1 << 20, true).await.expect("read").records)
                .into_iter()
                .map(|r| r.1)
                .collect();
        assert_eq!(values, ["a", "offsets", "b", "c"]);
        // b's transaction was aborted: a read_committed reader drops it.
        let (kept, lso, aborted) = read_committed(&p, 0).await;
        assert_eq!(aborted, [producer.id]);
        assert_eq!(kept, ["a", "offsets"]);
        assert_eq!(lso, p.high_watermark() - 1, "c's transaction is open");
    });
}
