"""Connections whose peer has gone are closed at once, parked requests included
(issue 9 item 6): a parked Fetch or JoinGroup does not keep a socket, a file
descriptor or a `max.connections` slot after its client disconnects; a
Fetch's `max_wait_ms` is capped; SIGTERM does not wait for parked fetches."""

import os
import socket
import time

import kafka_wire as kw
from helpers import create_topic, produce_all, producer, unique_topic

PARKED = 200
NEVER_MS = 2**31 - 1


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_fds(pid: int, at_most: int, timeout: float) -> tuple[bool, int, float]:
    """Waits until the process has at most `at_most` descriptors open."""
    started = time.monotonic()
    n = fd_count(pid)
    while time.monotonic() - started < timeout:
        n = fd_count(pid)
        if n <= at_most:
            return True, n, time.monotonic() - started
        time.sleep(0.05)
    return False, n, time.monotonic() - started


def topic_at_end(bootstrap: str) -> tuple[str, int]:
    """A topic with a few records; fetches from its end park."""
    topic = unique_topic("park")
    create_topic(bootstrap, topic)
    produce_all(producer(bootstrap), [(None, b"r%d" % i) for i in range(3)], topic)
    return topic, 3


def park_fetches(bootstrap: str, topic: str, offset: int, n: int) -> list[kw.Conn]:
    """n connections, each with a Fetch that waits for data that never comes."""
    body = kw.fetch_v4_body(topic, 0, offset, max_wait_ms=NEVER_MS)
    conns = []
    for i in range(n):
        c = kw.Conn(bootstrap)
        c.send(kw.frame(kw.request_header(kw.FETCH, 4, i + 1) + body))
        conns.append(c)
    return conns


def assert_parked(conns: list[kw.Conn], seconds: float = 0.5):
    """The fetches really wait (no answer yet)."""
    time.sleep(seconds)
    for c in conns[:5]:
        c.sock.settimeout(0.05)
        try:
            assert c.sock.recv(1) == b"", "a parked fetch was answered early"
            raise AssertionError("the broker closed a connection with a parked fetch")
        except socket.timeout:
            pass
        finally:
            c.sock.settimeout(c.timeout)


def api_versions_ok(bootstrap: str, timeout: float = 5.0) -> bool:
    try:
        with kw.Conn(bootstrap, timeout=timeout) as c:
            err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, kw.api_versions_v0_body()))
            return err == 0
    except OSError:
        return False


def test_parked_fetches_of_closed_clients_release_their_descriptors(broker):
    topic, end = topic_at_end(broker.bootstrap)
    time.sleep(0.5)
    baseline = fd_count(broker.pid)
    conns = park_fetches(broker.bootstrap, topic, end, PARKED)
    assert_parked(conns)
    held = fd_count(broker.pid)
    assert held >= baseline + PARKED, (baseline, held)
    closed_at = time.monotonic()
    for c in conns:
        c.close()
    ok, n, took = wait_for_fds(broker.pid, baseline + 2, timeout=5)
    assert ok, f"{n - baseline} descriptors still open {took:.1f}s after {PARKED} clients closed"
    print(f"{PARKED} parked fetches: {held - baseline} fds while parked, back to baseline "
          f"{time.monotonic() - closed_at:.2f}s after the clients closed")
    assert broker.alive() and api_versions_ok(broker.bootstrap)


def test_reset_clients_release_parked_fetches(broker):
    """A client that resets (SO_LINGER 0: RST, no FIN) is gone too."""
    topic, end = topic_at_end(broker.bootstrap)
    time.sleep(0.5)
    baseline = fd_count(broker.pid)
    conns = park_fetches(broker.bootstrap, topic, end, 50)
    assert_parked(conns)
    for c in conns:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    ok, n, took = wait_for_fds(broker.pid, baseline + 2, timeout=5)
    assert ok, f"{n - baseline} descriptors still open {took:.1f}s after 50 clients reset"


def test_dead_peers_do_not_exhaust_max_connections(make_broker):
    broker = make_broker(**{"max.connections": "60"})
    topic, end = topic_at_end(broker.bootstrap)
    time.sleep(0.5)
    for round_ in range(3):
        # Every slot (but the one the producer's last socket may still hold) is taken by a
        # parked fetch whose client then goes away.
        conns = park_fetches(broker.bootstrap, topic, end, 55)
        assert_parked(conns, 0.3)
        for c in conns:
            c.close()
        started = time.monotonic()
        ok = False
        while time.monotonic() - started < 5:
            if api_versions_ok(broker.bootstrap, timeout=1):
                ok = True
                break
            time.sleep(0.1)
        assert ok, f"round {round_}: no connection accepted 5s after the parked clients closed"
    # And all 55 slots are free again, not just one.
    conns = [kw.Conn(broker.bootstrap) for _ in range(55)]
    try:
        for c in conns:
            err, _ = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, kw.api_versions_v0_body()))
            assert err == 0
    finally:
        for c in conns:
            c.close()


