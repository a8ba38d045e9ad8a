"""OAUTHBEARER (KIP-768) with every client (issue 14): Strom's CLI (`--command-config` with
`sasl.oauthbearer.token` / `sasl.oauthbearer.token.file`), kcat (only librdkafka's built-in unsecured JWT, which Strom
refuses: kcat has no way to take a token, and Debian's librdkafka 2.0.2 is built without the
OIDC login that would fetch a signed one), kafka-python, aiokafka and kafkajs (their token providers), each over SASL_SSL with an RS256
JWT signed by a key of the broker's JWKS file; an expired token, one signed by another key
with the same kid, and one for another audience are each refused with a clear error while the
broker goes on serving."""

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import free_port, strom_bin
from helpers import describe, kcat, kcat_roundtrip, unique_topic
from jwt_tokens import AUDIENCE, ISSUER, signer, write_jwks
from pki import make_pki, secure_listeners


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The broker's JWKS (one key, kid k1), a token signer with that key, and a forger: another
    key claiming kid k1, which the JWKS does not hold."""
    d = tmp_path_factory.mktemp("jwt")
    jwk, token = signer(d, "k1")
    _, forged = signer(d, "k1", name="forger")
    return write_jwks(d / "jwks.json", jwk), token, forged


def oauth_broker(make_broker, pki, jwks_path):
    plain, sp, ss = free_port(), free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_PLAINTEXT=sp, SASL_SSL=ss)
    overrides.update({
        "ssl.keystore.location": str(pki.root / "server.pem"),
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{jwks_path}",
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
    })
    b = make_broker(port=plain, **overrides)
    b.sasl = f"localhost:{sp}"
    b.sasl_ssl = f"localhost:{ss}"
    return b


def bad_tokens(token, forged):
    """(what, token) pairs the broker must refuse."""
    return [("expired", token(lifetime_s=-300)[0]), ("badly signed", forged()[0]),
            ("another audience", token(aud="someone-else")[0])]


def ca(pki) -> str:
    return str(pki.root / "ca.pem")


def wait_log(b, text, timeout=5):
    deadline = time.monotonic() + timeout
    while text not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return text in b.log_text()


def assert_never_authenticated(b):
    """None of the refused tokens (all for svc-orders) ever authenticated a connection."""
    assert "principal=User:svc-orders" not in b.log_text(), b.log_tail()


def assert_still_serving(b):
    assert b.alive(), b.log_tail()
    kcat_roundtrip(b.bootstrap)
    assert "panicked" not in b.log_text()


# --- Strom's CLI ---------------------------------------------------------------------------

def test_cli_command_config_oauthbearer(make_broker, pki, keys, tmp_path):
    jwks_path, token, forged = keys
    b = oauth_broker(make_broker, pki, jwks_path)
    props = tmp_path / "client.properties"
    token_file = tmp_path / "token"

    def cli(protocol, bootstrap, **settings):
        lines = [f"security.protocol={protocol}", "sasl.mechanism=OAUTHBEARER"]
        if protocol == "SASL_SSL":
            lines.append(f"ssl.truststore.location={ca(pki)}")
        lines += [f"{k.replace('_', '.')}={v}" for k, v in settings.items()]
        props.write_text("\n".join(lines) + "\n")
        return subprocess.run([strom_bin(), "topic", "list", "-b", bootstrap, "--command-config", str(props)],
                              capture_output=True, text=True, timeout=60)

    # The token given in the file, over SASL_SSL and SASL_PLAINTEXT.
    r = cli("SASL_SSL", b.sasl_ssl, sasl_oauthbearer_token=token(sub="cli-inline")[0])
    assert r.returncode == 0, r.stderr
    assert wait_log(b, "principal=User:cli-inline"), b.log_tail()
    token_file.write_text(token(sub="cli-file")[0] + "\n")
    r = cli("SASL_PLAINTEXT", b.sasl, sasl_oauthbearer_token_file=token_file)
    assert r.returncode == 0, r.stderr
    assert wait_log(b, "principal=User:cli-file"), b.log_tail()

    # Refused tokens: one line on stderr naming the broker's reason, exit code 1.
    for what, bad in bad_tokens(token, forged):
        for protocol, bootstrap in [("SASL_SSL", b.sasl_ssl), ("SASL_PLAINTEXT", b.sasl)]:
            r = cli(protocol, bootstrap, sasl_oauthbearer_token=bad)
            err = r.stderr.strip()
            assert r.returncode == 1, (what, protocol, r.returncode, err)
            assert len(err.splitlines()) == 1, (what, err)
            assert "SASL authentication failed: Authentication failed: Invalid token" in err, (what, err)
            assert '"status":"invalid_token"' in err, (what, err)

    # The file is read again for each connection: a refreshed token is used at once.
    token_file.write_text(token(lifetime_s=-300)[0])
    r = cli("SASL_SSL", b.sasl_ssl, sasl_oauthbearer_token_file=token_file)
    assert r.returncode == 1 and "Invalid token" in r.stderr, r.stderr
    token_file.write_text(token(sub="cli-refreshed")[0])
    r = cli("SASL_SSL", b.sasl_ssl, sasl_oauthbearer_token_file=token_file)
    assert r.returncode == 0, r.stderr
    assert wait_log(b, "principal=User:cli-refreshed"), b.log_tail()

    # Settings the CLI refuses before connecting.
    token_file.unlink()
    r = cli("SASL_SSL", b.sasl_ssl, sasl_oauthbearer_token_file=token_file)
    assert r.returncode == 1 and "cannot read sasl.oauthbearer.token.file" in r.stderr, r.stderr
    r = cli("SASL_SSL", b.sasl_ssl)
    assert r.returncode != 0 and "OAUTHBEARER needs a token" in r.stderr, r.stderr
    r = cli("SASL_SSL", b.sasl_ssl, sasl_oauthbearer_token="not a token")
    assert r.returncode != 0 and "not a compact JWT" in r.stderr and "not a token" not in r.stderr, r.stderr
    assert_never_authenticated(b)
    assert_still_serving(b)


# --- kcat (Debian's librdkafka 2.0.2) --------------------------------------------------------
# kcat cannot send a signed JWT: a token is given to librdkafka only by a refresh callback
# (an API, not a property) or by its OIDC login (`sasl.oauthbearer.method=oidc`), which
# Debian's build refuses ("OAuth/OIDC depends on libcurl and OpenSSL which were not available
# at build time"). What it can send is its unsecured JWT.

def test_kcat_unsecured_jwt_is_refused(make_broker, pki, keys):
    """librdkafka's built-in token (`enable.sasl.oauthbearer.unsecure.jwt`) is an unsigned JWT
    (alg none): Strom, as Kafka's JWKS validator, refuses it."""
    jwks_path, _, _ = keys
    b = oauth_broker(make_broker, pki, jwks_path)
    x = []
    for k, v in {"security.protocol": "SASL_SSL", "ssl.ca.location": ca(pki),
                 "sasl.mechanisms": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": "true",
                 "sasl.oauthbearer.config": "principal=mallory"}.items():
        x += ["-X", f"{k}={v}"]
    r = kcat(["-L", "-b", b.sasl_ssl, "-m", "5", *x])
    assert r.returncode != 0, describe(r)
    assert "Authentication failed: Invalid token" in r.stderr.decode(), describe(r)
    assert "principal=User:mallory" not in b.log_text()
    assert_still_serving(b)


