"""Kafka's LogValidator rules on the produce path, through raw frames and real clients:
batch headers that disagree with themselves are refused with INVALID_RECORD (the log end
offset does not move); a topic's compression.type re-compresses batches in other codecs
(and `producer` keeps them as sent); records without keys on a compacted topic are refused
with KIP-467 record errors, so librdkafka fails exactly the keyless records."""

import struct
import zlib
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

import kafka_wire as kw
from helpers import admin, consume_partitions, consumer, create_topic, produce_all, producer, unique_topic

INVALID_RECORD = 87
INVALID_TIMESTAMP = 32
CORRUPT_MESSAGE = 2
CODEC_ID = {"none": 0, "uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


# --- raw frames --------------------------------------------------------------------------


def _patched(batch: bytes, at: int, fmt: str, value) -> bytes:
    """`batch` with one header field rewritten and the CRC made valid again."""
    b = bytearray(batch)
    struct.pack_into(fmt, b, at, value)
    struct.pack_into(">I", b, 17, kw.crc32c(bytes(b[21:])))
    return bytes(b)


def _three() -> bytes:
    return kw.record_batch([kw.Record(f"v{i}".encode(), key=f"k{i}".encode()) for i in range(3)])


def _produce_v8(conn, topic, batch, acks=-1):
    """Produce v8 (the first with KIP-467's record_errors and error_message) ->
    (error, base_offset, [(batch_index, message)], error_message)."""
    r = conn.request(kw.PRODUCE, 8, kw.produce_v3_body(topic, 0, batch, acks=acks))
    out = None
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            err = r.i16()
            base = r.i64()
            r.i64()  # log append time
            r.i64()  # log start offset
            rec_errors = r.array(lambda rr: (rr.i32(), rr.string())) or []
            msg = r.string()
            out = (err, base, rec_errors, msg)
    r.i32()  # throttle
    return out


def _log_end(bootstrap, topic):
    with kw.Conn(bootstrap) as conn:
        r = conn.request(kw.LIST_OFFSETS, 1, kw.list_offsets_v1_body(topic, 0, -1))
        err, _, offset = kw.parse_list_offsets_v1(r)[(topic, 0)]
        assert err == 0
        return offset


HOSTILE_HEADERS = {
    # The batch found by the tester: 3 records claiming 2^31 offsets.
    "last_offset_delta_2^31-1": lambda: _patched(_three(), 23, ">i", 2**31 - 1),
    "last_offset_delta_1": lambda: _patched(_three(), 23, ">i", 1),
    "last_offset_delta_negative": lambda: _patched(_three(), 23, ">i", -1),
    "records_count_0": lambda: _patched(_three(), 57, ">i", 0),
    "records_count_negative": lambda: _patched(_three(), 57, ">i", -3),
    "control_batch": lambda: kw.record_batch([kw.Record(b"v", key=b"k")], attributes=0x20),
    "producer_id_without_sequence": lambda: kw.record_batch([kw.Record(b"v")], producer_id=7, producer_epoch=0),
    "base_offset_not_zero": lambda: kw.record_batch([kw.Record(b"v")], base_offset=5),
    "two_batches": lambda: _three() + _three(),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_inconsistent_batch_headers_are_refused(broker, case):
    topic = unique_topic("hdr")
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as conn:
        err, base, rec_errors, _ = _produce_v8(conn, topic, HOSTILE_HEADERS[case]())
        assert (err, base) == (INVALID_RECORD, -1), case
        assert rec_errors == []  # a batch-level refusal names no record
        assert _log_end(broker.bootstrap, topic) == 0, "the log end offset moved"
        # The next good batch lands at offset 0 and the log ends at 3.
        err, base, _, _ = _produce_v8(conn, topic, _three())
        assert (err, base) == (0, 0)
    assert _log_end(broker.bootstrap, topic) == 3


def test_a_damaged_header_is_still_corruption(broker):
    """The same inconsistent header with a stale CRC is CORRUPT_MESSAGE (retriable)."""
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic)
    b = bytearray(_three())
    struct.pack_into(">i", b, 23, 2**31 - 1)
    with kw.Conn(broker.bootstrap) as conn:
        err, _, _, _ = _produce_v8(conn, topic, bytes(b))
    assert err == CORRUPT_MESSAGE
    assert _log_end(broker.bootstrap, topic) == 0


def test_log_append_time_set_by_a_producer(broker):
    """A LogAppendTime topic refuses batches whose producer set LogAppendTime
    (INVALID_TIMESTAMP, every record listed); a CreateTime topic stores such a batch
    with CreateTime, as Kafka does."""
    lat = unique_topic("lat")
    create_topic(broker.bootstrap, lat, config={"message.timestamp.type": "LogAppendTime"})
    ct = unique_topic("ct")
    create_topic(broker.bootstrap, ct)
    batch = kw.record_batch([kw.Record(b"a"), kw.Record(b"b")], attributes=0x08)
    with kw.Conn(broker.bootstrap) as conn:
        err, _, rec_errors, msg = _produce_v8(conn, lat, batch)
        assert err == INVALID_TIMESTAMP
        assert [i for i, _ in rec_errors] == [0, 1]
        assert "invalid timestamp" in msg
        err, base, _, _ = _produce_v8(conn, ct, batch)
        assert (err, base) == (0, 0)
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(ct, 0, 0))
        _, _, recs = kw.parse_fetch_v4(r)[(ct, 0)]
    [stored] = kw.parse_batches(recs)
    assert stored.crc_ok and stored.attributes & 0x08 == 0


