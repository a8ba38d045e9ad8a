"""A committed metadata change whose publication fails on this node (here: the replica manager
cannot open a new partition's log) stays committed, as in Kafka: CreateTopics succeeds, the
failure is counted in strom_metadata_publish_errors_total, and /readyz answers 503 until a later
change publishes cleanly again."""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

from conftest import free_port
from helpers import admin, create_topic, unique_topic
from confluent_kafka.admin import NewTopic


def http_status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def publish_errors(port: int) -> float:
    status, body = http_status(port, "/metrics")
    assert status == 200, body
    m = re.search(r"^strom_metadata_publish_errors_total (\S+)$", body, re.M)
    assert m, body
    return float(m.group(1))


def test_a_failed_publication_keeps_the_change_and_holds_readiness(make_broker):
    port = free_port()
    broker = make_broker(**{"admin.http.listener": f"127.0.0.1:{port}"})
    assert http_status(port, "/readyz")[0] == 200
    assert publish_errors(port) == 0

    blocked = unique_topic("blocked")
    # A plain file where the partition's directory must go: its log cannot be created.
    (broker.data_dir / f"{blocked}-0").write_text("not a directory")
    client = admin(broker.bootstrap)
    futures = client.create_topics([NewTopic(blocked, 1, 1)])
    futures[blocked].result(20)  # raises on an error code: the commit is what is answered

    md = client.list_topics(timeout=10)
    assert blocked in md.topics, "the topic is committed"
    assert publish_errors(port) == 1
    status, body = http_status(port, "/readyz")
    assert status == 503, body
    assert "metadata publisher replica_manager failed" in body, body

    # Once the obstacle is gone, the next change opens the log and readiness comes back.
    (broker.data_dir / f"{blocked}-0").unlink()
    create_topic(broker.bootstrap, unique_topic("next"))
    deadline = time.monotonic() + 10
    while http_status(port, "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert http_status(port, "/readyz")[0] == 200
    assert publish_errors(port) == 1
    assert (broker.data_dir / f"{blocked}-0").is_dir()
