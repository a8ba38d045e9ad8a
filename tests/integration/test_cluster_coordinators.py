"""Cluster mode with shared storage (issue 11): `__consumer_offsets` and `__transaction_state`
are in the object store and sequenced by PostgreSQL like every topic, so a group's committed
offsets and a transactional id's state survive the broker that coordinated them.

Three real brokers over a real PostgreSQL and a real S3-compatible server (s3s-fs), as in
test_cluster_faults.py, driven by confluent-kafka and the `strom` CLI; the coordinator's broker
is killed with SIGKILL and the group or the transactional producer carries on through the
others.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import strom_bin
from test_cluster_faults import SharedCluster, create, postgres, s3  # noqa: F401 (fixtures)
from test_cluster_metadata import metadata, wait_for

import pytest

OFFSETS_TOPIC = "__consumer_offsets"
TXN_TOPIC = "__transaction_state"


@pytest.fixture
def cluster(postgres, s3, make_broker):  # noqa: F811
    c = SharedCluster(make_broker, postgres, s3)
    for _ in range(3):
        c.add()
    return c


def java_hash_partition(key: str, partitions: int = 50) -> int:
    """Kafka's `Utils.abs(key.hashCode()) % partitions` (String.hashCode over UTF-16 units;
    Utils.abs maps Integer.MIN_VALUE to 0)."""
    h = 0
    for unit in key.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def broker_by_id(c: SharedCluster, node_id: int):
    """The fixture's broker whose registration has this node id."""
    for b in c.live():
        md = metadata(b)
        if node_id in md.brokers:
            port = md.brokers[node_id].port
            for candidate in c.live():
                if candidate.bootstrap.endswith(f":{port}"):
                    return candidate
    raise AssertionError(f"no live broker is node {node_id}")


def leader_of(b, topic: str, partition: int) -> int:
    md = metadata(b, topic)
    return md.topics[topic].partitions[partition].leader


def wait_leader_moved(c: SharedCluster, topic: str, partition: int, dead: int, timeout: float = 60):
    b = c.live()[0]
    wait_for(lambda: leader_of(b, topic, partition) not in (dead, -1), timeout,
             f"{topic}-{partition} led off node {dead}")


def produce_plain(bootstrap: str, topic: str, partitions: int, per_partition: int):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(per_partition):
        for part in range(partitions):
            p.produce(topic, value=f"v-{part}-{i}".encode(), partition=part)
    assert p.flush(60) == 0


def group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                     "topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 1000})


