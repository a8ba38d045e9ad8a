"""Fetch and produce semantics that clients rely on: size limits, long
polling, fetching from inside a batch, concurrent producers, big messages,
many connections."""

import socket
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, kcat_roundtrip, produce_all, producer, unique_topic


def _produce_raw(conn, topic, partition, records):
    r = conn.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, partition, kw.record_batch(records)))
    err, base = kw.parse_produce_v3(r)[(topic, partition)]
    assert err == 0, f"produce error {err}"
    return base


def _fetch(conn, topic, offset, max_bytes=1 << 20, max_wait_ms=100, partition=0):
    r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, partition, offset, max_bytes=max_bytes,
                                                   max_wait_ms=max_wait_ms))
    return kw.parse_fetch_v4(r)[(topic, partition)]


def test_fetch_returns_an_oversized_first_batch(broker):
    """KIP-74: a batch larger than the fetch limits is still returned whole,
    so consumers make progress."""
    topic = unique_topic("big1")
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        _produce_raw(c, topic, 0, [kw.Record(b"a" * 5000), kw.Record(b"b" * 5000)])
        _produce_raw(c, topic, 0, [kw.Record(b"c" * 5000)])
        err, hw, data = _fetch(c, topic, 0, max_bytes=100)
    assert (err, hw) == (0, 3)
    batches = kw.parse_batches(data)
    assert batches and batches[0].base_offset == 0 and batches[0].record_count == 2 and batches[0].crc_ok
    assert len(data) < 10000 + 5000, "returned far more than the first batch despite max_bytes=100"


def test_fetch_max_bytes_limits_response(broker):
    topic = unique_topic("lim")
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        for i in range(20):
            _produce_raw(c, topic, 0, [kw.Record(b"%04d" % i + b"x" * 996)])
        err, hw, data = _fetch(c, topic, 0, max_bytes=3500)
        assert (err, hw) == (0, 20)
        full = kw.parse_batches(data)
        assert 1 <= len(full) <= 4 and len(data) <= 3500, f"{len(full)} batches, {len(data)} bytes for max_bytes=3500"
        # Continuing from where that fetch ended reads the rest, in order.
        seen = []
        off = 0
        while off < 20:
            err, hw, data = _fetch(c, topic, off, max_bytes=3500)
            assert err == 0
            bs = kw.parse_batches(data)
            assert bs, f"no complete batch at offset {off}"
            for b in bs:
                for o, rec in kw.decode_uncompressed_records(b):
                    if o >= off:
                        seen.append((o, rec.value[:4]))
            off = bs[-1].base_offset + bs[-1].last_offset_delta + 1
    assert seen == [(i, b"%04d" % i) for i in range(20)]


def test_fetch_from_inside_a_batch(broker):
    topic = unique_topic("mid")
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        _produce_raw(c, topic, 0, [kw.Record(b"v%d" % i) for i in range(5)])
        err, hw, data = _fetch(c, topic, 3)
    assert (err, hw) == (0, 5)
    [b] = kw.parse_batches(data)
    assert b.crc_ok and b.base_offset <= 3 <= b.base_offset + b.last_offset_delta
    got = {o: r.value for o, r in kw.decode_uncompressed_records(b)}
    assert got[3] == b"v3" and got[4] == b"v4"
    # And clients see exactly offsets 3 and 4.
    cons = consumer(broker.bootstrap)
    msgs = consume_partitions(cons, [TopicPartition(topic, 0, 3)], expected=2)
    cons.close()
    assert [(m.offset(), m.value()) for m in msgs] == [(3, b"v3"), (4, b"v4")]


def test_fetch_long_poll_waits_and_wakes(broker):
    topic = unique_topic("poll")
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        _produce_raw(c, topic, 0, [kw.Record(b"first")])
        # Nothing new: the fetch waits about max_wait_ms, then returns empty.
        t0 = time.monotonic()
        err, hw, data = _fetch(c, topic, 1, max_wait_ms=1000)
        waited = time.monotonic() - t0
        assert (err, hw) == (0, 1) and not data
        assert 0.8 <= waited <= 5, f"fetch with max_wait_ms=1000 returned after {waited:.2f}s"

        # A produce during the wait completes the fetch early.
        def later():
            time.sleep(0.5)
            with kw.Conn(broker.bootstrap) as c2:
                _produce_raw(c2, topic, 0, [kw.Record(b"second")])

        th = threading.Thread(target=later)
        th.start()
        t0 = time.monotonic()
        err, hw, data = _fetch(c, topic, 1, max_wait_ms=10000)
        waited = time.monotonic() - t0
        th.join()
    assert err == 0 and hw == 2
    [b] = kw.parse_batches(data)
    assert [r.value for _, r in kw.decode_uncompressed_records(b)] == [b"second"]
    assert waited < 5, f"fetch was not woken by the produce (returned after {waited:.2f}s)"


def test_concurrent_producers_one_partition(broker):
    topic = unique_topic("conc")
    create_topic(broker.bootstrap, topic)
    n_threads, n = 4, 5000
    errors = []

    def run(tid):
        try:
            p = producer(broker.bootstrap, **{"linger.ms": 1, "acks": "all"})
            produce_all(p, [(None, f"{tid}:{i}".encode(), {"partition": 0}) for i in range(n)], topic)
        except Exception as e:  # reported below
            errors.append(e)

    ths = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    assert not errors, errors
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=n_threads * n)
    c.close()
    assert [m.offset() for m in msgs] == list(range(n_threads * n))
    per = {}
    for m in msgs:
        tid, i = m.value().decode().split(":")
        per.setdefault(tid, []).append(int(i))
    assert per == {str(t): list(range(n)) for t in range(n_threads)}


def test_near_limit_message_roundtrip(broker):
    """A ~1 MB message under the default message.max.bytes (1048588)."""
    topic = unique_topic("1mb")
    create_topic(broker.bootstrap, topic)
    value = bytes(range(256)) * 3900  # 998,400 bytes
    p = producer(broker.bootstrap, **{"message.max.bytes": 1048588, "compression.type": "none"})
    produce_all(p, [(b"k", value), (b"k2", b"small")], topic)
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=2)
    c.close()
    assert [(m.key(), m.value()) for m in msgs] == [(b"k", value), (b"k2", b"small")]


def test_many_idle_connections(broker):
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", broker.port), timeout=5))
        kcat_roundtrip(broker.bootstrap)
        # A few of them do real requests.
        for s in socks[::50]:
            s.sendall(kw.frame(kw.request_header(kw.API_VERSIONS, 0, 9)))
        for s in socks[::50]:
            head = s.recv(8)
            assert len(head) == 8 and head[4:8] == kw.i32(9)
    finally:
        for s in socks:
            s.close()
    assert broker.alive()
    kcat_roundtrip(broker.bootstrap)


def test_acks_0_and_1(broker):
    topic = unique_topic("acks")
    create_topic(broker.bootstrap, topic)
    for acks in ("0", "1", "all"):
        p = producer(broker.bootstrap, **{"acks": acks})
        produce_all(p, [(None, f"{acks}-{i}".encode()) for i in range(100)], topic)
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=300)
    c.close()
    assert [m.value().decode() for m in msgs] == [f"{a}-{i}" for a in ("0", "1", "all") for i in range(100)]
