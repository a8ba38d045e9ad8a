"""Idempotent producers across kill -9 (issue 9, item 4): the broker keeps each
partition's producer state beside its log (`.snapshot` files plus the batches
after them), so a batch the producer retries after the broker came back is
recognised as a duplicate instead of being written twice.

One confluent-kafka producer (enable.idempotence=true, acks=all) runs across
every cycle while the broker is killed with SIGKILL and started again at
random moments, so requests are in flight at each kill. At the end the log must
hold every produced message exactly once, in production order per partition,
at the offset its acknowledgement reported.

STROM_IDEMPOTENT_KILL9_CYCLES sets the number of cycles (5 by default; the
figures in the report come from 30)."""

import os
import random
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import kafka_wire as kw
from helpers import consume_partitions, consumer, create_topic, producer, unique_topic

PARTITIONS = 2
CYCLES = int(os.environ.get("STROM_IDEMPOTENT_KILL9_CYCLES", "5"))


def _kill_cycles(broker, acked, cycles, rng, errors):
    """Kills and restarts the broker `cycles` times, each after a random number
    of further acknowledgements, while the producer keeps going."""
    try:
        for cycle in range(cycles):
            target = len(acked) + rng.randint(300, 3000)
            deadline = time.monotonic() + 60
            while len(acked) < target and time.monotonic() < deadline:
                time.sleep(0.001)
            if len(acked) < target:
                errors.append(f"cycle {cycle}: only {len(acked)} acks within 60 s (wanted {target})")
                return
            time.sleep(rng.uniform(0, 0.05))
            broker.kill9()
            time.sleep(rng.uniform(0, 0.3))
            broker.start()
    except Exception as e:  # noqa: BLE001 - reported by the test thread
        errors.append(f"killer: {e!r}")


def count_anomalies(values_by_partition, acked):
    """Duplicates, acknowledged messages missing, and records out of production
    order, from the log's contents ({partition: [(offset, value)]})."""
    seen = {}
    duplicates = reordered = 0
    for p, recs in values_by_partition.items():
        last_seq = -1
        for offset, value in recs:
            seq = int(value)
            if value in seen:
                duplicates += 1
            else:
                seen[value] = (p, offset)
            if seq <= last_seq:
                reordered += seq < last_seq
            last_seq = max(last_seq, seq)
    missing = sum(1 for v in acked if v not in seen)
    moved = sum(1 for v, where in acked.items() if v in seen and seen[v] != where)
    return duplicates, missing, reordered, moved


@pytest.mark.parametrize("flush", ["default", "never"])
def test_idempotent_producer_survives_kill9_without_duplicates(make_broker, flush):
    # "never": nothing is fsynced, so recovery scans from an old recovery point and the
    # producer state is replayed from further back.
    broker = make_broker(**({} if flush == "default" else {"log.flush.interval.messages": 9223372036854775807}))
    topic = unique_topic("idem")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    acked = {}
    failed = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())
        else:
            failed.append(str(err))

    p = producer(broker.bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 2,
                                      "max.in.flight.requests.per.connection": 5,
                                      "message.timeout.ms": 120000, "reconnect.backoff.ms": 50,
                                      "reconnect.backoff.max.ms": 200, "log_level": 2})
    rng = random.Random(4242)
    errors = []
    killer = threading.Thread(target=_kill_cycles, args=(broker, acked, CYCLES, rng, errors), daemon=True)
    killer.start()
    seq = 0
    while killer.is_alive():
        try:
            p.produce(topic, value=f"{seq:09d}".encode(), key=str(seq % 17).encode(), on_delivery=on_delivery)
            seq += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    killer.join()
    remaining = p.flush(120)
    assert not errors, errors
    assert remaining == 0, f"{remaining} messages still undelivered"

    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(PARTITIONS)],
                              timeout=120, expected=len(acked), batch=10000)
    c.close()
    by_part = {q: [] for q in range(PARTITIONS)}
    for m in msgs:
        by_part[m.partition()].append((m.offset(), m.value().decode()))
    duplicates, missing, reordered, moved = count_anomalies(by_part, acked)
    print(f"{CYCLES} kill -9 cycles: produced {seq}, acked {len(acked)}, failed {len(failed)}, "
          f"log has {len(msgs)}; duplicates {duplicates}, missing {missing}, reordered {reordered}, "
          f"at another offset than acked {moved}")
    assert (duplicates, missing, reordered, moved) == (0, 0, 0, 0)
    # With idempotence and unbounded retries nothing may fail outright.
    assert not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    assert len(acked) == seq
    assert len(msgs) == seq


