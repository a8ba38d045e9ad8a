"""The gateway's HTTPS, authentication and authorization (issue 15 on issue 14's security):
HTTP Basic against the cluster's SCRAM users and configured PLAIN users, Bearer JWTs checked
as OAUTHBEARER checks them, every topic and group operation checked against the broker's
ACLs as the caller (403 40301), 401 with WWW-Authenticate, and per-principal limits (429)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)

from conftest import free_port, strom_bin
from helpers import create_topic, unique_topic
from pki import make_pki, ports, secure_listeners
from test_gateway import BINARY_V2, V2, wait_http
from test_sasl import jwks  # noqa: F401  (the fixture)

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'user_admin="admin-secret";')
GATEWAY_USERS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                 'user_carol="carol-secret" user_dave="dave-secret";')


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("gwpki"))


def tls_context(pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.root / "ca.pem"))
    return ctx


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Https:
    """Requests to the gateway, each on its own connection unless one is given."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None):
        self.port, self.ctx = port, ctx

    def connection(self) -> http.client.HTTPConnection:
        if self.ctx is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx, timeout=30)

    def call(self, method, path, body=None, auth=None, content_type=None, conn=None, accept=None):
        c = conn or self.connection()
        headers = {}
        if auth:
            headers["Authorization"] = auth
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        if conn is None:
            c.close()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return r.status, r.headers, parsed


def admin_conf(b) -> dict:
    return {"bootstrap.servers": b.sasl, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": "admin", "sasl.password": "admin-secret"}


def secured_broker(make_broker, tmp_path, pki=None, **extra):
    """A broker with ACLs on, its SASL_PLAINTEXT listener first (the gateway's loopback
    connection authenticates there as the super user admin, from gateway.client.config), and
    a gateway on it."""
    p = ports("PLAINTEXT", "SASL_PLAINTEXT")
    gw_port = free_port()
    listeners = secure_listeners(SASL_PLAINTEXT=p["SASL_PLAINTEXT"], PLAINTEXT=p["PLAINTEXT"])
    client = tmp_path / "gateway-client.properties"
    client.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                      "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                      'username="admin" password="admin-secret";\n')
    overrides = {
        **listeners,
        "authorizer.class.name": STANDARD,
        "super.users": "User:admin",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": ADMIN_JAAS,
        "gateway.listener": f"127.0.0.1:{gw_port}",
        "gateway.client.config": str(client),
        "gateway.plain.sasl.jaas.config": GATEWAY_USERS,
        "num.partitions": 1,
        "group.initial.rebalance.delay.ms": 0,
    }
    if pki is not None:
        overrides["gateway.ssl.keystore.location"] = str(pki.root / "server.pem")
    overrides.update(extra)
    b = make_broker(port=p["PLAINTEXT"], **overrides)
    b.sasl = f"127.0.0.1:{p['SASL_PLAINTEXT']}"
    wait_http(gw_port)
    b.gw = Https(gw_port, tls_context(pki) if pki is not None else None)
    return b


def setup_users_and_acls(b, topic: str, group: str, other: str):
    a = AdminClient(admin_conf(b))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    for f in a.alter_user_scram_credentials([UserScramCredentialUpsertion("alice", info, b"alice-secret")]).values():
        f.result(20)
    from confluent_kafka.admin import NewTopic
    for f in a.create_topics([NewTopic(topic, 1), NewTopic(other, 1)]).values():
        f.result(20)
    bindings = [
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:carol", "*",
                   AclOperation.DESCRIBE, AclPermissionType.ALLOW),
    ]
    for f in a.create_acls(bindings).values():
        f.result(20)
    # ACLs and credentials are metadata records: wait until the gateway sees them.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, _, _ = b.gw.call("GET", f"/topics/{topic}", auth=basic("alice", "alice-secret"))
        if status == 200:
            return
        time.sleep(0.2)
    raise AssertionError("alice never got in")


