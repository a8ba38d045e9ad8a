"""SASL on SASL_PLAINTEXT and SASL_SSL listeners (issue 14): PLAIN with users from Kafka's
listener.name.<l>.plain.sasl.jaas.config, real clients, and hostile bytes in the exchange."""

import socket
import struct
import time

import pytest
from confluent_kafka import KafkaException

from conftest import free_port
from helpers import admin, describe, kcat, kcat_roundtrip, producer, unique_topic
from kafka_wire import API_VERSIONS, METADATA, Conn, Reader, api_versions_v0_body, bytes_, frame, \
    metadata_body, request_header, string
from jwt_tokens import b64url as _b64url, signer as _signer
from pki import make_pki, secure_listeners

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
ILLEGAL_SASL_STATE = 34
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def sasl_broker(make_broker, pki=None, **extra):
    plain, sp = free_port(), free_port()
    listeners = {"PLAINTEXT": plain, "SASL_PLAINTEXT": sp}
    if pki is not None:
        ss = free_port()
        listeners["SASL_SSL"] = ss
    overrides = secure_listeners(**listeners)
    overrides["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = JAAS
    if pki is not None:
        overrides["listener.name.sasl_ssl.plain.sasl.jaas.config"] = JAAS
        overrides["ssl.keystore.location"] = str(pki.root / "server.pem")
    overrides.update(extra)
    b = make_broker(port=plain, **overrides)
    b.sasl = f"127.0.0.1:{sp}"
    b.sasl_ssl = f"127.0.0.1:{listeners['SASL_SSL']}" if pki is not None else None
    return b


def plain_conf(user="alice", password="alice-secret", protocol="SASL_PLAINTEXT", **extra):
    conf = {"security.protocol": protocol, "sasl.mechanisms": "PLAIN",
            "sasl.username": user, "sasl.password": password}
    conf.update(extra)
    return conf


def wait_log(b, text, timeout=5):
    deadline = time.monotonic() + timeout
    while text not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return text in b.log_text()


def test_sasl_plaintext_plain_confluent(make_broker):
    b = sasl_broker(make_broker)
    topic = unique_topic("sasl")
    p = producer(b.sasl, **plain_conf())
    for i in range(20):
        p.produce(topic, value=b"v%d" % i)
    assert p.flush(30) == 0
    assert wait_log(b, "principal=User:alice"), b.log_tail()
    md = admin(b.sasl, **plain_conf()).list_topics(timeout=10)
    assert topic in md.topics
    assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [b.sasl]


def test_sasl_ssl_plain_kcat(make_broker, pki):
    b = sasl_broker(make_broker, pki)
    topic = unique_topic("kcat")
    x = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.root / 'ca.pem'}",
         "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=admin", "-X", "sasl.password=admin-secret"]
    p = kcat(["-P", "-b", b.sasl_ssl, "-t", topic, *x], input="a\nb\nc\n")
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", b.sasl_ssl, "-t", topic, "-e", "-o", "beginning", *x])
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().split() == ["a", "b", "c"]
    assert wait_log(b, "principal=User:admin"), b.log_tail()


def test_kafka_python_sasl_plain(make_broker, pki):
    from kafka import KafkaConsumer, KafkaProducer
    b = sasl_broker(make_broker, pki)
    topic = unique_topic("kp")
    kw = dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=str(pki.root / "ca.pem"),
              sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="alice-secret")
    p = KafkaProducer(**kw)
    for i in range(10):
        p.send(topic, b"kp-%d" % i)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=8000, **kw)
    got = [m.value for m in c]
    c.close()
    assert got == [b"kp-%d" % i for i in range(10)]


def test_wrong_password_is_a_clear_error_and_others_are_served(make_broker):
    b = sasl_broker(make_broker, **{"connection.failed.authentication.delay.ms": "300"})
    # The wrong-password clients reconnect slowly: librdkafka's default backoff retries many
    # times a second, and 20 failures from one address within a minute would trip the
    # broker's per-address limit (its answer is then "Too many failed authentications", and
    # the right password from this address is refused too) before the checks below.
    slow = {"reconnect.backoff.ms": 10000, "reconnect.backoff.max.ms": 10000}
    errors = []
    p = producer(b.sasl, **plain_conf(password="wrong", **slow), error_cb=lambda e: errors.append(e))
    p.produce(unique_topic("nope"), value=b"x")
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        p.poll(0.5)
    assert any("Authentication failed: Invalid username or password" in e.str() for e in errors), errors
    p.purge()
    del p
    a = admin(b.sasl, **plain_conf(password="wrong", **slow))
    with pytest.raises(KafkaException):
        a.list_topics(timeout=3)
    del a
    # The raw exchange: the error, after the delay, then the close.
    with Conn(b.sasl) as c:
        r = c.request(SASL_HANDSHAKE, 1, string("PLAIN"))
        assert r.i16() == 0
        started = time.monotonic()
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0nope"))
        assert r.i16() == SASL_AUTHENTICATION_FAILED
        assert "Authentication failed" in r.string()
        assert time.monotonic() - started >= 0.25
        assert c.closed_by_peer(5)
    md = admin(b.sasl, **plain_conf()).list_topics(timeout=10)
    assert len(md.brokers) == 1
    kcat_roundtrip(b.bootstrap)