def test_max_timestamp_follows_the_records(broker):
    """A batch whose maxTimestamp lies is stored with its records' real maximum (Kafka's
    validator sets it), so time indexes and retention see the truth."""
    topic = unique_topic("maxts")
    create_topic(broker.bootstrap, topic)
    now = int(time.time() * 1000)
    batch = kw.record_batch([kw.Record(b"a"), kw.Record(b"b", timestamp_delta=5)], base_timestamp=now)
    batch = _patched(batch, 35, ">q", 2**63 - 1)
    with kw.Conn(broker.bootstrap) as conn:
        assert _produce_v8(conn, topic, batch)[:2] == (0, 0)
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        _, _, recs = kw.parse_fetch_v4(r)[(topic, 0)]
    [stored] = kw.parse_batches(recs)
    assert stored.crc_ok and stored.max_timestamp == now + 5


# --- compression.type --------------------------------------------------------------------


def _payloads(tag, n):
    return [(f"k{i}".encode(), (f"{tag}-{i}-" + "abcdefgh" * (20 + i % 50)).encode(), {}) for i in range(n)]


def _stored_batches(bootstrap, topic):
    with kw.Conn(bootstrap) as conn:
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0, max_bytes=16 << 20))
        err, _, recs = kw.parse_fetch_v4(r)[(topic, 0)]
    assert err == 0
    batches = kw.parse_batches(recs or b"")
    assert batches and all(b.crc_ok for b in batches), "stored batch missing or with a bad CRC"
    return batches


@pytest.mark.parametrize("topic_codec", ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"])
def test_topic_codec_with_every_producer_codec(broker, topic_codec):
    n = 200
    for producer_codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = unique_topic(f"z-{topic_codec}-{producer_codec}")
        create_topic(broker.bootstrap, topic, config={"compression.type": topic_codec})
        msgs = _payloads(producer_codec, n)
        p = producer(broker.bootstrap, **{"compression.type": producer_codec, "linger.ms": 2000,
                                          "enable.idempotence": True})
        res = produce_all(p, msgs, topic)
        assert [r[2] for r in res] == list(range(n))
        c = consumer(broker.bootstrap)
        got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=n)
        c.close()
        assert [(m.offset(), m.key(), m.value()) for m in got] == \
            [(i, k, v) for i, (k, v, _) in enumerate(msgs)], (topic_codec, producer_codec)
        batches = _stored_batches(broker.bootstrap, topic)
        want = CODEC_ID[producer_codec if topic_codec == "producer" else topic_codec]
        assert {b.attributes & 0x7 for b in batches} == {want}, (topic_codec, producer_codec)
        assert sum(b.record_count for b in batches) == n
        # Offsets were assigned inside the re-compressed batches: contiguous.
        assert [b.base_offset for b in batches] == \
            [sum(x.record_count for x in batches[:i]) for i in range(len(batches))]


def test_broker_compression_type_and_levels(make_broker):
    """The broker's compression.type is every topic's default; the KIP-390 levels are
    topic settings too, validated as Kafka validates them."""
    b = make_broker(**{"compression.type": "zstd", "compression.zstd.level": "19"})
    plain = unique_topic("bz")
    create_topic(b.bootstrap, plain)
    produce_all(producer(b.bootstrap, **{"compression.type": "lz4", "linger.ms": 500}), _payloads("x", 50), plain)
    assert {x.attributes & 0x7 for x in _stored_batches(b.bootstrap, plain)} == {4}

    sizes = {}
    for level in ("1", "9"):
        t = unique_topic(f"gz{level}")
        create_topic(b.bootstrap, t, config={"compression.type": "gzip", "compression.gzip.level": level})
        p = producer(b.bootstrap, **{"compression.type": "none", "linger.ms": 500})
        produce_all(p, _payloads("y", 300), t)
        batches = _stored_batches(b.bootstrap, t)
        assert {x.attributes & 0x7 for x in batches} == {1}
        sizes[level] = sum(len(x.raw_records) for x in batches)
    assert sizes["9"] <= sizes["1"], sizes

    a = admin(b.bootstrap)
    for key, value in [("compression.type", "brotli"), ("compression.gzip.level", "10"),
                       ("compression.lz4.level", "0"), ("compression.zstd.level", "23")]:
        t = unique_topic("bad")
        fs = a.create_topics([NewTopic(t, 1, 1, config={key: value})], request_timeout=20)
        with pytest.raises(Exception) as e:
            fs[t].result(20)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (key, value)


# --- keyless records on compacted topics ------------------------------------------------


