"""SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_SSL with every real client (issue 14): kcat,
confluent-kafka (librdkafka), kafka-python, aiokafka and kafkajs each write and read with the
right password, and get a clear authentication error with a wrong one while the broker goes
on serving. The users are made the two ways an operator would: `strom user create` and
AlterUserScramCredentials from an admin client."""

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from conftest import free_port, strom_bin
from helpers import admin, consumer, describe, kcat, kcat_roundtrip, producer, unique_topic
from pki import make_pki, secure_listeners

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
# One user per mechanism, each made another way: the CLI (KIP-554, salted client-side) and
# confluent-kafka's AlterUserScramCredentials.
USERS = {"SCRAM-SHA-256": ("alice", "alice-pass-256"), "SCRAM-SHA-512": ("bob", "bob-pass-512")}
# Clients that fail authenticate again slowly, so a test's few wrong passwords never reach
# the broker's per-address limit (20 a minute) and shut out the right one.
SLOW_RECONNECT = {"reconnect.backoff.ms": 10000, "reconnect.backoff.max.ms": 10000}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def scram_broker(make_broker, pki):
    plain, ss = free_port(), free_port()
    overrides = secure_listeners(PLAINTEXT=plain, SASL_SSL=ss)
    overrides["ssl.keystore.location"] = str(pki.root / "server.pem")
    overrides["listener.name.sasl_ssl.sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
    b = make_broker(port=plain, **overrides)
    b.sasl_ssl = f"127.0.0.1:{ss}"
    name, password = USERS["SCRAM-SHA-256"]
    p = subprocess.run([strom_bin(), "user", "create", name, "--password", password, "--mechanism",
                        "SCRAM-SHA-256", "-b", b.bootstrap], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    name, password = USERS["SCRAM-SHA-512"]
    a = admin(b.bootstrap)
    up = UserScramCredentialUpsertion(name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                      password.encode())
    for f in a.alter_user_scram_credentials([up], request_timeout=15).values():
        f.result()
    return b


def ca(pki) -> str:
    return str(pki.root / "ca.pem")


def rdkafka_conf(pki, mechanism, password=None, **extra):
    user, right = USERS[mechanism]
    conf = {"security.protocol": "SASL_SSL", "ssl.ca.location": ca(pki), "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": right if password is None else password}
    conf.update(extra)
    return conf


def read_back(bootstrap, topic, n, **conf):
    c = consumer(bootstrap, **conf)
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def assert_still_serving(b, pki, mechanism, topic=None):
    """After a refused client: the broker is up, and the right password is served."""
    assert b.alive(), b.log_tail()
    topic = topic or unique_topic("after")
    p = producer(b.sasl_ssl, **rdkafka_conf(pki, mechanism))
    p.produce(topic, value=b"after")
    assert p.flush(30) == 0
    kcat_roundtrip(b.bootstrap)
    assert "panicked" not in b.log_text()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat(make_broker, pki, mechanism):
    b = scram_broker(make_broker, pki)
    topic = unique_topic("kcat")

    def x(password=None):
        conf = rdkafka_conf(pki, mechanism, password)
        return [a for k, v in conf.items() for a in ("-X", f"{k}={v}")]

    p = kcat(["-P", "-b", b.sasl_ssl, "-t", topic, *x()], input="one\ntwo\nthree\n")
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", b.sasl_ssl, "-t", topic, "-e", "-o", "beginning", *x()])
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().split() == ["one", "two", "three"]
    user = USERS[mechanism][0]
    assert f"principal=User:{user}" in b.log_text()
    bad = kcat(["-L", "-b", b.sasl_ssl, "-m", "5", *x("wrong-password")])
    assert bad.returncode != 0, describe(bad)
    assert "Authentication failed" in bad.stderr.decode(), describe(bad)
    assert_still_serving(b, pki, mechanism, topic)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka(make_broker, pki, mechanism):
    b = scram_broker(make_broker, pki)
    topic = unique_topic("ck")
    p = producer(b.sasl_ssl, **rdkafka_conf(pki, mechanism))
    for i in range(50):
        p.produce(topic, value=b"ck-%d" % i)
    assert p.flush(30) == 0
    got = read_back(b.sasl_ssl, topic, 50, **rdkafka_conf(pki, mechanism))
    assert got == [b"ck-%d" % i for i in range(50)]
    errors = []
    q = producer(b.sasl_ssl, **rdkafka_conf(pki, mechanism, "wrong-password", **SLOW_RECONNECT),
                 error_cb=lambda e: errors.append(e))
    q.produce(topic, value=b"refused")
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        q.poll(0.5)
    assert any("SASL authentication error: Authentication failed: Invalid user credentials" in e.str()
               for e in errors), [e.str() for e in errors]
    q.purge()
    del q
    assert_still_serving(b, pki, mechanism)


def kafka_python_kwargs(b, pki, mechanism, password=None):
    user, right = USERS[mechanism]
    return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL", ssl_cafile=ca(pki),
                sasl_mechanism=mechanism, sasl_plain_username=user,
                sasl_plain_password=right if password is None else password)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python(make_broker, pki, mechanism, caplog):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError
    b = scram_broker(make_broker, pki)
    topic = unique_topic("kp")
    p = KafkaProducer(**kafka_python_kwargs(b, pki, mechanism))
    for i in range(10):
        p.send(topic, b"kp-%d" % i)
    p.flush(30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=8000,
                      **kafka_python_kwargs(b, pki, mechanism))
    got = [m.value for m in c]
    c.close()
    assert got == [b"kp-%d" % i for i in range(10)]
    # kafka-python retries the bootstrap and then gives up; the broker's answer is in its log.
    with pytest.raises(KafkaError):
        KafkaProducer(request_timeout_ms=5000, max_block_ms=5000, reconnect_backoff_ms=5000,
                      **kafka_python_kwargs(b, pki, mechanism, "wrong-password"))
    # The refusal reaches the client: the broker closes with FIN after it and drains what
    # the client still sends (a close with unread bytes is an RST, which lost the answer).
    assert "SaslAuthenticationFailedError: Authentication failed: Invalid user credentials" in caplog.text, \
        caplog.text[-3000:]
    assert "Authentication failed: Invalid user credentials" in b.log_text()
    assert_still_serving(b, pki, mechanism)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka(make_broker, pki, mechanism):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import KafkaError
    from aiokafka.helpers import create_ssl_context
    b = scram_broker(make_broker, pki)
    topic = unique_topic("aio")
    user, right = USERS[mechanism]

    def kw(password):
        return dict(bootstrap_servers=b.sasl_ssl, security_protocol="SASL_SSL",
                    ssl_context=create_ssl_context(cafile=ca(pki)), sasl_mechanism=mechanism,
                    sasl_plain_username=user, sasl_plain_password=password)

    async def roundtrip():
        p = AIOKafkaProducer(**kw(right))
        await p.start()
        try:
            for i in range(10):
                await p.send_and_wait(topic, b"aio-%d" % i)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kw(right))
        await c.start()
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 10 and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=1000)).values():
                    got.extend(m.value for m in msgs)
        finally:
            await c.stop()
        return got

    assert asyncio.run(roundtrip()) == [b"aio-%d" % i for i in range(10)]

    async def wrong():
        p = AIOKafkaProducer(request_timeout_ms=5000, **kw("wrong-password"))
        try:
            await p.start()
        finally:
            await p.stop()

    with pytest.raises(KafkaError) as e:
        asyncio.run(wrong())
    text = f"{type(e.value).__name__}: {e.value}"
    assert "Authentication failed" in text or "KafkaConnectionError" in text, text
    assert_still_serving(b, pki, mechanism)