def test_a_refusal_arrives_before_the_close(make_broker):
    """The refusal is not followed at once by the end of the stream: a client that reads up
    to the end before looking at what came (kafka-python) would drop the answer unread. The
    broker closes once the client has (or after a second)."""
    b = sasl_broker(make_broker, **{"connection.failed.authentication.delay.ms": "0"})
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0nope"))
        assert r.i16() == SASL_AUTHENTICATION_FAILED
        started = time.monotonic()
        assert not c.closed_by_peer(0.5), "FIN right behind the refusal"
        assert c.closed_by_peer(5), "the broker closes a refused connection the client keeps open"
        assert time.monotonic() - started < 3
    # A client that closes at once after the refusal is not waited for.
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        assert c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0nope")).i16() == SASL_AUTHENTICATION_FAILED
    kcat_roundtrip(b.bootstrap)


def test_only_sasl_requests_before_authentication(make_broker):
    b = sasl_broker(make_broker)
    with Conn(b.sasl) as c:
        r = c.request(API_VERSIONS, 0, api_versions_v0_body())
        assert r.i16() == 0
        c.send(frame(request_header(METADATA, 4, 9) + metadata_body(None, 4)))
        assert c.recv_frame() is None, "Metadata before authentication must close the connection"
    with Conn(b.sasl) as c:
        r = c.request(SASL_HANDSHAKE, 1, string("SCRAM-SHA-256"))
        assert r.i16() == UNSUPPORTED_SASL_MECHANISM
        assert r.array(lambda rr: rr.string()) == ["PLAIN"]
        assert c.closed_by_peer(5)
    with Conn(b.sasl) as c:
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == ILLEGAL_SASL_STATE
        assert c.closed_by_peer(5)
    # Handshake v1 then SaslAuthenticate, then anything.
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == 0
        r.string(), r.bytes_()
        assert r.i64() == 0, "no connections.max.reauth.ms: the session does not expire"
        r = c.request(METADATA, 4, metadata_body(None, 4))
        assert r.remaining() > 0
    # Handshake v0: raw tokens follow, with no Kafka header.
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 0, string("PLAIN")).i16() == 0
        c.send(frame(b"\0alice\0alice-secret"))
        assert c.request(METADATA, 4, metadata_body(None, 4)).remaining() > 0


def test_hostile_bytes_in_the_sasl_exchange(make_broker, pki):
    b = sasl_broker(make_broker, pki)
    for target in [b.sasl]:
        # A SaslAuthenticate claiming 100 MiB: refused by its size (sasl.server.max.receive.size),
        # before the broker reads or allocates it.
        with Conn(target) as c:
            assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
            c.send(struct.pack(">i", 100 << 20) + request_header(SASL_AUTHENTICATE, 1, 2))
            assert c.closed_by_peer(5)
        # Garbage PLAIN messages: an error, then the close.
        for garbage in [b"\xff" * 5000, b"no-nuls", b"\0\0\0\0", b""]:
            with Conn(target) as c:
                assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
                r = c.request(SASL_AUTHENTICATE, 1, bytes_(garbage))
                assert r.i16() == SASL_AUTHENTICATION_FAILED
                assert c.closed_by_peer(5)
        # A client that stops mid-exchange holds only its own connection.
        stalled = Conn(target)
        assert stalled.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        stalled.send(struct.pack(">i", 40) + b"\x00\x24")
    md = admin(b.sasl, **plain_conf()).list_topics(timeout=10)
    assert len(md.brokers) == 1
    # 100 MiB over SASL_SSL, streamed for real: the connection is closed at the size prefix.
    import ssl
    ctx = ssl.create_default_context(cafile=str(pki.root / "ca.pem"))
    host, port = b.sasl_ssl.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(frame(request_header(SASL_HANDSHAKE, 1, 1) + string("PLAIN")))
            sent = 0
            with pytest.raises(OSError):
                t.sendall(struct.pack(">i", 100 << 20) + request_header(SASL_AUTHENTICATE, 1, 2))
                chunk = b"\0" * (1 << 20)
                for _ in range(100):
                    t.sendall(chunk)
                    sent += len(chunk)
            assert sent < 100 << 20
    stalled.close()
    kcat_roundtrip(b.bootstrap)


