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
    # Compressible values of varying size, including one empty value.
    return [(f"k{i % 7}".encode(), (f"{tag}-{i}-" + "abcdefgh" * (i % 50)).encode()) for i in range(N - 1)] + [
        (b"empty", b"")
    ]


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
        return {b.attributes & 0x7 for b in batches}


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_compression_roundtrip(broker, codec):
    topic = unique_topic(f"cc-{codec}")
    create_topic(broker.bootstrap, topic)
    msgs = _payloads(codec)
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 20})
    res = produce_all(p, msgs, topic)
    assert [r[2] for r in res] == list(range(N)), "offsets are not 0..N-1 in send order"

    c = consumer(broker.bootstrap)
    got = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=N)
    c.close()
    assert [(m.offset(), m.key(), m.value() or b"") for m in got] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    kp = _kafka_python_read(broker.bootstrap, topic, N)
    assert [(r.offset, r.key, r.value or b"") for r in kp] == [(i, k, v) for i, (k, v) in enumerate(msgs)]

    assert _stored_codecs(broker.bootstrap, topic) == {CODEC_ID[codec]}


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compression_roundtrip(broker, codec):
    topic = unique_topic(f"kc-{codec}")
    create_topic(broker.bootstrap, topic)
    msgs = _payloads(codec)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=20, acks="all",
                      request_timeout_ms=20000)
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
