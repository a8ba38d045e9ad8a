"""Cluster mode with shared storage (issue 11): Fetch from any broker. Every live broker
reads any partition's committed batches, so a follower serves consumers (KIP-392), and the
leader sends a consumer that names its `client.rack` to a broker in that rack when
`replica.selector.class` is Kafka's RackAwareReplicaSelector. Also the seed's walkthrough run
against broker 2 of three.

Three real brokers (racks r1, r2, r3) over a real PostgreSQL and a real S3-compatible server
(s3s-fs), as in test_cluster_faults.py; clients are confluent-kafka, kcat and raw frames
(kafka_wire.py).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition

import kafka_wire as kw
from conftest import free_port
from helpers import describe, kcat
from test_cluster_faults import SharedCluster, create, leaders, postgres, s3  # noqa: F401 (fixtures)
from test_cluster_metadata import metadata, wait_for

import pytest

RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


@pytest.fixture
def cluster(postgres, s3, make_broker):  # noqa: F811
    c = SharedCluster(make_broker, postgres, s3)
    for i in range(3):
        c.add(**{"broker.rack": f"r{i + 1}", "replica.selector.class": RACK_AWARE,
                 "admin.http.listener": f"127.0.0.1:{free_port()}"})
    return c


def node_ids(c: SharedCluster) -> dict[int, object]:
    """Node id -> the fixture's broker, matched by port."""
    md = metadata(c.brokers[0])
    by_port = {b.port: b for b in c.brokers}
    return {nid: by_port[bm.port] for nid, bm in md.brokers.items()}


