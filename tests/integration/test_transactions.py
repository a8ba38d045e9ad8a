"""Kafka transactions with real clients (issue 13): confluent-kafka's, aiokafka's and
kafkajs's transactional producers against the real binary. The coordinator (FindCoordinator
for transactional ids, InitProducerId with its epochs and fencing, AddPartitionsToTxn,
AddOffsetsToTxn, TxnOffsetCommit, EndTxn) writes COMMIT/ABORT markers into every partition
of a transaction and into `__consumer_offsets`. A marker is a record offset of its own, so a
partition's high watermark counts them. A read_committed consumer stops at the last stable
offset and skips aborted transactions (strom-log's aborted-transaction index)."""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (OFFSET_BEGINNING, KafkaError, KafkaException,
                             TopicPartition)

from conftest import strom_bin
from helpers import consume_partitions, consumer, create_topic, producer, unique_topic

PARTITIONS = 4

def eventually(fetch, want, timeout=15):
    """fetch() until it returns `want` (markers follow EndTxn's answer); the last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def high_watermarks(bootstrap, topic, partitions=PARTITIONS):
    c = consumer(bootstrap)
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()

def txn_producer(bootstrap, transactional_id, **conf):
    base = {"transactional.id": transactional_id, "transaction.timeout.ms": 20000,
            "enable.idempotence": True, "acks": "all", "linger.ms": 5}
    base.update(conf)
    # librdkafka wants both within the transaction timeout.
    base.setdefault("message.timeout.ms", base["transaction.timeout.ms"])
    base.setdefault("socket.timeout.ms", min(10000, base["transaction.timeout.ms"]))
    return producer(bootstrap, **base)


def read_all(bootstrap, topic, isolation, partitions=PARTITIONS, timeout=30):
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        msgs = consume_partitions(c, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)],
                                  timeout=timeout)
    finally:
        c.close()
    return msgs


def by_partition(msgs):
    out = {}
    for m in msgs:
        out.setdefault(m.partition(), []).append(m.value().decode())
    return out


def test_init_transactions_finds_the_coordinator_and_an_older_producer_is_fenced(broker):
    topic = unique_topic("txn-fence")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    tid = "fence-" + uuid.uuid4().hex[:8]

    started = time.monotonic()
    older = txn_producer(broker.bootstrap, tid)
    older.init_transactions(30)
    init_s = time.monotonic() - started
    newer = txn_producer(broker.bootstrap, tid)
    newer.init_transactions(30)

    # The older producer's next transaction: its AddPartitionsToTxn carries the old
    # epoch, so the coordinator fences it and nothing it sends reaches a partition.
    older.begin_transaction()
    for i in range(20):
        older.produce(topic, key=str(i).encode(), value=f"zombie-{i}".encode())
    with pytest.raises(KafkaException) as raised:
        older.commit_transaction(20)
    err = raised.value.args[0]
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), err
    assert err.fatal(), err

    values = [m.value().decode() for m in read_all(broker.bootstrap, topic, "read_uncommitted")]
    assert not [v for v in values if v.startswith("zombie")], values[:5]
    print(f"init_transactions (FindCoordinator, __transaction_state created, InitProducerId): {init_s:.2f} s")


def test_a_transaction_timeout_above_the_max_is_refused(make_broker):
    b = make_broker(**{"transaction.max.timeout.ms": "5000"})
    p = txn_producer(b.bootstrap, "too-long-" + uuid.uuid4().hex[:6], **{"transaction.timeout.ms": 6000})
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(20)
    err = raised.value.args[0]
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, err


def strom_json(bootstrap, *args):
    cp = subprocess.run([strom_bin(), *args, "-b", bootstrap, "--output", "json"], capture_output=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    return json.loads(cp.stdout)


def test_strom_transactions_list_and_describe_show_an_open_transaction(broker):
    topic = unique_topic("txn-cli")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    tid = "cli-" + uuid.uuid4().hex[:8]
    p = txn_producer(broker.bootstrap, tid)
    p.init_transactions(30)
    assert strom_json(broker.bootstrap, "transactions", "describe", "--transactional-id", tid)["state"] == "Empty"
    p.begin_transaction()
    p.produce(topic, partition=1, value=b"x")
    p.produce(topic, partition=3, value=b"y")
    # The producer adds the partitions to the transaction before it sends their records.
    deadline = time.monotonic() + 15
    while True:
        p.poll(0.1)
        d = strom_json(broker.bootstrap, "transactions", "describe", "--transactional-id", tid)
        if d["state"] == "Ongoing" and len(d["partitions"]) == 2 or time.monotonic() > deadline:
            break
    assert d["state"] == "Ongoing", d
    assert sorted(d["partitions"]) == [f"{topic}-1", f"{topic}-3"], d
    assert d["producer_epoch"] == 0 and d["transaction_timeout_ms"] == 20000, d
    assert d["transaction_start_time_ms"] is not None
    listed = strom_json(broker.bootstrap, "transactions", "list", "--state", "Ongoing")
    assert [t["transactional_id"] for t in listed] == [tid], listed
    assert strom_json(broker.bootstrap, "transactions", "list", "--state", "CompleteCommit") == []
    # An id nobody used: Kafka's TRANSACTIONAL_ID_NOT_FOUND, exit code 1.
    cp = subprocess.run([strom_bin(), "transactions", "describe", "--transactional-id", "nobody",
                         "-b", broker.bootstrap], capture_output=True, timeout=60)
    assert cp.returncode == 1 and b"TRANSACTIONAL_ID_NOT_FOUND" in cp.stderr.upper().replace(b" ", b"_"), cp.stderr


def run_transactions(p, topic, plan, per_txn=12):
    """Runs one transaction per entry of `plan` (True commits, False aborts), each
    with `per_txn` records keyed over the partitions; returns the committed values."""
    committed = []
    for n, commit in enumerate(plan):
        p.begin_transaction()
        vals = [f"t{n}-{i}" for i in range(per_txn)]
        for i, v in enumerate(vals):
            p.produce(topic, partition=i % PARTITIONS, value=v.encode())
        p.flush(20)
        if commit:
            p.commit_transaction(20)
            committed.extend(vals)
        else:
            p.abort_transaction(20)
    return committed


def test_commit_and_abort_over_four_partitions(broker):
    topic = unique_topic("txn-ca")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    tid = "ca-" + uuid.uuid4().hex[:8]
    p = txn_producer(broker.bootstrap, tid)
    p.init_transactions(30)
    plan = [True, False, True, True, False, True]
    started = time.monotonic()
    run_transactions(p, topic, plan)
    per_txn_ms = (time.monotonic() - started) / len(plan) * 1000
    print(f"{len(plan)} transactions of 12 records over 4 partitions: {per_txn_ms:.0f} ms each")

    everything = read_all(broker.bootstrap, topic, "read_uncommitted")
    assert sorted(m.value().decode() for m in everything) == sorted(
        f"t{n}-{i}" for n in range(len(plan)) for i in range(12))
    # Each transaction put 3 records and then its marker into every partition: a marker
    # takes an offset, so every partition's log end is 6 * (3 + 1).
    assert eventually(lambda: high_watermarks(broker.bootstrap, topic), [24] * PARTITIONS) == [24] * PARTITIONS
    state = eventually(lambda: strom_json(broker.bootstrap, "transactions", "describe", "--transactional-id",
                                          tid)["state"], "CompleteCommit")
    assert state == "CompleteCommit"


def test_read_committed_sees_exactly_the_committed_records_in_order(broker):
    topic = unique_topic("txn-rc")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    p = txn_producer(broker.bootstrap, "rc-" + uuid.uuid4().hex[:8])
    p.init_transactions(30)
    committed = run_transactions(p, topic, [True, False, True, False, True])
    seen = by_partition(read_all(broker.bootstrap, topic, "read_committed"))
    expected = {}
    for v in committed:
        expected.setdefault(int(v.split("-")[1]) % PARTITIONS, []).append(v)
    assert seen == expected


def test_an_abandoned_transaction_is_aborted_after_its_timeout(make_broker):
    b = make_broker(**{"transaction.abort.timed.out.transaction.cleanup.interval.ms": "300"})
    topic = unique_topic("txn-abandon")
    create_topic(b.bootstrap, topic, PARTITIONS)
    tid = "abandon-" + uuid.uuid4().hex[:8]
    p = txn_producer(b.bootstrap, tid, **{"transaction.timeout.ms": 1500})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(8):
        p.produce(topic, partition=i % PARTITIONS, value=f"left-{i}".encode())
    p.flush(20)
    # Never ended: the coordinator aborts it after 1.5 s (ABORT markers into the four
    # partitions), with an epoch bump that fences the producer.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        d = strom_json(b.bootstrap, "transactions", "describe", "--transactional-id", tid)
        if d["state"] == "CompleteAbort":
            break
        time.sleep(0.2)
    assert d["state"] == "CompleteAbort", d
    assert d["producer_epoch"] == 1, d
    assert eventually(lambda: high_watermarks(b.bootstrap, topic), [3] * PARTITIONS) == [3] * PARTITIONS
    with pytest.raises(KafkaException) as raised:
        p.commit_transaction(10)
    assert raised.value.args[0].code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                           KafkaError.INVALID_PRODUCER_EPOCH), raised.value
    q = txn_producer(b.bootstrap, tid)
    q.init_transactions(30)
    q.begin_transaction()
    q.produce(topic, partition=0, value=b"after")
    q.commit_transaction(20)
    assert eventually(lambda: high_watermarks(b.bootstrap, topic)[0], 5) == 5


def test_consume_transform_produce_with_send_offsets_to_transaction(broker):
    src, dst = unique_topic("ctp-in"), unique_topic("ctp-out")
    create_topic(broker.bootstrap, src, 1)
    create_topic(broker.bootstrap, dst, PARTITIONS)
    plain = producer(broker.bootstrap)
    for i in range(30):
        plain.produce(src, value=f"in-{i}".encode())
    plain.flush(20)

    group = "ctp-" + uuid.uuid4().hex[:6]
    c = consumer(broker.bootstrap, **{"group.id": group, "isolation.level": "read_committed",
                                      "enable.partition.eof": False})
    c.subscribe([src])
    p = txn_producer(broker.bootstrap, "ctp-" + uuid.uuid4().hex[:8])
    p.init_transactions(30)
    done = 0
    deadline = time.monotonic() + 60
    while done < 30 and time.monotonic() < deadline:
        msgs = [m for m in c.consume(num_messages=10, timeout=1.0) if m.error() is None]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, value=m.value().replace(b"in-", b"out-"))
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 20)
        p.commit_transaction(20)
        done += len(msgs)
    assert done == 30
    committed = c.committed([TopicPartition(src, 0)], timeout=10)
    assert committed[0].offset == 30
    c.close()
    out = sorted(m.value().decode() for m in read_all(broker.bootstrap, dst, "read_committed"))
    assert out == sorted(f"out-{i}" for i in range(30))

    # After a restart the group's partition of __consumer_offsets is loaded again, markers
    # and all: the transactional offsets are still the committed ones.
    broker.restart()
    again = consumer(broker.bootstrap, **{"group.id": group})
    committed = again.committed([TopicPartition(src, 0)], timeout=20)
    again.close()
    assert committed[0].offset == 30
    assert "unreadable" not in broker.log_text()


def test_kill9_mid_transaction_is_completed_or_aborted_never_half_visible(broker):
    topic = unique_topic("txn-kill")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    tid = "kill-" + uuid.uuid4().hex[:8]
    p = txn_producer(broker.bootstrap, tid)
    p.init_transactions(30)
    committed = run_transactions(p, topic, [True])
    p.begin_transaction()
    for i in range(40):
        p.produce(topic, partition=i % PARTITIONS, value=f"open-{i}".encode())
    p.flush(20)
    broker.kill9()
    broker.start()
    del p
    # A new producer of the id aborts what the old one left open: an ABORT marker in each
    # of the four partitions, none missing (3 + 1 committed, 10 open + 1 marker each).
    q = txn_producer(broker.bootstrap, tid)
    q.init_transactions(60)
    assert eventually(lambda: high_watermarks(broker.bootstrap, topic), [15] * PARTITIONS) == [15] * PARTITIONS
    d = strom_json(broker.bootstrap, "transactions", "describe", "--transactional-id", tid)
    assert d["state"] in ("Empty", "CompleteAbort") and d["producer_epoch"] >= 1, d
    values = [m.value().decode() for m in read_all(broker.bootstrap, topic, "read_uncommitted")]
    assert sorted(v for v in values if not v.startswith("open-")) == sorted(committed)


# --- aiokafka -------------------------------------------------------------------------------


def test_aiokafka_transactional_producer_is_fenced_by_a_newer_one(broker):
    import asyncio

    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AioKafkaError

    topic = unique_topic("txn-aio")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    tid = "aio-" + uuid.uuid4().hex[:8]

    async def run():
        older = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=tid,
                                 enable_idempotence=True, request_timeout_ms=15000)
        newer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=tid,
                                 enable_idempotence=True, request_timeout_ms=15000)
        await older.start()  # FindCoordinator + InitProducerId
        await newer.start()
        try:
            with pytest.raises(AioKafkaError) as raised:
                async with older.transaction():
                    await asyncio.wait_for(older.send_and_wait(topic, b"zombie", partition=0), 20)
            return type(raised.value).__name__
        finally:
            await asyncio.wait_for(older.stop(), 20)
            await asyncio.wait_for(newer.stop(), 20)

    name = asyncio.run(run())
    assert name in ("ProducerFenced", "InvalidProducerEpoch"), name
    values = [m.value() for m in read_all(broker.bootstrap, topic, "read_uncommitted")]
    assert b"zombie" not in values


# --- kafkajs --------------------------------------------------------------------------------

JS_DIR = Path(__file__).resolve().parent / "js"

KAFKAJS_FENCING = r"""
const { Kafka, logLevel } = require('kafkajs')
const [bootstrap, topic, tid] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'strom-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
                          retry: { retries: 3, initialRetryTime: 100 } })
