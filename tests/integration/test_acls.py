"""ACLs with the StandardAuthorizer on (issue 14): managed with confluent-kafka's AdminClient,
kept in the metadata log across restarts, and enforced on real clients (confluent-kafka,
kafka-python) as Kafka enforces them.

Without SASL every PLAINTEXT client is User:ANONYMOUS, so a broker with
`super.users=User:ANONYMOUS` manages the ACLs, and the same data directory restarted without
super users enforces them."""
from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, NewTopic, ResourcePatternType,
                                   ResourceType)

from conftest import strom_bin
from helpers import admin, create_topic

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANON = "User:ANONYMOUS"
LIT = ResourcePatternType.LITERAL
PFX = ResourcePatternType.PREFIXED


def authorizer_on(super_anonymous: bool) -> dict[str, str]:
    conf = {"authorizer.class.name": STANDARD, "num.partitions": "1"}
    if super_anonymous:
        conf["super.users"] = ANON
    return conf


def acl(rt, name, op, perm=AclPermissionType.ALLOW, pattern=LIT, principal=ANON):
    return AclBinding(rt, name, pattern, principal, "*", op, perm)


def create_acls(a, bindings):
    for f in a.create_acls(bindings, request_timeout=15).values():
        f.result()


def error_code(excinfo) -> int:
    err = excinfo.value.args[0]
    return err.code()


def test_acls_are_created_described_and_deleted_by_filter(make_broker):
    b = make_broker(**authorizer_on(super_anonymous=True))
    a = admin(b.bootstrap)
    bindings = [
        acl(ResourceType.TOPIC, "orders", AclOperation.WRITE),
        acl(ResourceType.TOPIC, "pfx-", AclOperation.READ, pattern=PFX),
        acl(ResourceType.TOPIC, "pfx-secret", AclOperation.READ, perm=AclPermissionType.DENY),
        acl(ResourceType.GROUP, "g-ok", AclOperation.READ),
    ]
    create_acls(a, bindings)
    # Creating an existing ACL again succeeds and stores nothing new.
    create_acls(a, bindings[:1])
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    listed = a.describe_acls(everything, request_timeout=15).result()
    assert sorted((x.name, x.operation, x.permission_type) for x in listed) == sorted(
        (x.name, x.operation, x.permission_type) for x in bindings)

    # MATCH: every ACL that applies to topic pfx-secret (the literal DENY and the prefix).
    match = AclBindingFilter(ResourceType.TOPIC, "pfx-secret", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    assert {(x.name, x.resource_pattern_type) for x in a.describe_acls(match, request_timeout=15).result()} == {
        ("pfx-secret", LIT), ("pfx-", PFX)}

    prefixed = AclBindingFilter(ResourceType.TOPIC, None, PFX, None, None, AclOperation.ANY,
                                AclPermissionType.ANY)
    deleted = a.delete_acls([prefixed], request_timeout=15)[prefixed].result()
    assert [(x.name, x.resource_pattern_type) for x in deleted] == [("pfx-", PFX)]
    left = a.describe_acls(everything, request_timeout=15).result()
    assert len(left) == 3

    # A concrete ACL may not use a filter's ANY (INVALID_REQUEST), nor name the cluster wrongly.
    with pytest.raises(KafkaException):
        create_acls(a, [acl(ResourceType.BROKER, "not-the-cluster", AclOperation.ALTER)])

    # The ACLs are metadata records: they survive a restart.
    b.restart()
    a = admin(b.bootstrap)
    assert len(a.describe_acls(everything, request_timeout=15).result()) == 3


def test_an_unknown_authorizer_is_a_startup_error(tmp_path):
    p = subprocess.run(
        [strom_bin(), "serve", "--data-dir", str(tmp_path / "d"),
         "--override", "listeners=PLAINTEXT://127.0.0.1:0",
         "--override", "admin.http.listener=", "--override", "gateway.listener=",
         "--override", "authorizer.class.name=kafka.security.authorizer.AclAuthorizer"],
        capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "authorizer.class.name" in p.stderr
    assert "AclAuthorizer" in p.stderr


@pytest.fixture
def enforcing(make_broker):
    """A broker whose ACLs were set by ANONYMOUS as a super user, restarted without super
    users: ANONYMOUS then has exactly those ACLs."""
    b = make_broker(**authorizer_on(super_anonymous=True))
    for t in ["orders", "other", "pfx-1", "pfx-secret"]:
        create_topic(b.bootstrap, t)
    a = admin(b.bootstrap)
    create_acls(a, [
        acl(ResourceType.TOPIC, "orders", AclOperation.WRITE),
        acl(ResourceType.TOPIC, "pfx-", AclOperation.ALL, pattern=PFX),
        acl(ResourceType.TOPIC, "pfx-secret", AclOperation.READ, perm=AclPermissionType.DENY),
        acl(ResourceType.GROUP, "g-ok", AclOperation.READ),
    ])
    # Data to read, written while still a super user.
    p = Producer({"bootstrap.servers": b.bootstrap})
    for t in ["pfx-1", "pfx-secret"]:
        p.produce(t, b"v")
    assert p.flush(20) == 0
    b.overrides.pop("super.users")
    b.restart()
    return b


def deliver(bootstrap: str, topic: str) -> KafkaError | None:
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 10000})
    p.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert len(errors) == 1
    return errors[0]


