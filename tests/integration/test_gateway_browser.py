"""The gateway's live streams in a real browser (issue 15): Debian's
Chromium, headless, driven by playwright-core (tests/integration/js), opens a
page served from an origin of its own, as a web app's page would be, that
subscribes over WebSocket, EventSource or WebSocketStream; a confluent-kafka
producer writes the records, and the page must receive every one in order.
Each test keeps a screenshot of the page under tests/integration/artifacts/.

Chromium comes from scripts/install-test-deps.sh; these tests skip (saying
so) only where it is not installed, and fail instead under CI.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from helpers import create_topic, produce_all, producer, unique_topic
from test_gateway import rss_kb, start_gateway

JS_DIR = Path(__file__).resolve().parent / "js"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
N = 10_000


def chromium_path() -> str:
    for candidate in [os.environ.get("STROM_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = ("Chromium is not installed: scripts/install-test-deps.sh installs Debian's chromium package "
              "(or set STROM_CHROMIUM to a Chromium binary)")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    path = chromium_path()
    assert shutil.which("node"), "node is not installed: run scripts/install-test-deps.sh"
    assert (JS_DIR / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is not installed in tests/integration/js: run scripts/install-test-deps.sh"
    return path


class Page:
    """browser_stream.js running one page; its JSON-line events in a queue."""

    def __init__(self, tmp_path: Path, **cfg):
        self.log_path = tmp_path / f"browser-{cfg['mode']}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["node", str(JS_DIR / "browser_stream.js"), json.dumps(cfg)], cwd=JS_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.events: queue.Queue = queue.Queue()
        self.console: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "garbage", "line": line.decode(errors="replace")})
        self.events.put({"event": "exit"})

    def wait(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {name!r} from the browser within {timeout}s; console: {self.console[-20:]}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e["event"] in ("console", "pageerror"):
                self.console.append(e["text"])
            elif e["event"] == "launched":
                self.launched = e
            elif e["event"] == name:
                return e
            else:
                raise AssertionError(f"browser: {e} while waiting for {name!r}; console: {self.console[-20:]}; "
                                     f"log: {self.log_path.read_text(errors='replace')[-3000:]}")

    def send(self, line: str):
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


def browser_gateway(make_broker):
    """A broker whose gateway lets the test page's origin in (CORS), and that origin's port."""
    page_port = free_port()
    gw = start_gateway(make_broker, **{"gateway.access.control.allow.origin": f"http://127.0.0.1:{page_port}"})
    return gw, page_port


def stream_in_browser(gw, page_port: int, chromium: str, tmp_path: Path, mode: str):
    topic = unique_topic(f"gwbrowser{mode}")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"gateway-{mode}.png"
    page = Page(tmp_path, chromium=chromium, gateway=f"http://127.0.0.1:{gw.port}", page_port=page_port, topic=topic,
                mode=mode, n=N, query="from=latest", screenshot=str(shot), timeout_ms=180_000)
    try:
        page.wait("subscribed", 60)
        # Subscribed first, then written: the page sees them arrive live.
        start = time.monotonic()
        produce_all(producer(gw.broker.bootstrap, **{"linger.ms": 5}),
                    [(b"k%d" % i, json.dumps({"n": i}).encode()) for i in range(N)], topic)
        done = page.wait("done", 240)
        elapsed = time.monotonic() - start
    finally:
        page.close()
    print(f"{mode}: {len(done['got'])} records in the page {elapsed:.1f}s after the first was sent, "
          f"{page.launched['version']}; screenshot {shot}")
    assert done["errors"] == [], done["errors"]
    assert done["got"] == [[0, i, i] for i in range(N)]
    assert shot.stat().st_size > 0


def test_a_browser_page_gets_10000_records_over_a_websocket_in_order(make_broker, chromium, tmp_path):
    gw, page_port = browser_gateway(make_broker)
    stream_in_browser(gw, page_port, chromium, tmp_path, "websocket")


def test_a_browser_page_produces_10000_records_over_a_websocket(make_broker, chromium, tmp_path):
    """The other way: a page writes 10,000 records over the produce socket,
    each answered in order with its offset, and a Kafka consumer
    (confluent-kafka) reads them all, keys and values as the page sent them."""
    from confluent_kafka import TopicPartition

    from helpers import consume_partitions, consumer

    gw, page_port = browser_gateway(make_broker)
    topic = unique_topic("gwbrowserproduce")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "gateway-produce.png"
    page = Page(tmp_path, chromium=chromium, gateway=f"http://127.0.0.1:{gw.port}", page_port=page_port, topic=topic,
                mode="produce", n=N, query="format=json", screenshot=str(shot), timeout_ms=180_000)
    try:
        page.wait("subscribed", 60)
        done = page.wait("done", 240)
    finally:
        page.close()
    assert done["errors"] == [], done["errors"][:5]
    assert done["got"] == [[0, i, i] for i in range(N)]
    c = consumer(gw.broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, 0)], expected=N)
    assert [(m.key(), json.loads(m.value())) for m in msgs] == [(b'"k%d"' % i, {"n": i}) for i in range(N)]


def test_a_browser_event_source_gets_10000_records_in_order(make_broker, chromium, tmp_path):
    """EventSource from another origin needs the gateway's CORS answer
    (gateway.access.control.allow.origin): without it the browser refuses
    the stream."""
    gw, page_port = browser_gateway(make_broker)
    stream_in_browser(gw, page_port, chromium, tmp_path, "sse")


class CuttableProxy:
    """A TCP proxy to `port` whose open connections the test can cut, as a
    network drop would."""

    def __init__(self, port: int):
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(conns) // 2

    def close(self):
        self.server.close()
        self.cut()


def test_an_event_source_resumes_where_it_was_after_a_drop(make_broker, chromium, tmp_path):
    """The connection under a page's EventSource is cut mid-stream; the
    browser reconnects by itself, sending the last event's id
    (Last-Event-ID), and the gateway carries on after it: all 10,000
    records arrive once each, in order, on both partitions."""
    gw, page_port = browser_gateway(make_broker)
    topic = unique_topic("gwbrowserresume")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    proxy = CuttableProxy(gw.port)
    shot = ARTIFACTS / "gateway-sse-resumed.png"
    ARTIFACTS.mkdir(exist_ok=True)
    page = Page(tmp_path, chromium=chromium, gateway=f"http://127.0.0.1:{proxy.port}", page_port=page_port,
                topic=topic, mode="sse", n=N, query="from=earliest", reconnect=True, screenshot=str(shot),
                timeout_ms=180_000)
    p = producer(gw.broker.bootstrap, **{"linger.ms": 5})
    half = N // 2
    try:
        page.wait("subscribed", 60)
        produce_all(p, [(None, json.dumps({"n": i}).encode(), {"partition": i % 2}) for i in range(half)], topic)
        time.sleep(1)
        assert proxy.cut() >= 1, "no connection to cut"
        produce_all(p, [(None, json.dumps({"n": i}).encode(), {"partition": i % 2}) for i in range(half, N)], topic)
        done = page.wait("done", 240)
    finally:
        page.close()
        proxy.close()
    assert done["errors"] == [], done["errors"]
    assert done["reconnects"] >= 1, "the EventSource never reconnected"
    for partition in (0, 1):
        got = [(o, n) for p_, o, n in done["got"] if p_ == partition]
        assert got == [(i, partition + 2 * i) for i in range(N // 2)], f"partition {partition}"
    print(f"resumed after {done['reconnects']} reconnect(s); {len(done['got'])} records, none twice")


def send_queue_bytes(local_port: int) -> int:
    """Bytes written by the side of loopback TCP connections on `local_port`
    that their peers have not read yet (tx_queue of /proc/net/tcp)."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == local_port and f[3] == "01":  # ESTABLISHED
                total += int(f[4].split(":")[0], 16)
    return total


