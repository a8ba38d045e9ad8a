"""Hostile admin requests and hostile configs (issue 9, items 1 and 2).

Every count a client sends (partitions, replication factor, replica assignments, configs,
CreatePartitions counts, DeleteRecords lists, metadata topic lists) at i32::MAX, negative
and zero gets Kafka's error code and never takes the broker down; every broker and topic
setting at its extremes is either taken or refused with an error, and nothing refused is
stored: the broker keeps serving and restarts. Raw frames (non-flexible versions), so no
client library smooths the values first.
"""

import binascii
import struct
import time

import pytest

import kafka_wire as kw
from helpers import consumer, create_topic, describe, kcat, kcat_roundtrip, unique_topic

I32_MAX = 0x7FFFFFFF
I32_MIN = -0x80000000
I16_MAX = 0x7FFF
I16_MIN = -0x8000
I64_MAX = 0x7FFFFFFFFFFFFFFF
I64_MIN = -0x8000000000000000

OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42
POLICY_VIOLATION = 44

CREATE_PARTITIONS = 37
DELETE_RECORDS = 21
DESCRIBE_CONFIGS = 32
ALTER_CONFIGS = 33
INCREMENTAL_ALTER_CONFIGS = 44

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SET, DELETE = 0, 1

# The issue's frame: CreateTopics v2, topic "fz-new", num_partitions 0x7fffffff, rf 1,
# validate_only; it made the allocator abort (51,539,607,528 bytes).
ISSUE_FRAME = binascii.unhexlify(
    "0000002c001300020000000900036f6c64000000010006667a2d6e65777fffffff000100000000000000000000138801")

# Values every setting is tried with: the integer extremes, the edges Kafka's floors sit on,
# and garbage.
HOSTILE_VALUES = ["0", "-1", "-2", "1", "16", "60", str(I32_MAX), str(I32_MAX + 1), str(I64_MAX),
                  str(I64_MIN), "9" * 40, "", " ", "garbage", "1e3", "0x10", "NaN", "-inf", "1.5",
                  "delete,compact,shred", "\u00e9", "x" * 5000]


def assert_healthy(broker):
    assert broker.alive(), f"broker died (exit code {broker.proc.poll()}):\n{broker.log_tail()}"
    kcat_roundtrip(broker.bootstrap)
    assert broker.alive()


def conn(broker, timeout=30):
    return kw.Conn(broker.bootstrap, timeout=timeout)


# --- request bodies and response parsers (non-flexible versions) ---------------------------


def create_topic_entry(name, partitions, rf, assignments=None, configs=None):
    assigns = [kw.i32(p) + kw.array([kw.i32(b) for b in brokers]) for p, brokers in (assignments or [])]
    cfgs = [kw.string(k) + kw.string(v) for k, v in (configs or [])]
    return kw.string(name) + kw.i32(partitions) + kw.i16(rf) + kw.array(assigns) + kw.array(cfgs)


def create_topics(c, entries, validate_only=False):
    body = kw.array(entries) + kw.i32(10000) + kw.i8(1 if validate_only else 0)
    r = c.request(kw.CREATE_TOPICS, 2, body)
    r.i32()  # throttle
    return r.array(lambda rr: (rr.string(), rr.i16(), rr.string()))


def create_partitions(c, name, count, assignments=None, validate_only=False):
    assigns = None if assignments is None else [kw.array([kw.i32(b) for b in a]) for a in assignments]
    body = kw.array([kw.string(name) + kw.i32(count) + kw.array(assigns)]) + kw.i32(10000) + kw.i8(
        1 if validate_only else 0)
    r = c.request(CREATE_PARTITIONS, 1, body)
    r.i32()
    return r.array(lambda rr: (rr.string(), rr.i16(), rr.string()))


def delete_records(c, name, partitions):
    body = kw.array([kw.string(name) + kw.array([kw.i32(p) + kw.i64(o) for p, o in partitions])]) + kw.i32(10000)
    r = c.request(DELETE_RECORDS, 1, body)
    r.i32()

    def topic(rr):
        n = rr.string()
        return n, rr.array(lambda p: (p.i32(), p.i64(), p.i16()))

    return r.array(topic)


def incremental_alter(c, resource_type, name, ops, validate_only=False):
    """ops: [(config, op, value)] -> [(error_code, message)] per resource (one here)."""
    entries = [kw.string(k) + kw.i8(op) + kw.string(v) for k, op, v in ops]
    body = kw.array([kw.i8(resource_type) + kw.string(name) + kw.array(entries)]) + kw.i8(1 if validate_only else 0)
    r = c.request(INCREMENTAL_ALTER_CONFIGS, 0, body)
    r.i32()
    return r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.string())[:2])


