"""Every compression codec round-trips, produced by confluent-kafka and by
kafka-python, read back by both; and the broker keeps the producer's codec
(topic compression.type defaults to "producer")."""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTP

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, produce_all, producer, unique_topic

CODECS = ["gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
N = 300


def _payloads(tag):
    # Compressible values of varying size, every one big enough that even a
    # batch holding just it compresses smaller than raw (otherwise librdkafka
    # may send that batch uncompressed); one empty value in the middle.
    msgs = [(f"k{i % 7}".encode(), (f"{tag}-{i}-" + "abcdefgh" * (20 + i % 50)).encode()) for i in range(N)]
    msgs[N // 2] = (b"empty", b"")
    return msgs


def _kafka_python_read(bootstrap, topic, n, partition=0):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=20000)
    try:
        tp = KTP(topic, partition)
        c.assign([tp])
        c.seek(tp, 0)
        out = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
        return out
    finally:
        c.close()


def _stored_codecs(bootstrap, topic):
    """Compression codec of each stored batch, read with a raw Fetch v4."""
    with kw.Conn(bootstrap) as conn:
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0, max_bytes=16 << 20))
        err, hw, recs = kw.parse_fetch_v4(r)[(topic, 0)]
        assert err == 0, f"fetch error {err}"
        batches = kw.parse_batches(recs or b"")
        assert batches, "fetch returned no batches"
        assert all(b.crc_ok for b in batches), "stored batch has a bad CRC"
        print("stored batches (base offset, records, codec):",
              [(b.base_offset, b.record_count, b.attributes & 0x7) for b in batches])
        return {b.attributes & 0x7 for b in batches}


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_compression_roundtrip(broker, codec):
    topic = unique_topic(f"cc-{codec}")
    create_topic(broker.bootstrap, topic)
    msgs = _payloads(codec)
    # A long linger: the final flush sends everything as one big, compressible
    # batch (librdkafka sends a batch uncompressed when compression would not
    # make it smaller, which can happen to small batches).
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 5000})
    res = produce_all(p, msgs, topic)
    assert [r[2] for r in res] == list(range(N)), "offsets are not 0..N-1 in send order"

    c = consumer(broker.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=N)
    c.close()
    assert [(m.offset(), m.key(), m.value() or b"") for m in got] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    kp = _kafka_python_read(broker.bootstrap, topic, N)
    assert [(r.offset, r.key, r.value or b"") for r in kp] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    # The broker keeps the producer's codec (compression.type=producer). Note:
    # librdkafka only uses lz4 with brokers that advertise FindCoordinator
    # (its "LZ4" feature check), otherwise it silently sends lz4 batches
    # uncompressed.
    assert _stored_codecs(broker.bootstrap, topic) == {CODEC_ID[codec]}


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compression_roundtrip(broker, codec):
    topic = unique_topic(f"kc-{codec}")
    create_topic(broker.bootstrap, topic)
    msgs = _payloads(codec)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=5000, acks="all",
                      batch_size=1 << 20, request_timeout_ms=20000)
    try:
        futs = [p.send(topic, key=k, value=v, partition=0) for k, v in msgs]
        p.flush(60)
        metas = [f.get(timeout=30) for f in futs]
    finally:
        p.close(10)
    assert [m.offset for m in metas] == list(range(N))

    c = consumer(broker.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=N)
    c.close()
    assert [(m.offset(), m.key(), m.value() or b"") for m in got] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    kp = _kafka_python_read(broker.bootstrap, topic, N)
    assert [(r.offset, r.key, r.value or b"") for r in kp] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    assert _stored_codecs(broker.bootstrap, topic) == {CODEC_ID[codec]}