def test_a_slow_browser_reader_holds_the_brokers_memory_bounded(make_broker, chromium, tmp_path):
    """A page that stops reading its WebSocketStream (which reads the socket
    only as the page asks) stalls its stream: the gateway's socket fills and
    the broker, gateway inside, stays within its bound while 40 MB wait in
    the topic; once the page reads again every record arrives in order."""
    gw, page_port = browser_gateway(make_broker)
    topic = unique_topic("gwbrowserslow")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    n = 20_000
    produce_all(producer(gw.broker.bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000}),
                [(None, b"%08d" % i + b"x" * 1992) for i in range(n)], topic)
    before_kb = rss_kb(gw.broker.pid)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "gateway-slow.png"
    page = Page(tmp_path, chromium=chromium, gateway=f"http://127.0.0.1:{gw.port}", page_port=page_port, topic=topic,
                mode="slow", n=n, pause_after=10, query="from=earliest&format=binary", screenshot=str(shot),
                timeout_ms=240_000)
    try:
        page.wait("subscribed", 60)
        paused = page.wait("paused", 60)
        assert paused["received"] == 10
        peak_kb, queued = before_kb, 0
        for _ in range(25):  # 5 s of a stalled reader
            time.sleep(0.2)
            peak_kb = max(peak_kb, rss_kb(gw.broker.pid))
            queued = max(queued, send_queue_bytes(gw.port))
        page.send("resume")
        done = page.wait("done", 300)
    finally:
        page.close()
    grown_mb = (peak_kb - before_kb) / 1024
    print(f"broker RSS {before_kb / 1024:.0f} MB before, at most {peak_kb / 1024:.0f} MB behind the stalled page; "
          f"{queued / 1024:.0f} KiB waiting in the gateway's socket")
    # The browser really stopped reading: the gateway's side of the socket is full.
    assert queued > 64 * 1024, f"only {queued} bytes queued: the page did not stall its socket"
    # Bounded: 256 records of the stream's buffer and one fetch response (1 MiB), about 2 MB; a
    # stream that buffered without bound holds the whole topic, 60 MB here as JSON.
    assert grown_mb < 16, f"the broker grew by {grown_mb:.0f} MB behind a stalled page"
    assert done["errors"] == [], done["errors"]
    assert done["got"] == [[0, i, i] for i in range(n)]


