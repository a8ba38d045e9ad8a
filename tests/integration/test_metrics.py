"""/metrics against real clients and a real Prometheus (Debian's `prometheus` package): every
query of the Grafana dashboard returns data, every alert rule evaluates, and the series of a
deleted topic or group go away. docs/metrics.md lists the metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, free_port, port_accepts
from helpers import admin, consume_partitions, consumer, create_topic, produce_all, producer, unique_topic

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "strom.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "strom-rules.yaml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# What Grafana puts in for $__rate_interval at this scrape interval, with room.
RATE_WINDOW = "30s"
# The offset traffic() commits on each partition.
COMMITTED = 40


def http_get(port: int, path: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def scrape(port: int) -> dict:
    return {f.name: f for f in text_string_to_metric_families(http_get(port, "/metrics"))}


def samples(families: dict, name: str, **labels) -> list:
    f = families.get(name)
    if f is None:
        return []
    return [s for s in f.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def series_with(text: str, label: str, value: str) -> list[str]:
    needle = f'{label}="{value}"'
    return [line for line in text.splitlines() if not line.startswith("#") and needle in line]


def metrics_broker(make_broker, **overrides):
    admin_port = free_port()
    b = make_broker(**{"admin.http.listener": f"127.0.0.1:{admin_port}", **overrides})
    deadline = time.monotonic() + 10
    while not port_accepts(admin_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return b, admin_port


def traffic(bs: str, topic: str, group: str, partitions: int = 3) -> None:
    """Produce, consume part of it in a group and commit, so lag is above zero; and a fetch
    beyond the log end, which the broker answers with OFFSET_OUT_OF_RANGE."""
    create_topic(bs, topic, partitions=partitions)
    p = producer(bs, **{"linger.ms": 5})
    produce_all(p, [(f"k{i}".encode(), b"v" * 100, {}) for i in range(300)], topic)
    c = consumer(bs, **{"group.id": group, "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 100 and time.monotonic() < deadline:
        for m in c.consume(num_messages=50, timeout=0.5):
            if m.error() is None:
                got += 1
    assert got >= 100, f"consumed {got} of 300"
    # Known offsets on every partition (each has far more than this many of the 300 keys), so
    # the lag is known: 350 - 3 * COMMITTED.
    c.commit(offsets=[TopicPartition(topic, i, COMMITTED) for i in range(partitions)], asynchronous=False)
    c.close()
    produce_all(p, [(None, b"more", {}) for _ in range(50)], topic)
    c = consumer(bs, **{"auto.offset.reset": "error"})
    c.assign([TopicPartition(topic, 0, 1_000_000)])
    deadline = time.monotonic() + 10
    seen = False
    while not seen and time.monotonic() < deadline:
        for m in c.consume(num_messages=1, timeout=0.5):
            seen = seen or (m.error() is not None and m.error().code() == KafkaError._AUTO_OFFSET_RESET)
    c.close()
    assert seen, "the out-of-range fetch was not refused"


class Prometheus:
    def __init__(self, workdir: Path, target_port: int):
        self.port = free_port()
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            "scrape_configs:\n  - job_name: strom\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                if "Ready" in http_get(self.port, "/-/ready", timeout=2):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-5000:]

    def api(self, path: str, **params) -> dict:
        q = urllib.parse.urlencode(params)
        body = json.loads(http_get(self.port, f"/api/v1/{path}?{q}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", RATE_WINDOW).replace("$instance", ".*")
            out.append((panel["title"], expr))
    return out


@pytest.fixture
def prometheus_for(tmp_path):
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip("needs Debian's prometheus package (prometheus and promtool): "
                    "apt-get install prometheus, or ./scripts/install-test-deps.sh")
    started = []

    def start(target_port: int) -> Prometheus:
        d = tmp_path / f"prometheus{len(started)}"
        d.mkdir()
        p = Prometheus(d, target_port)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_dashboard_queries_return_data_and_alert_rules_evaluate(make_broker, prometheus_for):
    check = subprocess.run([PROMTOOL or "promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    b, admin_port = metrics_broker(make_broker, **{"metrics.partition.labels.enable": "true"})
    prom = prometheus_for(admin_port)
    # Prometheus' first scrape comes a few seconds after it is ready (target discovery is
    # batched): the traffic goes after it, so that counters have samples before and after.
    assert prom.wait_for('up{job="strom"} == 1'), prom.log_text()
    topic, group = unique_topic("metrics"), "metrics-" + unique_topic("g")
    traffic(b.bootstrap, topic, group)
    assert prom.wait_for(f'strom_consumer_group_lag{{group="{group}",topic="{topic}"}} > 0'), (
        [line for line in http_get(admin_port, "/metrics").splitlines() if "group" in line],
        prom.query("up"))
    # Rates need two samples of the counters after the traffic.
    assert prom.wait_for(f'rate(strom_topic_records_in_total{{topic="{topic}"}}[{RATE_WINDOW}]) > 0')

    empty = []
    for title, expr in dashboard_queries():
        if not prom.wait_for(expr, timeout=10):
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    errors = prom.query('strom_request_errors_total{api="Fetch",error="OFFSET_OUT_OF_RANGE"}')
    assert errors and float(errors[0]["value"][1]) >= 1, errors

    # Every rule evaluated without an error; StromBrokerRestarted (uptime < 5 min, no `for`)
    # fires, StromBrokerDown does not.
    rule_count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    deadline = time.monotonic() + 20
    while True:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        evaluated = [r for r in rules if not r.get("lastEvaluation", "").startswith("0001-")]
        if len(evaluated) == rule_count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) == rule_count, [r["name"] for r in rules]
    assert len(evaluated) == rule_count, [r["name"] for r in rules if r not in evaluated]
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad
    state = {r["name"]: r["state"] for r in rules}
    assert state["StromBrokerRestarted"] == "firing", state
    assert state["StromBrokerDown"] == "inactive", state

    # A deleted topic's series end (Prometheus marks them stale at the first scrape without
    # them), and so do those of a deleted group.
    a = admin(b.bootstrap)
    a.delete_consumer_groups([group], request_timeout=15)[group].result(15)
    a.delete_topics([topic], operation_timeout=15)[topic].result(15)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = prom.query(f'{{topic="{topic}"}}') + prom.query(f'{{group="{group}"}}')
        if not left:
            break
        time.sleep(0.5)
    assert not left, [s["metric"] for s in left]


def test_deleted_topics_and_groups_leave_metrics(make_broker):
    b, admin_port = metrics_broker(make_broker, **{"metrics.partition.labels.enable": "true"})
    topic, group = unique_topic("gone"), "gone-" + unique_topic("g")
    traffic(b.bootstrap, topic, group)

    text = http_get(admin_port, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("strom_topic_records_in", "strom_topic_bytes_in", "strom_topic_bytes_out",
                 "strom_topic_records_out"):
        assert samples(families, name, topic=topic), name
    assert samples(families, "strom_topic_records_in", topic=topic)[0].value == 350
    # The consumer read at least the 100 records of 100 bytes it counted.
    assert samples(families, "strom_topic_bytes_out", topic=topic)[0].value >= 100 * 100
    assert samples(families, "strom_topic_records_out", topic=topic)[0].value >= 100
    assert samples(families, "strom_topic_bytes_in", topic=topic)[0].value > 300 * 100
    assert samples(families, "strom_topic_partitions", topic=topic)[0].value == 3
    assert samples(families, "strom_topic_high_watermark", topic=topic)[0].value == 350
    assert len(samples(families, "strom_partition_high_watermark", topic=topic)) == 3
    # The cleaner's backlog is given for compacted topics only.
    assert samples(families, "strom_topic_cleaner_dirty_bytes", topic="__consumer_offsets")
    assert not samples(families, "strom_topic_cleaner_dirty_bytes", topic=topic)
    lag = samples(families, "strom_consumer_group_lag", group=group, topic=topic)
    assert lag and lag[0].value == 350 - 3 * COMMITTED, lag
    per_partition = samples(families, "strom_consumer_group_partition_lag", group=group, topic=topic)
    assert sum(s.value for s in per_partition) == lag[0].value
    assert max(s.value for s in per_partition) == samples(
        families, "strom_consumer_group_lag_max", group=group, topic=topic)[0].value
    committed = samples(families, "strom_consumer_group_committed_offset", group=group, topic=topic)
    assert sorted(s.value for s in committed) == [COMMITTED] * 3
    assert samples(families, "strom_consumer_group_topic_committed_offset", group=group, topic=topic)[0].value == 120
    assert samples(families, "strom_consumer_group_state", group=group)[0].labels["state"] == "Empty"
    assert samples(families, "strom_consumer_group_members", group=group)[0].value == 0
    assert samples(families, "strom_request_errors", api="Fetch", error="OFFSET_OUT_OF_RANGE")
    assert samples(families, "strom_build_info")[0].labels["commit"]
    assert samples(families, "strom_process_open_fds")[0].value > 0
    assert samples(families, "strom_disk_free_bytes")[0].value > 0
    if PROMTOOL:
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    a = admin(b.bootstrap)
    a.delete_consumer_groups([group], request_timeout=15)[group].result(15)
    a.delete_topics([topic], operation_timeout=15)[topic].result(15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        text = http_get(admin_port, "/metrics")
        left = series_with(text, "topic", topic) + series_with(text, "group", group)
        if not left:
            break
        time.sleep(0.2)
    assert not left, left


def test_per_partition_series_are_opt_in_and_bounded(make_broker):
    b, admin_port = metrics_broker(make_broker)
    topic = unique_topic("pp")
    create_topic(b.bootstrap, topic, partitions=3)
    families = scrape(admin_port)
    assert samples(families, "strom_topic_partitions", topic=topic)[0].value == 3
    assert not samples(families, "strom_partition_log_end_offset", topic=topic)
    assert samples(families, "strom_metrics_partition_labels_truncated")[0].value == 0
    b.stop()

    # Over the limit: the per-topic sums stay, the per-partition series are left out.
    b.overrides.update({"metrics.partition.labels.enable": "true", "metrics.partition.labels.max": "2"})
    b.start()
    deadline = time.monotonic() + 10
    while not port_accepts(admin_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    families = scrape(admin_port)
    assert samples(families, "strom_topic_partitions", topic=topic)[0].value == 3
    assert not samples(families, "strom_partition_log_end_offset")
    assert samples(families, "strom_metrics_partition_labels_truncated")[0].value == 1


def test_request_time_is_split_into_kafkas_phases(make_broker):
    """Kafka's RequestMetrics split: queue, local, remote (durability, long-poll), response
    queue, send. A parked fetch's wait shows as remote time, not local."""
    b, port = metrics_broker(make_broker)
    topic = unique_topic("phases")
    create_topic(b.bootstrap, topic, partitions=1)
    p = producer(b.bootstrap, acks="all")
    produce_all(p, [(b"k", b"v")] * 5, topic)
    # Nothing more arrives: every fetch past the end parks for fetch.wait.max.ms.
    c = consumer(b.bootstrap, **{"fetch.wait.max.ms": 400, "enable.partition.eof": False})
    c.assign([TopicPartition(topic, 0, 5)])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        c.poll(0.2)
    c.close()
    families = scrape(port)

    def value(name: str, suffix: str, api: str) -> float:
        found = [x.value for x in samples(families, name, api=api) if x.name == name + suffix]
        assert found, (name, suffix, api)
        return found[0]

    phases = ["strom_request_queue_time_seconds", "strom_request_local_time_seconds",
              "strom_request_remote_time_seconds", "strom_response_queue_time_seconds",
              "strom_response_send_time_seconds"]
    for name in phases:
        for api in ("Produce", "Fetch", "Metadata"):
            assert value(name, "_count", api) >= 1, (name, api)
    fetch_count = value("strom_request_remote_time_seconds", "_count", "Fetch")
    fetch_remote = value("strom_request_remote_time_seconds", "_sum", "Fetch")
    fetch_local = value("strom_request_local_time_seconds", "_sum", "Fetch")
    # At least a few fetches parked ~400 ms each; their handling itself is short.
    assert fetch_remote >= 0.8, (fetch_remote, fetch_count)
    assert fetch_local < fetch_remote / 4, (fetch_local, fetch_remote)
    # Metadata answers at once: no remote time.
    assert value("strom_request_remote_time_seconds", "_sum", "Metadata") == 0


