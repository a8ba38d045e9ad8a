"""Record contents survive exactly: headers, null keys and values, CreateTime
timestamps; offsets_for_times and ListOffsets earliest/latest."""

import time

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTP

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, produce_all, producer, unique_topic


def test_headers_nulls_and_timestamps(broker):
    topic = unique_topic("rec")
    create_topic(broker.bootstrap, topic)
    base_ts = 1_600_000_000_000  # a fixed past time: must come back unchanged
    binary = bytes(range(256))
    msgs = [
        (b"k0", b"v0", {"headers": [("h1", b"a"), ("h2", b"b"), ("h1", b"again")], "timestamp": base_ts}),
        (None, b"null-key", {"headers": [("bin", binary), ("empty", b"")], "timestamp": base_ts + 1}),
        (b"tombstone", None, {"timestamp": base_ts + 2}),
        (None, None, {"timestamp": base_ts - 86_400_000}),  # older than the previous: CreateTime is not sorted
        (b"", b"", {"headers": [("\u00e9t\u00e9", b"\x00\xff")], "timestamp": base_ts + 3}),
        (b"no-headers", b"x" * 10000, {"timestamp": base_ts + 4}),
    ]
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    res = produce_all(p, msgs, topic)
    assert [r[2] for r in res] == list(range(len(msgs)))

    c = consumer(broker.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=len(msgs))
    c.close()
    assert len(got) == len(msgs)
    for m, (key, value, kwargs) in zip(got, msgs):
        where = f"offset {m.offset()}"
        assert m.key() == key, where
        assert m.value() == value, where
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, kwargs["timestamp"]), where
        want_headers = kwargs.get("headers")
        assert (m.headers() or None) == (want_headers or None), where

    # The same with kafka-python, which decodes records independently.
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = KTP(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 0)
        recs = []
        deadline = time.monotonic() + 20
        while len(recs) < len(msgs) and time.monotonic() < deadline:
            for rs in kc.poll(timeout_ms=500).values():
                recs.extend(rs)
    finally:
        kc.close()
    assert len(recs) == len(msgs)
    for r, (key, value, kwargs) in zip(recs, msgs):
        assert (r.key, r.value, r.timestamp, r.timestamp_type) == (key, value, kwargs["timestamp"], 0), r.offset
        assert [(k, v) for k, v in r.headers] == (kwargs.get("headers") or []), r.offset


def test_raw_wire_record_fields_roundtrip(broker):
    """Byte-exact record fields through a raw Produce v3 / Fetch v4."""
    topic = unique_topic("raw")
    create_topic(broker.bootstrap, topic)
    recs = [
        kw.Record(b"v", b"k", [("a", b"1"), ("a", None)]),
        kw.Record(None, None, [], timestamp_delta=5),
        kw.Record(b"", b"", [("", b"")], timestamp_delta=-3),
    ]
    base_ts = 1_650_000_000_000
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, kw.record_batch(recs, base_timestamp=base_ts)))
        assert kw.parse_produce_v3(r)[(topic, 0)] == (0, 0)
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        err, hw, data = kw.parse_fetch_v4(r)[(topic, 0)]
    assert (err, hw) == (0, 3)
    batches = kw.parse_batches(data)
    assert len(batches) == 1 and batches[0].crc_ok and batches[0].magic == 2
    assert batches[0].base_timestamp == base_ts and batches[0].max_timestamp == base_ts + 5
    out = kw.decode_uncompressed_records(batches[0])
    assert [o for o, _ in out] == [0, 1, 2]
    for (_, got), want in zip(out, recs):
        assert (got.key, got.value, got.headers, got.timestamp_delta) == (
            want.key, want.value, want.headers, want.timestamp_delta)


