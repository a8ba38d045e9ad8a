"""What the metrics cost on the produce path: the bench's "produce 1 KiB, acks=all" scenario
(one producer, linger 5 ms, 4 partitions) in a small form, against one release binary run with
the admin listener (and so the recorder) off, and on with per-partition series and a scrape of
/metrics every second. Modes alternate, so load from elsewhere on the machine hits both alike.

    python bench/metrics_cost.py target/release/strom [--seconds 10] [--rounds 3] [--also OTHER_BINARY]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    """The broker's user + system CPU time: less disturbed by other load than throughput."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(binary: str, metrics: bool, seconds: float, per_partition: bool) -> tuple[float, int, float]:
    port, admin_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        args = [binary, "serve", "--data-dir", f"{d}/data", "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
                "--override", f"admin.http.listener={f'127.0.0.1:{admin_port}' if metrics else ''}",
                # The broker alone is measured; and 8082 may be another process's on this machine.
                "--override", "gateway.listener="]
        if metrics and per_partition:
            args += ["--override", "metrics.partition.labels.enable=true"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        scrapes = [0]
        try:
            wait_port(port)
            bs = f"127.0.0.1:{port}"
            admin = AdminClient({"bootstrap.servers": bs})
            admin.create_topics([NewTopic("bench", num_partitions=4, replication_factor=1)])["bench"].result(20)
            time.sleep(0.5)

            def scrape():
                while not stop.wait(1.0):
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
                        r.read()
                    scrapes[0] += 1

            if metrics:
                threading.Thread(target=scrape, daemon=True).start()
            p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5, "partitioner": "random",
                          "queue.buffering.max.kbytes": 65536})
            value = b"x" * 1024
            acked = [0]

            def cb(err, _msg):
                if err is None:
                    acked[0] += 1

            # Warm-up, then the measured window.
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:
                try:
                    p.produce("bench", value, on_delivery=cb)
                except BufferError:
                    p.poll(0.01)
                p.poll(0)
            p.flush(30)
            acked[0] = 0
            cpu_start = cpu_seconds(proc.pid)
            start = time.monotonic()
            t_end = start + seconds
            while time.monotonic() < t_end:
                try:
                    p.produce("bench", value, on_delivery=cb)
                except BufferError:
                    p.poll(0.01)
                p.poll(0)
            p.flush(60)
            elapsed = time.monotonic() - start
            cpu_us_per_msg = 1e6 * (cpu_seconds(proc.pid) - cpu_start) / max(acked[0], 1)
            # Clients go before the broker, so they do not log its disappearance.
            del p, admin
            return acked[0] / elapsed, scrapes[0], cpu_us_per_msg
        finally:
            stop.set()
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--also", help="another binary, run with its admin listener on (a reference)")
    a = ap.parse_args()
    modes = [("exporter off", a.binary, False, False),
             ("metrics on, per-partition series, scraped every 1 s", a.binary, True, True)]
    if a.also:
        # An older binary may not know metrics.partition.labels.enable.
        modes.append((f"reference {a.also}, metrics on, scraped every 1 s", a.also, True, False))
    results: dict[str, list[float]] = {m[0]: [] for m in modes}
    cpu: dict[str, list[float]] = {m[0]: [] for m in modes}
    for r in range(a.rounds):
        for name, binary, metrics, per_partition in modes:
            rate, scrapes, us = run_once(binary, metrics, a.seconds, per_partition)
            results[name].append(rate)
            cpu[name].append(us)
            print(f"round {r + 1}: {name}: {rate:,.0f} msg/s ({rate / 1024:,.1f} MiB/s), "
                  f"broker CPU {us:.2f} us/msg, {scrapes} scrapes", flush=True)
    base = statistics.median(results[modes[0][0]])
    base_cpu = statistics.median(cpu[modes[0][0]])
    for name, rates in results.items():
        med = statistics.median(rates)
        us = statistics.median(cpu[name])
        print(f"{name}: median {med:,.0f} msg/s ({med / 1024:,.1f} MiB/s), {100 * (med - base) / base:+.1f}% "
              f"vs exporter off; broker CPU {us:.2f} us/msg ({100 * (us - base_cpu) / base_cpu:+.1f}%); "
              f"runs {', '.join(f'{x:,.0f}' for x in rates)}")


if __name__ == "__main__":
    main()
