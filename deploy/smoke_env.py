"""Starts the real broker with the environment the StatefulSet gives it.

No cluster can run here, but the pod's configuration can: this takes the
container's env from a rendered manifest, fills in what the downward API
would (POD_NAME=strom-2, POD_NAMESPACE=kafka, POD_IP=127.0.0.2,
HOST_IP=127.0.0.3), moves the ports to free ones and the data to a temporary
directory, starts `strom serve` with nothing else in its environment, and
checks what a pod's clients would see:

  - /healthz, /readyz and /metrics answer 200 on the admin port;
  - Metadata through each listener names broker 2 at that listener's
    advertised address: INTERNAL the headless DNS name, LOCAL localhost
    (port-forward), EXTERNAL the node IP and node port 30092 + 2;
  - no STROM_* variable was reported as naming no setting;
  - SIGTERM ends the process with exit code 0 within shutdown.timeout.ms.

Everything stays on loopback addresses.

    python deploy/smoke_env.py STROM_BINARY RENDERED.yaml
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

POD = {"POD_NAME": "strom-2", "POD_NAMESPACE": "kafka", "POD_IP": "127.0.0.2", "HOST_IP": "127.0.0.3"}
ORDINAL = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_env(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        sts = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "StatefulSet")
    env = {}
    for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = POD[e["name"]]
    return env


def metadata_brokers(host: str, port: int) -> list[tuple[int, str, int]]:
    """Metadata v1 for no topics; returns the brokers (node id, host, port)."""
    client = b"strom-smoke"
    body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        data = recv_exact(s, size)
    pos = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    brokers = []
    for _ in range(count):
        node, hlen = struct.unpack_from(">ih", data, pos)
        pos += 6
        bhost = data[pos:pos + hlen].decode()
        pos += hlen
        (bport, rlen) = struct.unpack_from(">ih", data, pos)
        pos += 6 + max(rlen, 0)
        brokers.append((node, bhost, bport))
    return brokers


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def http_status(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def main(binary: str, rendered: str) -> int:
    env = container_env(rendered)
    kafka, external, admin = free_port(), free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="strom-smoke-")
    for k, v in list(env.items()):
        if k.startswith("STROM_"):
            env[k] = v.replace(":9092", f":{kafka}").replace(":9094", f":{external}").replace(":9080", f":{admin}")
    env["STROM_LOG_DIRS"] = os.path.join(workdir, "data")
    env["PATH"] = "/usr/bin:/bin"
    problems: list[str] = []
    stderr_path = os.path.join(workdir, "stderr.log")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([binary, "serve"], env=env, cwd=workdir, stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http_status(admin, "/readyz")[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not ready:
            problems.append(f"/readyz never answered 200 (exit code {proc.poll()})")
        else:
            for path in ("/healthz", "/metrics"):
                status, body = http_status(admin, path)
                if status != 200 or not body:
                    problems.append(f"{path}: HTTP {status}")
            expect = {
                "INTERNAL": (POD["POD_IP"], kafka,
                             (ORDINAL, "strom-2.strom-headless.kafka.svc.cluster.local", kafka)),
                "LOCAL": ("127.0.0.1", kafka, (ORDINAL, "localhost", kafka)),
                "EXTERNAL": ("127.0.0.1", external, (ORDINAL, POD["HOST_IP"], 30092 + ORDINAL)),
            }
            for name, (host, port, want) in expect.items():
                try:
                    got = metadata_brokers(host, port)
                except OSError as e:
                    problems.append(f"{name} listener at {host}:{port}: {e}")
                    continue
                if got != [want]:
                    problems.append(f"{name} listener at {host}:{port} advertises {got}, expected [{want}]")
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            limit = int(env.get("STROM_SHUTDOWN_TIMEOUT_MS", "20000")) / 1000 + 5
            try:
                code = proc.wait(timeout=limit)
                if code != 0:
                    problems.append(f"exit code {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                problems.append(f"still running {limit:.0f} s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(stderr_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    if "names no Strom setting" in log:
        problems.append("a STROM_* variable names no setting: "
                        + "; ".join(line for line in log.splitlines() if "names no Strom setting" in line))
    for p in problems:
        print(f"  {p}")
    if problems:
        print("  broker log (last lines):")
        for line in log.splitlines()[-15:]:
            print(f"    {line}")
    subprocess.run(["rm", "-rf", workdir], check=False)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