def alter_configs(c, resources, validate_only=False):
    """resources: [(type, name, [(config, value)])] -> [(error_code, message)]."""
    res = [kw.i8(t) + kw.string(n) + kw.array([kw.string(k) + kw.string(v) for k, v in cfgs])
           for t, n, cfgs in resources]
    r = c.request(ALTER_CONFIGS, 0, kw.array(res) + kw.i8(1 if validate_only else 0))
    r.i32()
    return r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.string())[:2])


def describe_configs(c, resource_type, name):
    """-> (error_code, {config: (value, read_only, source)})"""
    body = kw.array([kw.i8(resource_type) + kw.string(name) + kw.array(None)]) + kw.i8(0)
    r = c.request(DESCRIBE_CONFIGS, 1, body)
    r.i32()

    def entry(rr):
        n, v, ro, src, _sens = rr.string(), rr.string(), rr.i8(), rr.i8(), rr.i8()
        rr.array(lambda s: (s.string(), s.string(), s.i8()))
        return n, (v, bool(ro), src)

    (err, _msg, _t, _n, configs), = r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.string(),
                                                        dict(rr.array(entry) or [])))
    return err, configs


def dynamic_broker_settings(c):
    err, configs = describe_configs(c, RESOURCE_BROKER, "0")
    assert err == 0
    names = sorted(n for n, (_, ro, _) in configs.items() if not ro)
    assert "message.max.bytes" in names and "log.segment.bytes" in names, names
    return names


def topic_settings(c, topic):
    err, configs = describe_configs(c, RESOURCE_TOPIC, topic)
    assert err == 0
    assert "max.message.bytes" in configs, configs
    return sorted(configs)


# --- item 1: counts --------------------------------------------------------------------------


def test_issue_frame_is_refused_and_broker_survives(broker):
    for validate_only in (1, 0):
        frame = bytearray(ISSUE_FRAME)
        frame[-1] = validate_only
        with conn(broker) as c:
            c.send(bytes(frame))
            resp = c.recv_frame()
        assert resp is not None, "broker closed the connection instead of answering"
        r = kw.Reader(resp)
        assert r.i32() == 9
        r.i32()  # throttle
        (name, code, msg), = r.array(lambda rr: (rr.string(), rr.i16(), rr.string()))
        assert (name, code) == ("fz-new", POLICY_VIOLATION), msg
        assert broker.alive(), broker.log_tail()
    with conn(broker) as c:
        r = c.request(kw.METADATA, 4, kw.metadata_body(["fz-new"], 4, allow_auto_create=False))
        assert kw.parse_metadata_v4(r)[3]["fz-new"].error == UNKNOWN_TOPIC_OR_PARTITION, "nothing was created"
    assert_healthy(broker)


