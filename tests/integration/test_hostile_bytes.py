"""Hostile bytes on raw sockets: malformed frames must never take the broker
down, and protocol errors must get the error codes Kafka defines."""

import os
import random
import socket
import struct
import threading

import pytest

import kafka_wire as kw
from helpers import create_topic, kcat_roundtrip, unique_topic


def assert_healthy(broker):
    assert broker.alive(), f"broker died (exit code {broker.proc.poll()})"
    kcat_roundtrip(broker.bootstrap)
    assert broker.alive()


def connect(broker, timeout=10):
    return kw.Conn(broker.bootstrap, timeout=timeout)


def test_api_versions_v0_sane(broker):
    """Baseline for the hand-built frames: a well-formed ApiVersions v0."""
    with connect(broker) as c:
        err, apis = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
    assert err == 0
    for key in (kw.PRODUCE, kw.FETCH, kw.LIST_OFFSETS, kw.METADATA, kw.API_VERSIONS, kw.CREATE_TOPICS):
        assert key in apis, f"api key {key} not advertised: {apis}"
        lo, hi = apis[key]
        assert 0 <= lo <= hi
    assert apis[kw.API_VERSIONS][0] == 0
    # The versions these tests use are advertised.
    assert apis[kw.PRODUCE][0] <= 3 <= apis[kw.PRODUCE][1]
    assert apis[kw.FETCH][0] <= 4 <= apis[kw.FETCH][1]
    assert apis[kw.METADATA][0] <= 1 and apis[kw.METADATA][1] >= 4


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_tiny_frames(broker, size):
    """A size field of 0..3: too short to hold even api_key+api_version."""
    with connect(broker) as c:
        c.send(struct.pack(">i", size) + b"\x00\x12\x00"[:size])
        assert c.closed_by_peer(10), f"connection with a {size}-byte frame not closed"
    assert broker.alive()
    # A frame holding api_key and api_version but no correlation id / client id.
    with connect(broker) as c:
        c.send(struct.pack(">i", 4) + kw.i16(kw.API_VERSIONS) + kw.i16(0))
        assert c.closed_by_peer(10)
    assert_healthy(broker)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_partial_size_prefix_then_close(broker, n):
    """1..3 bytes of a size prefix, then a disconnect; and the same bytes on a
    connection left open while other clients work."""
    with connect(broker) as c:
        c.send(b"\x00\x00\x00"[:n])
    with connect(broker) as idle:
        idle.send(b"\x00\x00\x00"[:n])
        assert_healthy(broker)  # a stalled partial frame blocks nobody else
    assert_healthy(broker)


@pytest.mark.parametrize("size", [0x7FFFFFFF, 104857600 + 1, -1, -0x80000000])
def test_oversized_or_negative_size_prefix_closes_connection(broker, size):
    with connect(broker) as c:
        c.send(struct.pack(">i", size) + kw.request_header(kw.API_VERSIONS, 0, 1))
        assert c.closed_by_peer(10), f"size {size}: connection not closed"
    assert_healthy(broker)


def _metadata_v4_of_size(size, corr):
    """A Metadata v4 request (unknown topics, no auto-creation) whose frame
    size field is exactly `size`."""
    header = kw.request_header(kw.METADATA, 4, corr)
    fixed = len(header) + 4 + 1  # header, array length, allow_auto_create flag
    names, left = [], size - fixed
    while left > 0:
        n = min(200, left - 2)
        if 0 < left - 2 - n < 4:
            n -= 4  # leave room for one more name of at least 2 characters
        assert n >= 2
        names.append("n" * (n - len(str(len(names)))) + str(len(names)))
        left -= 2 + n
    payload = header + kw.metadata_body(names, 4, allow_auto_create=False)
    assert len(payload) == size
    return kw.frame(payload), names


def test_size_limit_follows_socket_request_max_bytes(make_broker):
    broker = make_broker(**{"socket.request.max.bytes": 1000})
    with connect(broker) as c:
        # Exactly socket.request.max.bytes: accepted and answered.
        f, names = _metadata_v4_of_size(1000, 1)
        c.send(f)
        resp = c.recv_frame()
        assert resp is not None, "a request of exactly socket.request.max.bytes was refused"
        r = kw.Reader(resp)
        assert r.i32() == 1
        topics = kw.parse_metadata_v4(r)[3]
        assert {t: m.error for t, m in topics.items()} == {n: kw.UNKNOWN_TOPIC_OR_PARTITION for n in names}
        # One byte more: the connection is closed.
        f, _ = _metadata_v4_of_size(1001, 2)
        c.send(f)
        assert c.closed_by_peer(10), "a request of socket.request.max.bytes+1 was not refused"
    assert_healthy(broker)


def test_unknown_api_key(broker):
    with connect(broker) as c:
        c.send(kw.frame(kw.request_header(9999, 0, 77) + b"\x00" * 16))
        try:
            resp = c.recv_frame()
        except (ConnectionResetError, socket.timeout) as e:
            resp = e
        if isinstance(resp, bytes):
            # If the broker answers at all, it answers this correlation id.
            assert struct.unpack(">i", resp[:4])[0] == 77, resp[:16]
        elif isinstance(resp, socket.timeout):
            pytest.fail("unknown api key: no response and connection left open")
    assert_healthy(broker)


