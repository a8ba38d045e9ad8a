"""Fixtures that run the real `strom` binary for the integration tests.

`broker` gives a fresh broker per test (free port, tmp data dir, HTTP admin
listener disabled). `make_broker(**overrides)` starts one with extra config
overrides (keys as Kafka names, e.g. make_broker(**{"num.partitions": 3})).
Each broker's stderr goes to a log file in its tmp dir; when a test fails,
the log of every broker it started is attached to the failure report.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def strom_bin() -> str:
    path = os.environ.get("STROM_BIN") or str(REPO_ROOT / "target" / "release" / "strom")
    p = Path(path)
    if not p.is_absolute():
        p = (Path.cwd() / p).resolve()
    return str(p)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """A `strom serve` process. Restarts reuse the same port and data dir."""

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None, env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None, port: int | None = None, data_dir: Path | None = None,
                 name: str = "broker"):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.overrides = {
            "listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "admin.http.listener": "",
            "gateway.listener": "",
        }
        self.overrides.update({k: str(v) for k, v in (overrides or {}).items()})
        self.env = dict(env or {})
        self.extra_args = list(extra_args or [])
        self.log_path = self.workdir / f"{name}.stderr.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def argv(self) -> list[str]:
        args = [strom_bin(), "serve", "--data-dir", str(self.data_dir)]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        return args + self.extra_args

    def start(self, wait: bool = True) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        env = os.environ.copy()
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"strom exited with code {rc} during startup:\n{self.log_tail()}")
            if port_accepts(self.port, self.host):
                return
            time.sleep(0.05)
        raise RuntimeError(f"strom did not accept connections on {self.bootstrap} within {timeout}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait for exit; returns the exit code (negative for
        death by signal). Raises if the process has not exited in `timeout` s
        (after killing it, so nothing is left behind)."""
        if self.proc is None:
            raise RuntimeError("broker never started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise RuntimeError(f"strom did not exit within {timeout}s of signal {sig}; killed it")
        return self.proc.returncode

    def kill9(self) -> int:
        return self.stop(signal.SIGKILL, timeout=10)

    def restart(self, sig: int = signal.SIGTERM) -> "Broker":
        if self.alive():
            self.stop(sig)
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, max_chars: int = 20000) -> str:
        t = self.log_text()
        return t if len(t) <= max_chars else "... (cut) ...\n" + t[-max_chars:]

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def _register(request, broker: Broker):
    brokers = getattr(request.node, "_strom_brokers", None)
    if brokers is None:
        brokers = []
        request.node._strom_brokers = brokers
    brokers.append(broker)


@pytest.fixture
def make_broker(request, tmp_path):
    """Factory: make_broker(overrides..., env=..., start=True, port=..., data_dir=...)."""
    made: list[Broker] = []

    def factory(env=None, start=True, extra_args=None, port=None, data_dir=None, **overrides) -> Broker:
        b = Broker(tmp_path / f"broker{len(made)}", overrides=overrides, env=env, extra_args=extra_args,
                   port=port, data_dir=data_dir, name=f"broker{len(made)}")
        made.append(b)
        _register(request, b)
        if start:
            b.start()
        return b

    yield factory
    for b in made:
        b.cleanup()
    if not getattr(request.node, "_strom_failed", False):
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _close_clients(make_broker):
    # Requests make_broker so that it runs (and closes clients) before the
    # brokers are stopped.
    yield
    import gc

    from helpers import close_leftover_consumers

    close_leftover_consumers()
    gc.collect()  # destroys unreferenced producers / admin clients now


@pytest.fixture
def broker(make_broker) -> Broker:
    return make_broker()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item._strom_failed = True
        for b in getattr(item, "_strom_brokers", []):
            alive = "running" if b.alive() else f"exited with {b.proc.returncode if b.proc else 'never started'}"
            rep.sections.append((f"strom {b.name} stderr ({b.bootstrap}, {alive}, data {b.data_dir})", b.log_tail()))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_sessionstart(session):
    if session.config.option.collectonly:
        return
    b = strom_bin()
    if not os.access(b, os.X_OK):
        raise pytest.UsageError(f"STROM_BIN={b} is not an executable file; build it with `cargo build --release -p strom`")
