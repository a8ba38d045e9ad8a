"""Durability: acknowledged (acks=all) messages survive kill -9 at the offsets
reported to the producer; SIGTERM shuts down cleanly; a restart keeps topics,
partition counts, configs and data."""

import random
import signal
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from helpers import (admin, consume_partitions, consumer, create_topic, kcat_roundtrip, produce_all, producer,
                     unique_topic, wait_for_topic)

PARTITIONS = 2


def _produce_until_killed(broker, topic, cycle, kill_after_acks, rng):
    """Produce numbered messages in a loop; a second thread kill -9s the broker
    at a random moment after `kill_after_acks` were acknowledged, while the
    loop keeps producing (so requests are in flight). Returns
    {value: (partition, offset)} for the acknowledged messages."""
    acked = {}
    failed = 0
    killed = threading.Event()

    def on_delivery(err, msg):
        nonlocal failed
        if err is None:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())
        else:
            failed += 1

    def killer():
        deadline = time.monotonic() + 60
        while len(acked) < kill_after_acks and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.05))
        broker.kill9()
        killed.set()

    p = producer(broker.bootstrap, **{"acks": "all", "linger.ms": 2, "retries": 0,
                                      "enable.idempotence": False, "message.timeout.ms": 3000,
                                      "socket.timeout.ms": 2000, "reconnect.backoff.max.ms": 200,
                                      "log_level": 2})
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    seq = 0
    kill_time = sent_at_kill = acked_at_kill = None
    while kill_time is None or time.monotonic() - kill_time < 0.3:
        value = f"c{cycle}-{seq:07d}"
        try:
            p.produce(topic, value=value.encode(), key=str(seq % 17).encode(), on_delivery=on_delivery)
            seq += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
        if kill_time is None and killed.is_set():
            sent_at_kill, acked_at_kill, kill_time = seq, len(acked), time.monotonic()
    t.join()
    p.flush(10)
    print(f"cycle {cycle}: sent {seq}, acked {len(acked)}, failed {failed}; at the kill: "
          f"{sent_at_kill} sent, {acked_at_kill} acked")
    assert acked_at_kill >= kill_after_acks, f"only {acked_at_kill} acks within 60s (wanted {kill_after_acks})"
    return acked


def _read_all(bootstrap, topic):
    c = consumer(bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)],
                              timeout=60, batch=10000)
    lo_hi = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
             for p in range(PARTITIONS)}
    c.close()
    return msgs, lo_hi


def _check_log(msgs, lo_hi, all_acked):
    by_part = {p: [] for p in range(PARTITIONS)}
    for m in msgs:
        by_part[m.partition()].append((m.offset(), m.value().decode()))
    for p, recs in by_part.items():
        offsets = [o for o, _ in recs]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets have gaps or repeats"
        assert lo_hi[p] == (0, len(offsets)), f"partition {p}: watermarks {lo_hi[p]} vs {len(offsets)} records"
        values = [v for _, v in recs]
        # Order: (cycle, seq) strictly increasing within a partition.
        keyed = [(int(v[1:].split("-")[0]), int(v.split("-")[1])) for v in values]
        assert keyed == sorted(set(keyed)), f"partition {p}: records out of order or duplicated"
    where = {v: (p, o) for p, recs in by_part.items() for o, v in recs}
    missing = [v for v in all_acked if v not in where]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    moved = [(v, all_acked[v], where[v]) for v in all_acked if where[v] != all_acked[v]]
    assert not moved, f"{len(moved)} acknowledged messages at another offset than acked, e.g. {moved[:5]}"


@pytest.mark.parametrize("flush", ["default", "never"])
def test_acked_messages_survive_kill9(make_broker, flush):
    # kill -9 is a process crash, not a machine crash: written data is in the
    # page cache, so acked messages must survive even without fsync.
    broker = make_broker(**({} if flush == "default" else {"log.flush.interval.messages": 9223372036854775807}))
    topic = unique_topic("dur")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    all_acked = {}
    rng = random.Random(42)
    for cycle, kill_after in enumerate([3000, 500, 8000]):
        acked = _produce_until_killed(broker, topic, cycle, kill_after, rng)
        assert len(acked) >= kill_after
        all_acked.update(acked)
        assert not broker.alive()
        broker.start()
        msgs, lo_hi = _read_all(broker.bootstrap, topic)
        _check_log(msgs, lo_hi, all_acked)
        print(f"cycle {cycle}: log has {len(msgs)} records, {len(all_acked)} acked so far, all present")
    kcat_roundtrip(broker.bootstrap)


def test_sigterm_clean_shutdown_keeps_data(broker):
    topic = unique_topic("term")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    msgs = [(str(i).encode(), f"c0-{i:07d}".encode()) for i in range(5000)]
    res = produce_all(producer(broker.bootstrap, **{"acks": "all", "linger.ms": 5}), msgs, topic)
    acked = {v.decode(): (r[1], r[2]) for (_, v), r in zip(msgs, res)}

    t0 = time.monotonic()
    rc = broker.stop(signal.SIGTERM, timeout=10)
    took = time.monotonic() - t0
    assert rc == 0, f"exit code {rc} after SIGTERM"
    print(f"SIGTERM shutdown took {took:.2f}s")

    broker.start()
    got, lo_hi = _read_all(broker.bootstrap, topic)
    assert len(got) == 5000
    _check_log(got, lo_hi, acked)

    # SIGINT is a clean shutdown too (Ctrl-C in a terminal).
    rc = broker.stop(signal.SIGINT, timeout=10)
    assert rc == 0, f"exit code {rc} after SIGINT"
    broker.start()
    got, lo_hi = _read_all(broker.bootstrap, topic)
    _check_log(got, lo_hi, acked)
    assert len(got) == 5000