def _deliver(p, msgs, topic):
    """(error code or None, offset) per message, in send order."""
    out = [None] * len(msgs)

    def cb_for(i):
        def cb(err, msg):
            out[i] = (err.code() if err else None, msg.offset(), err.str() if err else "")
        return cb

    for i, (k, v) in enumerate(msgs):
        p.produce(topic, key=k, value=v, partition=0, on_delivery=cb_for(i))
        p.poll(0)
    assert p.flush(60) == 0
    return out


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_keyless_records_in_one_batch_fail_the_batch(broker, codec):
    topic = unique_topic("cmp1")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    msgs = [(None if i in (1, 4) else f"k{i}".encode(), f"v{i}-{'z' * 200}".encode()) for i in range(6)]
    p = producer(broker.bootstrap, **{"linger.ms": 1000, "compression.type": codec, "retries": 0})
    res = _deliver(p, msgs, topic)
    codes = [r[0] for r in res]
    assert codes == [KafkaError._INVALID_DIFFERENT_RECORD, KafkaError.INVALID_RECORD,
                     KafkaError._INVALID_DIFFERENT_RECORD, KafkaError._INVALID_DIFFERENT_RECORD,
                     KafkaError.INVALID_RECORD, KafkaError._INVALID_DIFFERENT_RECORD], res
    assert _log_end(broker.bootstrap, topic) == 0
    # Keyed batches are accepted normally.
    keyed = [(f"k{i}".encode(), b"v") for i in range(6)]
    assert [r[:2] for r in _deliver(p, keyed, topic)] == [(None, i) for i in range(6)]


def test_keyless_records_one_per_batch(broker):
    topic = unique_topic("cmpN")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    msgs = [(None if i % 3 == 0 else f"k{i}".encode(), f"v{i}".encode()) for i in range(9)]
    p = producer(broker.bootstrap, **{"linger.ms": 0, "batch.size": 1, "retries": 0,
                                      "max.in.flight.requests.per.connection": 1})
    res = _deliver(p, msgs, topic)
    assert [r[0] for r in res] == [KafkaError.INVALID_RECORD if i % 3 == 0 else None for i in range(9)], res
    accepted = [r[1] for r in res if r[0] is None]
    assert accepted == list(range(6))
    c = consumer(broker.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=6)
    c.close()
    assert [m.key() for m in got] == [k for k, _ in msgs if k is not None]


def test_keyless_records_raw_record_errors(broker):
    """The response itself: error_message and one record error per keyless record."""
    topic = unique_topic("cmpraw")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    batch = kw.record_batch([kw.Record(b"a", key=b"k"), kw.Record(b"b"), kw.Record(b"c"), kw.Record(b"d", key=b"k")])
    with kw.Conn(broker.bootstrap) as conn:
        err, base, rec_errors, msg = _produce_v8(conn, topic, batch)
    assert (err, base) == (INVALID_RECORD, -1)
    assert [i for i, _ in rec_errors] == [1, 2]
    assert all("Compacted topic cannot accept message without key" in m for _, m in rec_errors)
    assert msg.startswith("One or more records have been rejected due to 2 record errors"), msg


def _gzip_batch_of_zeros(value_bytes: int) -> bytes:
    """One keyed record whose value is `value_bytes` zeros, gzip-compressed in a v2 batch
    (streamed: the zeros are never held whole)."""
    body_head = kw.i8(0) + kw.varint(0) + kw.varint(0) + kw.varint(1) + b"k" + kw.varint(value_bytes)
    body_len = len(body_head) + value_bytes + 1  # + the header count
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(kw.varint(body_len) + body_head)]
    chunk = b"\0" * (1 << 20)
    left = value_bytes
    while left:
        n = min(left, len(chunk))
        out.append(z.compress(chunk[:n]))
        left -= n
    out.append(z.compress(kw.varint(0)))
    out.append(z.flush())
    records = b"".join(out)
    now = int(time.time() * 1000)
    after_crc = (kw.i16(1) + kw.i32(0) + kw.i64(now) + kw.i64(now) + kw.i64(-1) + kw.i16(-1) + kw.i32(-1)
                 + kw.i32(1) + records)
    after_length = kw.i32(-1) + kw.i8(2) + kw.u32(kw.crc32c(after_crc)) + after_crc
    return kw.i64(0) + kw.i32(len(after_length)) + after_length


def test_a_decompression_bomb_is_refused(broker):
    """On a compacted topic Strom opens compressed batches to check their keys: a batch of a
    few hundred KiB that decompresses past 256 MiB is refused, and the broker stays up."""
    topic = unique_topic("bomb")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    small = _gzip_batch_of_zeros(1 << 20)
    bomb = _gzip_batch_of_zeros(300 << 20)
    assert len(bomb) < 1_000_000
    with kw.Conn(broker.bootstrap, timeout=60) as conn:
        assert _produce_v8(conn, topic, small)[:2] == (0, 0)
        err, base, _, _ = _produce_v8(conn, topic, bomb)
        assert (err, base) == (INVALID_RECORD, -1)
    assert broker.alive()
    assert _log_end(broker.bootstrap, topic) == 1
