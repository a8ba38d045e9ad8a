#!/usr/bin/env python3
"""HTTP gateway throughput against the same broker's Kafka-protocol figures.

Starts `strom serve` (STROM_BIN, default target/release/strom) with the
gateway on a free port, then measures on this machine:
  - HTTP produce, one record per request (ApacheBench, keep-alive, -c clients)
  - HTTP produce, BATCH records per request
  - Kafka-protocol produce of the same records (confluent-kafka, acks=all)
  - WebSocket consume (binary format) vs a confluent-kafka consumer, MB/s of values
Prints one line per figure. Needs `ab` (Debian's apache2-utils) and the test venv.
Usage: bench/gateway.py [--records N] [--clients C] [--batch B]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def ab(url: str, body: bytes, n: int, clients: int) -> float:
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    out = subprocess.run(["ab", "-q", "-k", "-c", str(clients), "-n", str(n), "-p", f.name,
                          "-T", "application/vnd.kafka.binary.v2+json", url], capture_output=True, text=True)
    os.unlink(f.name)
    # ab counts answers whose length differs from the first as failed; offsets
    # of more digits do that, so only connection, receive and exception
    # failures count.
    broken = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", out.stdout)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out.stdout)
    if out.returncode != 0 or (broken and any(int(g) for g in broken.groups())) or non2xx:
        raise SystemExit(f"ab failed:\n{out.stdout}\n{out.stderr}")
    return float(re.search(r"Requests per second:\s+([\d.]+)", out.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--size", type=int, default=100, help="value bytes")
    ap.add_argument("--ws-records", type=int, default=50_000)
    args = ap.parse_args()
    binary = os.environ.get("STROM_BIN", str(ROOT / "target" / "release" / "strom"))
    work = Path(tempfile.mkdtemp(prefix="strom-gw-bench-"))
    kport, hport = free_port(), free_port()
    log = open(work / "broker.log", "wb")
    proc = subprocess.Popen([binary, "serve", "--data-dir", str(work / "data"),
                             "--override", f"listeners=PLAINTEXT://127.0.0.1:{kport}",
                             "--override", "admin.http.listener=",
                             "--override", f"gateway.listener=127.0.0.1:{hport}"], stdout=log, stderr=log)
    try:
        wait_port(kport)
        wait_port(hport)
        bootstrap = f"127.0.0.1:{kport}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = ["one", "batched", "kafka", "ws"]
        for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
            f.result(30)
        time.sleep(1)
        value = b64 = base64.b64encode(b"x" * args.size).decode()
        one = json.dumps({"records": [{"value": value}]}).encode()
        batch = json.dumps({"records": [{"value": b64}] * args.batch}).encode()
        n_one = args.records // 5
        rps = ab(f"http://127.0.0.1:{hport}/topics/one", one, n_one, args.clients)
        print(f"http produce, 1 record/request, {args.clients} clients: {rps:,.0f} records/s")
        n_batch = max(args.records // args.batch, 10)
        rps = ab(f"http://127.0.0.1:{hport}/topics/batched", batch, n_batch, args.clients)
        print(f"http produce, {args.batch} records/request, {args.clients} clients: {rps * args.batch:,.0f} records/s")

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        payload = b"x" * args.size
        start = time.monotonic()
        for _ in range(args.records):
            while True:
                try:
                    p.produce("kafka", payload)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(120)
        rate = args.records / (time.monotonic() - start)
        print(f"kafka protocol produce (confluent-kafka, acks=all): {rate:,.0f} records/s")

        big = b"y" * 1000
        for _ in range(args.ws_records):
            while True:
                try:
                    p.produce("ws", big)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(120)
        mb = args.ws_records * len(big) / 1e6
        from websockets.sync.client import connect
        start = time.monotonic()
        got = 0
        with connect(f"ws://127.0.0.1:{hport}/ws/v1/topics/ws/records?from=earliest&format=binary",
                     max_size=None) as ws:
            while got < args.ws_records:
                ws.recv(timeout=60)
                got += 1
        secs = time.monotonic() - start
        print(f"websocket consume (binary, python client): {mb / secs:,.1f} MB/s ({got / secs:,.0f} records/s)")
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False})
        c.assign([TopicPartition("ws", 0, 0)])
        start = time.monotonic()
        got = 0
        while got < args.ws_records:
            for m in c.consume(num_messages=10_000, timeout=1):
                if m.error() is None:
                    got += 1
        secs = time.monotonic() - start
        c.close()
        print(f"kafka protocol consume (confluent-kafka): {mb / secs:,.1f} MB/s ({got / secs:,.0f} records/s)")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
