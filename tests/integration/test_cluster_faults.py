"""Cluster mode with shared storage (issue 11): `strom serve --cluster-metadata postgres://...
--object-store s3://...`, faults under load.

A real PostgreSQL (Debian's `initdb` + `pg_ctl`, as test_cluster_metadata.py starts it), a real
S3-compatible server (s3s-fs, built by scripts/install-test-deps.sh into .cache/s3s-fs) and real
`strom serve` brokers, driven by confluent-kafka. Partition data is in the object store and
sequenced by PostgreSQL, so it survives any broker: these tests kill, restart, add and remove
brokers, stop the object store and cut a broker off from PostgreSQL, then read every
acknowledged record back.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import free_port, strom_bin
from helpers import admin, unique_topic
from test_cluster_metadata import Postgres, metadata, wait_for

HEARTBEAT_MS = 500
SESSION_MS = 3000
ACCESS_KEY = "strom-test-access"
SECRET_KEY = "strom-test-secret"
BUCKET = "strom-test"
REPO = Path(__file__).resolve().parents[2]


def _s3s_fs_bin() -> str | None:
    for p in (os.environ.get("STROM_S3S_FS_BIN"), str(REPO / ".cache/s3s-fs/bin/s3s-fs"), shutil.which("s3s-fs")):
        if p and os.path.exists(p):
            return p
    return None


class S3:
    """s3s-fs on a free loopback port; stop() and start() keep its data and its port."""

    def __init__(self):
        self.bin = _s3s_fs_bin()
        if self.bin is None:
            pytest.skip("s3s-fs not found (scripts/install-test-deps.sh builds it into .cache/s3s-fs)")
        self.dir = Path(tempfile.mkdtemp(prefix="strom-s3-"))
        (self.dir / "root" / BUCKET).mkdir(parents=True)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        log = open(self.dir / "s3s-fs.log", "ab")
        self.proc = subprocess.Popen(
            [self.bin, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, str(self.dir / "root")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("s3s-fs did not listen within 20 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def objects(self) -> int:
        return sum(len(files) for _, _, files in os.walk(self.dir / "root" / BUCKET))

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut: every connection through it is closed and
    new ones refused until it is restored (a broker cut off from PostgreSQL)."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.cut = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            if self.cut.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut_off(self):
        self.cut.set()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()

    def restore(self):
        self.cut.clear()

    def close(self):
        self.cut_off()
        self.server.close()


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres()
    yield pg
    pg.cleanup()


@pytest.fixture(scope="module")
def s3():
    s = S3()
    yield s
    s.cleanup()


class SharedCluster:
    def __init__(self, make_broker, postgres, s3):
        self.make_broker = make_broker
        self.postgres = postgres
        self.db = postgres.create_database()
        self.url = postgres.url(self.db)
        self.s3 = s3
        self.prefix = "c" + secrets.token_hex(4)
        self.brokers = []

    def add(self, wait: bool = True, pg_port: int | None = None, **overrides):
        url = self.url if pg_port is None else self.url.replace(f":{self.postgres.port}/", f":{pg_port}/")
        env = {"STROM_CLUSTER_METADATA_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        settings = {
            "broker.heartbeat.interval.ms": str(HEARTBEAT_MS),
            "broker.session.timeout.ms": str(SESSION_MS),
            "num.partitions": "6",
            "object.store.url": f"s3://{BUCKET}/{self.prefix}",
            "object.store.endpoint": self.s3.endpoint,
            "object.store.path.style": "true",
            "object.store.request.timeout.ms": "3000",
        }
        settings.update(overrides)
        b = self.make_broker(env=env, **settings)
        self.brokers.append(b)
        if wait:
            self.wait_all_seen()
        return b

    def live(self):
        return [b for b in self.brokers if b.alive()]

    def wait_all_seen(self, timeout: float = 30):
        live = self.live()
        for b in live:
            wait_for(lambda b=b: len(metadata(b).brokers) == len(live), timeout, f"{b.name} sees {len(live)} brokers")

    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.live())

    def all_bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)


@pytest.fixture
def cluster(postgres, s3, make_broker):
    return SharedCluster(make_broker, postgres, s3)


def create(c: SharedCluster, topic: str, partitions: int = 6):
    a = admin(c.bootstrap())
    from confluent_kafka.admin import NewTopic
    fs = a.create_topics([NewTopic(topic, partitions, 1)])
    for f in fs.values():
        f.result(30)
    for b in c.live():
        wait_for(lambda b=b: len(metadata(b, topic).topics[topic].partitions) == partitions, 30,
                 f"{b.name} knows {topic}")


def leaders(b, topic: str) -> dict[int, int]:
    md = metadata(b, topic)
    return {p: pm.leader for p, pm in md.topics[topic].partitions.items()}


class Load:
    """An idempotent acks=all producer in a thread: every acknowledged record, by partition,
    with its offset; errors split into retriable and not."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 6, rate_per_s: int = 300):
        self.topic = topic
        self.partitions = partitions
        self.acked: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        self.fatal: list[str] = []
        self.failed: list[str] = []
        self.stop_flag = threading.Event()
        self.sent = 0
        self.p = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 1000,
            "error_cb": self._error,
        })
        self.rate = rate_per_s
        self.t = threading.Thread(target=self._run, daemon=True)

    def _error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def _done(self, err, msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked[msg.partition()].append((msg.offset(), msg.value()))

    def _run(self):
        i = 0
        while not self.stop_flag.is_set():
            for _ in range(max(1, self.rate // 20)):
                value = f"m-{i:08d}".encode()
                try:
                    self.p.produce(self.topic, value=value, partition=i % self.partitions, on_delivery=self._done)
                    i += 1
                except BufferError:
                    break
            self.p.poll(0.05)
        self.sent = i

    def start(self):
        self.t.start()
        return self

    def stop(self, flush_timeout: float = 90):
        self.stop_flag.set()
        self.t.join(30)
        left = self.p.flush(flush_timeout)
        assert left == 0, f"{left} records neither acknowledged nor failed in {flush_timeout} s"

    def total_acked(self) -> int:
        return sum(len(v) for v in self.acked.values())


def read_all(bootstrap: str, topic: str, partitions: int, ends: dict[int, int], timeout: float = 60):
    """Every record of each partition from offset 0 up to `ends` (exclusive)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + secrets.token_hex(4),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "topic.metadata.refresh.interval.ms": 1000})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if all((got[p][-1][0] + 1 if got[p] else 0) >= ends.get(p, 0) for p in range(partitions)):
                break
            for m in c.consume(500, 1.0):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        continue
                    continue
                got[m.partition()].append((m.offset(), m.value()))
    finally:
        c.close()
    return got


def check_exactly_once(load: Load, bootstrap: str):
    """Every acknowledged record is in its partition once, at its acknowledged offset, in the
    order it was produced; the log holds no record that was not sent (no duplicates)."""
    assert not load.fatal, load.fatal
    ends = {p: (max(o for o, _ in v) + 1) for p, v in load.acked.items() if v}
    got = read_all(bootstrap, load.topic, load.partitions, ends)
    for p, acked in load.acked.items():
        log = got[p]
        values = [v for _, v in log]
        assert len(values) == len(set(values)), f"partition {p}: duplicates in the log"
        offsets = [o for o, _ in log]
        assert offsets == sorted(offsets)
        by_offset = dict(log)
        for o, v in acked:
            assert by_offset.get(o) == v, f"partition {p}: acknowledged {v!r} at {o}, log has {by_offset.get(o)!r}"
        # In order: each partition's values were produced in increasing order.
        assert values == sorted(values), f"partition {p}: out of order"


def test_data_survives_its_leaders_death(cluster):
    """Produce through one broker, kill it with -9: the new leaders serve every acknowledged
    record from shared storage (with local logs the new leader starts empty)."""
    for _ in range(3):
        cluster.add()
    topic = unique_topic("shared")
    create(cluster, topic)
    load = Load(cluster.bootstrap(), topic, rate_per_s=400).start()
    time.sleep(3)
    load.stop()
    assert load.total_acked() > 100
    before = leaders(cluster.brokers[0], topic)
    victim = next(b for b in cluster.brokers if any(_node(b) == l for l in before.values()))
    victim_id = _node(victim)
    victim.kill9()
    rest = cluster.live()
    wait_for(lambda: victim_id not in leaders(rest[0], topic).values(), 30,
             "leaderships moved off the killed broker")
    check_exactly_once(load, cluster.bootstrap())


def _node(b) -> int:
    md = metadata(b)
    port = b.port
    for nid, bm in md.brokers.items():
        if bm.port == port:
            return nid
    raise AssertionError(f"{b.name} not in its own metadata")


def test_kill9_cycles_under_an_idempotent_producer_and_a_group(cluster):
    """A random broker killed with -9 and restarted, cycle after cycle, under an idempotent
    acks=all producer and a 3-member consumer group: every acknowledged record is in the log
    exactly once in order, the group read every one of them (at least once), and no member
    skips a committed offset: after each rebalance the first offset a member gets for a
    partition is not above the highest offset committed for it by then, nothing below it was
    left unread, and the group's final committed offsets are within the log with everything
    below them consumed."""
    for _ in range(3):
        cluster.add()
    topic = unique_topic("kill9")
    create(cluster, topic)
    boot = cluster.all_bootstrap()
    load = Load(boot, topic, rate_per_s=200).start()
    group = "g-" + secrets.token_hex(4)
    consumed: set[bytes] = set()
    # (partition, offset) -> when a member first got it.
    consumed_at: dict[tuple[int, int], float] = {}
    # Per partition, the highest offset any commit reported (acknowledged or not: a commit
    # whose answer was lost with its broker may still have landed) and when.
    committed_max: dict[int, list[tuple[float, int]]] = defaultdict(list)
    # Each assignment's first record: (partition, offset, when).
    firsts: list[tuple[int, int, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def on_commit(err, partitions):
        now = time.monotonic()
        with lock:
            for tp in partitions or []:
                if tp.offset >= 0:
                    committed_max[tp.partition].append((now, tp.offset))

    def member(leave: threading.Event):
        pending: set[int] = set()

        def on_assign(_c, partitions):
            pending.clear()
            pending.update(tp.partition for tp in partitions)

        c = Consumer({"bootstrap.servers": boot, "group.id": group, "auto.offset.reset": "earliest",
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                      "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 1000,
                      "on_commit": on_commit})
        c.subscribe([topic], on_assign=on_assign)
        try:
            while not stop.is_set() and not leave.is_set():
                for m in c.consume(200, 0.5):
                    if not m.error():
                        now = time.monotonic()
                        with lock:
                            consumed.add(m.value())
                            consumed_at.setdefault((m.partition(), m.offset()), now)
                            if m.partition() in pending:
                                pending.discard(m.partition())
                                firsts.append((m.partition(), m.offset(), now))
        finally:
            c.close()

    def start_member():
        leave = threading.Event()
        t = threading.Thread(target=member, args=(leave,), daemon=True)
        t.start()
        return t, leave

    members = [start_member() for _ in range(3)]
    rnd = random.Random(11)
    cycles = int(os.environ.get("STROM_FAULT_CYCLES", "20"))
    started = time.monotonic()
    for cycle in range(cycles):
        if cycle % 4 == 3:
            # A member leaves (committing as it closes) and another joins: rebalances whose
            # new owners must start at the committed offsets, while brokers die.
            t, leave = members.pop(0)
            leave.set()
            t.join(30)
            members.append(start_member())
        victim = rnd.choice(cluster.brokers)
        victim.kill9()
        time.sleep(rnd.uniform(0.5, 1.5))
        victim.start()
        time.sleep(1.5)
    load.stop()
    acked = {v for vs in load.acked.values() for _, v in vs}
    wait_for(lambda: acked <= consumed, 60, "the group read every acknowledged record")
    stop.set()
    for t, _ in members:
        t.join(30)
    assert load.total_acked() > 200, f"only {load.total_acked()} acknowledged in {time.monotonic() - started:.0f} s"
    check_exactly_once(load, cluster.bootstrap())

    assert len(firsts) >= 6 + cycles // 4, f"only {len(firsts)} assignments seen"
    for p, first, when in firsts:
        commits = [o for t, o in committed_max[p] if t <= when]
        highest = max(commits, default=0)
        assert first <= highest, f"partition {p}: a member started at {first}, above the committed {highest}"
        unread = [o for o in range(first) if consumed_at.get((p, o), when + 1) > when]
        assert not unread, f"partition {p}: a member started at {first} with {unread[:10]} never read before"
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group, "enable.auto.commit": False})
    try:
        final = c.committed([TopicPartition(topic, p) for p in range(6)], timeout=30)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(6)}
    finally:
        c.close()
    assert any(tp.offset > 0 for tp in final), final
    for tp in final:
        if tp.offset < 0:
            continue
        assert tp.offset <= ends[tp.partition], f"partition {tp.partition}: committed {tp.offset} > end {ends[tp.partition]}"
        unread = [o for o in range(tp.offset) if (tp.partition, o) not in consumed_at]
        assert not unread, f"partition {tp.partition}: committed {tp.offset} but {unread[:10]} never consumed"
    print(f"kill -9 cycles: {cycles} in {time.monotonic() - started:.0f} s, {load.total_acked()} acknowledged, "
          f"{len(firsts)} assignments checked")


def test_rolling_restart_under_load(cluster):
    """SIGTERM one broker at a time (a controlled shutdown) under load: no non-retriable
    producer error, nothing lost."""
    for _ in range(3):
        cluster.add()
    topic = unique_topic("rolling")
    create(cluster, topic)
    load = Load(cluster.all_bootstrap(), topic, rate_per_s=200).start()
    for b in cluster.brokers:
        b.stop()
        b.start()
        cluster.wait_all_seen()
    load.stop()
    assert not load.failed, load.failed[:5]
    check_exactly_once(load, cluster.bootstrap())


def test_scale_3_to_5_to_2_under_load(cluster):
    for _ in range(3):
        cluster.add()
    topic = unique_topic("scale")
    create(cluster, topic)
    load = Load(cluster.all_bootstrap(), topic, rate_per_s=200).start()
    for _ in range(2):
        cluster.add()
    five = {_node(b) for b in cluster.brokers}
    wait_for(lambda: set(leaders(cluster.brokers[0], topic).values()) - five == set()
             and len(set(leaders(cluster.brokers[0], topic).values())) >= 4, 30, "leaders spread over 5")
    for b in cluster.brokers[:3]:
        b.stop()
        time.sleep(1)
    cluster.wait_all_seen()
    load.stop()
    # The producer bootstraps from all five; the two left serve everything.
    assert not load.failed, load.failed[:5]
    check_exactly_once(load, cluster.bootstrap())


def test_object_store_stopped_for_10_s(cluster, s3):
    """The object store away for 10 s: produce gets retriable errors (the producer retries),
    then resumes by itself; nothing acknowledged is lost."""
    for _ in range(3):
        cluster.add()
    topic = unique_topic("s3out")
    create(cluster, topic)
    load = Load(cluster.bootstrap(), topic, rate_per_s=200).start()
    time.sleep(2)
    before = load.total_acked()
    s3.stop()
    try:
        time.sleep(10)
        during = load.total_acked()
    finally:
        s3.start()
    time.sleep(4)
    load.stop()
    # Requests in flight when it stopped may finish; nothing new is acknowledged for long.
    assert during - before < 200, f"{during - before} acknowledged while the object store was away"
    assert load.total_acked() > during, "produce did not resume"
    assert not load.failed, load.failed[:5]
    check_exactly_once(load, cluster.bootstrap())
    logs = "".join(b.log_text() for b in cluster.brokers)
    assert "intake PUT failed" in logs


def test_a_broker_cut_off_from_postgres_acknowledges_nothing(cluster, postgres):
    """A broker whose PostgreSQL connections are cut (through a proxy) is fenced, its
    leaderships move, and no write is acknowledged by it after the cut; the others serve."""
    cluster.add()
    cluster.add()
    proxy = Proxy(postgres.port)
    try:
        isolated = cluster.add(pg_port=proxy.port)
        topic = unique_topic("cut")
        create(cluster, topic)
        iso_id = _node(isolated)
        led = [p for p, l in leaders(isolated, topic).items() if l == iso_id]
        assert led, "the broker to cut off leads nothing"
        # A producer that knows only the isolated broker, writing to a partition it leads.
        p = Producer({"bootstrap.servers": isolated.bootstrap, "enable.idempotence": True,
                      "acks": "all", "message.timeout.ms": 8000})
        acks: list[tuple[float, object]] = []
        for i in range(20):
            p.produce(topic, value=b"before-%d" % i, partition=led[0],
                      on_delivery=lambda e, m: acks.append((time.monotonic(), e)))
        assert p.flush(20) == 0
        assert all(e is None for _, e in acks)
        acks.clear()
        proxy.cut_off()
        cut_at = time.monotonic()
        for i in range(20):
            p.produce(topic, value=b"after-%d" % i, partition=led[0],
                      on_delivery=lambda e, m: acks.append((time.monotonic(), e)))
        p.flush(30)
        assert acks and all(e is not None for _, e in acks), \
            f"acknowledged after the cut: {[a for a in acks if a[1] is None]}"
        # The others see it fenced and lead its partitions.
        others = [b for b in cluster.brokers if b is not isolated]
        wait_for(lambda: iso_id not in leaders(others[0], topic).values(), 30, "its leaderships moved")
        got = read_all(",".join(b.bootstrap for b in others), topic, 6, {led[0]: 20})
        values = [v for _, v in got[led[0]]]
        assert values[:20] == [b"before-%d" % i for i in range(20)]
        assert not any(v.startswith(b"after-") for v in values), "a write it could not sequence is in the log"
        assert time.monotonic() - cut_at < 120
    finally:
        proxy.close()


def test_postgres_restarted_mid_stream(cluster, postgres):
    """PostgreSQL (the sequencer and the metadata) restarted under load: produce gets
    retriable errors while it is away, then resumes by itself; nothing acknowledged is lost."""
    for _ in range(3):
        cluster.add()
    topic = unique_topic("pgrestart")
    create(cluster, topic)
    load = Load(cluster.all_bootstrap(), topic, rate_per_s=200).start()
    time.sleep(2)
    postgres.stop()
    time.sleep(3)
    during = load.total_acked()
    postgres.start()
    wait_for(lambda: load.total_acked() > during + 100, 60, "produce resumed after the restart")
    load.stop()
    assert not load.failed, load.failed[:5]
    check_exactly_once(load, cluster.bootstrap())


def _produce_acked(bootstrap: str, topic: str, partitions: int, count: int, **config) -> int:
    acked = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **config})
    for i in range(count):
        p.produce(topic, value=b"v" * 100, partition=i % partitions,
                  on_delivery=lambda e, m: acked.append(m) if e is None else None)
    assert p.flush(30) == 0
    assert len(acked) == count
    return count


def test_shared_partitions_figures_in_metrics_and_topic_describe(cluster):
    """A shared partition's log end offset and size are in /metrics and `strom topic describe`
    (they read the hosted partitions, which used to be the local logs only)."""
    from test_metrics import samples, scrape
    import json
    admin_port = free_port()
    cluster.add(**{"admin.http.listener": f"127.0.0.1:{admin_port}",
                   "metrics.partition.labels.enable": "true"})
    topic = unique_topic("figures")
    create(cluster, topic, partitions=2)
    _produce_acked(cluster.bootstrap(), topic, 2, 30)
    wait_for(lambda: admin_port and _port_open(admin_port), 10, "admin listener")
    families = scrape(admin_port)
    for p in (0, 1):
        for name in ("strom_partition_log_end_offset", "strom_partition_high_watermark"):
            got = samples(families, name, topic=topic, partition=str(p))
            assert got and got[0].value == 15, (name, p, got)
        size = samples(families, "strom_partition_size_bytes", topic=topic, partition=str(p))
        assert size and size[0].value > 15 * 100, size
    assert samples(families, "strom_topic_high_watermark", topic=topic)[0].value == 30
    out = subprocess.run([strom_bin(), "topic", "describe", topic, "-b", cluster.bootstrap(),
                          "--output", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    described = json.loads(out.stdout)
    described = described[0] if isinstance(described, list) else described
    parts = {p["partition"]: p for p in described["partitions"]}
    for p in (0, 1):
        assert parts[p]["high_watermark"] == 15, parts[p]
        assert parts[p]["size_bytes"] and parts[p]["size_bytes"] > 15 * 100, parts[p]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_log_append_time_on_a_shared_partition(cluster):
    """A LogAppendTime topic on shared storage: the consumed record's timestamp is the
    broker's (type LogAppendTime), between the produce call and its acknowledgement, and the
    delivery report carries the produce answer's log_append_time_ms."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    from confluent_kafka.admin import NewTopic
    cluster.add()
    topic = unique_topic("appendtime")
    a = admin(cluster.bootstrap())
    for f in a.create_topics([NewTopic(topic, 1, 1,
                                       config={"message.timestamp.type": "LogAppendTime"})]).values():
        f.result(30)
    wait_for(lambda: topic in metadata(cluster.brokers[0], topic).topics, 30, "topic known")
    reports = []
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True})
    before_ms = int(time.time() * 1000)
    # The producer's own time is far in the past: only the broker's may show.
    p.produce(topic, value=b"stamped", partition=0, timestamp=1_000,
              on_delivery=lambda e, m: reports.append((e, m)))
    assert p.flush(30) == 0
    after_ms = int(time.time() * 1000)
    (err, msg), = reports
    assert err is None, err
    kind, stamped = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and before_ms <= stamped <= after_ms, msg.timestamp()
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": unique_topic("g"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got = m
    c.close()
    assert got is not None and got.value() == b"stamped"
    kind, consumed = got.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME, got.timestamp()
    assert consumed == stamped and before_ms <= consumed <= after_ms, (before_ms, consumed, after_ms)


def test_delete_records_on_a_shared_partition(cluster):
    """DeleteRecords with confluent-kafka's AdminClient on a shared partition moves its log
    start in PostgreSQL (awaited, no worker blocked): a fetch below it is OFFSET_OUT_OF_RANGE
    and ListOffsets earliest answers the new start."""
    import kafka_wire as kw
    from confluent_kafka.admin import OffsetSpec
    cluster.add()
    topic = unique_topic("deleterecords")
    create(cluster, topic, partitions=1)
    _produce_acked(cluster.bootstrap(), topic, 1, 50)
    a = admin(cluster.bootstrap())
    deleted = list(a.delete_records([TopicPartition(topic, 0, 20)]).values())[0].result(30)
    assert deleted.low_watermark == 20
    earliest = a.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()})
    assert list(earliest.values())[0].result(30).offset == 20
    with kw.Conn(cluster.brokers[0].bootstrap) as c:
        r = c.request(kw.LIST_OFFSETS, 1, kw.list_offsets_v1_body(topic, 0, -2))
        assert kw.parse_list_offsets_v1(r)[(topic, 0)][2] == 20
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 10))
        assert kw.parse_fetch_v4(r)[(topic, 0)][0] == 1  # OFFSET_OUT_OF_RANGE
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 20))
        error, hw, records = kw.parse_fetch_v4(r)[(topic, 0)]
        assert (error, hw) == (0, 50) and records
    c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": unique_topic("g")})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (20, 50)
    finally:
        c.close()