KAFKAJS_SCRAM = r"""
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const [bootstrap, topic, ca, mechanism, username, password] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'strom-kafkajs-scram', brokers: [bootstrap], logLevel: logLevel.NOTHING,
  ssl: { ca: [fs.readFileSync(ca, 'utf-8')], servername: 'localhost' },
  sasl: { mechanism, username, password }, retry: { retries: 0 }, connectionTimeout: 5000 })
async function main() {
  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await producer.connect()
  await producer.send({ topic, messages: [{ value: 'js-1' }, { value: 'js-2' }] })
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: 'g-' + topic })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out reading back')), 30000)
    consumer.run({ eachMessage: async ({ message }) => {
      got.push(message.value.toString())
      if (got.length === 2) { clearTimeout(timer); resolve() }
    } })
  })
  await consumer.disconnect()
  return got
}
main().then(r => { console.log(JSON.stringify({ result: r })); process.exit(0) })
  .catch(e => { console.log(JSON.stringify({ error: String(e && e.message || e), type: e && e.type })); process.exit(1) })
"""


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafkajs(make_broker, pki, tmp_path, mechanism):
    node = shutil.which("node")
    js_dir = Path(__file__).parent / "js"
    if node is None or not (js_dir / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    b = scram_broker(make_broker, pki)
    script = tmp_path / "scram.js"
    script.write_text(KAFKAJS_SCRAM)
    env = dict(os.environ, NODE_PATH=str(js_dir / "node_modules"))
    topic = unique_topic("js")
    user, right = USERS[mechanism]

    def run(password):
        p = subprocess.run([node, str(script), b.sasl_ssl, topic, ca(pki), mechanism.lower(), user, password],
                           capture_output=True, text=True, timeout=90, env=env)
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])

    rc, out = run(right)
    assert rc == 0 and out["result"] == ["js-1", "js-2"], out
    rc, out = run("wrong-password")
    # kafkajs names the mechanism "SCRAM SHA256" / "SCRAM SHA512".
    js_name = mechanism.replace("SCRAM-SHA-", "SCRAM SHA")
    assert rc != 0 and out["error"] == f"SASL {js_name} authentication failed: Authentication failed: " \
        "Invalid user credentials", out
    assert_still_serving(b, pki, mechanism)


def test_a_user_of_one_mechanism_is_refused_on_the_other(make_broker, pki):
    """alice has only a SCRAM-SHA-256 credential: SCRAM-SHA-512 with her password fails."""
    b = scram_broker(make_broker, pki)
    errors = []
    conf = rdkafka_conf(pki, "SCRAM-SHA-256", **SLOW_RECONNECT)
    conf["sasl.mechanisms"] = "SCRAM-SHA-512"
    q = producer(b.sasl_ssl, **conf, error_cb=lambda e: errors.append(e))
    q.produce(unique_topic("x"), value=b"x")
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        q.poll(0.5)
    assert any("Authentication failed" in e.str() for e in errors), [e.str() for e in errors]
    q.purge()
    assert_still_serving(b, pki, "SCRAM-SHA-256")
