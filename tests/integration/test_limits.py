"""Size limits (MESSAGE_TOO_LARGE) and out-of-range fetches
(OFFSET_OUT_OF_RANGE)."""

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTP
from kafka.errors import OffsetOutOfRangeError

import kafka_wire as kw
from helpers import create_topic, consumer, kcat_roundtrip, produce_all, producer, unique_topic


def _deliver_one(p, topic, value):
    result = []
    p.produce(topic, value=value, on_delivery=lambda err, msg: result.append((err, msg.offset())))
    assert p.flush(30) == 0
    return result[0]


def test_message_too_large(make_broker):
    broker = make_broker(**{"message.max.bytes": 10000})
    topic = unique_topic("big")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, **{"message.max.bytes": 1_000_000, "compression.type": "none",
                                      "linger.ms": 0, "retries": 0})
    err, _ = _deliver_one(p, topic, b"x" * 20_000)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert broker.alive()
    # A message under the limit still goes through, at offset 0 (nothing of
    # the refused one was stored).
    err, off = _deliver_one(p, topic, b"y" * 5000)
    assert err is None and off == 0, err
    kcat_roundtrip(broker.bootstrap)


def test_message_too_large_raw_and_topic_override(make_broker):
    broker = make_broker(**{"message.max.bytes": 10000})
    small_topic = unique_topic("big-raw")
    create_topic(broker.bootstrap, small_topic)
    # A topic whose max.message.bytes raises the broker-wide limit.
    big_topic = unique_topic("big-ok")
    create_topic(broker.bootstrap, big_topic, config={"max.message.bytes": "100000"})
    batch = kw.record_batch([kw.Record(b"z" * 20_000)])
    with kw.Conn(broker.bootstrap) as c:
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(small_topic, 0, batch))
        assert kw.parse_produce_v3(r)[(small_topic, 0)][0] == kw.MESSAGE_TOO_LARGE
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(big_topic, 0, batch))
        assert kw.parse_produce_v3(r)[(big_topic, 0)] == (0, 0)
    assert broker.alive()


def test_fetch_offset_out_of_range_raw(broker):
    topic = unique_topic("oor")
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), [(None, b"m%d" % i) for i in range(5)], topic)
    with kw.Conn(broker.bootstrap) as c:
        for off in (6, 100, 1 << 40, -5):
            r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, off))
            err, hw, recs = kw.parse_fetch_v4(r)[(topic, 0)]
            assert err == kw.OFFSET_OUT_OF_RANGE, f"fetch at {off}: error {err}"
        # At the log end: no error, no records (a long poll that times out).
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 5, max_wait_ms=200))
        err, hw, recs = kw.parse_fetch_v4(r)[(topic, 0)]
        assert (err, hw) == (0, 5) and not recs
        # Unknown partition.
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 3, 0))
        assert kw.parse_fetch_v4(r)[(topic, 3)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION


def test_fetch_offset_out_of_range_confluent(broker):
    topic = unique_topic("oor-c")
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), [(None, b"m%d" % i) for i in range(5)], topic)
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 100)])
    err = None
    deadline = time.monotonic() + 20
    while err is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None:
            assert m.error() is not None, f"got a message at offset {m.offset()} from an out-of-range fetch"
            if m.error().code() != KafkaError._PARTITION_EOF:
                err = m.error()
    c.close()
    assert err is not None, "no error for an out-of-range offset"
    assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
    assert "out of range" in err.str().lower(), err


def test_fetch_offset_out_of_range_kafka_python(broker):
    topic = unique_topic("oor-k")
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), [(None, b"m%d" % i) for i in range(5)], topic)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none")
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, 100)
        with pytest.raises(OffsetOutOfRangeError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert not c.poll(timeout_ms=500), "records from an out-of-range offset"
        # Seeking back into range works on the same consumer.
        c.seek(tp, 3)
        recs = []
        deadline = time.monotonic() + 20
        while len(recs) < 2 and time.monotonic() < deadline:
            for rs in c.poll(timeout_ms=500).values():
                recs.extend(rs)
        assert [(r.offset, r.value) for r in recs] == [(3, b"m3"), (4, b"m4")]
    finally:
        c.close()