def test_sigterm_with_idle_and_active_connections(broker):
    """Open client connections must not keep the broker from exiting."""
    topic = unique_topic("conns")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    produce_all(p, [(None, b"x")], topic)
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    c.poll(1)  # a consumer with an open fetch session, long-polling
    rc = broker.stop(signal.SIGTERM, timeout=10)
    assert rc == 0
    c.close()


def test_restart_preserves_metadata_configs_and_data(make_broker):
    broker = make_broker(**{"num.partitions": 2, "log.segment.bytes": 8192})
    t_cfg = unique_topic("keep-cfg")
    t_many = unique_topic("keep-many")
    t_auto = unique_topic("keep-auto")
    create_topic(broker.bootstrap, t_cfg, partitions=3, config={"retention.ms": "123456789",
                                                                  "segment.bytes": "65536"})
    create_topic(broker.bootstrap, t_many, partitions=12)
    # Batches must fit in a segment (larger ones get RECORD_LIST_TOO_LARGE, as in Kafka).
    p = producer(broker.bootstrap, **{"linger.ms": 5, "batch.size": 4000})
    data = {}
    for t, parts in ((t_cfg, 3), (t_many, 12)):
        msgs = [(None, f"{t}-{i}".encode() + b"." * (i % 300), {"partition": i % parts}) for i in range(3000)]
        produce_all(p, msgs, t)
        data[t] = msgs
    # Auto-created via a producer: gets num.partitions=2.
    produce_all(p, [(None, b"auto-%d" % i) for i in range(100)], t_auto)
    wait_for_topic(broker.bootstrap, t_auto, 2)

    def snapshot():
        a = admin(broker.bootstrap)
        md = a.list_topics(timeout=10)
        parts = {t: sorted(md.topics[t].partitions) for t in (t_cfg, t_many, t_auto)}
        cfg = list(a.describe_configs([ConfigResource(ResourceType.TOPIC, t_cfg)]).values())[0].result(15)
        c = consumer(broker.bootstrap)
        contents = {}
        for t, n in ((t_cfg, 3), (t_many, 12), (t_auto, 2)):
            ms = consume_partitions(c, [TopicPartition(t, i, OFFSET_BEGINNING) for i in range(n)], timeout=30)
            contents[t] = sorted((m.partition(), m.offset(), m.value()) for m in ms)
        c.close()
        return parts, {k: cfg[k].value for k in ("retention.ms", "segment.bytes")}, md.cluster_id, contents

    before = snapshot()
    assert before[0] == {t_cfg: [0, 1, 2], t_many: list(range(12)), t_auto: [0, 1]}
    assert before[1] == {"retention.ms": "123456789", "segment.bytes": "65536"}
    assert len(before[3][t_cfg]) == 3000 and len(before[3][t_many]) == 3000 and len(before[3][t_auto]) == 100

    broker.restart(signal.SIGTERM)
    assert snapshot() == before

    broker.kill9()
    broker.start()
    assert snapshot() == before

    # Appends after a restart continue at the old end offsets.
    res = produce_all(producer(broker.bootstrap), [(None, b"after", {"partition": 0})], t_cfg)
    assert res[0][2] == 1000
    # Re-creating an existing topic still fails after restart.
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(t_many, 1, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[t_many].result(15)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_deleted_topic_stays_deleted_after_restart(broker):
    keep, gone = unique_topic("keep"), unique_topic("gone")
    create_topic(broker.bootstrap, keep, partitions=2)
    create_topic(broker.bootstrap, gone, partitions=3)
    produce_all(producer(broker.bootstrap), [(None, b"x%d" % i) for i in range(50)], gone)
    a = admin(broker.bootstrap)
    a.delete_topics([gone], operation_timeout=15)[gone].result(20)
    for how in ("SIGTERM", "SIGKILL"):
        if how == "SIGTERM":
            broker.restart()
        else:
            broker.kill9()
            broker.start()
        topics = admin(broker.bootstrap).list_topics(timeout=10).topics
        assert gone not in topics, f"deleted topic is back after a {how} restart"
        assert keep in topics and len(topics[keep].partitions) == 2
    # Its data is gone from disk too (eventually, as Kafka deletes asynchronously).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.name.startswith(gone) for p in broker.data_dir.iterdir()):
        time.sleep(0.2)
    assert not [p.name for p in broker.data_dir.iterdir() if p.name.startswith(gone)]
    # Re-created, it starts empty.
    create_topic(broker.bootstrap, gone, partitions=1)
    res = produce_all(producer(broker.bootstrap), [(None, b"fresh")], gone)
    assert res[0][2] == 0


def test_sigterm_under_load_keeps_acked_data(broker):
    topic = unique_topic("termload")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    acked = {}
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())

    def produce_loop():
        p = producer(broker.bootstrap, **{"acks": "all", "linger.ms": 2, "retries": 0, "message.timeout.ms": 3000,
                                          "log_level": 2})
        seq = 0
        while not stop.is_set():
            try:
                p.produce(topic, value=f"c0-{seq:07d}".encode(), key=str(seq % 17).encode(), on_delivery=on_delivery)
                seq += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)
        p.flush(10)

    th = threading.Thread(target=produce_loop)
    th.start()
    deadline = time.monotonic() + 30
    while len(acked) < 5000 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    rc = broker.stop(signal.SIGTERM, timeout=10)
    took = time.monotonic() - t0
    stop.set()
    th.join(30)
    assert rc == 0, f"exit code {rc} after SIGTERM under load"
    assert len(acked) >= 5000
    print(f"SIGTERM under load: exit after {took:.2f}s, {len(acked)} acked")
    broker.start()
    msgs, lo_hi = _read_all(broker.bootstrap, topic)
    _check_log(msgs, lo_hi, acked)
