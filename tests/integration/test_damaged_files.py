"""Damaged files (issue 9, items 3 and 7): every scenario ends either in a refused start
with a one-line message saying what is wrong and how to recover, or in a recovery that keeps
every acknowledged record. Data is never deleted silently: after the documented recovery
step, the records are still there."""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import kafka_wire as kw
from conftest import strom_bin
from helpers import admin, consume_partitions, consumer, create_topic, produce_all, producer, unique_topic

N = 6000
META = "__cluster_metadata-0"


def _fill(broker, topic, n=N, start=0):
    p = producer(broker.bootstrap, **{"acks": "all", "linger.ms": 5, "batch.size": 4000})
    res = produce_all(p, [(None, b"value-%05d" % i) for i in range(start, start + n)], topic)
    assert [r[2] for r in res] == list(range(start, start + n))


def _read_all(broker, topic, n=N):
    c = consumer(broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, OFFSET_BEGINNING)], expected=n)
    c.close()
    return [(m.offset(), m.value()) for m in msgs]


def _expected(n=N):
    return [(i, b"value-%05d" % i) for i in range(n)]


def _digest(d: Path) -> dict[str, str]:
    """Hash of every segment file in a partition directory."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.glob("*.log"))}


def _start_refused(broker) -> str:
    """Starts the broker expecting it to refuse: returns the last line it printed."""
    broker.start(wait=False)
    rc = broker.proc.wait(30)
    assert rc != 0, f"strom started on damaged files:\n{broker.log_tail()}"
    lines = [l for l in broker.log_text().splitlines() if l.startswith("strom: ")]
    assert lines, broker.log_tail()
    return lines[-1]


def _storage(*args) -> subprocess.CompletedProcess:
    return subprocess.run([strom_bin(), "storage", *args], capture_output=True, text=True, timeout=120)


def _topic_with_data(make_broker, **overrides):
    broker = make_broker(**overrides)
    topic = unique_topic("dmg")
    create_topic(broker.bootstrap, topic)
    _fill(broker, topic)
    return broker, topic


# --- item 3: the metadata log and meta.properties ---------------------------------------


def _flip32(path: Path):
    b = bytearray(path.read_bytes())
    at = len(b) // 2
    for i in range(at, min(at + 32, len(b))):
        b[i] ^= 0xFF
    path.write_bytes(bytes(b))


def _truncate0(path: Path):
    os.truncate(path, 0)


def _overwrite(path: Path):
    path.write_bytes(os.urandom(path.stat().st_size))


@pytest.mark.parametrize("damage", ["flip32", "truncate0", "overwrite", "deleted"])
@pytest.mark.parametrize("stop", ["clean", "kill9"])
def test_damaged_metadata_log_refuses_start_and_recovers(make_broker, damage, stop):
    broker, topic = _topic_with_data(make_broker)
    broker.stop() if stop == "clean" else broker.kill9()
    part = broker.data_dir / f"{topic}-0"
    before = _digest(part)
    meta_dir = broker.data_dir / META
    if damage == "deleted":
        shutil.rmtree(meta_dir)
    else:
        seg = sorted(meta_dir.glob("*.log"))[0]
        {"flip32": _flip32, "truncate0": _truncate0, "overwrite": _overwrite}[damage](seg)

    line = _start_refused(broker)
    assert "metadata log" in line and "strom storage recover-metadata" in line, line
    assert "\n" not in line
    assert _digest(part) == before, "the partition's data was touched"
    assert not list(broker.data_dir.glob("*-stray")), "nothing set aside before recovery"

    r = _storage("recover-metadata", "--data-dir", str(broker.data_dir))
    assert r.returncode == 0, r.stderr
    assert f"rebuilt topic {topic}" in r.stdout, r.stdout
    if damage != "deleted":
        kept = list(broker.data_dir.glob(f"{META}.*-damaged"))
        assert len(kept) == 1 and sorted(kept[0].glob("*.log")), r.stdout

    broker.start()
    assert _read_all(broker, topic) == _expected()
    _fill(broker, topic, n=1, start=N)  # and it takes writes after the last offset
    assert _digest(part).keys() == before.keys()


@pytest.mark.parametrize("damage", ["missing", "garbage", "binary"])
def test_damaged_meta_properties_refuses_start_and_recovers(make_broker, damage):
    broker, topic = _topic_with_data(make_broker)
    cluster_id = admin(broker.bootstrap).list_topics(timeout=10).cluster_id
    assert cluster_id
    broker.stop()
    props = broker.data_dir / "meta.properties"
    if damage == "missing":
        props.unlink()
    elif damage == "garbage":
        props.write_text("this is not a properties file\n")
    else:
        props.write_bytes(os.urandom(64))

    line = _start_refused(broker)
    assert "meta.properties" in line and "strom storage recover-metadata" in line, line
    assert "--cluster-id" in line, line
    assert not props.exists() if damage == "missing" else props.exists()

    r = _storage("recover-metadata", "--data-dir", str(broker.data_dir), f"--cluster-id={cluster_id}")
    assert r.returncode == 0, r.stderr
    assert f"cluster.id={cluster_id}" in r.stdout, r.stdout
    if damage != "missing":
        assert list(broker.data_dir.glob("meta.properties.*-damaged")), "the damaged file was not kept"
    # The metadata log itself was sound: every record of it is kept, no topic rebuilt.
    assert "rebuilt topic" not in r.stdout, r.stdout

    broker.start()
    assert admin(broker.bootstrap).list_topics(timeout=10).cluster_id == cluster_id
    assert _read_all(broker, topic) == _expected()


def test_unknown_partition_directory_is_kept_as_a_stray(make_broker):
    broker, topic = _topic_with_data(make_broker)
    broker.stop()
    # A partition directory the metadata never mentioned (e.g. its topic's record was lost).
    ghost = broker.data_dir / "ghost-0"
    shutil.copytree(broker.data_dir / f"{topic}-0", ghost)
    (ghost / "partition.metadata").unlink()
    before = _digest(ghost)

    broker.start()
    strays = list(broker.data_dir.glob("ghost-0.*-stray"))
    assert len(strays) == 1 and re.fullmatch(r"ghost-0\.[0-9a-f]{32}-stray", strays[0].name), strays
    assert _digest(strays[0]) == before, "the stray's data changed"
    assert not ghost.exists()
    assert re.search(r"WARN.*stray.*ghost-0", broker.log_text()), broker.log_tail()
    assert _read_all(broker, topic) == _expected()
    broker.stop()

    # The recovery step takes it back as a topic of its own, with its records.
    r = _storage("recover-metadata", "--data-dir", str(broker.data_dir))
    assert r.returncode == 0, r.stderr
    assert "took back stray" in r.stdout and "rebuilt topic ghost" in r.stdout, r.stdout
    broker.start()
    assert _read_all(broker, "ghost") == _expected()
    assert _read_all(broker, topic) == _expected()


def test_only_a_replayed_delete_removes_a_directory(make_broker):
    broker, topic = _topic_with_data(make_broker)
    keep = unique_topic("keep")
    create_topic(broker.bootstrap, keep)
    _fill(broker, keep, n=10)
    broker.stop()
    backup = broker.workdir / "backup"
    shutil.copytree(broker.data_dir / f"{topic}-0", backup)
    broker.start()
    a = admin(broker.bootstrap)
    a.delete_topics([topic], operation_timeout=20, request_timeout=20)[topic].result(20)
    assert not (broker.data_dir / f"{topic}-0").exists(), "DeleteTopics removes the data"
    broker.stop()
    # The directory of the deleted topic id reappears (a crash between the delete record
    # and the removal): the replayed delete removes it again.
    shutil.copytree(backup, broker.data_dir / f"{topic}-0")
    broker.start()
    assert not (broker.data_dir / f"{topic}-0").exists()
    assert not list(broker.data_dir.glob(f"{topic}-0.*")), "nor is it kept as a stray"
    assert _read_all(broker, keep, n=10) == _expected(10)


# --- item 7: damage inside segments ------------------------------------------------------


def _batches(seg: Path):
    """(position, baseOffset, length) of each batch in a segment file."""
    b = seg.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(b):
        base = int.from_bytes(b[pos:pos + 8], "big", signed=True)
        length = int.from_bytes(b[pos + 8:pos + 12], "big", signed=True)
        out.append((pos, base, 12 + length))
        pos += 12 + length
    return out


def _sealed_segments(broker, topic):
    segs = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))
    assert len(segs) >= 3, segs
    return segs


SMALL_SEGMENTS = {"log.segment.bytes": 16384}


def test_flipped_bytes_are_found_by_verify_and_by_checked_fetches(make_broker):
    broker, topic = _topic_with_data(make_broker, **SMALL_SEGMENTS)
    broker.stop()
    seg = _sealed_segments(broker, topic)[0]
    pos, base, length = _batches(seg)[2]
    b = bytearray(seg.read_bytes())
    for i in range(pos + 70, pos + 102):
        b[i] ^= 0xFF
    seg.write_bytes(bytes(b))

    r = _storage("verify", "--data-dir", str(broker.data_dir), "--topic", topic)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{seg} position {pos} offset {base}" in r.stderr and "CRC" in r.stderr, r.stderr

    broker.overrides["log.fetch.verify.crc"] = "true"
    broker.start()
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    for _ in range(20):
        got += [m for m in c.consume(num_messages=1000, timeout=0.5) if m.error() is None]
    c.close()
    assert [m.offset() for m in got] == list(range(base)), "served exactly the batches before the bad one"
    assert re.search(rf"ERROR.*damaged record batch.*{re.escape(str(seg))}.*position={pos}", broker.log_text()), \
        broker.log_tail()
    assert seg.read_bytes() == bytes(b), "the damaged segment is kept as it is"


@pytest.mark.parametrize("damage", ["batch-length", "base-offset-backwards"])
def test_broken_chain_in_acknowledged_data_takes_only_that_partition_offline(make_broker, damage):
    broker, topic = _topic_with_data(make_broker, **SMALL_SEGMENTS)
    sound = unique_topic("sound")
    create_topic(broker.bootstrap, sound)
    _fill(broker, sound, n=10)
    broker.stop()
    segs = _sealed_segments(broker, topic)
    seg = segs[0]
    # The last batch of a sealed segment: start-up reads it (after the last index entry).
    pos, base, length = _batches(seg)[-1]
    b = bytearray(seg.read_bytes())
    if damage == "batch-length":
        b[pos + 8:pos + 12] = (1_000_000).to_bytes(4, "big")
    else:
        b[pos:pos + 8] = (base - 20).to_bytes(8, "big")
    seg.write_bytes(bytes(b))
    before = {s.name: s.read_bytes() for s in segs}

    broker.start()
    assert re.search(rf"ERROR.*partition offline.*{re.escape(str(seg))}: at byte {pos}.*recovery point",
                     broker.log_text()), broker.log_tail()
    # Every other partition serves as before.
    assert _read_all(broker, sound, n=10) == _expected(10)
    _fill(broker, sound, n=1, start=10)
    # The damaged one answers KAFKA_STORAGE_ERROR (56), as Kafka does for an offline log.
    with kw.Conn(broker.bootstrap) as conn:
        r = conn.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, kw.record_batch([kw.Record(b"x")])))
        assert kw.parse_produce_v3(r)[(topic, 0)][0] == 56
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        assert kw.parse_fetch_v4(r)[(topic, 0)][0] == 56
    broker.stop()
    assert {s.name: s.read_bytes() for s in segs} == before, "nothing truncated or deleted"
    assert (broker.data_dir / f"{topic}-0").is_dir() and not list(broker.data_dir.glob("*-stray"))

    r = _storage("verify", "--data-dir", str(broker.data_dir), "--topic", topic)
    assert r.returncode == 1 and f"{seg} position {pos}" in r.stderr, r.stdout + r.stderr


def test_rewritten_base_offset_is_found_by_verify(make_broker):
    broker, topic = _topic_with_data(make_broker, **SMALL_SEGMENTS)
    broker.stop()
    seg = _sealed_segments(broker, topic)[0]
    batches = _batches(seg)
    pos, base, _ = batches[1]
    b = bytearray(seg.read_bytes())
    b[pos:pos + 8] = (base + 20).to_bytes(8, "big")  # outside the CRC: hides 20 offsets
    seg.write_bytes(bytes(b))
    r = _storage("verify", "--data-dir", str(broker.data_dir), "--topic", topic)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{seg} position {batches[2][0]}" in r.stderr and "backwards" in r.stderr, r.stderr


def test_deleted_first_segment_is_warned_about_and_verify_fails(make_broker):
    broker, topic = _topic_with_data(make_broker, **SMALL_SEGMENTS)
    broker.stop()
    segs = _sealed_segments(broker, topic)
    second_base = int(segs[1].stem)
    for ext in (".log", ".index", ".timeindex"):
        segs[0].with_suffix(ext).unlink(missing_ok=True)

    r = _storage("verify", "--data-dir", str(broker.data_dir), "--topic", topic)
    assert r.returncode == 1 and "missing" in r.stderr, r.stdout + r.stderr
    broker.start()
    assert re.search(r"WARN.*segments are missing", broker.log_text()), broker.log_tail()
    c = consumer(broker.bootstrap)
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (second_base, N)
    c.close()


def test_verify_passes_on_sound_data(make_broker):
    broker, topic = _topic_with_data(make_broker, **SMALL_SEGMENTS)
    broker.stop()
    r = _storage("verify", "--data-dir", str(broker.data_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{topic}-0:" in r.stdout and "no problems" in r.stdout, r.stdout


def test_damage_before_the_last_index_entry_is_reported_when_read(make_broker):
    # One active segment; start-up reads only what follows its last index entry, so damage
    # further up is found when a fetch reaches it: ERROR with file and position, data kept.
    broker, topic = _topic_with_data(make_broker)
    broker.stop()
    seg = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))[-1]
    index = seg.with_suffix(".index").read_bytes()
    assert len(index) >= 8, "the test needs an index entry"
    last_indexed = int.from_bytes(index[-4:], "big")
    batches = [b for b in _batches(seg) if 0 < b[0] < last_indexed]
    assert batches, "no batch before the last index entry"
    pos, base, _ = batches[0]
    b = bytearray(seg.read_bytes())
    b[pos + 8:pos + 12] = (1_000_000).to_bytes(4, "big")
    seg.write_bytes(bytes(b))

    broker.start()
    c = consumer(broker.bootstrap)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    for _ in range(12):
        got += [m.offset() for m in c.consume(num_messages=1000, timeout=0.5) if m.error() is None]
    c.close()
    assert got == list(range(base)), "everything before the damage is served"
    assert re.search(rf"ERROR.*damaged data.*{re.escape(str(seg))}: at byte {pos}", broker.log_text()), \
        broker.log_tail()
    assert seg.read_bytes() == bytes(b)
    broker.stop()
    r = _storage("verify", "--data-dir", str(broker.data_dir), "--topic", topic)
    assert r.returncode == 1 and f"{seg} position {pos} offset {base}" in r.stderr, r.stdout + r.stderr


def test_recovered_metadata_keeps_committed_group_offsets(make_broker):
    broker, topic = _topic_with_data(make_broker)
    group = "g-" + unique_topic("grp")
    c = consumer(broker.bootstrap, **{"group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 4321)], asynchronous=False)
    c.close()
    broker.stop()
    shutil.rmtree(broker.data_dir / META)  # the whole metadata log lost
    line = _start_refused(broker)
    assert "strom storage recover-metadata" in line, line

    r = _storage("recover-metadata", "--data-dir", str(broker.data_dir))
    assert r.returncode == 0, r.stderr
    assert "rebuilt topic __consumer_offsets" in r.stdout, r.stdout
    broker.start()
    c = consumer(broker.bootstrap, **{"group.id": group})
    committed = c.committed([TopicPartition(topic, 0)], timeout=20)
    c.close()
    assert committed[0].offset == 4321
    assert _read_all(broker, topic) == _expected()
    a = admin(broker.bootstrap)
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets")
    configs = a.describe_configs([res])[res].result(20)
    assert configs["cleanup.policy"].value == "compact"