def test_cross_origin_requests_are_answered_for_allowed_origins_only(make_broker):
    gw, page_port = browser_gateway(make_broker)
    allowed = f"http://127.0.0.1:{page_port}"

    def call(method: str, origin: str, **headers):
        req = urllib.request.Request(gw.base + "/topics", method=method, headers={"Origin": origin, **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.headers

    status, headers = call("GET", allowed)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == allowed
    assert "origin" in headers.get_all("Vary", [])
    status, headers = call("GET", "http://evil.example")
    assert status == 200 and headers["Access-Control-Allow-Origin"] is None
    # A preflight (a page's POST with a v2 content type is not a "simple" request).
    status, headers = call("OPTIONS", allowed, **{"Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "content-type"})
    assert status == 204, status
    assert headers["Access-Control-Allow-Origin"] == allowed
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "content-type" in headers["Access-Control-Allow-Headers"]
    status, headers = call("OPTIONS", "http://evil.example", **{"Access-Control-Request-Method": "POST"})
    assert status == 405 and headers["Access-Control-Allow-Origin"] is None

    # Off by default, as in Confluent's REST Proxy.
    plain = start_gateway(make_broker)
    req = urllib.request.Request(plain.base + "/topics", headers={"Origin": allowed})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] is None


def test_websockets_from_pages_of_other_origins_are_refused(make_broker, chromium, tmp_path):
    """Browsers apply no CORS to WebSockets: the gateway itself refuses an
    upgrade from a page whose origin is neither allowed nor its own (403),
    so a page the user happens to visit cannot read topics through their
    browser. Clients that send no Origin are not affected."""
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus

    gw, page_port = browser_gateway(make_broker)
    topic = unique_topic("gwbrowserorigin")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    url = f"ws://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/records"
    for origin in [None, f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{gw.port}"]:
        with connect(url, origin=origin):
            pass
    for path in ("records", "produce"):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/{path}", origin="http://evil.example")
        assert refused.value.response.status_code == 403
        assert "gateway.access.control.allow.origin" in json.loads(refused.value.response.body)["message"]

    # In the browser: a page from an origin not allowed cannot subscribe.
    other_port = free_port()
    page = Page(tmp_path, chromium=chromium, gateway=f"http://127.0.0.1:{gw.port}", page_port=other_port, topic=topic,
                mode="websocket", n=1, query="from=earliest", timeout_ms=30_000)
    try:
        with pytest.raises(AssertionError, match="failed"):
            page.wait("subscribed", 60)
    finally:
        page.close()