async function main() {
  const older = kafka.producer({ transactionalId: tid, idempotent: true, maxInFlightRequests: 1 })
  const newer = kafka.producer({ transactionalId: tid, idempotent: true, maxInFlightRequests: 1 })
  await older.connect()
  await newer.connect()
  const t1 = await older.transaction()        // InitProducerId, epoch 0
  const t2 = await newer.transaction()        // epoch 1: the older producer is fenced
  const out = {}
  try {
    await t1.send({ topic, messages: [{ value: 'zombie' }] })
    out.older = 'sent'
  } catch (e) {
    out.older = e.type || e.name
  }
  out.newerOngoing = t2.isActive()
  await Promise.allSettled([older.disconnect(), newer.disconnect()])
  console.log(JSON.stringify(out))
}
main().catch(e => { console.log(JSON.stringify({ error: e.type || e.name, message: e.message })); process.exit(1) })
"""


def test_kafkajs_transactional_producer_is_fenced_by_a_newer_one(broker, tmp_path):
    node = shutil.which("node")
    modules = JS_DIR / "node_modules"
    if node is None or not (modules / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    topic = unique_topic("txn-js")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    script = tmp_path / "fencing.js"
    script.write_text(KAFKAJS_FENCING)
    env = dict(os.environ, NODE_PATH=str(modules))
    cp = subprocess.run([node, str(script), broker.bootstrap, topic, "js-" + uuid.uuid4().hex[:8]],
                        capture_output=True, timeout=120, env=env)
    assert cp.returncode == 0, cp.stdout.decode() + cp.stderr.decode()
    out = json.loads(cp.stdout.decode().strip().splitlines()[-1])
    assert out["older"] in ("PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"), out
    values = [m.value() for m in read_all(broker.bootstrap, topic, "read_uncommitted")]
    assert b"zombie" not in values
