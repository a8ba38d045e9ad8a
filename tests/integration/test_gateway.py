"""The HTTP gateway (issue 15): Confluent REST Proxy v2 over the real binary.

Records produced over HTTP are read back byte for byte by confluent-kafka
and kcat (keys and headers included), and records produced with Kafka
clients are read over HTTP; errors follow Confluent's format and codes, and
the gateway keeps serving after hostile requests.
"""

from __future__ import annotations

import base64
import re
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import TopicPartition

from conftest import free_port, port_accepts, strom_bin
from helpers import (consume_partitions, consumer, create_topic, describe, kcat, produce_all, producer,
                     unique_topic)

V2 = "application/vnd.kafka.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"


class Http:
    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, content_type: str | None = None, accept: str | None = None,
             raw: bytes | None = None, timeout: float = 30):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
                return resp.status, resp.headers, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = text
            return e.code, e.headers, parsed

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def raw_post(port: int, path: str, body: bytes, chunked: bool) -> tuple[int, dict]:
    """POSTs `body` over a plain socket from another thread, reading the
    answer as soon as it comes (a gateway that refuses a large body answers
    before reading all of it)."""
    import threading

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {BINARY_V2}\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {len(body)}\r\n\r\n"

        def send():
            try:
                s.sendall(head.encode())
                step = 64 * 1024
                for i in range(0, len(body), step):
                    part = body[i:i + step]
                    s.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                if chunked:
                    s.sendall(b"0\r\n\r\n")
            except OSError:
                pass

        t = threading.Thread(target=send, daemon=True)
        t.start()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            assert chunk, f"connection closed before an answer: {answer!r}"
            answer += chunk
        head_bytes, _, rest = answer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head_bytes.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            chunk = s.recv(65536)
            assert chunk, "connection closed in the answer"
            rest += chunk
    status = int(head_bytes.split(b" ")[1])
    return status, json.loads(rest[:length])


def wait_http(port: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(port):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


def start_gateway(make_broker, **overrides) -> Http:
    port = free_port()
    b = make_broker(**{"gateway.listener": f"127.0.0.1:{port}", "num.partitions": 3,
                       "group.initial.rebalance.delay.ms": 0, **overrides})
    wait_http(port)
    http = Http(f"http://127.0.0.1:{port}")
    http.broker = b
    http.port = port
    return http


@pytest.fixture
def gw(make_broker):
    return start_gateway(make_broker)


def test_produce_json_read_by_confluent_kafka_and_kcat(gw):
    topic = unique_topic("gwjson")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    records = [
        {"key": {"id": 1}, "value": {"foo": "bar", "n": [1, 2]},
         "headers": [{"name": "trace", "value": b64(b"abc\x00\xff")}, {"name": "empty", "value": None}]},
        {"key": None, "value": "plain string"},
        {"value": 42},
    ]
    status, headers, body = gw.post(f"/topics/{topic}", {"records": records}, content_type=JSON_V2, accept=V2)
    assert status == 200, body
    assert headers["Content-Type"] == V2
    assert body["key_schema_id"] is None and body["value_schema_id"] is None
    assert [o["offset"] for o in body["offsets"]] == [0, 1, 2]
    assert all(o["partition"] == 0 and o["error_code"] is None and o["error"] is None for o in body["offsets"])

    c = consumer(gw.broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, 0)], expected=3)
    assert [m.key() for m in msgs] == [b'{"id":1}', None, None]
    assert [m.value() for m in msgs] == [b'{"foo":"bar","n":[1,2]}', b'"plain string"', b"42"]
    assert msgs[0].headers() == [("trace", b"abc\x00\xff"), ("empty", None)]

    out = kcat(["-C", "-b", gw.broker.bootstrap, "-t", topic, "-e", "-o", "beginning", "-f", "%k|%s|%h\\n"])
    assert out.returncode == 0, describe(out)
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith('{"id":1}|{"foo":"bar","n":[1,2]}|'), lines
    assert lines[1] == '|"plain string"|', lines


def test_produce_binary_byte_for_byte_and_partition_endpoint(gw):
    topic = unique_topic("gwbin")
    create_topic(gw.broker.bootstrap, topic, partitions=3)
    payloads = [(bytes([i, 0, 255, i]), bytes(range(256)) * (i + 1)) for i in range(5)]
    records = [{"key": b64(k), "value": b64(v), "headers": [{"name": "h", "value": b64(k)}]} for k, v in payloads]
    status, _, body = gw.post(f"/topics/{topic}/partitions/2", {"records": records}, content_type=BINARY_V2)
    assert status == 200, body
    assert [(o["partition"], o["offset"]) for o in body["offsets"]] == [(2, i) for i in range(5)]

    c = consumer(gw.broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 2, 0)], expected=5)
    assert [(m.key(), m.value()) for m in msgs] == payloads
    assert [m.headers() for m in msgs] == [[("h", k)] for k, _ in payloads]

    out = kcat(["-C", "-b", gw.broker.bootstrap, "-t", topic, "-p", "2", "-e", "-o", "beginning", "-f", "%K:%k"])
    assert out.returncode == 0, describe(out)
    expected = b"".join(b"%d:%s" % (len(k), k) for k, _ in payloads)
    assert out.stdout == expected


def test_keys_go_where_kafka_clients_put_them(gw):
    """A keyed record lands on the partition Kafka's murmur2 partitioner
    picks: the same partition confluent-kafka (murmur2_random) chooses."""
    topic = unique_topic("gwkeys")
    create_topic(gw.broker.bootstrap, topic, partitions=3)
    keys = [f"key-{i}".encode() for i in range(20)]
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"key": b64(k), "value": b64(b"v")} for k in keys]},
                              content_type=BINARY_V2)
    assert status == 200, body
    http_parts = [o["partition"] for o in body["offsets"]]
    p = producer(gw.broker.bootstrap, partitioner="murmur2_random")
    results = produce_all(p, [(k, b"v") for k in keys], topic)
    assert http_parts == [r[1] for r in results]
    assert len(set(http_parts)) > 1


