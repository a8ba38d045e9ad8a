"""Offset commits and fetches as Kafka's group coordinator takes them, in both group protocols
(issue 17 item 1): simple commits from consumers that never join (with and without metadata),
store_offsets() then commit(), a half-consumed partition resumed by the next member, and
commits to topics that do not exist. Driven by confluent-kafka (group.protocol classic and
consumer), aiokafka, kafkajs (through node) and by hand-built requests for Kafka's order of
errors.

Kafka's rules (KafkaApis.handleOffsetCommitRequest, OffsetMetadataManager.validateOffsetCommit,
ClassicGroup/ConsumerGroup.validateOffsetCommit and validateOffsetFetch): partitions of unknown
topics are answered UNKNOWN_TOPIC_OR_PARTITION before the group is looked at; a commit with
generation/epoch -1 is taken while the group has no members, whatever member id it carries,
and creates an empty classic group when there is none; a member's commit is checked against
its epoch; a group-level error answers every partition. OffsetFetch skips the member checks
only without a member id and with epoch -1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_STORED, ConsumerGroupType, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import consumer, create_topic, produce_all, producer, unique_topic
from kafka_wire import Conn, Reader, i32, i64
from test_consumer_protocol import STALE_MEMBER_EPOCH, heartbeat, join
from test_groups import (GROUP_ID_NOT_FOUND, NO_DELAY, NO_TAGS, NONE, OFFSET_COMMIT, OFFSET_FETCH,
                         UNKNOWN_MEMBER_ID, UNKNOWN_TOPIC_OR_PARTITION, carray, cstring, flex_request,
                         read_carray, read_cstring, skip_tags, unique_group)

PROTOCOLS = ["classic", "consumer"]
INVALID_GROUP_ID = 24
JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture
def gbroker(make_broker):
    return make_broker(**NO_DELAY)


def filled_topic(bootstrap: str, partitions: int = 2, per_partition: int = 100) -> str:
    topic = unique_topic("oc")
    create_topic(bootstrap, topic, partitions=partitions)
    produce_all(producer(bootstrap),
                [(None, f"v{i}".encode(), {"partition": i % partitions}) for i in range(partitions * per_partition)],
                topic)
    return topic


def committed(c, tps: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, str | None]]:
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in c.committed(tps, timeout=15)}


def group_type(bootstrap: str, group: str):
    a = AdminClient({"bootstrap.servers": bootstrap})
    listed = a.list_consumer_groups(request_timeout=10).result(15)
    assert not listed.errors, listed.errors
    return {g.group_id: g.type for g in listed.valid}.get(group)


# --- confluent-kafka, both protocols -------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unsubscribed_consumer_commits_an_offset_list(gbroker, protocol):
    topic = filled_topic(gbroker.bootstrap)
    group = unique_group("simple")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol})
    # Never subscribed, never assigned: the commit librdkafka sends carries no generation.
    out = c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7, metadata="seven")],
                   asynchronous=False)
    assert [(tp.partition, tp.offset, tp.error) for tp in out] == [(0, 5, None), (1, 7, None)]
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    assert committed(c, tps) == {(topic, 0): (5, None), (topic, 1): (7, "seven")}
    # Again, over them, now with metadata on the other partition.
    c.commit(offsets=[TopicPartition(topic, 0, 9, metadata="nine"), TopicPartition(topic, 1, 11)], asynchronous=False)
    c.close()
    # Another client of the group reads what was committed; the group is Kafka's empty classic
    # group, whatever protocol the committing client speaks.
    other = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol,
                                            "enable.partition.eof": False})
    assert committed(other, tps) == {(topic, 0): (9, "nine"), (topic, 1): (11, None)}
    assert group_type(gbroker.bootstrap, group) == ConsumerGroupType.CLASSIC
    # A member that then subscribes starts at those offsets (a consumer-protocol member turns
    # the empty group into a consumer group, offsets and all).
    other.subscribe([topic])
    first: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(first) < 2 and time.monotonic() < deadline:
        m = other.poll(0.5)
        if m is not None and not m.error():
            first.setdefault(m.partition(), m.offset())
    assert first == {0: 9, 1: 11}
    other.close()
    want = ConsumerGroupType.CONSUMER if protocol == "consumer" else ConsumerGroupType.CLASSIC
    assert group_type(gbroker.bootstrap, group) == want


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_store_offsets_then_commit(gbroker, protocol):
    topic = filled_topic(gbroker.bootstrap)
    group = unique_group("store")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error() and m.partition() == 0:
            got.append(m)
    assert len(got) == 20
    c.store_offsets(message=got[-1])
    c.store_offsets(offsets=[TopicPartition(topic, 1, 42, metadata="stored")])
    out = c.commit(asynchronous=False)
    last = got[-1].offset()
    assert sorted((tp.partition, tp.offset, tp.error) for tp in out) == [(0, last + 1, None), (1, 42, None)]
    assert committed(c, [TopicPartition(topic, 0), TopicPartition(topic, 1)]) == \
        {(topic, 0): (last + 1, None), (topic, 1): (42, "stored")}
    c.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("how", ["subscribe", "subscribe-auto-commit-on-close", "assign"])
def test_half_consumed_then_closed_the_next_consumer_resumes(gbroker, protocol, how):
    topic = filled_topic(gbroker.bootstrap, partitions=1)
    group = unique_group("half")
    conf = {"group.id": group, "group.protocol": protocol, "enable.partition.eof": False}
    if how == "subscribe-auto-commit-on-close":
        conf.update({"enable.auto.commit": True, "auto.commit.interval.ms": 600000})

    def start(c):
        if how == "assign":
            # No group membership: the position comes from the committed offset.
            c.assign([TopicPartition(topic, 0, OFFSET_STORED)])
        else:
            c.subscribe([topic])

    c = consumer(gbroker.bootstrap, **conf)
    start(c)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 50 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert [m.offset() for m in got] == list(range(50))
    if how == "subscribe-auto-commit-on-close":
        c.store_offsets(message=got[-1])
    else:
        c.commit(message=got[-1], asynchronous=False)
    c.close()
    c2 = consumer(gbroker.bootstrap, **conf)
    start(c2)
    first = None
    deadline = time.monotonic() + 30
    while first is None and time.monotonic() < deadline:
        m = c2.poll(0.5)
        if m is not None and not m.error():
            first = m.offset()
    assert first == 50, f"the next member started at {first}, not at the committed 50"
    c2.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_commit_to_a_topic_that_does_not_exist(gbroker, protocol):
    topic = filled_topic(gbroker.bootstrap, partitions=1)
    missing = unique_topic("missing")
    group = unique_group("unknown")
    c = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol})
    with pytest.raises(KafkaException) as e:
        c.commit(offsets=[TopicPartition(missing, 0, 5)], asynchronous=False)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value
    # Mixed with a partition that exists: that one is committed (librdkafka reports the
    # request's first error on every partition of the callback).
    results = []
    c2 = consumer(gbroker.bootstrap, **{"group.id": group, "group.protocol": protocol,
                                         "on_commit": lambda err, parts: results.append(parts)})
    c2.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(missing, 0, 5)], asynchronous=True)
    deadline = time.monotonic() + 20
    while not results and time.monotonic() < deadline:
        c2.poll(0.2)
    assert results, "no commit callback"
    by_topic = {tp.topic: tp.error.code() if tp.error else None for tp in results[0]}
    assert by_topic[missing] == KafkaError.UNKNOWN_TOPIC_OR_PART, by_topic
    assert committed(c2, [TopicPartition(topic, 0)]) == {(topic, 0): (3, None)}
    # A live member of the group: its unknown partition is refused, its known one taken.
    c3 = consumer(gbroker.bootstrap, **{"group.id": unique_group("member"), "group.protocol": protocol,
                                         "enable.partition.eof": False})
    c3.subscribe([topic])
    deadline = time.monotonic() + 30
    m = None
    while m is None and time.monotonic() < deadline:
        m = c3.poll(0.5)
        if m is not None and m.error():
            m = None
    assert m is not None
    with pytest.raises(KafkaException) as e:
        c3.commit(offsets=[TopicPartition(missing, 0, 1)], asynchronous=False)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value
    out = c3.commit(message=m, asynchronous=False)
    assert [(tp.offset, tp.error) for tp in out] == [(m.offset() + 1, None)]
    c3.close()


# --- hand-built requests: Kafka's order of errors -------------------------------------------


def commit_v9(conn: Conn, group: str, member: str, epoch: int,
              offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    by_topic: dict[str, list[bytes]] = {}
    for (t, p), o in offsets.items():
        by_topic.setdefault(t, []).append(i32(p) + i64(o) + i32(-1) + cstring(None) + NO_TAGS)
    body = (cstring(group) + i32(epoch) + cstring(member) + cstring(None)
            + carray([cstring(t) + carray(ps) + NO_TAGS for t, ps in by_topic.items()]) + NO_TAGS)
    r = flex_request(conn, OFFSET_COMMIT, 9, body)
    r.i32()
    out = {}

    def part(rr: Reader):
        x = (rr.i32(), rr.i16())
        skip_tags(rr)
        return x

    def topic_(rr: Reader):
        x = (read_cstring(rr), read_carray(rr, part))
        skip_tags(rr)
        return x

    for t, parts in read_carray(r, topic_):
        for p, e in parts:
            out[(t, p)] = e
    return out


def fetch_v9(conn: Conn, group: str, member: str | None, epoch: int, topic: str, partitions: list[int]) -> dict:
    """OffsetFetch v9 for one group: its error, and (offset, error) per partition."""
    body = (carray([cstring(group) + cstring(member) + i32(epoch)
                    + carray([cstring(topic) + carray([i32(p) for p in partitions]) + NO_TAGS]) + NO_TAGS])
            + b"\x00" + NO_TAGS)
    r = flex_request(conn, OFFSET_FETCH, 9, body)
    r.i32()

    def part(rr: Reader):
        x = (rr.i32(), rr.i64(), rr.i32(), read_cstring(rr), rr.i16())
        skip_tags(rr)
        return x

    def topic_(rr: Reader):
        x = (read_cstring(rr), read_carray(rr, part))
        skip_tags(rr)
        return x

    def group_(rr: Reader):
        x = {"group": read_cstring(rr), "topics": read_carray(rr, topic_), "error": rr.i16()}
        skip_tags(rr)
        return x

    (g,) = read_carray(r, group_)
    return {"error": g["error"],
            "partitions": {p: (o, e) for _, parts in g["topics"] for p, o, _, _, e in parts}}


def test_commit_and_fetch_error_order_raw(gbroker):
    topic = unique_topic("order")
    create_topic(gbroker.bootstrap, topic, partitions=2)
    missing = unique_topic("missing")
    known, unknown = (topic, 0), (missing, 0)
    with Conn(gbroker.bootstrap) as c:
        # No such group, with an epoch: GROUP_ID_NOT_FOUND from v9 ...
        assert commit_v9(c, unique_group(), "m", 3, {known: 1}) == {known: GROUP_ID_NOT_FOUND}
        # ... but a request of unknown partitions only never reaches the group.
        nobody = unique_group("nobody")
        assert commit_v9(c, nobody, "m", 3, {unknown: 1}) == {unknown: UNKNOWN_TOPIC_OR_PARTITION}
        assert commit_v9(c, nobody, "", -1, {unknown: 1}) == {unknown: UNKNOWN_TOPIC_OR_PARTITION}
        # An empty group id is refused once a known partition takes the request that far.
        assert commit_v9(c, "", "", -1, {known: 1}) == {known: INVALID_GROUP_ID}
        # A simple commit with a client-made member id creates an empty classic group.
        simple = unique_group("simple")
        assert commit_v9(c, simple, uuid.uuid4().hex, -1, {known: 4, unknown: 1}) == \
            {known: NONE, unknown: UNKNOWN_TOPIC_OR_PARTITION}
        assert fetch_v9(c, simple, None, -1, topic, [0, 1]) == {"error": NONE, "partitions": {0: (4, NONE), 1: (-1, NONE)}}

        # A consumer group with a live member.
        group = unique_group("live")
        member = uuid.uuid4().hex
        r = join(c, group, member, topic)
        assert (r["error"], r["epoch"]) == (NONE, 1), r
        assert commit_v9(c, group, member, 1, {known: 7, unknown: 1}) == \
            {known: NONE, unknown: UNKNOWN_TOPIC_OR_PARTITION}
        # Group-level errors answer every partition, the unknown one too ...
        assert commit_v9(c, group, member, 0, {known: 8, unknown: 1}) == \
            {known: STALE_MEMBER_EPOCH, unknown: STALE_MEMBER_EPOCH}
        assert commit_v9(c, group, "stranger", 1, {known: 8, unknown: 1}) == \
            {known: UNKNOWN_MEMBER_ID, unknown: UNKNOWN_MEMBER_ID}
        assert commit_v9(c, group, "", -1, {known: 8}) == {known: UNKNOWN_MEMBER_ID}, \
            "a simple commit while the group has members"
        # ... unless only unknown partitions were asked for.
        assert commit_v9(c, group, "stranger", 1, {unknown: 1}) == {unknown: UNKNOWN_TOPIC_OR_PARTITION}
        # OffsetFetch: member checks unless neither member id nor epoch is given.
        assert fetch_v9(c, group, member, 1, topic, [0])["partitions"] == {0: (7, NONE)}
        assert fetch_v9(c, group, None, -1, topic, [0])["partitions"] == {0: (7, NONE)}
        assert fetch_v9(c, group, member, 0, topic, [0])["error"] == STALE_MEMBER_EPOCH
        assert fetch_v9(c, group, "stranger", 1, topic, [0])["error"] == UNKNOWN_MEMBER_ID
        assert fetch_v9(c, group, uuid.uuid4().hex, -1, topic, [0])["error"] == UNKNOWN_MEMBER_ID
        # The member leaves: the group is empty and takes simple commits again.
        assert heartbeat(c, group, member, -1)["error"] == NONE
        assert commit_v9(c, group, uuid.uuid4().hex, -1, {known: 9}) == {known: NONE}
        assert fetch_v9(c, group, None, -1, topic, [0])["partitions"] == {0: (9, NONE)}
        # A group that does not exist answers no offsets and no error.
        assert fetch_v9(c, unique_group(), None, -1, topic, [0]) == {"error": NONE, "partitions": {0: (-1, NONE)}}
    assert group_type(gbroker.bootstrap, nobody) is None, "a commit of unknown partitions created a group"
    assert group_type(gbroker.bootstrap, simple) == ConsumerGroupType.CLASSIC


# --- aiokafka (classic) -----------------------------------------------------------------------


def test_aiokafka_commits(gbroker):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import OffsetAndMetadata
    from aiokafka.structs import TopicPartition as AioTP

    topic = filled_topic(gbroker.bootstrap, partitions=2)
    bs = gbroker.bootstrap

    async def run():
        # Not subscribed: commits an explicit offset list, with and without metadata.
        group = unique_group("aio-simple")
        c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            tp0, tp1 = AioTP(topic, 0), AioTP(topic, 1)
            c.assign([tp0, tp1])
            await c.commit({tp0: OffsetAndMetadata(5, ""), tp1: OffsetAndMetadata(7, "seven")})
            assert (await c.committed(tp0), await c.committed(tp1)) == (5, 7)
            # (A topic that does not exist is not reachable here: aiokafka drops it from a
            # manual assignment once metadata says it is unknown, and commits nothing.)
        finally:
            await c.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bs)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            assert {tp.partition: (o.offset, o.metadata) for tp, o in offsets.items()} == \
                {0: (5, ""), 1: (7, "seven")}
        finally:
            await admin.close()

        # Consumed positions, then commit() without offsets (aiokafka's store-then-commit).
        group = unique_group("aio-store")
        c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([AioTP(topic, 0)])
            for _ in range(20):
                m = await asyncio.wait_for(c.getone(), 30)
            assert m.offset == 19
            await c.commit()
            assert await c.committed(AioTP(topic, 0)) == 20
        finally:
            await c.stop()

        # Half consumed, committed, stopped: the next member of the group resumes there.
        group = unique_group("aio-half")
        c = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            seen = 0
            while seen < 50:
                m = await asyncio.wait_for(c.getone(AioTP(topic, 0)), 30)
                seen += 1
            assert m.offset == 49
            await c.commit({AioTP(topic, 0): OffsetAndMetadata(50, "")})
        finally:
            await c.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(AioTP(topic, 0)), 30)
            assert m.offset == 50
        finally:
            await c.stop()

    asyncio.run(run())


# --- kafkajs (classic) ------------------------------------------------------------------------

KAFKAJS_SCRIPT = r"""
const { Kafka, logLevel } = require('kafkajs')
const [bootstrap, topic, missing, groupSimple, groupHalf, groupStore] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'strom-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
                          retry: { retries: 2, initialRetryTime: 100 } })
