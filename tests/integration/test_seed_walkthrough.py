"""The README's seed walkthrough, verbatim, with kcat: once on Debian's kcat
(librdkafka 2.0.2) and once with the same kcat loading the current librdkafka
that the confluent-kafka wheel bundles."""

import re

import pytest

from helpers import describe, kcat, kcat_librdkafka_version, new_librdkafka_env, version_tuple


def _walkthrough(broker, env):
    bs = broker.bootstrap

    # echo "hello world!" | kcat -P -b HOST:PORT -t test
    p = kcat(["-P", "-b", bs, "-t", "test"], input="hello world!\n", env=env)
    assert p.returncode == 0, describe(p)

    # kcat -C -b HOST:PORT -t test -e
    c = kcat(["-C", "-b", bs, "-t", "test", "-e"], env=env)
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().splitlines() == ["hello world!"], describe(c)
    both = c.stdout.decode() + c.stderr.decode()
    assert "% Reached end of topic test [0] at offset 1" in both, describe(c)

    # kcat -L -b HOST:PORT
    m = kcat(["-L", "-b", bs], env=env)
    assert m.returncode == 0, describe(m)
    out = m.stdout.decode()
    assert re.search(r"^\s*1 brokers:\s*$", out, re.M), describe(m)
    assert re.search(rf"^\s*broker 0 at {re.escape(bs)}", out, re.M), describe(m)
    assert re.search(r'^\s*topic "test" with 1 partitions:\s*$', out, re.M), describe(m)
    assert re.search(r"^\s*partition 0, leader 0, replicas: 0, isrs: 0\s*$", out, re.M), describe(m)


def test_seed_walkthrough_debian_kcat(broker):
    v = kcat_librdkafka_version()
    print(f"Debian kcat uses librdkafka {v}")
    _walkthrough(broker, env=None)


def test_seed_walkthrough_kcat_on_current_librdkafka(broker):
    import confluent_kafka

    env = new_librdkafka_env()
    wheel_version = confluent_kafka.libversion()[0]
    v = kcat_librdkafka_version(env)
    assert v == wheel_version, f"kcat loaded librdkafka {v}, expected the wheel's {wheel_version}"
    assert version_tuple(v) > version_tuple(kcat_librdkafka_version()), "the wheel's librdkafka is not newer"
    assert version_tuple(v) >= (2, 6), f"librdkafka {v} is not current"
    _walkthrough(broker, env=env)


@pytest.mark.parametrize("which", ["debian", "current"])
def test_kcat_many_messages_and_offsets(broker, which):
    """More than one message, keys, and consuming from an explicit offset."""
    env = None if which == "debian" else new_librdkafka_env()
    bs = broker.bootstrap
    lines = [f"k{i}:v{i}" for i in range(500)]
    p = kcat(["-P", "-b", bs, "-t", "many", "-K", ":"], input="\n".join(lines) + "\n", env=env)
    assert p.returncode == 0, describe(p)
    c = kcat(["-C", "-b", bs, "-t", "many", "-e", "-f", "%o %k %s\\n"], env=env)
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().splitlines() == [f"{i} k{i} v{i}" for i in range(500)], describe(c)
    c = kcat(["-C", "-b", bs, "-t", "many", "-e", "-o", "495", "-f", "%o %s\\n"], env=env)
    assert c.returncode == 0, describe(c)
    assert c.stdout.decode().splitlines() == [f"{i} v{i}" for i in range(495, 500)], describe(c)
    assert "Reached end of topic many [0] at offset 500" in c.stderr.decode(), describe(c)