def test_reauthentication_kip368(make_broker):
    b = sasl_broker(make_broker, **{"connections.max.reauth.ms": "1500"})
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0alice-secret"))
        assert r.i16() == 0
        r.string(), r.bytes_()
        assert 0 < r.i64() <= 1500
        assert c.request(METADATA, 4, metadata_body(None, 4)).remaining() > 0
        # Re-authenticating as someone else is refused.
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0admin\0admin-secret"))
        assert r.i16() == SASL_AUTHENTICATION_FAILED
        assert "Cannot change principals" in r.string()
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        assert c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0alice-secret")).i16() == 0
        time.sleep(1.7)
        # Expired: re-authenticate first, and then requests are served again.
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        assert c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0alice\0alice-secret")).i16() == 0
        assert c.request(METADATA, 4, metadata_body(None, 4)).remaining() > 0
        time.sleep(1.7)
        c.send(frame(request_header(METADATA, 4, 50) + metadata_body(None, 4)))
        assert c.recv_frame() is None, "a request after the session expired closes the connection"
    # librdkafka re-authenticates by itself and keeps producing.
    p = producer(b.sasl, **plain_conf())
    topic = unique_topic("reauth")
    for i in range(8):
        p.produce(topic, value=b"r%d" % i)
        p.flush(10)
        time.sleep(0.5)
    assert p.flush(10) == 0


def test_bad_sasl_settings_are_start_up_errors(make_broker):
    for extra, words in [
        ({"listener.name.sasl_plaintext.plain.sasl.jaas.config": ""}, "plain.sasl.jaas.config"),
        ({"sasl.enabled.mechanisms": "GSSAPI"}, "sasl.enabled.mechanisms"),
        ({"sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER"}, "sasl.oauthbearer.jwks.endpoint.url"),
        ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:KERBEROS"}, "KERBEROS"),
    ]:
        plain, sp = free_port(), free_port()
        overrides = secure_listeners(PLAINTEXT=plain, SASL_PLAINTEXT=sp)
        overrides["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = JAAS
        overrides.update(extra)
        b = make_broker(port=plain, start=False, **overrides)
        b.start(wait=False)
        assert b.proc.wait(30) != 0
        assert words in b.log_text(), b.log_text()


# --- OAUTHBEARER (KIP-768): tokens signed here with openssl, checked against a JWKS file ----------

@pytest.fixture(scope="module")
def jwks(tmp_path_factory):
    import json
    import subprocess
    d = tmp_path_factory.mktemp("jwks")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "signer.key"), "2048"], check=True, capture_output=True)
    modulus = subprocess.run(["openssl", "rsa", "-in", str(d / "signer.key"), "-noout", "-modulus"],
                             check=True, capture_output=True).stdout.decode().strip().split("=", 1)[1]
    key = {"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
           "n": _b64url(bytes.fromhex(modulus)), "e": _b64url((65537).to_bytes(3, "big"))}
    (d / "jwks.json").write_text(json.dumps({"keys": [key]}))

    def token(sub="svc-orders", aud="strom", iss="https://issuer.example", lifetime_s=600):
        now = int(time.time())
        head = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
        body = _b64url(json.dumps({"sub": sub, "aud": aud, "iss": iss, "iat": now,
                                   "exp": now + lifetime_s}).encode())
        signed = f"{head}.{body}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(d / "signer.key")], input=signed,
                             check=True, capture_output=True).stdout
        return f"{head}.{body}.{_b64url(sig)}", now + lifetime_s

    return d / "jwks.json", token


def oauth_broker(make_broker, jwks_path):
    plain, sp = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_PLAINTEXT=sp)
    overrides.update({
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks_path}",
        "sasl.oauthbearer.expected.audience": "strom",
        "sasl.oauthbearer.expected.issuer": "https://issuer.example",
    })
    b = make_broker(port=plain, **overrides)
    b.sasl = f"127.0.0.1:{sp}"
    return b


