"""Transactions in cluster mode with shared storage (issue 11): transactional batches,
markers, the last stable offset and the aborted-transactions index are in PostgreSQL and the
object store like every batch, so a read_committed consumer on any broker sees exactly the
committed records, `send_offsets_to_transaction` works, and a transaction whose coordinator
dies with SIGKILL is aborted or completed once the next coordinator loads it, never
half-visible.

Three real brokers over a real PostgreSQL and a real S3-compatible server (s3s-fs), as in
test_cluster_coordinators.py, driven by confluent-kafka.
"""

from __future__ import annotations

import secrets
import time

from confluent_kafka import KafkaException, TopicPartition

from helpers import consume_partitions, consumer, producer
from test_cluster_coordinators import (OFFSETS_TOPIC, TXN_TOPIC, broker_by_id, describe_txn, java_hash_partition,
                                       leader_of, wait_leader_moved)
from test_cluster_faults import SharedCluster, create, postgres, s3  # noqa: F401 (fixtures)
from test_cluster_metadata import wait_for
from test_transactions import txn_producer

import pytest

PARTITIONS = 3


@pytest.fixture
def cluster(postgres, s3, make_broker):  # noqa: F811
    c = SharedCluster(make_broker, postgres, s3)
    for _ in range(3):
        c.add()
    return c


def read_values(bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS,
                timeout: float = 30) -> list[str]:
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        msgs = consume_partitions(c, [TopicPartition(topic, p, 0) for p in range(partitions)],
                                  timeout=timeout)
    finally:
        c.close()
    return sorted(m.value().decode() for m in msgs)


def ensure_internal_topics(cluster: SharedCluster, topic: str):
    """Creates `__consumer_offsets` and `__transaction_state` (a group's commit, a
    transactional id's InitProducerId) and waits until every partition of both has a leader."""
    warm = consumer(cluster.bootstrap(), **{"group.id": "warm-" + secrets.token_hex(4)})
    try:
        wait_for(lambda: warm.committed([TopicPartition(topic, 0)], timeout=10) is not None, 60,
                 "__consumer_offsets exists")
    finally:
        warm.close()
    p = cluster_txn_producer(cluster.bootstrap(), "warm-" + secrets.token_hex(4))
    p.init_transactions(60)
    b = cluster.live()[0]
    for internal in (OFFSETS_TOPIC, TXN_TOPIC):
        wait_for(lambda t=internal: all(leader_of(b, t, i) >= 0 for i in range(50)), 60,
                 f"every partition of {internal} is led")


def cluster_txn_producer(bootstrap: str, tid: str, **conf):
    conf.setdefault("transaction.timeout.ms", 60000)
    return txn_producer(bootstrap, tid, **{"topic.metadata.refresh.interval.ms": 1000,
                                           "reconnect.backoff.max.ms": 1000, **conf})


def test_commit_and_abort_read_committed_on_another_broker(cluster):
    """A confluent-kafka transactional producer (bootstrapped on broker 1) commits one
    transaction and aborts another over three partitions; while a third is open, a
    read_committed consumer bootstrapped on broker 3 stops at the last stable offset; at the
    end it sees exactly the committed records, and read_uncommitted sees them all."""
    topic = "ctx-" + secrets.token_hex(4)
    create(cluster, topic, PARTITIONS)
    first, _, third = cluster.live()
    p = cluster_txn_producer(first.bootstrap, "ctx-" + secrets.token_hex(4))
    p.init_transactions(60)
    committed, aborted = [], []
    for n, commit in enumerate([True, False, True]):
        p.begin_transaction()
        vals = [f"t{n}-{i}" for i in range(12)]
        for i, v in enumerate(vals):
            p.produce(topic, partition=i % PARTITIONS, value=v.encode())
        assert p.flush(30) == 0
        if commit:
            p.commit_transaction(60)
            committed.extend(vals)
        else:
            p.abort_transaction(60)
            aborted.extend(vals)

    # An open transaction: its records are stored, but below no last stable offset yet.
    p.begin_transaction()
    open_vals = [f"open-{i}" for i in range(6)]
    for i, v in enumerate(open_vals):
        p.produce(topic, partition=i % PARTITIONS, value=v.encode())
    assert p.flush(30) == 0
    during = read_values(third.bootstrap, topic, "read_committed", timeout=15)
    assert during == sorted(committed), "read_committed stops at the LSO of the open transaction"
    uncommitted = read_values(third.bootstrap, topic, "read_uncommitted")
    assert uncommitted == sorted(committed + aborted + open_vals)
    p.commit_transaction(60)
    committed.extend(open_vals)

    assert read_values(third.bootstrap, topic, "read_committed") == sorted(committed)
    # Every record and every marker (four transactions, one in each partition) is an offset,
    # on every broker (a follower serves the same index).
    want = len(committed) + len(aborted) + 4 * PARTITIONS
    for b in cluster.live():
        def highs(b=b):
            c = consumer(b.bootstrap, **{"isolation.level": "read_committed"})
            try:
                return sum(c.get_watermark_offsets(TopicPartition(topic, i), timeout=10)[1]
                           for i in range(PARTITIONS))
            finally:
                c.close()
        wait_for(lambda: highs() == want, 30, f"{b.name}'s offsets are {want}", every=0.5)