# --- kafka-python ----------------------------------------------------------------------------

def test_kafka_python(make_broker, pki, keys, caplog):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError
    from kafka.net.sasl.oauth import AbstractTokenProvider
    jwks_path, token, forged = keys
    b = oauth_broker(make_broker, pki, jwks_path)

    class Provider(AbstractTokenProvider):
        def __init__(self, tok):
            super().__init__()
            self.tok = tok

        def token(self):
            return self.tok

    def kw(tok):
        return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=ca(pki),
                    sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Provider(tok))

    topic = unique_topic("kp-oauth")
    good = token(sub="kp-user")[0]
    p = KafkaProducer(**kw(good))
    for i in range(5):
        p.send(topic, b"kp-%d" % i)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=8000, **kw(good))
    got = [m.value for m in c]
    c.close()
    assert got == [b"kp-%d" % i for i in range(5)]
    assert wait_log(b, "principal=User:kp-user"), b.log_tail()
    for what, bad in bad_tokens(token, forged):
        caplog.clear()
        with pytest.raises(KafkaError):
            KafkaProducer(request_timeout_ms=5000, max_block_ms=5000, reconnect_backoff_ms=5000, **kw(bad))
        # The refusal reaches the client, every time: the broker closes with FIN after it and
        # drains what the client still sends (a close with unread bytes was an RST, which lost
        # the answer in kafka-python's receive queue: "socket disconnected").
        assert "SaslAuthenticationFailedError: Authentication failed: Invalid token" in caplog.text, \
            (what, caplog.text[-3000:])
    for reason in ["token expired", "InvalidSignature", "audience is not one of the expected"]:
        assert f"Authentication failed: Invalid token: {reason}" in b.log_text(), (reason, b.log_tail())
    assert_never_authenticated(b)
    assert_still_serving(b)


