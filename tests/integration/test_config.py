"""Configuration: bad flags and values exit 2 with a one-line error naming the
setting; env vars and TOML files are honoured; one broker per data dir."""

import os
import subprocess

import pytest

from conftest import free_port, strom_bin
from helpers import create_topic, kcat_roundtrip, producer, unique_topic, wait_for_topic


def run_strom(args, env=None, timeout=15):
    e = os.environ.copy()
    e.update(env or {})
    return subprocess.run([strom_bin(), *args], capture_output=True, text=True, env=e, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def serve_args(tmp_path, *extra):
    port = free_port()
    return ["serve", "--data-dir", str(tmp_path / "data"), "--override", f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--override", "admin.http.listener=", *extra]


def _err_lines(cp):
    return [ln for ln in cp.stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("override,name", [
    ("num.partitions=abc", "num.partitions"),
    ("num.partitions=0", "num.partitions"),
    ("num.partitions=-5", "num.partitions"),
    ("message.max.bytes=lots", "message.max.bytes"),
    ("auto.create.topics.enable=maybe", "auto.create.topics.enable"),
    ("log.segment.bytes=-1", "log.segment.bytes"),
    ("listeners=nonsense", "listeners"),
    ("node.id=x", "node.id"),
])
def test_bad_override_value_exits_2(tmp_path, override, name):
    cp = run_strom(serve_args(tmp_path, "--override", override))
    assert cp.returncode == 2, f"exit {cp.returncode}; stderr:\n{cp.stderr}"
    assert name in cp.stderr, cp.stderr
    assert len(_err_lines(cp)) == 1, f"expected a one-line error, got:\n{cp.stderr}"


def test_override_without_equals_exits_2(tmp_path):
    cp = run_strom(serve_args(tmp_path, "--override", "num.partitions"))
    assert cp.returncode == 2, cp.stderr


@pytest.mark.parametrize("args", [["serve", "--no-such-flag"], ["no-such-subcommand"], ["serve", "--data-dir"]])
def test_bad_command_line_exits_2(args):
    cp = run_strom(args)
    assert cp.returncode == 2, f"{args}: exit {cp.returncode}; stderr:\n{cp.stderr}"
    assert len(_err_lines(cp)) == 1, f"expected a one-line error, got:\n{cp.stderr}"


def test_negative_node_id_names_the_setting(tmp_path):
    cp = run_strom(serve_args(tmp_path, "--node-id", "-1"))
    assert cp.returncode == 2, cp.stderr
    assert "node.id" in cp.stderr and "unexpected argument" not in cp.stderr, cp.stderr
    assert len(_err_lines(cp)) == 1, cp.stderr


def test_help_exits_0():
    cp = run_strom(["--help"])
    assert cp.returncode == 0 and "serve" in cp.stdout, cp.stdout + cp.stderr
    cp = run_strom(["serve", "--help"])
    assert cp.returncode == 0 and "--data-dir" in cp.stdout and "--override" in cp.stdout, cp.stdout + cp.stderr


@pytest.mark.parametrize("value", ["-5", "abc", "1.5"])
def test_bad_env_value_exits_2(tmp_path, value):
    cp = run_strom(serve_args(tmp_path), env={"STROM_NUM_PARTITIONS": value})
    assert cp.returncode == 2, f"STROM_NUM_PARTITIONS={value!r}: exit {cp.returncode}; stderr:\n{cp.stderr}"
    assert "num.partitions" in cp.stderr or "NUM_PARTITIONS" in cp.stderr, cp.stderr
    assert len(_err_lines(cp)) == 1, f"expected a one-line error, got:\n{cp.stderr}"


def test_env_var_sets_config(make_broker):
    broker = make_broker(env={"STROM_NUM_PARTITIONS": "3"})
    t = unique_topic("env")
    producer(broker.bootstrap).list_topics(topic=t, timeout=10)  # auto-create
    wait_for_topic(broker.bootstrap, t, 3)


def test_override_beats_env(make_broker):
    broker = make_broker(env={"STROM_NUM_PARTITIONS": "3"}, **{"num.partitions": 5})
    t = unique_topic("prec")
    producer(broker.bootstrap).list_topics(topic=t, timeout=10)
    wait_for_topic(broker.bootstrap, t, 5)


@pytest.mark.parametrize("style", ["flat", "nested"])
def test_toml_config_file(make_broker, tmp_path, style):
    cfg = tmp_path / "strom.toml"
    if style == "flat":
        cfg.write_text('"num.partitions" = 4\n"auto.create.topics.enable" = true\n')
    else:
        cfg.write_text("[num]\npartitions = 4\n[auto.create.topics]\nenable = true\n")
    broker = make_broker(extra_args=["--config", str(cfg)])
    t = unique_topic("toml")
    producer(broker.bootstrap).list_topics(topic=t, timeout=10)
    wait_for_topic(broker.bootstrap, t, 4)


def test_bad_toml_config_file_exits_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('"num.partitions" = -5\n')
    cp = run_strom(serve_args(tmp_path, "--config", str(cfg)))
    assert cp.returncode == 2, cp.stderr
    assert "num.partitions" in cp.stderr, cp.stderr

    cfg.write_text('"num.partitions" = 3\nthis is = not [toml\n')
    cp = run_strom(serve_args(tmp_path, "--config", str(cfg)))
    assert cp.returncode == 2, cp.stderr
    assert "bad.toml" in cp.stderr and "line 2" in cp.stderr, cp.stderr
    assert len(_err_lines(cp)) == 1, cp.stderr

    cp = run_strom(serve_args(tmp_path, "--config", str(tmp_path / "missing.toml")))
    assert cp.returncode == 2, cp.stderr
    assert "missing.toml" in cp.stderr, cp.stderr


def test_second_broker_on_same_data_dir_fails(make_broker):
    first = make_broker()
    t = unique_topic("lock")
    create_topic(first.bootstrap, t)
    second = make_broker(start=False, data_dir=first.data_dir)
    cp = run_strom(second.argv()[1:], timeout=20)
    assert cp.returncode != 0, f"second broker on {first.data_dir} exited 0:\n{cp.stderr}"
    assert "lock" in cp.stderr.lower(), f"error does not mention the lock:\n{cp.stderr}"
    # The first broker is unharmed.
    assert first.alive()
    kcat_roundtrip(first.bootstrap, t)
    # Once the first one is gone, the lock is released.
    assert first.stop() == 0
    second.start()
    wait_for_topic(second.bootstrap, t, 1)


def test_lock_released_after_kill9(broker):
    broker.kill9()
    broker.start()  # a stale lock file from a dead process must not block startup
    kcat_roundtrip(broker.bootstrap)


def test_port_in_use_fails_cleanly(make_broker, tmp_path):
    first = make_broker()
    args = ["serve", "--data-dir", str(tmp_path / "other"), "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{first.port}", "--override", "admin.http.listener="]
    cp = run_strom(args, timeout=20)
    assert cp.returncode != 0, cp.stderr
    assert str(first.port) in cp.stderr or "address" in cp.stderr.lower(), cp.stderr
    assert not (tmp_path / "other").exists(), "a broker that cannot bind formatted a data directory"
    assert first.alive()


def test_admin_listener_root_lists_its_endpoints(make_broker):
    import urllib.request

    port = free_port()
    make_broker(**{"admin.http.listener": f"127.0.0.1:{port}"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        body = r.read().decode()
        assert r.status == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert path in body, body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            assert r.status == 200, path