def test_oauthbearer_with_a_jwks_file(make_broker, jwks):
    path, token = jwks
    b = oauth_broker(make_broker, path)
    good = token()
    conf = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
            "oauth_cb": lambda _cfg: (good[0], good[1])}
    p = producer(b.sasl, **conf)
    topic = unique_topic("oauth")
    p.produce(topic, value=b"tok")
    assert p.flush(30) == 0
    assert wait_log(b, "principal=User:svc-orders"), b.log_tail()
    # Tokens for another audience or issuer are refused, and the broker goes on.
    for bad in [token(aud="someone-else"), token(iss="https://evil.example")]:
        errors = []
        q = producer(b.sasl, **{**conf, "oauth_cb": lambda _cfg, t=bad: (t[0], t[1])},
                     error_cb=lambda e: errors.append(e))
        q.produce(topic, value=b"no")
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            q.poll(0.5)
        assert any("authentication" in e.str().lower() for e in errors), errors
        q.purge()
    admin(b.sasl, **conf).list_topics(timeout=10)


def test_sasl_ssl_principal_is_the_sasl_user_not_the_certificate(make_broker, pki):
    b = sasl_broker(make_broker, pki, **{"ssl.client.auth": "requested",
                                         "ssl.truststore.location": str(pki.root / "ca.pem")})
    x = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.root / 'ca.pem'}",
         "-X", f"ssl.certificate.location={pki.cert('alice')}", "-X", f"ssl.key.location={pki.key('alice')}",
         "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=admin", "-X", "sasl.password=admin-secret"]
    r = kcat(["-L", "-b", b.sasl_ssl, *x])
    assert r.returncode == 0, describe(r)
    assert wait_log(b, "SASL authentication succeeded"), b.log_tail()
    lines = [ln for ln in b.log_text().splitlines() if "SASL authentication succeeded" in ln]
    assert all("principal=User:admin" in ln for ln in lines), lines


def test_cli_command_config_sasl_ssl_plain(make_broker, pki, tmp_path):
    import subprocess
    from conftest import strom_bin
    b = sasl_broker(make_broker, pki)
    props = tmp_path / "client.properties"

    def cli(password):
        props.write_text(
            "security.protocol=SASL_SSL\n"
            f"ssl.truststore.location={pki.root / 'ca.pem'}\n"
            "sasl.mechanism=PLAIN\n"
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="alice" password="{password}";\n')
        return subprocess.run([strom_bin(), "topic", "list", "-b", b.sasl_ssl.replace("127.0.0.1", "localhost"),
                               "--command-config", str(props)], capture_output=True, timeout=60)

    r = cli("alice-secret")
    assert r.returncode == 0, r.stderr.decode()
    assert wait_log(b, "principal=User:alice")
    r = cli("wrong")
    assert r.returncode != 0
    assert "SASL authentication failed: Authentication failed: Invalid username or password" in r.stderr.decode(), \
        r.stderr.decode()


KAFKAJS_SASL_SSL = r"""
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const [bootstrap, topic, ca, password] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'strom-kafkajs', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  ssl: { ca: [fs.readFileSync(ca, 'utf-8')], servername: 'localhost' },
  sasl: { mechanism: 'plain', username: 'alice', password }, retry: { retries: 0 }, connectionTimeout: 5000 })
async function main() {
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  await producer.send({ topic, messages: [{ value: 'js-1' }, { value: 'js-2' }] })
  await producer.disconnect()
  return 'ok'
}
main().then(r => { console.log(JSON.stringify({ result: r })); process.exit(0) })
  .catch(e => { console.log(JSON.stringify({ error: String(e && e.message || e), type: e && e.type })); process.exit(1) })
"""


def test_kafkajs_over_sasl_ssl(make_broker, pki, tmp_path):
    import json
    import os
    import shutil
    import subprocess
    from pathlib import Path
    node = shutil.which("node")
    js_dir = Path(__file__).parent / "js"
    if node is None or not (js_dir / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    b = sasl_broker(make_broker, pki)
    script = tmp_path / "sasl.js"
    script.write_text(KAFKAJS_SASL_SSL)
    env = dict(os.environ, NODE_PATH=str(js_dir / "node_modules"))
    topic = unique_topic("js")

    def run(password):
        p = subprocess.run([node, str(script), b.sasl_ssl, topic, str(pki.root / "ca.pem"), password],
                           capture_output=True, text=True, timeout=60, env=env)
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])

    rc, out = run("alice-secret")
    assert rc == 0 and out["result"] == "ok", out
    rc, out = run("wrong")
    assert rc != 0 and "SASL PLAIN authentication failed" in out["error"], out
    c = kcat(["-C", "-b", b.bootstrap, "-t", topic, "-e", "-o", "beginning"])
    assert c.stdout.decode().split() == ["js-1", "js-2"], describe(c)


# --- OAUTHBEARER with the JWKS fetched over HTTPS (KIP-768's refresh and backoff) -------------

