"""The broker started exactly as the Kubernetes pod starts it.

The container spec (env, ports, probes, user, grace period) is read from the plain manifest
deploy/kubernetes/02-statefulset.yaml and the entrypoint from the Dockerfile; the downward-API
values are those of pod `strom-2` (POD_IP and HOST_IP on loopback addresses). The process runs
as the pod does: uid 65532, in a private mount namespace where the root filesystem is
read-only, /tmp is an emptyDir-like tmpfs and only the data volume is writable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, port_accepts, strom_bin
from kafka_wire import Conn, metadata_body, parse_metadata_v4

POD_NAME = "strom-2"
POD_NAMESPACE = "kafka"
POD_IP = "127.0.0.2"
HOST_IP = "127.0.0.3"
UID = 65532


def container_spec() -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all((REPO_ROOT / "deploy/kubernetes/02-statefulset.yaml").read_text()))
    sts = next(d for d in docs if d and d.get("kind") == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "strom")
    return pod, container


def entrypoint() -> list[str]:
    text = (REPO_ROOT / "Dockerfile").read_text()
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.M)
    assert m, "Dockerfile has an exec-form ENTRYPOINT"
    return json.loads(m.group(1))


def pod_env(container: dict) -> dict[str, str]:
    downward = {
        "metadata.name": POD_NAME,
        "metadata.namespace": POD_NAMESPACE,
        "status.podIP": POD_IP,
        "status.hostIP": HOST_IP,
    }
    env = {"PATH": "/usr/bin:/bin", "HOSTNAME": POD_NAME}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def container_port(container: dict, name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def brokers_via(addr: str) -> list[tuple[int, str, int]]:
    with Conn(addr) as c:
        brokers, _cluster, _controller, _topics = parse_metadata_v4(c.request(3, 4, metadata_body([], 4)))
    return brokers


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="needs root, unshare and setpriv to build the pod's filesystem view")
def test_broker_runs_as_the_pod(tmp_path: Path):
    pod, container = container_spec()
    env = pod_env(container)
    kafka_port = container_port(container, "kafka")
    external_port = container_port(container, "external")
    admin_port = container_port(container, "admin")
    # The pod's own ports (from the manifest) are needed here: skip rather than fail when a
    # broker from the README's "Run it" step, or anything else, holds one of them.
    taken = [port for port in (kafka_port, external_port, admin_port) if port_accepts(port, "127.0.0.1")]
    if taken:
        pytest.skip(f"the pod's ports {taken} are in use on this machine (stop the process holding them to run this test)")

    # The pod's filesystem: the data volume mounted where the StatefulSet mounts it.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "data")["mountPath"]
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, UID, UID)
    Path(mount).mkdir(parents=True, exist_ok=True)
    binary = Path(strom_bin()).resolve()
    cmd = entrypoint()
    assert cmd[0] == "/strom", cmd
    run_as = container["securityContext"].get("runAsUser", pod["securityContext"].get("runAsUser"))
    assert run_as == UID and container["securityContext"]["readOnlyRootFilesystem"] is True
    # The binary gets a read-only mount of its own, as in the image (where it is /strom): the
    # checkout may live under /tmp, which the pod's emptyDir hides.
    script = (
        f"mount --bind {volume} {mount} && "
        "mount -t tmpfs -o size=256m tmpfs /mnt && "
        f"cp {binary} /mnt/strom && "
        "mount -o remount,ro /mnt && "
        "mount -t tmpfs -o size=16m tmpfs /tmp && "
        "mount -o remount,bind,ro / && "
        f"exec setpriv --reuid={UID} --regid={UID} --clear-groups /mnt/strom {' '.join(cmd[1:])}"
    )
    log = (tmp_path / "pod.log").open("wb")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if port_accepts(admin_port) and http(admin_port, "/readyz")[0] == 200:
                break
            time.sleep(0.05)
        output = lambda: (tmp_path / "pod.log").read_text(errors="replace")  # noqa: E731
        assert proc.poll() is None, f"broker exited with {proc.returncode}:\n{output()}"

        # Probes, as the kubelet calls them.
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            path = container[probe]["httpGet"]["path"]
            status, _ = http(admin_port, path)
            assert status == 200, f"{probe} {path} answered {status}"
        status, text = http(admin_port, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "strom_connections" in families, sorted(families)
        assert "strom_requests" in families or "strom_requests_total" in families, sorted(families)

        # Each listener advertises the address derived from the downward API.
        assert brokers_via(f"{POD_IP}:{kafka_port}") == [
            (2, f"{POD_NAME}.strom-headless.{POD_NAMESPACE}.svc.cluster.local", kafka_port)]
        assert brokers_via(f"127.0.0.1:{kafka_port}") == [(2, "localhost", kafka_port)]
        assert brokers_via(f"127.0.0.1:{external_port}") == [(2, HOST_IP, 30092 + 2)]
        families = {f.name: f for f in text_string_to_metric_families(http(admin_port, "/metrics")[1])}
        requests = families.get("strom_requests") or families["strom_requests_total"]
        assert any(s.labels.get("api") == "Metadata" and s.value >= 3 for s in requests.samples)

        # Data went to the volume only: the root filesystem was read-only throughout.
        assert (volume / "data" / "meta.properties").exists(), output()
        assert "Read-only file system" not in output()

        # SIGTERM (what the kubelet sends) ends it cleanly within the grace period.
        grace = pod["terminationGracePeriodSeconds"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=grace)
        took = time.monotonic() - started
        assert code == 0, f"exit code {code} after SIGTERM:\n{output()}"
        assert took < grace
        assert "shutdown complete" in output()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
