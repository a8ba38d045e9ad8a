"""Authorized operations (issue 17 item 4): Metadata, DescribeCluster, DescribeTopicPartitions,
DescribeGroups and ConsumerGroupDescribe report Kafka's per-resource operation sets
(AclEntry.supportedOperations; with no authorizer, every operation a resource supports), read
with confluent-kafka's admin client and with hand-built requests for the paths it does not
take.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import ConsumerGroupState, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient

from helpers import consumer, create_topic, unique_topic
from kafka_wire import Conn, Reader, i32, string
from test_groups import NO_DELAY, NONE, UNKNOWN_TOPIC_OR_PARTITION, carray, cstring, flex_request, read_carray, read_cstring, skip_tags, unique_group

TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
             AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CLUSTER_ACTION,
               AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE}
# Kafka 4's set: the configs operations came with per-group configs.
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}

METADATA = 3
DESCRIBE_TOPIC_PARTITIONS = 75
NOT_REQUESTED = -(2 ** 31)


def bits(ops) -> int:
    return sum(1 << op.value for op in ops)


@pytest.fixture
def gbroker(make_broker):
    return make_broker(**NO_DELAY)


def test_describe_topics_and_cluster(gbroker):
    topic = unique_topic("ops")
    create_topic(gbroker.bootstrap, topic, partitions=2)
    a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    d = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True,
                          request_timeout=10)[topic].result(15)
    assert set(d.authorized_operations) == TOPIC_OPS, d.authorized_operations
    assert len(d.authorized_operations) == 8
    d = a.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result(15)
    assert d.authorized_operations is None
    c = a.describe_cluster(include_authorized_operations=True, request_timeout=10).result(15)
    assert set(c.authorized_operations) == CLUSTER_OPS, c.authorized_operations
    assert len(c.authorized_operations) == 7
    assert a.describe_cluster(request_timeout=10).result(15).authorized_operations is None


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_describe_consumer_groups(gbroker, protocol):
    topic = unique_topic("gops")
    create_topic(gbroker.bootstrap, topic)
    group = unique_group("ops")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol})
    c.subscribe([topic])
    a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    deadline = time.monotonic() + 30
    d = None
    while time.monotonic() < deadline:
        c.poll(0.2)
        d = a.describe_consumer_groups([group], include_authorized_operations=True,
                                       request_timeout=10)[group].result(15)
        if d.state == ConsumerGroupState.STABLE and d.members:
            break
    assert d is not None and d.state == ConsumerGroupState.STABLE, d
    assert set(d.authorized_operations) == GROUP_OPS, d.authorized_operations
    d = a.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    assert d.authorized_operations is None
    c.close()


def metadata_v8(conn: Conn, topics: list[str], include_cluster: bool, include_topic: bool) -> dict:
    """Metadata v8 (the last non-flexible one with cluster operations): cluster operations and
    each topic's (error, operations)."""
    body = (carray_v0([string(t) for t in topics]) + b"\x00" + bytes([include_cluster]) + bytes([include_topic]))
    r = conn.request(METADATA, 8, body)
    r.i32()  # throttle
    r.array(lambda x: (x.i32(), x.string(), x.i32(), x.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller

    def partition(x: Reader):
        x.i16(), x.i32(), x.i32(), x.i32()
        for _ in range(3):
            x.array(lambda y: y.i32())

    def topic_(x: Reader):
        err, name = x.i16(), x.string()
        x.i8()
        x.array(partition)
        return name, (err, x.i32())

    out = {"topics": dict(r.array(topic_))}
    out["cluster"] = r.i32()
    return out


def carray_v0(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def test_metadata_and_describe_topic_partitions_raw(gbroker):
    topic = unique_topic("rawops")
    create_topic(gbroker.bootstrap, topic)
    missing = unique_topic("missing")
    with Conn(gbroker.bootstrap) as c:
        m = metadata_v8(c, [topic, missing], include_cluster=True, include_topic=True)
        assert m["cluster"] == bits(CLUSTER_OPS)
        assert m["topics"][topic] == (NONE, bits(TOPIC_OPS))
        # Kafka reports them for every topic it answers by name, known or not.
        assert m["topics"][missing] == (UNKNOWN_TOPIC_OR_PARTITION, bits(TOPIC_OPS))
        m = metadata_v8(c, [topic], include_cluster=False, include_topic=False)
        assert m["cluster"] == NOT_REQUESTED and m["topics"][topic] == (NONE, NOT_REQUESTED)

        # DescribeTopicPartitions v0 always reports them, as Kafka does.
        body = carray([cstring(topic) + b"\x00"]) + i32(100) + b"\xff" + b"\x00"
        r = flex_request(c, DESCRIBE_TOPIC_PARTITIONS, 0, body)
        r.i32()

        def part(x: Reader):
            x.i16(), x.i32(), x.i32(), x.i32()
            for _ in range(4):
                read_carray(x, lambda y: y.i32())
            read_carray(x, lambda y: y.i32())
            skip_tags(x)

        def topic_(x: Reader):
            err, name = x.i16(), read_cstring(x)
            x._take(16)
            x.i8()
            read_carray(x, part)
            ops = x.i32()
            skip_tags(x)
            return name, (err, ops)

        topics = dict(read_carray(r, topic_))
        assert topics == {topic: (NONE, bits(TOPIC_OPS))}