const out = {}

// kafkajs keeps its protocol client behind a symbol; its consumers need a running group to
// commit, so a simple commit (generation -1, no member id) goes through its broker API.
function cluster() {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => String(s).includes('createCluster'))
  return kafka[sym]({})
}

async function simpleCommit(c, groupId, t, partitions) {
  const coordinator = await c.findGroupCoordinator({ groupId })
  try {
    const r = await coordinator.offsetCommit({ groupId, groupGenerationId: -1, memberId: '',
      topics: [{ topic: t, partitions }] })
    return r.responses.map(x => x.partitions.map(p => p.errorCode)).flat()
  } catch (e) {
    return [e.type || String(e)]
  }
}

// Runs a member of groupId with the run() options `config(consumer, offsets, done)` makes,
// until it calls done; returns the offsets it recorded.
async function consumeThenClose(groupId, config) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const offsets = []
  await new Promise((resolve, reject) => {
    consumer.run(config(consumer, offsets, resolve)).catch(reject)
  })
  await consumer.disconnect()
  return offsets
}

async function firstOffset(groupId) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const first = await new Promise((resolve, reject) => {
    consumer.run({ autoCommit: false, eachMessage: async ({ partition, message }) => {
      if (partition === 0) resolve(Number(message.offset))
    } })
      .catch(reject)
  })
  await consumer.disconnect()
  return first
}