def test_offsets_for_times_and_watermarks(make_broker):
    # Small segments, so the timestamp lookup has to cross segment files.
    broker = make_broker(**{"log.segment.bytes": 4096})
    topic = unique_topic("oft")
    create_topic(broker.bootstrap, topic)
    t0 = 1_700_000_000_000
    n = 200
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    # Several batches (one produce + flush each), 1 s apart in CreateTime;
    # message i has timestamp t0 + 1000*i, and some values are ~100 bytes so
    # the log rolls segments.
    for start in range(0, n, 20):
        produce_all(p, [(None, f"m{i}-".encode() + b"p" * 100, {"timestamp": t0 + 1000 * i})
                        for i in range(start, start + 20)], topic)

    c = consumer(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    assert c.get_watermark_offsets(tp, timeout=10, cached=False) == (0, n)

    cases = {
        t0 - 5000: 0,  # before everything: the first offset
        t0: 0,  # exact match
        t0 + 1: 1,  # between two: the next one
        t0 + 3500: 4,
        t0 + 57_000: 57,
        t0 + 1000 * (n - 1): n - 1,  # the last message
    }
    wrong = []
    for target, want in cases.items():
        [res] = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)
        if res.error is not None or res.offset != want:
            wrong.append(f"t0{target - t0:+d}: got offset {res.offset} (error {res.error}), want {want}")
    assert not wrong, "offsets_for_times: " + "; ".join(wrong)
    # Past the last timestamp: no such offset (-1 in the protocol, OFFSET_END in librdkafka).
    [res] = c.offsets_for_times([TopicPartition(topic, 0, t0 + 1000 * n)], timeout=10)
    assert res.offset == -1, f"past the end: {res}"
    c.close()

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        ktp = KTP(topic, 0)
        for target, want in cases.items():
            r = kc.offsets_for_times({ktp: target})[ktp]
            assert r is not None and r.offset == want and r.timestamp == t0 + 1000 * want, (target - t0, r)
        assert kc.offsets_for_times({ktp: t0 + 1000 * n})[ktp] is None
        assert kc.beginning_offsets([ktp]) == {ktp: 0}
        assert kc.end_offsets([ktp]) == {ktp: n}
    finally:
        kc.close()

    # The same through raw ListOffsets v1: -2 earliest, -1 latest, timestamps.
    with kw.Conn(broker.bootstrap) as conn:
        def lo(ts):
            return kw.parse_list_offsets_v1(conn.request(kw.LIST_OFFSETS, 1, kw.list_offsets_v1_body(topic, 0, ts)))[
                (topic, 0)]
        assert lo(-2)[0] == 0 and lo(-2)[2] == 0
        assert lo(-1)[0] == 0 and lo(-1)[2] == n
        assert lo(t0 + 3500) == (0, t0 + 4000, 4)
        assert lo(t0 + 1000 * n)[2] == -1


def test_watermarks_empty_and_after_produce(broker):
    topic = unique_topic("wm")
    create_topic(broker.bootstrap, topic, partitions=2)
    c = consumer(broker.bootstrap)
    for part in (0, 1):
        assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False) == (0, 0)
    p = producer(broker.bootstrap)
    produce_all(p, [(None, b"x", {"partition": 1}) for _ in range(7)], topic)
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 0)
    assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10, cached=False) == (0, 7)
    c.close()


def test_log_append_time_topic(broker):
    """message.timestamp.type=LogAppendTime: the broker stamps records with its
    own clock and consumers see LOG_APPEND_TIME."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    topic = unique_topic("lat")
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(broker.bootstrap), [(None, b"m%d" % i, {"timestamp": 1_000_000_000_000}) for i in range(5)],
                topic)
    after = int(time.time() * 1000)
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=5)
    c.close()
    for m in msgs:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)


def test_offsets_for_times_several_partitions(broker):
    topic = unique_topic("oftp")
    create_topic(broker.bootstrap, topic, partitions=3)
    t0 = 1_710_000_000_000
    p = producer(broker.bootstrap)
    # Partition p holds timestamps t0 + 10*i + p, i = 0..9.
    produce_all(p, [(None, b"x", {"partition": part, "timestamp": t0 + 10 * i + part})
                    for i in range(10) for part in range(3)], topic)
    c = consumer(broker.bootstrap)
    targets = {0: t0 + 5, 1: t0 + 45, 2: t0 + 96}
    res = c.offsets_for_times([TopicPartition(topic, part, ts) for part, ts in targets.items()], timeout=10)
    c.close()
    # Partition 0: t0+10 is the first >= t0+5 (offset 1); partition 1: t0+51
    # (offset 5); partition 2: nothing >= t0+96 (its last is t0+92): -1.
    assert sorted((r.partition, r.offset) for r in res) == [(0, 1), (1, 5), (2, -1)]