@pytest.mark.parametrize("validate_only", [True, False])
def test_create_topics_counts_at_extremes(broker, validate_only):
    t = unique_topic("cnt")
    cases = [
        # (num_partitions, replication_factor, assignments, configs) -> code
        ((I32_MAX, 1, None, None), POLICY_VIOLATION),
        ((1 << 24, 1, None, None), POLICY_VIOLATION),
        ((50_001, 1, None, None), POLICY_VIOLATION),
        ((I32_MAX, I16_MAX, None, None), INVALID_REPLICATION_FACTOR),
        ((0, 1, None, None), INVALID_PARTITIONS),
        ((-2, 1, None, None), INVALID_PARTITIONS),
        ((I32_MIN, 1, None, None), INVALID_PARTITIONS),
        ((1, 0, None, None), INVALID_REPLICATION_FACTOR),
        ((1, -2, None, None), INVALID_REPLICATION_FACTOR),
        ((1, I16_MIN, None, None), INVALID_REPLICATION_FACTOR),
        ((1, I16_MAX, None, None), INVALID_REPLICATION_FACTOR),
        ((-1, -1, [(I32_MAX, [0])], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(-1, [0])], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(0, [I32_MAX])], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(0, [-1])], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(0, [])], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(0, [0] * 10_000)], None), INVALID_REPLICA_ASSIGNMENT),
        ((-1, -1, [(0, [0]), (1, [0, 0])], None), INVALID_REPLICA_ASSIGNMENT),
        ((I32_MAX, 1, [(0, [0])], None), INVALID_REQUEST),
        ((1, 1, None, [(f"no.such.config.{i}", "1") for i in range(20_000)]), INVALID_CONFIG),
        ((1, 1, None, [("max.message.bytes", "16")]), INVALID_CONFIG),
    ]
    with conn(broker) as c:
        for (n, rf, assignments, configs), want in cases:
            (name, code, msg), = create_topics(c, [create_topic_entry(t, n, rf, assignments, configs)], validate_only)
            assert (name, code) == (t, want), f"partitions={n} rf={rf} assignments={str(assignments)[:60]}: {msg}"
        # 20,000 entries of one request, all for the same name: each refused (duplicate), answered once each.
        results = create_topics(c, [create_topic_entry(t, I32_MAX, 1)] * 20_000, validate_only)
        assert len(results) == 20_000 and {code for _, code, _ in results} == {INVALID_REQUEST}
        r = c.request(kw.METADATA, 4, kw.metadata_body([t], 4, allow_auto_create=False))
        assert kw.parse_metadata_v4(r)[3][t].error == UNKNOWN_TOPIC_OR_PARTITION, "nothing was created"
    # An array count claiming i32::MAX topics with only a few bytes behind it.
    with conn(broker) as c:
        c.send(kw.frame(kw.request_header(kw.CREATE_TOPICS, 2, 77) + kw.i32(I32_MAX) + kw.string("x")))
        try:
            resp = c.recv_frame()
        except ConnectionResetError:
            resp = None
        if resp is not None:
            assert struct.unpack(">i", resp[:4])[0] == 77
    assert_healthy(broker)
    broker.restart()
    assert_healthy(broker)


def test_create_partitions_counts_at_extremes(broker):
    t = unique_topic("cp")
    create_topic(broker.bootstrap, t, partitions=2)
    cases = [
        ((I32_MAX, None), POLICY_VIOLATION),
        ((1 << 24, None), POLICY_VIOLATION),
        ((I32_MAX, [[0]]), POLICY_VIOLATION),
        ((0, None), INVALID_PARTITIONS),
        ((-1, None), INVALID_PARTITIONS),
        ((I32_MIN, None), INVALID_PARTITIONS),
        ((2, None), INVALID_PARTITIONS),
        ((4, [[0]]), INVALID_REPLICA_ASSIGNMENT),
        ((3, [[0], [0]]), INVALID_REPLICA_ASSIGNMENT),
        ((3, [[I32_MAX]]), INVALID_REPLICA_ASSIGNMENT),
        ((3, [[-1]]), INVALID_REPLICA_ASSIGNMENT),
        ((3, [[]]), INVALID_REPLICA_ASSIGNMENT),
        ((3, [[0] * 10_000]), INVALID_REPLICA_ASSIGNMENT),
    ]
    with conn(broker) as c:
        for validate_only in (True, False):
            for (count, assignments), want in cases:
                (name, code, msg), = create_partitions(c, t, count, assignments, validate_only)
                assert (name, code) == (t, want), f"count={count} assignments={str(assignments)[:40]}: {msg}"
        (_, code, _), = create_partitions(c, unique_topic("nope"), I32_MAX)
        assert code == UNKNOWN_TOPIC_OR_PARTITION
        r = c.request(kw.METADATA, 4, kw.metadata_body([t], 4, allow_auto_create=False))
        assert len(kw.parse_metadata_v4(r)[3][t].partitions) == 2, "nothing was added"
        (_, code, msg), = create_partitions(c, t, 3)
        assert code == 0, msg
    assert_healthy(broker)


def test_delete_records_hostile_lists(broker):
    t = unique_topic("dr")
    create_topic(broker.bootstrap, t)
    with conn(broker) as c:
        batch = kw.record_batch([kw.Record(b"v%d" % i) for i in range(10)])
        assert kw.parse_produce_v3(c.request(kw.PRODUCE, 3, kw.produce_v3_body(t, 0, batch)))[(t, 0)][0] == 0
        (_, parts), = delete_records(c, t, [(I32_MAX, 1), (-1, 1), (I32_MIN, 1)])
        assert [code for _, _, code in parts] == [UNKNOWN_TOPIC_OR_PARTITION] * 3
        (_, parts), = delete_records(c, t, [(0, I64_MAX), (0, I64_MIN), (0, -2), (0, 11)])
        assert [code for _, _, code in parts] == [OFFSET_OUT_OF_RANGE] * 4
        # One partition listed 50,000 times: answered entry by entry, the log start moves once.
        (_, parts), = delete_records(c, t, [(0, 3)] * 50_000)
        assert len(parts) == 50_000 and {(lw, code) for _, lw, code in parts} == {(3, 0)}
        (_, parts), = delete_records(c, unique_topic("nope"), [(0, 1)] * 1000)
        assert {code for _, _, code in parts} == {UNKNOWN_TOPIC_OR_PARTITION}
    assert_healthy(broker)


