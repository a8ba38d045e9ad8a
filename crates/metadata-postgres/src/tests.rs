//! Every test runs against a real PostgreSQL ([`TestPostgres`]): one shared server with a
//! database per test, or a server of its own for the tests that stop it.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use strom_metadata::controller::{commit_blocking, ApiError, ControllerError};
use strom_metadata::log_client::MetadataLogClient;
use strom_metadata::metadata_log::MetadataLogError;
use strom_metadata::records::{BrokerEndpoint, MetadataRecord, RESOURCE_TOPIC};
use strom_metadata::{MetadataImage, MetadataLoader};
use uuid::Uuid;

use crate::testing::TestPostgres;
use crate::*;

/// A fresh database on the shared server and a store on it (schema created).
fn fresh() -> (Arc<TestPostgres>, String, PgMetadataStore) {
    let pg = TestPostgres::shared();
    let db = pg.create_database();
    let store = PgMetadataStore::connect(&pg.url(&db)).expect("connect");
    (pg, db, store)
}

fn config(name: &str, value: &str) -> MetadataRecord {
    MetadataRecord::Config {
        resource_type: RESOURCE_TOPIC,
        resource_name: "t".into(),
        name: name.into(),
        value: Some(value.into()),
    }
}

fn endpoint(port: u16) -> Vec<BrokerEndpoint> {
    vec![BrokerEndpoint {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port,
    }]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------- schema

#[test]
fn concurrent_first_brokers_create_the_schema_once() {
    let pg = TestPostgres::shared();
    let db = pg.create_database();
    let url = pg.url(&db);
    let barrier = Arc::new(Barrier::new(4));
    let found: Vec<i32> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                let store = PgMetadataStore {
                    url: Arc::new(MetadataUrl::parse(&url).unwrap()),
                };
                barrier.wait();
                store.migrate().expect("migrate")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    // Exactly one of them found an empty database; the others waited and found it done.
    assert_eq!(found.iter().filter(|v| **v == 0).count(), 1, "{found:?}");
    assert!(found
        .iter()
        .all(|v| *v == 0 || *v == schema::latest_version()));
    let mut c = pg.client(&db);
    let rows = c.query("SELECT version FROM schema_version", &[]).unwrap();
    assert_eq!(rows.len(), schema::latest_version() as usize);
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN
             ('metadata_log','controller_lease','broker_registrations','node_id_allocation')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 4);
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    let (pg, db, _store) = fresh();
    pg.client(&db)
        .execute(
            "INSERT INTO schema_version (version, description) VALUES (999, 'from the future')",
            &[],
        )
        .unwrap();
    match PgMetadataStore::connect(&pg.url(&db)) {
        Err(PgMetadataError::SchemaTooNew { found: 999, known }) => {
            assert_eq!(known, schema::latest_version())
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the log

#[test]
fn appends_land_at_the_expected_offset_and_read_back_in_pages() {
    let (_pg, _db, store) = fresh();
    let log: Arc<dyn MetadataLogClient> = as_log_client(store.log());
    assert_eq!(log.end_offset().unwrap(), 0);
    // A NUL in a config value: kept (json), where jsonb would refuse the record.
    let batch = vec![
        config("a", "1"),
        config("b", "nul\u{0}inside"),
        MetadataRecord::ProducerIds {
            next_producer_id: 1000,
        },
    ];
    assert_eq!(log.append(0, &batch, 1_700_000_000_000).unwrap(), 0);
    assert_eq!(log.end_offset().unwrap(), 3);
    assert_eq!(log.append(3, &[config("c", "3")], 1).unwrap(), 3);

    let all = log.read(0, 100).unwrap();
    let offsets: Vec<i64> = all.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3]);
    assert_eq!(all[1].1, batch[1]);
    assert_eq!(all[2].1, batch[2]);
    assert_eq!(log.read(1, 2).unwrap(), all[1..3].to_vec());
    assert_eq!(log.read(4, 10).unwrap(), vec![]);
    assert_eq!(log.read(-5, 1).unwrap(), all[..1].to_vec());

    // Behind, ahead: nothing written, the log's end in the answer.
    for at in [0, 2, 7] {
        match log.append(at, &[config("x", "x")], 1) {
            Err(MetadataLogError::Conflict { expected, end: 4 }) => assert_eq!(expected, at),
            other => panic!("append at {at}: {other:?}"),
        }
    }
    assert_eq!(log.end_offset().unwrap(), 4);
}

#[test]
fn racing_writers_never_share_an_offset() {
    let (_pg, _db, store) = fresh();
    const ROUNDS: usize = 40;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|writer| {
            let log = store.log();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut won = 0;
                let mut conflicts = 0;
                for round in 0..ROUNDS {
                    barrier.wait();
                    let end = log.end().unwrap();
                    let record = config(&format!("w{writer}"), &round.to_string());
                    match log.append_records(end, &[record.clone(), record], 1) {
                        Ok(at) => {
                            assert_eq!(at, end);
                            won += 1;
                        }
                        Err(PgMetadataError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("writer {writer}: {e}"),
                    }
                }
                (won, conflicts)
            })
        })
        .collect();
    let results: Vec<(usize, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let won: usize = results.iter().map(|r| r.0).sum();
    let log = store.log();
    let all = log.read_records(0, 10_000).unwrap();
    assert_eq!(all.len(), won * 2, "{results:?}");
    // Each append's two records stayed together, and offsets are dense.
    for (i, pair) in all.chunks(2).enumerate() {
        assert_eq!(pair[0].0, 2 * i as i64);
        assert_eq!(pair[0].1, pair[1].1);
    }
    eprintln!("racing writers: {results:?} (won, conflicts) per writer");
}