async function main() {
  const admin = kafka.admin()
  await admin.connect()
  const c = cluster()
  await c.connect()
  await c.refreshMetadata()
  // Not subscribed: an explicit offset list, with and without metadata.
  out.simple = await simpleCommit(c, groupSimple, topic,
    [{ partition: 0, offset: '5', metadata: null }, { partition: 1, offset: '7', metadata: 'seven' }])
  out.simpleFetched = (await admin.fetchOffsets({ groupId: groupSimple, topics: [topic] }))[0].partitions
    .map(p => [p.partition, Number(p.offset), p.metadata]).sort()
  out.missing = await simpleCommit(c, groupSimple, missing, [{ partition: 0, offset: '1', metadata: null }])
  await c.disconnect()

  // Half consumed, committed from eachMessage, closed: the next member resumes there.
  out.half = await consumeThenClose(groupHalf, (consumer, offsets, done) => ({
    autoCommit: false,
    eachMessage: async ({ topic: t, partition, message }) => {
      if (partition !== 0 || offsets.length >= 50) return
      offsets.push(Number(message.offset))
      if (offsets.length === 50) {
        out.halfCommit = 'ok'
        await consumer.commitOffsets([{ topic: t, partition, offset: String(Number(message.offset) + 1) }])
          .catch(e => { out.halfCommit = e.type || String(e) })
        // A member's commit to a topic that does not exist.
        out.memberMissing = 'ok'
        // kafkajs retries it as Kafka's retriable error, then gives up with it.
        await consumer.commitOffsets([{ topic: missing, partition: 0, offset: '1' }]).catch(e => {
          out.memberMissing = (e.cause && e.cause.type) || e.type || String(e)
        })
        done()
      }
    },
  }))
  out.halfNext = await firstOffset(groupHalf)

  // Resolve offsets, then commit them (kafkajs's store_offsets + commit).
  out.store = await consumeThenClose(groupStore, (consumer, offsets, done) => ({
    autoCommit: true, autoCommitThreshold: 1, autoCommitInterval: null,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
      if (batch.partition !== 0 || offsets.length >= 30) return
      for (const m of batch.messages.slice(0, 30 - offsets.length)) {
        offsets.push(Number(m.offset))
        resolveOffset(m.offset)
      }
      if (offsets.length === 30) {
        await commitOffsetsIfNecessary()
        done()
      }
    },
  }))
  out.storeFetched = (await admin.fetchOffsets({ groupId: groupStore, topics: [topic] }))[0].partitions
    .filter(p => p.partition === 0).map(p => Number(p.offset))
  await admin.disconnect()
}

