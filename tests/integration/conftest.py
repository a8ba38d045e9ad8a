"""Fixtures that run the real `strom` binary for the integration tests.

`broker` gives a fresh broker per test (free port, tmp data dir, HTTP admin
listener disabled). A start returns once the broker is ready, not merely listening: the Kafka
port is bound before the logs are recovered (connections wait in the backlog), so a test that
looks at the data directory or the log right after a start would race recovery. Ready means
`/readyz` answers 200 when the admin listener is on, else the "strom broker ready" line of this
start (printed after recovery, stray handling and group loading) with the port accepting. `make_broker(**overrides)` starts one with extra config
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
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0
# What server::run logs once start-up and recovery are done, the moment /readyz turns 200.
READY_LINE = "strom broker ready"


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


def http_ok(host: str, port: int, path: str) -> bool:
    """True when GET path answers 200 (a 503 from /readyz, or no listener yet, is False)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def admin_address(value: str) -> tuple[str, int] | None:
    """Where to reach an `admin.http.listener` value (HOST:PORT, empty disables it)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return host, int(port)


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
        # Where this start's lines begin in the log file, so an earlier start's ready line
        # does not count.
        self.log_start = 0

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
            self.log_start = log.tell()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_ready()
        return self

    @property
    def admin(self) -> tuple[str, int] | None:
        """The admin listener's address, when the overrides turn it on."""
        return admin_address(self.overrides.get("admin.http.listener", ""))

    def logged_ready(self) -> bool:
        """Whether this start has printed its ready line."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return READY_LINE.encode() in log.read()
        except FileNotFoundError:
            return False

    def is_ready(self) -> bool:
        admin = self.admin
        if admin is not None:
            return http_ok(*admin, "/readyz")
        if "STROM_LOG" in self.env or "STROM_LOG" in os.environ:
            # A log filter may hide the INFO ready line; the port is all there is then.
            return port_accepts(self.port, self.host)
        return self.logged_ready() and port_accepts(self.port, self.host)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"strom exited with code {rc} during startup:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.05)
        what = f"/readyz on {self.admin[0]}:{self.admin[1]}" if self.admin else f"{self.bootstrap} ({READY_LINE!r})"
        raise RuntimeError(f"strom was not ready within {timeout}s ({what}):\n{self.log_tail()}")

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