/// The end check alone is not the fence: a writer that saw the end before another's
/// commit is stopped by the primary key, and answered with a conflict.
#[test]
fn the_primary_key_stops_a_writer_that_passed_the_end_check() {
    let (pg, db, store) = fresh();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();

    let mut other = pg.client(&db);
    let mut tx = other.transaction().unwrap();
    tx.execute(
        r#"INSERT INTO metadata_log ("offset", record, timestamp_ms) VALUES (1, '{"type":"producer_ids","next_producer_id":5}', 1)"#,
        &[],
    )
    .unwrap();
    let writer = {
        let log = log.clone();
        thread::spawn(move || log.append_records(1, &[config("b", "2")], 1))
    };
    // Wait until the append is blocked on the uncommitted row's key.
    let mut watch = pg.client(&db);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the append never reached the insert"
        );
        thread::sleep(Duration::from_millis(20));
    }
    tx.commit().unwrap();
    match writer.join().unwrap() {
        Err(PgMetadataError::Conflict {
            expected: 1,
            end: 2,
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let all = log.read_records(0, 10).unwrap();
    assert_eq!(
        all[1].1,
        MetadataRecord::ProducerIds {
            next_producer_id: 5
        }
    );
}

#[test]
fn a_waiter_wakes_on_a_commit_from_another_broker() {
    let (_pg, _db, store) = fresh();
    let follower = store.log();
    let writer = store.log();
    // Subscribe once, so the first measurement is not the connection's set-up.
    assert_eq!(
        follower
            .wait_for_end_past(0, Duration::from_millis(1))
            .unwrap(),
        0
    );
    let mut latencies = Vec::new();
    for i in 0..20i64 {
        let w = writer.clone();
        let appender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            let t = Instant::now();
            w.append_records(i, &[config("k", &i.to_string())], 1)
                .unwrap();
            t
        });
        let end = follower
            .wait_for_end_past(i, Duration::from_secs(10))
            .unwrap();
        let woke = Instant::now();
        let started = appender.join().unwrap();
        assert_eq!(end, i + 1);
        latencies.push(woke.duration_since(started));
    }
    latencies.sort();
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    eprintln!("append-to-wake-up (append incl. commit + NOTIFY + wake): p50 {p50:?} p99 {p99:?}");
    assert!(p99 < Duration::from_secs(2), "{latencies:?}");
}