def test_read_over_http_what_kafka_clients_wrote(gw):
    topic = unique_topic("gwread")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    p = producer(gw.broker.bootstrap)
    produce_all(p, [(b"k%d" % i, b"v%d" % i) for i in range(7)], topic)
    status, _, body = gw.get(f"/topics/{topic}/partitions/0/offsets")
    assert status == 200, body
    assert body == {"beginning_offset": 0, "end_offset": 7}


def test_metadata_endpoints(gw):
    topic = unique_topic("gwmeta")
    create_topic(gw.broker.bootstrap, topic, partitions=2, config={"retention.ms": "123456"})
    status, headers, body = gw.get("/topics", accept=V2)
    assert status == 200 and topic in body, body
    status, _, body = gw.get(f"/topics/{topic}")
    assert status == 200, body
    assert body["name"] == topic
    assert body["configs"]["retention.ms"] == "123456"
    assert [p["partition"] for p in body["partitions"]] == [0, 1]
    assert body["partitions"][0]["replicas"] == [{"broker": 1, "leader": True, "in_sync": True}] or \
        body["partitions"][0]["replicas"][0]["leader"] is True
    status, _, body = gw.get(f"/topics/{topic}/partitions/1")
    assert status == 200 and body["partition"] == 1, body
    status, _, body = gw.get("/brokers")
    assert status == 200 and len(body["brokers"]) == 1, body


def test_errors_have_confluent_codes_and_the_gateway_keeps_serving(gw):
    topic = unique_topic("gwerr")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    ok = {"records": [{"value": b64(b"x")}]}

    status, headers, body = gw.get("/topics/no-such-topic")
    assert (status, body["error_code"]) == (404, 40401), body
    assert headers["Content-Type"] == V2
    # The broker auto-creates topics (its default), so a produce creates one, as with a Kafka producer.
    status, _, body = gw.post(f"/topics/{topic}-auto", ok, content_type=BINARY_V2)
    assert status == 200 and body["offsets"][0]["offset"] == 0, body
    status, _, body = gw.post(f"/topics/{topic}/partitions/7", ok, content_type=BINARY_V2)
    assert (status, body["error_code"]) == (404, 40402), body
    status, _, body = gw.get("/no/such/path")
    assert (status, body["error_code"]) == (404, 404), body
    status, _, body = gw.call("DELETE", "/topics")
    assert (status, body["error_code"]) == (405, 405), body

    # Wrong content types.
    status, _, body = gw.post(f"/topics/{topic}", ok, content_type="text/plain")
    assert (status, body["error_code"]) == (415, 415), body
    status, _, body = gw.post(f"/topics/{topic}", ok, content_type="application/vnd.kafka.avro.v2+json")
    assert status == 415, body
    status, _, body = gw.post(f"/topics/{topic}", ok)
    assert status == 415, body
    # Invalid base64, a value of the wrong type, bodies that are not JSON or of the wrong shape.
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"value": "!!not base64!!"}]}, content_type=BINARY_V2)
    assert (status, body["error_code"]) == (422, 422), body
    assert "base64" in body["message"]
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"value": 5}]}, content_type=BINARY_V2)
    assert status == 422, body
    status, _, body = gw.post(f"/topics/{topic}", raw=b"{not json", content_type=BINARY_V2)
    assert (status, body["error_code"]) == (400, 400), body
    status, _, body = gw.post(f"/topics/{topic}", {"recs": []}, content_type=BINARY_V2)
    assert status == 422, body
    # Oversized body (default limit 8 MiB), declared and streamed.
    big = json.dumps({"records": [{"value": b64(b"x" * (7 * 1024 * 1024))}]}).encode()
    status, body = raw_post(gw.port, f"/topics/{topic}", big, chunked=False)
    assert (status, body["error_code"]) == (413, 413), body
    status, body = raw_post(gw.port, f"/topics/{topic}", big, chunked=True)
    assert (status, body["error_code"]) == (413, 413), body
    # A record larger than the topic's max.message.bytes: refused by the broker, per record.
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"value": b64(b"m" * 1_500_000)}]},
                              content_type=BINARY_V2)
    assert status == 200, body
    [o] = body["offsets"]
    assert o["error_code"] == 1 and "MESSAGE_TOO_LARGE" in o["error"] and o["offset"] is None, o
    # Too many records in one request (default 10,000).
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"value": None}] * 10_001}, content_type=BINARY_V2)
    assert status == 422 and "limit" in body["message"], body
    # Half a request, then the connection closed.
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"POST /topics/" + topic.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " +
                  BINARY_V2.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"records\":")

    # Nothing was written by any of them, and the gateway still serves.
    status, _, body = gw.post(f"/topics/{topic}", ok, content_type=BINARY_V2)
    assert status == 200 and body["offsets"][0]["offset"] == 0, body