def test_delete_topics_named_twice_deletes_nothing(broker):
    """DeleteTopics naming a topic twice: every copy INVALID_REQUEST and the topic kept (Kafka's
    rule; the first copy used to delete it); 20,000 copies are answered too."""
    t = unique_topic("del")
    create_topic(broker.bootstrap, t)
    with conn(broker) as c:
        for names in ([t, t], [t] * 20_000):
            r = c.request(20, 1, kw.array([kw.string(n) for n in names]) + kw.i32(10000))
            r.i32()  # throttle
            results = r.array(lambda rr: (rr.string(), rr.i16()))
            assert len(results) == len(names) and {code for _, code in results} == {INVALID_REQUEST}
        r = c.request(kw.METADATA, 4, kw.metadata_body([t], 4, allow_auto_create=False))
        assert kw.parse_metadata_v4(r)[3][t].error == 0, "the topic was deleted"
    kcat_roundtrip(broker.bootstrap, t)


def test_metadata_repeated_topic_is_answered_once(broker):
    """A topic named 20,000 times in one Metadata request is described once (Kafka takes the
    list as a set); before, the answer multiplied by the partition count (~50 MB here)."""
    t = unique_topic("many")
    create_topic(broker.bootstrap, t, partitions=100)
    with conn(broker, timeout=60) as c:
        for version, names in ((1, [t] * 20_000), (4, [t] * 20_000 + ["never-" + t] * 1000)):
            c._corr += 1
            c.send(kw.frame(kw.request_header(kw.METADATA, version, c._corr)
                            + kw.metadata_body(names, version, allow_auto_create=False)))
            resp = c.recv_frame()
            assert resp is not None and len(resp) < 64 * 1024, f"v{version}: {len(resp or b'')} bytes"
        r = c.request(kw.METADATA, 4, kw.metadata_body([t] * 5, 4, allow_auto_create=False))
        _, _, _, topics = kw.parse_metadata_v4(r)
        assert list(topics) == [t] and len(topics[t].partitions) == 100
    assert_healthy(broker)


def _join_group_v0(c, group, session_timeout_ms, protocols, protocol_type="consumer"):
    body = (kw.string(group) + kw.i32(session_timeout_ms) + kw.string("") + kw.string(protocol_type)
            + kw.array([kw.string(n) + kw.bytes_(m) for n, m in protocols]))
    r = c.request(11, 0, body)
    return r.i16()


def test_join_group_counts_at_extremes(broker):
    """JoinGroup's session timeout at its extremes gets INVALID_SESSION_TIMEOUT, an empty
    protocol list INCONSISTENT_GROUP_PROTOCOL, an empty group id INVALID_GROUP_ID; 150,000
    protocols in one JoinGroup are refused at once (INVALID_REQUEST, more than the 100 a member
    may offer): choosing among them was quadratic and held a worker for minutes."""
    group = "hostile-join-" + unique_topic("g")
    one = [("range", b"")]
    with conn(broker, timeout=60) as c:
        for timeout_ms in (I32_MAX, 0, -1, I32_MIN, 1):
            assert _join_group_v0(c, group, timeout_ms, one) == 26, timeout_ms
        assert _join_group_v0(c, group, 10000, []) == 23
        assert _join_group_v0(c, "", 10000, one) == 24
        started = time.monotonic()
        code = _join_group_v0(c, group + "-many", 10000, [(f"p{i}", b"") for i in range(150_000)])
        took = time.monotonic() - started
        assert code == INVALID_REQUEST, code
        assert took < 10, f"JoinGroup with 150,000 protocols took {took:.1f} s"
        # The bound (100) itself is taken, repeats of a name count once.
        protocols = [(f"p{i}", b"") for i in range(100)] + [("p0", b"")] * 1000
        assert _join_group_v0(c, group + "-100", 10000, protocols) == 0
    assert_healthy(broker)


def _uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _compact_string(s):
    b = s.encode()
    return _uvarint(len(b) + 1) + b