class JwksServer:
    """An HTTPS server (the test CA's localhost certificate) answering GET /jwks with
    whatever `self.body` and `self.status` say, counting the requests."""

    def __init__(self, pki):
        import http.server
        import ssl
        import threading
        server = self
        self.body = b'{"keys": []}'
        self.status = 200
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.root / "server.crt"), str(pki.root / "server.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}/jwks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve_keys(self, *jwks):
        import json
        self.body = json.dumps({"keys": list(jwks)}).encode()
        self.status = 200

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(pki):
    s = JwksServer(pki)
    yield s
    s.close()


def _oauth_https_broker(make_broker, url, start=True, **extra):
    plain, sp = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_PLAINTEXT=sp)
    overrides.update({
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.jwks.endpoint.url": url,
        "sasl.oauthbearer.expected.audience": "strom",
        "sasl.oauthbearer.expected.issuer": "https://issuer.example",
    })
    overrides.update(extra)
    b = make_broker(port=plain, start=start, **overrides)
    b.sasl = f"127.0.0.1:{sp}"
    return b


def _authenticates(b, tok, topic):
    """Whether a producer with this token writes one record (False on an auth error)."""
    errors = []
    p = producer(b.sasl, **{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "OAUTHBEARER",
                            "oauth_cb": lambda _cfg: (tok[0], tok[1])}, error_cb=lambda e: errors.append(e))
    p.produce(topic, value=b"x")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.flush(0.5) == 0:
            return True
        if any("authentication" in e.str().lower() for e in errors):
            p.purge()
            return False
    raise AssertionError(f"neither written nor refused: {errors}")


def test_oauthbearer_jwks_over_https_refresh_and_keep_last_good(make_broker, pki, jwks_server, tmp_path):
    k1, token1 = _signer(tmp_path, "k1")
    k2, token2 = _signer(tmp_path, "k2")
    jwks_server.serve_keys(k1)
    b = _oauth_https_broker(make_broker, jwks_server.url, **{
        "sasl.oauthbearer.jwks.endpoint.ssl.truststore.location": str(pki.root / "ca.pem"),
        "sasl.oauthbearer.jwks.endpoint.refresh.ms": "500",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": "50",
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "200",
    })
    topic = unique_topic("jwks")
    assert _authenticates(b, token1(), topic)
    assert not _authenticates(b, token2(), topic), "k2 is not in the key set yet"
    # The identity provider rotates its keys: the refresh picks them up.
    jwks_server.serve_keys(k2)
    deadline = time.monotonic() + 15
    while not _authenticates(b, token2(), topic):
        assert time.monotonic() < deadline, "the refreshed key set was never used"
        time.sleep(0.3)
    assert not _authenticates(b, token1(), topic), "k1 left the key set"
    # The endpoint fails (HTTP 500, then garbage): the last good keys stay in use, retried
    # with the backoff (more requests than the 500 ms refresh alone would make).
    jwks_server.status = 500
    before = jwks_server.requests
    time.sleep(2)
    assert jwks_server.requests - before >= 6, jwks_server.requests - before
    assert "JWKS refresh failed" in b.log_text()
    assert _authenticates(b, token2(), topic)
    jwks_server.status, jwks_server.body = 200, b"not json"
    time.sleep(1)
    assert _authenticates(b, token2(), topic)
    # Back again, and a key set of more than 1 MiB is refused the same way.
    jwks_server.serve_keys(k1, k2)
    deadline = time.monotonic() + 15
    while not _authenticates(b, token1(), topic):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    jwks_server.body = b'{"keys": [' + b" " * (1024 * 1024 + 10) + b"]}"
    time.sleep(1.5)
    assert "more than 1048576 bytes" in b.log_text()
    assert _authenticates(b, token1(), topic) and _authenticates(b, token2(), topic)
    assert b.alive()


def _oauth_raw(b, token: str):
    """One OAUTHBEARER SaslAuthenticate (v1) with this token on a new connection: its error
    code and auth bytes (Kafka's error challenge for a refused token). The connection is then
    closed without answering a challenge, so no failure is counted against this address."""
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("OAUTHBEARER")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(f"n,,\x01auth=Bearer {token}\x01\x01".encode()))
        code = r.i16()
        r.string()
        return code, r.bytes_()


