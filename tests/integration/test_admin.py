"""Admin APIs: CreateTopics (partitions, configs, validate_only, errors),
DeleteTopics, DescribeConfigs, describe cluster, and Metadata auto-creation."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource, NewTopic, ResourceType

import kafka_wire as kw
from helpers import (admin, consume_partitions, consumer, create_topic, describe, kcat, produce_all, producer,
                     unique_topic, wait_for_topic)


def _create_error(a, topic: NewTopic, validate_only=False):
    """The KafkaError code of creating `topic`, or None on success."""
    fs = a.create_topics([topic], validate_only=validate_only, operation_timeout=15, request_timeout=15)
    try:
        fs[topic.topic].result(20)
        return None
    except KafkaException as e:
        return e.args[0].code()


def _topics(a):
    return a.list_topics(timeout=10).topics


def test_create_topic_with_partitions_and_configs(broker):
    a = admin(broker.bootstrap)
    name = unique_topic("cfg")
    assert _create_error(a, NewTopic(name, 5, 1, config={"retention.ms": "3600000", "max.message.bytes": "500000"})) is None
    wait_for_topic(broker.bootstrap, name, 5)
    md = _topics(a)[name]
    assert sorted(md.partitions) == [0, 1, 2, 3, 4]
    for p in md.partitions.values():
        assert p.leader == 0 and p.replicas == [0] and p.isrs == [0] and p.error is None

    res = a.describe_configs([ConfigResource(ResourceType.TOPIC, name)])
    entries = list(res.values())[0].result(15)
    assert entries["retention.ms"].value == "3600000"
    assert ConfigSource(entries["retention.ms"].source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not entries["retention.ms"].is_default
    assert entries["max.message.bytes"].value == "500000"


def test_default_topic_and_broker_configs(make_broker):
    broker = make_broker(**{"num.partitions": 3})
    a = admin(broker.bootstrap)
    name = unique_topic("dflt")
    create_topic(broker.bootstrap, name, partitions=1)
    res = a.describe_configs([ConfigResource(ResourceType.TOPIC, name)])
    entries = list(res.values())[0].result(15)
    assert entries["retention.ms"].value == "604800000"
    assert entries["cleanup.policy"].value == "delete"

    res = a.describe_configs([ConfigResource(ResourceType.BROKER, "0")])
    entries = list(res.values())[0].result(15)
    assert entries["num.partitions"].value == "3"
    assert entries["message.max.bytes"].value == "1048588"
    assert entries["auto.create.topics.enable"].value == "true"


def test_validate_only_creates_nothing(broker):
    a = admin(broker.bootstrap)
    name = unique_topic("vo")
    assert _create_error(a, NewTopic(name, 4, 1), validate_only=True) is None
    time.sleep(0.5)
    assert name not in _topics(a)
    # validate_only still validates
    assert _create_error(a, NewTopic("bad/name", 1, 1), validate_only=True) == KafkaError.TOPIC_EXCEPTION
    # and the real thing works afterwards
    assert _create_error(a, NewTopic(name, 4, 1)) is None
    wait_for_topic(broker.bootstrap, name, 4)


def test_create_existing_topic(broker):
    a = admin(broker.bootstrap)
    name = unique_topic("dup")
    assert _create_error(a, NewTopic(name, 2, 1)) is None
    assert _create_error(a, NewTopic(name, 2, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    assert _create_error(a, NewTopic(name, 7, 1)) == KafkaError.TOPIC_ALREADY_EXISTS
    wait_for_topic(broker.bootstrap, name, 2)  # unchanged


@pytest.mark.parametrize("name", ["bad/name", "..", ".", "a" * 250, "spaces here", "", "caf\u00e9"])
def test_invalid_topic_names(broker, name):
    # Raw CreateTopics v2, so no client-side validation gets in the way.
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.CREATE_TOPICS, 2, kw.create_topics_v2_body(name, 1))
        assert kw.parse_create_topics_v2(r) == {name: kw.INVALID_TOPIC_EXCEPTION}
    if name:
        a = admin(broker.bootstrap)
        assert _create_error(a, NewTopic(name, 1, 1)) == KafkaError.TOPIC_EXCEPTION
        assert name not in _topics(a)
    assert broker.alive()


def test_longest_valid_topic_name(broker):
    name = "a" * 249
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.CREATE_TOPICS, 2, kw.create_topics_v2_body(name, 1))
        assert kw.parse_create_topics_v2(r) == {name: 0}
    p = kcat(["-P", "-b", broker.bootstrap, "-t", name], input="long\n")
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", broker.bootstrap, "-t", name, "-e"])
    assert c.stdout.decode().splitlines() == ["long"], describe(c)


def test_create_topic_bad_arguments(broker):
    a = admin(broker.bootstrap)
    assert _create_error(a, NewTopic(unique_topic("rf"), 1, 2)) == KafkaError.INVALID_REPLICATION_FACTOR
    assert _create_error(a, NewTopic(unique_topic("cfg"), 1, 1, config={"retention.ms": "abc"})) == \
        KafkaError.INVALID_CONFIG
    assert _create_error(a, NewTopic(unique_topic("cfg"), 1, 1, config={"no.such.config": "1"})) == \
        KafkaError.INVALID_CONFIG
    with kw.Conn(broker.bootstrap) as conn:
        name = unique_topic("zero")
        r = conn.request(kw.CREATE_TOPICS, 2, kw.create_topics_v2_body(name, 0))
        assert kw.parse_create_topics_v2(r) == {name: 37}  # INVALID_PARTITIONS
    assert broker.alive()


def test_delete_topic(broker):
    a = admin(broker.bootstrap)
    name = unique_topic("del")
    create_topic(broker.bootstrap, name, partitions=2)
    produce_all(producer(broker.bootstrap), [(None, b"old-%d" % i) for i in range(10)], name)

    fs = a.delete_topics([name], operation_timeout=15, request_timeout=15)
    fs[name].result(20)
    deadline = time.monotonic() + 10
    while name in _topics(a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in _topics(a)

    # Deleting again: UNKNOWN_TOPIC_OR_PART.
    fs = a.delete_topics([name], operation_timeout=15, request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[name].result(20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # Producing to the deleted topic over the wire (Produce does not auto-create).
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.PRODUCE, 3, kw.produce_v3_body(name, 0, kw.record_batch([kw.Record(b"x")])))
        assert kw.parse_produce_v3(r)[(name, 0)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION

    # Re-created under the same name, it starts empty.
    create_topic(broker.bootstrap, name, partitions=1)
    produce_all(producer(broker.bootstrap), [(None, b"new")], name)
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(name, 0, OFFSET_BEGINNING)], expected=1)
    c.close()
    assert [(m.offset(), m.value()) for m in msgs] == [(0, b"new")]


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=15).result(20)
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(0, "127.0.0.1", broker.port)]
    assert desc.controller is not None and desc.controller.id == 0
    assert desc.cluster_id, "no cluster id"

    from kafka.admin import KafkaAdminClient
    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        kd = ka.describe_cluster()
    finally:
        ka.close()
    assert [(b["broker_id"], b["host"], b["port"]) for b in kd["brokers"]] == [(0, "127.0.0.1", broker.port)]
    assert kd["controller_id"] == 0
    assert kd["cluster_id"] == desc.cluster_id


def test_cluster_id_and_node_id_override(make_broker):
    broker = make_broker(**{"node.id": 7})
    a = admin(broker.bootstrap)
    md = a.list_topics(timeout=10)
    assert list(md.brokers) == [7]
    assert md.controller_id == 7
    name = unique_topic("n7")
    create_topic(broker.bootstrap, name, partitions=2)
    for p in a.list_topics(timeout=10).topics[name].partitions.values():
        assert p.leader == 7 and p.replicas == [7]
    # The cluster id is stable across restarts.
    cid = md.cluster_id
    broker.restart()
    assert admin(broker.bootstrap).list_topics(timeout=10).cluster_id == cid


def test_metadata_auto_create_flag(make_broker):
    broker = make_broker(**{"num.partitions": 3})
    name = unique_topic("auto")
    with kw.Conn(broker.bootstrap) as conn:
        # allow_auto_topic_creation=false: UNKNOWN_TOPIC_OR_PART, nothing created.
        r = conn.request(kw.METADATA, 4, kw.metadata_body([name], 4, allow_auto_create=False))
        brokers, cluster_id, controller, topics = kw.parse_metadata_v4(r)
        assert brokers == [(0, "127.0.0.1", broker.port)]
        assert topics[name].error == kw.UNKNOWN_TOPIC_OR_PARTITION
        r = conn.request(kw.METADATA, 4, kw.metadata_body(None, 4))
        assert name not in kw.parse_metadata_v4(r)[3]

        # allow_auto_topic_creation=true: created with num.partitions (Kafka may
        # answer LEADER_NOT_AVAILABLE the first time).
        r = conn.request(kw.METADATA, 4, kw.metadata_body([name], 4, allow_auto_create=True))
        assert kw.parse_metadata_v4(r)[3][name].error in (0, 5)
        deadline = time.monotonic() + 10
        while True:
            r = conn.request(kw.METADATA, 4, kw.metadata_body([name], 4, allow_auto_create=False))
            t = kw.parse_metadata_v4(r)[3][name]
            if t.error == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert t.error == 0
        assert sorted(t.partitions) == [0, 1, 2]
        assert all(v == (0, 0) for v in t.partitions.values())

        # Metadata v1 (before the flag existed) auto-creates too.
        name1 = unique_topic("auto-v1")
        conn.request(kw.METADATA, 1, kw.metadata_body([name1], 1))
    wait_for_topic(broker.bootstrap, name1, 3)

    # librdkafka: a consumer with allow.auto.create.topics=false sees the error...
    name2 = unique_topic("auto-rdk")
    c = consumer(broker.bootstrap, **{"allow.auto.create.topics": False})
    t = c.list_topics(topic=name2, timeout=10).topics[name2]
    assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    c.close()
    # ...and a producer auto-creates it.
    p = producer(broker.bootstrap)
    p.list_topics(topic=name2, timeout=10)
    wait_for_topic(broker.bootstrap, name2, 3)


def test_auto_create_disabled(make_broker):
    broker = make_broker(**{"auto.create.topics.enable": "false"})
    name = unique_topic("noauto")
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.METADATA, 4, kw.metadata_body([name], 4, allow_auto_create=True))
        assert kw.parse_metadata_v4(r)[3][name].error == kw.UNKNOWN_TOPIC_OR_PARTITION
    time.sleep(0.3)
    assert name not in _topics(admin(broker.bootstrap))
    # Explicit creation still works.
    create_topic(broker.bootstrap, name, partitions=2)