def test_list_groups_long_filter(make_broker):
    """ListGroups v4 with a states filter of 1,000,000 entries over 3,000 groups: answered in
    moments (the filter was searched entry by entry for every group)."""
    b = make_broker(**{"group.initial.rebalance.delay.ms": 0})
    with conn(b, timeout=60) as c:
        # Pipelined JoinGroups, one new group each.
        n_groups = 3000
        for i in range(n_groups):
            body = (kw.string(f"lg-{i}") + kw.i32(6000) + kw.string("") + kw.string("consumer")
                    + kw.array([kw.string("range") + kw.bytes_(b"")]))
            c.send(kw.frame(kw.request_header(11, 0, 10_000 + i) + body))
        for _ in range(n_groups):
            assert c.recv_frame() is not None
        states = b"".join(_compact_string(f"s{i}") for i in range(1_000_000))
        body = _uvarint(1_000_001) + states + _uvarint(0)
        header = kw.i16(16) + kw.i16(4) + kw.i32(99) + kw.string("strom-wire-test") + _uvarint(0)
        started = time.monotonic()
        c.send(kw.frame(header + body))
        resp = c.recv_frame()
        took = time.monotonic() - started
        assert resp is not None and struct.unpack(">i", resp[:4])[0] == 99
        assert took < 15, f"ListGroups took {took:.1f} s"
    assert_healthy(b)


def test_describe_configs_repeated_resource_is_answered_once(broker):
    """The broker resource named 20,000 times (and a topic with 20,000 keys) in one
    DescribeConfigs: each resource described once, not sixty settings per repetition."""
    t = unique_topic("dc")
    create_topic(broker.bootstrap, t)
    keys = kw.array([kw.string("retention.ms")] * 20_000)
    body = kw.array([kw.i8(RESOURCE_BROKER) + kw.string("0") + kw.array(None)] * 20_000
                    + [kw.i8(RESOURCE_TOPIC) + kw.string(t) + keys]) + kw.i8(1)
    with conn(broker, timeout=60) as c:
        c._corr += 1
        c.send(kw.frame(kw.request_header(DESCRIBE_CONFIGS, 1, c._corr) + body))
        resp = c.recv_frame()
        assert resp is not None and len(resp) < 256 * 1024, f"{len(resp or b'')} bytes"
        r = kw.Reader(resp)
        assert r.i32() == c._corr
        r.i32()  # throttle
        assert r.i32() == 2, "one entry per distinct resource"
    assert_healthy(broker)


def test_describe_groups_repeated_group_is_answered_once(broker):
    """A group named 20,000 times in DescribeGroups is described once: its members' metadata
    is not copied into the response for every repetition."""
    t = unique_topic("grp")
    create_topic(broker.bootstrap, t, partitions=4)
    group = "hostile-" + t
    members = [consumer(broker.bootstrap, **{"group.id": group, "session.timeout.ms": 30000}) for _ in range(3)]
    for m in members:
        m.subscribe([t])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(m.assignment() for m in members):
        for m in members:
            m.poll(0.2)
    assert all(m.assignment() for m in members), "group did not form"
    with conn(broker, timeout=60) as c:
        for version in (0, 4):
            c._corr += 1
            body = kw.array([kw.string(group)] * 20_000 + [kw.string("none-" + t)] * 1000)
            if version >= 3:
                body += kw.i8(0)  # include authorized operations
            c.send(kw.frame(kw.request_header(15, version, c._corr) + body))
            resp = c.recv_frame()
            assert resp is not None and len(resp) < 64 * 1024, f"v{version}: {len(resp or b'')} bytes"
            r = kw.Reader(resp)
            assert r.i32() == c._corr
            if version >= 1:
                r.i32()  # throttle
            assert r.i32() == 2, "one entry per distinct group"
    for m in members:
        m.poll(0.1)
    assert_healthy(broker)


# --- item 2: configs ------------------------------------------------------------------------


def _accepted_or_refused(code, msg, what):
    assert code in (0, INVALID_CONFIG, INVALID_REQUEST, POLICY_VIOLATION), f"{what}: code {code} {msg}"


