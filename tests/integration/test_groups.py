"""Consumer groups: the group coordinator with real clients (kcat -G, confluent-kafka,
kafka-python, aiokafka) and with hand-built requests for the error paths.

Brokers run with group.initial.rebalance.delay.ms=0 so groups form without Kafka's 3 s wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from helpers import KCAT, consumer, create_topic, describe, produce_all, producer, unique_topic
from kafka_wire import Conn, Reader, array, bytes_, i8, i16, i32, i64, string

FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
OFFSET_DELETE = 47

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_METADATA_TOO_LARGE = 12
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
GROUP_SUBSCRIBED_TO_TOPIC = 86

# Groups form without Kafka's 3 s initial delay, and consumer-protocol (KIP-848) members are
# fenced after 6 s of silence instead of 45 s.
NO_DELAY = {"group.initial.rebalance.delay.ms": 0, "group.consumer.session.timeout.ms": 6000,
            "group.consumer.heartbeat.interval.ms": 500}


def unique_group(prefix: str = "g") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gbroker(make_broker):
    return make_broker(**NO_DELAY)


# --- raw requests (non-flexible versions) ---------------------------------------


def subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: topics and (null) user data."""
    return i16(0) + array([string(t) for t in topics]) + bytes_(None)


def find_coordinator(conn: Conn, key: str, key_type: int = 0) -> dict:
    r = conn.request(FIND_COORDINATOR, 1, string(key) + i8(key_type))
    r.i32()  # throttle
    return {"error": r.i16(), "message": r.string(), "node": r.i32(), "host": r.string(), "port": r.i32()}


def join_group(conn: Conn, group: str, member_id: str = "", topics=("t",), version: int = 1,
               session_ms: int = 10000, rebalance_ms: int = 10000, protocol: str = "range") -> dict:
    body = (string(group) + i32(session_ms) + i32(rebalance_ms) + string(member_id) + string("consumer")
            + array([string(protocol) + bytes_(subscription(list(topics)))]))
    r = conn.request(JOIN_GROUP, version, body)
    if version >= 2:
        r.i32()
    out = {"error": r.i16(), "generation": r.i32(), "protocol": r.string(), "leader": r.string(),
           "member_id": r.string()}
    out["members"] = r.array(lambda rr: (rr.string(), rr.bytes_()))
    return out


def sync_group(conn: Conn, group: str, generation: int, member_id: str, assignments=()) -> dict:
    body = (string(group) + i32(generation) + string(member_id)
            + array([string(m) + bytes_(a) for m, a in assignments]))
    r = conn.request(SYNC_GROUP, 1, body)
    r.i32()
    return {"error": r.i16(), "assignment": r.bytes_()}


def heartbeat(conn: Conn, group: str, generation: int, member_id: str) -> int:
    r = conn.request(HEARTBEAT, 1, string(group) + i32(generation) + string(member_id))
    r.i32()
    return r.i16()


def leave_group(conn: Conn, group: str, member_id: str) -> int:
    r = conn.request(LEAVE_GROUP, 1, string(group) + string(member_id))
    r.i32()
    return r.i16()


def offset_commit(conn: Conn, group: str, generation: int, member_id: str,
                  offsets: dict[tuple[str, int], tuple[int, str | None]]) -> dict[tuple[str, int], int]:
    by_topic: dict[str, list] = {}
    for (t, p), (o, md) in offsets.items():
        by_topic.setdefault(t, []).append(i32(p) + i64(o) + string(md))
    body = (string(group) + i32(generation) + string(member_id) + i64(-1)
            + array([string(t) + array(ps) for t, ps in by_topic.items()]))
    r = conn.request(OFFSET_COMMIT, 2, body)
    out = {}
    for t, parts in r.array(lambda rr: (rr.string(), rr.array(lambda x: (x.i32(), x.i16())))):
        for p, e in parts:
            out[(t, p)] = e
    return out


def offset_fetch(conn: Conn, group: str, partitions: dict[str, list[int]]) -> dict[tuple[str, int], tuple]:
    body = string(group) + array([string(t) + array([i32(p) for p in ps]) for t, ps in partitions.items()])
    r = conn.request(OFFSET_FETCH, 1, body)
    out = {}
    for t, parts in r.array(lambda rr: (rr.string(), rr.array(lambda x: (x.i32(), x.i64(), x.string(), x.i16())))):
        for p, o, md, e in parts:
            out[(t, p)] = (o, md, e)
    return out


def offset_delete(conn: Conn, group: str, partitions: dict[str, list[int]]) -> tuple[int, dict]:
    body = string(group) + array([string(t) + array([i32(p) for p in ps]) for t, ps in partitions.items()])
    r = conn.request(OFFSET_DELETE, 0, body)
    err = r.i16()
    r.i32()
    out = {}
    for t, parts in r.array(lambda rr: (rr.string(), rr.array(lambda x: (x.i32(), x.i16())))):
        for p, e in parts:
            out[(t, p)] = e
    return err, out


