"""The fixtures' own promise: `start()` returns once the broker is ready, not when its Kafka
port is bound. The port is bound before the logs are opened and recovered (a connection waits
in the backlog meanwhile), so a test that looks at the data directory or the log right after a
start raced recovery (test_damaged_files.py's stray and WARN checks flaked so). Many partitions
make the window between the bind and the ready line wide enough to see every time."""

import urllib.error
import urllib.request

from conftest import READY_LINE, free_port
from helpers import create_topic, unique_topic

# Opening this many partition logs at start-up takes a few hundred milliseconds in a debug
# build: far longer than the fixture's first port check.
PARTITIONS = 400


def _this_start_log(broker) -> str:
    return broker.log_text().rsplit(f"===== start #{broker.starts}:", 1)[-1]


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _with_many_partitions(broker):
    create_topic(broker.bootstrap, unique_topic("ready"), partitions=PARTITIONS)
    broker.stop()
    broker.start()


def test_start_returns_after_the_ready_line_without_an_admin_listener(make_broker):
    broker = make_broker()
    _with_many_partitions(broker)
    assert READY_LINE in _this_start_log(broker), "start() returned before the broker was ready"


def test_start_returns_once_readyz_answers_200(make_broker):
    admin_port = free_port()
    broker = make_broker(**{"admin.http.listener": f"127.0.0.1:{admin_port}"})
    _with_many_partitions(broker)
    # Read before anything else can wait for the broker: the admin port, like the Kafka
    # port, is bound early and would hold a request in its backlog until serving starts.
    assert READY_LINE in _this_start_log(broker), "start() returned before the broker was ready"
    assert _readyz(admin_port) == 200
