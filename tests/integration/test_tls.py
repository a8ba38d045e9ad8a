"""TLS on SSL listeners (issue 14): real clients, certificates made here with openssl."""

import asyncio
import os
import re
import shutil
import socket
import ssl
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition

from conftest import free_port
from helpers import (admin, consumer, create_topic, describe, kcat, kcat_roundtrip, producer,
                     unique_topic)
from pki import make_pki, secure_listeners


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def ssl_broker(make_broker, pki, keystore="server", **extra):
    plain, tls = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SSL=tls)
    overrides["ssl.keystore.location"] = str(pki.root / f"{keystore}.pem")
    overrides.update(extra)
    b = make_broker(port=plain, **overrides)
    return b, f"127.0.0.1:{tls}"


def ssl_conf(pki, **extra):
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.root / "ca.pem")}
    conf.update(extra)
    return conf


def test_ssl_with_server_verification_confluent(make_broker, pki):
    b, tls = ssl_broker(make_broker, pki)
    conf = ssl_conf(pki, **{"ssl.endpoint.identification.algorithm": "https"})
    # create_topic goes over PLAINTEXT; everything else over TLS.
    topic = unique_topic("tls")
    create_topic(b.bootstrap, topic)
    p = producer(tls, **conf)
    for i in range(300):
        p.produce(topic, value=(b"%06d" % i) * 300)
    assert p.flush(30) == 0
    c = consumer(tls, **conf)
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 300 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is None or m.error():
            continue
        got.append(m.value())
    assert len(got) == 300
    assert got[123] == (b"%06d" % 123) * 300
    # Metadata answers with the endpoint of the listener the request came in on.
    md = admin(tls, **conf).list_topics(timeout=10)
    assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [tls]
    md = admin(b.bootstrap).list_topics(timeout=10)
    assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [b.bootstrap]


def test_kcat_over_ssl(make_broker, pki):
    b, tls = ssl_broker(make_broker, pki)
    topic = unique_topic("kcat")
    x = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.root / 'ca.pem'}"]
    p = kcat(["-P", "-b", tls, "-t", topic, *x], input="one\ntwo\n")
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", tls, "-t", topic, "-e", "-o", "beginning", *x])
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().split() == ["one", "two"]


def test_mtls_principal_from_certificate(make_broker, pki):
    b, tls = ssl_broker(make_broker, pki, **{
        "ssl.client.auth": "required",
        "ssl.truststore.location": str(pki.root / "ca.pem"),
        "ssl.principal.mapping.rules": "RULE:^CN=([a-z]+),OU=eng,.*$/$1@eng/L,DEFAULT",
    })
    conf = ssl_conf(pki, **{"ssl.certificate.location": str(pki.cert("alice")),
                            "ssl.key.location": str(pki.key("alice"))})
    md = admin(tls, **conf).list_topics(timeout=10)
    assert len(md.brokers) == 1
    deadline = time.monotonic() + 5
    while "principal=User:alice@eng" not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "principal=User:alice@eng" in b.log_text(), b.log_tail()
    # Without a certificate, or with one from a CA the broker does not trust: no connection.
    for bad in [ssl_conf(pki),
                ssl_conf(pki, **{"ssl.certificate.location": str(pki.cert("mallory")),
                                 "ssl.key.location": str(pki.key("mallory"))})]:
        with pytest.raises(KafkaException):
            admin(tls, **bad).list_topics(timeout=4)
    kcat_roundtrip(b.bootstrap)


