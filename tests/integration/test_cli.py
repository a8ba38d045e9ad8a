"""The `strom` command-line client (topic, cluster, group, produce, consume)
against the real broker. Results are cross-checked with confluent-kafka
(librdkafka) where an independent view helps: configs, keys, headers,
partitioning, committed offsets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import free_port, strom_bin
from helpers import admin, consume_partitions, consumer, create_topic, describe, produce_all, producer, unique_topic

NO_DELAY = {"group.initial.rebalance.delay.ms": 0}
RATE_LINE = re.compile(r"^% Produced (\d+) messages? \(([\d.]+) MB\) to (\S+) in ([\d.]+) s: (\d+) msg/s, ([\d.]+) MB/s")


def strom(args: list[str], input: bytes | str | None = None, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    if isinstance(input, str):
        input = input.encode()
    e = os.environ.copy()
    e.pop("STROM_BOOTSTRAP", None)
    e.update(env or {})
    return subprocess.run([strom_bin(), *args], input=input, capture_output=True, env=e, timeout=timeout)


def ok(cp: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert cp.returncode == 0, describe(cp)
    return cp


def out(cp: subprocess.CompletedProcess) -> str:
    return cp.stdout.decode(errors="replace")


def err(cp: subprocess.CompletedProcess) -> str:
    return cp.stderr.decode(errors="replace")


def as_json(cp: subprocess.CompletedProcess):
    ok(cp)
    return json.loads(out(cp))


def one_error_line(cp: subprocess.CompletedProcess, code: int = 1) -> str:
    """A failed run: exit `code`, nothing on stdout, one `strom: ...` line on stderr."""
    assert cp.returncode == code, describe(cp)
    lines = err(cp).splitlines()
    assert len(lines) == 1 and lines[0].startswith("strom: "), describe(cp)
    return lines[0]


def unique_group(prefix: str = "g") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2, written from its definition (Java int arithmetic)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[length - rest:]
    if rest >= 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def test_python_murmur2_matches_kafkas_vectors():
    # Kafka's UtilsTest.testMurmur2: the reference for the partitioning tests below.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


# --- the seed walkthrough, with strom alone -----------------------------------


def test_seed_walkthrough_with_strom_alone(broker):
    bs = broker.bootstrap
    # echo "hello world!" | strom produce -b HOST:PORT -t test
    p = ok(strom(["produce", "-b", bs, "-t", "test"], input="hello world!\n"))
    assert RATE_LINE.match(err(p).splitlines()[-1]), describe(p)
    assert RATE_LINE.match(err(p).splitlines()[-1]).group(1) == "1"

    # strom consume -b HOST:PORT -t test -e
    c = ok(strom(["consume", "-b", bs, "-t", "test", "-e"]))
    assert out(c).splitlines() == ["hello world!"], describe(c)
    assert "% Reached end of topic test [0] at offset 1" in err(c), describe(c)

    # What kcat -L shows: one broker, the topic with its partition.
    cl = as_json(strom(["cluster", "describe", "-b", bs, "--output", "json"]))
    assert [(b["id"], f'{b["host"]}:{b["port"]}') for b in cl["brokers"]] == [(0, bs)]
    d = as_json(strom(["topic", "describe", "test", "-b", bs, "--output", "json"]))
    assert [(p["partition"], p["leader"], p["replicas"], p["isr"]) for p in d[0]["partitions"]] == [(0, 0, [0], [0])]


def test_bootstrap_from_the_environment(broker):
    t = unique_topic("env")
    ok(strom(["produce", "-t", t], input="x\n", env={"STROM_BOOTSTRAP": broker.bootstrap}))
    c = ok(strom(["consume", "-t", t, "-e"], env={"STROM_BOOTSTRAP": broker.bootstrap}))
    assert out(c) == "x\n"
    # -b wins over the environment.
    c = ok(strom(["consume", "-b", broker.bootstrap, "-t", t, "-e"], env={"STROM_BOOTSTRAP": "127.0.0.1:1"}))
    assert out(c) == "x\n"


# --- topics and the cluster ---------------------------------------------------


def test_topic_lifecycle(broker):
    bs = broker.bootstrap
    t = unique_topic("life")
    c = ok(strom(["topic", "create", t, "-b", bs, "--partitions", "3",
                  "--config", "retention.ms=86400000", "--config", "cleanup.policy=delete"]))
    assert out(c) == f"Created topic {t}.\n"

    again = strom(["topic", "create", t, "-b", bs])
    line = one_error_line(again)
    assert "TOPIC_ALREADY_EXISTS" in line, line
    j = as_json(strom(["topic", "create", t, "-b", bs, "--if-not-exists", "--output", "json"]))
    assert j == {"name": t, "created": False}

    listed = ok(strom(["topic", "list", "-b", bs]))
    assert re.search(rf"^{re.escape(t)}\s+3\s+1\s+\S+$", out(listed), re.M), describe(listed)
    names = {x["name"]: x for x in as_json(strom(["topic", "list", "-b", bs, "--output", "json"]))}
    assert names[t]["partitions"] == 3 and names[t]["replication_factor"] == 1
    assert len(names[t]["topic_id"]) == 22

    d = as_json(strom(["topic", "describe", t, "-b", bs, "--output", "json"]))[0]
    assert d["partition_count"] == 3
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    assert all(p["leader"] == 0 and p["replicas"] == [0] and p["isr"] == [0] for p in d["partitions"])
    configs = {c["name"]: c for c in d["configs"]}
    assert configs["retention.ms"]["value"] == "86400000"
    assert configs["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"]["value"] == "delete"

    table = ok(strom(["topic", "describe", t, "-b", bs]))
    first = out(table).splitlines()[0]
    assert first.startswith(f"Topic: {t}\tTopicId: {names[t]['topic_id']}\tPartitionCount: 3\tReplicationFactor: 1\t")
    assert "retention.ms=86400000" in first
    # PARTITION LEADER REPLICAS ISR LOG-START-OFFSET HIGH-WATERMARK SIZE (an empty partition)
    assert re.search(r"^2\s+0\s+0\s+0\s+0\s+0\s+0$", out(table), re.M), describe(table)
    every = as_json(strom(["topic", "describe", t, "-b", bs, "--all-configs", "--output", "json"]))[0]
    sources = {c["name"]: c["source"] for c in every["configs"]}
    assert sources["retention.ms"] == "DYNAMIC_TOPIC_CONFIG"
    assert "DEFAULT_CONFIG" in sources.values() or "STATIC_BROKER_CONFIG" in sources.values()

    # alter: more partitions, one config set, one removed.
    a = ok(strom(["topic", "alter", t, "-b", bs, "--partitions", "5",
                  "--config", "retention.ms=1000", "--delete-config", "cleanup.policy"]))
    assert "partitions 3 -> 5" in out(a), describe(a)
    d = as_json(strom(["topic", "describe", t, "-b", bs, "--output", "json"]))[0]
    assert d["partition_count"] == 5
    assert {c["name"]: c["value"] for c in d["configs"]} == {"retention.ms": "1000"}

    # An independent view of the same configs.
    res = ConfigResource(ResourceType.TOPIC, t)
    a = admin(bs)
    got = a.describe_configs([res])[res].result(20)
    assert got["retention.ms"].value == "1000"
    assert got["cleanup.policy"].is_default

    # Fewer partitions is refused, as by Kafka.
    shrink = strom(["topic", "alter", t, "-b", bs, "--partitions", "2"])
    assert "INVALID_PARTITIONS" in one_error_line(shrink)

    d = ok(strom(["topic", "delete", t, "-b", bs]))
    assert out(d) == f"Deleted topic {t}.\n"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        names = {x["name"] for x in as_json(strom(["topic", "list", "-b", bs, "--output", "json"]))}
        if t not in names:
            break
        time.sleep(0.2)
    assert t not in names
    gone = strom(["topic", "delete", t, "-b", bs])
    assert "does not exist" in one_error_line(gone)
    ok(strom(["topic", "delete", t, "-b", bs, "--if-exists"]))


def test_cluster_describe(broker):
    bs = broker.bootstrap
    j = as_json(strom(["cluster", "describe", "-b", bs, "--output", "json"]))
    md = admin(bs).list_topics(timeout=10)
    assert j["cluster_id"] == md.cluster_id
    assert j["controller_id"] == md.controller_id == 0
    assert j["brokers"] == [{"id": 0, "host": broker.host, "port": broker.port, "rack": None,
                             "leader_partitions": j["partitions"]}]
    t = ok(strom(["cluster", "describe", "-b", bs]))
    text = out(t)
    assert f"Cluster ID:  {md.cluster_id}" in text
    assert re.search(rf"^0 \(controller\)\s+{re.escape(broker.host)}\s+{broker.port}\s", text, re.M), describe(t)


# --- produce and consume ------------------------------------------------------


def test_produce_keys_headers_and_consume_formats(broker):
    bs = broker.bootstrap
    t = unique_topic("fmt")
    create_topic(bs, t, partitions=2)
    lines = "k1:v1\nk2:v:2\nnokey\n:emptykey\n"
    ok(strom(["produce", "-b", bs, "-t", t, "-K", ":", "-H", "trace=abc", "-H", "n=1", "--partition", "1"],
             input=lines))

    # An independent reader: confluent-kafka.
    c = consumer(bs)
    msgs = consume_partitions(c, [TopicPartition(t, 1, 0)], expected=4)
    assert [(m.key(), m.value()) for m in msgs] == [(b"k1", b"v1"), (b"k2", b"v:2"), (None, b"nokey"),
                                                     (b"", b"emptykey")]
    assert all(m.headers() == [("trace", b"abc"), ("n", b"1")] for m in msgs)

    f = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-f", r"%t|%p|%o|%k|%v|%h|%K|%S\n"]))
    assert out(f).splitlines() == [
        f"{t}|1|0|k1|v1|trace=abc,n=1|2|2",
        f"{t}|1|1|k2|v:2|trace=abc,n=1|2|3",
        f"{t}|1|2||nokey|trace=abc,n=1|-1|5",
        f"{t}|1|3||emptykey|trace=abc,n=1|0|8",
    ]
    # Partition 0 is empty; both partitions report their end.
    assert "% Reached end of topic " + t + " [0] at offset 0" in err(f)
    assert "% Reached end of topic " + t + " [1] at offset 4" in err(f)
    assert err(f).rstrip().endswith(": exiting")

    ks = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q", "-K", "="]))
    assert out(ks).splitlines() == ["k1=v1", "k2=v:2", "=nokey", "=emptykey"]
    assert err(ks) == ""

    js = ok(strom(["consume", "-b", bs, "-t", t, "-e", "--output", "json", "-p", "1"]))
    records = [json.loads(x) for x in out(js).splitlines()]
    assert [(r["partition"], r["offset"], r["key"], r["value"]) for r in records] == [
        (1, 0, "k1", "v1"), (1, 1, "k2", "v:2"), (1, 2, None, "nokey"), (1, 3, "", "emptykey")]
    assert records[0]["headers"] == [["trace", "abc"], ["n", "1"]]
    assert abs(records[0]["timestamp"] - time.time() * 1000) < 120_000


def test_keyed_records_land_where_javas_partitioner_puts_them(broker):
    """murmur2(key) & 0x7fffffff % partitions, as Kafka's Java producer; librdkafka's
    murmur2_random partitioner is the same function, so it must agree too."""
    bs = broker.bootstrap
    t1, t2 = unique_topic("m2s"), unique_topic("m2r")
    create_topic(bs, t1, partitions=7)
    create_topic(bs, t2, partitions=7)
    keys = [f"key-{i}" for i in range(300)] + ["21", "foobar", "abc", "a-little-bit-long-string"]
    ok(strom(["produce", "-b", bs, "-t", t1, "-K", "\t"], input="".join(f"{k}\tv\n" for k in keys)))
    got = ok(strom(["consume", "-b", bs, "-t", t1, "-e", "-q", "-f", r"%k %p\n"]))
    by_strom = dict(line.split(" ") for line in out(got).splitlines())
    assert len(by_strom) == len(keys)
    for k in keys:
        assert int(by_strom[k]) == (murmur2(k.encode()) & 0x7FFFFFFF) % 7, k
    assert len(set(by_strom.values())) == 7

    p = producer(bs, partitioner="murmur2_random")
    results = produce_all(p, [(k.encode(), b"v") for k in keys], t2)
    by_librdkafka = {k: str(r[1]) for k, r in zip(keys, results)}
    assert by_librdkafka == by_strom


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_roundtrip(broker, codec):
    bs = broker.bootstrap
    t = unique_topic(f"z-{codec}")
    lines = [f"{i}:{'payload-' * (i % 7)}{i}" for i in range(2000)]
    ok(strom(["produce", "-b", bs, "-t", t, "-z", codec, "-K", ":"], input="\n".join(lines) + "\n"))
    back = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q", "-K", ":"]))
    assert sorted(out(back).splitlines()) == sorted(lines)
    c = consumer(bs)
    tps = [TopicPartition(t, p["partition"], 0)
           for p in as_json(strom(["topic", "describe", t, "-b", bs, "--output", "json"]))[0]["partitions"]]
    msgs = consume_partitions(c, tps, expected=len(lines))
    assert sorted(f"{m.key().decode()}:{m.value().decode()}" for m in msgs) == sorted(lines)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, acks):
    bs = broker.bootstrap
    t = unique_topic("acks")
    create_topic(bs, t)
    p = ok(strom(["produce", "-b", bs, "-t", t, "--acks", acks], input="".join(f"m{i}\n" for i in range(500))))
    assert RATE_LINE.match(err(p).splitlines()[-1]).group(1) == "500", describe(p)
    deadline = time.monotonic() + 10
    while True:  # acks=0: the broker may still be appending when produce exits
        c = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q"]))
        if len(out(c).splitlines()) == 500 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert out(c).splitlines() == [f"m{i}" for i in range(500)]


def test_bulk_load_from_a_file_with_small_batches(broker, tmp_path):
    bs = broker.bootstrap
    t = unique_topic("bulk")
    create_topic(bs, t, partitions=3)
    f = tmp_path / "lines.txt"
    n = 20000
    f.write_text("".join(f"message number {i} with some payload\n" for i in range(n)))
    p = ok(strom(["produce", "-b", bs, "-t", t, "--file", str(f), "--batch-size", "16384", "--linger-ms", "2",
                  "--output", "json"]))
    summary = json.loads(out(p))
    assert summary["messages"] == n and summary["failed"] == 0
    assert summary["bytes"] == f.stat().st_size - n  # payload bytes, newlines excluded
    assert summary["requests"] > 3  # the batch size was honoured
    m = RATE_LINE.match(err(p).splitlines()[-1])
    assert m and int(m.group(1)) == n and m.group(3) == t, describe(p)

    c = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q"]))
    assert sorted(out(c).splitlines()) == sorted(f.read_text().splitlines())
    # No key: the sticky partitioner spreads batches over the partitions.
    per = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q", "-f", r"%p\n"]))
    parts = set(out(per).splitlines())
    assert parts <= {"0", "1", "2"} and len(parts) >= 2, parts

    # -c stops early; a closed pipe ends consume quietly.
    five = ok(strom(["consume", "-b", bs, "-t", t, "-p", "0", "-c", "5"]))
    assert len(out(five).splitlines()) == 5
    proc = subprocess.Popen([strom_bin(), "consume", "-b", bs, "-t", t, "-e"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    rc = proc.wait(30)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert rc == 0, stderr
    assert "strom:" not in stderr


def test_consume_start_offsets_and_timestamps(broker):
    bs = broker.bootstrap
    t = unique_topic("offs")
    create_topic(bs, t)
    ok(strom(["produce", "-b", bs, "-t", t], input="".join(f"a{i}\n" for i in range(5))))
    time.sleep(0.05)
    mark = int(time.time() * 1000)
    time.sleep(0.05)
    ok(strom(["produce", "-b", bs, "-t", t], input="".join(f"b{i}\n" for i in range(5))))

    def lines(*args):
        return out(ok(strom(["consume", "-b", bs, "-t", t, "-e", "-q", *args]))).splitlines()

    assert lines() == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    assert lines("-o", "beginning") == lines()
    assert lines("-o", "7") == ["b2", "b3", "b4"]
    assert lines("-o", "-2") == ["b3", "b4"]
    assert lines("-o", "-100") == lines()
    assert lines("-o", "end") == []
    assert lines("--timestamp", str(mark)) == [f"b{i}" for i in range(5)]
    assert lines("--timestamp", str(mark + 3_600_000)) == []
    assert lines("-o", "3", "-c", "2") == ["a3", "a4"]
    # Past the end: reset to the end, with a note.
    c = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-o", "50"]))
    assert out(c) == ""
    assert "out of range" in err(c) and "at offset 10" in err(c), describe(c)
    end = ok(strom(["consume", "-b", bs, "-t", t, "-e", "-o", "end"]))
    assert "% Reached end of topic " + t + " [0] at offset 10: exiting" in err(end)


def test_consume_waits_for_new_records_until_interrupted(broker):
    bs = broker.bootstrap
    t = unique_topic("tail")
    create_topic(bs, t)
    proc = subprocess.Popen([strom_bin(), "consume", "-b", bs, "-t", t], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        ok(strom(["produce", "-b", bs, "-t", t], input="late\n"))
        assert proc.stdout.readline() == b"late\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


# --- groups -------------------------------------------------------------------


@pytest.fixture
def gbroker(make_broker):
    b = make_broker(**NO_DELAY)
    probe = strom(["group", "list", "-b", b.bootstrap])
    if probe.returncode != 0 and "does not support" in err(probe):
        pytest.skip(f"this broker has no group APIs yet: {err(probe).strip()}")
    return b


def committed(bs: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    a = admin(bs)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = a.list_consumer_group_offsets([req])[group].result(20)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def test_consume_with_a_group_commits_and_resumes(gbroker):
    bs = gbroker.bootstrap
    t, g = unique_topic("gc"), unique_group()
    create_topic(bs, t, partitions=2)
    ok(strom(["produce", "-b", bs, "-t", t, "-K", ":"], input="".join(f"k{i}:v{i}\n" for i in range(40))))

    first = ok(strom(["consume", "-b", bs, "-t", t, "-g", g, "-c", "15", "-q"]))
    assert len(out(first).splitlines()) == 15
    offs = committed(bs, g, t, 2)
    assert sum(o for o in offs.values() if o >= 0) == 15, offs

    rest = ok(strom(["consume", "-b", bs, "-t", t, "-g", g, "-e", "-q"]))
    assert len(out(rest).splitlines()) == 25
    assert sorted(out(first).splitlines() + out(rest).splitlines()) == sorted(f"v{i}" for i in range(40))
    ends = committed(bs, g, t, 2)
    assert sum(ends.values()) == 40, ends

    d = as_json(strom(["group", "describe", g, "-b", bs, "--output", "json"]))
    assert d["state"] == "Empty" and d["members"] == [] and d["total_lag"] == 0
    assert {(o["partition"], o["current_offset"], o["lag"]) for o in d["offsets"]} == {
        (p, o, 0) for p, o in ends.items()}

    nothing = ok(strom(["consume", "-b", bs, "-t", t, "-g", g, "-e"]))
    assert out(nothing) == ""

    # Interrupted: what was printed is committed.
    ok(strom(["produce", "-b", bs, "-t", t, "-p", "0"], input="x1\nx2\n"))
    proc = subprocess.Popen([strom_bin(), "consume", "-b", bs, "-t", t, "-g", g], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"x1\n"
        assert proc.stdout.readline() == b"x2\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    assert committed(bs, g, t, 2)[0] == ends[0] + 2


def _wait_members(bs: str, g: str, n: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    d = None
    while time.monotonic() < deadline:
        cp = strom(["group", "describe", g, "-b", bs, "--output", "json"])
        if cp.returncode == 0:
            d = as_json(cp)
            if d["state"] == "Stable" and len(d["members"]) == n:
                return d
        time.sleep(0.2)
    raise AssertionError(f"group {g} not stable with {n} members: {d}")


def test_consume_group_members_share_partitions_and_hand_over(gbroker):
    """Two `strom consume -g` processes are members of one group: the partitions are split,
    and when one stops the other takes its partitions over from the committed offsets, so
    between them every record is printed exactly once."""
    bs = gbroker.bootstrap
    t, g = unique_topic("share"), unique_group()
    create_topic(bs, t, partitions=4)

    def produce(lo, hi):
        ok(strom(["produce", "-b", bs, "-t", t, "-K", ":"], input="".join(f"k{i}:v{i}\n" for i in range(lo, hi))))

    produce(0, 200)
    procs, outs = [], []
    try:
        for name in ("a", "b"):
            o = gbroker.workdir / f"member-{name}.out"
            outs.append(o)
            procs.append(subprocess.Popen([strom_bin(), "consume", "-b", bs, "-t", t, "-g", g, "-q",
                                           "-f", "%p %o %v\n"], stdout=open(o, "wb"), stderr=subprocess.PIPE))
            _wait_members(bs, g, len(procs))
        d = _wait_members(bs, g, 2)
        owned = [set(m["assignment"].get(t, [])) for m in d["members"]]
        assert sorted(len(x) for x in owned) == [2, 2] and owned[0] | owned[1] == {0, 1, 2, 3}, d
        produce(200, 300)

        def lines():
            return [ln.split(" ") for o in outs for ln in o.read_text().splitlines() if ln]

        deadline = time.monotonic() + 30
        while len(lines()) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(20) == 0, procs[1].stderr.read().decode()
        d = _wait_members(bs, g, 1)
        assert d["members"][0]["assignment"] == {t: [0, 1, 2, 3]}
        produce(300, 400)
        deadline = time.monotonic() + 30
        while len(lines()) < 400 and time.monotonic() < deadline:
            time.sleep(0.2)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(20) == 0, procs[0].stderr.read().decode()
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait(10)
            pr.stderr.close()
    got = lines()
    seen = [(int(p), int(o)) for p, o, _ in got]
    assert len(seen) == len(set(seen)) == 400, f"{len(seen)} lines, {len(set(seen))} distinct"
    assert sorted(v for _, _, v in got) == sorted(f"v{i}" for i in range(400))
    assert sum(committed(bs, g, t, 4).values()) == 400
    # Both left cleanly: the group is empty at once, not after a session timeout.
    d = as_json(strom(["group", "describe", g, "-b", bs, "--output", "json"]))
    assert d["state"] == "Empty" and d["members"] == []


def test_group_list_describe_reset_delete(gbroker):
    bs = gbroker.bootstrap
    t, g = unique_topic("grp"), unique_group()
    create_topic(bs, t, partitions=3)
    ok(strom(["produce", "-b", bs, "-t", t, "-K", ":"], input="".join(f"key{i}:v{i}\n" for i in range(300))))

    c = consumer(bs, **{"group.id": g, "enable.partition.eof": False, "session.timeout.ms": 10000,
                        "enable.auto.offset.store": True})
    c.subscribe([t])
    got = 0
    deadline = time.monotonic() + 30
    while got < 120 and time.monotonic() < deadline:
        for m in c.consume(num_messages=50, timeout=0.5):
            if m.error() is None:
                got += 1
    assert got >= 120
    c.commit(asynchronous=False)
    before = committed(bs, g, t, 3)

    listed = as_json(strom(["group", "list", "-b", bs, "--output", "json"]))
    mine = [x for x in listed if x["group"] == g]
    assert mine and mine[0]["protocol_type"] == "consumer" and mine[0]["state"] == "Stable", listed
    assert re.search(rf"^{g}\s+Stable\s+consumer\s+0$", out(ok(strom(["group", "list", "-b", bs]))), re.M)

    d = as_json(strom(["group", "describe", g, "-b", bs, "--output", "json"]))
    assert d["state"] == "Stable" and len(d["members"]) == 1
    assert d["members"][0]["assignment"] == {t: [0, 1, 2]}
    rows = {o["partition"]: o for o in d["offsets"]}
    assert set(rows) == {0, 1, 2}
    for p, o in rows.items():
        assert o["member_id"] == d["members"][0]["member_id"]
        if before.get(p, -1001) >= 0:
            assert o["current_offset"] == before[p]
            assert o["lag"] == o["log_end_offset"] - before[p]
    assert sum(o["log_end_offset"] for o in rows.values()) == 300
    text = out(ok(strom(["group", "describe", g, "-b", bs])))
    assert "State:        Stable" in text and "LOG-END-OFFSET" in text

    # Reset needs an inactive group, as in Kafka.
    busy = strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-earliest", "--execute"])
    assert "inactive" in one_error_line(busy)
    c.close()

    dry = ok(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-earliest"]))
    assert "Dry run" in err(dry)
    assert re.search(rf"^{g}\s+{t}\s+0\s+\S+\s+0$", out(dry), re.M), describe(dry)
    assert committed(bs, g, t, 3) == before

    ok(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-earliest", "--execute"]))
    assert committed(bs, g, t, 3) == {0: 0, 1: 0, 2: 0}

    plan = as_json(strom(["group", "reset-offsets", g, "-b", bs, "--topic", f"{t}:1", "--to-offset", "7",
                          "--execute", "--output", "json"]))
    assert plan["executed"] is True
    assert [(p["partition"], p["current_offset"], p["new_offset"]) for p in plan["partitions"]] == [(1, 0, 7)]
    assert committed(bs, g, t, 3) == {0: 0, 1: 7, 2: 0}

    ok(strom(["group", "reset-offsets", g, "-b", bs, "--all-topics", "--to-latest", "--execute"]))
    ends = committed(bs, g, t, 3)
    assert sum(ends.values()) == 300
    huge = as_json(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-offset", "999999",
                          "--output", "json"]))
    assert {p["partition"]: p["new_offset"] for p in huge["partitions"]} == ends  # clamped to the end

    future = as_json(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-datetime",
                            "2999-01-01T00:00:00Z", "--output", "json"]))
    assert {p["partition"]: p["new_offset"] for p in future["partitions"]} == ends
    ok(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--to-datetime", "2000-01-01T00:00:00.000",
              "--execute"]))
    assert committed(bs, g, t, 3) == {0: 0, 1: 0, 2: 0}

    deleted = ok(strom(["group", "delete", g, "-b", bs]))
    assert out(deleted) == f"Deleted group {g}.\n"
    assert g not in {x["group"] for x in as_json(strom(["group", "list", "-b", bs, "--output", "json"]))}
    assert "does not exist" in one_error_line(strom(["group", "delete", g, "-b", bs]))
    assert "GROUP_ID_NOT_FOUND" in one_error_line(strom(["group", "describe", g, "-b", bs]))


def test_group_commands_need_an_exclusive_mode(gbroker):
    bs = gbroker.bootstrap
    assert strom(["group", "reset-offsets", "g", "-b", bs, "--topic", "t"]).returncode == 2
    assert strom(["group", "reset-offsets", "g", "-b", bs, "--to-latest"]).returncode == 2
    assert strom(["group", "reset-offsets", "g", "-b", bs, "--topic", "t", "--to-latest",
                  "--to-earliest"]).returncode == 2
    bad = strom(["group", "reset-offsets", "g", "-b", bs, "--topic", "t", "--to-datetime", "yesterday"])
    assert bad.returncode == 2 and b"yesterday" in bad.stderr


# --- errors -------------------------------------------------------------------


def test_unknown_topics_are_one_line_errors(broker):
    bs = broker.bootstrap
    for args in (["topic", "describe", "nope"], ["consume", "-t", "nope", "-e"], ["topic", "delete", "nope"],
                 ["topic", "alter", "nope", "--partitions", "3"],
                 ["group", "reset-offsets", "g", "--topic", "nope", "--to-latest"]):
        cp = strom([*args, "-b", bs])
        if args[0] == "group" and "does not support" in err(cp):
            continue
        line = one_error_line(cp)
        assert "nope" in line and ("does not exist" in line or "UNKNOWN_TOPIC" in line), describe(cp)
        assert out(cp) == ""


def test_produce_without_auto_create_fails_cleanly(make_broker):
    b = make_broker(**{"auto.create.topics.enable": "false"})
    cp = strom(["produce", "-b", b.bootstrap, "-t", "missing"], input="x\n")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in one_error_line(cp)
    cp = strom(["produce", "-b", b.bootstrap, "-t", "missing", "--output", "json"], input="x\n")
    assert cp.returncode == 1


def test_produce_to_a_missing_partition_fails(broker):
    t = unique_topic("np")
    create_topic(broker.bootstrap, t, partitions=2)
    cp = strom(["produce", "-b", broker.bootstrap, "-t", t, "-p", "2"], input="x\n")
    assert "partition 2 does not exist" in one_error_line(cp)
    cp = strom(["consume", "-b", broker.bootstrap, "-t", t, "-p", "5", "-e"])
    assert "partition 5 does not exist" in one_error_line(cp)


@pytest.mark.parametrize("args", [
    ["topic", "--bogus", "list"],
    ["topic", "create"],
    ["topic", "create", "t", "--partitions", "0"],
    ["topic", "create", "t", "--config", "novalue"],
    ["produce"],
    ["produce", "-t", "t", "--acks", "2"],
    ["produce", "-t", "t", "-z", "brotli"],
    ["consume", "-t", "t", "-o", "soon"],
    ["consume", "-t", "t", "-o", "1", "--timestamp", "5"],
    ["cluster"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(args):
    cp = strom([*args, "-b", "127.0.0.1:1"])
    assert cp.returncode == 2, describe(cp)
    assert out(cp) == ""


def test_bad_format_strings_are_errors(broker):
    cp = strom(["consume", "-b", broker.bootstrap, "-t", "x", "-f", "%q"])
    assert "%q" in one_error_line(cp)


def test_unreachable_broker_is_a_one_line_error():
    port = free_port()
    start = time.monotonic()
    cp = strom(["topic", "list", "-b", f"127.0.0.1:{port}"])
    line = one_error_line(cp)
    assert f"127.0.0.1:{port}" in line and "refused" in line.lower(), line
    assert time.monotonic() - start < 10
    cp = strom(["produce", "-b", f"127.0.0.1:{port}", "-t", "x"], input="a\n")
    one_error_line(cp)
    cp = strom(["consume", "-b", f"127.0.0.1:{port}", "-t", "x", "-e"])
    one_error_line(cp)


def _serve(handler):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(30)

    def run():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            handler(conn)

    threading.Thread(target=run, daemon=True).start()
    return srv


def test_a_silent_broker_times_out():
    srv = _serve(lambda conn: time.sleep(5))
    try:
        start = time.monotonic()
        cp = strom(["topic", "list", "-b", f"127.0.0.1:{srv.getsockname()[1]}", "--request-timeout-ms", "500"])
        line = one_error_line(cp)
        assert "timed out after 500 ms" in line, line
        assert time.monotonic() - start < 5
    finally:
        srv.close()


def test_a_peer_that_is_not_kafka_is_named():
    def http(conn):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        time.sleep(1)

    srv = _serve(http)
    try:
        cp = strom(["cluster", "describe", "-b", f"127.0.0.1:{srv.getsockname()[1]}"])
        assert "not a Kafka broker" in one_error_line(cp)
    finally:
        srv.close()


def test_oversized_responses_are_refused():
    def huge(conn):
        data = conn.recv(1024)
        correlation = data[8:12]
        conn.sendall((0x7FFFFFF0).to_bytes(4, "big") + correlation)
        time.sleep(1)

    srv = _serve(huge)
    try:
        cp = strom(["topic", "list", "-b", f"127.0.0.1:{srv.getsockname()[1]}"])
        assert "more than the limit" in one_error_line(cp)
    finally:
        srv.close()


def test_help_lists_every_command_and_serve_is_unchanged():
    h = ok(strom(["--help"]))
    for cmd in ("serve", "topic", "cluster", "group", "produce", "consume"):
        assert re.search(rf"^\s+{cmd}\s", out(h), re.M), out(h)
    s = ok(strom(["serve", "--help"]))
    for flag in ("--config", "--data-dir", "--listeners", "--advertised-listeners", "--node-id", "--override"):
        assert flag in out(s)
    assert "--bootstrap" not in out(s)
    p = ok(strom(["produce", "--help"]))
    for flag in ("--key-separator", "--header", "--partition", "--compression", "--acks", "--batch-size",
                 "--linger-ms", "--file", "--bootstrap", "--output"):
        assert flag in out(p), flag
