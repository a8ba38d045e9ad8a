"""The next-generation consumer group protocol (KIP-848): ConsumerGroupHeartbeat and
ConsumerGroupDescribe with the broker assigning partitions, driven by confluent-kafka
(librdkafka 2.12+) with group.protocol=consumer and by hand-built requests for the error
paths. Failover and commit/restart/resume with this protocol are in test_groups.py
(parametrized with the classic protocols).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient

from helpers import consumer, create_topic, produce_all, producer, unique_topic
from kafka_wire import Conn, Reader, i16, i32, i64
from test_groups import (GROUP_ID_NOT_FOUND, NO_DELAY, NO_TAGS, UNKNOWN_MEMBER_ID, carray, cstring,
                         flex_request, join_group, read_carray, read_cstring, skip_tags, unique_group)

CONSUMER_GROUP_HEARTBEAT = 68
CONSUMER_GROUP_DESCRIBE = 69
OFFSET_COMMIT = 8

NONE = 0
INVALID_REQUEST = 42
FENCED_MEMBER_EPOCH = 110
UNSUPPORTED_ASSIGNOR = 112
STALE_MEMBER_EPOCH = 113


@pytest.fixture
def gbroker(make_broker):
    return make_broker(**NO_DELAY)


def wait_consumer_group(bootstrap: str, group: str, members: int, timeout: float = 30):
    """Polls describe_consumer_groups until the group is Stable with `members` members that
    each have an assignment."""
    a = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = a.describe_consumer_groups([group], request_timeout=5)[group].result(10)
            if (last.state == ConsumerGroupState.STABLE and len(last.members) == members
                    and all(m.assignment.topic_partitions for m in last.members)):
                return last
        except Exception as e:  # noqa: BLE001 - the group may not exist yet
            last = e
        time.sleep(0.1)
    raise AssertionError(f"group {group} not stable with {members} members after {timeout}s: {last}")


def poll_in_background(consumers, stop: threading.Event, got: dict):
    def run(i, c):
        while not stop.is_set():
            m = c.poll(0.1)
            if m is not None and not m.error():
                got.setdefault(i, []).append((m.partition(), m.offset()))
    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(consumers)]
    for t in threads:
        t.start()
    return threads


def test_three_members_split_partitions_then_take_over(gbroker):
    topic = unique_topic("kip848")
    create_topic(gbroker.bootstrap, topic, partitions=6)
    p = producer(gbroker.bootstrap)
    produce_all(p, [(None, f"v{i}".encode(), {"partition": i % 6}) for i in range(600)], topic)
    group = unique_group("kip848")
    conf = {"group.id": group, "group.protocol": "consumer", "enable.partition.eof": False}
    started = time.monotonic()
    consumers = [consumer(gbroker.bootstrap, **conf, **{"client.id": f"m{i}"}) for i in range(3)]
    for c in consumers:
        c.subscribe([topic])
    stop = threading.Event()
    got: dict = {}
    threads = poll_in_background(consumers, stop, got)
    try:
        d = wait_consumer_group(gbroker.bootstrap, group, 3)
        print(f"3-member consumer-protocol group stable after {time.monotonic() - started:.2f}s")
        assert d.type == ConsumerGroupType.CONSUMER
        owned = [{tp.partition for tp in m.assignment.topic_partitions} for m in d.members]
        assert sorted(len(o) for o in owned) == [2, 2, 2], owned
        assert set().union(*owned) == set(range(6))
        # Everything is read once, by the partition's owner.
        deadline = time.monotonic() + 30
        while sum(len(v) for v in got.values()) < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
        reads = [r for v in got.values() for r in v]
        assert len(reads) == 600 and len(set(reads)) == 600

        # One member leaves: the other two take over its partitions.
        stop.set()
        for t in threads:
            t.join(5)
        consumers[0].close()
        stop.clear()
        threads = poll_in_background(consumers[1:], stop, got)
        d = wait_consumer_group(gbroker.bootstrap, group, 2)
        owned = [{tp.partition for tp in m.assignment.topic_partitions} for m in d.members]
        assert sorted(len(o) for o in owned) == [3, 3] and set().union(*owned) == set(range(6)), owned
        assert d.partition_assignor == "uniform"
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for c in consumers[1:]:
            c.close()
    # ListGroups shows it as a consumer group; both members left, so it is Empty.
    a = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    listed = {g.group_id: g for g in a.list_consumer_groups(request_timeout=10).result(15).valid}
    assert listed[group].type == ConsumerGroupType.CONSUMER
    assert listed[group].state == ConsumerGroupState.EMPTY


def test_range_assignor_keeps_co_partitioned_topics_together(gbroker):
    t1, t2 = unique_topic("ra"), unique_topic("rb")
    for t in (t1, t2):
        create_topic(gbroker.bootstrap, t, partitions=4)
    group = unique_group("range")
    conf = {"group.id": group, "group.protocol": "consumer", "group.remote.assignor": "range"}
    consumers = [consumer(gbroker.bootstrap, **conf) for _ in range(2)]
    for c in consumers:
        c.subscribe([t1, t2])
    stop = threading.Event()
    threads = poll_in_background(consumers, stop, {})
    try:
        d = wait_consumer_group(gbroker.bootstrap, group, 2)
        assert d.partition_assignor == "range"
        for m in d.members:
            by_topic: dict = {}
            for tp in m.assignment.topic_partitions:
                by_topic.setdefault(tp.topic, set()).add(tp.partition)
            assert by_topic[t1] == by_topic[t2] and len(by_topic[t1]) == 2, by_topic
            assert by_topic[t1] in ({0, 1}, {2, 3})
    finally:
        stop.set()
        for t in threads:
            t.join(5)


# --- hand-built requests ----------------------------------------------------------


def heartbeat(conn: Conn, group: str, member: str, epoch: int, topics=None, owned=None,
              rebalance_ms: int = -1, assignor: str | None = None, instance: str | None = None) -> dict:
    """ConsumerGroupHeartbeat v1. `owned` maps a 16-byte topic id to partitions."""
    owned_bytes = None if owned is None else [
        tid + carray([i32(p) for p in parts]) + NO_TAGS for tid, parts in owned.items()]
    body = (cstring(group) + cstring(member) + i32(epoch) + cstring(instance) + cstring(None)
            + i32(rebalance_ms) + carray(None if topics is None else [cstring(t) for t in topics])
            + cstring(None) + cstring(assignor) + carray(owned_bytes) + NO_TAGS)
    r = flex_request(conn, CONSUMER_GROUP_HEARTBEAT, 1, body)
    out = {"throttle": r.i32(), "error": r.i16(), "message": read_cstring(r), "member_id": read_cstring(r),
           "epoch": r.i32(), "interval": r.i32(), "assignment": None}
    if r.i8() == 1:
        def tp(rr: Reader):
            tid = rr._take(16)
            parts = read_carray(rr, lambda x: x.i32())
            skip_tags(rr)
            return tid, parts
        out["assignment"] = dict(read_carray(r, tp))
        skip_tags(r)
    skip_tags(r)
    return out


def join(conn: Conn, group: str, member: str, topic: str, **kw) -> dict:
    return heartbeat(conn, group, member, 0, topics=[topic], owned={}, rebalance_ms=30000, **kw)


def commit_v9(conn: Conn, group: str, member: str, epoch: int, topic: str, partition: int, offset: int) -> int:
    body = (cstring(group) + i32(epoch) + cstring(member) + cstring(None)
            + carray([cstring(topic) + carray([i32(partition) + i64(offset) + i32(-1) + cstring(None) + NO_TAGS])
                      + NO_TAGS]) + NO_TAGS)
    r = flex_request(conn, OFFSET_COMMIT, 9, body)
    r.i32()

    def part(rr):
        out = (rr.i32(), rr.i16())
        skip_tags(rr)
        return out

    def topic_(rr):
        out = (read_cstring(rr), read_carray(rr, part))
        skip_tags(rr)
        return out

    topics = read_carray(r, topic_)
    return topics[0][1][0][1]


def test_heartbeat_errors_and_commit_epochs_raw(gbroker):
    topic = unique_topic("raw848")
    create_topic(gbroker.bootstrap, topic, partitions=2)
    group = unique_group("raw848")
    member = uuid.uuid4().hex
    with Conn(gbroker.bootstrap) as c:
        r = join(c, group, member, topic)
        assert r["error"] == NONE, r
        assert r["epoch"] == 1 and r["member_id"] == member and r["interval"] == 500
        (tid, parts), = r["assignment"].items()
        assert sorted(parts) == [0, 1]
        # A plain heartbeat: nothing changed, no assignment in the answer.
        r = heartbeat(c, group, member, 1, owned={tid: [0, 1]})
        assert (r["error"], r["epoch"], r["assignment"]) == (NONE, 1, None)
        # An epoch from the future is fenced; an unknown member is unknown.
        assert heartbeat(c, group, member, 7)["error"] == FENCED_MEMBER_EPOCH
        assert heartbeat(c, group, "nobody", 1)["error"] == UNKNOWN_MEMBER_ID
        # Joining without a subscription, or with an assignor the broker lacks.
        bad = heartbeat(c, group, "x", 0, topics=None, owned={}, rebalance_ms=1000)
        assert bad["error"] == INVALID_REQUEST and "SubscribedTopicNames" in bad["message"]
        assert join(c, group, "y", topic, assignor="sticky")["error"] == UNSUPPORTED_ASSIGNOR
        # Commits carry the member epoch (OffsetCommit v9).
        assert commit_v9(c, group, member, 1, topic, 0, 5) == NONE
        assert commit_v9(c, group, member, 0, topic, 0, 6) == STALE_MEMBER_EPOCH
        assert commit_v9(c, group, "nobody", 1, topic, 0, 6) == UNKNOWN_MEMBER_ID
        # A classic JoinGroup cannot enter a group of the other protocol.
        assert join_group(c, group)["error"] == GROUP_ID_NOT_FOUND
        # ConsumerGroupDescribe v0.
        r = flex_request(c, CONSUMER_GROUP_DESCRIBE, 0, carray([cstring(group), cstring("missing")]) + b"\x00" + NO_TAGS)
        r.i32()

        def tps(rr):
            out = (rr._take(16), read_cstring(rr), read_carray(rr, lambda x: x.i32()))
            skip_tags(rr)
            return out

        def assignment(rr):
            out = read_carray(rr, tps)
            skip_tags(rr)
            return out

        def member_(rr):
            out = {"id": read_cstring(rr), "instance": read_cstring(rr), "rack": read_cstring(rr),
                   "epoch": rr.i32(), "client": read_cstring(rr), "host": read_cstring(rr),
                   "topics": read_carray(rr, read_cstring), "regex": read_cstring(rr),
                   "assignment": assignment(rr), "target": assignment(rr)}
            skip_tags(rr)
            return out

        def group_(rr):
            out = {"error": rr.i16(), "message": read_cstring(rr), "id": read_cstring(rr),
                   "state": read_cstring(rr), "epoch": rr.i32(), "assignment_epoch": rr.i32(),
                   "assignor": read_cstring(rr), "members": read_carray(rr, member_), "ops": rr.i32()}
            skip_tags(rr)
            return out

        described = read_carray(r, group_)
        g, missing = described
        assert (g["error"], g["state"], g["epoch"], g["assignment_epoch"], g["assignor"]) == \
            (NONE, "Stable", 1, 1, "uniform")
        (m,) = g["members"]
        assert m["id"] == member and m["topics"] == [topic] and m["epoch"] == 1
        assert m["assignment"] == [(tid, topic, [0, 1])] == m["target"]
        assert missing["error"] == GROUP_ID_NOT_FOUND
        # Leaving empties the group; a classic member may then take the group id over.
        r = heartbeat(c, group, member, -1)
        assert (r["error"], r["epoch"]) == (NONE, -1)
    with Conn(gbroker.bootstrap) as c:
        assert join_group(c, group)["error"] in (NONE, 79)  # 79: MEMBER_ID_REQUIRED, the usual first step


def test_consumer_heartbeat_to_a_classic_group_with_members_raw(gbroker):
    group = unique_group("mixed")
    with Conn(gbroker.bootstrap) as c:
        j = join_group(c, group, version=3)
        assert j["error"] == NONE
        r = join(c, group, uuid.uuid4().hex, "t")
        assert r["error"] == GROUP_ID_NOT_FOUND and "not a consumer group" in r["message"]
        # A member of a group the broker does not know (say, after a restart) is told it is
        # unknown, which makes clients rejoin rather than give up.
        r = heartbeat(c, unique_group("gone"), uuid.uuid4().hex, 3)
        assert r["error"] == UNKNOWN_MEMBER_ID


def test_regex_subscription_is_resolved_by_the_broker(gbroker):
    """With the consumer protocol librdkafka sends a `^` subscription as SubscribedTopicRegex;
    the broker matches whole topic names, including topics created later."""
    prefix = f"rx{uuid.uuid4().hex[:6]}"
    for name, parts in ((f"{prefix}-a", 2), (f"{prefix}-b", 1), (f"other{prefix}", 1)):
        create_topic(gbroker.bootstrap, name, partitions=parts)
    group = unique_group("regex")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": "consumer"})
    c.subscribe([f"^{prefix}-.*"])
    stop = threading.Event()
    threads = poll_in_background([c], stop, {})
    try:
        def owned():
            d = wait_consumer_group(gbroker.bootstrap, group, 1)
            return {(tp.topic, tp.partition) for tp in d.members[0].assignment.topic_partitions}

        assert owned() == {(f"{prefix}-a", 0), (f"{prefix}-a", 1), (f"{prefix}-b", 0)}
        create_topic(gbroker.bootstrap, f"{prefix}-c", partitions=1)
        deadline = time.monotonic() + 30
        while (f"{prefix}-c", 0) not in owned() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (f"{prefix}-c", 0) in owned()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        c.close()


def test_members_survive_a_broker_restart_raw(make_broker):
    """As in Kafka, the group's members, epochs and assignments are records in
    __consumer_offsets: after a restart a member carries on with its epoch."""
    b = make_broker(**NO_DELAY)
    topic = unique_topic("restart848")
    create_topic(b.bootstrap, topic, partitions=2)
    group = unique_group("restart848")
    member = uuid.uuid4().hex
    with Conn(b.bootstrap) as c:
        r = join(c, group, member, topic)
        assert (r["error"], r["epoch"]) == (NONE, 1), r
        (tid, parts), = r["assignment"].items()
        assert commit_v9(c, group, member, 1, topic, 0, 42) == NONE
    b.restart()
    with Conn(b.bootstrap) as c:
        r = heartbeat(c, group, member, 1, owned={tid: sorted(parts)})
        assert (r["error"], r["epoch"]) == (NONE, 1), r
        assert commit_v9(c, group, member, 1, topic, 1, 7) == NONE
        # A full heartbeat gets the assignment it had.
        r = heartbeat(c, group, member, 1, topics=[topic], owned={tid: sorted(parts)}, rebalance_ms=30000)
        assert r["assignment"] == {tid: sorted(parts)}
        # Leaving is recorded too: after another restart the member is gone.
        assert heartbeat(c, group, member, -1)["error"] == NONE
    b.restart()
    with Conn(b.bootstrap) as c:
        assert heartbeat(c, group, member, 1)["error"] == UNKNOWN_MEMBER_ID
