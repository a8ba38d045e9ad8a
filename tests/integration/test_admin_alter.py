"""Admin APIs after creation: CreatePartitions, IncrementalAlterConfigs, AlterConfigs,
DeleteRecords, DescribeLogDirs, DescribeTopicPartitions; changes are metadata records and
survive a restart."""

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions
from kafka.admin import KafkaAdminClient

import kafka_wire as kw
from helpers import admin, create_topic, produce_all, producer, unique_topic

DYNAMIC_TOPIC_CONFIG = 1


def _configs(bootstrap, topic):
    a = admin(bootstrap)  # kept alive until the future resolves
    res = list(a.describe_configs([ConfigResource("topic", topic)]).values())[0].result()
    return {k: (v.value, v.source) for k, v in res.items()}


def _alter(bootstrap, topic, *entries, validate_only=False):
    a = admin(bootstrap)
    r = ConfigResource("topic", topic, incremental_configs=[ConfigEntry(n, v, incremental_operation=op) for n, v, op in entries])
    return [f.result() for f in a.incremental_alter_configs([r], validate_only=validate_only).values()]


def _error_code(exc: KafkaException) -> int:
    return exc.args[0].code()


def test_create_partitions(broker):
    topic = unique_topic("cp")
    create_topic(broker.bootstrap, topic, partitions=2)
    a = admin(broker.bootstrap)
    [f.result() for f in a.create_partitions([NewPartitions(topic, 4)], validate_only=True).values()]
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 2, "validate_only changed nothing"
    [f.result() for f in a.create_partitions([NewPartitions(topic, 4)]).values()]
    assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == 4
    for count in (3, 4):
        try:
            [f.result() for f in a.create_partitions([NewPartitions(topic, count)]).values()]
            raise AssertionError(f"shrinking/keeping to {count} partitions was accepted")
        except KafkaException as e:
            assert _error_code(e) == 37  # INVALID_PARTITIONS
    # The new partitions take writes and keep them across a restart.
    p = producer(broker.bootstrap)
    produce_all(p, [(None, b"new")], topic, partition=3)
    broker.restart()
    md = admin(broker.bootstrap).list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 4


def test_incremental_and_full_alter_configs(broker):
    topic = unique_topic("ac")
    create_topic(broker.bootstrap, topic)
    _alter(broker.bootstrap, topic, ("retention.ms", "12345", AlterConfigOpType.SET), validate_only=True)
    assert _configs(broker.bootstrap, topic)["retention.ms"][0] == "604800000"
    _alter(broker.bootstrap, topic,
           ("retention.ms", "12345", AlterConfigOpType.SET),
           ("cleanup.policy", "compact", AlterConfigOpType.APPEND))
    c = _configs(broker.bootstrap, topic)
    assert c["retention.ms"] == ("12345", DYNAMIC_TOPIC_CONFIG)
    assert c["cleanup.policy"][0] == "delete,compact"
    _alter(broker.bootstrap, topic, ("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT))
    assert _configs(broker.bootstrap, topic)["cleanup.policy"][0] == "compact"

    for bad in (("retention.ms", "soon", AlterConfigOpType.SET), ("no.such.config", "1", AlterConfigOpType.SET),
                ("retention.ms", "1", AlterConfigOpType.APPEND)):
        try:
            _alter(broker.bootstrap, topic, bad)
            raise AssertionError(f"{bad} was accepted")
        except KafkaException as e:
            assert _error_code(e) == 40, e  # INVALID_CONFIG

    # Persisted: a restart keeps the overrides.
    broker.restart()
    c = _configs(broker.bootstrap, topic)
    assert c["retention.ms"] == ("12345", DYNAMIC_TOPIC_CONFIG)
    assert c["cleanup.policy"][0] == "compact"

    _alter(broker.bootstrap, topic, ("retention.ms", None, AlterConfigOpType.DELETE))
    assert _configs(broker.bootstrap, topic)["retention.ms"][0] == "604800000"

    # AlterConfigs (the older API) replaces the whole set of overrides.
    # Raw AlterConfigs v0 (kafka-python 3 sends IncrementalAlterConfigs for alter_configs).
    body = (kw.array([kw.i8(2) + kw.string(topic) + kw.array([kw.string("max.message.bytes") + kw.string("5000")])])
            + kw.i8(0))
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(33, 0, body)
        r.i32()  # throttle
        results = r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.string()))
    assert results == [(0, None, 2, topic)], results
    c = _configs(broker.bootstrap, topic)
    assert c["max.message.bytes"] == ("5000", DYNAMIC_TOPIC_CONFIG)
    assert c["cleanup.policy"][0] == "delete", "AlterConfigs removed the earlier override"