@pytest.mark.parametrize("case", ["unknown_ca", "wrong_hostname", "expired"])
def test_bad_certificates_fail_clearly(make_broker, pki, case):
    keystore = {"unknown_ca": "server2", "wrong_hostname": "wronghost", "expired": "expired"}[case]
    b, tls = ssl_broker(make_broker, pki, keystore=keystore)
    x = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.root / 'ca.pem'}",
         "-X", "ssl.endpoint.identification.algorithm=https"]
    r = kcat(["-L", "-b", tls.replace("127.0.0.1", "localhost"), "-m", "5", *x], timeout=30)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, describe(r)
    want = {"unknown_ca": r"certificate verify failed|unable to get local issuer",
            "wrong_hostname": r"certificate verify failed|[Hh]ostname mismatch",
            "expired": r"certificate (has )?expired|certificate verify failed"}[case]
    assert re.search(want, err), err
    # Python's ssl says what exactly is wrong.
    ctx = ssl.create_default_context(cafile=str(pki.root / "ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError) as e:
        with socket.create_connection(("127.0.0.1", int(tls.rsplit(":", 1)[1])), timeout=5) as s:
            ctx.wrap_socket(s, server_hostname="localhost")
    assert {"unknown_ca": "unable to get local issuer", "wrong_hostname": "Hostname mismatch",
            "expired": "certificate has expired"}[case] in str(e.value)
    kcat_roundtrip(b.bootstrap)
    assert b.alive()


def test_kafka_python_over_ssl(make_broker, pki):
    from kafka import KafkaConsumer, KafkaProducer
    b, tls = ssl_broker(make_broker, pki)
    topic = unique_topic("kp")
    create_topic(b.bootstrap, topic)
    kw = dict(bootstrap_servers=tls, security_protocol="SSL", ssl_cafile=str(pki.root / "ca.pem"))
    p = KafkaProducer(**kw)
    for i in range(50):
        p.send(topic, b"kp-%d" % i)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **kw)
    got = [m.value for m in c]
    c.close()
    assert got[:50] == [b"kp-%d" % i for i in range(50)]


def test_aiokafka_over_ssl(make_broker, pki):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context
    b, tls = ssl_broker(make_broker, pki)
    topic = unique_topic("aio")
    create_topic(b.bootstrap, topic)

    async def run():
        ctx = create_ssl_context(cafile=str(pki.root / "ca.pem"))
        p = AIOKafkaProducer(bootstrap_servers=tls, security_protocol="SSL", ssl_context=ctx)
        await p.start()
        try:
            for i in range(20):
                await p.send_and_wait(topic, b"aio-%d" % i)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=tls, security_protocol="SSL", ssl_context=ctx,
                             auto_offset_reset="earliest")
        await c.start()
        got = []
        try:
            while len(got) < 20:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 20)
                for msgs in batch.values():
                    got += [m.value for m in msgs]
        finally:
            await c.stop()
        return got

    assert asyncio.run(run()) == [b"aio-%d" % i for i in range(20)]


def test_certificate_reload(make_broker, pki, tmp_path):
    keystore = tmp_path / "keystore.pem"
    shutil.copy(pki.root / "server.pem", keystore)
    b, tls = ssl_broker(make_broker, pki, **{"ssl.keystore.location": str(keystore)})
    port = int(tls.rsplit(":", 1)[1])

    def issuer():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s) as t:
                return t.getpeercert(binary_form=True)

    before = issuer()
    # cert-manager rotates the file in place: the next connection gets the new certificate.
    tmp = tmp_path / "keystore.tmp"
    shutil.copy(pki.root / "server2.pem", tmp)
    os.replace(tmp, keystore)
    want = ssl.PEM_cert_to_DER_cert(pki.cert("server2").read_text())
    # New connections look at the files at most once a second.
    deadline = time.monotonic() + 5
    after = issuer()
    while after != want and time.monotonic() < deadline:
        time.sleep(0.2)
        after = issuer()
    assert after != before
    assert after == want
    # A file that does not parse keeps the configuration in use.
    keystore.write_text("not a pem")
    time.sleep(1.2)
    assert issuer() == after
    assert issuer() == after
    assert b.alive()


def test_hostile_bytes_over_tls(make_broker, pki):
    b, tls = ssl_broker(make_broker, pki, **{"ssl.handshake.timeout.ms": "1000"})
    port = int(tls.rsplit(":", 1)[1])
    # A client that stops mid-handshake is dropped after ssl.handshake.timeout.ms.
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(bytes.fromhex("160301"))  # the start of a TLS record, then nothing
    # 100 MiB of garbage: refused at its first record, long before it is all sent.
    garbage = socket.create_connection(("127.0.0.1", port), timeout=10)
    chunk = os.urandom(1 << 20)
    sent = 0
    with pytest.raises(OSError):
        for _ in range(100):
            garbage.sendall(chunk)
            sent += len(chunk)
    assert sent < 100 << 20
    garbage.close()
    # Meanwhile a real client is served.
    md = admin(tls, **ssl_conf(pki)).list_topics(timeout=10)
    assert len(md.brokers) == 1
    started = time.monotonic()
    stalled.settimeout(5)
    try:
        rest = stalled.recv(100)
    except ConnectionResetError:
        rest = b""
    assert rest == b""
    assert time.monotonic() - started < 5
    stalled.close()
    deadline = time.monotonic() + 5
    while "TLS handshake timed out" not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "TLS handshake timed out" in b.log_text()
    kcat_roundtrip(b.bootstrap)