def test_https_basic_scram_and_plain_users_checked_against_acls(make_broker, tmp_path, pki):
    b = secured_broker(make_broker, tmp_path, pki)
    topic, other, group = unique_topic("gwauth"), unique_topic("gwsecret"), "gwauth-g"
    setup_users_and_acls(b, topic, group, other)
    gw = b.gw
    alice, carol = basic("alice", "alice-secret"), basic("carol", "carol-secret")

    # No credentials, a wrong password, an unknown scheme: 401 with the Basic challenge.
    for auth in [None, basic("alice", "nope"), basic("mallory", "x"), "Digest abc", "Basic !!!"]:
        status, headers, body = gw.call("GET", "/topics", auth=auth)
        assert status == 401, (auth, body)
        assert body["error_code"] == 40101, body
        assert headers.get("WWW-Authenticate", "").startswith("Basic realm="), headers
    # v3 answers its 401 in application/json, as its other errors.
    status, headers, body = gw.call("GET", "/v3/clusters")
    assert status == 401 and headers["Content-Type"] == "application/json", headers

    # alice (SCRAM) may write and read her topic, not the other; lists show hers only.
    status, _, body = gw.call("POST", f"/topics/{topic}", {"records": [{"key": "azE=", "value": "djE="}]},
                              auth=alice, content_type=BINARY_V2)
    assert status == 200 and body["offsets"][0]["offset"] == 0, body
    status, _, body = gw.call("POST", f"/topics/{other}", {"records": [{"value": "djE="}]}, auth=alice,
                              content_type=BINARY_V2)
    assert (status, body["error_code"]) == (403, 40301), body
    assert "User:alice" in body["message"] and other in body["message"]
    status, _, body = gw.call("GET", "/topics", auth=alice)
    assert status == 200 and body == [topic], body
    status, _, body = gw.call("GET", f"/topics/{other}", auth=alice)
    assert (status, body["error_code"]) == (403, 40301), body
    status, _, body = gw.call("DELETE", f"/v3/clusters/x/topics/{topic}", auth=alice)
    assert (status, body["error_code"]) == (403, 40301), body

    # carol (a PLAIN user of gateway.plain.sasl.jaas.config) may only describe it.
    status, _, body = gw.call("GET", f"/topics/{topic}", auth=carol)
    assert status == 200, body
    status, _, body = gw.call("POST", f"/topics/{topic}", {"records": [{"value": "djE="}]}, auth=carol,
                              content_type=BINARY_V2)
    assert (status, body["error_code"]) == (403, 40301), body

    # A consumer instance: alice reads with her group; carol may not use it, nor the group.
    inst = f"/consumers/{group}/instances/a1"
    status, _, body = gw.call("POST", f"/consumers/{group}", {"name": "a1", "format": "binary",
                                                             "auto.offset.reset": "earliest"},
                              auth=alice, content_type=V2)
    assert status == 200, body
    status, _, body = gw.call("POST", f"{inst}/subscription", {"topics": [other]}, auth=alice, content_type=V2)
    assert (status, body["error_code"]) == (403, 40301), body
    status, _, body = gw.call("POST", f"{inst}/subscription", {"topics": [topic]}, auth=alice, content_type=V2)
    assert status == 204, body
    got = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        status, _, body = gw.call("GET", f"{inst}/records?timeout=1000", auth=alice, accept=BINARY_V2)
        assert status == 200, body
        got += body
    assert [(r["key"], r["value"]) for r in got] == [("azE=", "djE=")], got
    status, _, body = gw.call("GET", f"{inst}/records", auth=carol, accept=BINARY_V2)
    assert (status, body["error_code"]) == (403, 40301), body  # no READ on the group
    status, _, body = gw.call("POST", "/consumers/other-group", {"name": "c1"}, auth=alice, content_type=V2)
    assert (status, body["error_code"]) == (403, 40301), body
    status, _, _ = gw.call("DELETE", inst, auth=alice)
    assert status == 204

    # The record alice produced over HTTPS is what a Kafka consumer (admin) reads.
    c = Consumer({**admin_conf(b), "group.id": "gwauth-check", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    msg = None
    deadline = time.monotonic() + 20
    while msg is None and time.monotonic() < deadline:
        msg = c.poll(1)
    c.close()
    assert msg is not None and msg.error() is None and (msg.key(), msg.value()) == (b"k1", b"v1")

    # The document says so: Basic and bearer schemes, and 401/403/429 on every operation.
    status, _, doc = gw.call("GET", "/openapi.json", auth=alice)
    assert status == 200, doc
    schemes = doc["components"]["securitySchemes"]
    assert (schemes["basic"]["scheme"], schemes["bearer"]["scheme"]) == ("basic", "bearer"), schemes
    assert {"basic": []} in doc["security"] and {"bearer": []} in doc["security"], doc["security"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            missing = {"401", "403", "429"} - set(operation["responses"])
            assert not missing, (method, path, missing)

    # Plain HTTP on the HTTPS port gets no answer.
    plain = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        plain.request("GET", "/topics")
        plain.getresponse().read()


def test_websocket_and_sse_over_tls_as_the_caller(make_broker, tmp_path, pki):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    b = secured_broker(make_broker, tmp_path, pki)
    topic, other, group = unique_topic("gwws"), unique_topic("gwwsx"), "gwws-g"
    setup_users_and_acls(b, topic, group, other)
    alice = basic("alice", "alice-secret")
    base = f"wss://localhost:{b.gw.port}/ws/v1/topics"
    with connect(f"{base}/{topic}/produce", ssl=b.gw.ctx, additional_headers={"Authorization": alice}) as ws:
        ws.send(json.dumps({"value": "hi"}))
        assert json.loads(ws.recv(timeout=20)) == {"partition": 0, "offset": 0}
    with connect(f"{base}/{topic}/records?from=earliest&group={group}", ssl=b.gw.ctx,
                 additional_headers={"Authorization": alice}) as ws:
        r = json.loads(ws.recv(timeout=20))
        assert (r["offset"], r["value"]) == (0, "hi"), r
    for url, auth in [(f"{base}/{other}/records", alice), (f"{base}/{topic}/records?group=not-hers", alice),
                      (f"{base}/{topic}/produce", basic("carol", "carol-secret"))]:
        with pytest.raises(InvalidStatus) as e:
            connect(url, ssl=b.gw.ctx, additional_headers={"Authorization": auth})
        assert e.value.response.status_code == 403, url
        assert json.loads(e.value.response.body)["error_code"] == 40301
    with pytest.raises(InvalidStatus) as e:
        connect(f"{base}/{topic}/records", ssl=b.gw.ctx)
    assert e.value.response.status_code == 401
    # SSE, as curl would read it over https with Basic credentials.
    out = subprocess.run(["curl", "-sN", "--max-time", "3", "--cacert", str(pki.root / "ca.pem"), "-u",
                          "alice:alice-secret", "-H", "Accept: text/event-stream",
                          f"https://localhost:{b.gw.port}/ws/v1/topics/{topic}/records?from=earliest"],
                         capture_output=True, text=True)
    assert '"value":"hi"' in out.stdout, out


def test_bearer_tokens_are_checked_as_oauthbearer(make_broker, tmp_path, jwks):  # noqa: F811
    jwks_path, token = jwks
    b = secured_broker(make_broker, tmp_path, None, **{
        "gateway.authentication": "basic,bearer",
        "gateway.sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks_path}",
        "gateway.sasl.oauthbearer.expected.audience": "strom",
        "gateway.sasl.oauthbearer.expected.issuer": "https://issuer.example",
    })
    topic = unique_topic("gwjwt")
    a = AdminClient(admin_conf(b))
    from confluent_kafka.admin import NewTopic
    for f in a.create_topics([NewTopic(topic, 1)]).values():
        f.result(20)
    for f in a.create_acls([AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:svc-orders",
                                       "*", AclOperation.WRITE, AclPermissionType.ALLOW)]).values():
        f.result(20)
    good, _ = token()
    records = {"records": [{"value": {"n": 1}}]}
    deadline = time.monotonic() + 10
    while True:
        status, _, body = b.gw.call("POST", f"/topics/{topic}", records, auth=f"Bearer {good}",
                                    content_type="application/vnd.kafka.json.v2+json")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200, body
    # Someone else's token may authenticate but not write; bad tokens do not authenticate.
    status, _, body = b.gw.call("POST", f"/topics/{topic}", records, auth=f"Bearer {token(sub='eve')[0]}",
                                content_type="application/vnd.kafka.json.v2+json")
    assert (status, body["error_code"]) == (403, 40301), body
    for bad in [token(aud="other")[0], token(lifetime_s=-120)[0], good[:-4] + "AAAA", "not.a.jwt"]:
        status, headers, body = b.gw.call("GET", "/topics", auth=f"Bearer {bad}")
        assert (status, body["error_code"]) == (401, 40101), body
        challenges = headers.get_all("WWW-Authenticate")
        assert any(c.startswith("Bearer") for c in challenges) and any(c.startswith("Basic") for c in challenges)


def test_per_principal_connection_and_stream_limits(make_broker, tmp_path):
    """Without an authorizer, but with Basic required: each principal holds at most
    gateway.max.connections.per.principal connections and gateway.max.streams.per.principal
    streams; another principal is not affected, and a closed one gives its slot back."""
    gw_port = free_port()
    b = make_broker(**{"gateway.listener": f"127.0.0.1:{gw_port}", "gateway.authentication": "basic",
                   "gateway.plain.sasl.jaas.config": GATEWAY_USERS,
                   "gateway.max.connections.per.principal": 2, "gateway.max.streams.per.principal": 1})
    wait_http(gw_port)
    gw = Https(gw_port, None)
    carol, dave = basic("carol", "carol-secret"), basic("dave", "dave-secret")
    held = [gw.connection() for _ in range(2)]
    for c in held:
        assert gw.call("GET", "/", auth=carol, conn=c)[0] == 200
    status, headers, body = gw.call("GET", "/", auth=carol)
    assert (status, body["error_code"]) == (429, 429), body
    assert "gateway.max.connections.per.principal" in body["message"] and "User:carol" in body["message"]
    assert gw.call("GET", "/", auth=dave)[0] == 200
    # The same connection again is not counted twice.
    assert gw.call("GET", "/", auth=carol, conn=held[0])[0] == 200
    held.pop().close()
    deadline = time.monotonic() + 5
    while gw.call("GET", "/", auth=carol)[0] != 200:
        assert time.monotonic() < deadline, "the closed connection's slot never came back"
        time.sleep(0.1)
    held.pop().close()
    time.sleep(0.3)

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    create_topic(b.bootstrap, "gwlimits")
    url = f"ws://127.0.0.1:{gw_port}/ws/v1/topics/gwlimits/records"
    first = connect(url, additional_headers={"Authorization": carol})
    with pytest.raises(InvalidStatus) as e:
        connect(url, additional_headers={"Authorization": carol})
    assert e.value.response.status_code == 429
    assert "gateway.max.streams.per.principal" in json.loads(e.value.response.body)["message"]
    other = connect(url, additional_headers={"Authorization": dave})
    other.close()
    first.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            connect(url, additional_headers={"Authorization": carol}).close()
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "the closed stream's slot never came back"
            time.sleep(0.1)


def test_standalone_gateway_with_tls_and_plain_users(make_broker, tmp_path, pki):
    """`strom gateway --gateway-config`: HTTPS and Basic with PLAIN users; it forwards as its
    own principal (here the PLAINTEXT broker's ANONYMOUS, no authorizer)."""
    b = make_broker()
    conf = tmp_path / "gateway.properties"
    conf.write_text(f"gateway.ssl.keystore.location={pki.root / 'server.pem'}\n"
                    "gateway.authentication=basic\n"
                    f"gateway.plain.sasl.jaas.config={GATEWAY_USERS}\n")
    port = free_port()
    log = open(tmp_path / "standalone.log", "wb")
    proc = subprocess.Popen([strom_bin(), "gateway", "--bootstrap", b.bootstrap, "--listener", f"127.0.0.1:{port}",
                             "--gateway-config", str(conf)], stdout=log, stderr=log)
    try:
        wait_http(port)
        gw = Https(port, tls_context(pki))
        assert gw.call("GET", "/topics")[0] == 401
        topic = unique_topic("gwsa")
        status, _, body = gw.call("POST", f"/topics/{topic}", {"records": [{"value": {"a": 1}}]},
                                  auth=basic("dave", "dave-secret"), content_type="application/vnd.kafka.json.v2+json")
        assert status == 200, body
    finally:
        proc.terminate()
        proc.wait(10)
    # A bad setting is refused at start.
    conf.write_text("gateway.authentication=kerberos\n")
    p = subprocess.run([strom_bin(), "gateway", "--bootstrap", b.bootstrap, "--listener", f"127.0.0.1:{free_port()}",
                        "--gateway-config", str(conf)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0 and "gateway.authentication" in p.stderr, p.stderr


def test_bad_gateway_security_settings_are_start_up_errors(make_broker, tmp_path):
    for overrides, named in [
        ({"gateway.authentication": "digest"}, "gateway.authentication"),
        ({"gateway.ssl.keystore.location": str(tmp_path / "missing.pem")}, "gateway.ssl.keystore.location"),
        ({"gateway.ssl.keystore.certificate.chain": "garbage"}, "gateway.ssl.keystore.certificate.chain"),
        ({"gateway.client.config": str(tmp_path / "missing.properties")}, "gateway.client.config"),
        ({"gateway.plain.sasl.jaas.config": "no semicolon"}, "gateway.plain.sasl.jaas.config"),
        ({"gateway.max.streams.per.principal": "0"}, "gateway.max.streams.per.principal"),
        ({"gateway.authentication": "bearer"}, "gateway.sasl.oauthbearer.jwks.endpoint.url"),
    ]:
        b = make_broker(start=False, **{"gateway.listener": f"127.0.0.1:{free_port()}", **overrides})
        p = subprocess.run(b.argv(), capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (overrides, p.stderr)
        assert named in p.stderr, (overrides, p.stderr)
