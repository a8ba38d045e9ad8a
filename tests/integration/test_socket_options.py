"""socket.send.buffer.bytes / socket.receive.buffer.bytes reach the broker's accepted
sockets, as in Kafka's SocketServer (issue 10: they were parsed and never applied); -1 leaves
the OS default. Read from the kernel with `ss -tm`: skmem's rb/tb are the socket's
SO_RCVBUF/SO_SNDBUF (Linux doubles a requested size for its bookkeeping)."""

import re
import shutil
import subprocess

import pytest

import kafka_wire as kw

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")


def server_side_buffers(port: int, peer_port: int) -> tuple[int, int]:
    """(rb, tb) of the broker's end of the connection from `peer_port`."""
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"( sport = :{port} and dport = :{peer_port} )"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"skmem:\(r\d+,rb(\d+),t\d+,tb(\d+)", out)
    assert m, f"no socket of port {port} in ss output: {out!r}"
    return int(m.group(1)), int(m.group(2))


def buffers_of_a_connection(broker) -> tuple[int, int]:
    with kw.Conn(broker.bootstrap) as c:
        # Answered: the broker has accepted and set up this connection.
        err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
        assert err == 0
        return server_side_buffers(broker.port, c.sock.getsockname()[1])


def test_configured_sizes_are_on_accepted_sockets(make_broker):
    b = make_broker(**{"socket.send.buffer.bytes": "65536", "socket.receive.buffer.bytes": "49152"})
    rb, tb = buffers_of_a_connection(b)
    assert (rb, tb) == (2 * 49152, 2 * 65536)


def test_the_default_leaves_the_os_autotuning(broker):
    """Strom's default is -1 (Kafka's is 100 KiB each): a fixed size turns off Linux's buffer
    autotuning, and cost 10-12% more broker CPU per produced message in bench/ (README,
    Departures)."""
    rb, tb = buffers_of_a_connection(broker)
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        default_rb = int(f.read().split()[1])
    assert rb == default_rb, (rb, default_rb)
    assert (rb, tb) != (2 * 102400, 2 * 102400)


def test_minus_one_leaves_the_os_default(make_broker):
    b = make_broker(**{"socket.send.buffer.bytes": "-1", "socket.receive.buffer.bytes": "-1"})
    rb, tb = buffers_of_a_connection(b)
    with open("/proc/sys/net/ipv4/tcp_rmem") as f:
        default_rb = int(f.read().split()[1])
    assert rb == default_rb, (rb, default_rb)
    assert tb != 2 * 102400