def test_delete_records_and_log_dirs(broker):
    topic = unique_topic("dr")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    produce_all(p, [(None, b"v%d" % i) for i in range(100)], topic, partition=0)
    a = admin(broker.bootstrap)
    res = a.delete_records([TopicPartition(topic, 0, 40)])
    deleted = list(res.values())[0].result()
    assert deleted.low_watermark == 40
    with kw.Conn(broker.bootstrap) as c:
        r = c.request(kw.LIST_OFFSETS, 1, kw.list_offsets_v1_body(topic, 0, -2))
        assert kw.parse_list_offsets_v1(r)[(topic, 0)][2] == 40
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 10))
        assert kw.parse_fetch_v4(r)[(topic, 0)][0] == 1  # OFFSET_OUT_OF_RANGE
    try:
        list(a.delete_records([TopicPartition(topic, 0, 1000)]).values())[0].result()
        raise AssertionError("deleting past the high watermark was accepted")
    except KafkaException as e:
        assert _error_code(e) == 1
    broker.restart()
    with kw.Conn(broker.bootstrap) as c:
        r = c.request(kw.LIST_OFFSETS, 1, kw.list_offsets_v1_body(topic, 0, -2))
        assert kw.parse_list_offsets_v1(r)[(topic, 0)][2] == 40, "log start offset survives a restart"

    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        dirs = k.describe_log_dirs()
    finally:
        k.close()
    text = str(dirs)
    assert topic in text and str(broker.data_dir.resolve()) in text


def test_offsets_topic_is_internal(broker):
    offsets = "__consumer_offsets"
    with kw.Conn(broker.bootstrap) as c:
        # Asked for by name with auto-creation, it is made by the group coordinator: its own
        # partition count (offsets.topic.num.partitions, 50), not num.partitions.
        brokers, _cluster, _ctrl, topics = kw.parse_metadata_v4(c.request(kw.METADATA, 4, kw.metadata_body([offsets], 4)))
        assert topics[offsets].error == 0
        assert len(topics[offsets].partitions) == 50
        # Clients cannot write to it...
        batch = kw.record_batch([kw.Record(b"forged")])
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(offsets, 0, batch))
        assert kw.parse_produce_v3(r)[(offsets, 0)][0] == 17  # INVALID_TOPIC_EXCEPTION
    # ...or delete it.
    a = admin(broker.bootstrap)
    try:
        list(a.delete_topics([offsets]).values())[0].result()
        raise AssertionError("the offsets topic was deleted")
    except KafkaException as e:
        assert _error_code(e) == 42  # INVALID_REQUEST
    assert offsets in a.list_topics(timeout=10).topics