#[test]
fn a_waiter_answers_the_end_at_its_timeout() {
    let (_pg, _db, store) = fresh();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    // Already past: at once.
    let t = Instant::now();
    assert_eq!(
        log.wait_for_end_past(0, Duration::from_secs(30)).unwrap(),
        1
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    let t = Instant::now();
    assert_eq!(
        log.wait_for_end_past(1, Duration::from_millis(500))
            .unwrap(),
        1
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

/// The window a naive follower has: a record committed after its catch-up read and
/// before it waits. The waiter LISTENs before reading, so the notification is queued.
#[test]
fn a_record_committed_after_the_catch_up_read_is_not_missed() {
    let (_pg, _db, store) = fresh();
    let follower = store.log();
    let writer = store.log();
    let t = Instant::now();
    let end = follower
        .wait_inner(0, Duration::from_secs(20), &|| {
            writer.append_records(0, &[config("late", "1")], 1).unwrap();
        })
        .unwrap();
    assert_eq!(end, 1);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "woke only at {:?}",
        t.elapsed()
    );
}

#[test]
fn a_closed_log_refuses_calls_and_releases_its_waiter() {
    let (pg, db, store) = fresh();
    let log = store.log();
    let waiter = {
        let log = log.clone();
        thread::spawn(move || log.wait_for_end_past(0, Duration::from_secs(30)))
    };
    thread::sleep(Duration::from_millis(300));
    MetadataLogClient::close(&log).unwrap();
    let t = Instant::now();
    assert!(matches!(
        waiter.join().unwrap(),
        Err(PgMetadataError::Closed)
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        MetadataLogClient::append(&log, 0, &[config("a", "1")], 1),
        Err(MetadataLogError::Closed)
    ));
    // Both of its connections are gone from the server.
    let mut admin = pg.admin();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .unwrap()
            .get(0);
        if sessions == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{sessions} sessions left open");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- connection loss

#[test]
fn a_lost_connection_is_retriable_and_the_next_call_reconnects() {
    let (pg, db, store) = fresh();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    assert!(pg.terminate_connections(&db) >= 1);
    match MetadataLogClient::end_offset(&log) {
        Err(e @ MetadataLogError::Unavailable(_)) => {
            assert!(e.is_retriable());
            assert!(!e.to_string().contains(pg.password()), "{e}");
        }
        other => panic!("expected a retriable error, got {other:?}"),
    }
    assert_eq!(log.end().unwrap(), 1);
    log.append_records(1, &[config("b", "2")], 1).unwrap();

    // The listener too: cut mid-wait, it fails retriably, then follows again.
    let waiter = {
        let log = log.clone();
        thread::spawn(move || log.wait_for_end_past(2, Duration::from_secs(30)))
    };
    thread::sleep(Duration::from_millis(300));
    pg.terminate_connections(&db);
    let first = waiter.join().unwrap();
    assert!(
        matches!(first, Err(PgMetadataError::Unavailable { .. })),
        "{first:?}"
    );
    let writer = store.log();
    let appender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        writer.append_records(2, &[config("c", "3")], 1).unwrap();
    });
    assert_eq!(
        log.wait_for_end_past(2, Duration::from_secs(30)).unwrap(),
        3
    );
    appender.join().unwrap();
}

#[test]
fn a_server_restart_is_survived_and_the_password_is_never_shown() {
    let pg = TestPostgres::start();
    let url = pg.url("postgres");
    let store = PgMetadataStore::connect(&url).unwrap();
    let log = store.log();
    let leases = store.leases();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    pg.stop();
    let down = log.end().unwrap_err();
    assert!(down.is_retriable(), "{down}");
    let lease_down = leases.current().unwrap_err();
    assert!(lease_down.is_retriable(), "{lease_down}");
    let connect_down = PgMetadataStore::connect(&url).unwrap_err();
    for text in [
        down.to_string(),
        lease_down.to_string(),
        connect_down.to_string(),
    ] {
        assert!(!text.contains(pg.password()), "{text}");
        assert!(text.contains("postgres://strom:***@127.0.0.1"), "{text}");
    }
    pg.restart();
    assert_eq!(log.end().unwrap(), 1);
    log.append_records(1, &[config("b", "2")], 1).unwrap();

    let wrong = url.replace(pg.password(), "not-the-password-42");
    let e = PgMetadataStore::connect(&wrong).unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains("not-the-password-42"), "{text}");
    assert!(!format!("{store:?}").contains(pg.password()));
    eprintln!("wrong password: {e}");
}

/// A connection left idle across a server restart is found gone before a call uses it: the
/// first call after the restart succeeds (it used to fail once, retriably, which a client
/// saw as KAFKA_STORAGE_ERROR on a CreateTopics after a failover).
#[test]
fn the_first_call_after_a_restart_on_an_idle_connection_succeeds() {
    let pg = TestPostgres::start();
    let store = PgMetadataStore::connect(&pg.url("postgres")).unwrap();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    pg.stop();
    pg.restart();
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(log.end().unwrap(), 1);
    log.append_records(1, &[config("b", "2")], 1).unwrap();
}

// ---------------------------------------------------------------- the controller lease

