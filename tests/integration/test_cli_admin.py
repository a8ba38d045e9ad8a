"""The `strom` CLI's everyday admin commands (issue 16) against the real broker:
broker configs (`cluster config get|set`), `topic delete-records`, offsets and
sizes in `topic describe`, `group reset-offsets --shift-by / --by-duration /
--to-current`, and `topic lag` across groups. Tables and JSON are checked for
their values, and cross-checked with confluent-kafka (librdkafka) where an
independent view exists: broker configs, watermarks, committed offsets.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from helpers import admin, consumer, create_topic, describe, produce_all, producer, unique_topic
from test_cli import NO_DELAY, as_json, committed, err, ok, one_error_line, out, strom, unique_group


def broker_configs(bs: str, name: str) -> dict:
    """librdkafka's view of a broker resource's configs: name -> ConfigEntry."""
    res = ConfigResource(ResourceType.BROKER, name)
    a = admin(bs)
    return a.describe_configs([res])[res].result(20)


def cfg_rows(cp) -> dict[str, list[str]]:
    """`cluster config get` table: CONFIG -> [VALUE, SOURCE, READ-ONLY, SENSITIVE]."""
    lines = out(cp).splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("CONFIG"))
    return {l.split()[0]: l.split()[1:] for l in lines[header + 1:] if l.strip()}


def by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["configs"]}


# --- cluster config -----------------------------------------------------------------------------


def test_cluster_config_get_shows_value_source_and_flags(broker):
    bs = broker.bootstrap
    cp = ok(strom(["cluster", "config", "get", "-b", bs, "num.partitions", "log.segment.bytes"]))
    assert out(cp).splitlines()[0] == "Configs of broker 0:"
    rows = cfg_rows(cp)
    assert set(rows) == {"num.partitions", "log.segment.bytes"}
    assert rows["num.partitions"] == ["1", "DEFAULT_CONFIG", "true", "false"]
    assert rows["log.segment.bytes"] == [str(1024 ** 3), "DEFAULT_CONFIG", "false", "false"]

    doc = as_json(strom(["cluster", "config", "get", "-b", bs, "--output", "json"]))
    assert doc["broker"] == 0 and doc["default"] is False
    mine = by_name(doc)
    theirs = broker_configs(bs, "0")
    # Every config, as librdkafka sees it.
    assert set(mine) == set(theirs)
    for name, e in theirs.items():
        assert mine[name]["value"] == e.value, name
        assert mine[name]["read_only"] == e.is_read_only, name
        assert mine[name]["sensitive"] == e.is_sensitive, name
        assert mine[name]["source"] == ConfigSource(e.source).name, name

    # An explicit broker id is the same broker.
    assert by_name(as_json(strom(["cluster", "config", "get", "-b", bs, "--broker", "0", "--output", "json"]))) \
        == mine


def test_cluster_config_set_default_and_per_broker_layers(broker):
    bs = broker.bootstrap
    get = lambda *a: by_name(as_json(strom(["cluster", "config", "get", "-b", bs, "--output", "json", *a])))

    done = ok(strom(["cluster", "config", "set", "-b", bs, "log.retention.ms=3600000", "log.segment.bytes=5000000"]))
    assert out(done) == ("Altered configs of every broker (cluster-wide default): set log.retention.ms=3600000; "
                         "set log.segment.bytes=5000000.\n")
    now = get("log.retention.ms", "log.segment.bytes")
    assert now["log.retention.ms"]["value"] == "3600000"
    assert now["log.retention.ms"]["source"] == "DYNAMIC_DEFAULT_BROKER_CONFIG"
    assert now["log.segment.bytes"]["value"] == "5000000"
    theirs = broker_configs(bs, "0")
    assert theirs["log.retention.ms"].value == "3600000"
    assert theirs["log.retention.ms"].source == 3  # DYNAMIC_DEFAULT_BROKER_CONFIG
    # A new topic takes the new default.
    t = unique_topic("cfg")
    ok(strom(["topic", "create", t, "-b", bs]))
    topic = as_json(strom(["topic", "describe", t, "-b", bs, "--all-configs", "--output", "json"]))[0]
    assert {c["name"]: c["value"] for c in topic["configs"]}["retention.ms"] == "3600000"

    # One broker over the default; the default layer stays and is its synonym.
    res = as_json(strom(["cluster", "config", "set", "-b", bs, "--broker", "0", "log.retention.ms=7200000",
                         "--output", "json"]))
    assert res == {"broker": 0, "default": False, "source": "DYNAMIC_BROKER_CONFIG",
                   "set_configs": {"log.retention.ms": "7200000"}, "deleted_configs": []}
    now = get("log.retention.ms")["log.retention.ms"]
    assert (now["value"], now["source"]) == ("7200000", "DYNAMIC_BROKER_CONFIG")
    assert [(s["source"], s["value"]) for s in now["synonyms"]][:2] == [
        ("DYNAMIC_BROKER_CONFIG", "7200000"), ("DYNAMIC_DEFAULT_BROKER_CONFIG", "3600000")]
    rows = cfg_rows(ok(strom(["cluster", "config", "get", "-b", bs, "log.retention.ms"])))
    assert rows == {"log.retention.ms": ["7200000", "DYNAMIC_BROKER_CONFIG", "false", "false"]}
    # --dynamic: only what was set, as kafka-configs.sh --describe without --all.
    assert cfg_rows(ok(strom(["cluster", "config", "get", "-b", bs, "--dynamic"]))) == {
        "log.retention.ms": ["7200000", "DYNAMIC_BROKER_CONFIG", "false", "false"],
        "log.segment.bytes": ["5000000", "DYNAMIC_DEFAULT_BROKER_CONFIG", "false", "false"],
    }

    # --default shows the cluster-wide layer only (Kafka's --entity-default).
    dflt = ok(strom(["cluster", "config", "get", "-b", bs, "--default"]))
    assert out(dflt).splitlines()[0] == "Cluster-wide default configs (dynamic):"
    assert cfg_rows(dflt) == {
        "log.retention.ms": ["3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG", "false", "false"],
        "log.segment.bytes": ["5000000", "DYNAMIC_DEFAULT_BROKER_CONFIG", "false", "false"],
    }
    doc = as_json(strom(["cluster", "config", "get", "-b", bs, "--default", "log.retention.ms", "--output", "json"]))
    assert doc["broker"] is None and doc["default"] is True
    assert [(c["name"], c["value"]) for c in doc["configs"]] == [("log.retention.ms", "3600000")]

    # Deleting the broker's value uncovers the default; deleting the default, Kafka's default.
    ok(strom(["cluster", "config", "set", "-b", bs, "--broker", "0", "--delete", "log.retention.ms"]))
    now = get("log.retention.ms")["log.retention.ms"]
    assert (now["value"], now["source"]) == ("3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG")
    done = ok(strom(["cluster", "config", "set", "-b", bs, "--delete", "log.retention.ms", "--delete",
                     "log.segment.bytes"]))
    assert out(done) == ("Altered configs of every broker (cluster-wide default): deleted log.retention.ms; "
                         "deleted log.segment.bytes.\n")
    now = get("log.retention.ms", "log.segment.bytes")
    assert now["log.retention.ms"]["source"] == "DEFAULT_CONFIG"
    assert (now["log.segment.bytes"]["value"], now["log.segment.bytes"]["source"]) == (
        str(1024 ** 3), "DEFAULT_CONFIG")
    assert "(none)" in out(ok(strom(["cluster", "config", "get", "-b", bs, "--default"])))
    assert broker_configs(bs, "0")["log.retention.ms"].source == 5  # DEFAULT_CONFIG


def test_cluster_config_errors(broker):
    bs = broker.bootstrap
    line = one_error_line(strom(["cluster", "config", "set", "-b", bs, "num.partitions=3"]))
    assert "num.partitions" in line and "INVALID_REQUEST" in line, line
    line = one_error_line(strom(["cluster", "config", "set", "-b", bs, "log.retention.ms=soon"]))
    assert "INVALID_CONFIG" in line and "soon" in line, line
    assert "no config no.such.config" in one_error_line(
        strom(["cluster", "config", "get", "-b", bs, "no.such.config"]))
    assert "broker 7" in one_error_line(strom(["cluster", "config", "get", "-b", bs, "--broker", "7"]))
    # Nothing was changed by the refused requests.
    assert by_name(as_json(strom(["cluster", "config", "get", "-b", bs, "--default", "--output", "json"]))) == {}


# --- offsets in topic describe, delete-records ---------------------------------------------------


def fill(bs: str, topic: str, counts: dict[int, int]):
    for p, n in counts.items():
        if n:
            ok(strom(["produce", "-b", bs, "-t", topic, "-p", str(p)], input="".join(f"v{i}\n" for i in range(n))))


def watermarks(bs: str, topic: str, p: int) -> tuple[int, int]:
    c = consumer(bs)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
    finally:
        c.close()


def test_topic_describe_shows_log_start_high_watermark_and_size(broker):
    bs = broker.bootstrap
    t = unique_topic("off")
    create_topic(bs, t, partitions=3)
    fill(bs, t, {0: 50, 1: 7, 2: 0})
    d = as_json(strom(["topic", "describe", t, "-b", bs, "--output", "json"]))[0]
    parts = {p["partition"]: p for p in d["partitions"]}
    assert [(parts[p]["log_start_offset"], parts[p]["high_watermark"]) for p in range(3)] == [
        (0, 50), (0, 7), (0, 0)]
    for p in range(3):
        assert (parts[p]["log_start_offset"], parts[p]["high_watermark"]) == watermarks(bs, t, p)
    # Each record batch is at least 61 bytes plus the records.
    assert parts[0]["size_bytes"] > 50 * 3 and parts[1]["size_bytes"] > 61 and parts[2]["size_bytes"] == 0

    text = out(ok(strom(["topic", "describe", t, "-b", bs])))
    assert re.search(r"^PARTITION\s+LEADER\s+REPLICAS\s+ISR\s+LOG-START-OFFSET\s+HIGH-WATERMARK\s+SIZE", text, re.M)
    assert re.search(rf"^0\s+0\s+0\s+0\s+0\s+50\s+{parts[0]['size_bytes']}$", text, re.M), text
    assert re.search(r"^2\s+0\s+0\s+0\s+0\s+0\s+0$", text, re.M), text

    ok(strom(["topic", "delete-records", t, "-b", bs, "-p", "0", "--before", "20"]))
    d = as_json(strom(["topic", "describe", t, "-b", bs, "--output", "json"]))[0]
    p0 = d["partitions"][0]
    assert (p0["log_start_offset"], p0["high_watermark"]) == (20, 50)


def test_delete_records(broker):
    bs = broker.bootstrap
    t = unique_topic("dr")
    create_topic(bs, t, partitions=3)
    fill(bs, t, {0: 50, 1: 30, 2: 10})

    cp = ok(strom(["topic", "delete-records", t, "-b", bs, "--partition", "0", "--before", "20"]))
    assert re.fullmatch(rf"TOPIC\s+PARTITION\s+LOW-WATERMARK\s+ERROR\n{t}\s+0\s+20\n", out(cp)), out(cp)
    assert watermarks(bs, t, 0) == (20, 50)
    c = consumer(bs, **{"auto.offset.reset": "earliest"})
    c.assign([TopicPartition(t, 0, -2)])  # OFFSET_BEGINNING
    first = None
    deadline = time.monotonic() + 20
    while first is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            first = (m.offset(), m.value())
    c.close()
    assert first == (20, b"v20")

    # Deleting below the log start changes nothing; the answer is the low watermark.
    res = as_json(strom(["topic", "delete-records", t, "-b", bs, "-p", "0", "-p", "1", "--before", "5",
                         "--output", "json"]))
    assert res == [{"topic": t, "partition": 0, "low_watermark": 20, "error": None},
                   {"topic": t, "partition": 1, "low_watermark": 5, "error": None}]

    res = as_json(strom(["topic", "delete-records", t, "-b", bs, "--all", "--before", "end", "--output", "json"]))
    assert [(r["partition"], r["low_watermark"]) for r in res] == [(0, 50), (1, 30), (2, 10)]
    assert [watermarks(bs, t, p) for p in range(3)] == [(50, 50), (30, 30), (10, 10)]

    # kafka-delete-records.sh's offset file, -1 meaning the high watermark.
    t2 = unique_topic("drf")
    create_topic(bs, t2, partitions=2)
    fill(bs, t2, {0: 10, 1: 10})
    f = broker.workdir / "offsets.json"
    f.write_text(json.dumps({"partitions": [{"topic": t2, "partition": 0, "offset": 4},
                                            {"topic": t2, "partition": 1, "offset": -1}], "version": 1}))
    res = as_json(strom(["topic", "delete-records", "-b", bs, "--offset-json-file", str(f), "--output", "json"]))
    assert [(r["topic"], r["partition"], r["low_watermark"]) for r in res] == [(t2, 0, 4), (t2, 1, 10)]

    # Past the high watermark: Kafka's OFFSET_OUT_OF_RANGE for that partition, exit 1.
    fill(bs, t2, {0: 2})
    cp = strom(["topic", "delete-records", t2, "-b", bs, "-p", "0", "--before", "13"])
    assert cp.returncode == 1, describe(cp)
    assert re.search(rf"^{t2}\s+0\s+-\s+.*OFFSET_OUT_OF_RANGE", out(cp), re.M), describe(cp)
    assert "OFFSET_OUT_OF_RANGE" in err(cp) and len(err(cp).splitlines()) == 1
    assert watermarks(bs, t2, 0) == (4, 12)

    assert "no partition 9" in one_error_line(strom(["topic", "delete-records", t2, "-b", bs, "-p", "9",
                                                     "--before", "1"]))
    assert "does not exist" in one_error_line(strom(["topic", "delete-records", "nope-" + t2, "-b", bs,
                                                     "--all", "--before", "1"]))
    f.write_text('{"partitions": [{"topic": "x", "partition": 0}]}')
    assert "offset" in one_error_line(strom(["topic", "delete-records", "-b", bs, "--offset-json-file", str(f)]))
    f.write_text('{"partitions": [{"topic": "x", "partition": 0, "offset": 1}, '
                 '{"topic": "x", "partition": 0, "offset": 2}]}')
    assert "twice" in one_error_line(strom(["topic", "delete-records", "-b", bs, "--offset-json-file", str(f)]))


# --- group reset-offsets: shift-by, by-duration, to-current ----------------------------------------


@pytest.fixture
def gbroker(make_broker):
    return make_broker(**NO_DELAY)


def commit(bs: str, group: str, offsets: dict[tuple[str, int], int]):
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    a = admin(bs)  # kept alive until the answer: librdkafka drops requests of a destroyed client
    deadline = time.monotonic() + 30
    while True:
        res = a.alter_consumer_group_offsets([req])[group].result(20)
        errors = [tp.error for tp in res.topic_partitions if tp.error is not None]
        if not errors:
            return
        # The first group use creates __consumer_offsets: COORDINATOR_NOT_AVAILABLE meanwhile, as in
        # Kafka, which librdkafka's admin API does not retry.
        assert all(e.retriable() for e in errors) and time.monotonic() < deadline, errors
        time.sleep(0.2)


def plan(cp) -> dict[int, tuple]:
    doc = as_json(cp)
    return {p["partition"]: (p["current_offset"], p["new_offset"]) for p in doc["partitions"]}


def test_reset_offsets_shift_by(gbroker):
    bs = gbroker.bootstrap
    t, g = unique_topic("sh"), unique_group()
    create_topic(bs, t, partitions=2)
    fill(bs, t, {0: 20, 1: 10})
    ok(strom(["topic", "delete-records", t, "-b", bs, "-p", "1", "--before", "2"]))
    commit(bs, g, {(t, 0): 5, (t, 1): 8})
    reset = lambda *a: strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, *a])

    assert plan(reset("--shift-by", "-3", "--output", "json")) == {0: (5, 2), 1: (8, 5)}
    # Clamped to [log start, log end], as Kafka does.
    assert plan(reset("--shift-by", "-100", "--output", "json")) == {0: (5, 0), 1: (8, 2)}
    assert plan(reset("--shift-by", "1000", "--output", "json")) == {0: (5, 20), 1: (8, 10)}
    # --to-offset is clamped the same way: partition 1 starts at 2 now.
    assert plan(reset("--to-offset", "1", "--output", "json")) == {0: (5, 1), 1: (8, 2)}
    dry = ok(reset("--shift-by", "4"))
    assert re.search(rf"^{g}\s+{t}\s+0\s+5\s+9$", out(dry), re.M) and "Dry run" in err(dry)
    assert committed(bs, g, t, 2) == {0: 5, 1: 8}
    ok(reset("--shift-by", "4", "--execute"))
    assert committed(bs, g, t, 2) == {0: 9, 1: 10}

    # A partition without a committed offset cannot be shifted (Kafka refuses too).
    g2 = unique_group()
    commit(bs, g2, {(t, 0): 3})
    line = one_error_line(strom(["group", "reset-offsets", g2, "-b", bs, "--topic", t, "--shift-by", "1"]))
    assert f"{t}[1]" in line and "no committed offset" in line, line
    assert plan(strom(["group", "reset-offsets", g2, "-b", bs, "--topic", f"{t}:0", "--shift-by", "1",
                       "--output", "json"])) == {0: (3, 4)}
    # --to-current keeps what is committed; the log end where there is nothing.
    assert plan(strom(["group", "reset-offsets", g2, "-b", bs, "--topic", t, "--to-current",
                       "--output", "json"])) == {0: (3, 3), 1: (None, 10)}


def test_reset_offsets_by_duration(gbroker):
    bs = gbroker.bootstrap
    t, g = unique_topic("dur"), unique_group()
    create_topic(bs, t, partitions=1)
    now_ms = int(time.time() * 1000)
    hour = 3600 * 1000
    p = producer(bs)
    # 10 records two days ago, 10 three hours ago, 10 a minute ago.
    msgs = [(None, f"old{i}".encode(), {"partition": 0, "timestamp": now_ms - 48 * hour}) for i in range(10)]
    msgs += [(None, f"mid{i}".encode(), {"partition": 0, "timestamp": now_ms - 3 * hour}) for i in range(10)]
    msgs += [(None, f"new{i}".encode(), {"partition": 0, "timestamp": now_ms - 60 * 1000}) for i in range(10)]
    produce_all(p, msgs, t)
    commit(bs, g, {(t, 0): 25})
    reset = lambda d: plan(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--by-duration", d,
                                  "--output", "json"]))
    assert reset("PT5M") == {0: (25, 20)}
    assert reset("PT1H") == {0: (25, 20)}
    assert reset("PT3H30M") == {0: (25, 10)}
    assert reset("P1DT1H") == {0: (25, 10)}
    assert reset("P3D") == {0: (25, 0)}
    assert reset("pt10.5s") == {0: (25, 30)}  # nothing that recent: the log end, as Kafka
    ok(strom(["group", "reset-offsets", g, "-b", bs, "--topic", t, "--by-duration", "PT4H", "--execute"]))
    assert committed(bs, g, t, 1) == {0: 10}


# --- topic lag ------------------------------------------------------------------------------------


def test_topic_lag_across_groups(gbroker):
    bs = gbroker.bootstrap
    t, other = unique_topic("lag"), unique_topic("other")
    create_topic(bs, t, partitions=2)
    create_topic(bs, other, partitions=1)
    assert out(ok(strom(["topic", "lag", t, "-b", bs]))) == f"No group has committed offsets on {t}.\n"
    fill(bs, t, {0: 10, 1: 4})
    fill(bs, other, {0: 5})
    ga, gb, gc = sorted(unique_group(x) for x in ("a", "b", "c"))
    commit(bs, ga, {(t, 0): 3, (t, 1): 4})
    commit(bs, gb, {(t, 0): 10})
    commit(bs, gc, {(other, 0): 1})

    doc = as_json(strom(["topic", "lag", t, "-b", bs, "--output", "json"]))
    assert doc["topic"] == t
    mine = {g["group"]: g for g in doc["groups"] if g["group"] in (ga, gb, gc)}
    assert set(mine) == {ga, gb}
    assert (mine[ga]["total_lag"], mine[ga]["max_lag"], mine[ga]["state"]) == (7, 7, "Empty")
    assert mine[ga]["partitions"] == [
        {"partition": 0, "current_offset": 3, "log_end_offset": 10, "lag": 7},
        {"partition": 1, "current_offset": 4, "log_end_offset": 4, "lag": 0}]
    assert (mine[gb]["total_lag"], mine[gb]["max_lag"]) == (0, 0)
    assert [p["partition"] for p in mine[gb]["partitions"]] == [0]

    # An active consumer's commits count as well.
    gd = unique_group("d")
    c = consumer(bs, **{"group.id": gd, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                        "enable.partition.eof": False})
    c.subscribe([t])
    got = 0
    deadline = time.monotonic() + 30
    while got < 6 and time.monotonic() < deadline:
        for m in c.consume(num_messages=6 - got, timeout=0.5):
            if m.error() is None:
                got += 1
                c.commit(message=m, asynchronous=False)
    assert got == 6
    fill(bs, t, {1: 3})
    doc = as_json(strom(["topic", "lag", t, "-b", bs, "--output", "json"]))
    mine = {g["group"]: g for g in doc["groups"]}
    c.close()
    assert mine[gd]["state"] == "Stable"
    ends = {0: 10, 1: 7}
    assert mine[gd]["total_lag"] == sum(ends[p["partition"]] - p["current_offset"]
                                        for p in mine[gd]["partitions"])
    assert mine[ga]["total_lag"] == 10

    text = out(ok(strom(["topic", "lag", t, "-b", bs])))
    assert re.search(rf"^{ga}\s+Empty\s+2\s+10\s+7$", text, re.M), text
    assert re.search(rf"^{gb}\s+Empty\s+1\s+0\s+0$", text, re.M), text
    assert re.search(rf"^{ga}\s+1\s+4\s+7\s+3$", text, re.M), text
    assert gc not in text

    assert "does not exist" in one_error_line(strom(["topic", "lag", "nope-" + t, "-b", bs]))


# --- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["cluster", "config"],
    ["cluster", "config", "set"],
    ["cluster", "config", "set", "novalue"],
    ["cluster", "config", "set", "a=1", "--broker", "-1"],
    ["cluster", "config", "get", "--broker", "x"],
    ["cluster", "config", "get", "--broker", "0", "--default"],
    ["topic", "delete-records", "t", "--before", "3"],
    ["topic", "delete-records", "t", "-p", "0"],
    ["topic", "delete-records", "t", "-p", "0", "--all", "--before", "1"],
    ["topic", "delete-records", "t", "-p", "0", "--before", "-5"],
    ["topic", "delete-records", "t", "--offset-json-file", "f.json"],
    ["topic", "lag"],
    ["group", "reset-offsets", "g", "--topic", "t", "--shift-by", "x"],
    ["group", "reset-offsets", "g", "--topic", "t", "--shift-by", "1", "--to-earliest"],
    ["group", "reset-offsets", "g", "--topic", "t", "--by-duration", "1h"],
    ["group", "reset-offsets", "g", "--topic", "t", "--by-duration", "PT1M1H"],
])
def test_usage_errors_exit_2(args):
    cp = strom([*args, "-b", "127.0.0.1:1"])
    assert cp.returncode == 2, describe(cp)
    assert out(cp) == ""
    lines = err(cp).splitlines()
    if args[-1] not in ("config", "set"):  # bare subcommands print their help
        assert len(lines) == 1 and lines[0].startswith("strom: "), describe(cp)