def test_partitions_beyond_capacity_are_refused_before_anything_is_written(broker):
    """A broker holds 1 open file per partition: a topic that would not fit in the open-file
    limit (or past the 50,000-partition bound) is refused whole, never half-created."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    capacity = 50_000 if hard == resource.RLIM_INFINITY else min(50_000, hard - 2_000)
    topic = unique_topic("huge")
    with kw.Conn(broker.bootstrap) as c:
        r = c.request(19, 2, kw.create_topics_v2_body(topic, capacity + 1))
        assert kw.parse_create_topics_v2(r) == {topic: 44}  # POLICY_VIOLATION
        _b, _c, _ctl, topics = kw.parse_metadata_v4(c.request(kw.METADATA, 4, kw.metadata_body([topic], 4, allow_auto_create=False)))
        assert topics[topic].error == 3, "the refused topic must not exist"
    ok = unique_topic("ok")
    create_topic(broker.bootstrap, ok, partitions=3)


DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3
STATIC_BROKER_CONFIG = 4


def _broker_configs(bootstrap, name="0"):
    a = admin(bootstrap)
    res = list(a.describe_configs([ConfigResource("broker", name)]).values())[0].result()
    return {k: (v.value, v.source, v.is_read_only) for k, v in res.items()}


class AlterError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


def _alter_broker(bootstrap, name, *entries):
    """IncrementalAlterConfigs v0 by hand: confluent-kafka cannot name the cluster-wide
    resource (an empty broker name)."""
    configs = kw.array([kw.string(n) + kw.i8(op.value) + kw.string(v) for n, v, op in entries])
    body = kw.array([kw.i8(4) + kw.string(name) + configs]) + kw.i8(0)
    with kw.Conn(bootstrap) as conn:
        r = conn.request(44, 0, body)
        r.i32()  # throttle
        (code, message, _, _), = r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.string()))
    if code:
        raise AlterError(code, message)


def test_dynamic_broker_configs(make_broker):
    """Topic defaults (log.retention.ms, log.cleanup.policy, ...) change at run time, for
    every broker (empty name) or for one (its id), as Kafka's dynamic broker configs; they
    reach topics without overrides, survive a restart, and the rest stay read-only."""
    # A static setting from the environment (not a flag, which would win over dynamic values).
    b = make_broker(env={"STROM_LOG_SEGMENT_BYTES": "50000000"})
    topic, pinned = unique_topic("dyn"), unique_topic("pin")
    create_topic(b.bootstrap, topic)
    create_topic(b.bootstrap, pinned, config={"retention.ms": "777"})
    c = _broker_configs(b.bootstrap)
    assert c["log.retention.ms"][2] is False and c["listeners"][2] is True
    assert c["log.segment.bytes"][:2] == ("50000000", STATIC_BROKER_CONFIG)

    _alter_broker(b.bootstrap, "", ("log.retention.ms", "3600000", AlterConfigOpType.SET),
                  ("log.segment.bytes", "20000000", AlterConfigOpType.SET))
    _alter_broker(b.bootstrap, "0", ("log.retention.ms", "60000", AlterConfigOpType.SET),
                  ("log.cleanup.policy", "compact", AlterConfigOpType.APPEND))
    c = _broker_configs(b.bootstrap)
    assert c["log.retention.ms"][:2] == ("60000", DYNAMIC_BROKER_CONFIG)
    assert c["log.segment.bytes"][:2] == ("20000000", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert c["log.cleanup.policy"][:2] == ("delete,compact", DYNAMIC_BROKER_CONFIG)
    t = _configs(b.bootstrap, topic)
    assert t["retention.ms"] == ("60000", DYNAMIC_BROKER_CONFIG)
    assert t["segment.bytes"] == ("20000000", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert _configs(b.bootstrap, pinned)["retention.ms"] == ("777", DYNAMIC_TOPIC_CONFIG)

    for name, entry, code in [
        ("0", ("listeners", "PLAINTEXT://:1", AlterConfigOpType.SET), 42),  # INVALID_REQUEST: static
        ("0", ("log.retention.ms", "soon", AlterConfigOpType.SET), 40),  # INVALID_CONFIG
        ("", ("log.segment.bytes", "1", AlterConfigOpType.SET), 40),
        ("7", ("log.retention.ms", "1", AlterConfigOpType.SET), 42),  # another broker's id
    ]:
        try:
            _alter_broker(b.bootstrap, name, entry)
            raise AssertionError(f"{name} {entry} was accepted")
        except AlterError as e:
            assert e.code == code, e

    b.restart()
    c = _broker_configs(b.bootstrap)
    assert c["log.retention.ms"][:2] == ("60000", DYNAMIC_BROKER_CONFIG)
    assert _configs(b.bootstrap, topic)["segment.bytes"] == ("20000000", DYNAMIC_DEFAULT_BROKER_CONFIG)
    # Deleting the broker's own value uncovers the cluster-wide one.
    _alter_broker(b.bootstrap, "0", ("log.retention.ms", None, AlterConfigOpType.DELETE))
    assert _configs(b.bootstrap, topic)["retention.ms"] == ("3600000", DYNAMIC_DEFAULT_BROKER_CONFIG)