def test_standalone_gateway_in_front_of_a_broker(broker, tmp_path):
    port = free_port()
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen([strom_bin(), "gateway", "--bootstrap", broker.bootstrap, "--listener",
                             f"127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        wait_http(port)
        http = Http(f"http://127.0.0.1:{port}")
        topic = unique_topic("gwalone")
        create_topic(broker.bootstrap, topic, partitions=1)
        status, _, body = http.post(f"/topics/{topic}", {"records": [{"value": {"a": 1}}]}, content_type=JSON_V2)
        assert status == 200 and body["offsets"][0]["offset"] == 0, body
        status, _, body = http.get("/topics")
        assert topic in body
        # The broker going away is a 5xx in Confluent's format, not a hang or a crash.
        broker.stop()
        status, _, body = http.get("/topics", timeout=60)
        assert status == 500 and body["error_code"] in (50002, 50003), body
        broker.start()
        deadline = time.monotonic() + 30
        while True:
            status, _, body = http.get("/topics")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and topic in body, body
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_gateway_listener_set_explicitly_must_bind(make_broker):
    """An explicitly set gateway.listener that is taken stops the broker's
    start, as a taken Kafka listener does."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        b = make_broker(start=False, **{"gateway.listener": f"127.0.0.1:{taken}"})
        b.start(wait=False)
        assert b.proc.wait(20) != 0
        assert "gateway.listener" in b.log_tail()


def read_records(gw, base: str, want: int, accept: str, timeout: float = 30, **query) -> list:
    got = []
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        status, headers, body = gw.get(f"{base}/records?{qs}", accept=accept)
        assert status == 200, body
        assert headers["Content-Type"] == accept
        got += body
    return got


def test_consumer_instance_lifecycle_as_confluent_documents(gw):
    topic = unique_topic("gwcons")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    values = [{"foo": "bar", "i": i} for i in range(5)]
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"key": f"k{i}", "value": v}
                                                                for i, v in enumerate(values)]},
                              content_type=JSON_V2)
    assert status == 200, body
    group = unique_topic("gwgroup")

    status, _, body = gw.post(f"/consumers/{group}", {"name": "my_consumer_instance", "format": "json",
                                                      "auto.offset.reset": "earliest"}, content_type=V2)
    assert status == 200, body
    base = f"/consumers/{group}/instances/my_consumer_instance"
    assert body == {"instance_id": "my_consumer_instance", "base_uri": f"http://127.0.0.1:{gw.port}{base}"}
    status, _, body = gw.post(f"/consumers/{group}", {"name": "my_consumer_instance", "format": "json"},
                              content_type=V2)
    assert (status, body["error_code"]) == (409, 40902), body
    status, _, body = gw.post(f"/consumers/{group}", {"name": "other", "format": "avro"}, content_type=V2)
    assert (status, body["error_code"]) == (422, 42204), body

    status, _, body = gw.post(f"{base}/subscription", {"topics": [topic]}, content_type=V2)
    assert status == 204, body
    status, _, body = gw.get(f"{base}/subscription")
    assert body == {"topics": [topic]}
    status, _, body = gw.get(f"{base}/records", accept=BINARY_V2)
    assert (status, body["error_code"]) == (406, 40601), body

    got = read_records(gw, base, 5, JSON_V2)
    assert [(r["key"], r["value"], r["offset"], r["partition"], r["topic"]) for r in got] == \
        [(f"k{i}", v, i, 0, topic) for i, v in enumerate(values)]
    status, _, body = gw.get(f"{base}/assignments")
    assert body == {"partitions": [{"topic": topic, "partition": 0}]}

    status, _, body = gw.post(f"{base}/offsets", content_type=V2)
    assert status == 200, body
    status, _, body = gw.call("GET", f"{base}/offsets", {"partitions": [{"topic": topic, "partition": 0}]},
                              content_type=V2)
    assert status == 200 and body == {"offsets": [{"topic": topic, "partition": 0, "offset": 5, "metadata": ""}]}, body

    status, _, body = gw.call("DELETE", base, content_type=V2)
    assert status == 204, body
    status, _, body = gw.call("DELETE", base, content_type=V2)
    assert (status, body["error_code"]) == (404, 40403), body
    status, _, body = gw.get(f"{base}/records", accept=JSON_V2)
    assert (status, body["error_code"]) == (404, 40403), body

    # The commit is the group's, as a Kafka consumer sees it.
    c = consumer(gw.broker.bootstrap, **{"group.id": group})
    [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert tp.offset == 5


def test_consumer_manual_assignment_positions_and_max_bytes(gw):
    topic = unique_topic("gwassign")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    p = producer(gw.broker.bootstrap, **{"linger.ms": 0})
    produce_all(p, [(None, bytes([i]) * 100, {"partition": 0, "headers": [("n", str(i).encode())]})
                    for i in range(10)], topic)
    group = unique_topic("gwgroup")
    status, _, body = gw.post(f"/consumers/{group}", {"name": "c1", "format": "binary",
                                                      "auto.commit.enable": "false"}, content_type=V2)
    assert status == 200, body
    base = f"/consumers/{group}/instances/c1"
    status, _, body = gw.post(f"{base}/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 3}]},
                              content_type=V2)
    assert (status, body["error_code"]) == (409, 40903), body
    status, _, body = gw.post(f"{base}/assignments", {"partitions": [{"topic": topic, "partition": 0}]},
                              content_type=V2)
    assert status == 204, body
    status, _, body = gw.post(f"{base}/subscription", {"topics": [topic]}, content_type=V2)
    assert (status, body["error_code"]) == (409, 40903), body
    status, _, body = gw.post(f"{base}/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 3}]},
                              content_type=V2)
    assert status == 204, body

    status, _, body = gw.get(f"{base}/records?timeout=2000&max_bytes=250", accept=BINARY_V2)
    assert status == 200, body
    assert [r["offset"] for r in body] == [3, 4]
    assert base64.b64decode(body[0]["value"]) == bytes([3]) * 100
    assert body[0]["key"] is None
    assert body[0]["headers"] == [{"name": "n", "value": b64(b"3")}]
    rest = read_records(gw, base, 5, BINARY_V2)
    assert [r["offset"] for r in rest] == [5, 6, 7, 8, 9]

    status, _, _ = gw.post(f"{base}/positions/beginning", {"partitions": [{"topic": topic, "partition": 0}]},
                           content_type=V2)
    assert status == 204
    again = read_records(gw, base, 10, BINARY_V2)
    assert [r["offset"] for r in again] == list(range(10))
    status, _, _ = gw.post(f"{base}/positions/end", {"partitions": [{"topic": topic, "partition": 0}]},
                           content_type=V2)
    assert status == 204
    produce_all(p, [(b"new", b"later", {"partition": 0})], topic)
    later = read_records(gw, base, 1, BINARY_V2)
    assert [(r["offset"], base64.b64decode(r["key"])) for r in later] == [(10, b"new")]

    status, _, body = gw.post(f"{base}/offsets", {"offsets": [{"topic": topic, "partition": 0, "offset": 7}]},
                              content_type=V2)
    assert status == 200, body
    status, _, body = gw.call("GET", f"{base}/offsets", {"partitions": [{"topic": topic, "partition": 0},
                                                                        {"topic": topic, "partition": 1}]},
                              content_type=V2)
    assert body == {"offsets": [{"topic": topic, "partition": 0, "offset": 7, "metadata": ""}]}, body
    status, _, body = gw.get(f"{base}/assignments")
    assert body == {"partitions": [{"topic": topic, "partition": 0}]}


# --- live streams -------------------------------------------------------------

def ws_url(gw, topic: str, **query) -> str:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/records" + (f"?{qs}" if qs else "")


def ws_read(ws, n: int, timeout: float = 30) -> list[dict]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(out)} of {n} records within {timeout}s"
        out.append(json.loads(ws.recv(timeout=left)))
    return out


def test_websocket_stream_from_earliest_offset_and_latest(gw):
    from websockets.sync.client import connect

    topic = unique_topic("gwws")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    p = producer(gw.broker.bootstrap)
    produce_all(p, [(b"k%d" % i, b"v%d" % i, {"partition": i % 2, "headers": [("h", b"\x00\x01")]})
                    for i in range(100)], topic)

    with connect(ws_url(gw, topic, **{"from": "earliest", "format": "binary", "partitions": "1"})) as ws:
        got = ws_read(ws, 50)
        assert [r["offset"] for r in got] == list(range(50))
        assert all(r["partition"] == 1 and r["topic"] == topic for r in got)
        assert [base64.b64decode(r["value"]) for r in got] == [b"v%d" % i for i in range(1, 100, 2)]
        assert got[0]["headers"] == [{"name": "h", "value": b64(b"\x00\x01")}]
        # Live: records written after the stream caught up arrive too.
        produce_all(p, [(None, b"live", {"partition": 1})], topic)
        [live] = ws_read(ws, 1)
        assert (live["offset"], base64.b64decode(live["value"]), live["key"]) == (50, b"live", None)

    with connect(ws_url(gw, topic, **{"from": "45", "partitions": "0"})) as ws:
        got = ws_read(ws, 5)
        assert [r["offset"] for r in got] == [45, 46, 47, 48, 49]
        # The json format shows bytes that are not JSON as text.
        assert got[0]["value"] == "v90" and got[0]["key"] == "k90"

    with connect(ws_url(gw, topic, **{"from": "latest"})) as ws:
        time.sleep(0.5)
        produce_all(p, [(None, b'{"after":true}', {"partition": 0})], topic)
        [r] = ws_read(ws, 1)
        assert (r["partition"], r["offset"], r["value"]) == (0, 50, {"after": True})


def test_websocket_from_a_date_time(gw):
    from websockets.sync.client import connect

    topic = unique_topic("gwwsts")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    p = producer(gw.broker.bootstrap)
    base_ms = 1_700_000_000_000
    produce_all(p, [(None, b"%d" % i, {"timestamp": base_ms + i * 1000}) for i in range(10)], topic)
    # 2023-11-14T22:13:25Z is base_ms + 5 s.
    with connect(ws_url(gw, topic, **{"from": "2023-11-14T22:13:25Z"})) as ws:
        got = ws_read(ws, 5)
        assert [r["offset"] for r in got] == [5, 6, 7, 8, 9]
        assert got[0]["timestamp"] == base_ms + 5000


def test_stream_requests_are_checked_before_streaming(gw):
    topic = unique_topic("gwwsbad")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    path = f"/ws/v1/topics/{topic}/records"
    status, _, body = gw.get(path)
    assert (status, body["error_code"]) == (406, 406), body
    status, _, body = gw.get("/ws/v1/topics/no-such-topic/records", accept="text/event-stream")
    assert (status, body["error_code"]) == (404, 40401), body
    status, _, body = gw.get(path + "?partitions=3", accept="text/event-stream")
    assert (status, body["error_code"]) == (404, 40402), body
    status, _, body = gw.get(path + "?from=yesterday", accept="text/event-stream")
    assert (status, body["error_code"]) == (400, 400), body
    status, _, body = gw.get(path + "?format=avro", accept="text/event-stream")
    assert status == 400, body


def test_server_sent_events_with_curl(gw):
    topic = unique_topic("gwsse")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    p = producer(gw.broker.bootstrap)
    produce_all(p, [(b"k", b'{"n":%d}' % i) for i in range(3)], topic)
    out = subprocess.run(["curl", "-sN", "--max-time", "3", "-H", "Accept: text/event-stream",
                          f"http://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/records?from=earliest"],
                         capture_output=True, timeout=30)
    assert out.returncode == 28, out  # curl's "timed out": the stream stays open
    events = [json.loads(line[len("data:"):]) for line in out.stdout.decode().splitlines()
              if line.startswith("data:")]
    assert [(e["offset"], e["value"]) for e in events] == [(0, {"n": 0}), (1, {"n": 1}), (2, {"n": 2})]
    assert "id:0:2" in out.stdout.decode().replace(" ", "")


def test_server_sent_events_resume_after_the_last_event_id(gw):
    """Each event's id names the last offset delivered on every partition;
    a request with Last-Event-ID (what a reconnecting EventSource sends)
    carries on after it."""
    topic = unique_topic("gwsseid")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    produce_all(producer(gw.broker.bootstrap), [(None, b'{"n":%d}' % i, {"partition": i % 2}) for i in range(6)],
                topic)

    def events(*headers: str) -> tuple[list[str], list[tuple[int, int]]]:
        args = ["curl", "-sN", "--max-time", "2", "-H", "Accept: text/event-stream"]
        for h in headers:
            args += ["-H", h]
        out = subprocess.run(args + [f"http://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/records?from=earliest"],
                             capture_output=True, timeout=30)
        lines = out.stdout.decode().splitlines()
        ids = [line[len("id:"):].strip() for line in lines if line.startswith("id:")]
        records = [json.loads(line[len("data:"):]) for line in lines if line.startswith("data:")]
        return ids, [(r["partition"], r["offset"]) for r in records]

    ids, got = events()
    assert sorted(got) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert ids[-1] == "0:2,1:2"
    # Resumed from the first event that has seen both partitions: exactly what came after it.
    first_of_both = next(i for i in ids if "0:-1" not in i and "1:-1" not in i)
    last = {int(p): int(o) for p, o in (pair.split(":") for pair in first_of_both.split(","))}
    _, rest = events(f"Last-Event-ID: {first_of_both}")
    assert rest and sorted(rest) == sorted(r for r in got if r[1] > last[r[0]]), (first_of_both, rest)
    req = urllib.request.Request(f"{gw.base}/ws/v1/topics/{topic}/records",
                                 headers={"Accept": "text/event-stream", "Last-Event-ID": "zero:one"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error_code"] == 400


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_slow_websocket_reader_holds_its_memory_bounded(gw):
    """A reader that stops reading slows only its own stream: the broker's
    (and in-process gateway's) memory stays bounded while 40 MB wait in the
    topic, and every record then arrives in order."""
    from websockets.sync.client import connect

    topic = unique_topic("gwslow")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    p = producer(gw.broker.bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000})
    n = 20_000
    produce_all(p, [(None, b"%08d" % i + b"x" * 1992) for i in range(n)], topic)
    before = rss_kb(gw.broker.pid)
    with connect(ws_url(gw, topic, **{"from": "earliest", "format": "binary"}), max_size=None,
                 max_queue=4) as ws:
        ws_read(ws, 10)
        time.sleep(5)  # not reading: buffers fill, the stream's fetching stops
        stalled = rss_kb(gw.broker.pid)
        got = ws_read(ws, n - 10, timeout=240)
    grown_mb = (stalled - before) / 1024
    print(f"broker RSS {before / 1024:.0f} MB before, {stalled / 1024:.0f} MB behind the stalled reader")
    # About 2 MB is the bound (the stream's 256 records and one 1 MiB fetch); without one, the
    # topic's 40 MB as JSON (60 MB).
    assert grown_mb < 16, f"the broker grew by {grown_mb:.0f} MB behind a stalled reader"
    assert [base64.b64decode(r["value"])[:8] for r in got[:3]] == [b"%08d" % i for i in range(10, 13)]
    assert [r["offset"] for r in got] == list(range(10, n))


def test_produce_to_an_unknown_topic_without_auto_creation_is_40401(make_broker):
    gw = start_gateway(make_broker, **{"auto.create.topics.enable": "false"})
    status, _, body = gw.post("/topics/no-such-topic", {"records": [{"value": None}]}, content_type=BINARY_V2)
    assert (status, body["error_code"]) == (404, 40401), body
    status, _, body = gw.get("/topics")
    assert status == 200 and "no-such-topic" not in body


def test_readme_examples(gw):
    """The README's curl block, run against this gateway: produce, a
    consumer instance's lifecycle, and an SSE tail."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- gateway-examples: test_gateway.py runs this block -->", 1)[1]
    script = re.search(r"```sh\n(.*?)```", block, re.S).group(1)
    script = script.replace("localhost:8082", f"127.0.0.1:{gw.port}")
    create_topic(gw.broker.bootstrap, "jsontest", partitions=1)
    create_topic(gw.broker.bootstrap, "bintest", partitions=1)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, timeout=120)
    assert out.returncode == 0, out
    text = out.stdout.decode()
    answers, sse = [], []
    decoder, pos = json.JSONDecoder(), 0
    while pos < len(text) and text[pos] in "[{":
        value, end = decoder.raw_decode(text, pos)
        answers.append(value)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    sse = [json.loads(line[5:]) for line in text[pos:].splitlines() if line.startswith("data:")]
    ok = {"offsets": [{"partition": 0, "offset": 0, "error_code": None, "error": None}],
          "key_schema_id": None, "value_schema_id": None}
    assert answers[0] == ok and answers[1] == ok, answers
    assert answers[2]["name"] == "jsontest"
    assert answers[3] == {"instance_id": "me", "base_uri": f"http://127.0.0.1:{gw.port}/consumers/mygroup/instances/me"}
    assert answers[4] == [{"topic": "jsontest", "key": "k1", "value": {"foo": "bar"}, "partition": 0, "offset": 0}]
    assert len(answers) == 5, answers  # subscription, commit and delete answer with no body
    assert [(e["offset"], e["key"], e["value"]) for e in sse] == [(0, "k1", {"foo": "bar"})]
    c = consumer(gw.broker.bootstrap)
    [m] = consume_partitions(c, [TopicPartition("bintest", 0, 0)], expected=1)
    assert (m.value(), m.headers()) == (b"hello", [("h", b"v")])


# --- v3 ---------------------------------------------------------------------------

def test_v3_clusters_topics_partitions_and_records(gw):
    status, headers, body = gw.get("/v3/clusters")
    assert status == 200 and headers["Content-Type"] == "application/json", body
    [cluster] = body["data"]
    cid = cluster["cluster_id"]
    assert cluster["kind"] == "KafkaCluster" and cid
    assert cluster["topics"]["related"] == f"http://127.0.0.1:{gw.port}/v3/clusters/{cid}/topics"
    status, _, body = gw.get("/v3/clusters/not-this-cluster")
    assert (status, body["error_code"]) == (404, 404), body

    topic = unique_topic("gwv3")
    status, _, body = gw.post(f"/v3/clusters/{cid}/topics", {"topic_name": topic, "partitions_count": 2,
                                                             "configs": [{"name": "retention.ms", "value": "98765"}]},
                              content_type="application/json")
    assert status == 201, body
    assert (body["topic_name"], body["partitions_count"], body["replication_factor"]) == (topic, 2, 1)
    status, _, body = gw.post(f"/v3/clusters/{cid}/topics", {"topic_name": topic}, content_type="application/json")
    assert (status, body["error_code"]) == (400, 40002), body
    status, _, body = gw.get(f"/v3/clusters/{cid}/topics")
    assert topic in [t["topic_name"] for t in body["data"]]
    status, _, body = gw.get(f"/v3/clusters/{cid}/topics/{topic}/partitions")
    assert [p["partition_id"] for p in body["data"]] == [0, 1]
    status, _, body = gw.get(f"/v3/clusters/{cid}/topics/{topic}/partitions/1")
    assert status == 200 and body["partition_id"] == 1, body

    # One record, then three in one body (v3's streaming mode), each answered.
    rec = {"partition_id": 1, "headers": [{"name": "h", "value": b64(b"hv")}],
           "key": {"type": "BINARY", "data": b64(b"\x00key")}, "value": {"type": "JSON", "data": {"a": 1}},
           "timestamp": "2023-11-14T22:13:25.123Z"}
    status, _, body = gw.post(f"/v3/clusters/{cid}/topics/{topic}/records", rec, content_type="application/json")
    assert status == 200, body
    assert (body["error_code"], body["partition_id"], body["offset"]) == (200, 1, 0), body
    assert body["timestamp"] == "2023-11-14T22:13:25.123Z"
    assert body["key"] == {"type": "BINARY", "size": 4} and body["value"] == {"type": "JSON", "size": 7}
    stream = b"".join(json.dumps({"partition_id": 0, "value": {"type": "STRING", "data": f"s{i}"}}).encode()
                      for i in range(3))
    for _ in range(2):
        req = urllib.request.Request(f"http://127.0.0.1:{gw.port}/v3/clusters/{cid}/topics/{topic}/records",
                                     data=stream, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
            results = [json.loads(line) for line in resp.read().decode().splitlines()]
    assert [(r["error_code"], r["partition_id"], r["offset"]) for r in results] == [(200, 0, 3), (200, 0, 4), (200, 0, 5)]
    status, _, body = gw.post(f"/v3/clusters/{cid}/topics/{topic}/records",
                              {"value": {"type": "BINARY", "data": "@@@"}}, content_type="application/json")
    assert status == 422 or status == 400, body

    c = consumer(gw.broker.bootstrap)
    [m] = consume_partitions(c, [TopicPartition(topic, 1, 0)], expected=1)
    assert (m.key(), m.value(), m.headers(), m.timestamp()[1]) == (b"\x00key", b'{"a":1}', [("h", b"hv")],
                                                                    1_700_000_005_123)
    vals = consume_partitions(consumer(gw.broker.bootstrap), [TopicPartition(topic, 0, 0)], expected=6)
    assert [m.value() for m in vals] == [b"s0", b"s1", b"s2"] * 2

    status, _, body = gw.call("DELETE", f"/v3/clusters/{cid}/topics/{topic}")
    assert status == 204, body
    status, _, body = gw.get(f"/v3/clusters/{cid}/topics/{topic}")
    assert (status, body["error_code"]) == (404, 404), body


def test_v3_errors_are_confluent_v3_json(gw):
    """v3 answers its errors as Confluent's v3 does: `application/json`, a body of
    `error_code` and `message`; v2's errors keep v2's content type."""
    _, _, body = gw.get("/v3/clusters")
    cid = body["data"][0]["cluster_id"]
    topic = unique_topic("gwv3err")
    gw.post(f"/v3/clusters/{cid}/topics", {"topic_name": topic}, content_type="application/json")
    cases = [
        ("GET", "/v3/clusters/not-this-cluster", None, None, 404),
        ("GET", f"/v3/clusters/{cid}/topics/no-such-topic-{topic}", None, None, 404),
        ("GET", f"/v3/clusters/{cid}/topics/{topic}/partitions/99", None, None, 404),
        ("GET", f"/v3/clusters/{cid}/topics/{topic}/partitions/not-a-number", None, None, 404),
        ("POST", f"/v3/clusters/{cid}/topics", b"{not json", "application/json", 400),
        ("POST", f"/v3/clusters/{cid}/topics", b'{"topic_name": 5}', "application/json", 422),
        ("POST", f"/v3/clusters/{cid}/topics", b'{"topic_name": "x"}', "text/plain", 415),
        ("POST", f"/v3/clusters/{cid}/topics/{topic}/records", b"[1, 2", "application/json", 400),
        ("GET", f"/v3/clusters/{cid}/consumer-groups/no-such-group", None, None, 404),
        ("GET", "/v3/no-such-resource", None, None, 404),
        ("PUT", "/v3/clusters", None, None, 405),
    ]
    for method, path, raw, ctype, want in cases:
        status, headers, body = gw.call(method, path, raw=raw, content_type=ctype)
        where = f"{method} {path}: {status} {headers.get('Content-Type')} {body}"
        assert status == want, where
        assert headers["Content-Type"] == "application/json", where
        assert isinstance(body, dict) and isinstance(body["error_code"], int), where
        assert isinstance(body["message"], str) and body["message"], where
    status, headers, body = gw.get(f"/topics/no-such-topic-{topic}")
    assert (status, body["error_code"]) == (404, 40401), body
    assert headers["Content-Type"] == "application/vnd.kafka.v2+json"


def test_openapi_document_describes_every_answer(gw):
    """Each operation of /openapi.json, called with placeholder arguments and
    no body, answers with a status the document lists, never a 5xx."""
    status, headers, doc = gw.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3."), doc
    for path in ["/topics/{topic}", "/consumers/{group}", "/ws/v1/topics/{topic}/records",
                 "/v3/clusters/{cluster}/topics/{topic}/records", "/consumers/{group}/instances/{instance}/records"]:
        assert path in doc["paths"], path
    values = {"topic": "openapi-probe", "group": "probe", "instance": "probe", "partition": "0",
              "cluster": "probe", "name": "retention.ms"}
    checked = 0
    for path, ops in doc["paths"].items():
        concrete = path
        for k, v in values.items():
            concrete = concrete.replace("{" + k + "}", v)
        for method, op in ops.items():
            status, _, body = gw.call(method.upper(), concrete)
            assert status < 500, (method, path, status, body)
            assert str(status) in op["responses"], (method, path, status, body)
            if status >= 400:
                assert set(body) == {"error_code", "message"}, (method, path, body)
            checked += 1
            if method in ("post", "put"):
                for junk, ct in [(b"\x00\xff{[", "application/json"), (b'{"records": 5}', BINARY_V2),
                                 (b'[1, "x", null]', V2), (b'{"a":' * 5000, "application/json")]:
                    status, _, body = gw.call(method.upper(), concrete, raw=junk, content_type=ct)
                    assert 400 <= status < 500 or status == 200, (method, path, junk[:20], status, body)
                    assert str(status) in op["responses"], (method, path, junk[:20], status, body)
    assert checked >= 30
    status, _, body = gw.get("/topics")
    assert status == 200 and "openapi-probe" not in body


class Standalone:
    """`strom gateway` in front of a broker."""

    def __init__(self, bootstrap: str, tmp_path, *args: str):
        self.port = free_port()
        self.log = open(tmp_path / f"gateway-{self.port}.log", "wb")
        self.proc = subprocess.Popen([strom_bin(), "gateway", "--bootstrap", bootstrap, "--listener",
                                      f"127.0.0.1:{self.port}", *args], stdout=self.log, stderr=self.log)
        wait_http(self.port)
        self.http = Http(f"http://127.0.0.1:{self.port}")
        self.http.port = self.port

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def closed_within(s: socket.socket, timeout: float) -> bool:
    """Whether the peer closes `s` within `timeout` (whatever it sent first)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            if s.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_thousands_of_idle_sockets_are_closed_and_the_gateway_serves(broker, tmp_path):
    gw = Standalone(broker.bootstrap, tmp_path, "--idle-timeout-ms", "1500")
    try:
        topic = unique_topic("gwidle")
        create_topic(broker.bootstrap, topic, partitions=1)
        idle = []
        for _ in range(4):  # in waves, so the kernel's accept backlog (1024) never overflows
            idle += [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(500)]
            time.sleep(0.2)
        half = socket.create_connection(("127.0.0.1", gw.port))
        half.sendall(b"POST /topics/" + topic.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + BINARY_V2.encode() +
                     b"\r\nContent-Length: 100\r\n\r\n{")
        # Meanwhile the gateway serves others.
        status, _, body = gw.http.post(f"/topics/{topic}", {"records": [{"value": b64(b"x")}]},
                                       content_type=BINARY_V2)
        assert status == 200, body
        start = time.monotonic()
        assert closed_within(half, 10)
        assert all(closed_within(s, 10) for s in idle)
        assert time.monotonic() - start < 15
        for s in idle + [half]:
            s.close()
        status, _, body = gw.http.get("/topics")
        assert status == 200 and topic in body

        # A quiet WebSocket stream is kept alive by pings, not closed as idle.
        from websockets.sync.client import connect
        with connect(ws_url(gw.http, topic, **{"from": "latest"})) as ws:
            time.sleep(4)
            produce_all(producer(broker.bootstrap), [(None, b'"late"')], topic)
            [r] = ws_read(ws, 1)
            assert (r["offset"], r["value"]) == (1, "late")
    finally:
        gw.close()


def test_concurrent_requests_share_batches_and_each_gets_its_own_offset(gw):
    """One-record requests sent at once are gathered into shared batches per
    partition; every answer still names the offset its record got."""
    from concurrent.futures import ThreadPoolExecutor

    topic = unique_topic("gwconc")
    create_topic(gw.broker.bootstrap, topic, partitions=2)

    def send(i):
        body = {"records": [{"value": b64(b"r%d" % i), "partition": i % 2},
                            {"value": b64(b"s%d" % i), "partition": i % 2}]}
        status, _, resp = gw.post(f"/topics/{topic}", body, content_type=BINARY_V2)
        assert status == 200, resp
        return i, [(o["partition"], o["offset"]) for o in resp["offsets"]]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, range(200)))
    by_offset = {}
    for i, [(p1, o1), (p2, o2)] in answers:
        assert p1 == p2 == i % 2 and o2 == o1 + 1
        by_offset[(p1, o1)] = b"r%d" % i
        by_offset[(p2, o2)] = b"s%d" % i
    assert sorted(o for p, o in by_offset if p == 0) == list(range(200))
    c = consumer(gw.broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)], expected=400)
    assert {(m.partition(), m.offset()): m.value() for m in msgs} == by_offset


def test_websocket_produce_answers_each_record_in_order(gw):
    from websockets.sync.client import connect

    topic = unique_topic("gwwsprod")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    url = f"ws://127.0.0.1:{gw.port}/ws/v1/topics/{topic}/produce?format=binary"
    with connect(url) as ws:
        for i in range(300):  # pipelined: all sent before any answer is read
            rec = {"value": b64(b"\x00v%d" % i), "partition": i % 2, "headers": [{"name": "i", "value": b64(b"%d" % i)}]}
            if i == 150:
                rec = {"value": "!!not base64!!"}
            ws.send(json.dumps(rec))
        answers = [json.loads(ws.recv(timeout=30)) for _ in range(300)]
    assert answers[150]["error_code"] == 422 and "base64" in answers[150]["message"], answers[150]
    good = [(i, a) for i, a in enumerate(answers) if i != 150]
    assert all(a["partition"] == i % 2 for i, a in good)
    for p in (0, 1):
        offsets = [a["offset"] for i, a in good if i % 2 == p]
        assert offsets == list(range(len(offsets))), offsets
    c = consumer(gw.broker.bootstrap)
    msgs = consume_partitions(c, [TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)], expected=299)
    got = {(m.partition(), m.offset()): (m.value(), m.headers()) for m in msgs}
    assert got == {(a["partition"], a["offset"]): (b"\x00v%d" % i, [("i", b"%d" % i)]) for i, a in good}
    status, _, body = gw.get(f"/ws/v1/topics/{topic}/produce")
    assert (status, body["error_code"]) == (426, 426), body


def test_v3_consumer_group_lag(gw):
    topic = unique_topic("gwlag")
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    produce_all(producer(gw.broker.bootstrap), [(None, b"x", {"partition": i % 2}) for i in range(10)], topic)
    group = unique_topic("gwlaggroup")
    c = consumer(gw.broker.bootstrap, **{"group.id": group})
    c.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 1)], asynchronous=False)
    _, _, body = gw.get("/v3/clusters")
    cid = body["data"][0]["cluster_id"]
    status, _, body = gw.get(f"/v3/clusters/{cid}/consumer-groups/{group}/lag-summary")
    assert status == 200, body
    assert (body["total_lag"], body["max_lag"], body["max_lag_topic_name"], body["max_lag_partition_id"]) == \
        (6, 4, topic, 1), body
    status, _, body = gw.get(f"/v3/clusters/{cid}/consumer-groups/{group}/lags")
    assert sorted((l["partition_id"], l["current_offset"], l["log_end_offset"], l["lag"]) for l in body["data"]) == \
        [(0, 3, 5, 2), (1, 1, 5, 4)], body
    status, _, body = gw.get(f"/v3/clusters/{cid}/consumer-groups/{group}")
    assert status == 200 and body["consumer_group_id"] == group, body
    status, _, body = gw.get(f"/v3/clusters/{cid}/consumer-groups")
    assert group in [g["consumer_group_id"] for g in body["data"]], body
    status, _, body = gw.get(f"/v3/clusters/{cid}/consumer-groups/no-such-group/lag-summary")
    assert (status, body["error_code"]) == (404, 404), body


def test_v3_topic_configs(gw):
    topic = unique_topic("gwcfg")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    _, _, body = gw.get("/v3/clusters")
    cid = body["data"][0]["cluster_id"]
    base = f"/v3/clusters/{cid}/topics/{topic}/configs"
    status, _, body = gw.call("PUT", f"{base}/retention.ms", {"value": "4242"}, content_type="application/json")
    assert status == 204, body
    status, _, body = gw.get(f"{base}/retention.ms")
    assert status == 200 and (body["value"], body["is_default"], body["source"]) == \
        ("4242", False, "DYNAMIC_TOPIC_CONFIG"), body
    status, _, body = gw.get(base)
    assert {"retention.ms", "cleanup.policy"} <= {c["name"] for c in body["data"]}, body
    status, _, body = gw.call("PUT", f"{base}/no.such.config", {"value": "1"}, content_type="application/json")
    assert status == 400, body
    status, _, body = gw.call("DELETE", f"{base}/retention.ms")
    assert status == 204, body
    status, _, body = gw.get(f"{base}/retention.ms")
    assert body["is_default"] is True or body["value"] != "4242", body


def test_websocket_stream_commits_what_a_group_acknowledges(gw):
    from websockets.sync.client import connect

    topic = unique_topic("gwwsgrp")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    produce_all(producer(gw.broker.bootstrap), [(None, b'%d' % i) for i in range(10)], topic)
    group = unique_topic("gwwsgroup")
    with connect(ws_url(gw, topic, **{"from": "earliest", "group": group})) as ws:
        assert [r["offset"] for r in ws_read(ws, 10)] == list(range(10))
        ws.send(json.dumps({"ack": {"partition": 0, "offset": 5}}))
        ws.send("not an ack")
        err = json.loads(ws.recv(timeout=10))
        assert err["error_code"] == 400, err
    deadline = time.monotonic() + 10
    while True:
        [tp] = consumer(gw.broker.bootstrap, **{"group.id": group}).committed([TopicPartition(topic, 0)], timeout=10)
        if tp.offset == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tp.offset == 6
    # The group's stream resumes after what it acknowledged.
    with connect(ws_url(gw, topic, **{"from": "earliest", "group": group})) as ws:
        assert [r["offset"] for r in ws_read(ws, 4)] == [6, 7, 8, 9]
    with connect(ws_url(gw, topic, **{"from": "earliest"})) as ws:
        ws_read(ws, 1)
        ws.send(json.dumps({"ack": {"partition": 0, "offset": 1}}))
        msgs = [json.loads(ws.recv(timeout=10)) for _ in range(10)]
        assert any(m.get("error_code") == 400 for m in msgs), msgs


def test_consumer_topic_pattern_subscription(gw):
    prefix = unique_topic("gwpat")
    for suffix in ("a", "b"):
        create_topic(gw.broker.bootstrap, f"{prefix}-{suffix}", partitions=1)
    create_topic(gw.broker.bootstrap, f"{prefix}x-other", partitions=1)
    p = producer(gw.broker.bootstrap)
    for t in (f"{prefix}-a", f"{prefix}-b", f"{prefix}x-other"):
        produce_all(p, [(None, t.encode())], t)
    group = unique_topic("gwpatgroup")
    status, _, body = gw.post(f"/consumers/{group}", {"name": "c", "auto.offset.reset": "earliest"}, content_type=V2)
    assert status == 200, body
    base = f"/consumers/{group}/instances/c"
    status, _, body = gw.post(f"{base}/subscription", {"topic_pattern": "("}, content_type=V2)
    assert status == 422, body
    status, _, body = gw.post(f"{base}/subscription", {"topic_pattern": f"{prefix}-.*"}, content_type=V2)
    assert status == 204, body
    status, _, body = gw.get(f"{base}/subscription")
    assert body == {"topics": [f"{prefix}-a", f"{prefix}-b"]}
    got = read_records(gw, base, 2, BINARY_V2)
    assert sorted(r["topic"] for r in got) == [f"{prefix}-a", f"{prefix}-b"]
    # A topic created later that matches joins the subscription.
    create_topic(gw.broker.bootstrap, f"{prefix}-c", partitions=1)
    produce_all(p, [(None, b"late")], f"{prefix}-c")
    later = read_records(gw, base, 1, BINARY_V2, timeout=60)
    assert [(r["topic"], base64.b64decode(r["value"])) for r in later] == [(f"{prefix}-c", b"late")]


def test_v3_streaming_mode_answers_each_record_as_it_arrives(gw):
    """Transfer-Encoding: chunked: each record is answered while the request
    is still open, in order, one JSON result per line."""
    topic = unique_topic("gwv3stream")
    create_topic(gw.broker.bootstrap, topic, partitions=1)
    _, _, body = gw.get("/v3/clusters")
    cid = body["data"][0]["cluster_id"]

    def chunk(b: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(b), b)

    def rec(i: int) -> bytes:
        return json.dumps({"value": {"type": "JSON", "data": {"i": i}}}).encode()

    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(f"POST /v3/clusters/{cid}/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        got = b""

        def wait_for(needle: bytes):
            nonlocal got
            while needle not in got:
                part = s.recv(65536)
                assert part, got
                got += part

        s.sendall(chunk(rec(0)))
        wait_for(b'"offset":0')  # answered before the request ends
        r1, r2 = rec(1), rec(2)
        s.sendall(chunk(r1 + b"\n" + r2[:7]))
        s.sendall(chunk(r2[7:]))
        wait_for(b'"offset":2')
        s.sendall(chunk(b'{"value": {"type": "BINARY", "data": "@@"}}'))
        s.sendall(chunk(rec(3)) + b"0\r\n\r\n")
        wait_for(b'"offset":3')
    text = got.decode()
    lines = [json.loads(line) for line in re.findall(r'\{"[^\r\n]*\}', text)]
    assert [(l["error_code"], l.get("offset")) for l in lines] == [(200, 0), (200, 1), (200, 2), (422, None), (200, 3)]
    msgs = consume_partitions(consumer(gw.broker.bootstrap), [TopicPartition(topic, 0, 0)], expected=4)
    assert [json.loads(m.value()) for m in msgs] == [{"i": i} for i in range(4)]
