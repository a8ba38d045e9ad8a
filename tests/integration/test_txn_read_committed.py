"""read_committed with real clients (issue 13): a confluent-kafka transactional producer commits
some transactions and aborts others over 4 partitions; a read_committed consumer sees exactly
the committed records in order, a read_uncommitted one all of them; the last stable offset
(ListOffsets at read_committed) stops at an open transaction while the high watermark does not.

These need the transaction coordinator (InitProducerId with a transactional id); a broker
that does not answer one is skipped.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import TopicPartition

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, producer, unique_topic

FIND_COORDINATOR = 10
INIT_PRODUCER_ID = 22
# Kafka's "try again" answers while the coordinator loads or moves.
RETRIABLE = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
PARTITIONS = 4


def coordinator_serves_transactions(bootstrap: str, timeout_s: float = 10.0) -> bool:
    """InitProducerId v0 with a transactional id: error 0 once transactions are served. As a
    client does, FindCoordinator (key type 1) first: that is what creates
    `__transaction_state`, and InitProducerId answers COORDINATOR_NOT_AVAILABLE until then."""
    deadline = time.monotonic() + timeout_s
    tid = "strom-probe-" + uuid.uuid4().hex[:8]
    body = kw.string(tid) + kw.i32(60_000)
    while True:
        with kw.Conn(bootstrap) as c:
            c.request(FIND_COORDINATOR, 1, kw.string(tid) + kw.i8(1))
            r = c.request(INIT_PRODUCER_ID, 0, body)
            r.i32()  # throttle_time_ms
            code = r.i16()
        if code == 0:
            return True
        if code not in RETRIABLE or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.fixture
def txn_broker(broker):
    if not coordinator_serves_transactions(broker.bootstrap):
        pytest.skip("the broker does not serve InitProducerId with a transactional id yet")
    return broker


def values_by_partition(msgs) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for m in msgs:
        out[m.partition()].append(m.value().decode())
    return out


def watermark_high(bootstrap: str, topic: str, partition: int, isolation: str) -> int:
    c = consumer(bootstrap, **{"isolation.level": isolation})
    _, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.close()
    return high


def settled_high(bootstrap: str, topic: str, partition: int, want: int, isolation: str,
                 timeout_s: float = 10.0) -> int:
    """The high watermark once it reaches `want`, or what it is when `timeout_s` runs out.

    EndTxn is answered once the coordinator has logged the decision; the markers follow
    asynchronously (as in Kafka), so a read right after abort_transaction may precede them.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        high = watermark_high(bootstrap, topic, partition, isolation)
        if high >= want or time.monotonic() > deadline:
            return high
        time.sleep(0.05)


def test_read_committed_sees_exactly_the_committed_records(txn_broker):
    bootstrap = txn_broker.bootstrap
    topic = unique_topic("txn")
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    p = producer(bootstrap, **{"transactional.id": "txn-rc-" + uuid.uuid4().hex[:6]})
    p.init_transactions(30)
    committed: dict[int, list[str]] = {q: [] for q in range(PARTITIONS)}
    everything: dict[int, list[str]] = {q: [] for q in range(PARTITIONS)}
    for t in range(6):
        p.begin_transaction()
        for j in range(20):
            value = f"t{t}-{j}"
            p.produce(topic, value=value.encode(), partition=j % PARTITIONS)
            everything[j % PARTITIONS].append(value)
            if t % 2 == 0:
                committed[j % PARTITIONS].append(value)
        # librdkafka's abort_transaction purges what it has not sent yet: flush first, so the
        # aborted records are in the log (and read_uncommitted sees them).
        assert p.flush(30) == 0
        if t % 2 == 0:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)

    tps = [TopicPartition(topic, q, 0) for q in range(PARTITIONS)]
    rc = consume_partitions(consumer(bootstrap, **{"isolation.level": "read_committed"}), tps,
                            expected=60)
    assert values_by_partition(rc) == committed
    ru = consume_partitions(consumer(bootstrap, **{"isolation.level": "read_uncommitted"}), tps,
                            expected=120)
    assert values_by_partition(ru) == everything

    # With every transaction ended, the LSO is the high watermark (past the last marker).
    for q in range(PARTITIONS):
        deadline = time.monotonic() + 10
        while True:
            lso = watermark_high(bootstrap, topic, q, "read_committed")
            high = watermark_high(bootstrap, topic, q, "read_uncommitted")
            if lso == high or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert lso == high

    # An open transaction holds the LSO at its first offset; the high watermark moves on.
    before = watermark_high(bootstrap, topic, 0, "read_uncommitted")
    p.begin_transaction()
    for j in range(5):
        p.produce(topic, value=f"open-{j}".encode(), partition=0)
    assert p.flush(30) == 0
    assert watermark_high(bootstrap, topic, 0, "read_committed") == before
    assert watermark_high(bootstrap, topic, 0, "read_uncommitted") == before + 5
    p.abort_transaction(30)
    after = settled_high(bootstrap, topic, 0, before + 6, "read_uncommitted")
    assert after == before + 6  # five records and the marker
    assert settled_high(bootstrap, topic, 0, after, "read_committed") == after
    rc = consume_partitions(consumer(bootstrap, **{"isolation.level": "read_committed"}),
                            [TopicPartition(topic, 0, before)])
    assert rc == [], "aborted records are never delivered to read_committed"