def test_every_broker_setting_at_its_extremes(broker):
    """Each dynamic broker setting at each hostile value, validate-only and for real, for every
    broker and for this one: refused with INVALID_CONFIG/INVALID_REQUEST or taken; whatever was
    taken is deleted again, and then the broker creates topics, serves and restarts."""
    with conn(broker) as c:
        names = dynamic_broker_settings(c)
        # Read-only settings are refused whatever the value.
        for name in ("listeners", "node.id", "log.dirs", "max.connections", "no.such.setting"):
            (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [(name, SET, "1")])
            assert code == INVALID_REQUEST, f"{name}: {code} {msg}"
        taken = set()
        for resource in ("", "0"):
            for name in names:
                for value in HOSTILE_VALUES:
                    for validate_only in (True, False):
                        (code, msg), = incremental_alter(c, RESOURCE_BROKER, resource, [(name, SET, value)],
                                                         validate_only)
                        _accepted_or_refused(code, msg, f"{resource!r} {name}={value[:20]!r}")
                        if code == 0 and not validate_only:
                            taken.add((resource, name))
                assert broker.alive(), f"broker died after {name}:\n{broker.log_tail()}"
        # A refused value left nothing behind: message.max.bytes=16 is refused, not stored.
        (code, _), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "16")])
        assert code == INVALID_CONFIG
        # The topic defaults in force are still a valid configuration: a topic can be made.
        (_, code, msg), = create_topics(c, [create_topic_entry(unique_topic("after"), 1, 1)])
        assert code == 0, msg
    broker.restart()
    with conn(broker) as c:
        for resource, name in sorted(taken):
            (code, msg), = incremental_alter(c, RESOURCE_BROKER, resource, [(name, DELETE, None)])
            assert code == 0, f"delete {resource!r} {name}: {msg}"
        err, configs = describe_configs(c, RESOURCE_BROKER, "0")
        assert err == 0 and configs["message.max.bytes"][0] == "1048588"
    assert_healthy(broker)
    broker.restart()
    assert_healthy(broker)


def test_every_topic_setting_at_its_extremes(broker):
    t = unique_topic("tcfg")
    create_topic(broker.bootstrap, t)
    with conn(broker) as c:
        names = topic_settings(c, t)
        for name in names:
            for value in HOSTILE_VALUES:
                for validate_only in (True, False):
                    (code, msg), = incremental_alter(c, RESOURCE_TOPIC, t, [(name, SET, value)], validate_only)
                    _accepted_or_refused(code, msg, f"{name}={value[:20]!r}")
                    (code, msg), = alter_configs(c, [(RESOURCE_TOPIC, t, [(name, value)])], validate_only)
                    _accepted_or_refused(code, msg, f"AlterConfigs {name}={value[:20]!r}")
                    (_, code, msg), = create_topics(c, [create_topic_entry(unique_topic("tc"), 1, 1, None,
                                                                           [(name, value)])], True)
                    _accepted_or_refused(code, msg, f"CreateTopics {name}={value[:20]!r}")
            assert broker.alive(), f"broker died after {name}:\n{broker.log_tail()}"
        for name, value in [("max.message.bytes", "16"), ("segment.bytes", "14"), ("segment.index.bytes", "4")]:
            (code, msg), = incremental_alter(c, RESOURCE_TOPIC, t, [(name, SET, value)])
            assert code == INVALID_CONFIG, f"{name}={value}: {code} {msg}"
        # Kafka's request checks: a key twice, a null value, a resource twice.
        (code, _), = incremental_alter(c, RESOURCE_TOPIC, t, [("retention.ms", SET, "1"), ("retention.ms", SET, "2")])
        assert code == INVALID_REQUEST
        (code, _), = incremental_alter(c, RESOURCE_TOPIC, t, [("retention.ms", SET, None)])
        assert code == INVALID_REQUEST
        results = alter_configs(c, [(RESOURCE_TOPIC, t, [("retention.ms", "1000")])] * 2)
        assert [code for code, _ in results] == [INVALID_REQUEST] * 2
        # Operations Kafka does not define; APPEND to a setting that is not a list.
        for op in (-128, -1, 4, 127):
            (code, _), = incremental_alter(c, RESOURCE_TOPIC, t, [("retention.ms", op, "1")])
            assert code == INVALID_REQUEST, op
        (code, _), = incremental_alter(c, RESOURCE_TOPIC, t, [("retention.ms", 2, "1")])
        assert code == INVALID_CONFIG
        # Unknown resource types and an unknown topic.
        for ty in (-1, 0, 1, 3, 127):
            (code, _), = incremental_alter(c, ty, t, [("retention.ms", SET, "1")])
            assert code == INVALID_REQUEST, ty
        (code, _), = incremental_alter(c, RESOURCE_TOPIC, "no-" + t, [("retention.ms", SET, "1")])
        assert code == UNKNOWN_TOPIC_OR_PARTITION
        # Back to no overrides, then the topic serves.
        (code, msg), = alter_configs(c, [(RESOURCE_TOPIC, t, [])])
        assert code == 0, msg
    kcat_roundtrip(broker.bootstrap, t)
    broker.restart()
    assert_healthy(broker)
    kcat_roundtrip(broker.bootstrap, t)


