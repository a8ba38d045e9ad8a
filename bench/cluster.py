#!/usr/bin/env python3
"""A first measurement of cluster mode on shared storage (issue 11): 1 and 3 `strom serve`
brokers over a real PostgreSQL and s3s-fs on loopback; an idempotent acks=all confluent-kafka
producer's throughput and per-record latency (produce call to delivery report: p50, p99), then
a consumer's throughput reading it all back. For scale, the same producer and consumer against
one single-node broker on local disk.

    STROM_BIN=target/debug/strom .venv/bin/python bench/cluster.py [--seconds 10] [--size 1024]
        [--in-flight 1,4]

Prints one JSON line per scenario. The follow-up issue builds the full benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import pytest  # noqa: E402  (the helpers call pytest.skip when a tool is missing)
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import Broker  # noqa: E402
from test_cluster_faults import ACCESS_KEY, BUCKET, S3, SECRET_KEY  # noqa: E402
from test_cluster_metadata import Postgres  # noqa: E402

PARTITIONS = 6


def start_brokers(tag: str, n: int, work: Path, pg: Postgres | None, s3: S3 | None,
                  in_flight: int | None = None) -> list[Broker]:
    brokers = []
    url = pg.url(pg.create_database()) if pg else None
    for i in range(n):
        overrides = {"num.partitions": str(PARTITIONS)}
        env = {}
        if pg:
            env = {"STROM_CLUSTER_METADATA_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
            overrides.update({
                "broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "3000",
                "object.store.url": f"s3://{BUCKET}/{tag}-{int(time.time())}",
                "object.store.endpoint": s3.endpoint, "object.store.path.style": "true",
            })
            if in_flight is not None:
                overrides["object.store.produce.max.in.flight.objects"] = str(in_flight)
        b = Broker(work / f"{tag}-{i}", overrides=overrides, env=env, name=f"b{i}")
        b.start()
        brokers.append(b)
    if pg:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = AdminClient({"bootstrap.servers": brokers[0].bootstrap}).list_topics(timeout=10)
            if len(md.brokers) == n:
                break
            time.sleep(0.2)
    return brokers


def run(bootstrap: str, seconds: float, size: int) -> dict:
    topic = f"bench-{int(time.time() * 1000)}"
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    time.sleep(1)
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "queue.buffering.max.messages": 200000})
    latencies = []
    value = os.urandom(size)

    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        t = time.monotonic()
        try:
            p.produce(topic, value=value, partition=sent % PARTITIONS,
                      on_delivery=lambda e, m, t=t: (latencies.append(time.monotonic() - t) if e is None else None))
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 1000 == 0:
            p.poll(0)
    p.flush(120)
    produce_s = time.monotonic() - start
    acked = len(latencies)
    # Latency at a fixed, unsaturated rate (the throughput phase's latencies are mostly the
    # client's own queue).
    paced = []
    rate = 500
    pstart = time.monotonic()
    for i in range(int(rate * 4)):
        due = pstart + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t = time.monotonic()
        p.produce(topic, value=value, partition=i % PARTITIONS,
                  on_delivery=lambda e, m, t=t: (paced.append(time.monotonic() - t) if e is None else None))
        p.poll(0)
    p.flush(60)
    paced.sort()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
    got = 0
    cstart = time.monotonic()
    while got < acked + len(paced) and time.monotonic() - cstart < 120:
        for m in c.consume(10000, 1.0):
            if not m.error():
                got += 1
    consume_s = time.monotonic() - cstart
    c.close()
    lat = sorted(latencies)
    return {
        "records": acked, "errors": sent - acked, "record_bytes": size,
        "produce_records_per_s": round(acked / produce_s),
        "produce_mb_per_s": round(acked * size / produce_s / 1e6, 2),
        "produce_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "produce_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1) if lat else None,
        "paced_rate_per_s": rate,
        "paced_p50_ms": round(statistics.median(paced) * 1000, 1) if paced else None,
        "paced_p99_ms": round(paced[int(len(paced) * 0.99) - 1] * 1000, 1) if paced else None,
        "consumed": got,
        "consume_records_per_s": round(got / consume_s),
        "consume_mb_per_s": round(got * size / consume_s / 1e6, 2),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--in-flight", default="1,4",
                    help="object.store.produce.max.in.flight.objects values to run the shared "
                         "scenarios with (1: one intake object at a time, the unpipelined intake)")
    args = ap.parse_args()
    in_flights = [int(v) for v in args.in_flight.split(",") if v]
    work = Path(tempfile.mkdtemp(prefix="strom-bench-cluster-"))
    try:
        pg, s3 = Postgres(), S3()
    except pytest.skip.Exception as e:
        sys.exit(f"cannot run: {e}")
    try:
        scenarios = [("local", "single-node local disk", 1, False, None)]
        for n in (1, 3):
            for k in in_flights:
                scenarios.append((f"shared{n}-{k}", f"shared storage, {n} broker{'s' if n > 1 else ''}",
                                  n, True, k))
        local = None
        for tag, name, n, shared, in_flight in scenarios:
            brokers = start_brokers(tag, n, work, pg if shared else None, s3 if shared else None,
                                    in_flight)
            try:
                result = run(",".join(b.bootstrap for b in brokers), args.seconds, args.size)
            finally:
                for b in brokers:
                    b.cleanup()
            if local is None:
                local = result
            ratios = {
                "produce_vs_local": round(result["produce_mb_per_s"] / local["produce_mb_per_s"], 2)
                if local["produce_mb_per_s"] else None,
                "consume_vs_local": round(result["consume_mb_per_s"] / local["consume_mb_per_s"], 2)
                if local["consume_mb_per_s"] else None,
            }
            print(json.dumps({"scenario": name, "brokers": n, "max_in_flight_objects": in_flight,
                              **result, **ratios}), flush=True)
    finally:
        s3.cleanup()
        pg.cleanup()
        # The brokers' data (close to 1 GB a run) is not kept.
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
