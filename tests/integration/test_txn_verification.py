"""KIP-890 part 1 against the real binary: the partition leader asks the transaction
coordinator before it takes a transaction's first batch on a partition. A producer that
writes transactional records to a partition it never added with AddPartitionsToTxn (a buggy
or hostile client, or a late retry after its transaction ended) is refused with Kafka's
INVALID_TXN_STATE, so nothing of it is in the log and it cannot hold the last stable offset.

The refused producer is hand-built (kafka_wire's raw frames): no real client sends such a
batch. Its producer id and epoch are those a confluent-kafka transactional producer got
from InitProducerId, read back with `strom transactions describe`."""

import json
import subprocess
import uuid

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import kafka_wire as kw
from conftest import strom_bin
from helpers import consume_partitions, consumer, create_topic, producer, unique_topic

INVALID_TXN_STATE = 48
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
TRANSACTIONAL_ATTRIBUTE = 0x10


def describe_txn(bootstrap, transactional_id):
    cp = subprocess.run([strom_bin(), "transactions", "describe", "--transactional-id", transactional_id,
                         "-b", bootstrap, "--output", "json"], capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    return json.loads(cp.stdout)


def raw_txn_produce(bootstrap, transactional_id, topic, producer_id, producer_epoch, sequence, values):
    """A Produce v3 with one transactional batch for partition 0: (error code, base offset)."""
    batch = kw.record_batch([kw.Record(value=v) for v in values], attributes=TRANSACTIONAL_ATTRIBUTE,
                            producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=sequence)
    body = (kw.string(transactional_id) + kw.i16(-1) + kw.i32(10000)
            + kw.array([kw.string(topic) + kw.array([kw.i32(0) + kw.bytes_(batch)])]))
    with kw.Conn(bootstrap) as c:
        return kw.parse_produce_v3(c.request(kw.PRODUCE, 3, body))[(topic, 0)]


def read_committed(bootstrap, topic):
    c = consumer(bootstrap, **{"isolation.level": "read_committed"})
    try:
        msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], timeout=20)
        return [m.value() for m in msgs]
    finally:
        c.close()


def test_transactional_records_outside_the_transaction_are_refused_and_hold_no_lso(broker):
    topic = unique_topic("txn-verify")
    create_topic(broker.bootstrap, topic, 1)
    tid = "verify-" + uuid.uuid4().hex[:8]
    p = producer(broker.bootstrap, **{"transactional.id": tid, "transaction.timeout.ms": 20000,
                                      "message.timeout.ms": 20000, "acks": "all"})
    p.init_transactions(30)
    d = describe_txn(broker.bootstrap, tid)
    assert d["state"] == "Empty", d
    pid, epoch = d["producer_id"], d["producer_epoch"]

    # No transaction is open: the coordinator has not added the partition.
    assert raw_txn_produce(broker.bootstrap, tid, topic, pid, epoch, 0, [b"stray"])[0] == INVALID_TXN_STATE
    # Transactional records without a transactional id are not authorized, as in Kafka.
    assert raw_txn_produce(broker.bootstrap, None, topic, pid, epoch, 0, [b"stray"])[0] \
        == TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # Nothing was written, so a real transaction of the same producer goes through and is
    # visible to read_committed at once (a stray open batch would hold the LSO at 0).
    p.begin_transaction()
    p.produce(topic, partition=0, value=b"committed")
    p.commit_transaction(30)
    assert read_committed(broker.bootstrap, topic) == [b"committed"]
    c = consumer(broker.bootstrap)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()
    assert (low, high) == (0, 2), "one record and its COMMIT marker"

    # After the commit the partition is out of the transaction again: a late write is refused.
    assert raw_txn_produce(broker.bootstrap, tid, topic, pid, epoch, 1, [b"late"])[0] == INVALID_TXN_STATE
    assert read_committed(broker.bootstrap, topic) == [b"committed"]