def test_api_versions_unsupported_version(broker):
    """KIP-511: ApiVersions with a too-new version gets a v0-format response
    with UNSUPPORTED_VERSION and the supported ranges."""
    with connect(broker) as c:
        r = c.request(kw.API_VERSIONS, 99, b"")
        err, apis = kw.parse_api_versions_v0(r)
        assert err == kw.UNSUPPORTED_VERSION
        assert kw.API_VERSIONS in apis and apis[kw.API_VERSIONS][0] == 0, apis
        assert kw.PRODUCE in apis and kw.FETCH in apis and kw.METADATA in apis, apis
        # The connection stays usable.
        err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
        assert err == 0
    assert_healthy(broker)


def test_unsupported_version_of_other_api(broker):
    """Metadata v999: Kafka closes the connection (no response format exists)."""
    with connect(broker) as c:
        c.send(kw.frame(kw.request_header(kw.METADATA, 999, 5) + kw.i32(-1)))
        _closed_or_error(c, 5)
    assert_healthy(broker)


@pytest.mark.parametrize("count", [0x7FFFFFFF, 0x10000000, -2])
def test_huge_array_lengths(broker, count):
    topic = unique_topic("huge")
    create_topic(broker.bootstrap, topic)
    # Metadata v1 whose topic array claims `count` entries, then a few bytes.
    with connect(broker) as c:
        c.send(kw.frame(kw.request_header(kw.METADATA, 1, 1) + kw.i32(count) + kw.string("x")))
        _closed_or_error(c, 1)
    # Produce v3 whose topic array claims `count` entries.
    with connect(broker) as c:
        body = kw.string(None) + kw.i16(-1) + kw.i32(1000) + kw.i32(count) + kw.string(topic) + kw.i32(1)
        c.send(kw.frame(kw.request_header(kw.PRODUCE, 3, 2) + body))
        _closed_or_error(c, 2)
    # Produce v3 with one topic, one partition, whose records field claims
    # 0x7fffffff bytes.
    with connect(broker) as c:
        body = (kw.string(None) + kw.i16(-1) + kw.i32(1000) + kw.i32(1) + kw.string(topic) + kw.i32(1) + kw.i32(0)
                + kw.i32(count) + b"\x00" * 20)
        c.send(kw.frame(kw.request_header(kw.PRODUCE, 3, 3) + body))
        _closed_or_error(c, 3)
    # A string whose length is 0x7fff (more than the frame holds) as client id.
    with connect(broker) as c:
        c.send(kw.frame(kw.i16(kw.METADATA) + kw.i16(1) + kw.i32(4) + kw.i16(0x7FFF) + b"abc"))
        _closed_or_error(c, 4)
    assert_healthy(broker)


def _closed_or_error(c, corr):
    """Either the connection is closed, or the broker answers `corr` (with
    some error); it must not leave the request hanging forever."""
    try:
        resp = c.recv_frame()
    except ConnectionResetError:
        return
    except socket.timeout:
        pytest.fail(f"request {corr}: broker neither answered nor closed the connection in 10s")
    if resp is not None:
        assert struct.unpack(">i", resp[:4])[0] == corr


def test_produce_corrupt_crc(broker):
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic)
    with connect(broker) as c:
        # First a valid batch, to show the frame builder is right.
        good = kw.record_batch([kw.Record(b"good-%d" % i, b"k") for i in range(3)])
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, good))
        assert kw.parse_produce_v3(r) == {(topic, 0): (0, 0)}

        bad = kw.record_batch([kw.Record(b"bad")], corrupt_crc=True)
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, bad))
        assert kw.parse_produce_v3(r)[(topic, 0)][0] == kw.CORRUPT_MESSAGE

        # A correct CRC over a record whose body is garbage. Kafka answers
        # CORRUPT_MESSAGE (or INVALID_RECORD=87 in newer versions).
        payload = bytearray(kw.record_batch([kw.Record(b"will-be-mangled")]))
        # batch header is 61 bytes; then record length varint; mangle the lengths
        payload[61:] = b"\x7f" * (len(payload) - 61)
        after_crc = bytes(payload[21:])
        payload[17:21] = struct.pack(">I", kw.crc32c(after_crc))
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, bytes(payload)))
        assert kw.parse_produce_v3(r)[(topic, 0)][0] in (kw.CORRUPT_MESSAGE, 87)

        # Nothing of the bad batches was appended.
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        err, hw, data = kw.parse_fetch_v4(r)[(topic, 0)]
        assert (err, hw) == (0, 3)
        values = [rec.value for b in kw.parse_batches(data) for _, rec in kw.decode_uncompressed_records(b)]
        assert values == [b"good-0", b"good-1", b"good-2"]

        # And the connection is still usable after the errors.
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, kw.record_batch([kw.Record(b"after")])))
        assert kw.parse_produce_v3(r) == {(topic, 0): (0, 3)}
    assert_healthy(broker)