PID = 4711


def _send(bootstrap, topic, seq, count, epoch=0):
    """One idempotent batch of `count` records from producer PID; returns
    (error code, base offset) of the produce response."""
    batch = kw.record_batch([kw.Record(f"s{seq + i}".encode()) for i in range(count)],
                            producer_id=PID, producer_epoch=epoch, base_sequence=seq)
    with kw.Conn(bootstrap) as c:
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, batch))
        return kw.parse_produce_v3(r)[(topic, 0)]


def _log_end(bootstrap, topic):
    with kw.Conn(bootstrap) as c:
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0, max_wait_ms=0))
        err, hw, _ = kw.parse_fetch_v4(r)[(topic, 0)]
        assert err == 0
        return hw


def test_retries_are_recognised_after_a_crash_a_clean_restart_and_with_damaged_snapshots(make_broker):
    broker = make_broker()
    topic = unique_topic("pstate")
    create_topic(broker.bootstrap, topic, partitions=1)
    assert _send(broker.bootstrap, topic, 0, 3) == (0, 0)
    assert _send(broker.bootstrap, topic, 3, 2) == (0, 3)

    # kill -9 before any segment roll or clean shutdown: no snapshot exists, the state
    # comes from replaying the log.
    broker.kill9()
    broker.start()
    assert _send(broker.bootstrap, topic, 3, 2) == (0, 3), "a retry after kill -9 was written again"
    assert _send(broker.bootstrap, topic, 0, 3) == (0, 0)
    assert _send(broker.bootstrap, topic, 9, 1)[0] == 45, "a sequence gap was accepted (OUT_OF_ORDER_SEQUENCE_NUMBER)"
    assert _send(broker.bootstrap, topic, 0, 1, epoch=1)[0] == 0  # a new epoch starts at 0
    assert _send(broker.bootstrap, topic, 1, 1, epoch=0)[0] == 47, "an old epoch was accepted (INVALID_PRODUCER_EPOCH)"
    assert _log_end(broker.bootstrap, topic) == 6

    # A clean shutdown writes a snapshot at the log end.
    broker.stop()
    part_dir = broker.data_dir / f"{topic}-0"
    snapshots = sorted(part_dir.glob("*.snapshot"))
    assert [s.name for s in snapshots] == [f"{6:020d}.snapshot"], sorted(p.name for p in part_dir.iterdir())
    broker.start()
    assert _send(broker.bootstrap, topic, 0, 1, epoch=1) == (0, 5)
    assert _send(broker.bootstrap, topic, 1, 2, epoch=1) == (0, 6)

    # Damaged snapshots are skipped with a WARN and the log replayed: never fatal.
    broker.stop()
    for s in part_dir.glob("*.snapshot"):
        data = bytearray(s.read_bytes())
        data[len(data) // 2] ^= 0xFF
        s.write_bytes(bytes(data))
    broker.start()
    assert "ignoring damaged producer state snapshot" in broker.log_text()
    assert _send(broker.bootstrap, topic, 1, 2, epoch=1) == (0, 6)
    assert _send(broker.bootstrap, topic, 3, 1, epoch=1) == (0, 8)
    assert _log_end(broker.bootstrap, topic) == 9


def test_idle_producers_expire(make_broker):
    """producer.id.expiration.ms: a producer idle that long is forgotten, so its
    next batch is taken at any sequence (as from a new producer)."""
    broker = make_broker(**{"producer.id.expiration.ms": 1500, "producer.id.expiration.check.interval.ms": 100})
    topic = unique_topic("pexp")
    create_topic(broker.bootstrap, topic, partitions=1)
    assert _send(broker.bootstrap, topic, 0, 2) == (0, 0)
    assert _send(broker.bootstrap, topic, 7, 1)[0] == 45
    deadline = time.monotonic() + 20
    while _send(broker.bootstrap, topic, 7, 1)[0] == 45:
        assert time.monotonic() < deadline, "the idle producer was never expired"
        time.sleep(0.2)
    assert "expired producer ids" in broker.log_text()
