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
       bench/gateway.py --secure-cost [--records N] [--clients C] [--batch B]
--secure-cost measures only HTTP produce, on plain HTTP without authentication and on HTTPS
(TLS 1.3, a P-256 certificate made with openssl) with HTTP Basic against a SCRAM-SHA-512 user,
the same broker, one after the other: the cost of TLS and authentication.
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


def ab(url: str, body: bytes, n: int, clients: int, auth: str | None = None) -> float:
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    extra = ["-A", auth] if auth else []
    out = subprocess.run(["ab", "-q", "-k", "-c", str(clients), "-n", str(n), "-p", f.name, *extra,
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
    ap.add_argument("--secure-cost", action="store_true")
    args = ap.parse_args()
    if args.secure_cost:
        return secure_cost(args)
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


def secure_cost(args) -> None:
    binary = os.environ.get("STROM_BIN", str(ROOT / "target" / "release" / "strom"))
    work = Path(tempfile.mkdtemp(prefix="strom-gw-bench-"))

    def openssl(*a: str) -> None:
        subprocess.run(["openssl", *a], cwd=work, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    (work / "server.pem").write_text((work / "key.pem").read_text() + (work / "cert.pem").read_text())
    kport, plain_port, tls_port = free_port(), free_port(), free_port()
    common = ["--override", f"listeners=PLAINTEXT://127.0.0.1:{kport}", "--override", "admin.http.listener="]
    log = open(work / "broker.log", "wb")
    # One data directory: first the in-process gateway on plain HTTP without authentication,
    # then the same broker restarted with it on HTTPS and Basic required.
    proc = subprocess.Popen([binary, "serve", "--data-dir", str(work / "data"), *common,
                             "--override", f"gateway.listener=127.0.0.1:{plain_port}",
                             "--override", "gateway.authentication=none"], stdout=log, stderr=log)
    procs = [proc]
    try:
        wait_port(kport)
        wait_port(plain_port)
        bootstrap = f"127.0.0.1:{kport}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        for f in admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion("bench", info, b"bench-secret")]).values():
            f.result(30)
        for f in admin.create_topics([NewTopic(t, 1, 1) for t in ["plain1", "plainb", "tls1", "tlsb"]]).values():
            f.result(30)
        value = base64.b64encode(b"x" * args.size).decode()
        one = json.dumps({"records": [{"value": value}]}).encode()
        batch = json.dumps({"records": [{"value": value}] * args.batch}).encode()
        n_one, n_batch = args.records // 5, max(args.records // args.batch, 10)
        time.sleep(1)
        r1 = ab(f"http://127.0.0.1:{plain_port}/topics/plain1", one, n_one, args.clients)
        rb = ab(f"http://127.0.0.1:{plain_port}/topics/plainb", batch, n_batch, args.clients)
        proc.terminate()
        proc.wait(30)
        proc = subprocess.Popen([binary, "serve", "--data-dir", str(work / "data"), *common,
                                 "--override", f"gateway.listener=127.0.0.1:{tls_port}",
                                 "--override", "gateway.authentication=basic",
                                 "--override", f"gateway.ssl.keystore.location={work / 'server.pem'}"],
                                stdout=log, stderr=log)
        procs.append(proc)
        wait_port(kport)
        wait_port(tls_port)
        time.sleep(1)
        t1 = ab(f"https://127.0.0.1:{tls_port}/topics/tls1", one, n_one, args.clients, "bench:bench-secret")
        tb = ab(f"https://127.0.0.1:{tls_port}/topics/tlsb", batch, n_batch, args.clients, "bench:bench-secret")
        print(f"http produce, 1 record/request, {args.clients} clients: plain {r1:,.0f} records/s, "
              f"https+basic(scram) {t1:,.0f} records/s ({(1 - t1 / r1) * 100:+.0f}% cost)")
        print(f"http produce, {args.batch} records/request, {args.clients} clients: plain {rb * args.batch:,.0f} "
              f"records/s, https+basic(scram) {tb * args.batch:,.0f} records/s ({(1 - tb / rb) * 100:+.0f}% cost)")
    finally:
        for p_ in procs:
            if p_.poll() is None:
                p_.terminate()
                p_.wait(30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