def _produce_big(bootstrap, topic, size):
    p = kcat(["-P", "-b", bootstrap, "-t", topic, "-X", "message.max.bytes=2000000"], input=("x" * size) + "\n")
    return p.returncode == 0 and b"error" not in p.stderr.lower(), describe(p)


def test_message_max_bytes_16_is_refused_and_not_stored(make_broker):
    """The issue's scenario: an anonymous IncrementalAlterConfigs sets message.max.bytes=16 for
    every broker. It is refused (INVALID_CONFIG) and not persisted; topics can still be made and
    changed; the broker restarts."""
    b = make_broker()
    t = unique_topic("mmb")
    create_topic(b.bootstrap, t)
    with conn(b) as c:
        for validate_only in (True, False):
            (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "16")], validate_only)
            assert code == INVALID_CONFIG, msg
            (code, msg), = alter_configs(c, [(RESOURCE_BROKER, "", [("message.max.bytes", "16")])], validate_only)
            assert code == INVALID_CONFIG, msg
        err, configs = describe_configs(c, RESOURCE_BROKER, "0")
        assert configs["message.max.bytes"][0] == "1048588"
        (_, code, msg), = create_topics(c, [create_topic_entry(unique_topic("mmb2"), 1, 1)])
        assert code == 0, msg
        (code, msg), = incremental_alter(c, RESOURCE_TOPIC, t, [("retention.ms", SET, "3600000")])
        assert code == 0, msg
    b.restart()
    assert "ignoring a persisted dynamic broker config" not in b.log_text(), "something invalid was stored"
    assert_healthy(b)
    kcat_roundtrip(b.bootstrap, t)


def test_override_wins_over_persisted_dynamic_value(make_broker):
    """A dynamic message.max.bytes=5000 is stored; started with --override
    message.max.bytes=1048588 the broker runs with the flag's value (and says so), and refuses a
    dynamic change of a setting its command line fixes."""
    b = make_broker()
    t = unique_topic("ovr")
    create_topic(b.bootstrap, t)
    with conn(b) as c:
        (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "5000")])
        assert code == 0, msg
    ok, why = _produce_big(b.bootstrap, t, 100_000)
    assert not ok, "a 100 kB record went through a 5000-byte limit"
    b.stop()
    b.overrides["message.max.bytes"] = "1048588"
    b.start()
    text = b.log_text()
    assert "ignoring a persisted dynamic broker config" in text and "message.max.bytes" in text, b.log_tail()
    with conn(b) as c:
        err, configs = describe_configs(c, RESOURCE_BROKER, "0")
        assert configs["message.max.bytes"][0] == "1048588"
        (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "6000")])
        assert code == INVALID_REQUEST, msg
        # Deleting the stored value is allowed.
        (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", DELETE, None)])
        assert code == 0, msg
    ok, why = _produce_big(b.bootstrap, t, 100_000)
    assert ok, why
    assert_healthy(b)


def _patch_metadata_log(data_dir, old: bytes, new: bytes) -> int:
    """Replaces `old` by `new` (same length) inside the metadata log's batches and fixes their
    CRCs: a stored record as an older version could have written it."""
    assert len(old) == len(new)
    patched = 0
    for seg in sorted((data_dir / "__cluster_metadata-0").glob("*.log")):
        data = bytearray(seg.read_bytes())
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack(">i", data[pos + 8:pos + 12])
            end = pos + 12 + length
            body_start = pos + 12 + 4 + 1 + 4  # leader epoch, magic, crc
            chunk = bytes(data[body_start:end])
            if old in chunk:
                chunk = chunk.replace(old, new)
                data[body_start:end] = chunk
                data[pos + 17:pos + 21] = struct.pack(">I", kw.crc32c(chunk))
                patched += 1
            pos = end
        seg.write_bytes(bytes(data))
    return patched


def test_invalid_persisted_configs_are_ignored_at_start(make_broker):
    """A persisted dynamic message.max.bytes=16 and a topic override max.message.bytes=16 (as an
    older Strom stored them) do not stop the start: each is logged (WARN naming it) and ignored,
    the default is used, the topic keeps its other overrides."""
    b = make_broker()
    t = unique_topic("stored")
    create_topic(b.bootstrap, t, config={"max.message.bytes": "1000", "retention.ms": "7777777"})
    with conn(b) as c:
        (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "1000")])
        assert code == 0, msg
    b.stop()
    n = _patch_metadata_log(b.data_dir, b'"name":"message.max.bytes","value":"1000"',
                            b'"name":"message.max.bytes","value":"0016"')
    n += _patch_metadata_log(b.data_dir, b'"name":"max.message.bytes","value":"1000"',
                             b'"name":"max.message.bytes","value":"0016"')
    assert n == 2, "records not found in the metadata log"
    b.start()
    text = b.log_text()
    assert "ignoring a persisted dynamic broker config" in text, b.log_tail()
    assert "ignoring an invalid topic config override" in text, b.log_tail()
    with conn(b) as c:
        err, configs = describe_configs(c, RESOURCE_BROKER, "0")
        assert configs["message.max.bytes"][0] == "1048588"
        (_, code, msg), = create_topics(c, [create_topic_entry(unique_topic("fresh"), 1, 1)])
        assert code == 0, msg
        # The stored value can be replaced by a valid one.
        (code, msg), = incremental_alter(c, RESOURCE_BROKER, "", [("message.max.bytes", SET, "2000000")])
        assert code == 0, msg
        (code, msg), = incremental_alter(c, RESOURCE_TOPIC, t, [("max.message.bytes", DELETE, None)])
        assert code == 0, msg
        err, tc = describe_configs(c, RESOURCE_TOPIC, t)
        assert tc["retention.ms"][0] == "7777777", "the topic's other override was kept"
    kcat_roundtrip(b.bootstrap, t)
    ok, why = _produce_big(b.bootstrap, t, 100_000)
    assert ok, why
    b.restart()
    assert_healthy(b)


