"""100,000 keyed messages over 8 partitions with confluent-kafka, read back
with assign(): exact count, per-key order, one partition per key."""

import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from helpers import consumer, create_topic, producer, unique_topic

N = 100_000
PARTITIONS = 8
KEYS = 1000


def test_100k_keyed_messages_8_partitions(broker, capsys):
    topic = unique_topic("bulk")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    p = producer(broker.bootstrap, **{"linger.ms": 5, "batch.num.messages": 10000, "acks": "all",
                                      "queue.buffering.max.messages": 200000})
    acked = 0
    errors = []
    partition_of_key: dict[bytes, set] = defaultdict(set)

    def on_delivery(err, msg):
        nonlocal acked
        if err is not None:
            errors.append(err)
        else:
            acked += 1
            partition_of_key[msg.key()].add(msg.partition())

    t0 = time.monotonic()
    for i in range(N):
        k = i % KEYS
        key = f"key-{k:04d}".encode()
        value = f"{k}:{i // KEYS}:{'x' * 40}".encode()  # key:sequence-within-key:padding
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    produce_secs = time.monotonic() - t0
    assert left == 0, f"{left} messages undelivered"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert acked == N
    assert all(len(ps) == 1 for ps in partition_of_key.values()), "a key was spread over partitions"
    used = {next(iter(ps)) for ps in partition_of_key.values()}
    assert len(used) > 1, f"all keys went to partitions {used}: partitioning broken"

    c = consumer(broker.bootstrap, **{"fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, p_, OFFSET_BEGINNING) for p_ in range(PARTITIONS)])
    msgs = []
    eof = set()
    t0 = time.monotonic()
    consume_secs = None
    deadline = t0 + 120
    # Read until every partition reported EOF after all N arrived (so extra
    # messages would be seen too); the rate is timed up to the N-th message.
    while (consume_secs is None or len(eof) < PARTITIONS) and time.monotonic() < deadline:
        for m in c.consume(num_messages=10000, timeout=0.05):
            if m.error() is None:
                msgs.append(m)
                eof.discard(m.partition())  # an EOF counts only after a partition's last message
            elif m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            else:
                raise KafkaException(m.error())
        if consume_secs is None and len(msgs) >= N:
            consume_secs = time.monotonic() - t0
    c.close()
    assert consume_secs is not None, f"only {len(msgs)} of {N} messages consumed in 120 s"

    assert len(msgs) == N, f"consumed {len(msgs)} messages, produced {N}"
    next_seq = defaultdict(int)
    key_partition = {}
    offsets_by_partition = defaultdict(list)
    for m in msgs:
        k_str, seq, _ = m.value().decode().split(":", 2)
        assert m.key() == f"key-{int(k_str):04d}".encode()
        assert int(seq) == next_seq[m.key()], (
            f"key {m.key()!r}: got sequence {seq}, expected {next_seq[m.key()]} (partition {m.partition()}, "
            f"offset {m.offset()})")
        next_seq[m.key()] += 1
        assert key_partition.setdefault(m.key(), m.partition()) == m.partition()
        assert {m.partition()} == partition_of_key[m.key()]
        offsets_by_partition[m.partition()].append(m.offset())
    assert len(next_seq) == KEYS and all(v == N // KEYS for v in next_seq.values())
    for part, offs in offsets_by_partition.items():
        assert offs == list(range(len(offs))), f"partition {part}: offsets not 0..n-1 without gaps"

    with capsys.disabled():
        print(f"\n[bulk] produced {N} msgs in {produce_secs:.2f}s = {N / produce_secs:,.0f} msg/s; "
              f"consumed in {consume_secs:.2f}s = {N / consume_secs:,.0f} msg/s")