def test_bad_tls_settings_are_one_line_start_up_errors(make_broker, pki, tmp_path):
    for extra, words in [
        ({"ssl.keystore.location": str(tmp_path / "missing.pem")}, "missing.pem"),
        ({"ssl.client.auth": "sometimes"}, "ssl.client.auth"),
        ({"ssl.enabled.protocols": "TLSv1.1"}, "ssl.enabled.protocols"),
        ({"ssl.client.auth": "required"}, "ssl.truststore.location"),
    ]:
        plain, tlsport = free_port(), free_port()
        overrides = secure_listeners(PLAINTEXT=plain, SSL=tlsport)
        overrides["ssl.keystore.location"] = str(pki.root / "server.pem")
        overrides.update(extra)
        b = make_broker(port=plain, start=False, **overrides)
        b.start(wait=False)
        # A configuration error, whenever start-up finds it: exit code 2 as for the others.
        assert b.proc.wait(30) == 2, b.log_text()
        log = b.log_text()
        assert "listener SSL" in log and words in log, log


def test_cli_command_config_over_ssl(make_broker, pki, tmp_path):
    import subprocess
    from conftest import strom_bin
    b, tls = ssl_broker(make_broker, pki)
    props = tmp_path / "client.properties"
    props.write_text(f"security.protocol=SSL\nssl.truststore.location={pki.root / 'ca.pem'}\n")
    topic = unique_topic("cli")
    for args in (["topic", "create", topic], ["topic", "list"]):
        r = subprocess.run([strom_bin(), *args, "-b", tls.replace("127.0.0.1", "localhost"),
                            "--command-config", str(props)], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr.decode()
    assert topic in r.stdout.decode()
    # Without the truststore of the broker's CA: a clear error.
    props.write_text(f"security.protocol=SSL\nssl.truststore.location={pki.root / 'otherca.pem'}\n")
    r = subprocess.run([strom_bin(), "topic", "list", "-b", tls, "--command-config", str(props)],
                       capture_output=True, timeout=60)
    assert r.returncode != 0
    assert "TLS handshake failed" in r.stderr.decode() and "UnknownIssuer" in r.stderr.decode(), r.stderr.decode()


def test_tls_client_with_a_full_pipeline_of_parked_fetches_is_released(make_broker, pki):
    """As test_connections.py's PLAINTEXT case, over TLS: more parked fetches than
    `queued.max.requests` on one connection, so the broker has stopped taking its requests;
    the client goes, and the broker still notices at once (it reads the TLS stream ahead,
    as a TLS socket cannot be peeked) instead of at the fetches' 30 s cap."""
    import kafka_wire as kw
    from helpers import produce_all
    b, tls = ssl_broker(make_broker, pki, **{"queued.max.requests": "4"})
    topic = unique_topic("park")
    create_topic(b.bootstrap, topic)
    produce_all(producer(b.bootstrap), [(None, b"r%d" % i) for i in range(3)], topic)
    time.sleep(0.5)
    baseline = len(os.listdir(f"/proc/{b.pid}/fd"))
    body = kw.fetch_v4_body(topic, 0, 3, max_wait_ms=2**31 - 1)
    ctx = ssl.create_default_context(cafile=str(pki.root / "ca.pem"))
    host, port = tls.rsplit(":", 1)
    socks = []
    for _ in range(20):
        s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname="localhost")
        s.sendall(b"".join(kw.frame(kw.request_header(kw.FETCH, 4, i + 1) + body) for i in range(10)))
        socks.append(s)
    time.sleep(0.5)
    for s in socks[:5]:
        s.settimeout(0.05)
        with pytest.raises((socket.timeout, ssl.SSLWantReadError)):
            s.recv(1)
    assert len(os.listdir(f"/proc/{b.pid}/fd")) >= baseline + 20
    for s in socks:
        s.close()
    deadline = time.monotonic() + 5
    while len(os.listdir(f"/proc/{b.pid}/fd")) > baseline + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    n = len(os.listdir(f"/proc/{b.pid}/fd"))
    assert n <= baseline + 2, f"{n - baseline} descriptors still open 5 s after 20 pipelining TLS clients closed"
    kcat_roundtrip(b.bootstrap)