#[test]
fn the_lease_is_acquired_renewed_released_with_a_new_epoch_each_grant() {
    let (_pg, _db, store) = fresh();
    let leases = store.leases();
    assert_eq!(leases.current().unwrap(), None);
    let a = leases.acquire(1, 60_000).unwrap();
    assert_eq!((a.node_id, a.epoch), (1, 1));
    assert_eq!(leases.current().unwrap(), Some(a.clone()));

    match leases.acquire(2, 60_000) {
        Err(PgMetadataError::LeaseHeld {
            holder: 1,
            epoch: 1,
            remaining_ms,
        }) => assert!(
            remaining_ms > 50_000 && remaining_ms <= 60_000,
            "{remaining_ms}"
        ),
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    let renewed = leases.renew(&a, 120_000).unwrap();
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.expires_at_ms > a.expires_at_ms);
    // The holder acquiring again is a new term.
    let again = leases.acquire(1, 60_000).unwrap();
    assert_eq!(again.epoch, 2);
    assert!(matches!(
        leases.renew(&a, 1000),
        Err(PgMetadataError::LeaseLost { .. })
    ));

    leases.release(&again).unwrap();
    assert_eq!(leases.current().unwrap(), None);
    assert!(matches!(
        leases.release(&again),
        Err(PgMetadataError::LeaseLost { .. })
    ));
    let b = leases.acquire(2, 60_000).unwrap();
    assert_eq!((b.node_id, b.epoch), (2, 3));
    assert_eq!(leases.last_epoch().unwrap(), 3);
    for ttl in [0, -1, MAX_LEASE_TTL_MS + 1] {
        assert!(matches!(
            leases.acquire(2, ttl),
            Err(PgMetadataError::InvalidTtl { .. })
        ));
    }
}

#[test]
fn an_expired_lease_passes_to_another_node_and_cannot_be_renewed() {
    let (_pg, _db, store) = fresh();
    let leases = store.leases();
    let a = leases.acquire(1, 300).unwrap();
    thread::sleep(Duration::from_millis(400));
    assert_eq!(leases.current().unwrap(), None);
    assert!(matches!(
        leases.renew(&a, 60_000),
        Err(PgMetadataError::LeaseLost { .. })
    ));
    let b = leases.acquire(2, 60_000).unwrap();
    assert_eq!(b.epoch, a.epoch + 1);
}