main().then(() => { console.log(JSON.stringify(out)); process.exit(0) })
  .catch(e => { console.log(JSON.stringify({ error: String(e && e.stack || e), out })); process.exit(1) })
"""


def test_kafkajs_commits(gbroker, tmp_path):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    topic = filled_topic(gbroker.bootstrap, partitions=2)
    missing = unique_topic("missing")
    script = tmp_path / "commits.js"
    script.write_text(KAFKAJS_SCRIPT)
    env = dict(os.environ, NODE_PATH=str(JS_DIR / "node_modules"))
    p = subprocess.run([node, str(script), gbroker.bootstrap, topic, missing, unique_group("js-simple"),
                        unique_group("js-half"), unique_group("js-store")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["simple"] == [NONE, NONE], out
    # kafkajs shows Kafka's empty metadata as null.
    assert out["simpleFetched"] == [[0, 5, None], [1, 7, "seven"]], out
    assert out["missing"] == ["UNKNOWN_TOPIC_OR_PARTITION"], out
    assert out["half"] == list(range(50)) and out["halfCommit"] == "ok", out
    assert out["halfNext"] == 50, out
    assert out["memberMissing"] == "UNKNOWN_TOPIC_OR_PARTITION", out
    assert out["store"] == list(range(30)) and out["storeFetched"] == [30], out
