#!/usr/bin/env python3
"""What parked fetches cost a broker while another topic takes writes.

`--consumers` consumers (aiokafka, in a process of their own) each long-poll one idle topic
(fetch.max.wait.ms 500, fetch.min.bytes 1) while one producer (confluent-kafka, acks=all)
writes `--messages` records one at a time to another topic. Reported: the broker's CPU seconds
(utime + stime from /proc/PID/stat) while the producer runs and over the same time with the
consumers parked and nothing written, and the producer's p50 / p99 latency (send to delivery
report).

    .venv/bin/python bench/parked_fetch.py --strom target/debug/strom
    .venv/bin/python bench/parked_fetch.py --strom target/debug/strom --consumers 200 --messages 3000

Clients and broker share the machine; compare runs on the same machine, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name.
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def idle_topic(i: int) -> str:
    return f"idle-{i:04d}"


async def park(bootstrap: str, consumers: int, ready_file: str) -> None:
    """Child process: `consumers` consumers, each assigned partition 0 of its own idle topic,
    polling until killed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    clients = []
    for i in range(consumers):
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=500, fetch_min_bytes=1, auto_offset_reset="latest",
                             request_timeout_ms=30000)
        await c.start()
        c.assign([TopicPartition(idle_topic(i), 0)])
        clients.append(c)

    async def poll(c):
        while True:
            await c.getmany(timeout_ms=1000)

    tasks = [asyncio.create_task(poll(c)) for c in clients]
    Path(ready_file).write_text("ready")
    await asyncio.gather(*tasks)


def run(args) -> dict:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    work = Path(tempfile.mkdtemp(prefix="strom-parked-"))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = subprocess.Popen(
        [args.strom, "serve", "--data-dir", str(work / "data"),
         "--override", f"listeners=PLAINTEXT://{bootstrap}",
         "--override", "admin.http.listener=", "--override", "gateway.listener="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parked = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("broker did not start")
                time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [idle_topic(i) for i in range(args.consumers)] + ["busy"]
        for f in admin.create_topics([NewTopic(n, 1) for n in names], request_timeout=60).values():
            f.result(60)

        ready = work / "ready"
        parked = subprocess.Popen([sys.executable, __file__, "--park", bootstrap,
                                   "--consumers", str(args.consumers), "--ready-file", str(ready)])
        deadline = time.monotonic() + 120
        while not ready.exists():
            if time.monotonic() > deadline or parked.poll() is not None:
                raise RuntimeError("consumers did not start")
            time.sleep(0.1)
        time.sleep(3)  # every consumer past its first fetch, parked

        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
        producer.produce("busy", b"warm-up")
        producer.flush(10)

        latencies: list[float] = []
        cpu_before = cpu_seconds(broker.pid)
        started = time.monotonic()
        for i in range(args.messages):
            sent = time.monotonic()
            done: list[float] = []
            producer.produce("busy", value=b"x" * 100, key=str(i).encode(),
                             on_delivery=lambda err, _msg: done.append(time.monotonic()) if err is None else None)
            producer.flush(10)
            if not done:
                raise RuntimeError(f"message {i} not delivered")
            latencies.append((done[0] - sent) * 1000)
        busy_s = time.monotonic() - started
        busy_cpu = cpu_seconds(broker.pid) - cpu_before

        cpu_before = cpu_seconds(broker.pid)
        time.sleep(busy_s)
        idle_cpu = cpu_seconds(broker.pid) - cpu_before

        producer.flush(10)
        del producer, admin
        latencies.sort()
        return {
            "consumers": args.consumers,
            "messages": args.messages,
            "produce_seconds": round(busy_s, 2),
            "broker_cpu_s_while_producing": round(busy_cpu, 2),
            "broker_cpu_s_idle_same_time": round(idle_cpu, 2),
            "produce_p50_ms": round(statistics.median(latencies), 2),
            "produce_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        }
    finally:
        if parked is not None:
            parked.kill()
            parked.wait(10)
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strom", default="target/debug/strom")
    p.add_argument("--consumers", type=int, default=200)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--park", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.park:
        asyncio.run(park(args.park, args.consumers, args.ready_file))
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