# Settings the harness gives itself (where to listen, where the data is) are left alone.
HARNESS_SETTINGS = {"listeners", "advertised.listeners", "admin.http.listener", "log.dirs", "log.dir"}


def _numeric(value):
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def test_every_static_setting_at_its_extremes(make_broker):
    """Each broker setting given at start at its extremes: the broker either refuses to start
    with exit code 2 and a message naming the setting, or starts, creates a topic and stops
    cleanly. No value may make it crash, hang or abort, or be taken at start and fail later
    (static message.max.bytes=0 used to start and then fail every CreateTopics)."""
    probe = make_broker()
    with conn(probe) as c:
        err, configs = describe_configs(c, RESOURCE_BROKER, "0")
    assert err == 0
    probe.stop()
    outcomes = {}
    for name, (default, _ro, _src) in sorted(configs.items()):
        if name in HARNESS_SETTINGS:
            continue
        values = ["0", "-1", str(I64_MAX), "garbage"] if default is None or _numeric(default) else ["", "garbage"]
        for value in values:
            b = make_broker(start=False, **{name: value})
            b.start(wait=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and b.proc.poll() is None and not kw_port_open(b):
                time.sleep(0.05)
            rc = b.proc.poll()
            if rc is not None:
                text = b.log_text()
                assert rc == 2 and name in text, f"{name}={value}: exit {rc}\n{b.log_tail(3000)}"
                assert "panicked" not in text and "memory allocation" not in text, b.log_tail(3000)
                outcomes[(name, value)] = "refused"
                continue
            assert kw_port_open(b), f"{name}={value}: neither started nor exited in 30 s"
            # SIGTERM is handled once start-up is over; wait for that.
            while time.monotonic() < deadline and "strom broker ready" not in b.log_text():
                time.sleep(0.05)
            assert "strom broker ready" in b.log_text(), f"{name}={value}: not ready\n{b.log_tail(3000)}"
            with conn(b, timeout=20) as c:
                err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
                assert err == 0
                # A value the broker started with is one its logs open with: a topic can be made.
                (_, code, msg), = create_topics(c, [create_topic_entry(unique_topic("st"), 1, 1)])
                assert code == 0, f"{name}={value}: CreateTopics answered {code} {msg}"
            assert b.alive(), f"{name}={value}: died after a request\n{b.log_tail(3000)}"
            rc = b.stop(timeout=30)
            assert rc == 0, f"{name}={value}: exit {rc} on SIGTERM\n{b.log_tail(3000)}"
            assert "panicked" not in b.log_text(), b.log_tail(3000)
            outcomes[(name, value)] = "started"
    assert "refused" in outcomes.values() and "started" in outcomes.values()


def kw_port_open(b):
    import socket as _s
    try:
        with _s.create_connection((b.host, b.port), timeout=0.2):
            return True
    except OSError:
        return False
