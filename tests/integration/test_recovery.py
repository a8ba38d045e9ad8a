"""Recovery of damaged data directories after a crash, and retention.

The data dir uses Kafka's layout: <data>/<topic>-<partition>/<20-digit base
offset>.log/.index/.timeindex. After kill -9, a torn write at the end of the
active segment and broken or missing index files must be repaired on start
(as Kafka's log recovery does), without losing the complete batches before
them."""

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, produce_all, producer, unique_topic

N = 1000


def _segments(data_dir: Path, topic: str, partition: int = 0, ext: str = ".log"):
    d = data_dir / f"{topic}-{partition}"
    files = sorted(d.glob(f"*{ext}"))
    assert files, f"no {ext} files in {d} (contents: {sorted(os.listdir(d)) if d.exists() else 'missing'})"
    return files


def _fill(broker, topic, n=N, **conf):
    p = producer(broker.bootstrap, **{"linger.ms": 5, "batch.size": 2000, **conf})
    res = produce_all(p, [(b"k%d" % i, b"value-%05d" % i) for i in range(n)], topic)
    assert [r[2] for r in res] == list(range(n))


def _check_intact_then_append(broker, topic, n=N):
    """All n messages readable at their offsets; the next append gets offset n."""
    c = consumer(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    assert c.get_watermark_offsets(tp, timeout=10, cached=False) == (0, n)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=n)
    assert [(m.offset(), m.value()) for m in msgs] == [(i, b"value-%05d" % i) for i in range(n)]
    res = produce_all(producer(broker.bootstrap), [(None, b"after-recovery")], topic)
    assert res[0][2] == n
    msgs = consume_partitions(c, [TopicPartition(topic, 0, n)], expected=1)
    assert [(m.offset(), m.value()) for m in msgs] == [(n, b"after-recovery")]
    c.close()


@pytest.mark.parametrize("damage", ["half-batch", "garbage", "zeros", "batch-bad-crc"])
def test_torn_tail_of_active_segment_is_truncated(make_broker, damage):
    broker = make_broker(**{"log.segment.bytes": 16384})
    topic = unique_topic("torn")
    create_topic(broker.bootstrap, topic)
    _fill(broker, topic)
    broker.kill9()

    last = _segments(broker.data_dir, topic)[-1]
    batch = kw.record_batch([kw.Record(b"torn-%d" % i) for i in range(10)], base_offset=N)
    tail = {
        "half-batch": batch[: len(batch) // 2],  # a write cut short by a crash
        "garbage": os.urandom(3000),
        "zeros": b"\x00" * 4096,  # preallocated / zero-filled tail
        "batch-bad-crc": batch[:-1] + bytes([batch[-1] ^ 0xFF]),  # complete batch, wrong CRC
    }[damage]
    with open(last, "ab") as f:
        f.write(tail)

    broker.start()
    _check_intact_then_append(broker, topic)


def test_missing_and_corrupt_index_files_are_rebuilt(make_broker):
    broker = make_broker(**{"log.segment.bytes": 6000})
    topic = unique_topic("idx")
    create_topic(broker.bootstrap, topic)
    t0 = 1_700_000_000_000
    p = producer(broker.bootstrap, **{"linger.ms": 5, "batch.size": 2000})
    produce_all(p, [(b"k%d" % i, b"value-%05d" % i, {"timestamp": t0 + i}) for i in range(N)], topic)
    broker.kill9()

    indexes = _segments(broker.data_dir, topic, ext=".index")
    timeindexes = _segments(broker.data_dir, topic, ext=".timeindex")
    assert len(_segments(broker.data_dir, topic)) >= 3, "expected several segments"
    indexes[-1].unlink()  # active segment's offset index gone
    timeindexes[-1].write_bytes(os.urandom(120))  # garbage time index (not a multiple of 12)
    indexes[0].write_bytes(b"\xff" * 80)  # garbage in an old segment's index

    broker.start()
    _check_intact_then_append(broker, topic)
    # Offset and time lookups work across all segments.
    c = consumer(broker.bootstrap)
    for target in (0, 1, N // 2, N - 1):
        msgs = consume_partitions(c, [TopicPartition(topic, 0, target)], expected=1, timeout=20)
        assert msgs[0].offset() == target and msgs[0].value() == b"value-%05d" % target
        [r] = c.offsets_for_times([TopicPartition(topic, 0, t0 + target)], timeout=10)
        assert r.offset == target, f"offsets_for_times(t0+{target}) = {r.offset}"
    c.close()


def test_clean_shutdown_then_tail_garbage(make_broker):
    """Garbage after a clean shutdown (a disk problem) must not be served as
    records; Kafka skips recovery after a clean shutdown, so either refusing
    to start or truncating is acceptable, but serving garbage is not."""
    broker = make_broker()
    topic = unique_topic("clean")
    create_topic(broker.bootstrap, topic)
    _fill(broker, topic, n=100)
    assert broker.stop() == 0
    with open(_segments(broker.data_dir, topic)[-1], "ab") as f:
        f.write(b"\x00" * 12 + os.urandom(500))
    try:
        broker.start()
    except RuntimeError:
        return  # refusing to start on a corrupt log is acceptable
    c = consumer(broker.bootstrap, **{"check.crcs": True})
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=100, timeout=20)
    c.close()
    assert [m.value() for m in msgs] == [b"value-%05d" % i for i in range(100)]


def test_retention_deletes_old_segments(make_broker):
    broker = make_broker(**{"log.retention.check.interval.ms": 300, "log.segment.bytes": 4096})
    topic = unique_topic("ret")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "60000"})
    old = int(time.time() * 1000) - 3_600_000  # an hour ago: past retention
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    for start in range(0, 200, 20):
        produce_all(p, [(None, b"old-%04d" % i + b"." * 100, {"timestamp": old + i}) for i in range(start, start + 20)],
                    topic)
    # Fresh records: the segments holding them must stay.
    produce_all(p, [(None, b"new-%04d" % i) for i in range(10)], topic)

    c = consumer(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    deadline = time.monotonic() + 20
    lo, hi = c.get_watermark_offsets(tp, timeout=10, cached=False)
    while lo == 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        lo, hi = c.get_watermark_offsets(tp, timeout=10, cached=False)
    assert hi == 210
    assert 0 < lo <= 200, f"retention did not advance the log start offset (low watermark {lo})"
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=210 - lo)
    assert msgs[0].offset() == lo and msgs[-1].value() == b"new-0009"
    c.close()
    # Fetching below the log start offset is OFFSET_OUT_OF_RANGE.
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        assert kw.parse_fetch_v4(r)[(topic, 0)][0] == kw.OFFSET_OUT_OF_RANGE
    # And it survives a restart.
    broker.restart()
    c = consumer(broker.bootstrap)
    assert c.get_watermark_offsets(tp, timeout=10, cached=False)[0] >= lo
    c.close()