def test_produce_bad_acks_and_unknown_partition(broker):
    topic = unique_topic("acks")
    create_topic(broker.bootstrap, topic)
    with connect(broker) as c:
        batch = kw.record_batch([kw.Record(b"x")])
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 0, batch, acks=5))
        assert kw.parse_produce_v3(r)[(topic, 0)][0] == kw.INVALID_REQUIRED_ACKS
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, 7, batch))
        assert kw.parse_produce_v3(r)[(topic, 7)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION
        r = c.request(kw.PRODUCE, 3, kw.produce_v3_body(topic, -1, batch))
        assert kw.parse_produce_v3(r)[(topic, -1)][0] == kw.UNKNOWN_TOPIC_OR_PARTITION
    assert_healthy(broker)


def test_produce_acks0_gets_no_response(broker):
    topic = unique_topic("acks0")
    create_topic(broker.bootstrap, topic)
    with connect(broker, timeout=3) as c:
        c.send(kw.frame(kw.request_header(kw.PRODUCE, 3, 100)
                        + kw.produce_v3_body(topic, 0, kw.record_batch([kw.Record(b"fire-and-forget")]), acks=0)))
        # The next request's response must be the first thing that comes back.
        err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
        assert err == 0
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0))
        assert kw.parse_fetch_v4(r)[(topic, 0)][1] == 1


def test_half_frame_then_disconnect(broker):
    full = kw.frame(kw.request_header(kw.METADATA, 1, 1) + kw.i32(-1))
    for cut in range(1, len(full)):
        with connect(broker) as c:
            c.send(full[:cut])
    # And one that claims 1 MB but sends 100 bytes.
    with connect(broker) as c:
        c.send(struct.pack(">i", 1 << 20) + os.urandom(100))
    assert_healthy(broker)


def test_pipelined_requests_answered_in_order(broker):
    with connect(broker) as c:
        data = b"".join(kw.frame(kw.request_header(kw.API_VERSIONS, 0, i)) for i in range(1, 51))
        data += b"".join(kw.frame(kw.request_header(kw.METADATA, 1, i) + kw.i32(-1)) for i in range(51, 101))
        c.send(data)
        for i in range(1, 101):
            resp = c.recv_frame()
            assert resp is not None and struct.unpack(">i", resp[:4])[0] == i


def test_fifty_garbage_connections(broker):
    rng = random.Random(1234)
    seeds = [rng.randrange(1 << 30) for _ in range(50)]
    errors = []

    def spew(seed):
        r = random.Random(seed)
        try:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
                for _ in range(r.randrange(1, 20)):
                    kind = r.randrange(4)
                    if kind == 0:
                        chunk = os.urandom(r.randrange(1, 4096))
                    elif kind == 1:  # plausible header, garbage body
                        body = kw.request_header(r.choice([0, 1, 2, 3, 18, 19, 20, 9999]), r.randrange(-1, 20),
                                                 r.randrange(1 << 31)) + os.urandom(r.randrange(0, 200))
                        chunk = kw.frame(body)
                    elif kind == 2:  # frame size lies
                        chunk = struct.pack(">i", r.randrange(-(1 << 31), 1 << 31)) + os.urandom(r.randrange(0, 64))
                    else:  # all-0xff
                        chunk = b"\xff" * r.randrange(1, 1000)
                    s.sendall(chunk)
        except OSError:
            pass  # the broker may close on us at any point; that's fine
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=spew, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert_healthy(broker)


def test_all_hostile_cases_in_sequence_one_broker(broker):
    """The cases above, back to back on one broker, then a normal round trip."""
    topic = unique_topic("seq")
    create_topic(broker.bootstrap, topic)
    frames = [
        struct.pack(">i", 0),
        struct.pack(">i", 3) + b"abc",
        struct.pack(">i", 0x7FFFFFFF),
        kw.frame(kw.request_header(9999, 0, 1)),
        kw.frame(kw.request_header(kw.METADATA, 1, 1) + kw.i32(0x7FFFFFFF) + b"xyz"),
        kw.frame(kw.request_header(kw.PRODUCE, 3, 1) + kw.string(None) + kw.i16(-1) + kw.i32(100) + kw.i32(0x7FFFFFFF)),
        kw.frame(kw.request_header(kw.PRODUCE, 3, 1) + kw.produce_v3_body(
            topic, 0, kw.record_batch([kw.Record(b"x")], corrupt_crc=True))),
        kw.frame(kw.request_header(kw.FETCH, 4, 1) + kw.fetch_v4_body(topic, 0, -12345)),
        kw.frame(kw.request_header(kw.LIST_OFFSETS, 1, 1) + kw.list_offsets_v1_body(topic, 99, -1)),
        struct.pack(">i", 1000) + b"half",
    ]
    for f in frames:
        with connect(broker, timeout=3) as c:
            c.send(f)
            try:
                c.sock.recv(65536)
            except OSError:
                pass
    assert_healthy(broker)