def test_consume_transform_produce_with_send_offsets_to_transaction(cluster):
    """A read_committed consumer in a group and a transactional producer move 60 records
    from one topic to another, one transaction per poll with `send_offsets_to_transaction`:
    the output is the input exactly once and the group's committed offset is the input's
    end, also as a consumer on another broker reads it."""
    src, dst = "ctp-in-" + secrets.token_hex(4), "ctp-out-" + secrets.token_hex(4)
    create(cluster, src, 1)
    create(cluster, dst, PARTITIONS)
    # Both internal topics exist (and are led) before the ids are placed over them.
    ensure_internal_topics(cluster, src)
    records = 60
    plain = producer(cluster.bootstrap())
    for i in range(records):
        plain.produce(src, value=f"in-{i}".encode(), partition=0)
    assert plain.flush(30) == 0

    group = "ctp-" + secrets.token_hex(4)
    c = consumer(cluster.bootstrap(), **{"group.id": group, "isolation.level": "read_committed",
                                         "enable.partition.eof": False,
                                         "auto.offset.reset": "earliest"})
    c.subscribe([src])
    # The transactional id's coordinator on another broker than the group's: the COMMIT
    # marker in `__consumer_offsets` is written by one broker's intake and must decide the
    # pending offsets of the group coordinator on another.
    b = cluster.live()[0]
    group_leader = leader_of(b, OFFSETS_TOPIC, java_hash_partition(group))
    tid = next(t for t in ("ctp-" + secrets.token_hex(4) for _ in range(1000))
               if leader_of(b, TXN_TOPIC, java_hash_partition(t)) not in (group_leader, -1))
    p = cluster_txn_producer(cluster.bootstrap(), tid)
    p.init_transactions(60)
    done = 0
    deadline = time.monotonic() + 120
    while done < records and time.monotonic() < deadline:
        msgs = [m for m in c.consume(num_messages=10, timeout=1.0) if m.error() is None]
        if not msgs:
            continue
        p.begin_transaction()
        for n, m in enumerate(msgs):
            p.produce(dst, value=m.value().replace(b"in-", b"out-"), partition=n % PARTITIONS)
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 60)
        p.commit_transaction(60)
        done += len(msgs)
    assert done == records
    committed = c.committed([TopicPartition(src, 0)], timeout=20)
    assert committed[0].offset == records
    c.close()
    assert read_values(cluster.bootstrap(), dst, "read_committed") == sorted(
        f"out-{i}" for i in range(records))
    # The group's offsets as another broker's consumer asks for them (stable: no pending
    # transactional offsets remain).
    other = consumer(cluster.live()[-1].bootstrap, **{"group.id": group})
    try:
        got = wait_for(lambda: other.committed([TopicPartition(src, 0)], timeout=20)[0].offset,
                       30, "the committed offset", every=0.5)
    finally:
        other.close()
    assert got == records