def test_committed_offsets_survive_the_coordinators_sigkill(cluster):
    """A group commits offsets; the broker coordinating it is killed with SIGKILL; a member of
    the same group on the other brokers resumes from the committed offsets, not the start."""
    topic = "coord-" + secrets.token_hex(4)
    partitions, per_partition = 6, 20
    create(cluster, topic, partitions)
    produce_plain(cluster.bootstrap(), topic, partitions, per_partition)

    group = "g-" + secrets.token_hex(4)
    c = group_consumer(cluster.bootstrap(), group)
    c.subscribe([topic])
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while sum(seen.values()) < partitions * per_partition // 2 and time.monotonic() < deadline:
        for m in c.consume(20, 1.0):
            if m.error():
                continue
            seen[m.partition()] = seen.get(m.partition(), 0) + 1
            if sum(seen.values()) >= partitions * per_partition // 2:
                break
    assert sum(seen.values()) >= partitions * per_partition // 2, seen
    # The member commits, as a member of its generation, an offset in the middle of every
    # partition of the topic (each a different one).
    committed = {p: 3 + 2 * p for p in range(partitions)}
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False)
    c.close()

    a = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    offsets_partition = java_hash_partition(group)

    def coordinator_now():
        # FindCoordinator's answer and the partition's leader agree (leaderships may still
        # be spreading over the brokers that just joined).
        desc = a.describe_consumer_groups([group])[group].result(30)
        leader = leader_of(cluster.live()[0], OFFSETS_TOPIC, offsets_partition)
        return desc.coordinator.id if desc.coordinator.id == leader else None

    coordinator = wait_for(coordinator_now, 30, "the group's coordinator is its partition's leader")
    victim = broker_by_id(cluster, coordinator)
    victim.kill9()
    wait_leader_moved(cluster, OFFSETS_TOPIC, offsets_partition, coordinator)

    # The group's offsets as its new coordinator serves them: what was committed, exactly.
    c2 = group_consumer(cluster.bootstrap(), group)
    deadline = time.monotonic() + 60
    got = None
    while time.monotonic() < deadline:
        try:
            tps = c2.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            got = {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
            if got == committed:
                break
        except KafkaException:
            pass
        time.sleep(0.5)
    assert got == committed, f"committed {committed}, the new coordinator has {got}"

    # A member of the group resumes from there: the first record of each partition it reads
    # is the committed offset (auto.offset.reset=earliest would give 0 were they lost).
    c2.subscribe([topic])
    first: dict[int, int] = {}
    total = 0
    expected_rest = partitions * per_partition - sum(committed.values())
    deadline = time.monotonic() + 90
    while total < expected_rest and time.monotonic() < deadline:
        for m in c2.consume(50, 1.0):
            if m.error():
                continue
            first.setdefault(m.partition(), m.offset())
            total += 1
    c2.close()
    for p, o in committed.items():
        assert first.get(p) == o, f"partition {p}: resumed at {first.get(p)}, committed {o}"
    assert total == expected_rest, f"read {total} records after the commit, expected {expected_rest}"


def test_no_acknowledged_commit_is_lost_when_the_coordinator_shuts_down(cluster):
    """A member commits ever larger offsets, one synchronous commit after another, then the
    broker coordinating its group shuts down (SIGTERM: a controlled shutdown, its leaderships
    move while it still runs). The new coordinator has the last acknowledged offset (or a
    later one whose answer was lost), never an earlier one, and takes commits of its own."""
    topic = "coord-term-" + secrets.token_hex(4)
    create(cluster, topic, 1)
    produce_plain(cluster.bootstrap(), topic, 1, 1)
    group = "g-" + secrets.token_hex(4)
    offsets_partition = java_hash_partition(group)
    a = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    def coordinator_now():
        desc = a.describe_consumer_groups([group])[group].result(30)
        leader = leader_of(cluster.live()[0], OFFSETS_TOPIC, offsets_partition)
        return desc.coordinator.id if desc.coordinator.id == leader else None

    c = group_consumer(cluster.all_bootstrap(), group)
    c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    coordinator = wait_for(coordinator_now, 30, "the group's coordinator is its partition's leader")
    victim = broker_by_id(cluster, coordinator)

    acknowledged = 1
    attempted = 1
    stop = threading.Event()

    def commits():
        nonlocal acknowledged, attempted
        n = 2
        while not stop.is_set():
            attempted = n
            try:
                c.commit(offsets=[TopicPartition(topic, 0, n)], asynchronous=False)
                acknowledged = n
            except KafkaException:
                time.sleep(0.05)
            n += 1

    t = threading.Thread(target=commits, daemon=True)
    t.start()
    time.sleep(2.0)
    stop.set()
    t.join(30)
    before_stop = acknowledged
    victim.stop(timeout=60)
    wait_leader_moved(cluster, OFFSETS_TOPIC, offsets_partition, coordinator)
    assert before_stop > 1, "commits were acknowledged before the shutdown"
    c2 = group_consumer(cluster.bootstrap(), group)

    def committed_now():
        tp = c2.committed([TopicPartition(topic, 0)], timeout=10)[0]
        return tp.offset if tp.offset >= 0 else None

    got = wait_for(committed_now, 60, "the new coordinator answers OffsetFetch", every=0.5)
    assert acknowledged <= got <= attempted, (acknowledged, got, attempted)
    # The new coordinator takes commits of its own.
    c.commit(offsets=[TopicPartition(topic, 0, attempted + 100)], asynchronous=False)
    assert committed_now() == attempted + 100
    c.close()
    c2.close()


def strom_json(bootstrap: str, *args):
    cp = subprocess.run([strom_bin(), *args, "-b", bootstrap, "--output", "json"],
                        capture_output=True, timeout=60)
    if cp.returncode != 0:
        return None
    return json.loads(cp.stdout)


def describe_txn(c: SharedCluster, tid: str, timeout: float = 60):
    """DescribeTransactions through any live broker, retried until an answer comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = strom_json(c.bootstrap(), "transactions", "describe", "--transactional-id", tid)
        if d is not None:
            return d
        time.sleep(0.5)
    raise AssertionError(f"no coordinator answered for {tid} in {timeout} s")


def txn_producer(bootstrap: str, tid: str, errors: list) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                     "transaction.timeout.ms": 60000, "topic.metadata.refresh.interval.ms": 1000,
                     "reconnect.backoff.max.ms": 1000,
                     "error_cb": lambda e: errors.append(e)})


def test_transaction_state_survives_the_coordinators_sigkill(cluster):
    """A transactional producer's id is registered (InitProducerId: a `__transaction_state`
    record); the broker coordinating it is killed with SIGKILL. The next coordinator has the
    id's state from shared storage: DescribeTransactions shows the same producer id and epoch,
    and a new producer with the same transactional.id gets that producer id with the epoch
    bumped (Kafka's fencing: were the state lost, it would get a new producer id), after which
    the old producer is fenced."""
    tid = "t-" + secrets.token_hex(4)
    errors1: list = []
    p1 = txn_producer(cluster.bootstrap(), tid, errors1)
    p1.init_transactions(60)
    txn_partition = java_hash_partition(tid)

    def stable():
        d = describe_txn(cluster, tid)
        return d if d["coordinator"] == leader_of(cluster.live()[0], TXN_TOPIC, txn_partition) else None

    before = wait_for(stable, 30, "the id's coordinator is its partition's leader", every=0.5)
    assert before["state"] == "Empty", before
    coordinator = before["coordinator"]

    victim = broker_by_id(cluster, coordinator)
    victim.kill9()
    wait_leader_moved(cluster, TXN_TOPIC, txn_partition, coordinator)

    after = describe_txn(cluster, tid)
    assert after["coordinator"] != coordinator, after
    assert (after["producer_id"], after["producer_epoch"], after["state"]) == (
        before["producer_id"], before["producer_epoch"], "Empty"), (before, after)

    errors2: list = []
    p2 = txn_producer(cluster.bootstrap(), tid, errors2)
    p2.init_transactions(60)
    fenced = describe_txn(cluster, tid)
    assert fenced["producer_id"] == before["producer_id"], (before, fenced)
    assert fenced["producer_epoch"] == before["producer_epoch"] + 1, (before, fenced)

    # The first producer's epoch is the older one now: its next transaction is refused.
    topic = "coord-txn-" + secrets.token_hex(4)
    create(cluster, topic, 1)
    p1.begin_transaction()
    p1.produce(topic, value=b"from the fenced producer", partition=0)
    with pytest.raises(KafkaException) as refused:
        p1.commit_transaction(30)
    err = refused.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), err
