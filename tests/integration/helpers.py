"""Shared helpers for the integration tests: kcat runners, client configs,
produce/consume loops."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

KCAT = shutil.which("kcat") or shutil.which("kafkacat") or "kcat"


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- kcat -------------------------------------------------------------------

_new_librdkafka_dir: str | None = None


def bundled_librdkafka() -> str:
    """Path of the librdkafka shared library that the confluent-kafka wheel
    bundles (a current release, unlike Debian's)."""
    import confluent_kafka

    site = Path(confluent_kafka.__file__).resolve().parent.parent
    patterns = [
        str(site / "confluent_kafka.libs" / "librdkafka*.so*"),
        str(site / "confluent_kafka" / ".libs" / "librdkafka*.so*"),
        str(site / "confluent_kafka" / "librdkafka*.so*"),
    ]
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        if hits:
            return hits[0]
    raise FileNotFoundError(f"no librdkafka shared library found in the confluent-kafka wheel under {site}")


def new_librdkafka_env() -> dict[str, str]:
    """Environment that makes kcat load the wheel's librdkafka: a temp dir with
    a `librdkafka.so.1` symlink to it, put first on LD_LIBRARY_PATH."""
    global _new_librdkafka_dir
    if _new_librdkafka_dir is None:
        d = tempfile.mkdtemp(prefix="strom-librdkafka-")
        os.symlink(bundled_librdkafka(), os.path.join(d, "librdkafka.so.1"))
        _new_librdkafka_dir = d
    env = os.environ.copy()
    env["LD_LIBRARY_PATH"] = _new_librdkafka_dir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def kcat_librdkafka_version(env: dict[str, str] | None = None) -> str:
    out = subprocess.run([KCAT, "-V"], capture_output=True, text=True, env=env, timeout=10)
    m = re.search(r"librdkafka ([0-9][0-9.]*)", out.stdout + out.stderr)
    assert m, f"cannot find the librdkafka version in `kcat -V` output:\n{out.stdout}{out.stderr}"
    return m.group(1)


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def kcat(args: list[str], input: bytes | str | None = None, env: dict[str, str] | None = None,
         timeout: float = 30) -> subprocess.CompletedProcess:
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run([KCAT, *args], input=input, capture_output=True, env=env, timeout=timeout)


def describe(cp: subprocess.CompletedProcess) -> str:
    return (f"`{' '.join(map(str, cp.args))}` exited {cp.returncode}\n--- stdout ---\n"
            f"{cp.stdout.decode(errors='replace')}\n--- stderr ---\n{cp.stderr.decode(errors='replace')}")


def kcat_roundtrip(bootstrap: str, topic: str | None = None, env=None):
    """Produce one message with kcat and read it back: proof of a healthy broker."""
    topic = topic or unique_topic("health")
    payload = f"health-{uuid.uuid4().hex}"
    p = kcat(["-P", "-b", bootstrap, "-t", topic], input=payload + "\n", env=env)
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", bootstrap, "-t", topic, "-e", "-o", "beginning"], env=env)
    assert c.returncode == 0, describe(c)
    assert payload in c.stdout.decode(errors="replace").splitlines(), describe(c)


# --- confluent-kafka --------------------------------------------------------


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "client.id": "strom-it", "socket.timeout.ms": 10000,
            "message.timeout.ms": 30000}
    base.update(conf)
    return Producer(base)


# Consumers made by consumer(); conftest closes any left open after each test,
# so a failed test's consumer does not keep logging reconnect errors.
OPEN_CONSUMERS: list[Consumer] = []


def close_leftover_consumers():
    while OPEN_CONSUMERS:
        c = OPEN_CONSUMERS.pop()
        try:
            c.close()
        except RuntimeError:
            pass  # already closed


def consumer(bootstrap: str, **conf) -> Consumer:
    # group.id is mandatory in confluent-kafka even with assign(); nothing is
    # ever committed (group APIs are not required by these tests).
    base = {"bootstrap.servers": bootstrap, "group.id": "strom-it-" + uuid.uuid4().hex[:6],
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": True,
            "socket.timeout.ms": 10000, "client.id": "strom-it"}
    base.update(conf)
    c = Consumer(base)
    OPEN_CONSUMERS.append(c)
    return c


def admin(bootstrap: str, **conf) -> AdminClient:
    base = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}
    base.update(conf)
    return AdminClient(base)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None, timeout: float = 20):
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                         operation_timeout=timeout, request_timeout=timeout)
    fs[name].result(timeout)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 15):
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        last = t
        time.sleep(0.1)
    raise AssertionError(f"topic {name} with {partitions} partitions not in metadata after {timeout}s: {last}")


def produce_all(p: Producer, messages, topic: str, timeout: float = 60, **common):
    """Produce (key, value, kwargs) tuples; returns a list of delivery results
    (err, partition, offset) in send order. Fails on undelivered messages."""
    results: list = [None] * len(messages)

    def cb_for(i):
        def cb(err, msg):
            results[i] = (err, msg.partition(), msg.offset())
        return cb

    for i, m in enumerate(messages):
        key, value, kw = m if len(m) == 3 else (m[0], m[1], {})
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=cb_for(i), **common, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} messages still undelivered after {timeout}s"
    errs = [(i, r[0]) for i, r in enumerate(results) if r[0] is not None]
    assert not errs, f"{len(errs)} delivery errors, first: {errs[:3]}"
    return results


def consume_partitions(c: Consumer, tps: list[TopicPartition], expected: int | None = None,
                       timeout: float = 60, batch: int = 5000):
    """Assign `tps` (with their offsets) and read until every partition hit
    EOF (and, if given, `expected` messages were read). Raises on errors."""
    c.assign(tps)
    msgs = []
    eof = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in c.consume(num_messages=batch, timeout=0.5):
            err = m.error()
            if err is None:
                msgs.append(m)
            elif err.code() == KafkaError._PARTITION_EOF:
                eof.add((m.topic(), m.partition()))
            else:
                raise KafkaException(err)
        if len(eof) >= len(tps) and (expected is None or len(msgs) >= expected):
            if all((tp.topic, tp.partition) in eof for tp in tps):
                return msgs
    raise AssertionError(f"consume timed out after {timeout}s: {len(msgs)} messages (expected {expected}), "
                         f"EOF on {sorted(eof)} of {[(tp.topic, tp.partition) for tp in tps]}")