def bytes_out(b, topic: str) -> float:
    host, port = b.admin
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("strom_topic_bytes_out_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def produce(bootstrap: str, topic: str, partition: int, values: list[bytes]):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "compression.type": "none", "linger.ms": 5})
    errors = []
    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(60) == 0
    assert not errors, errors


def raw_fetch(b, topic: str, partition: int, offset: int, max_wait_ms: int = 100):
    with kw.Conn(b.bootstrap, timeout=30) as conn:
        r = conn.request(kw.FETCH, 4, kw.fetch_v4_body(topic, partition, offset, max_wait_ms=max_wait_ms))
        return kw.parse_fetch_v4(r)[(topic, partition)]


def values_of(records: bytes) -> list[bytes]:
    out = []
    for batch in kw.parse_batches(records or b""):
        out += [rec.value for _, rec in kw.decode_uncompressed_records(batch)]
    return out


def test_the_brokers_racks_are_in_metadata(cluster):
    """broker.rack is registered with the cluster and every broker's Metadata shows it."""
    m = kcat(["-L", "-b", cluster.brokers[1].bootstrap])
    assert m.returncode == 0, describe(m)
    ports = {b.port: f"r{i + 1}" for i, b in enumerate(cluster.brokers)}
    wire_racks = {}
    with kw.Conn(cluster.brokers[2].bootstrap) as conn:
        # Metadata v4 names each broker's rack after host and port.
        r = conn.request(kw.METADATA, 4, kw.metadata_body([], 4))
        r.i32()  # throttle
        for _ in range(r.i32()):
            r.i32()  # node id
            r.string()  # host
            port = r.i32()
            wire_racks[port] = r.string()
    assert wire_racks == ports, (wire_racks, ports)


def test_a_follower_serves_fetches_and_wakes_on_the_leaders_commits(cluster):
    topic = "follower-fetch"
    create(cluster, topic, partitions=1)
    by_id = node_ids(cluster)
    leader = leaders(cluster.brokers[0], topic)[0]
    follower = next(b for nid, b in by_id.items() if nid != leader)
    values = [f"v{i}".encode() for i in range(50)]
    produce(by_id[leader].bootstrap, topic, 0, values)

    # The follower answers with the records and the leader's high watermark.
    err, hw, records = wait_for(lambda: (lambda f: f if f[1] == 50 else None)(raw_fetch(follower, topic, 0, 0)),
                                30, "the follower's high watermark reaches 50")
    assert err == 0
    assert values_of(records) == values
    err, leader_hw, _ = raw_fetch(by_id[leader], topic, 0, 0)
    assert (err, leader_hw) == (0, hw)

    # A fetch parked on the follower at the end wakes when the leader commits more.
    later = threading.Timer(1.0, lambda: produce(by_id[leader].bootstrap, topic, 0, [b"late"]))
    later.start()
    started = time.monotonic()
    err, hw, records = raw_fetch(follower, topic, 0, 50, max_wait_ms=20000)
    waited = time.monotonic() - started
    later.join()
    assert err == 0, err
    assert values_of(records) == [b"late"], records
    assert hw == 51
    assert 0.5 < waited < 15, waited


def test_a_consumer_with_client_rack_fetches_from_its_racks_broker(cluster):
    """confluent-kafka with client.rack=r2 is sent by the leader (preferred_read_replica) to
    the r2 broker: every byte it reads comes from there, none from the leader."""
    topic = "rack-fetch"
    create(cluster, topic, partitions=6)
    by_id = node_ids(cluster)
    r2 = cluster.brokers[1]
    r2_id = next(nid for nid, b in by_id.items() if b is r2)
    led = leaders(cluster.brokers[0], topic)
    partition, leader = next((p, l) for p, l in sorted(led.items()) if l != r2_id)
    values = [f"r{i}".encode() * 20 for i in range(200)]
    produce(by_id[leader].bootstrap, topic, partition, values)
    before_leader, before_r2 = bytes_out(by_id[leader], topic), bytes_out(r2, topic)

    c = Consumer({"bootstrap.servers": by_id[leader].bootstrap, "group.id": "rack-fetch",
                  "client.rack": "r2", "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(values) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
        assert got == values
    finally:
        c.close()
    leader_out = bytes_out(by_id[leader], topic) - before_leader
    r2_out = bytes_out(r2, topic) - before_r2
    assert r2_out >= sum(len(v) for v in values), (r2_out, leader_out)
    assert leader_out == 0, (r2_out, leader_out)


def test_without_the_selector_consumers_stay_on_the_leader(postgres, s3, make_broker):  # noqa: F811
    """Kafka's default (no replica.selector.class): the leader serves, client.rack or not."""
    c = SharedCluster(make_broker, postgres, s3)
    for i in range(2):
        c.add(**{"broker.rack": f"r{i + 1}", "admin.http.listener": f"127.0.0.1:{free_port()}"})
    topic = "leader-only"
    create(c, topic, partitions=1)
    by_id = node_ids(c)
    leader = leaders(c.brokers[0], topic)[0]
    other = next(b for nid, b in by_id.items() if nid != leader)
    other_rack = f"r{c.brokers.index(other) + 1}"
    values = [b"x" * 100] * 50
    produce(by_id[leader].bootstrap, topic, 0, values)
    cons = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": "leader-only", "client.rack": other_rack,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        cons.assign([TopicPartition(topic, 0, 0)])
        got = 0
        deadline = time.monotonic() + 60
        while got < len(values) and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and m.error() is None:
                got += 1
        assert got == len(values)
    finally:
        cons.close()
    assert bytes_out(other, topic) == 0
    assert bytes_out(by_id[leader], topic) >= 5000


def test_seed_walkthrough_against_broker_2(cluster):
    """The seed's kcat commands, all through broker 2 of three."""
    b2 = cluster.brokers[1].bootstrap
    p = kcat(["-P", "-b", b2, "-t", "test"], input="hello world!\n")
    assert p.returncode == 0, describe(p)
    c = wait_for(lambda: (lambda r: r if r.returncode == 0 and r.stdout else None)(
        kcat(["-C", "-b", b2, "-t", "test", "-e"])), 30, "kcat consumes through broker 2")
    assert c.stdout.decode().splitlines() == ["hello world!"], describe(c)
    # The fixture's num.partitions is 6 (the seed's broker has 1): the line is on one of them.
    ends = re.findall(r"Reached end of topic test \[(\d+)\] at offset (\d+)", c.stdout.decode() + c.stderr.decode())
    assert sorted(int(o) for _, o in ends) == [0, 0, 0, 0, 0, 1], describe(c)

    # Six partitions (num.partitions) so the leaders are seen spread over the three brokers.
    p = kcat(["-P", "-b", b2, "-t", "spread"], input="a\nb\nc\n")
    assert p.returncode == 0, describe(p)
    m = kcat(["-L", "-b", b2])
    assert m.returncode == 0, describe(m)
    out = m.stdout.decode()
    assert re.search(r"^\s*3 brokers:\s*$", out, re.M), describe(m)
    for b in cluster.brokers:
        assert re.search(rf"^\s*broker \d+ at {re.escape(b.bootstrap)}", out, re.M), describe(m)
    section = out.split('topic "spread"', 1)[1].split("topic ", 1)[0]
    spread_leaders = re.findall(r"partition \d+, leader (\d+), replicas: ([\d,]+), isrs: ([\d,]+)", section)
    assert len(spread_leaders) == 6, describe(m)
    assert len({lead for lead, _, _ in spread_leaders}) == 3, describe(m)
    for _, replicas, isrs in spread_leaders:
        assert len(replicas.split(",")) == 3 and len(isrs.split(",")) == 3, describe(m)
