#!/usr/bin/env python3
"""Consumer-group figures for one broker: how long a 3-member group takes to become stable
(classic protocol with Kafka's default 3 s initial delay and with none, and the KIP-848
consumer protocol), and how many offset commits per second one broker sustains.

    python bench/groups.py --strom target/release/strom            # writes bench/GROUPS.md
    python bench/groups.py --strom target/release/strom --smoke    # quick; bench/out/groups.md

Needs confluent-kafka (the test venv has it: .venv/bin/python bench/groups.py ...). Clients
and broker share the machine; the figures are what this machine does, not a limit of Strom.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, strom: str, **overrides):
        self.dir = Path(tempfile.mkdtemp(prefix="strom-groups-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        args = [strom, "serve", "--data-dir", str(self.dir / "data"),
                "--override", f"listeners=PLAINTEXT://{self.bootstrap}", "--override", "admin.http.listener="]
        for k, v in overrides.items():
            args += ["--override", f"{k}={v}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("broker did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def create_topic(bootstrap: str, name: str, partitions: int):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, partitions)])[name].result(20)


def time_to_stable(bootstrap: str, topic: str, protocol: str, members: int = 3) -> float:
    """Seconds from subscribe() of `members` consumers to a Stable group where every member
    has partitions, as DescribeGroups / ConsumerGroupDescribe report it."""
    group = f"stab-{uuid.uuid4().hex[:8]}"
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    consumers = [Consumer(conf) for _ in range(members)]
    stop = threading.Event()
    threads = [threading.Thread(target=lambda c=c: [c.poll(0.05) for _ in iter(stop.is_set, True)], daemon=True)
               for c in consumers]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    for c in consumers:
        c.subscribe([topic])
    for t in threads:
        t.start()
    try:
        while time.monotonic() - started < 60:
            try:
                d = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
                if (d.state == ConsumerGroupState.STABLE and len(d.members) == members
                        and all(m.assignment.topic_partitions for m in d.members)):
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(0.02)
        raise RuntimeError(f"group {group} did not stabilise")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for c in consumers:
            c.close()


def commit_rate(bootstrap: str, topic: str, clients: int, seconds: float) -> dict:
    """`clients` threads, each a consumer in its own group assigned one partition, commit
    synchronously in a loop (a new offset each time)."""
    lat: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def run(i: int):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"commit-{uuid.uuid4().hex[:8]}",
                      "enable.auto.commit": False})
        mine = []
        try:
            c.commit(offsets=[TopicPartition(topic, i % 8, 0)], asynchronous=False)  # warm: coordinator known
            start.wait()
            end = time.monotonic() + seconds
            n = 1
            while time.monotonic() < end:
                t0 = time.perf_counter()
                c.commit(offsets=[TopicPartition(topic, i % 8, n)], asynchronous=False)
                mine.append(time.perf_counter() - t0)
                n += 1
        finally:
            c.close()
            with lock:
                lat.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat.sort()
    return {"clients": clients, "commits": len(lat), "per_s": len(lat) / elapsed,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


def machine() -> str:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} vCPU ({cpu}), {mem_kib / 1024 / 1024:.1f} GiB RAM, {platform.platform()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strom", default=str(ROOT / "target/release/strom"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out")
    opts = ap.parse_args()
    rounds = 1 if opts.smoke else 5
    seconds = 1.0 if opts.smoke else 10.0
    out = Path(opts.out) if opts.out else (ROOT / "bench/out/groups.md" if opts.smoke else ROOT / "bench/GROUPS.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, overrides, protocol in [
        ("classic, group.initial.rebalance.delay.ms=3000 (Kafka's default)", {}, "classic"),
        ("classic, group.initial.rebalance.delay.ms=0", {"group.initial.rebalance.delay.ms": 0}, "classic"),
        ("consumer (KIP-848)", {}, "consumer"),
    ]:
        b = Broker(opts.strom, **overrides)
        try:
            topic = "stab"
            create_topic(b.bootstrap, topic, 6)
            times = [time_to_stable(b.bootstrap, topic, protocol) for _ in range(rounds)]
        finally:
            b.stop()
        rows.append((label, times))
        print(f"{label}: {[round(t, 2) for t in times]}", flush=True)
    b = Broker(opts.strom)
    try:
        create_topic(b.bootstrap, "commits", 8)
        rates = [commit_rate(b.bootstrap, "commits", k, seconds) for k in (1, 8, 32)]
    finally:
        b.stop()
    for r in rates:
        print(r, flush=True)
    lines = [
        "# Consumer groups on one Strom broker",
        "",
        f"Written by `bench/groups.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' (smoke run)' if opts.smoke else ''}.",
        f"Machine: {machine()}. Clients (confluent-kafka {__import__('confluent_kafka').version()[0]},"
        f" librdkafka {__import__('confluent_kafka').libversion()[0]}) run on the same machine as the broker.",
        "",
        "## Time for a 3-member group to become stable",
        "",
        "Three consumers subscribe to a 6-partition topic at once; the clock stops when the",
        "group is described as Stable with three members that each hold partitions.",
        "",
        "| protocol | runs | median s | min s | max s |",
        "|---|---|---|---|---|",
    ]
    for label, times in rows:
        lines.append(f"| {label} | {len(times)} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    lines += [
        "",
        "## Offset commits one broker sustains",
        "",
        f"Each client is a consumer in its own group committing one partition's offset",
        f"synchronously in a loop for {seconds:.0f} s. Every commit is fdatasynced to",
        "`__consumer_offsets` before it is acknowledged (group commit shares the syncs).",
        "",
        "| clients | commits | commits/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in rates:
        lines.append(f"| {r['clients']} | {r['commits']} | {r['per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
