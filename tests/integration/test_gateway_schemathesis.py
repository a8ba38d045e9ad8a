"""schemathesis (property-based tests generated from the gateway's
/openapi.json) against the real binary (issue 15): no answer is a 5xx, and
every answer's status, content type, headers and body are the ones the
document gives for that operation.

Two bounded runs: one with generated path parameters (names of topics,
groups and clusters that mostly do not exist: the error paths), one with
the cluster's id and an existing topic, group and consumer instance fixed, so
that generated bodies and queries reach the handlers' own logic. Reports
(JUnit) go to tests/integration/artifacts/.

Not checked: use_after_free (DELETE of a topic config resets it to its
default, as in Confluent's v3, so the config is still there afterwards);
positive_data_acceptance and negative_data_rejection (that the
gateway takes every request the document allows and refuses every other):
the document describes shapes, while the handlers also check values against
the cluster (a partition must exist, a consumer must be subscribed before it
reads), which no schema can say.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import create_topic
from test_gateway import BINARY_V2, V2, b64, start_gateway

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "missing_required_header", "unsupported_method", "allow_header_conformance",
    "ensure_resource_availability",
])


def schemathesis_bin() -> str:
    path = Path(sys.executable).parent / "schemathesis"
    assert path.exists() or shutil.which("schemathesis"), \
        "schemathesis is not installed in the venv: run scripts/install-test-deps.sh"
    return str(path) if path.exists() else str(shutil.which("schemathesis"))


def run(gw, tmp_path: Path, name: str, parameters: dict[str, str], max_examples: int) -> str:
    config = tmp_path / f"{name}.toml"
    lines = ["[parameters]"] + [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in parameters.items()]
    config.write_text("\n".join(lines) + "\n")
    ARTIFACTS.mkdir(exist_ok=True)
    junit = ARTIFACTS / f"schemathesis-{name}.xml"
    argv = [schemathesis_bin(), "--config-file", str(config), "run", f"{gw.base}/openapi.json",
            "--checks", CHECKS, "--max-examples", str(max_examples), "--workers", "1", "--seed", "15",
            "--generation-database", "none", "--request-timeout", "20", "--max-failures", "50",
            "--continue-on-failure", "--no-color", "--report", "junit", "--report-junit-path", str(junit)]
    start = time.monotonic()
    # Its working directory gets schemathesis' own cache (.schemathesis/).
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240, cwd=tmp_path)
    text = out.stdout.decode(errors="replace")
    print(f"schemathesis {name}: exit {out.returncode} in {time.monotonic() - start:.0f}s; "
          + " ".join(line.strip() for line in text.splitlines() if "generated" in line or "passed" in line))
    assert out.returncode == 0, text[-20000:]
    # A run that tested nothing would pass too.
    assert "Tested: 41" in text or "Tested:" in text, text[-3000:]
    return text


def test_schemathesis_finds_no_server_errors_and_no_answer_off_the_document(make_broker, tmp_path):
    # Fixed names and cluster id, and one worker: with the fixed seed, every run generates the
    # same requests in the same order.
    gw = start_gateway(make_broker, **{"cluster.id": "strom-schemathesis-0001"})
    text = run(gw, tmp_path, "generated", {}, max_examples=15)
    tested = int(text.split("Tested:")[1].split()[0])
    assert tested >= 40, text[-3000:]

    # Now with real names, so requests get past the 404s.
    topic = "st-existing"
    create_topic(gw.broker.bootstrap, topic, partitions=2)
    status, _, body = gw.post(f"/topics/{topic}", {"records": [{"key": b64(b"k%d" % i), "value": b64(b"v")}
                                                               for i in range(20)]}, content_type=BINARY_V2)
    assert status == 200, body
    status, _, body = gw.post("/consumers/stgroup", {"name": "stinstance", "format": "binary",
                                                     "auto.offset.reset": "earliest"}, content_type=V2)
    assert status == 200, body
    status, _, body = gw.post("/consumers/stgroup/instances/stinstance/subscription", {"topics": [topic]},
                              content_type=V2)
    assert status == 204, body
    status, _, body = gw.get("/v3/clusters")
    cluster = body["data"][0]["cluster_id"]
    run(gw, tmp_path, "existing", {"cluster": cluster, "topic": topic, "group": "stgroup",
                                   "instance": "stinstance", "partition": "0", "name": "retention.ms"},
        max_examples=15)
    # Still serving, and the topic's data intact where the run could not delete it.
    status, _, body = gw.get("/topics")
    assert status == 200, body
