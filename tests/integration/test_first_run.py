"""The first run, as a new user meets it (issue 16): a SIGTERM that arrives during start-up
takes the graceful path, a listener whose port is taken fails before anything is formatted
(the admin and gateway listeners as well as Kafka's), an unknown `STROM_*` variable is named
in a warning as README's departures say, and the workspace's `rust-version` is what the locked
dependencies need, declared once and inherited by every crate. (Bad flags, `--node-id -1`, a
broken TOML file and the admin listener's `/` are in test_config.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import READY_LINE, REPO_ROOT, free_port, port_accepts, strom_bin
from helpers import create_topic, unique_topic

# Enough partitions that opening their logs keeps a debug or release build in start-up for a
# second or more after the Kafka port is bound (the port is bound before the logs are opened).
SLOW_START_PARTITIONS = 2000


def test_sigterm_during_start_up_takes_the_graceful_path(make_broker):
    b = make_broker()
    # In a few requests: one CreateTopics of them all outlasts a client's socket timeout when
    # the machine is loaded.
    for _ in range(SLOW_START_PARTITIONS // 400):
        create_topic(b.bootstrap, unique_topic("slow"), partitions=400, timeout=60)
    # Closing 2000 logs takes a while on a loaded machine with a debug build.
    assert b.stop(timeout=60) == 0
    b.start(wait=False)
    deadline = time.monotonic() + 30
    while not port_accepts(b.port) and b.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.proc.poll() is None, b.log_tail()
    # The port is bound before the logs are opened: the broker is in start-up now.
    assert not b.logged_ready(), "start-up ended before the signal could be sent; the test needs more partitions"
    rc = b.stop(signal.SIGTERM, timeout=60)
    text = b.log_text()[b.log_start:]
    # Without the handler in place, SIGTERM's default action kills the process (-15).
    assert rc == 0, f"exit {rc}\n{b.log_tail()}"
    assert "shutdown complete" in text, b.log_tail()
    # And the data is whole: the next start opens every partition.
    b.start()
    assert f"partitions={SLOW_START_PARTITIONS}" in b.log_text()[b.log_start:].split(READY_LINE, 1)[1].splitlines()[0]


def run_serve(tmp_path, *overrides: str, env: dict | None = None, timeout: float = 20):
    args = [strom_bin(), "serve", "--data-dir", str(tmp_path / "fresh")]
    for o in overrides:
        args += ["--override", o]
    e = os.environ.copy()
    e.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=e)


@pytest.mark.parametrize("listener", ["admin.http.listener", "gateway.listener"])
def test_a_taken_port_of_any_listener_formats_nothing(tmp_path, listener):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        settings = {"listeners": f"PLAINTEXT://127.0.0.1:{free_port()}", "admin.http.listener": "",
                    "gateway.listener": "", listener: f"127.0.0.1:{taken}"}
        cp = run_serve(tmp_path, *(f"{k}={v}" for k, v in settings.items()))
    assert cp.returncode != 0, cp.stderr
    assert listener in cp.stderr and str(taken) in cp.stderr, cp.stderr
    assert not (tmp_path / "fresh").exists(), f"a broker that could not bind {listener} formatted a data directory"


def test_an_unknown_strom_variable_is_named_in_a_warning(tmp_path):
    """README's departures: an unknown STROM_* variable warns (the prefix is shared with the
    CLI's STROM_BOOTSTRAP and STROM_LOG), naming it; an unknown --override is an error."""
    port = free_port()
    base = [f"listeners=PLAINTEXT://127.0.0.1:{port}", "admin.http.listener=", "gateway.listener="]
    proc = subprocess.Popen(
        [strom_bin(), "serve", "--data-dir", str(tmp_path / "data"), *sum((["--override", o] for o in base), [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "STROM_NO_SUCH_SETTING": "1", "STROM_LOG": "info"})
    try:
        deadline = time.monotonic() + 20
        while not port_accepts(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "an unknown STROM_* variable stopped the broker"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    warned = [ln for ln in err.splitlines() if "STROM_NO_SUCH_SETTING" in ln]
    assert warned and "WARN" in warned[0], err[-2000:]
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(r"unknown\s+`STROM_\*`\s+environment\s+variable\s+is\s+only\s+a\s+warning", readme), \
        "README's departures no longer say what the broker does with an unknown STROM_* variable"

    cp = run_serve(tmp_path, *base, "no.such.setting=1")
    assert cp.returncode == 2 and "no.such.setting" in cp.stderr, cp.stderr


def version(v: str) -> tuple[int, ...]:
    parts = [int(x) for x in v.split(".")]
    return tuple((parts + [0, 0])[:3])


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo (the Rust toolchain)")
def test_rust_version_is_declared_once_and_covers_the_locked_dependencies():
    cp = subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=300)
    if cp.returncode != 0 and ("network" in cp.stderr or "download" in cp.stderr.lower()):
        pytest.skip(f"cargo metadata needs the registry: {cp.stderr.strip()[-300:]}")
    assert cp.returncode == 0, cp.stderr
    meta = json.loads(cp.stdout)
    declared = re.search(r'^rust-version\s*=\s*"([0-9.]+)"', (REPO_ROOT / "Cargo.toml").read_text(), re.M)
    assert declared, "no rust-version in the workspace's Cargo.toml"
    declared = declared.group(1)
    members = set(meta["workspace_members"])
    in_graph = {n["id"] for n in meta["resolve"]["nodes"]}
    for p in meta["packages"]:
        if p["id"] in members:
            manifest = open(p["manifest_path"]).read()
            assert re.search(r"^rust-version\.workspace\s*=\s*true", manifest, re.M), \
                f"{p['name']} does not inherit the workspace's rust-version"
            assert p["rust_version"] == declared, (p["name"], p["rust_version"])
    needs = sorted(((version(p["rust_version"]), p["name"], p["version"]) for p in meta["packages"]
                    if p["id"] in in_graph and p["id"] not in members and p.get("rust_version")), reverse=True)
    assert needs, "no dependency declares a rust-version"
    assert version(declared) >= needs[0][0], f"rust-version {declared}, but {needs[0][1]} {needs[0][2]} needs {needs[0][0]}"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"Rust toolchain, {declared} or newer" in readme, "README's prerequisites name another Rust version"