def test_admin_and_metadata_refusals_are_counted_by_api_and_error(make_broker):
    """Every API's refusals reach strom_request_errors_total, the admin ones included."""
    b, port = metrics_broker(make_broker)
    topic = unique_topic("errs")
    create_topic(b.bootstrap, topic)
    a = admin(b.bootstrap)
    from confluent_kafka.admin import NewTopic
    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    with pytest.raises(Exception):
        fs[topic].result(10)
    fs = a.delete_topics([unique_topic("never")], operation_timeout=10)
    for f in fs.values():
        with pytest.raises(Exception):
            f.result(10)
    families = scrape(port)

    def errors(api: str, error: str) -> float:
        found = [x.value for x in samples(families, "strom_request_errors", api=api, error=error)
                 if x.name == "strom_request_errors_total"]
        return found[0] if found else 0

    assert errors("CreateTopics", "TOPIC_ALREADY_EXISTS") == 1
    assert errors("DeleteTopics", "UNKNOWN_TOPIC_OR_PARTITION") == 1


def records_out(port: int, topic: str) -> float:
    found = samples(scrape(port), "strom_topic_records_out", topic=topic)
    assert found, f"no strom_topic_records_out_total for {topic}"
    return found[0].value


def test_records_out_count_what_consumers_read(make_broker):
    """strom_topic_records_out_total counts the records of the batches fetched, from their
    headers: compressed batches by their record count (nothing is decompressed), a committed
    transaction's records without its marker, with librdkafka and with kafka-python."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    b, port = metrics_broker(make_broker)
    topic, other = unique_topic("rout"), unique_topic("rout-kp")
    create_topic(b.bootstrap, topic, partitions=3)
    create_topic(b.bootstrap, other, partitions=1)
    p = producer(b.bootstrap, **{"linger.ms": 20, "compression.type": "zstd"})
    produce_all(p, [(f"k{i}".encode(), b"v" * 200, {}) for i in range(300)], topic)
    t = producer(b.bootstrap, **{"transactional.id": "rout-" + unique_topic("tx"), "linger.ms": 5})
    t.init_transactions(30)
    t.begin_transaction()
    produce_all(t, [(b"tx", f"t{i}".encode(), {}) for i in range(7)], topic, partition=1)
    t.commit_transaction(30)
    produce_all(p, [(None, b"w" * 10, {}) for _ in range(50)], other)
    assert samples(scrape(port), "strom_topic_records_in", topic=topic)[0].value == 307
    # Nothing fetched yet.
    assert records_out(port, topic) == 0

    c = consumer(b.bootstrap, **{"isolation.level": "read_committed"})
    msgs = consume_partitions(c, [TopicPartition(topic, i, 0) for i in range(3)], expected=307)
    c.close()
    assert len(msgs) == 307
    # Each batch went out once, whole: exactly the records read, the marker not among them.
    assert records_out(port, topic) == 307

    k = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=10_000)
    k.assign([KTopicPartition(other, 0)])
    k.seek_to_beginning()
    got = 0
    deadline = time.monotonic() + 30
    while got < 50 and time.monotonic() < deadline:
        for recs in k.poll(timeout_ms=500).values():
            got += len(recs)
    k.close()
    assert got == 50
    assert records_out(port, other) == 50
    assert records_out(port, topic) == 307
