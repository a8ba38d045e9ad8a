"""With no authorizer configured (every listener PLAINTEXT today), the ACL APIs answer
SECURITY_DISABLED and SASL on a PLAINTEXT listener ILLEGAL_SASL_STATE, as Kafka does, instead
of closing the connection: admin tools report a clear error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, ResourcePatternType, ResourceType)

from conftest import REPO_ROOT
from helpers import admin

JS_DIR = REPO_ROOT / "tests" / "integration" / "js"

KAFKAJS_SCRIPT = r"""
const { Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes,
        ResourcePatternTypes } = require('kafkajs')
const kafka = new Kafka({ clientId: 'strom-it', brokers: [process.argv[2]], logLevel: logLevel.NOTHING })
async function main() {
  const admin = kafka.admin()
  await admin.connect()
  const out = {}
  try {
    await admin.describeAcls({ resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY,
      operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY })
    out.describe = 'ok'
  } catch (e) { out.describe = e.type || e.name }
  out.topics = (await admin.listTopics()).length >= 0
  await admin.disconnect()
  console.log(JSON.stringify(out))
}
main().catch(e => { console.log(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1) })
"""


def test_kafkajs_describe_acls_gets_security_disabled(broker, tmp_path):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node or kafkajs missing: run scripts/install-test-deps.sh")
    script = tmp_path / "acls.js"
    script.write_text(KAFKAJS_SCRIPT)
    env = dict(os.environ, NODE_PATH=str(JS_DIR / "node_modules"))
    p = subprocess.run([node, str(script), broker.bootstrap], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # Before: KafkaJSServerDoesNotSupportApiKey (the API was not served at all).
    assert out == {"describe": "SECURITY_DISABLED", "topics": True}, out


def _error_code(excinfo) -> int:
    err = excinfo.value.args[0]
    return err.code()


def test_create_and_delete_acls_answer_security_disabled(broker):
    a = admin(broker.bootstrap)
    binding = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    futures = a.create_acls([binding], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        futures[binding].result(15)
    assert _error_code(e) == KafkaError.SECURITY_DISABLED, e.value
    f = AclBindingFilter(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    futures = a.delete_acls([f], request_timeout=10)
    with pytest.raises(KafkaException) as e:
        futures[f].result(15)
    assert _error_code(e) == KafkaError.SECURITY_DISABLED, e.value
    # The connection kept serving: the cluster is still described.
    assert a.list_topics(timeout=10).brokers