def test_sigterm_answers_parked_fetches_and_exits_promptly(broker):
    topic, end = topic_at_end(broker.bootstrap)
    conns = park_fetches(broker.bootstrap, topic, end, PARKED)
    assert_parked(conns)
    started = time.monotonic()
    rc = broker.stop(timeout=15)
    took = time.monotonic() - started
    assert rc == 0, broker.log_tail()
    assert took < 5, f"SIGTERM took {took:.1f}s with {PARKED} parked fetches"
    print(f"SIGTERM with {PARKED} parked fetches: exited in {took:.2f}s")
    # Each parked fetch was answered (empty, no error) before its connection closed.
    answered = 0
    for c in conns:
        try:
            c.sock.settimeout(2)
            resp = c.recv_frame()
            if resp is not None:
                r = kw.Reader(resp)
                r.i32()
                err, hw, recs = kw.parse_fetch_v4(r)[(topic, 0)]
                assert (err, hw) == (0, end) and not recs
                answered += 1
        except OSError:
            pass
        finally:
            c.close()
    assert answered == PARKED, f"only {answered} of {PARKED} parked fetches were answered"


def test_max_wait_is_capped_by_connections_max_idle_ms(make_broker):
    broker = make_broker(**{"connections.max.idle.ms": "2000"})
    topic, end = topic_at_end(broker.bootstrap)
    with kw.Conn(broker.bootstrap, timeout=20) as c:
        started = time.monotonic()
        r = c.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, end, max_wait_ms=NEVER_MS))
        waited = time.monotonic() - started
        err, hw, recs = kw.parse_fetch_v4(r)[(topic, 0)]
        assert (err, hw) == (0, end) and not recs
        assert 1.5 <= waited <= 6, f"max_wait_ms=2^31-1 answered after {waited:.1f}s"


# --- JoinGroup waiting for a rebalance ---------------------------------------

JOIN_GROUP = 11


def join_group_v1_body(group: str, member_id: str, rebalance_timeout_ms: int) -> bytes:
    return (kw.string(group) + kw.i32(30000) + kw.i32(rebalance_timeout_ms) + kw.string(member_id)
            + kw.string("consumer") + kw.array([kw.string("range") + kw.bytes_(b"")]))


def test_parked_joins_of_closed_clients_release_their_descriptors(make_broker):
    broker = make_broker(**{"group.initial.rebalance.delay.ms": "0"})
    group = unique_topic("g-park")
    # The first member joins and becomes leader, then does nothing: every later join waits
    # for it to rejoin, up to its rebalance timeout (5 minutes).
    leader = kw.Conn(broker.bootstrap, timeout=20)
    r = leader.request(JOIN_GROUP, 1, join_group_v1_body(group, "", 300_000))
    assert r.i16() == 0
    time.sleep(0.3)
    baseline = fd_count(broker.pid)
    joiners = []
    for i in range(50):
        c = kw.Conn(broker.bootstrap)
        c.send(kw.frame(kw.request_header(JOIN_GROUP, 1, i + 1) + join_group_v1_body(group, "", 300_000)))
        joiners.append(c)
    assert_parked(joiners)
    assert fd_count(broker.pid) >= baseline + 50
    for c in joiners:
        c.close()
    ok, n, took = wait_for_fds(broker.pid, baseline + 2, timeout=5)
    assert ok, f"{n - baseline} descriptors still open {took:.1f}s after 50 parked joiners closed"
    leader.close()
    assert broker.alive() and api_versions_ok(broker.bootstrap)


def test_requests_received_before_the_close_are_still_carried_out(broker):
    """A client that pipelines acks=0 produces and closes at once: what the broker received
    before the end of stream is still appended (as Kafka handles a closing channel's
    receives), though nothing is answered."""
    topic = unique_topic("close-after")
    create_topic(broker.bootstrap, topic)
    batch = kw.record_batch([kw.Record(b"v%d" % i) for i in range(3)])
    body = kw.produce_v3_body(topic, 0, batch, acks=0)
    c = kw.Conn(broker.bootstrap)
    c.send(b"".join(kw.frame(kw.request_header(kw.PRODUCE, 3, i + 1) + body) for i in range(20)))
    c.close()
    deadline = time.monotonic() + 10
    hw = -1
    with kw.Conn(broker.bootstrap) as q:
        while time.monotonic() < deadline:
            err, hw, _ = kw.parse_fetch_v4(q.request(kw.FETCH, 4, kw.fetch_v4_body(topic, 0, 0, max_wait_ms=0)))[(topic, 0)]
            assert err == 0
            if hw == 60:
                break
            time.sleep(0.1)
    assert hw == 60, f"high watermark {hw} after 20 batches of 3 records sent before the close"


def test_client_with_a_full_pipeline_of_parked_fetches_is_released(make_broker):
    """More parked fetches than `queued.max.requests` on one connection: the broker stops
    reading it, yet still notices the client going."""
    broker = make_broker(**{"queued.max.requests": "4"})
    topic, end = topic_at_end(broker.bootstrap)
    time.sleep(0.5)
    baseline = fd_count(broker.pid)
    body = kw.fetch_v4_body(topic, 0, end, max_wait_ms=NEVER_MS)
    conns = []
    for _ in range(20):
        c = kw.Conn(broker.bootstrap)
        c.send(b"".join(kw.frame(kw.request_header(kw.FETCH, 4, i + 1) + body) for i in range(10)))
        conns.append(c)
    assert_parked(conns)
    for c in conns:
        c.close()
    ok, n, took = wait_for_fds(broker.pid, baseline + 2, timeout=5)
    assert ok, f"{n - baseline} descriptors still open {took:.1f}s after 20 pipelining clients closed"
