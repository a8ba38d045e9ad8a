"""Hand-built Kafka protocol frames for tests that talk to the broker over raw
sockets (no client library in between).

Only non-flexible (pre-KIP-482) request versions are used, so the request
header is v1: api_key i16, api_version i16, correlation_id i32, client_id
nullable string; and response headers are v0: correlation_id i32.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# --- api keys and error codes (from the Kafka protocol) ----------------------

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
CREATE_TOPICS = 19

NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_FETCH_SIZE = 4
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_REQUEST = 42

# --- CRC-32C (Castagnoli), as used by record batches v2 -----------------------


def _make_crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# --- primitive encoders ----------------------------------------------------


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def bytes_(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes] | None) -> bytes:
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(items)


def varint(v: int) -> bytes:
    """Zig-zag varint (signed), as used inside v2 records."""
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# --- primitive decoder -----------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(
                f"short response: need {n} bytes at {self.pos}, have {len(self.data)}"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return self._take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        return self._take(n)

    def array(self, elem) -> list | None:
        n = self.i32()
        if n < 0:
            return None
        return [elem(self) for _ in range(n)]

    def varint(self) -> int:
        shift = 0
        z = 0
        while True:
            b = self._take(1)[0]
            z |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return (z >> 1) ^ -(z & 1)

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --- framing ----------------------------------------------------------------


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "strom-wire-test") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Conn:
    """One TCP connection to the broker, speaking raw Kafka frames."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._corr = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes | None:
        """One response frame's payload, or None if the broker closed the
        connection. Raises socket.timeout if nothing comes."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        if n < 0 or n > 256 * 1024 * 1024:
            raise ValueError(f"broker sent an absurd frame size {n}")
        body = self._recv_exact(n)
        if body is None:
            raise ValueError("broker closed the connection mid-frame")
        return body

    def request(self, api_key: int, api_version: int, body: bytes, client_id: str | None = "strom-wire-test") -> Reader:
        """Send a request and return a Reader positioned after the response
        header (whose correlation id is checked)."""
        self._corr += 1
        corr = self._corr
        self.send(frame(request_header(api_key, api_version, corr, client_id) + body))
        resp = self.recv_frame()
        if resp is None:
            raise ConnectionError(
                f"broker closed the connection instead of answering api_key={api_key} v{api_version}"
            )
        r = Reader(resp)
        got = r.i32()
        assert got == corr, f"correlation id mismatch: sent {corr}, got {got}"
        return r

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the broker closes (or resets) the connection within
        `timeout` seconds; False if the connection stays open that long.
        Any bytes the broker sends meanwhile are read and discarded."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            self.sock.settimeout(self.timeout)


# --- record batches (magic v2) ---------------------------------------------


@dataclass
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_delta: int = 0
    offset_delta: int | None = None


def encode_record(rec: Record, offset_delta: int) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(rec.timestamp_delta)
    body += varint(offset_delta)
    if rec.key is None:
        body += varint(-1)
    else:
        body += varint(len(rec.key)) + rec.key
    if rec.value is None:
        body += varint(-1)
    else:
        body += varint(len(rec.value)) + rec.value
    body += varint(len(rec.headers))
    for hk, hv in rec.headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        if hv is None:
            body += varint(-1)
        else:
            body += varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(
    records: list[Record],
    base_timestamp: int | None = None,
    base_offset: int = 0,
    attributes: int = 0,
    corrupt_crc: bool = False,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """An uncompressed v2 record batch with a correct (or deliberately wrong)
    CRC."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(encode_record(r, i if r.offset_delta is None else r.offset_delta) for i, r in enumerate(records))
    max_ts = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    # Everything after the crc field: the part the CRC covers.
    after_crc = (
        i16(attributes)
        + i32(len(records) - 1)  # last offset delta
        + i64(base_timestamp)
        + i64(max_ts)
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + recs
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    # partition leader epoch, magic, crc
    after_length = i32(-1) + i8(2) + u32(crc) + after_crc
    return i64(base_offset) + i32(len(after_length)) + after_length


@dataclass
class Batch:
    base_offset: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    record_count: int
    crc_ok: bool
    raw_records: bytes


def parse_batches(data: bytes) -> list[Batch]:
    """Parse a Fetch response's records field into batch headers (records
    are left undecoded; a trailing partial batch is ignored, as Kafka allows)."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack(">qi", data[pos : pos + 12])
        if pos + 12 + length > len(data):
            break  # partial batch at the end of a fetch
        b = data[pos + 12 : pos + 12 + length]
        r = Reader(b)
        r.i32()  # partition leader epoch
        magic = r.i8()
        crc = r.u32()
        crc_ok = crc32c(b[r.pos :]) == crc
        attributes = r.i16()
        last_offset_delta = r.i32()
        base_ts = r.i64()
        max_ts = r.i64()
        r.i64()  # producer id
        r.i16()  # producer epoch
        r.i32()  # base sequence
        count = r.i32()
        out.append(Batch(base_offset, magic, crc, attributes, last_offset_delta, base_ts, max_ts, count, crc_ok, b[r.pos :]))
        pos += 12 + length
    return out


def decode_uncompressed_records(batch: Batch) -> list[tuple[int, Record]]:
    """(offset, Record) for each record of an uncompressed batch."""
    assert batch.attributes & 0x7 == 0, "batch is compressed"
    r = Reader(batch.raw_records)
    out = []
    for _ in range(batch.record_count):
        r.varint()  # length
        r.i8()  # attributes
        ts_delta = r.varint()
        off_delta = r.varint()
        kl = r.varint()
        key = None if kl < 0 else r._take(kl)
        vl = r.varint()
        value = None if vl < 0 else r._take(vl)
        headers = []
        for _ in range(r.varint()):
            hkl = r.varint()
            hk = r._take(hkl).decode()
            hvl = r.varint()
            hv = None if hvl < 0 else r._take(hvl)
            headers.append((hk, hv))
        out.append((batch.base_offset + off_delta, Record(value, key, headers, ts_delta, off_delta)))
    return out


# --- request bodies and response parsers -----------------------------------


def api_versions_v0_body() -> bytes:
    return b""


def parse_api_versions_v0(r: Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    err = r.i16()
    apis = r.array(lambda rr: (rr.i16(), rr.i16(), rr.i16())) or []
    return err, {k: (lo, hi) for k, lo, hi in apis}


def metadata_body(topics: list[str] | None, version: int, allow_auto_create: bool = True) -> bytes:
    body = array(None if topics is None else [string(t) for t in topics])
    if version >= 4:
        body += i8(1 if allow_auto_create else 0)
    return body


@dataclass
class TopicMeta:
    error: int
    name: str
    partitions: dict[int, tuple[int, int]]  # partition -> (error, leader)


def parse_metadata_v4(r: Reader):
    """-> (brokers [(node_id, host, port)], cluster_id, controller, {name: TopicMeta})"""
    r.i32()  # throttle
    brokers = r.array(lambda rr: (rr.i32(), rr.string(), rr.i32(), rr.string())) or []
    cluster_id = r.string()
    controller = r.i32()

    def topic(rr: Reader):
        err = rr.i16()
        name = rr.string()
        rr.i8()  # is_internal

        def part(p: Reader):
            perr = p.i16()
            idx = p.i32()
            leader = p.i32()
            p.array(lambda x: x.i32())  # replicas
            p.array(lambda x: x.i32())  # isr
            return idx, (perr, leader)

        parts = dict(rr.array(part) or [])
        return TopicMeta(err, name, parts)

    topics = r.array(topic) or []
    return [(b[0], b[1], b[2]) for b in brokers], cluster_id, controller, {t.name: t for t in topics}


def produce_v3_body(topic: str, partition: int, batch: bytes, acks: int = -1, timeout_ms: int = 10000) -> bytes:
    return (
        string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + bytes_(batch)])])
    )


def parse_produce_v3(r: Reader) -> dict[tuple[str, int], tuple[int, int]]:
    """-> {(topic, partition): (error_code, base_offset)}"""
    out = {}

    def topic(rr: Reader):
        name = rr.string()
        for _ in range(rr.i32()):
            p = rr.i32()
            err = rr.i16()
            base = rr.i64()
            rr.i64()  # log append time
            out[(name, p)] = (err, base)

    r.array(topic)
    r.i32()  # throttle
    return out


def fetch_v4_body(topic: str, partition: int, offset: int, max_bytes: int = 1 << 20, max_wait_ms: int = 100) -> bytes:
    return (
        i32(-1)  # replica id
        + i32(max_wait_ms)
        + i32(1)  # min bytes
        + i32(max_bytes)
        + i8(0)  # isolation level: read uncommitted
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
    )


def parse_fetch_v4(r: Reader) -> dict[tuple[str, int], tuple[int, int, bytes | None]]:
    """-> {(topic, partition): (error_code, high_watermark, records)}"""
    r.i32()  # throttle
    out = {}

    def topic(rr: Reader):
        name = rr.string()
        for _ in range(rr.i32()):
            p = rr.i32()
            err = rr.i16()
            hw = rr.i64()
            rr.i64()  # last stable offset
            rr.array(lambda a: (a.i64(), a.i64()))  # aborted txns
            recs = rr.bytes_()
            out[(name, p)] = (err, hw, recs)

    r.array(topic)
    return out


def list_offsets_v1_body(topic: str, partition: int, timestamp: int) -> bytes:
    return i32(-1) + array([string(topic) + array([i32(partition) + i64(timestamp)])])


def parse_list_offsets_v1(r: Reader) -> dict[tuple[str, int], tuple[int, int, int]]:
    """-> {(topic, partition): (error_code, timestamp, offset)}"""
    out = {}

    def topic(rr: Reader):
        name = rr.string()
        for _ in range(rr.i32()):
            p = rr.i32()
            err = rr.i16()
            ts = rr.i64()
            off = rr.i64()
            out[(name, p)] = (err, ts, off)

    r.array(topic)
    return out


def create_topics_v2_body(name: str, partitions: int, replication: int = 1, timeout_ms: int = 10000,
                          validate_only: bool = False, configs: dict[str, str] | None = None) -> bytes:
    """CreateTopics v2 (the oldest version Kafka 4 still serves; not flexible)."""
    cfgs = [string(k) + string(v) for k, v in (configs or {}).items()]
    topic = string(name) + i32(partitions) + i16(replication) + array([]) + array(cfgs)
    return array([topic]) + i32(timeout_ms) + i8(1 if validate_only else 0)


def parse_create_topics_v2(r: Reader) -> dict[str, int]:
    """-> {topic: error_code}"""
    r.i32()  # throttle
    return dict(r.array(lambda rr: (rr.string(), rr.i16(), rr.string())[:2]) or [])