def test_write_is_allowed_on_topic_a_only(enforcing):
    assert deliver(enforcing.bootstrap, "orders") is None
    err = deliver(enforcing.bootstrap, "other")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_metadata_hides_topics_the_principal_may_not_describe(enforcing):
    md = admin(enforcing.bootstrap).list_topics(timeout=15)
    # WRITE implies DESCRIBE (orders), ALL on the prefix covers pfx-*; a READ DENY does not
    # deny DESCRIBE, so pfx-secret stays visible.
    assert sorted(md.topics) == ["orders", "pfx-1", "pfx-secret"]


def test_kafka_python_consumer_without_read_on_its_group_is_refused(enforcing):
    from kafka import KafkaConsumer
    from kafka.errors import GroupAuthorizationFailedError

    c = KafkaConsumer("pfx-1", bootstrap_servers=enforcing.bootstrap, group_id="g-denied",
                      auto_offset_reset="earliest", consumer_timeout_ms=15000)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            deadline = time.time() + 20
            while time.time() < deadline:
                c.poll(timeout_ms=500)
    finally:
        c.close()


def test_kafka_python_consumer_with_read_on_group_and_prefix_reads_and_commits(enforcing):
    from kafka import KafkaConsumer

    c = KafkaConsumer("pfx-1", bootstrap_servers=enforcing.bootstrap, group_id="g-ok",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=15000)
    try:
        got = []
        deadline = time.time() + 20
        while not got and time.time() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                got.extend(r.value for r in recs)
        assert got == [b"v"]
        c.commit()
    finally:
        c.close()


def test_a_deny_beats_an_allow(enforcing):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import TopicAuthorizationFailedError

    c = KafkaConsumer(bootstrap_servers=enforcing.bootstrap, group_id=None,
                      auto_offset_reset="earliest", consumer_timeout_ms=10000)
    try:
        c.assign([TopicPartition("pfx-secret", 0)])
        with pytest.raises(TopicAuthorizationFailedError):
            deadline = time.time() + 20
            while time.time() < deadline:
                c.poll(timeout_ms=500)
    finally:
        c.close()


