"""The gateway's limits set from `strom serve`'s configuration (gateway.*),
each answered with a clear 4xx in Confluent's format (issue 15)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time

import pytest

from conftest import free_port, strom_bin
from helpers import create_topic, unique_topic
from test_gateway import BINARY_V2, V2, Standalone, b64, closed_within, start_gateway, ws_url

LIMITS = {
    "gateway.max.request.bytes": 2048,
    "gateway.max.records.per.request": 3,
    "gateway.max.streams": 1,
    "gateway.max.consumer.instances": 1,
    "gateway.max.connections": 8,
    "gateway.idle.timeout.ms": 1500,
    "gateway.consumer.instance.timeout.ms": 2000,
}


@pytest.fixture
def limited(make_broker):
    return start_gateway(make_broker, **LIMITS)


def test_body_size_and_records_per_request(limited):
    topic = unique_topic("gwlim")
    create_topic(limited.broker.bootstrap, topic, partitions=1)
    status, _, body = limited.post(f"/topics/{topic}", raw=b'{"records": [{"value": "' + b"A" * 4000 + b'"}]}',
                                   content_type=BINARY_V2)
    assert (status, body["error_code"]) == (413, 413), body
    assert "2048" in body["message"]
    records = [{"value": b64(b"x")}] * 4
    status, _, body = limited.post(f"/topics/{topic}", {"records": records}, content_type=BINARY_V2)
    assert (status, body["error_code"]) == (422, 422), body
    assert "limit of 3" in body["message"]
    status, _, body = limited.post(f"/topics/{topic}", {"records": records[:3]}, content_type=BINARY_V2)
    assert status == 200 and [o["offset"] for o in body["offsets"]] == [0, 1, 2], body


def test_consumer_instances_are_bounded_and_expire(limited):
    status, _, body = limited.post("/consumers/lg", {"name": "one"}, content_type=V2)
    assert status == 200, body
    status, _, body = limited.post("/consumers/lg", {"name": "two"}, content_type=V2)
    assert (status, body["error_code"]) == (429, 429), body
    # Unused for gateway.consumer.instance.timeout.ms: removed, and its slot free.
    time.sleep(3.5)
    status, _, body = limited.get("/consumers/lg/instances/one/subscription")
    assert (status, body["error_code"]) == (404, 40403), body
    status, _, body = limited.post("/consumers/lg", {"name": "two"}, content_type=V2)
    assert status == 200, body


def test_a_records_wait_longer_than_the_idle_timeout_is_answered_in_time(limited):
    """A consumer's records request waits at most within the idle timeout:
    the connection was closed under a longer wait (an empty reply)."""
    topic = unique_topic("gwlimwait")
    create_topic(limited.broker.bootstrap, topic, partitions=1)
    status, _, body = limited.post("/consumers/wg", {"name": "w", "format": "binary"}, content_type=V2)
    assert status == 200, body
    status, _, body = limited.post("/consumers/wg/instances/w/subscription", {"topics": [topic]}, content_type=V2)
    assert status == 204, body
    start = time.monotonic()
    status, _, body = limited.get("/consumers/wg/instances/w/records?timeout=5000", accept=BINARY_V2)
    assert (status, body) == (200, []), body
    assert time.monotonic() - start < 1.5


def test_streams_are_bounded(limited):
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus

    topic = unique_topic("gwlimws")
    create_topic(limited.broker.bootstrap, topic, partitions=1)
    with connect(ws_url(limited, topic)):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(limited, topic))
        assert refused.value.response.status_code == 429
        body = json.loads(refused.value.response.body)
        assert body["error_code"] == 429, body
        status, _, body = limited.get(f"/ws/v1/topics/{topic}/records", accept="text/event-stream")
        assert (status, body["error_code"]) == (429, 429), body
    # Closed: the slot is free again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with connect(ws_url(limited, topic)):
                break
        except InvalidStatus:
            assert time.monotonic() < deadline, "the closed stream's slot was not freed"
            time.sleep(0.1)


def test_connections_over_the_limit_get_429_and_idle_ones_are_closed(make_broker):
    # An idle timeout long enough that the held connections are still open,
    # on a busy machine, when the one over the limit comes.
    limited = start_gateway(make_broker, **{**LIMITS, "gateway.idle.timeout.ms": 4000})
    time.sleep(0.5)  # wait_http's probe connection is gone
    held = [socket.create_connection(("127.0.0.1", limited.port)) for _ in range(8)]
    time.sleep(0.3)
    # All 8 are open: none was answered 429.
    readable, _, _ = select.select(held, [], [], 0.2)
    assert readable == [], "a held connection was refused"
    start = time.monotonic()
    status, _, body = limited.get("/topics", timeout=10)
    assert (status, body["error_code"]) == (429, 429), body
    assert "gateway.max.connections" in body["message"]
    assert time.monotonic() - start < 2, "the over-limit connection was not answered at once"
    # gateway.idle.timeout.ms closes the silent ones, and the gateway serves again.
    assert all(closed_within(s, 8) for s in held)
    for s in held:
        s.close()
    status, _, body = limited.get("/topics")
    assert status == 200, body


def _read_until_closed(s: socket.socket, timeout: float) -> bytes:
    """Everything the gateway sends on `s` until it closes it."""
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"not closed within {timeout}s: {out!r}"
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def _assert_408(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"content-type: application/vnd.kafka.v2+json" in head.lower(), answer
    assert b"connection: close" in head.lower(), answer
    parsed = json.loads(body)
    assert parsed["error_code"] == 408 and "gateway.idle.timeout.ms" in parsed["message"], parsed


def test_an_idle_timeout_is_answered_408_where_an_answer_is_owed(limited):
    """gateway.idle.timeout.ms (1500 ms here): a client that sent nothing, or half a request
    (head or body), gets 408 in Confluent's format and the close; a keep-alive connection idle
    after its answer is closed without another (a 408 there could be taken for the answer to
    the client's next request)."""
    addr = ("127.0.0.1", limited.port)
    silent = socket.create_connection(addr)
    half_head = socket.create_connection(addr)
    half_head.sendall(b"GET /topics HTTP/1.1\r\nHost: gw\r\nAccept: application/vnd.kafka.v2+json\r\n")
    half_body = socket.create_connection(addr)
    half_body.sendall(b"POST /consumers/idle408 HTTP/1.1\r\nHost: gw\r\nContent-Type: " + V2.encode()
                      + b"\r\nContent-Length: 64\r\n\r\n{\"name\": ")
    answered = socket.create_connection(addr)
    answered.sendall(b"GET /topics HTTP/1.1\r\nHost: gw\r\n\r\n")
    start = time.monotonic()
    for s in (silent, half_head, half_body):
        answer = _read_until_closed(s, 10)
        _assert_408(answer)
        assert answer.count(b"HTTP/1.1 ") == 1, answer
    assert time.monotonic() - start >= 1.0, "closed before the idle timeout"
    kept = _read_until_closed(answered, 10)
    assert kept.startswith(b"HTTP/1.1 200 ") and kept.count(b"HTTP/1.1 ") == 1, kept
    for s in (silent, half_head, half_body, answered):
        s.close()


@pytest.mark.parametrize("setting,value", [
    ("gateway.max.request.bytes", "0"),
    ("gateway.max.connections", "lots"),
    ("gateway.idle.timeout.ms", "5"),
    ("gateway.access.control.allow.origin", "example.com"),
])
def test_a_bad_gateway_setting_stops_the_start(tmp_path, setting, value):
    port = free_port()
    out = subprocess.run([strom_bin(), "serve", "--data-dir", str(tmp_path / "data"),
                          "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
                          "--override", "admin.http.listener=", "--override", f"gateway.listener=127.0.0.1:{free_port()}",
                          "--override", f"{setting}={value}"], capture_output=True, timeout=30)
    assert out.returncode == 2, out
    assert setting in out.stderr.decode(), out.stderr


def test_the_standalone_gateway_takes_the_same_limits(broker, tmp_path):
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus

    gw = Standalone(broker.bootstrap, tmp_path, "--max-streams", "1", "--max-consumer-instances", "1",
                    "--consumer-instance-timeout-ms", "1000", "--access-control-allow-origin", "http://a.example")
    try:
        topic = unique_topic("gwlimsa")
        create_topic(broker.bootstrap, topic, partitions=1)
        with connect(ws_url(gw.http, topic)):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(gw.http, topic))
            assert refused.value.response.status_code == 429
        status, _, body = gw.http.post("/consumers/sg", {"name": "one"}, content_type=V2)
        assert status == 200, body
        status, _, body = gw.http.post("/consumers/sg", {"name": "two"}, content_type=V2)
        assert status == 429, body
        time.sleep(2.5)
        status, _, body = gw.http.post("/consumers/sg", {"name": "two"}, content_type=V2)
        assert status == 200, body
    finally:
        gw.close()
