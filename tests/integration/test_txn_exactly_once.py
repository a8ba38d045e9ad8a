"""Consume-transform-produce exactly once across a kill -9 of the broker (issue 13): a
confluent-kafka pipeline (read_committed consumer in a group, transactional producer,
`send_offsets_to_transaction`) is cut by SIGKILL while a transaction holds output records and
pending offsets. The application restarts with the same transactional.id and group, as a
crashed one would; init_transactions aborts what was left open, the consumer resumes from the
committed offsets, and in the end the committed output is the input exactly once, with the
group's offsets equal to the input consumed."""

import time
import uuid

from confluent_kafka import KafkaException, TopicPartition

from helpers import consumer, create_topic, producer, unique_topic
from test_transactions import read_all, txn_producer

IN_PARTITIONS = 2
OUT_PARTITIONS = 3
RECORDS = 300


def start_app(bootstrap, src, group, tid):
    c = consumer(bootstrap, **{"group.id": group, "isolation.level": "read_committed",
                               "enable.partition.eof": False, "auto.offset.reset": "earliest"})
    c.subscribe([src])
    p = txn_producer(bootstrap, tid)
    p.init_transactions(60)
    return c, p


def process_batch(c, p, dst, commit=True):
    msgs = [m for m in c.consume(num_messages=20, timeout=1.0) if m.error() is None]
    if not msgs:
        return 0
    p.begin_transaction()
    for m in msgs:
        p.produce(dst, key=m.key(), value=m.value().replace(b"in-", b"out-"))
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    if commit:
        p.commit_transaction(30)
    else:
        p.flush(20)  # the output is in the log, uncommitted, when the broker dies
    return len(msgs)


def test_consume_transform_produce_resumes_exactly_once_across_kill9(broker):
    src, dst = unique_topic("eos-in"), unique_topic("eos-out")
    create_topic(broker.bootstrap, src, IN_PARTITIONS)
    create_topic(broker.bootstrap, dst, OUT_PARTITIONS)
    plain = producer(broker.bootstrap)
    for i in range(RECORDS):
        plain.produce(src, key=f"k{i}".encode(), value=f"in-{i}".encode(), partition=i % IN_PARTITIONS)
    assert plain.flush(20) == 0

    group = "eos-" + uuid.uuid4().hex[:6]
    tid = "eos-" + uuid.uuid4().hex[:8]
    c, p = start_app(broker.bootstrap, src, group, tid)
    done = 0
    deadline = time.monotonic() + 60
    while done < RECORDS // 3 and time.monotonic() < deadline:
        done += process_batch(c, p, dst)
    assert done >= RECORDS // 3, f"only {done} records processed before the kill"
    # Mid-stream: a transaction with output records and pending offsets, not yet ended.
    in_flight = 0
    while in_flight == 0 and time.monotonic() < deadline:
        in_flight = process_batch(c, p, dst, commit=False)
    assert in_flight > 0
    broker.kill9()
    broker.start()
    # The application died with the broker's connection; a restarted one takes over.
    del p
    c.close()

    c, p = start_app(broker.bootstrap, src, group, tid)
    deadline = time.monotonic() + 120
    tps = [TopicPartition(src, i) for i in range(IN_PARTITIONS)]
    while time.monotonic() < deadline:
        process_batch(c, p, dst)
        try:
            committed = c.committed(tps, timeout=10)
        except KafkaException:
            # librdkafka queues OffsetFetch behind the JoinGroup that waits out the dead
            # application's member (its session timeout): asked again on the next round.
            continue
        if sum(tp.offset for tp in committed if tp.offset >= 0) == RECORDS:
            break
    committed = c.committed(tps, timeout=10)
    c.close()
    per_partition = RECORDS // IN_PARTITIONS
    assert [tp.offset for tp in committed] == [per_partition] * IN_PARTITIONS, committed

    out = [m.value().decode() for m in read_all(broker.bootstrap, dst, "read_committed",
                                               partitions=OUT_PARTITIONS)]
    assert len(out) == RECORDS, f"{len(out)} committed outputs for {RECORDS} inputs"
    assert sorted(out) == sorted(f"out-{i}" for i in range(RECORDS))
    # The aborted transaction's records are in the log all the same, hidden only by its marker.
    everything = read_all(broker.bootstrap, dst, "read_uncommitted", partitions=OUT_PARTITIONS)
    assert len(everything) >= RECORDS + in_flight


MARKER_DELAY = "strom.test.txn.marker.delay.ms"


def committed_offset(bootstrap, group, tp, deadline):
    """The group's committed offset of `tp` once it is stable (librdkafka asks with
    require_stable, which a pending transactional offset answers UNSTABLE_OFFSET_COMMIT), or
    the last answer at the deadline."""
    c = consumer(bootstrap, **{"group.id": group, "isolation.level": "read_committed"})
    last = None
    try:
        while time.monotonic() < deadline:
            try:
                last = c.committed([tp], timeout=5)[0].offset
            except KafkaException as e:  # while unstable or loading
                last = e
            if isinstance(last, int) and last >= 0:
                return last
            time.sleep(0.3)
    finally:
        c.close()
    return last


def test_offsets_of_a_prepared_commit_survive_a_kill9_before_its_markers(make_broker):
    """The broker dies after EndTxn(commit) made PrepareCommit durable (the client was told
    the transaction committed) but before any marker is written; the markers are held back by
    the test-only strom.test.txn.marker.delay.ms. After the restart the coordinator completes
    the transaction: the output is committed and so are the input offsets, because
    TxnOffsetCommit wrote them to __consumer_offsets at once as the producer's transactional
    batch and the COMMIT marker decides them. Held in memory only, they would be gone and the
    inputs read again."""
    b = make_broker(**{MARKER_DELAY: "15000"})
    src, dst = unique_topic("pc-in"), unique_topic("pc-out")
    create_topic(b.bootstrap, src, 1)
    create_topic(b.bootstrap, dst, 1)
    plain = producer(b.bootstrap)
    for i in range(20):
        plain.produce(src, value=f"in-{i}".encode(), partition=0)
    assert plain.flush(20) == 0

    group = "pc-" + uuid.uuid4().hex[:6]
    tp = TopicPartition(src, 0)
    c = consumer(b.bootstrap, **{"group.id": group, "isolation.level": "read_committed",
                                 "enable.partition.eof": False})
    c.assign([TopicPartition(src, 0, 0)])
    msgs = []
    deadline = time.monotonic() + 30
    while len(msgs) < 12 and time.monotonic() < deadline:
        msgs += [m for m in c.consume(num_messages=12 - len(msgs), timeout=1.0) if m.error() is None]
    assert len(msgs) == 12
    p = txn_producer(b.bootstrap, "pc-" + uuid.uuid4().hex[:8])
    p.init_transactions(30)
    p.begin_transaction()
    for m in msgs:
        p.produce(dst, value=m.value().replace(b"in-", b"out-"), partition=0)
    p.send_offsets_to_transaction([TopicPartition(src, 0, 12)], c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    c.close()
    # Between PrepareCommit and the markers: the output is in the log but not yet stable.
    assert read_all(b.bootstrap, dst, "read_committed", partitions=1, timeout=5) == []
    assert len(read_all(b.bootstrap, dst, "read_uncommitted", partitions=1, timeout=10)) == 12
    b.kill9()
    del p

    del b.overrides[MARKER_DELAY]
    b.start()
    assert committed_offset(b.bootstrap, group, tp, time.monotonic() + 60) == 12
    out = [m.value().decode() for m in read_all(b.bootstrap, dst, "read_committed", partitions=1)]
    assert out == [f"out-{i}" for i in range(12)]