def test_oauthbearer_unknown_kid_fetches_the_jwks_early(make_broker, pki, jwks_server, tmp_path):
    """KIP-768's expedited refresh: a token whose kid the key set lacks has the JWKS fetched at
    once (not after sasl.oauthbearer.jwks.endpoint.refresh.ms, an hour here) and is checked
    against the new keys; made-up kids cannot make more than one early fetch per
    sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms."""
    import json
    k1, token1 = _signer(tmp_path, "k1")
    k2, token2 = _signer(tmp_path, "k2")
    gap_s = 3
    jwks_server.serve_keys(k1)
    b = _oauth_https_broker(make_broker, jwks_server.url, **{
        "sasl.oauthbearer.jwks.endpoint.ssl.truststore.location": str(pki.root / "ca.pem"),
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": str(gap_s * 1000),
    })
    topic = unique_topic("early")
    assert _authenticates(b, token1(), topic)
    assert jwks_server.requests == 1, "fetched once, at start-up"
    # The identity provider rotates in k2: its first token is taken, after one early fetch.
    jwks_server.serve_keys(k1, k2)
    fetched_at = time.monotonic()
    code, auth = _oauth_raw(b, token2(sub="rotated")[0])
    assert (code, auth) == (0, b""), (code, auth)
    assert jwks_server.requests == 2
    assert _authenticates(b, token2(), topic), "librdkafka too"
    assert jwks_server.requests == 2, "a known kid fetches nothing"
    assert "fetching it early" in b.log_text()

    def made_up(kid: str) -> str:
        head = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
        body = _b64url(json.dumps({"sub": "mallory", "exp": int(time.time()) + 600}).encode())
        return f"{head}.{body}.{_b64url(b'not a signature')}"

    # A flood of tokens with made-up kids: each is refused, and together they fetch at most
    # once per gap (none within the gap after the rotation's fetch).
    time.sleep(max(0.0, fetched_at + gap_s + 0.2 - time.monotonic()))
    before = jwks_server.requests
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 2 * gap_s + 1:
        code, auth = _oauth_raw(b, made_up(f"fake-{n}"))
        assert code == 0 and b"invalid_token" in auth, (code, auth)
        n += 1
    elapsed = time.monotonic() - started
    fetches = jwks_server.requests - before
    assert n >= 20, n
    assert 1 <= fetches <= 1 + int(elapsed / gap_s), (fetches, n, elapsed)
    # k2 still works, and a token of a key the provider never published stays refused.
    _, stranger = _signer(tmp_path, "k9")
    assert _oauth_raw(b, token2()[0]) == (0, b"")
    assert _oauth_raw(b, stranger()[0])[1] == b'{"status":"invalid_token"}'
    assert b.alive() and "panicked" not in b.log_text()


def test_oauthbearer_jwks_over_https_needs_a_trusted_endpoint(make_broker, pki, jwks_server, tmp_path):
    k1, _ = _signer(tmp_path, "k1")
    jwks_server.serve_keys(k1)
    # Without the JWKS truststore the system's roots do not know the test CA: start-up fails,
    # naming the setting and the certificate problem.
    b = _oauth_https_broker(make_broker, jwks_server.url, start=False)
    b.start(wait=False)
    assert b.proc.wait(30) != 0
    text = b.log_text()
    assert "sasl.oauthbearer.jwks.endpoint.url" in text and "certificate" in text.lower(), b.log_tail()
    # A truststore that is not a PEM file is a start-up error naming it.
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    b = _oauth_https_broker(make_broker, jwks_server.url, start=False,
                            **{"sasl.oauthbearer.jwks.endpoint.ssl.truststore.location": str(bad)})
    b.start(wait=False)
    assert b.proc.wait(30) != 0, b.log_tail()
    assert "sasl.oauthbearer.jwks.endpoint.ssl.truststore.location" in b.log_text()


# --- PLAIN against the SCRAM credentials of the metadata log ------------------------------------

def _plain_over_scram_broker(make_broker):
    """SASL_PLAINTEXT with PLAIN and no JAAS entry at all, the StandardAuthorizer on, and
    PLAINTEXT's User:ANONYMOUS a super user to manage users and ACLs."""
    plain, sp = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_PLAINTEXT=sp)
    overrides.update({"listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
                      "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                      "super.users": "User:ANONYMOUS", "num.partitions": "1",
                      "connection.failed.authentication.delay.ms": "0"})
    b = make_broker(port=plain, **overrides)
    b.sasl = f"127.0.0.1:{sp}"
    return b


def _kcat_plain(b, user, password, args, input=None):
    x = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
         "-X", f"sasl.username={user}", "-X", f"sasl.password={password}"]
    return kcat([*args, "-b", b.sasl, *x], input=input)


