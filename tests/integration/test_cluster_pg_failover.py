"""Cluster mode (issue 11): the cluster's PostgreSQL fails over to a promoted standby.

A real primary and a real streaming standby (`initdb`, then `pg_basebackup -R` from the
primary), both on loopback ports in temp dirs, with synchronous replication so that a commit
the primary acknowledged is on the standby too (with asynchronous replication a failover may
lose the last acknowledged commits, as for any PostgreSQL-backed system; README says so).
Three brokers get a multi-host URL `postgres://...@127.0.0.1:P1,127.0.0.1:P2/db?
target_session_attrs=read-write` and are driven by an idempotent acks=all producer and a
consumer group. The primary is stopped (immediate, a crash), the standby promoted; the
cluster must resume by itself and every acknowledged record is read back exactly once.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException

from test_cluster_faults import SESSION_MS, S3, Load, SharedCluster, check_exactly_once, create
from test_cluster_metadata import Postgres, metadata, wait_for
from conftest import free_port
from helpers import unique_topic


class Standby(Postgres):
    """A streaming standby of `primary`: a base backup with `-R` (standby.signal and
    primary_conninfo), started on a port of its own."""

    def __init__(self, primary: Postgres):
        # Not Postgres.__init__: no initdb, the data directory is the primary's base backup.
        self.bin = primary.bin
        self.dir = primary.dir.parent / (primary.dir.name + "-standby")
        self.dir.mkdir()
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = primary.user
        self.password = primary.password
        self.run_as = primary.run_as
        self.extra_opts = ""
        if self.run_as:
            shutil.chown(self.dir, self.run_as, self.run_as)
        self._run("pg_basebackup", "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
                  "-h", str(primary.dir), "-p", str(primary.port), "-U", primary.user)
        self.start()

    def promote(self):
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def stop_immediate(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)


class SyncPrimary(Postgres):
    """A primary whose commits wait for the standby (`synchronous_standby_names='*'`,
    `synchronous_commit=on`). Given on the command line, not in postgresql.conf: the base
    backup copies postgresql.conf, and a promoted standby that waits for a standby of its own
    would never commit."""

    def start(self):
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
                " -c synchronous_commit=on -c synchronous_standby_names=*")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w", "-t", "60",
                  "-o", opts, "start")

    def stop_immediate(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def sync_standbys(self) -> str:
        cp = self._run("psql", "-h", str(self.dir), "-p", str(self.port), "-U", self.user, "-d", "postgres",
                       "-Atc", "SELECT string_agg(sync_state, ',') FROM pg_stat_replication", check=False)
        return cp.stdout.strip()


@pytest.fixture
def pg_pair():
    primary = SyncPrimary()
    standby = None
    try:
        standby = Standby(primary)
        wait_for(lambda: primary.sync_standbys() == "sync", 30, "the standby streams synchronously")
        yield primary, standby
    finally:
        if standby is not None:
            standby.stop_immediate()
            shutil.rmtree(standby.dir, ignore_errors=True)
        primary.cleanup()


@pytest.fixture
def s3():
    s = S3()
    yield s
    s.cleanup()


class GroupReader:
    """A consumer group member in a thread, committing as it goes: every value it saw."""

    def __init__(self, bootstrap: str, topic: str):
        self.seen: set[bytes] = set()
        self.errors: list[str] = []
        self.stop_flag = threading.Event()
        # The group's committed offsets when the failover began, and the lowest offset read
        # after: below the former means the group's offsets were lost or reset.
        self.floor: dict[int, int] | None = None
        self.lowest_after: dict[int, int] = {}
        self.bootstrap = bootstrap
        self.group_id = "failover-" + secrets.token_hex(4)
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": self.group_id,
                           "auto.offset.reset": "earliest", "enable.auto.commit": True,
                           "auto.commit.interval.ms": 500, "session.timeout.ms": 10000,
                           "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 1000})
        self.c.subscribe([topic])
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_flag.is_set():
            for m in self.c.consume(500, 0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF and m.error().fatal():
                        self.errors.append(str(m.error()))
                    continue
                self.seen.add(m.value())
                if self.floor is not None:
                    p = m.partition()
                    self.lowest_after[p] = min(self.lowest_after.get(p, m.offset()), m.offset())

    def mark_committed(self, topic: str, partitions: int):
        from confluent_kafka import TopicPartition
        # Through a consumer of its own (same group, not a member): the member's handle is
        # busy in consume() on its thread.
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group_id})
        try:
            got = probe.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        finally:
            probe.close()
        self.floor = {tp.partition: tp.offset for tp in got if tp.offset >= 0}

    def rewinds(self) -> dict[int, tuple[int, int]]:
        floor = self.floor or {}
        return {p: (floor[p], low) for p, low in self.lowest_after.items() if p in floor and low < floor[p]}

    def stop(self):
        self.stop_flag.set()
        self.t.join(30)
        self.c.close()


def test_postgres_failover_to_a_promoted_standby(pg_pair, s3, make_broker):
    """Primary crashed, standby promoted: the brokers reconnect to the new primary (the
    URL's second host), the controller lease is taken again, produce and the group resume by
    themselves; every acknowledged record is in the log exactly once; and a broker started
    while the URL's first host is down connects to the second."""
    primary, standby = pg_pair
    db = primary.create_database()
    url = (f"postgres://{primary.user}:{primary.password}@127.0.0.1:{primary.port},"
           f"127.0.0.1:{standby.port}/{db}?target_session_attrs=read-write")
    cluster = SharedCluster(make_broker, primary, s3)
    cluster.url = url
    for _ in range(3):
        cluster.add()
    topic = unique_topic("pgfailover")
    create(cluster, topic)
    load = Load(cluster.all_bootstrap(), topic, rate_per_s=200).start()
    group = GroupReader(cluster.all_bootstrap(), topic)
    wait_for(lambda: load.total_acked() > 200 and len(group.seen) > 50, 30, "produce and consume under way")

    group.mark_committed(topic, 6)
    primary.stop_immediate()
    # Longer than the brokers' session timeout: registrations and the controller lease run
    # out while no primary is there, and must be taken again on the new one.
    time.sleep(SESSION_MS / 1000 + 1)
    during = load.total_acked()
    standby.promote()
    started = time.monotonic()
    wait_for(lambda: load.total_acked() > during + 200, 60, "produce resumed on the promoted standby")
    resumed_s = time.monotonic() - started
    print(f"produce resumed {resumed_s:.1f} s after the promotion")

    # A topic made after the failover: the metadata log (and its controller) work on the new
    # primary, and every broker follows it.
    # A retriable answer is retried, as a Kafka admin user would (KAFKA_STORAGE_ERROR from a
    # broker's metadata connection that still pointed at the dead primary; or no controller
    # known yet while the lease moves): what must not happen is that it never succeeds.
    topic2 = unique_topic("after")
    attempts = []
    for _ in range(4):
        try:
            create(cluster, topic2, partitions=2)
            break
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                break
            assert err.retriable() or err.code() == KafkaError._TIMED_OUT, err
            attempts.append(str(err))
            time.sleep(1)
    else:
        pytest.fail(f"no topic could be created after the failover: {attempts}")
    print(f"CreateTopics after the failover: {len(attempts)} retriable failures first: {attempts}")

    # The URL's first host is down now: a new broker must connect through the second.
    late = cluster.add()
    wait_for(lambda: topic2 in metadata(late, topic2).topics, 30, "the late broker sees the new topic")

    load.stop()
    assert not load.failed, load.failed[:5]
    check_exactly_once(load, cluster.bootstrap())
    acked_values = {v for recs in load.acked.values() for _, v in recs}
    wait_for(lambda: acked_values <= group.seen, 60, "the group read every acknowledged record")
    group.stop()
    assert not group.errors, group.errors[:5]
    assert not group.rewinds(), f"the group read below its committed offsets (reset?): {group.rewinds()}"
    for b in cluster.live():
        assert b.alive(), b.log_tail()


class Blackhole:
    """A loopback port that drops every new connection's SYN (its one-slot accept queue is
    kept full), as a crashed host's address does: a connect hangs instead of being refused."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port = self.server.getsockname()[1]
        self.fill = []
        for _ in range(2):
            c = socket.socket()
            c.settimeout(1)
            try:
                c.connect(("127.0.0.1", self.port))
                self.fill.append(c)
            except OSError:
                c.close()
        probe = socket.socket()
        probe.settimeout(1)
        try:
            probe.connect(("127.0.0.1", self.port))
            pytest.skip("this kernel answers connects past a full accept queue")
        except OSError:
            pass
        finally:
            probe.close()

    def close(self):
        for c in self.fill:
            c.close()
        self.server.close()


@pytest.fixture
def postgres():
    pg = Postgres()
    yield pg
    pg.cleanup()


def test_a_broker_starts_while_the_first_host_does_not_answer(postgres, s3, make_broker):
    """The URL's first host drops connects (a crashed machine, not a refusing port): the
    broker's connections give up on it within their connect timeout and use the second host,
    so it starts, registers, and produce and fetch work."""
    hole = Blackhole()
    try:
        db = postgres.create_database()
        url = (f"postgres://{postgres.user}:{postgres.password}@127.0.0.1:{hole.port},"
               f"127.0.0.1:{postgres.port}/{db}?target_session_attrs=read-write")
        cluster = SharedCluster(make_broker, postgres, s3)
        cluster.url = url
        started = time.monotonic()
        # Each of the broker's first connections spends its connect timeout (2 s) on the
        # silent host: more than conftest's start-up wait on a loaded machine.
        b = cluster.add(wait=False, start=False)
        b.start(wait=False)
        b.wait_ready(60)
        cluster.wait_all_seen()
        print(f"broker up {time.monotonic() - started:.1f} s")
        topic = unique_topic("blackhole")
        create(cluster, topic, partitions=2)
        load = Load(cluster.bootstrap(), topic, partitions=2, rate_per_s=200).start()
        wait_for(lambda: load.total_acked() > 100, 60, "records acknowledged")
        load.stop()
        assert not load.failed, load.failed[:5]
        check_exactly_once(load, cluster.bootstrap())
    finally:
        hole.close()