def metadata_is_internal(conn: Conn, topic: str) -> bool:
    """Metadata v1's is_internal flag of `topic`."""
    r = conn.request(3, 1, array([string(topic)]))
    r.array(lambda rr: (rr.i32(), rr.string(), rr.i32(), rr.string()))  # brokers
    r.i32()  # controller

    def part(rr):
        rr.i16(), rr.i32(), rr.i32()
        rr.array(lambda x: x.i32())
        rr.array(lambda x: x.i32())

    topics = r.array(lambda rr: (rr.i16(), rr.string(), rr.i8(), rr.array(part)))
    (err, name, internal, _), = topics
    assert (err, name) == (NONE, topic)
    return internal == 1


def join_and_sync(conn: Conn, group: str, topics=("t",)) -> tuple[str, int]:
    """A one-member group via raw requests (JoinGroup v1: no KIP-394 round trip)."""
    j = join_group(conn, group, topics=topics)
    assert j["error"] == NONE, j
    s = sync_group(conn, group, j["generation"], j["member_id"], [(j["member_id"], b"")])
    assert s["error"] == NONE, s
    return j["member_id"], j["generation"]


def wait_group(bootstrap: str, group: str, members: int, timeout: float = 30) -> object:
    """Polls DescribeGroups until the group is Stable with `members` members."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = a.describe_consumer_groups([group], request_timeout=5)[group].result(10)
            if last.state == ConsumerGroupState.STABLE and len(last.members) == members:
                return last
        except Exception as e:  # noqa: BLE001 - the group may not exist yet
            last = e
        time.sleep(0.2)
    raise AssertionError(f"group {group} not stable with {members} members after {timeout}s: {last}")


# --- protocol-level behaviour -----------------------------------------------------


def test_find_coordinator_creates_the_offsets_topic(make_broker):
    b = make_broker(**NO_DELAY, **{"offsets.topic.num.partitions": 7})
    with Conn(b.bootstrap) as c:
        r = find_coordinator(c, "any-group")
        assert r["error"] == NONE, r
        assert (r["host"], r["port"]) == (b.host, b.port)
        assert r["node"] == 0
        # Transactional ids are coordinated here too (issue 13), from the first look-up.
        r = find_coordinator(c, "txn", key_type=1)
        assert r["error"] == NONE, r
        assert r["node"] == 0
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["__consumer_offsets"].partitions) == 7
    # Marked internal, so a regex subscription does not pick it up; compacted by policy.
    with Conn(b.bootstrap) as c:
        assert metadata_is_internal(c, "__consumer_offsets") is True
    res = ConfigResource(ResourceType.TOPIC, "__consumer_offsets")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["cleanup.policy"].value == "compact"


def test_join_sync_heartbeat_errors_raw(gbroker):
    topic = unique_topic()
    create_topic(gbroker.bootstrap, topic, partitions=2)
    group = unique_group()
    with Conn(gbroker.bootstrap) as c:
        # KIP-394: v4 without a member id gets one and must come back with it.
        j = join_group(c, group, topics=[topic], version=4)
        assert j["error"] == MEMBER_ID_REQUIRED, j
        assert j["member_id"].startswith("strom-wire-test-"), j
        j = join_group(c, group, member_id=j["member_id"], topics=[topic], version=4)
        assert j["error"] == NONE, j
        assert j["leader"] == j["member_id"] and j["generation"] == 1 and j["protocol"] == "range"
        assert [m for m, _ in j["members"]] == [j["member_id"]]
        assert j["members"][0][1] == subscription([topic]), "the leader gets every member's metadata"
        member, gen = j["member_id"], j["generation"]
        # Between JoinGroup and SyncGroup a heartbeat is fine (CompletingRebalance).
        assert heartbeat(c, group, gen, member) == NONE
        s = sync_group(c, group, gen, member, [(member, b"my-assignment")])
        assert s == {"error": NONE, "assignment": b"my-assignment"}
        assert heartbeat(c, group, gen, member) == NONE
        assert heartbeat(c, group, gen + 1, member) == ILLEGAL_GENERATION
        assert heartbeat(c, group, gen, "nobody") == UNKNOWN_MEMBER_ID
        assert heartbeat(c, "no-such-group", gen, member) == UNKNOWN_MEMBER_ID
        assert sync_group(c, group, gen - 1, member)["error"] == ILLEGAL_GENERATION
        # A different protocol type, or protocols nobody shares, are refused.
        bad = join_group(c, group, topics=[topic], protocol="roundrobin")
        assert bad["error"] == INCONSISTENT_GROUP_PROTOCOL, bad
        assert join_group(c, group, session_ms=10)["error"] == INVALID_SESSION_TIMEOUT
        assert join_group(c, unique_group(), member_id="made-up")["error"] == UNKNOWN_MEMBER_ID
        # A second member: the first learns of the rebalance from its heartbeat.
        with Conn(gbroker.bootstrap) as c2:
            c2.sock.settimeout(30)
            result = {}

            def second():
                result["j"] = join_group(c2, group, topics=[topic])

            t = threading.Thread(target=second)
            t.start()
            deadline = time.monotonic() + 10
            while heartbeat(c, group, gen, member) != REBALANCE_IN_PROGRESS:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            j1 = join_group(c, group, member_id=member, topics=[topic])
            t.join(10)
            j2 = result["j"]
            assert j1["error"] == j2["error"] == NONE
            assert j1["generation"] == j2["generation"] == gen + 1
            assert j1["leader"] == member and len(j1["members"]) == 2 and j2["members"] == []
            assert leave_group(c2, group, j2["member_id"]) == NONE
            assert leave_group(c2, group, j2["member_id"]) == UNKNOWN_MEMBER_ID


def test_offset_commit_validation_raw(gbroker):
    topic = unique_topic()
    create_topic(gbroker.bootstrap, topic, partitions=2)
    group = unique_group()
    with Conn(gbroker.bootstrap) as c:
        member, gen = join_and_sync(c, group, [topic])
        tp = (topic, 0)
        assert offset_commit(c, group, gen, member, {tp: (5, "m")}) == {tp: NONE}
        assert offset_commit(c, group, gen, "intruder", {tp: (6, None)}) == {tp: UNKNOWN_MEMBER_ID}
        assert offset_commit(c, group, gen - 1, member, {tp: (6, None)}) == {tp: ILLEGAL_GENERATION}
        assert offset_commit(c, group, -1, "", {tp: (6, None)}) == {tp: UNKNOWN_MEMBER_ID}, \
            "only members commit for a group with members"
        # A commit for a group that does not exist, with a generation, is stale.
        assert offset_commit(c, unique_group(), 3, "x", {tp: (1, None)}) == {tp: ILLEGAL_GENERATION}
        r = offset_commit(c, group, gen, member, {tp: (7, "x" * 4097), (topic, 1): (8, "ok"),
                                                  ("no-such-topic", 0): (1, None), (topic, 9): (1, None)})
        assert r == {tp: OFFSET_METADATA_TOO_LARGE, (topic, 1): NONE,
                     ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION, (topic, 9): UNKNOWN_TOPIC_OR_PARTITION}
        f = offset_fetch(c, group, {topic: [0, 1, 5]})
        assert f == {tp: (5, "m", NONE), (topic, 1): (8, "ok", NONE), (topic, 5): (-1, "", NONE)}
        # Simple commits (no generation, no member) for a group nobody manages.
        simple = unique_group("simple")
        assert offset_commit(c, simple, -1, "", {tp: (42, None)}) == {tp: NONE}
        assert offset_fetch(c, simple, {topic: [0]}) == {tp: (42, "", NONE)}
        assert offset_fetch(c, unique_group(), {topic: [0]}) == {tp: (-1, "", NONE)}
        # OffsetDelete: refused for a topic the members subscribe to; the group, then, empty.
        err, parts = offset_delete(c, group, {topic: [0]})
        assert (err, parts) == (NONE, {tp: GROUP_SUBSCRIBED_TO_TOPIC})
        assert leave_group(c, group, member) == NONE
        err, parts = offset_delete(c, group, {topic: [0]})
        assert (err, parts) == (NONE, {tp: NONE})
        assert offset_fetch(c, group, {topic: [0, 1]}) == {tp: (-1, "", NONE), (topic, 1): (8, "ok", NONE)}
        assert offset_delete(c, unique_group(), {topic: [0]})[0] == GROUP_ID_NOT_FOUND


def test_session_timeout_removes_a_silent_member_raw(gbroker):
    group = unique_group()
    with Conn(gbroker.bootstrap) as c:
        j = join_group(c, group, session_ms=6000, rebalance_ms=6000)
        member, gen = j["member_id"], j["generation"]
        assert sync_group(c, group, gen, member, [(member, b"")])["error"] == NONE
        time.sleep(7.5)
        assert heartbeat(c, group, gen, member) == UNKNOWN_MEMBER_ID
        a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
        d = a.describe_consumer_groups([group], request_timeout=5)[group].result(10)
        assert d.state == ConsumerGroupState.EMPTY and not d.members


# --- flexible (KIP-482) versions: compact strings and arrays, tagged fields ---------


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def cstring(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def carray(items: list[bytes] | None) -> bytes:
    if items is None:
        return uvarint(0)
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = uvarint(0)


def read_uvarint(r: Reader) -> int:
    shift = n = 0
    while True:
        b = r.i8() & 0xFF
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n


def read_cstring(r: Reader) -> str | None:
    n = read_uvarint(r)
    return None if n == 0 else r._take(n - 1).decode()


def read_carray(r: Reader, elem) -> list | None:
    n = read_uvarint(r)
    return None if n == 0 else [elem(r) for _ in range(n - 1)]


def skip_tags(r: Reader):
    for _ in range(read_uvarint(r)):
        read_uvarint(r)
        r._take(read_uvarint(r))


def flex_request(conn: Conn, api_key: int, version: int, body: bytes) -> Reader:
    """Request header v2 (client id, then tags), response header v1 (then tags)."""
    conn._corr += 1
    corr = conn._corr
    header = i16(api_key) + i16(version) + i32(corr) + string("strom-wire-test") + NO_TAGS
    conn.send(i32(len(header) + len(body)) + header + body)
    r = Reader(conn.recv_frame())
    assert r.i32() == corr
    skip_tags(r)
    return r


def test_batched_versions_raw(gbroker):
    topic = unique_topic()
    create_topic(gbroker.bootstrap, topic, partitions=2)
    g1, g2 = unique_group("b1"), unique_group("b2")
    with Conn(gbroker.bootstrap) as c:
        assert offset_commit(c, g1, -1, "", {(topic, 0): (11, "one")}) == {(topic, 0): NONE}
        assert offset_commit(c, g2, -1, "", {(topic, 1): (22, None)}) == {(topic, 1): NONE}

        # FindCoordinator v4: several keys at once.
        r = flex_request(c, FIND_COORDINATOR, 4, i8(0) + carray([cstring(g1), cstring(g2)]) + NO_TAGS)
        r.i32()

        def coordinator(rr):
            out = (read_cstring(rr), rr.i32(), read_cstring(rr), rr.i32(), rr.i16(), read_cstring(rr))
            skip_tags(rr)
            return out

        found = read_carray(r, coordinator)
        assert found == [(g, 0, gbroker.host, gbroker.port, NONE, None) for g in (g1, g2)]

        # OffsetFetch v8: several groups; null topics means every committed partition.
        body = carray([
            cstring(g1) + uvarint(0) + NO_TAGS,
            cstring(g2) + carray([cstring(topic) + carray([i32(0), i32(1)]) + NO_TAGS]) + NO_TAGS,
        ]) + i8(0) + NO_TAGS
        r = flex_request(c, OFFSET_FETCH, 8, body)
        r.i32()

        def partition(rr):
            out = (rr.i32(), rr.i64(), rr.i32(), read_cstring(rr), rr.i16())
            skip_tags(rr)
            return out

        def topic_(rr):
            out = (read_cstring(rr), read_carray(rr, partition))
            skip_tags(rr)
            return out

        def group_(rr):
            out = (read_cstring(rr), read_carray(rr, topic_), rr.i16())
            skip_tags(rr)
            return out

        groups = read_carray(r, group_)
        assert groups == [
            (g1, [(topic, [(0, 11, -1, "one", NONE)])], NONE),
            (g2, [(topic, [(0, -1, -1, "", NONE), (1, 22, -1, "", NONE)])], NONE),
        ]

    # LeaveGroup v3: several members in one request, an error for each.
    group = unique_group("leave")
    with Conn(gbroker.bootstrap) as a, Conn(gbroker.bootstrap) as b:
        b.sock.settimeout(30)
        ja = join_group(a, group)
        result = {}
        t = threading.Thread(target=lambda: result.update(j=join_group(b, group)))
        t.start()
        deadline = time.monotonic() + 10
        while heartbeat(a, group, ja["generation"], ja["member_id"]) != REBALANCE_IN_PROGRESS:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ja = join_group(a, group, member_id=ja["member_id"])
        t.join(10)
        jb = result["j"]
        members = [ja["member_id"], jb["member_id"], "bogus"]
        body = string(group) + array([string(m) + string(None) for m in members])
        r = a.request(LEAVE_GROUP, 3, body)
        r.i32()
        assert r.i16() == NONE
        got = r.array(lambda rr: (rr.string(), rr.string(), rr.i16()))
        assert got == [(members[0], None, NONE), (members[1], None, NONE), ("bogus", None, UNKNOWN_MEMBER_ID)]
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    d = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    assert d.state == ConsumerGroupState.EMPTY


# --- real clients --------------------------------------------------------------------


def _kcat_group(bootstrap: str, group: str, topic: str, out: Path) -> subprocess.Popen:
    f = open(out, "wb")
    return subprocess.Popen(
        [KCAT, "-b", bootstrap, "-G", group, "-q", "-u", "-f", "%p %o %s\\n",
         "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000", topic],
        stdout=f, stderr=subprocess.STDOUT)


def test_kcat_balanced_consumers_split_partitions(gbroker):
    topic = unique_topic("kcat")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    group = unique_group("kcat")
    tmp = gbroker.workdir
    procs = [_kcat_group(gbroker.bootstrap, group, topic, tmp / f"kcat{i}.out") for i in range(3)]
    try:
        desc = wait_group(gbroker.bootstrap, group, 3)
        owners = {}
        for m in desc.members:
            for tp in m.assignment.topic_partitions:
                assert tp.partition not in owners, f"partition {tp.partition} assigned twice: {desc}"
                owners[tp.partition] = m.member_id
        assert sorted(owners) == list(range(6))
        assert sorted(list(owners.values()).count(m.member_id) for m in desc.members) == [2, 2, 2]
        p = producer(gbroker.bootstrap)
        produce_all(p, [(None, f"m{i}".encode(), {"partition": i % 6}) for i in range(600)], topic)
        deadline = time.monotonic() + 30
        outs = []
        while time.monotonic() < deadline:
            outs = [(tmp / f"kcat{i}.out").read_text().split("\n") for i in range(3)]
            if sum(1 for o in outs for line in o if line.count(" ") == 2) >= 600:
                break
            time.sleep(0.2)
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGINT)
        for pr in procs:
            try:
                pr.wait(15)
            except subprocess.TimeoutExpired:
                pr.kill()
    seen = set()
    per_consumer = []
    for o in outs:
        parts = set()
        for line in o:
            fields = line.split(" ")
            if len(fields) != 3:
                continue
            part, off, val = int(fields[0]), int(fields[1]), fields[2]
            assert (part, off) not in seen, f"{part}/{off} consumed twice"
            seen.add((part, off))
            parts.add(part)
        per_consumer.append(parts)
    assert len(seen) == 600, f"consumed {len(seen)} of 600: {[sorted(p) for p in per_consumer]}"
    assert all(len(p) == 2 for p in per_consumer), per_consumer
    assert set().union(*per_consumer) == set(range(6))
    # Clean exits leave the group: nobody is left.
    a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    d = a.describe_consumer_groups([group], request_timeout=5)[group].result(10)
    assert d.state == ConsumerGroupState.EMPTY, d


WORKER = r'''
import signal, sys
from confluent_kafka import Consumer
bootstrap, group, topic, strategy, name = sys.argv[1:6]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
        "enable.auto.commit": False, "auto.offset.reset": "earliest"}
if strategy == "consumer":
    # KIP-848: the broker assigns; session and heartbeat settings are the broker's.
    conf["group.protocol"] = "consumer"
else:
    conf.update({"partition.assignment.strategy": strategy, "session.timeout.ms": 6000,
                 "heartbeat.interval.ms": 500})
c = Consumer(conf)
def show(tag):
    return lambda consumer, parts: print(tag, *[p.partition for p in parts], flush=True)
c.subscribe([topic], on_assign=show("A"), on_revoke=show("V"))
while not stop:
    m = c.poll(0.2)
    if m is None or m.error():
        continue
    print("R", m.partition(), m.offset(), flush=True)
    try:
        c.commit(message=m, asynchronous=False)
        print("C", m.partition(), m.offset(), flush=True)
    except Exception as e:
        print("E", m.partition(), m.offset(), repr(e).replace("\n", " "), flush=True)
c.close()
print("X", flush=True)
'''


def _worker(bootstrap, group, topic, strategy, name, out: Path, script: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), bootstrap, group, topic, strategy, name],
                            stdout=open(out, "wb"), stderr=subprocess.STDOUT)


def _lines(path: Path) -> list[list[str]]:
    # Only whole lines: a worker may be half-way through writing the last one.
    text = path.read_text()
    return [line.split(" ") for line in text[:text.rfind("\n") + 1].splitlines() if line]


def _committed_positions(outs: list[Path]) -> dict[int, int]:
    """Per partition, the last offset any worker committed."""
    last: dict[int, int] = {}
    for o in outs:
        for x in _lines(o):
            if x[0] == "C":
                last[int(x[1])] = max(last.get(int(x[1]), -1), int(x[2]))
    return last


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky", "consumer"])
def test_failover_clean_close_and_sigkill_commits_each_message_once(gbroker, strategy):
    """Three members share 6 partitions; one closes cleanly, one is SIGKILLed; the survivor
    takes over and every message is committed exactly once: nobody re-consumes a partition
    from before its last committed offset."""
    topic = unique_topic("fo")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    group = unique_group("fo")
    tmp = gbroker.workdir
    script = tmp / "worker.py"
    script.write_text(WORKER)
    outs = [tmp / f"w{i}.out" for i in range(3)]
    workers = [_worker(gbroker.bootstrap, group, topic, strategy, f"w{i}", outs[i], script) for i in range(3)]
    total = 1200
    try:
        wait_group(gbroker.bootstrap, group, 3)
        p = producer(gbroker.bootstrap, **{"linger.ms": 0})
        done = threading.Event()

        def produce():
            for i in range(total):
                p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
                p.poll(0)
                time.sleep(0.006)
            p.flush(30)
            done.set()

        t = threading.Thread(target=produce)
        t.start()
        time.sleep(2.5)
        workers[0].send_signal(signal.SIGTERM)  # clean close: LeaveGroup
        time.sleep(2.0)
        workers[1].kill()  # SIGKILL: found out by the session timeout
        t.join(60)
        assert done.is_set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _committed_positions(outs) == {p: total // 6 - 1 for p in range(6)}:
                break
            time.sleep(0.25)
        assert workers[0].wait(20) == 0
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(20)
            except subprocess.TimeoutExpired:
                w.kill()
    logs = [_lines(o) for o in outs]
    commits = [(int(x[1]), int(x[2])) for lg in logs for x in lg if x[0] == "C"]
    dupes = {c for c in commits if commits.count(c) > 1}
    assert not dupes, f"committed twice: {sorted(dupes)[:10]}"
    # A commit that failed mid-rebalance is covered by the next one on its partition.
    assert _committed_positions(outs) == {p: total // 6 - 1 for p in range(6)}
    # The killed worker may have read a message it never committed; nobody else re-reads
    # anything that was committed.
    reads = [(int(x[1]), int(x[2])) for lg in logs for x in lg if x[0] == "R"]
    killed_uncommitted = ({(int(x[1]), int(x[2])) for x in logs[1] if x[0] == "R"}
                          - {(int(x[1]), int(x[2])) for x in logs[1] if x[0] == "C"})
    twice = {r for r in reads if reads.count(r) > 1}
    failed_commits = {(int(x[1]), int(x[2])) for lg in logs for x in lg if x[0] == "E"}
    assert twice <= killed_uncommitted | failed_commits, \
        f"re-read after a commit: {sorted(twice - killed_uncommitted - failed_commits)[:10]}"
    assert logs[0][-1] == ["X"], "the cleanly closed worker finished"
    # The survivor came to own every partition (until its own close revoked them).
    owned, states = set(), []
    for x in logs[2]:
        if x[0] == "A":
            owned |= {int(p) for p in x[1:]}
        elif x[0] == "V":
            owned -= {int(p) for p in x[1:]}
        states.append(sorted(owned))
    assert list(range(6)) in states, f"survivor assignments over time: {states[-5:]}"


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_commit_restart_resume_at_committed_offsets(make_broker, protocol):
    b = make_broker(**NO_DELAY)
    topic = unique_topic("resume")
    create_topic(b.bootstrap, topic, partitions=3)
    group = unique_group("resume")
    p = producer(b.bootstrap)
    produce_all(p, [(None, f"v{i}".encode(), {"partition": i % 3}) for i in range(300)], topic)
    c = consumer(b.bootstrap, **{"group.id": group, "enable.partition.eof": False, "group.protocol": protocol})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 120 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) >= 120
    last = {}
    for m in got[:120]:
        last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
    commit = [TopicPartition(topic, part, off + 1) for part, off in last.items()]
    c.commit(offsets=commit, asynchronous=False)
    before = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, i) for i in range(3)], timeout=10)}
    c.close()
    assert before == {tp.partition: tp.offset for tp in commit} | {i: -1001 for i in range(3) if i not in last}

    b.kill9()  # a crash: the commits were acknowledged, so they were durable
    b.start()
    c2 = consumer(b.bootstrap, **{"group.id": group, "enable.partition.eof": False, "group.protocol": protocol})
    try:
        after = {tp.partition: tp.offset for tp in c2.committed([TopicPartition(topic, i) for i in range(3)], timeout=10)}
        assert after == before
        c2.subscribe([topic])
        first = {}
        count = 0
        deadline = time.monotonic() + 30
        while count < 300 - sum(off for off in before.values() if off >= 0) and time.monotonic() < deadline:
            m = c2.poll(0.5)
            if m is None or m.error():
                continue
            count += 1
            first.setdefault(m.partition(), m.offset())
        assert count == 300 - sum(off for off in before.values() if off >= 0)
        for part in range(3):
            expected = before[part] if before[part] >= 0 else 0
            if expected < 100:  # a partition consumed to its end has nothing to resume
                assert first.get(part) == expected, \
                    f"partition {part} resumed at {first.get(part)}; committed {before}"
    finally:
        c2.close()
    # The group survived the restart, and a clean restart as well.
    b.restart()
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    groups = a.list_consumer_groups(request_timeout=10).result(15)
    assert group in {g.group_id for g in groups.valid}


def test_generation_survives_a_restart_raw(make_broker):
    b = make_broker(**NO_DELAY)
    group = unique_group()
    with Conn(b.bootstrap) as c:
        member, gen = join_and_sync(c, group)
        assert leave_group(c, group, member) == NONE  # empty: generation gen + 1 is written
    b.restart()
    with Conn(b.bootstrap) as c:
        j = join_group(c, group)
        assert j["error"] == NONE
        assert j["generation"] == gen + 2, j


def test_member_survives_a_broker_restart_raw(make_broker):
    """As in Kafka, a restarted coordinator loads the members: a live member carries on
    with its generation; its session restarts with the load."""
    b = make_broker(**NO_DELAY)
    group = unique_group()
    with Conn(b.bootstrap) as c:
        j = join_group(c, group, session_ms=30000)
        member, gen = j["member_id"], j["generation"]
        assert sync_group(c, group, gen, member, [(member, b"keep")])["error"] == NONE
    b.restart()
    with Conn(b.bootstrap) as c:
        assert heartbeat(c, group, gen, member) == NONE
        assert sync_group(c, group, gen, member) == {"error": NONE, "assignment": b"keep"}


def test_list_describe_delete_groups(gbroker):
    topic = unique_topic()
    create_topic(gbroker.bootstrap, topic, partitions=2)
    group = unique_group("adm")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "client.id": "describe-me"})
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        d = wait_group(gbroker.bootstrap, group, 1)
        assert not d.is_simple_consumer_group and d.partition_assignor == "range"
        assert d.members[0].client_id == "describe-me"
        assert d.members[0].host.lstrip("/") in ("127.0.0.1", "localhost")
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1]
        a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
        listed = a.list_consumer_groups(request_timeout=10).result(15).valid
        assert {(g.group_id, g.state) for g in listed if g.group_id == group} == {(group, ConsumerGroupState.STABLE)}
        stable_only = a.list_consumer_groups(request_timeout=10, states={ConsumerGroupState.EMPTY}).result(15).valid
        assert group not in {g.group_id for g in stable_only}
        with pytest.raises(Exception) as e:
            a.delete_consumer_groups([group], request_timeout=10)[group].result(15)
        assert "NON_EMPTY_GROUP" in str(e.value) or "not empty" in str(e.value).lower(), e.value
    finally:
        c.close()
    a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    a.delete_consumer_groups([group], request_timeout=10)[group].result(15)
    with Conn(gbroker.bootstrap) as conn:
        assert offset_fetch(conn, group, {topic: [0]}) == {(topic, 0): (-1, "", NONE)}
    with pytest.raises(Exception) as e:
        a.delete_consumer_groups([group], request_timeout=10)[group].result(15)
    assert "GROUP_ID_NOT_FOUND" in str(e.value) or "does not exist" in str(e.value).lower(), e.value


def test_static_member_restart_keeps_assignment_without_rebalance(gbroker):
    topic = unique_topic("static")
    create_topic(gbroker.bootstrap, topic, partitions=4)
    group = unique_group("static")
    assigned = {"a": [], "b": []}

    def make(name):
        c = consumer(gbroker.bootstrap, **{"group.id": group, "group.instance.id": name, "client.id": name,
                                             "session.timeout.ms": 30000})
        c.subscribe([topic], on_assign=lambda _c, parts: assigned[name].append(sorted(p.partition for p in parts)))
        return c

    def pump(cs, until, timeout=30):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            for c in cs:
                c.poll(0.1)
        assert until()

    a, b = make("a"), make("b")
    pump([a, b], lambda: a.assignment() and b.assignment()
         and len(a.assignment()) + len(b.assignment()) == 4)
    d = wait_group(gbroker.bootstrap, group, 2)
    first_a = sorted(tp.partition for tp in a.assignment())
    b_assigns = len(assigned["b"])
    a.close()  # a static member does not send LeaveGroup
    d2 = wait_group(gbroker.bootstrap, group, 2)
    assert {m.group_instance_id for m in d2.members} == {"a", "b"}
    a2 = make("a")
    try:
        pump([a2, b], lambda: a2.assignment())
        for _ in range(20):
            b.poll(0.1)
        assert sorted(tp.partition for tp in a2.assignment()) == first_a
        assert len(assigned["b"]) == b_assigns, f"b saw a rebalance: {assigned['b']}"
        d3 = wait_group(gbroker.bootstrap, group, 2)
        old_ids = {m.member_id for m in d.members}
        assert len({m.member_id for m in d3.members} - old_ids) == 1, "a got a new member id"
    finally:
        a2.close()
        b.close()


def test_kafka_python_group_roundtrip(gbroker):
    from kafka import KafkaConsumer, KafkaProducer

    topic = unique_topic("kp")
    create_topic(gbroker.bootstrap, topic, partitions=3)
    group = unique_group("kp")
    p = KafkaProducer(bootstrap_servers=gbroker.bootstrap, acks="all")
    for i in range(90):
        p.send(topic, value=f"a{i}".encode(), partition=i % 3)
    p.flush(30)

    def drain(expected: int) -> list:
        c = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          session_timeout_ms=10000, heartbeat_interval_ms=1000)
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < expected and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=500).values():
                    got.extend(r.value.decode() for r in recs)
            c.commit()
            # Nothing more arrives.
            for recs in c.poll(timeout_ms=1000).values():
                got.extend(r.value.decode() for r in recs)
        finally:
            c.close()
        return got

    first = drain(90)
    assert sorted(first) == sorted(f"a{i}" for i in range(90))
    for i in range(30):
        p.send(topic, value=f"b{i}".encode(), partition=i % 3)
    p.flush(30)
    p.close()
    second = drain(30)
    assert sorted(second) == sorted(f"b{i}" for i in range(30)), "resumed at the committed offsets"


def test_aiokafka_group_roundtrip(gbroker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = unique_topic("aio")
    create_topic(gbroker.bootstrap, topic, partitions=2)
    group = unique_group("aio")

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=gbroker.bootstrap)
        await p.start()
        try:
            for i in range(40):
                await p.send_and_wait(topic, f"x{i}".encode(), partition=i % 2)
        finally:
            await p.stop()

        async def drain(expected):
            c = AIOKafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            got = []
            try:
                # With nothing expected, listen a while to see that nothing comes.
                deadline = time.monotonic() + (30 if expected else 3)
                while (len(got) < expected or not expected) and time.monotonic() < deadline:
                    batches = await c.getmany(timeout_ms=500)
                    for recs in batches.values():
                        got.extend(r.value.decode() for r in recs)
                if got:
                    await c.commit()
                committed = {tp.partition: await c.committed(tp) for tp in c.assignment()}
            finally:
                await c.stop()
            return got, committed

        got, committed = await drain(40)
        assert sorted(got) == sorted(f"x{i}" for i in range(40))
        assert committed == {0: 20, 1: 20}
        got2, _ = await drain(0)
        assert got2 == []

    asyncio.run(run())


def test_join_storm_does_not_stall_other_groups(gbroker):
    """Members of one group join and leave in a loop; another group's heartbeats stay fast."""
    calm = unique_group("calm")
    stormy = unique_group("storm")
    stop = threading.Event()
    errors = []

    def storm():
        try:
            with Conn(gbroker.bootstrap) as s:
                while not stop.is_set():
                    j = join_group(s, stormy, session_ms=6000, rebalance_ms=6000)
                    if j["error"] == NONE:
                        leave_group(s, stormy, j["member_id"])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    with Conn(gbroker.bootstrap) as c:
        member, gen = join_and_sync(c, calm)
        threads = [threading.Thread(target=storm) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            worst = 0.0
            for _ in range(200):
                t0 = time.monotonic()
                assert heartbeat(c, calm, gen, member) == NONE
                worst = max(worst, time.monotonic() - t0)
        finally:
            stop.set()
            for t in threads:
                t.join(20)
    assert not errors, errors
    assert worst < 0.5, f"slowest heartbeat {worst * 1000:.0f} ms"


def test_deleting_a_topic_removes_its_committed_offsets(make_broker):
    """As Kafka's onPartitionsDeleted: offsets of a deleted topic go (durably), so the topic
    created again under its name starts without them; other topics' offsets stay."""
    b = make_broker(**NO_DELAY)
    gone, kept = unique_topic("gone"), unique_topic("kept")
    for t in (gone, kept):
        create_topic(b.bootstrap, t, partitions=2)
    group = unique_group("del")
    with Conn(b.bootstrap) as c:
        assert set(offset_commit(c, group, -1, "", {(gone, 0): (5, None), (gone, 1): (6, None),
                                                   (kept, 0): (7, None)}).values()) == {NONE}
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.delete_topics([gone], operation_timeout=15, request_timeout=15)[gone].result(20)
    expected = {(gone, 0): -1, (gone, 1): -1, (kept, 0): 7}
    with Conn(b.bootstrap) as c:
        got = offset_fetch(c, group, {gone: [0, 1], kept: [0]})
        assert {k: v[0] for k, v in got.items()} == expected
    b.restart()
    with Conn(b.bootstrap) as c:
        got = offset_fetch(c, group, {gone: [0, 1], kept: [0]})
        assert {k: v[0] for k, v in got.items()} == expected