# --- aiokafka --------------------------------------------------------------------------------

def test_aiokafka(make_broker, pki, keys):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.errors import KafkaError
    from aiokafka.helpers import create_ssl_context
    jwks_path, token, forged = keys
    b = oauth_broker(make_broker, pki, jwks_path)

    class Provider(AbstractTokenProvider):
        def __init__(self, tok):
            self.tok = tok

        async def token(self):
            return self.tok

    def kw(tok):
        return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL",
                    ssl_context=create_ssl_context(cafile=ca(pki)), sasl_mechanism="OAUTHBEARER",
                    sasl_oauth_token_provider=Provider(tok))

    topic = unique_topic("aio-oauth")
    good = token(sub="aio-user")[0]

    async def roundtrip():
        p = AIOKafkaProducer(**kw(good))
        await p.start()
        try:
            for i in range(5):
                await p.send_and_wait(topic, b"aio-%d" % i)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kw(good))
        await c.start()
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=1000)).values():
                    got.extend(m.value for m in msgs)
        finally:
            await c.stop()
        return got

    assert asyncio.run(roundtrip()) == [b"aio-%d" % i for i in range(5)]
    assert wait_log(b, "principal=User:aio-user"), b.log_tail()

    async def refused(tok):
        p = AIOKafkaProducer(request_timeout_ms=5000, **kw(tok))
        try:
            await p.start()
        finally:
            await p.stop()

    for what, bad in bad_tokens(token, forged):
        with pytest.raises(KafkaError) as e:
            asyncio.run(refused(bad))
        text = f"{type(e.value).__name__}: {e.value}"
        # aiokafka takes the error challenge for success (it never answers it with ^A), so
        # what it reports is the broker closing the connection; the broker logs the reason.
        assert "Authentication failed" in text or "KafkaConnectionError" in text, (what, text)
    assert_never_authenticated(b)
    assert_still_serving(b)


# --- kafkajs ---------------------------------------------------------------------------------

KAFKAJS_OAUTH = r"""
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const [bootstrap, topic, ca, token] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'strom-kafkajs-oauth', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  ssl: { ca: [fs.readFileSync(ca, 'utf-8')], servername: 'localhost' },
  sasl: { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: token }) },
  retry: { retries: 0 }, connectionTimeout: 5000 })
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


def test_kafkajs(make_broker, pki, keys, tmp_path):
    node = shutil.which("node")
    js_dir = Path(__file__).parent / "js"
    if node is None or not (js_dir / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    jwks_path, token, forged = keys
    b = oauth_broker(make_broker, pki, jwks_path)
    script = tmp_path / "oauth.js"
    script.write_text(KAFKAJS_OAUTH)
    env = dict(os.environ, NODE_PATH=str(js_dir / "node_modules"))
    topic = unique_topic("js-oauth")

    def run(tok):
        p = subprocess.run([node, str(script), b.sasl_ssl, topic, ca(pki), tok],
                           capture_output=True, text=True, timeout=90, env=env)
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])

    rc, out = run(token(sub="js-user")[0])
    assert rc == 0 and out["result"] == "ok", out
    assert wait_log(b, "principal=User:js-user"), b.log_tail()
    c = kcat(["-C", "-b", b.bootstrap, "-t", topic, "-e", "-o", "beginning"])
    assert c.stdout.decode().split() == ["js-1", "js-2"], describe(c)
    for what, bad in bad_tokens(token, forged):
        rc, out = run(bad)
        # kafkajs, like aiokafka, reads no challenge after its token (it never answers the
        # error challenge with ^A), so it learns of the refusal from the broker closing the
        # connection at its next request, as Kafka's broker does too.
        assert rc != 0, (what, out)
        assert "SASL OAUTHBEARER authentication failed" in out["error"] or "Closed connection" in out["error"] \
            or "closed" in out["error"].lower(), (what, out)
    assert_never_authenticated(b)
    assert_still_serving(b)