def test_management_needs_the_cluster_grants(enforcing):
    from kafka import KafkaAdminClient
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePatternFilter)
    from kafka.admin import ResourceType as KpResourceType
    from kafka.errors import ClusterAuthorizationFailedError

    # kafka-python raises DescribeAcls' top-level error (this librdkafka returns an empty list).
    kp = KafkaAdminClient(bootstrap_servers=enforcing.bootstrap)
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            kp.describe_acls(ACLFilter(
                principal=None, host="*", operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None,
                                                       ACLResourcePatternType.ANY)))
    finally:
        kp.close()
    a = admin(enforcing.bootstrap)
    with pytest.raises(KafkaException) as e:
        create_acls(a, [acl(ResourceType.TOPIC, "other", AclOperation.ALL)])
    assert error_code(e) == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # DELETE on a topic is not granted on orders (only WRITE), ALL is on the prefix.
    fs = a.delete_topics(["orders"], operation_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs["orders"].result()
    assert error_code(e) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    fs = a.create_topics([NewTopic("new-topic", 1)])
    with pytest.raises(KafkaException) as e:
        fs["new-topic"].result()
    assert error_code(e) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The prefix's ALL includes CREATE.
    fs = a.create_topics([NewTopic("pfx-new", 1)])
    fs["pfx-new"].result()


def strom_cli(bootstrap: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([strom_bin(), *args, "-b", bootstrap], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **(env or {})))


def test_strom_acl_cli_creates_lists_and_deletes(make_broker):
    import json
    b = make_broker(**authorizer_on(super_anonymous=True))
    p = strom_cli(b.bootstrap, "acl", "create", "--topic", "orders", "--allow-principal", "User:alice",
                  "--operation", "Read", "--operation", "Write")
    assert p.returncode == 0, p.stderr
    p = strom_cli(b.bootstrap, "acl", "create", "--group", "app-", "--resource-pattern-type", "prefixed",
                  "--deny-principal", "User:bob", "--operation", "All")
    assert p.returncode == 0, p.stderr
    # What the CLI wrote, read back with confluent-kafka.
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    a = admin(b.bootstrap)
    listed = a.describe_acls(everything, request_timeout=15).result()
    assert sorted((x.restype, x.name, x.resource_pattern_type, x.principal, x.operation, x.permission_type)
                  for x in listed) == sorted([
        (ResourceType.TOPIC, "orders", LIT, "User:alice", AclOperation.READ, AclPermissionType.ALLOW),
        (ResourceType.TOPIC, "orders", LIT, "User:alice", AclOperation.WRITE, AclPermissionType.ALLOW),
        (ResourceType.GROUP, "app-", PFX, "User:bob", AclOperation.ALL, AclPermissionType.DENY),
    ])
    p = strom_cli(b.bootstrap, "acl", "list", "--group", "app-1", "--resource-pattern-type", "match",
                  "--output", "json")
    assert p.returncode == 0, p.stderr
    assert [(x["resource_name"], x["permission_type"]) for x in json.loads(p.stdout)] == [("app-", "DENY")]
    p = strom_cli(b.bootstrap, "acl", "delete")
    assert p.returncode != 0 and "--force" in p.stderr
    p = strom_cli(b.bootstrap, "acl", "delete", "--principal", "User:alice", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)) == 2
    assert len(a.describe_acls(everything, request_timeout=15).result()) == 1


def test_scram_credentials_with_confluent_admin_and_strom_user(make_broker):
    import json
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialDeletion, UserScramCredentialUpsertion)
    b = make_broker()
    a = admin(b.bootstrap)
    up = UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                      b"password", b"salt")
    for f in a.alter_user_scram_credentials([up], request_timeout=15).values():
        f.result()
    p = strom_cli(b.bootstrap, "user", "create", "bob", "--mechanism", "SCRAM-SHA-512",
                  env={"STROM_USER_PASSWORD": "hunter2"})
    assert p.returncode == 0, p.stderr
    described = a.describe_user_scram_credentials(request_timeout=15).result()
    got = {u: [(c.mechanism, c.iterations) for c in d.scram_credential_infos] for u, d in described.items()}
    assert got == {"alice": [(ScramMechanism.SCRAM_SHA_256, 8192)],
                   "bob": [(ScramMechanism.SCRAM_SHA_512, 4096)]}
    # Too few iterations: UNACCEPTABLE_CREDENTIAL, nothing stored.
    bad = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100),
                                       b"pw", b"salt")
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([bad], request_timeout=15)["carol"].result()
    assert error_code(e) == KafkaError.UNACCEPTABLE_CREDENTIAL
    # Deleting a credential that does not exist: RESOURCE_NOT_FOUND.
    gone = UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256)
    with pytest.raises(KafkaException) as e:
        a.alter_user_scram_credentials([gone], request_timeout=15)["carol"].result()
    assert error_code(e) == KafkaError.RESOURCE_NOT_FOUND
    # Credentials are metadata records: they survive a restart; `strom user delete` removes one.
    b.restart()
    p = strom_cli(b.bootstrap, "user", "delete", "alice")
    assert p.returncode == 0, p.stderr
    p = strom_cli(b.bootstrap, "user", "list", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"user": "bob", "mechanism": "SCRAM-SHA-512", "iterations": 4096}]
    # The log holds the salted credential, never the password.
    assert b"hunter2" not in b"".join(f.read_bytes() for f in b.data_dir.rglob("*") if f.is_file())