def _delivery_errors(b, user, password, topics):
    """Produces one record to each topic as user over PLAIN: each topic's delivery error (None
    when written)."""
    results = {}
    p = producer(b.sasl, **plain_conf(user, password, **{"message.timeout.ms": 10000}))
    for t in topics:
        p.produce(t, b"x", on_delivery=lambda err, msg, t=t: results.__setitem__(t, err))
    p.flush(20)
    return results


def test_plain_checks_scram_credentials_and_their_acls(make_broker):
    import subprocess
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    from conftest import strom_bin
    from helpers import create_topic
    b = _plain_over_scram_broker(make_broker)
    # carol by the CLI (SCRAM-SHA-256), dave by AlterUserScramCredentials (SCRAM-SHA-512).
    p = subprocess.run([strom_bin(), "user", "create", "carol", "--password", "carol-pw", "--mechanism",
                        "SCRAM-SHA-256", "-b", b.bootstrap], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    a = admin(b.bootstrap)
    up = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                      b"dave-pw")
    for f in a.alter_user_scram_credentials([up], request_timeout=15).values():
        f.result()
    mine, theirs = unique_topic("mine"), unique_topic("theirs")
    for t in [mine, theirs]:
        create_topic(b.bootstrap, t)
    bindings = [AclBinding(ResourceType.TOPIC, mine, ResourcePatternType.LITERAL, f"User:{u}", "*",
                           op, AclPermissionType.ALLOW)
                for u in ["carol", "dave"] for op in [AclOperation.WRITE, AclOperation.READ]]
    for f in a.create_acls(bindings, request_timeout=15).values():
        f.result()

    # The right password: written where the ACL allows, refused by the ACL elsewhere.
    got = _delivery_errors(b, "carol", "carol-pw", [mine, theirs])
    assert got[mine] is None, got
    assert got[theirs] is not None and got[theirs].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, got
    assert wait_log(b, "principal=User:carol"), b.log_tail()
    k = _kcat_plain(b, "dave", "dave-pw", ["-P", "-t", mine], input="d1\nd2\n")
    assert k.returncode == 0, describe(k)
    c = _kcat_plain(b, "dave", "dave-pw", ["-C", "-t", mine, "-e", "-o", "beginning"])
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().split() == ["x", "d1", "d2"]
    k = _kcat_plain(b, "dave", "dave-pw", ["-P", "-t", theirs], input="no\n")
    assert k.returncode != 0 and "authoriz" in k.stderr.decode().lower(), describe(k)

    # A wrong password and an unknown user: the same refusal, from both clients.
    for user, password in [("carol", "dave-pw"), ("nobody", "carol-pw")]:
        errors = []
        q = producer(b.sasl, **plain_conf(user, password, **{"reconnect.backoff.ms": 10000,
                                                              "reconnect.backoff.max.ms": 10000}),
                     error_cb=lambda e: errors.append(e))
        q.produce(mine, value=b"refused")
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            q.poll(0.5)
        assert any("Authentication failed: Invalid username or password" in e.str() for e in errors), \
            [e.str() for e in errors]
        q.purge()
        del q
        k = _kcat_plain(b, user, password, ["-L", "-m", "5"])
        assert k.returncode != 0, describe(k)
        assert "Invalid username or password" in k.stderr.decode(), describe(k)
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0nobody\0x"))
        assert (r.i16(), r.string()) == (SASL_AUTHENTICATION_FAILED,
                                         "Authentication failed: Invalid username or password")

    # carol's credential deleted: the password that worked (and was cached) is refused now.
    de = UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)
    for f in a.alter_user_scram_credentials([de], request_timeout=15).values():
        f.result()
    with Conn(b.sasl) as c:
        assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
        r = c.request(SASL_AUTHENTICATE, 1, bytes_(b"\0carol\0carol-pw"))
        assert r.i16() == SASL_AUTHENTICATION_FAILED
    k = _kcat_plain(b, "carol", "carol-pw", ["-L", "-m", "5"])
    assert k.returncode != 0 and "Invalid username or password" in k.stderr.decode(), describe(k)
    # dave's changed password: the old one is refused, the new one taken.
    up = UserScramCredentialUpsertion("dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                      b"dave-pw-2")
    for f in a.alter_user_scram_credentials([up], request_timeout=15).values():
        f.result()
    k = _kcat_plain(b, "dave", "dave-pw", ["-L", "-m", "5"])
    assert k.returncode != 0, describe(k)
    assert _delivery_errors(b, "dave", "dave-pw-2", [mine])[mine] is None
    assert b.alive() and "panicked" not in b.log_text()


def test_plain_prefers_the_jaas_entry_over_a_scram_credential(make_broker):
    """A user of the JAAS entry is checked against it only; other users against SCRAM."""
    import subprocess
    from conftest import strom_bin
    b = sasl_broker(make_broker, **{"connection.failed.authentication.delay.ms": "0"})
    for user, password in [("alice", "alice-scram"), ("erin", "erin-scram")]:
        p = subprocess.run([strom_bin(), "user", "create", user, "--password", password, "--mechanism",
                            "SCRAM-SHA-512", "-b", b.bootstrap], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr

    def code(user, password):
        with Conn(b.sasl) as c:
            assert c.request(SASL_HANDSHAKE, 1, string("PLAIN")).i16() == 0
            return c.request(SASL_AUTHENTICATE, 1, bytes_(f"\0{user}\0{password}".encode())).i16()

    assert code("alice", "alice-secret") == 0
    assert code("alice", "alice-scram") == SASL_AUTHENTICATION_FAILED
    assert code("erin", "erin-scram") == 0
    assert code("erin", "alice-secret") == SASL_AUTHENTICATION_FAILED


# --- Secrets: sensitive in DescribeConfigs, never in the log ------------------------------------

def test_secrets_are_sensitive_and_never_logged(make_broker, pki, tmp_path):
    from confluent_kafka.admin import ConfigResource
    key_pem = (pki.root / "server.key").read_text()
    chain_pem = (pki.root / "server.crt").read_text()
    key_body = key_pem.strip().splitlines()[1]
    jaas_pw, gw_pw, token = "jaas-s3cret-pw", "gw-s3cret-pw", "adm-tok-s3cret"
    token_file = tmp_path / "admin-token"
    token_file.write_text(token)
    plain, ss = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_SSL=ss)
    overrides.update({
        "ssl.keystore.key": key_pem,
        "ssl.keystore.certificate.chain": chain_pem,
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="{jaas_pw}";',
        "gateway.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_carol="{gw_pw}";',
        "admin.http.auth.token.file": str(token_file),
    })
    # In a config file, as an operator keeps them (the harness logs its command line).
    import json
    listeners = {k: overrides.pop(k) for k in ["listeners", "advertised.listeners"]}
    conf = tmp_path / "strom.toml"
    conf.write_text("".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in overrides.items()))
    b = make_broker(port=plain, env={"STROM_LOG": "debug"}, extra_args=["--config", str(conf)], **listeners)
    # The secrets work: PLAIN over TLS with the key and chain given as text.
    p = producer(f"127.0.0.1:{ss}", **plain_conf("alice", jaas_pw, protocol="SASL_SSL",
                                                  **{"ssl.ca.location": str(pki.root / "ca.pem")}))
    p.produce(unique_topic("secret"), b"x")
    assert p.flush(30) == 0
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    a = admin(b.bootstrap)
    configs = a.describe_configs([res])[res].result(20)
    for name in ["ssl.keystore.key", "ssl.keystore.certificate.chain", "ssl.truststore.certificates",
                 "ssl.key.password", "gateway.plain.sasl.jaas.config", "gateway.ssl.keystore.key",
                 "admin.http.auth.token.file"]:
        c = configs[name]
        assert c.is_sensitive and c.value is None, (name, c.value, c.is_sensitive)
    assert not configs["ssl.keystore.location"].is_sensitive
    assert configs["sasl.enabled.mechanisms"].value == "PLAIN"
    # kafka-python's describe_configs answers the same.
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType, KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        answer = kp.describe_configs([KpResource(ConfigResourceType.BROKER, "0")])
    finally:
        kp.close()
    text = repr(answer)
    for secret in [key_body, jaas_pw, gw_pw, str(token_file)]:
        assert secret not in text, secret
    log = b.log_text()
    assert "DEBUG" in log, "the debug log was on"
    for secret in [key_body, jaas_pw, gw_pw, token]:
        assert secret not in log, secret
    # A wrong secret is a start-up error that names the setting but does not show the value.
    bad = "-----BEGIN PRIVATE KEY-----\nbad-SECRETXYZ\n-----END PRIVATE KEY-----\n"
    overrides["ssl.keystore.key"] = bad
    conf.write_text("".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in overrides.items()))
    plain2 = free_port()
    b2 = make_broker(start=False, port=plain2, extra_args=["--config", str(conf)],
                     **secure_listeners(PLAINTEXT=plain2, SASL_SSL=free_port()))
    b2.start(wait=False)
    assert b2.proc.wait(30) != 0
    text = b2.log_text()
    assert "listener SASL_SSL" in text and "ssl.keystore.key" in text and "SECRETXYZ" not in text, b2.log_tail()
