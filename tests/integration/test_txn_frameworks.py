"""Stream-processing frameworks in exactly-once mode against the real binary (issue 13):
quixstreams (`processing_guarantee="exactly-once"`) and faust-streaming
(`processing_guarantee="exactly_once"`) each run a small pipeline, input topic -> upper-case
-> output topic. Both hung against Strom before transactions were served. Each runs in a
subprocess of its own (they install signal handlers and own their event loop), and the test
reads the output with a read_committed consumer: every input exactly once, nothing more.

The frameworks live in a venv of their own, `.venv-frameworks` (scripts/install-test-deps.sh),
because quixstreams pins an older confluent-kafka than the other tests use;
`STROM_FRAMEWORKS_PYTHON` names another interpreter."""

import os
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from helpers import consumer, create_topic, producer, unique_topic

RECORDS = 50
ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS_PYTHON = os.environ.get("STROM_FRAMEWORKS_PYTHON", str(ROOT / ".venv-frameworks/bin/python"))


def committed_output(bootstrap, topic, partitions=1, settle_s=0.0):
    c = consumer(bootstrap, **{"isolation.level": "read_committed"})
    out, eof = [], set()
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + 10 + settle_s
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is None:
                    out.append(m.value().decode())
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
            if len(eof) == partitions and settle_s == 0:
                break
    finally:
        c.close()
    return out


def run_pipeline(script, bootstrap, src, dst, tmp_path, timeout_s=120):
    """Start `script` (a framework's app) and wait until the output holds RECORDS committed
    records; then stop it and return the output after a settle, so late duplicates show."""
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(script))
    log = tmp_path / "app.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([FRAMEWORKS_PYTHON, str(path), bootstrap, src, dst, str(tmp_path / "state")],
                                stdout=logf, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + timeout_s
            got = []
            while time.monotonic() < deadline and proc.poll() is None:
                got = committed_output(bootstrap, dst)
                if len(got) >= RECORDS:
                    break
                time.sleep(1)
            # Keep it running a little: a framework that commits twice would show it now.
            time.sleep(3)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    text = log.read_text(errors="replace")
    final = committed_output(bootstrap, dst)
    assert len(got) >= RECORDS, (f"pipeline did not finish in {timeout_s}s: {len(got)} of {RECORDS} "
                                 f"outputs; exit {proc.returncode}; log tail:\n{text[-4000:]}")
    return final, text


def seed_input(bootstrap, src):
    p = producer(bootstrap)
    for i in range(RECORDS):
        p.produce(src, key=f"k{i}".encode(), value=f"rec-{i}".encode())
    assert p.flush(20) == 0


QUIX_APP = """
    import sys
    from quixstreams import Application

    bootstrap, src, dst, state = sys.argv[1:5]
    app = Application(broker_address=bootstrap, consumer_group="quix-" + src,
                      auto_offset_reset="earliest", processing_guarantee="exactly-once",
                      state_dir=state, auto_create_topics=False)
    inp = app.topic(src, value_deserializer="str", key_deserializer="str")
    out = app.topic(dst, value_serializer="str", key_serializer="str")
    sdf = app.dataframe(inp)
    sdf = sdf.apply(lambda v: v.upper())
    sdf.to_topic(out)
    app.run()
"""

FAUST_APP = """
    import sys
    import faust

    bootstrap, src, dst, state = sys.argv[1:5]
    app = faust.App("faust-" + src, broker="kafka://" + bootstrap, datadir=state,
                    processing_guarantee="exactly_once", store="memory://",
                    web_enabled=False, topic_partitions=1, topic_allow_declare=False,
                    consumer_auto_offset_reset="earliest")
    inp = app.topic(src, value_type=bytes, value_serializer="raw", key_serializer="raw")
    out = app.topic(dst, value_type=bytes, value_serializer="raw", key_serializer="raw")

    @app.agent(inp)
    async def upper(stream):
        async for key, value in stream.items():
            await out.send(key=key, value=value.upper())

    sys.argv = [sys.argv[0], "worker", "--loglevel", "info", "--without-web"]
    app.main()
"""


@pytest.mark.parametrize("framework, module, script", [
    ("quixstreams", "quixstreams", QUIX_APP),
    ("faust", "faust", FAUST_APP),
])
def test_framework_pipeline_exactly_once(broker, tmp_path, framework, module, script):
    probe = subprocess.run([FRAMEWORKS_PYTHON, "-c", f"import {module}"], capture_output=True, text=True) \
        if os.path.exists(FRAMEWORKS_PYTHON) else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"{framework} is not installed for {FRAMEWORKS_PYTHON} (scripts/install-test-deps.sh "
                    f"installs it): {probe.stderr.strip()[-300:] if probe else 'no such interpreter'}")
    src, dst = unique_topic(f"{framework}-in"), unique_topic(f"{framework}-out")
    create_topic(broker.bootstrap, src, 1)
    create_topic(broker.bootstrap, dst, 1)
    seed_input(broker.bootstrap, src)
    out, log = run_pipeline(script, broker.bootstrap, src, dst, tmp_path)
    assert sorted(out) == sorted(f"REC-{i}" for i in range(RECORDS)), log[-4000:]