def test_coordinator_sigkill_mid_transaction_never_half_visible(cluster):
    """A transaction holds records in three partitions and pending group offsets when the
    broker coordinating its transactional id is killed with SIGKILL. Once the next
    coordinator has loaded the id, a new producer of it aborts the transaction: read_committed
    readers never see its records, the earlier committed transaction stays whole, the group's
    offsets stay the committed ones, and the new producer commits again."""
    topic = "ckill-" + secrets.token_hex(4)
    src = "ckill-in-" + secrets.token_hex(4)
    create(cluster, topic, PARTITIONS)
    create(cluster, src, 1)
    plain = producer(cluster.bootstrap())
    for i in range(20):
        plain.produce(src, value=f"in-{i}".encode(), partition=0)
    assert plain.flush(30) == 0
    group = "ckill-" + secrets.token_hex(4)
    c = consumer(cluster.bootstrap(), **{"group.id": group, "enable.partition.eof": False,
                                         "auto.offset.reset": "earliest"})
    c.subscribe([src])
    wait_for(lambda: [m for m in c.consume(num_messages=1, timeout=1.0) if m.error() is None] or None,
             60, "the group's first record")
    meta = c.consumer_group_metadata()

    tid = "ckill-" + secrets.token_hex(4)
    p = cluster_txn_producer(cluster.bootstrap(), tid)
    p.init_transactions(60)
    p.begin_transaction()
    committed = [f"c-{i}" for i in range(9)]
    for i, v in enumerate(committed):
        p.produce(topic, partition=i % PARTITIONS, value=v.encode())
    p.send_offsets_to_transaction([TopicPartition(src, 0, 5)], meta, 60)
    p.commit_transaction(60)

    p.begin_transaction()
    for i in range(9):
        p.produce(topic, partition=i % PARTITIONS, value=f"open-{i}".encode())
    p.send_offsets_to_transaction([TopicPartition(src, 0, 15)], meta, 60)
    assert p.flush(30) == 0

    txn_partition = java_hash_partition(tid)

    def stable():
        d = describe_txn(cluster, tid)
        return d if d["coordinator"] == leader_of(cluster.live()[0], TXN_TOPIC, txn_partition) else None

    before = wait_for(stable, 30, "the id's coordinator is its partition's leader", every=0.5)
    assert before["state"] == "Ongoing", before
    coordinator = before["coordinator"]
    broker_by_id(cluster, coordinator).kill9()
    del p
    wait_leader_moved(cluster, TXN_TOPIC, txn_partition, coordinator)

    # Never half-visible: while undecided, read_committed sees only the committed ones.
    assert read_values(cluster.bootstrap(), topic, "read_committed", timeout=15) == sorted(committed)
    p2 = cluster_txn_producer(cluster.bootstrap(), tid)
    p2.init_transactions(120)
    assert read_values(cluster.bootstrap(), topic, "read_committed") == sorted(committed)
    c.close()
    check = consumer(cluster.bootstrap(), **{"group.id": group})
    try:
        got = wait_for(lambda: check.committed([TopicPartition(src, 0)], timeout=20)[0].offset,
                       60, "the group's committed offset", every=0.5)
    finally:
        check.close()
    assert got == 5, "the aborted transaction's offsets are dropped"
    # The new producer's transaction commits.
    p2.begin_transaction()
    p2.produce(topic, partition=0, value=b"after")
    p2.commit_transaction(60)
    assert read_values(cluster.bootstrap(), topic, "read_committed") == sorted(committed + ["after"])
    uncommitted = read_values(cluster.bootstrap(), topic, "read_uncommitted")
    assert sum(v.startswith("open-") for v in uncommitted) == 9, "the aborted records are stored"


def test_transaction_timeout_aborts_on_shared_storage(cluster):
    """A transaction left open past its transaction.timeout.ms is aborted by the coordinator's
    timer (an ABORT marker in each partition, the producer's epoch bumped): read_committed
    readers then pass it, and the abandoned producer is fenced."""
    topic = "ctimeout-" + secrets.token_hex(4)
    create(cluster, topic, PARTITIONS)
    tid = "ctimeout-" + secrets.token_hex(4)
    p = cluster_txn_producer(cluster.bootstrap(), tid, **{"transaction.timeout.ms": 3000})
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, partition=i % PARTITIONS, value=f"late-{i}".encode())
    assert p.flush(30) == 0
    # Another producer commits after it: held behind the open transaction's LSO until the
    # timeout abort.
    q = cluster_txn_producer(cluster.bootstrap(), "ctimeout-q-" + secrets.token_hex(4))
    q.init_transactions(60)
    q.begin_transaction()
    q.produce(topic, partition=0, value=b"committed")
    q.commit_transaction(60)
    got = wait_for(lambda: read_values(cluster.bootstrap(), topic, "read_committed", timeout=5) or None,
                   60, "the timed-out transaction aborted", every=1)
    assert got == ["committed"], got
    with pytest.raises(KafkaException):
        p.commit_transaction(30)