def test_idempotent_producer_needs_only_write_on_some_topic(enforcing):
    # KIP-679: InitProducerId without a transactional id is allowed by IDEMPOTENT_WRITE on the
    # cluster or by WRITE on any topic; ANONYMOUS has the latter.
    errors = []
    p = Producer({"bootstrap.servers": enforcing.bootstrap, "enable.idempotence": True,
                  "message.timeout.ms": 10000})
    p.produce("orders", b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert errors == [None]


def test_configs_need_describe_configs(enforcing):
    from confluent_kafka.admin import ConfigResource
    a = admin(enforcing.bootstrap)
    ok = ConfigResource(ConfigResource.Type.TOPIC, "pfx-1")
    denied = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    fs = a.describe_configs([ok, denied], request_timeout=15)
    assert "retention.ms" in fs[ok].result()
    with pytest.raises(KafkaException) as e:
        fs[denied].result()
    assert error_code(e) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    broker_res = ConfigResource(ConfigResource.Type.BROKER, "0")
    with pytest.raises(KafkaException) as e:
        a.describe_configs([broker_res], request_timeout=15)[broker_res].result()
    assert error_code(e) == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_allow_everyone_if_no_acl_found(make_broker):
    b = make_broker(**authorizer_on(super_anonymous=False), **{"allow.everyone.if.no.acl.found": "true"})
    a = admin(b.bootstrap)
    # No ACL on the cluster: ANONYMOUS may create topics and ACLs.
    create_topic(b.bootstrap, "open")
    create_topic(b.bootstrap, "locked")
    create_acls(a, [acl(ResourceType.TOPIC, "locked", AclOperation.WRITE, principal="User:alice")])
    assert deliver(b.bootstrap, "open") is None
    # An ACL exists on `locked` and none of them is ANONYMOUS's: refused.
    err = deliver(b.bootstrap, "locked")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def _sasl_handshake_ok(port: int, mechanism: str) -> bool:
    """Whether the listener on `port` answers SaslHandshake v1 for `mechanism` without an
    error: true once SASL listeners are served (issue 14's transport work)."""
    import socket
    import struct
    client_id = b"strom-it"
    body = (struct.pack(">hhih", 17, 1, 7, len(client_id)) + client_id
            + struct.pack(">h", len(mechanism)) + mechanism.encode())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(4)
            if len(head) < 4:
                return False
            size = struct.unpack(">i", head)[0]
            resp = b""
            while len(resp) < size:
                chunk = s.recv(size - len(resp))
                if not chunk:
                    return False
                resp += chunk
            # correlation id (4), then the error code.
            return struct.unpack(">h", resp[4:6])[0] == 0
    except OSError:
        return False


def test_acls_on_a_sasl_scram_principal(make_broker):
    """User:alice over SASL_PLAINTEXT/SCRAM-SHA-256 may write topic a only; the PLAINTEXT
    listener (ANONYMOUS, a super user here) manages users, topics and ACLs. Skips until the
    broker serves SASL listeners."""
    from conftest import free_port
    from helpers import create_topic
    plain, sasl = free_port(), free_port()
    try:
        b = make_broker(port=plain, **authorizer_on(super_anonymous=False), **{
            "listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "super.users": "User:ANONYMOUS;User:admin",
        })
    except RuntimeError as e:
        pytest.skip(f"SASL listeners are not served yet: {str(e).splitlines()[0]}")
    if not _sasl_handshake_ok(sasl, "SCRAM-SHA-256"):
        pytest.skip("SASL listeners are not served yet (SaslHandshake refused)")
    p = strom_cli(b.bootstrap, "user", "create", "alice", env={"STROM_USER_PASSWORD": "alice-secret"})
    assert p.returncode == 0, p.stderr
    for t in ["a", "b"]:
        create_topic(b.bootstrap, t)
    create_acls(admin(b.bootstrap), [acl(ResourceType.TOPIC, "a", AclOperation.WRITE, principal="User:alice")])
    conf = {"bootstrap.servers": f"127.0.0.1:{sasl}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice", "sasl.password": "alice-secret",
            "message.timeout.ms": 10000}
    results = {}
    p = Producer(conf)
    for t in ["a", "b"]:
        p.produce(t, b"x", on_delivery=lambda err, msg, t=t: results.__setitem__(t, err))
    p.flush(20)
    assert results["a"] is None
    assert results["b"] is not None and results["b"].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _find_coordinator_v1_error(port: int, key: str, key_type: int) -> int:
    """FindCoordinator v1 on the wire: its error code."""
    import socket
    import struct
    client_id = b"strom-it"
    body = (struct.pack(">hhih", 10, 1, 9, len(client_id)) + client_id
            + struct.pack(">h", len(key)) + key.encode() + struct.pack(">b", key_type))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4))[0]
        resp = b""
        while len(resp) < size:
            resp += s.recv(size - len(resp))
    # correlation id (4), throttle time (4), then the error code.
    return struct.unpack(">h", resp[8:10])[0]


