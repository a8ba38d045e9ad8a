"""Log compaction (cleanup.policy=compact): only the latest record of each key stays, old
tombstones go, offsets never change, and the result survives a restart. `__consumer_offsets`
is compacted the same way, and the commits it keeps still load after a restart.
"""

from __future__ import annotations

import os
import time

from confluent_kafka import TopicPartition

from helpers import consumer, create_topic, produce_all, producer, unique_topic
from kafka_wire import Conn
from test_groups import NONE, offset_commit, offset_fetch, unique_group

# The cleaner looks every 200 ms and cleans as soon as anything sealed is dirty.
FAST_CLEANER = {"log.cleaner.backoff.ms": 200, "log.flush.scheduler.interval.ms": 200,
                "log.cleaner.min.cleanable.ratio": 0.01}


def read_all(bootstrap: str, topic: str) -> list[tuple[int, str, str | None]]:
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                break
            continue
        out.append((m.offset(), m.key().decode(), None if m.value() is None else m.value().decode()))
    c.close()
    return out


def test_compacted_topic_keeps_the_latest_record_of_each_key(make_broker):
    b = make_broker(**FAST_CLEANER)
    topic = unique_topic("compact")
    create_topic(b.bootstrap, topic, 1, config={"cleanup.policy": "compact", "segment.bytes": "2048",
                                                "delete.retention.ms": "0"})
    p = producer(b.bootstrap, **{"linger.ms": 0, "compression.type": "lz4"})
    produced = []
    for rnd in range(30):
        batch = [(f"k{k}".encode(), f"r{rnd}-k{k}".encode(), {}) for k in range(10)]
        produce_all(p, batch, topic)
        produced += [(k.decode(), v.decode()) for k, v, _ in batch]
    produce_all(p, [(b"k9", None, {})], topic)  # a tombstone for k9
    produced.append(("k9", None))
    # Enough incompressible data after it that the tombstone's segment is sealed.
    filler = [(f"f{i}".encode(), os.urandom(300).hex().encode(), {}) for i in range(12)]
    for f in filler:
        produce_all(p, [f], topic)
    produced += [(k.decode(), v.decode()) for k, v, _ in filler]
    latest = {}
    for k, v in produced:
        latest[k] = v

    deadline = time.monotonic() + 30
    got = read_all(b.bootstrap, topic)
    while len([r for r in got if r[1] == "k0"]) > 1 and time.monotonic() < deadline:
        time.sleep(0.3)
        got = read_all(b.bootstrap, topic)
    assert len(got) < len(produced) / 3, f"{len(got)} records of {len(produced)} after compaction"
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets only increase"
    # The latest value of every key is there, and it is the last one read for that key.
    seen = {}
    for _, k, v in got:
        seen[k] = v
    assert {k: v for k, v in seen.items() if not k.startswith("f")} == \
        {k: v for k, v in latest.items() if not k.startswith("f") and v is not None}, got
    assert {k: v for k, v in seen.items() if not k.startswith("f")} == \
        {k: v for k, v in latest.items() if not k.startswith("f") and v is not None}, seen
    assert "k9" not in seen, "the deleted key and its old tombstone are gone"
    assert all(len([r for r in got if r[1] == f"k{k}"]) == 1 for k in range(9))
    # Compaction is durable: a restart reads the same log.
    b.restart()
    assert read_all(b.bootstrap, topic) == got


def test_consumer_offsets_is_compacted_and_reloads(make_broker):
    b = make_broker(**FAST_CLEANER, **{"offsets.topic.segment.bytes": 4096,
                                       "offsets.topic.num.partitions": 1})
    topic = unique_topic("commits")
    create_topic(b.bootstrap, topic, 2)
    group = unique_group("compact")
    with Conn(b.bootstrap) as c:
        for i in range(1, 1501):
            assert offset_commit(c, group, -1, "", {(topic, i % 2): (i, None)}) == {(topic, i % 2): NONE}
    part = b.data_dir / "__consumer_offsets-0"

    def size() -> int:
        return sum(f.stat().st_size for f in part.glob("*.log"))

    deadline = time.monotonic() + 30
    while size() > 20_000 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert size() <= 20_000, f"__consumer_offsets-0 still holds {size()} bytes of log"
    b.restart()
    with Conn(b.bootstrap) as c:
        got = offset_fetch(c, group, {topic: [0, 1]})
    assert {k: v[0] for k, v in got.items()} == {(topic, 0): 1500, (topic, 1): 1499}