/// A controller whose lease passed to another keeps writing at the right offset: refused,
/// in the append's own transaction, and answered NOT_CONTROLLER through the controller.
#[test]
fn a_stale_controller_is_fenced_even_at_the_right_offset() {
    let (_pg, _db, store) = fresh();
    let leases = store.leases();
    let log = store.log();
    let a = leases.acquire(1, 1_500).unwrap();
    let as_a = log.for_controller(&a);
    assert_eq!(as_a.fence(), Some(&a));
    as_a.append_records(0, &[config("a", "1")], 1).unwrap();

    thread::sleep(Duration::from_millis(1_700));
    // Expired, not yet taken: still refused.
    match as_a.append_records(1, &[config("a", "2")], 1) {
        Err(PgMetadataError::Fenced { epoch, reason }) => {
            assert_eq!(epoch, a.epoch);
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    let b = leases.acquire(2, 60_000).unwrap();
    let as_b = store.log().for_controller(&b);

    // Controller A, through the seam, with its image at the log's end.
    let loader_a = MetadataLoader::new(MetadataImage::empty());
    assert_eq!(loader_a.catch_up(&as_a).unwrap(), 1);
    let err = commit_blocking(&as_a, &loader_a, vec![config("a", "3")], 1).unwrap_err();
    assert!(
        matches!(
            err,
            ControllerError::MetadataLog(MetadataLogError::Fenced { .. })
        ),
        "{err}"
    );
    assert_eq!(
        ApiError::from(err).code,
        proto_kafka::ResponseError::NotController.code()
    );
    assert_eq!(
        as_b.end().unwrap(),
        1,
        "nothing of the stale controller was written"
    );

    // The current one commits; the stale one's loader sees it, and stays fenced.
    let loader_b = MetadataLoader::new(MetadataImage::empty());
    loader_b.catch_up(&as_b).unwrap();
    commit_blocking(&as_b, &loader_b, vec![config("b", "1")], 1).unwrap();
    assert_eq!(loader_a.catch_up(&as_a).unwrap(), 1);
    assert!(commit_blocking(&as_a, &loader_a, vec![config("a", "4")], 1).is_err());
    let rows = as_b.read_records(0, 10).unwrap();
    assert_eq!(rows.len(), 2);

    // Released: its holder is fenced at once.
    leases.release(&b).unwrap();
    match as_b.append_records(2, &[config("b", "2")], 1) {
        Err(PgMetadataError::Fenced { reason, .. }) => assert!(reason.contains("released")),
        other => panic!("expected Fenced, got {other:?}"),
    }
}

// ---------------------------------------------------------------- brokers

#[test]
fn node_ids_are_allocated_from_1001_and_never_shared_by_live_brokers() {
    let (_pg, _db, store) = fresh();
    let barrier = Arc::new(Barrier::new(4));
    let mut ids: Vec<i32> = (0..4u16)
        .map(|i| {
            let registry = store.brokers(DEFAULT_SESSION_TIMEOUT_MS);
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                registry
                    .register(None, Uuid::new_v4(), &endpoint(9092 + i), None)
                    .unwrap()
                    .node_id
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1001, 1002, 1003, 1004]);

    let registry = store.brokers(DEFAULT_SESSION_TIMEOUT_MS);
    // A configured id: taken by the first, refused to a second process while it lives.
    let first = Uuid::new_v4();
    let reg = registry
        .register(Some(2), first, &endpoint(9092), Some("rack-a"))
        .unwrap();
    assert_eq!(
        reg.record(),
        MetadataRecord::RegisterBroker {
            node_id: 2,
            endpoints: endpoint(9092),
            rack: Some("rack-a".into()),
        }
    );
    match registry.register(Some(2), Uuid::new_v4(), &endpoint(9093), None) {
        Err(PgMetadataError::DuplicateRegistration {
            node_id: 2,
            incarnation_id,
        }) => assert_eq!(incarnation_id, first),
        other => panic!("expected DuplicateRegistration, got {other:?}"),
    }
    // The same process registering again (new endpoints) is fine.
    let again = registry
        .register(Some(2), first, &endpoint(9094), None)
        .unwrap();
    assert_eq!(again.endpoints, endpoint(9094));
    for bad in [-1, 1001] {
        assert!(matches!(
            registry.register(Some(bad), Uuid::new_v4(), &endpoint(1), None),
            Err(PgMetadataError::InvalidNodeId { .. })
        ));
    }
    let live: Vec<i32> = registry.live().unwrap().iter().map(|b| b.node_id).collect();
    assert_eq!(live, vec![2, 1001, 1002, 1003, 1004]);
}

#[test]
fn heartbeats_keep_a_broker_live_and_lapsed_ones_are_fenced() {
    let (_pg, _db, store) = fresh();
    let registry = store.brokers(2_000);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    registry.register(Some(0), a, &endpoint(1), None).unwrap();
    registry.register(Some(1), b, &endpoint(2), None).unwrap();
    for _ in 0..12 {
        thread::sleep(Duration::from_millis(250));
        registry.heartbeat(0, a).unwrap();
    }
    // 3 s without a heartbeat for broker 1: not live, and fenced by the sweep.
    let live: Vec<i32> = registry.live().unwrap().iter().map(|r| r.node_id).collect();
    assert_eq!(live, vec![0]);
    assert_eq!(registry.fence_expired().unwrap(), vec![1]);
    assert_eq!(registry.fence_expired().unwrap(), Vec::<i32>::new());
    assert!(matches!(
        registry.heartbeat(1, b),
        Err(PgMetadataError::NotRegistered { node_id: 1, .. })
    ));
    assert!(matches!(
        registry.heartbeat(0, Uuid::new_v4()),
        Err(PgMetadataError::NotRegistered { .. })
    ));
    let all = registry.all().unwrap();
    assert!(all[1].fenced && !all[0].fenced);

    // Its id is free again once it is not live: a new process takes it over.
    let c = Uuid::new_v4();
    let reg = registry.register(Some(1), c, &endpoint(3), None).unwrap();
    assert!(!reg.fenced);
    registry.heartbeat(1, c).unwrap();

    // A controlled shutdown fences at once.
    assert!(registry.fence(0, a).unwrap());
    assert!(!registry.fence(0, a).unwrap());
    let live: Vec<i32> = registry.live().unwrap().iter().map(|r| r.node_id).collect();
    assert_eq!(live, vec![1]);
}

// ---------------------------------------------------------------- measurement

/// Not a pass/fail figure: what one metadata append costs on this machine's PostgreSQL
/// (fsync on, synchronous_commit on), printed for the record.
#[test]
fn measure_append_latency() {
    let (_pg, _db, store) = fresh();
    let leases = store.leases();
    let lease = leases.acquire(1, 60_000).unwrap();
    let log = store.log().for_controller(&lease);
    let mut times = Vec::new();
    for i in 0..100i64 {
        let t = Instant::now();
        log.append_records(i, &[config("k", "v")], 1).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "fenced append of one record: p50 {:?} p99 {:?} max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    let t = Instant::now();
    let read = log.read_records(0, 1000).unwrap();
    eprintln!("read of {} records: {:?}", read.len(), t.elapsed());
}

// ---------------------------------------------------------------- two brokers, one image

/// The controller broker commits through the seam (lease-fenced), registering brokers from
/// the table; a second broker follows with wait_for_more plus a catch-up read and ends with
/// the same image.
#[test]
fn a_follower_replays_the_controllers_commits_into_the_same_image() {
    let (pg, db, store) = fresh();
    let lease = store.leases().acquire(0, 60_000).unwrap();
    let controller_log = store.log().for_controller(&lease);
    let controller = MetadataLoader::new(MetadataImage::empty());
    let registry = store.brokers(DEFAULT_SESSION_TIMEOUT_MS);

    // The follower is another broker: a store of its own on the same database.
    let other = PgMetadataStore::connect(&pg.url(&db)).unwrap();
    let follower_log = other.log();
    let follower = Arc::new(MetadataLoader::new(MetadataImage::empty()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follow = {
        let (log, loader, stop) = (follower_log.clone(), follower.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let at = loader.image().offset;
                log.wait_for_end_past(at + 1, Duration::from_millis(500))
                    .unwrap();
                loader.catch_up(&log).unwrap();
            }
        })
    };

    for port in 0..3u16 {
        let reg = registry
            .register(None, Uuid::new_v4(), &endpoint(9092 + port), None)
            .unwrap();
        commit_blocking(&controller_log, &controller, vec![reg.record()], 1).unwrap();
    }
    for i in 0..20 {
        commit_blocking(
            &controller_log,
            &controller,
            vec![config(&format!("k{i}"), &i.to_string())],
            1,
        )
        .unwrap();
    }
    let want = controller.image();
    let deadline = Instant::now() + Duration::from_secs(20);
    while follower.image().offset != want.offset {
        assert!(Instant::now() < deadline, "the follower never caught up");
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    follow.join().unwrap();
    let got = follower.image();
    assert_eq!(want.offset, 22);
    assert_eq!(
        got.brokers.keys().collect::<Vec<_>>(),
        vec![&1001, &1002, &1003]
    );
    assert_eq!(got.brokers.len(), want.brokers.len());
    assert_eq!(got.topic_configs("t"), want.topic_configs("t"));
    assert_eq!(got.topic_configs("t").len(), 20);
}

/// What this crate logs while connecting, losing the connection and reconnecting shows the
/// URL with `***` and never the password.
#[test]
fn the_password_never_appears_in_the_logs() {
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
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not per thread: tracing caches per call site whether anyone listens, which a
    // thread-local subscriber races with the other tests on. The only test that sets it, so
    // it also sees what the tests running beside it log.
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    let pg = TestPostgres::shared();
    let db = pg.create_database();
    let store = PgMetadataStore::connect(&pg.url(&db)).unwrap();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    pg.terminate_connections(&db);
    assert!(log.end().is_err());
    assert_eq!(log.end().unwrap(), 1);
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let dropped = text
        .lines()
        .find(|l| l.contains("connection dropped") && l.contains(&db));
    assert!(
        dropped.is_some_and(|l| l.contains("strom:***@127.0.0.1")),
        "{text}"
    );
    assert!(!text.contains(pg.password()), "{text}");
}

/// Waiters sharing one handle each keep their own deadline and each wake on new data.
#[test]
fn concurrent_waiters_on_one_handle_keep_their_deadlines() {
    let (_pg, _db, store) = fresh();
    let log = store.log();
    let t = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let log = log.clone();
            thread::spawn(move || log.wait_for_end_past(0, Duration::from_millis(1_000)))
        })
        .collect();
    for w in waiters {
        assert_eq!(w.join().unwrap().unwrap(), 0);
    }
    assert!(
        t.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        t.elapsed()
    );

    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let log = log.clone();
            thread::spawn(move || log.wait_for_end_past(0, Duration::MAX))
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    store
        .log()
        .append_records(0, &[config("a", "1")], 1)
        .unwrap();
    for w in waiters {
        assert_eq!(w.join().unwrap().unwrap(), 1);
    }
}

// ---------------------------------------------------------------- the lease keeper

#[test]
fn lease_keepers_elect_one_controller_and_hand_over_on_stop() {
    // Long enough that a renewal is not missed on a loaded 2-core machine (1.5 s was: node 2
    // took the lease after the connection cut, under a load average of 17).
    const TERM_MS: u64 = 3_000;
    let (pg, db, store) = fresh();
    let leases = store.leases();
    let first = LeaseKeeper::start(&store, 1, TERM_MS as i64).unwrap();
    let held = first
        .wait_for_lease(Duration::from_secs(10))
        .expect("node 1 is elected");
    let second = LeaseKeeper::start(&store, 2, TERM_MS as i64).unwrap();
    // Several terms long: node 1 renews (same epoch), node 2 never gets it.
    thread::sleep(Duration::from_millis(TERM_MS * 5 / 3));
    assert_eq!(second.lease(), None);
    let now = leases.current().unwrap().expect("a lease is in force");
    assert_eq!((now.node_id, now.epoch), (1, held.epoch));
    assert!(now.expires_at_ms > held.expires_at_ms, "renewed");

    // A lost connection is retried within the term: still node 1, same epoch.
    pg.terminate_connections(&db);
    thread::sleep(Duration::from_millis(TERM_MS * 4 / 5));
    // (This test's own connection was cut too and has been idle since: the call finds it
    // gone before using it and reconnects.)
    let still = leases.current().unwrap().expect("a lease is in force");
    assert_eq!((still.node_id, still.epoch), (1, held.epoch));
    assert_eq!(first.lease().map(|l| l.epoch), Some(held.epoch));

    // A controlled shutdown releases at once; node 2 takes over with the next epoch.
    let t = Instant::now();
    first.stop();
    let next = second
        .wait_for_lease(Duration::from_secs(10))
        .expect("node 2 takes over");
    assert_eq!((next.node_id, next.epoch), (2, held.epoch + 1));
    // Well within one term: it did not wait for node 1's lease to expire.
    assert!(
        t.elapsed() < Duration::from_millis(TERM_MS * 9 / 10),
        "{:?}",
        t.elapsed()
    );
    drop(second);
    assert_eq!(leases.current().unwrap(), None, "released on drop");
}

/// A keeper whose lease was taken over (here: it expired while its holder was stopped
/// from renewing) notices, and its controller's appends are fenced meanwhile.
#[test]
fn a_keeper_notices_a_lost_lease() {
    let (_pg, _db, store) = fresh();
    let keeper = LeaseKeeper::start(&store, 1, 900).unwrap();
    let lease = keeper.wait_for_lease(Duration::from_secs(10)).unwrap();
    // Behind the keeper's back, the lease row moves on (an operator, or a clock jump).
    let leases = store.leases();
    leases.release(&lease).unwrap();
    let other = leases.acquire(2, 60_000).unwrap();
    assert!(matches!(
        store
            .log()
            .for_controller(&lease)
            .append_records(0, &[config("a", "1")], 1),
        Err(PgMetadataError::Fenced { .. })
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while keeper.lease().is_some() {
        assert!(
            Instant::now() < deadline,
            "the keeper still believes it holds the lease"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(leases.current().unwrap(), Some(other));
}

/// A change of thousands of records (a CreateTopics with many partitions) is one insert
/// and one transaction; readers page through it.
#[test]
fn a_large_change_is_one_append_and_reads_in_pages() {
    let (_pg, _db, store) = fresh();
    let log = store.log();
    let records: Vec<MetadataRecord> = (0..20_000)
        .map(|p| MetadataRecord::Partition {
            topic_id: Uuid::nil(),
            partition: p,
            replicas: vec![1001, 1002, 1003],
            isr: vec![1001, 1002, 1003],
            leader: 1001 + p % 3,
            leader_epoch: 0,
            partition_epoch: 0,
        })
        .collect();
    let t = Instant::now();
    log.append_records(0, &records, 1).unwrap();
    let appended = t.elapsed();
    let t = Instant::now();
    let mut next = 0;
    let mut pages = 0;
    loop {
        let page = log.read_records(next, 7_000).unwrap();
        let Some((last, _)) = page.last() else { break };
        assert_eq!(page[0].1, records[next as usize]);
        next = last + 1;
        pages += 1;
    }
    eprintln!(
        "20000-record append: {appended:?}; read back in {pages} pages: {:?}",
        t.elapsed()
    );
    assert_eq!((next, pages), (20_000, 3));
}

/// What a client of a demoted primary sees after a failover: its writes refused as
/// read-only. That is retriable and drops the connection, so the retry reconnects (to the
/// new primary, with `target_session_attrs=read-write`) instead of staying on it.
#[test]
fn a_read_only_refusal_is_retriable_and_reconnects() {
    let (pg, db, store) = fresh();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    let mut admin = pg.admin();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET default_transaction_read_only = on"
        ))
        .unwrap();
    pg.terminate_connections(&db);
    assert!(log.end().unwrap_err().is_retriable());
    // Reconnected, now to a read-only server: reads work, the append is refused retriably.
    assert_eq!(log.end().unwrap(), 1);
    match MetadataLogClient::append(&log, 1, &[config("b", "2")], 1) {
        Err(e @ MetadataLogError::Unavailable(_)) => {
            assert!(e.to_string().contains("25006"), "{e}")
        }
        other => panic!("expected a retriable refusal, got {other:?}"),
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET default_transaction_read_only = off"
        ))
        .unwrap();
    // The refusal dropped the connection: this append runs on a fresh, writable session.
    log.append_records(1, &[config("b", "2")], 1).unwrap();
    assert_eq!(log.end().unwrap(), 2);
}

/// A real failover: the primary stops, its streaming standby is promoted. The store, given
/// both hosts and `target_session_attrs=read-write`, answers retriably meanwhile and then
/// writes to the new primary, with every committed record and the lease (and its epoch)
/// still there.
#[test]
fn a_failover_to_a_promoted_standby_is_survived() {
    let primary = TestPostgres::start();
    let standby = primary.start_standby();
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        crate::testing::TEST_USER,
        primary.password(),
        primary.port(),
        standby.port()
    );
    let store = PgMetadataStore::connect(&url).unwrap();
    let lease = store.leases().acquire(1, 60_000).unwrap();
    let log = store.log().for_controller(&lease);
    for i in 0..10 {
        log.append_records(i, &[config("k", &i.to_string())], 1)
            .unwrap();
    }
    // A fast shutdown sends the standby all WAL before the primary exits.
    primary.stop();
    let t = Instant::now();
    let down = log.append_records(10, &[config("k", "10")], 1).unwrap_err();
    assert!(down.is_retriable(), "{down}");
    assert!(!down.to_string().contains(primary.password()), "{down}");
    standby.promote();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match log.append_records(10, &[config("k", "10")], 1) {
            Ok(at) => {
                assert_eq!(at, 10);
                break;
            }
            Err(e) => {
                assert!(e.is_retriable(), "{e}");
                assert!(
                    Instant::now() < deadline,
                    "no write after the failover: {e}"
                );
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
    eprintln!(
        "failover: first write on the new primary {:?} after the old one stopped",
        t.elapsed()
    );
    assert_eq!(log.read_records(0, 100).unwrap().len(), 11);
    let now = store
        .leases()
        .current()
        .unwrap()
        .expect("the lease survived the failover");
    assert_eq!((now.node_id, now.epoch), (1, lease.epoch));
}

/// Columns are read with checks: a table changed behind the broker's back (here a narrower
/// type) is an error naming it, never a panic.
#[test]
fn a_tampered_schema_is_an_error_not_a_panic() {
    let (pg, db, store) = fresh();
    let log = store.log();
    log.append_records(0, &[config("a", "1")], 1).unwrap();
    pg.client(&db)
        .batch_execute(
            r#"ALTER TABLE metadata_log ALTER COLUMN "offset" TYPE integer;
               ALTER TABLE controller_lease ALTER COLUMN holder_node_id TYPE bigint"#,
        )
        .unwrap();
    // The offset parameter no longer fits: refused by the driver, not retriable.
    let e = log.read_records(0, 10).unwrap_err();
    assert!(matches!(&e, PgMetadataError::Database { .. }), "{e}");
    // A column of another type than this binary made.
    let e = store.leases().acquire(1, 1000).unwrap_err();
    assert!(
        matches!(&e, PgMetadataError::Database { reason, .. } if reason.contains("unexpected schema")),
        "{e}"
    );
}

/// The first broker's candidate becomes the cluster id; every later one gets the same.
#[test]
fn cluster_id_is_the_first_brokers() {
    let (_pg, _db, store) = fresh();
    assert_eq!(store.cluster_id("first").unwrap(), "first");
    assert_eq!(store.cluster_id("second").unwrap(), "first");
    // A migration that runs again keeps it.
    store.migrate().unwrap();
    assert_eq!(store.cluster_id("third").unwrap(), "first");
}