def test_find_coordinator_needs_describe_on_the_group(enforcing):
    assert _find_coordinator_v1_error(enforcing.port, "g-ok", 0) == 0
    assert _find_coordinator_v1_error(enforcing.port, "g-denied", 0) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert _find_coordinator_v1_error(enforcing.port, "txn-1", 1) == \
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_topic_admin_apis_are_refused_per_topic(enforcing):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                       OffsetSpec)
    a = admin(enforcing.bootstrap)

    def outcome(f):
        try:
            f.result()
            return None
        except KafkaException as e:
            return e.args[0].code()

    # ListOffsets needs DESCRIBE: orders has it (WRITE implies it), other has no ACL.
    fs = a.list_offsets({TopicPartition("orders", 0): OffsetSpec.latest(),
                         TopicPartition("other", 0): OffsetSpec.latest()}, request_timeout=15)
    got = {tp.topic: outcome(f) for tp, f in fs.items()}
    assert got == {"orders": None, "other": KafkaError.TOPIC_AUTHORIZATION_FAILED}

    # CreatePartitions needs ALTER: the prefix's ALL has it, orders' WRITE does not.
    fs = a.create_partitions([NewPartitions("pfx-1", 2), NewPartitions("orders", 2)],
                             operation_timeout=15)
    assert {t: outcome(f) for t, f in fs.items()} == {
        "pfx-1": None, "orders": KafkaError.TOPIC_AUTHORIZATION_FAILED}

    # DeleteRecords needs DELETE.
    fs = a.delete_records([TopicPartition("pfx-1", 0, 0), TopicPartition("orders", 0, 0)],
                          request_timeout=15)
    assert {tp.topic: outcome(f) for tp, f in fs.items()} == {
        "pfx-1": None, "orders": KafkaError.TOPIC_AUTHORIZATION_FAILED}

    # IncrementalAlterConfigs needs ALTER_CONFIGS.
    entry = [ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)]
    ok = ConfigResource(ConfigResource.Type.TOPIC, "pfx-1", incremental_configs=entry)
    no = ConfigResource(ConfigResource.Type.TOPIC, "orders", incremental_configs=entry)
    fs = a.incremental_alter_configs([ok, no])
    assert outcome(fs[ok]) is None
    assert outcome(fs[no]) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_group_admin_apis_need_the_group_grants(enforcing):
    a = admin(enforcing.bootstrap)
    fs = a.describe_consumer_groups(["g-denied"], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs["g-denied"].result()
    assert error_code(e) == KafkaError.GROUP_AUTHORIZATION_FAILED
    fs = a.delete_consumer_groups(["g-ok"], request_timeout=15)
    with pytest.raises(KafkaException) as e:
        fs["g-ok"].result()
    # READ on g-ok does not include DELETE.
    assert error_code(e) == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_consumer_protocol_member_needs_describe_on_its_topics(enforcing):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": enforcing.bootstrap, "group.id": "g-ok",
                  "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["other"])
        seen = None
        deadline = time.time() + 20
        while seen is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is not None:
                seen = m.error().code()
        assert seen == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        c.close()
