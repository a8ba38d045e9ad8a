"""Cluster mode (issue 11, the metadata half): `strom serve --cluster-metadata postgres://...`.

A real PostgreSQL (Debian's `initdb` + `pg_ctl`, in a temp dir, on a free loopback port) and
real `strom serve` brokers on free ports. Partition data is still each leader's local log
until shared storage lands, so these tests check metadata, leadership and routing, and read
back data only where leadership did not move.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from conftest import free_port
from helpers import admin, kcat, unique_topic

HEARTBEAT_MS = 500
SESSION_MS = 3000


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    for d in reversed(found):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return Path(d)
    return None


class Postgres:
    """A throwaway server; as root it runs as the `postgres` user (it refuses root)."""

    def __init__(self):
        self.bin = _pg_bin()
        if self.bin is None:
            pytest.skip("PostgreSQL server binaries not found (scripts/install-test-deps.sh installs them)")
        self.dir = Path(tempfile.mkdtemp(prefix="strom-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.user = "strom"
        self.password = "pw-" + secrets.token_hex(8)
        self.run_as = "postgres" if os.geteuid() == 0 else None
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            shutil.chown(self.dir, self.run_as, self.run_as)
            shutil.chown(pwfile, self.run_as, self.run_as)
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--pwfile", str(pwfile),
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin / tool), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        cp = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if check and cp.returncode != 0:
            raise RuntimeError(f"{tool} failed: {cp.stdout}{cp.stderr}")
        return cp

    def start(self):
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-w", "-t", "60",
                  "-o", opts, "start")

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self) -> str:
        name = "c" + secrets.token_hex(6)
        self._run("createdb", "-h", str(self.dir), "-p", str(self.port), "-U", self.user, name)
        return name

    def url(self, db: str) -> str:
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def cleanup(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres()
    yield pg
    pg.cleanup()


class ClusterOf:
    def __init__(self, make_broker, url: str):
        self.make_broker = make_broker
        self.url = url
        self.brokers = []

    def add(self, wait: bool = True):
        # Through the environment, so the password is not on a command line.
        b = self.make_broker(env={"STROM_CLUSTER_METADATA_URL": self.url}, **{
            "broker.heartbeat.interval.ms": str(HEARTBEAT_MS),
            "broker.session.timeout.ms": str(SESSION_MS),
            "num.partitions": "6",
        })
        self.brokers.append(b)
        if wait:
            wait_for(lambda: len(metadata(b).brokers) == len([x for x in self.brokers if x.alive()]),
                     30, f"broker {b.name} sees every live broker")
        return b


@pytest.fixture
def cluster(postgres, make_broker):
    c = ClusterOf(make_broker, postgres.url(postgres.create_database()))
    return c


def metadata(b, topic: str | None = None):
    a = admin(b.bootstrap)
    return a.list_topics(topic=topic, timeout=10)


LAST_SEEN: list = []


def wait_for(pred, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    last_err = None
    LAST_SEEN.clear()
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # a broker restarting, a metadata timeout
            last_err = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting until {what} (last error: {last_err}; "
                         f"last seen: {LAST_SEEN[-1:]})")


def node_ids(b) -> set[int]:
    return set(metadata(b).brokers)


def leaders(b, topic: str) -> dict[int, int]:
    t = metadata(b, topic).topics[topic]
    assert t.error is None, t.error
    return {p.id: p.leader for p in t.partitions.values()}


def create(b, topic: str, partitions: int = 6):
    a = admin(b.bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=20, request_timeout=20)
    fs[topic].result(30)


def spread(ls: dict[int, int], brokers: set[int]) -> bool:
    LAST_SEEN.append((ls, brokers))
    counts = {n: 0 for n in brokers}
    for leader in ls.values():
        if leader not in counts:
            return False
        counts[leader] += 1
    return max(counts.values()) - min(counts.values()) <= 1


def three(cluster):
    for _ in range(3):
        cluster.add()
    for b in cluster.brokers:
        wait_for(lambda: len(node_ids(b)) == 3, 10, f"{b.name} lists 3 brokers")
    return node_ids(cluster.brokers[2])


def test_kcat_lists_three_brokers_with_leaders_spread(cluster, postgres):
    ids = three(cluster)
    assert all(i >= 1001 for i in ids), f"allocated node ids start at 1001: {ids}"
    topic = unique_topic("spread")
    create(cluster.brokers[0], topic, 6)
    b2 = cluster.brokers[1]
    wait_for(lambda: spread(leaders(b2, topic), ids), 15, "leaders spread over 3 brokers")
    cp = kcat(["-L", "-b", b2.bootstrap, "-t", topic])
    out = cp.stdout.decode()
    assert cp.returncode == 0, cp.stderr
    assert "3 brokers:" in out, out
    for i in ids:
        assert f"broker {i} at" in out, out
    md = metadata(b2, topic).topics[topic]
    for p in md.partitions.values():
        assert sorted(p.replicas) == sorted(ids) and sorted(p.isrs) == sorted(ids), p
    # Replication factors up to the live broker count; every live broker is a replica.
    a = admin(b2.bootstrap)
    fs = a.create_topics([NewTopic(topic + "-rf3", num_partitions=2, replication_factor=3),
                          NewTopic(topic + "-rf4", num_partitions=2, replication_factor=4)],
                         operation_timeout=20, request_timeout=20)
    fs[topic + "-rf3"].result(30)
    with pytest.raises(Exception) as refused:
        fs[topic + "-rf4"].result(30)
    assert "INVALID_REPLICATION_FACTOR" in str(refused.value), refused.value
    # DescribeConfigs shows the metadata URL as sensitive, without its value.
    from confluent_kafka.admin import ConfigResource, ResourceType
    own_id = next(i for i in ids if _is(b2, i))
    res = ConfigResource(ResourceType.BROKER, str(own_id))
    entry = a.describe_configs([res])[res].result(20)["cluster.metadata.url"]
    assert entry.is_sensitive and entry.value is None, entry
    # The password never reaches a log line.
    for b in cluster.brokers:
        assert postgres.password not in b.log_text()
    # Each broker keeps its allocated id across a restart (meta.properties).
    b = cluster.brokers[2]
    own = next(i for i in ids if _is(b, i))
    b.restart()
    wait_for(lambda: _is(b, own) and node_ids(cluster.brokers[0]) == ids, 30,
             "the restarted broker is back under its id")


def test_kcat_produce_to_a_fresh_topic_on_any_broker(cluster):
    three(cluster)
    topic = unique_topic("fresh")
    # The first broker holds the lease: on the other two the auto-creation is forwarded.
    for b in cluster.brokers:
        t = f"{topic}-{b.name}"
        cp = kcat(["-P", "-b", b.bootstrap, "-t", t], input=b"hello world!\n")
        assert cp.returncode == 0, cp.stderr
        # Metadata reaches the other brokers within milliseconds (NOTIFY), as in Kafka not
        # in the same instant.
        for other in cluster.brokers:
            wait_for(lambda: t in metadata(other).topics, 10, f"{other.name} sees {t}")
        got = kcat(["-C", "-b", cluster.brokers[2].bootstrap, "-t", t, "-e", "-q"])
        assert got.returncode == 0 and got.stdout.decode().count("hello world!") == 1, got.stdout + got.stderr


def test_kill9_moves_leaderships_within_the_session_timeout(cluster):
    ids = three(cluster)
    topic = unique_topic("kill")
    create(cluster.brokers[0], topic, 6)
    observer = cluster.brokers[0]
    wait_for(lambda: spread(leaders(observer, topic), ids), 15, "leaders spread")
    victim = cluster.brokers[1]
    victim_id = next(i for i in ids if _is(victim, i))
    t0 = time.monotonic()
    victim.kill9()
    wait_for(lambda: victim_id not in leaders(observer, topic).values()
             and victim_id not in node_ids(observer), SESSION_MS / 1000 + 5, "the killed broker's partitions moved")
    failover_s = time.monotonic() - t0
    print(f"kill -9 failover: {failover_s:.2f} s (session timeout {SESSION_MS} ms)")
    assert failover_s < SESSION_MS / 1000 + 3
    rest = ids - {victim_id}
    wait_for(lambda: spread(leaders(observer, topic), rest), 10, "leaders spread over the 2 left")
    md = metadata(observer, topic).topics[topic]
    assert all(sorted(p.replicas) == sorted(rest) for p in md.partitions.values())


def _is(b, node_id: int) -> bool:
    """Whether broker process `b` is node `node_id` (by its advertised port)."""
    return any(bm.port == b.port and i == node_id
               for other in (x for x in [b] if x.alive())
               for i, bm in metadata(other).brokers.items())


def test_sigterm_is_a_controlled_shutdown(cluster):
    ids = three(cluster)
    topic = unique_topic("term")
    create(cluster.brokers[0], topic, 6)
    observer = cluster.brokers[0]
    wait_for(lambda: spread(leaders(observer, topic), ids), 15, "leaders spread")
    leaving = cluster.brokers[2]
    leaving_id = next(i for i in ids if _is(leaving, i))
    t0 = time.monotonic()
    rc = leaving.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - t0
    assert rc == 0, leaving.log_tail()
    assert "controlled shutdown: this broker leads no partition" in leaving.log_text(), leaving.log_tail()
    # Moved before the exit: no waiting for the session timeout.
    ls = leaders(observer, topic)
    assert leaving_id not in ls.values(), ls
    print(f"controlled shutdown took {took:.2f} s")
    assert took < SESSION_MS / 1000, took


def test_a_fourth_broker_takes_its_share(cluster):
    ids = three(cluster)
    topic = unique_topic("join")
    create(cluster.brokers[0], topic, 8)
    observer = cluster.brokers[0]
    wait_for(lambda: spread(leaders(observer, topic), ids), 15, "leaders spread over 3")
    cluster.add()
    ids4 = node_ids(observer)
    assert len(ids4) == 4
    wait_for(lambda: spread(leaders(observer, topic), ids4), 15, "leaders spread over 4")


def test_postgres_restart_is_survived(cluster, postgres):
    ids = three(cluster)
    topic = unique_topic("pgrestart")
    create(cluster.brokers[0], topic, 3)
    postgres.stop()
    try:
        # Metadata is still served from the image while PostgreSQL is down.
        assert topic in metadata(cluster.brokers[1]).topics
        time.sleep(1)
    finally:
        postgres.start()
    # The controller resumes: a new topic can be created, and every broker sees it.
    after = unique_topic("after")
    wait_for(lambda: create(cluster.brokers[2], after, 3) is None, 60, "a topic is created after the restart",
             every=1)
    for b in cluster.brokers:
        wait_for(lambda: after in metadata(b).topics, 15, f"{b.name} sees {after}")
    wait_for(lambda: node_ids(cluster.brokers[0]) == ids, 30, "every broker is live again")


def test_the_active_controller_killed_another_takes_the_lease(cluster):
    ids = three(cluster)
    controller = metadata(cluster.brokers[0]).controller_id
    assert controller in ids
    victim = next(b for b in cluster.brokers if _is(b, controller))
    t0 = time.monotonic()
    victim.kill9()
    rest = [b for b in cluster.brokers if b is not victim]
    new = wait_for(lambda: (c := metadata(rest[0]).controller_id) in ids - {controller} and c, 30,
                   "another broker holds the lease")
    print(f"controller failover: {time.monotonic() - t0:.2f} s")
    topic = unique_topic("newctl")
    wait_for(lambda: create(rest[1], topic, 2) is None, 30, "the new controller creates a topic", every=1)
    wait_for(lambda: controller not in node_ids(rest[0]), SESSION_MS / 1000 + 5, "the old controller is fenced")
    assert new != controller


def _init_producer_id(b) -> tuple[int, int]:
    """One InitProducerId v0 (no transactional id) straight to broker `b`: (error, id)."""
    import socket
    import struct
    client_id = b"strom-it"
    body = struct.pack(">hhih", 22, 0, 7, len(client_id)) + client_id + struct.pack(">hi", -1, 60000)
    with socket.create_connection((b.host, b.port), timeout=20) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        resp = s.recv(size, socket.MSG_WAITALL)
    corr, _throttle, err, pid, _epoch = struct.unpack(">iihqh", resp[:20])
    assert corr == 7
    return err, pid


def test_idempotent_producers_on_any_broker(cluster):
    ids = three(cluster)
    controller = metadata(cluster.brokers[0]).controller_id
    # Every broker hands out producer ids, the controller's own and forwarded ones alike,
    # and none twice.
    got = [_init_producer_id(b) for b in cluster.brokers]
    assert all(err == 0 for err, _ in got), got
    assert len({pid for _, pid in got}) == 3, got
    non_controller = next(b for b in cluster.brokers if not _is(b, controller))
    topic = unique_topic("idem")
    create(cluster.brokers[0], topic, 6)
    wait_for(lambda: spread(leaders(non_controller, topic), ids), 15, "leaders spread")
    from helpers import consumer, consume_partitions, produce_all, producer
    from confluent_kafka import TopicPartition
    p = producer(non_controller.bootstrap, **{"enable.idempotence": True, "acks": "all"})
    msgs = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
    produce_all(p, msgs, topic)
    c = consumer(non_controller.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, i, 0) for i in range(6)], expected=300)
    assert sorted(m.value() for m in got) == sorted(v for _, v in msgs)


def test_admin_changes_sent_to_a_broker_that_is_not_the_controller(cluster):
    """Each is forwarded to the controller (Kafka's forwarding), straight over the wire so
    no client library routes it to the controller itself."""
    import kafka_wire as w
    ids = three(cluster)
    controller = metadata(cluster.brokers[0]).controller_id
    other = next(b for b in cluster.brokers if not _is(b, controller))
    topic = unique_topic("fwd")
    create(cluster.brokers[0], topic, 2)
    wait_for(lambda: topic in metadata(other).topics, 10, "the topic reaches the other broker")
    with w.Conn(other.bootstrap) as c:
        # IncrementalAlterConfigs v0: SET retention.ms on the topic.
        body = w.array([w.i8(2) + w.string(topic) + w.array([w.string("retention.ms") + w.i8(0)
                                                             + w.string("3600000")])]) + w.i8(0)
        r = c.request(44, 0, body)
        r.i32()
        (err, _msg, _rt, _name), = r.array(lambda r: (r.i16(), r.string(), r.i8(), r.string()))
        assert err == 0, err
        # CreatePartitions v0: 2 -> 4.
        body = w.array([w.string(topic) + w.i32(4) + w.i32(-1)]) + w.i32(20000) + w.i8(0)
        r = c.request(37, 0, body)
        r.i32()
        (_name, err, _msg), = r.array(lambda r: (r.string(), r.i16(), r.string()))
        assert err == 0, err
    assert len(metadata(other, topic).topics[topic].partitions) == 4
    from confluent_kafka.admin import ConfigResource, ResourceType
    a = admin(cluster.brokers[0].bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    assert a.describe_configs([res])[res].result(20)["retention.ms"].value == "3600000"
    with w.Conn(other.bootstrap) as c:
        # DeleteTopics v1.
        r = c.request(20, 1, w.array([w.string(topic)]) + w.i32(20000))
        r.i32()
        (_name, err), = r.array(lambda r: (r.string(), r.i16()))
        assert err == 0, err
    for b in cluster.brokers:
        wait_for(lambda: topic not in metadata(b).topics, 10, f"{b.name} forgets {topic}")
    assert len(ids) == 3
