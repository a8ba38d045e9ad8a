"""Starts the real broker with the secure StatefulSet's env, args and secrets.

deploy/smoke_env.py does this for the defaults; this one takes a render with
TLS, SASL and (optionally) the authorizer, and plays the kubelet's part for
what the pod gets from Secrets: it makes a CA and a broker certificate with
openssl into a directory laid out as the kubernetes.io/tls secret mounted at
/etc/strom/tls would be (tls.crt, tls.key, ca.crt and cert-manager's
tls-combined.pem), gives every secretKeyRef env var a value (the PLAIN users'
JAAS entry), moves ports to free ones, and runs `strom serve` with the
container's args. Then, with confluent-kafka as a client:

  - SASL_SSL on EXTERNAL as the PLAIN user admin (the render's super user):
    produce and read back a record, verifying the broker's certificate
    against the CA;
  - with the authorizer: alice, a PLAIN user without ACLs, cannot write
    (TOPIC_AUTHORIZATION_FAILED);
  - SASL_PLAINTEXT on LOCAL (the port-forward listener, same protocol as
    INTERNAL): Metadata as another PLAIN user;
  - SASL_SSL with a wrong password: refused;
  - the in-process HTTP gateway over HTTPS: 401 without credentials, admin's HTTP Basic
    lists the topic, and (with the authorizer) alice's produce is 403 40301;
  - no STROM_* variable named no setting, and SIGTERM exits 0.

    python deploy/smoke_secure.py STROM_BINARY RENDERED.yaml [--without-authorizer]

--without-authorizer drops the authorizer settings, for a broker built before
authorizer.class.name exists (the tls branch alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import yaml

from smoke_env import POD, free_port, http_status

USERS = {"admin": "admin-secret", "alice": "alice-secret"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
        + " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";")
AUTHORIZER_ENV = {"STROM_AUTHORIZER_CLASS_NAME", "STROM_SUPER_USERS", "STROM_ALLOW_EVERYONE_IF_NO_ACL_FOUND"}


def make_certs(directory: str) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=strom-smoke-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "san.ext"), "w", encoding="utf-8") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "2", "-extfile", "san.ext")
    # The broker wants PKCS#8 (what cert-manager writes with encoding PKCS8).
    run("pkcs8", "-topk8", "-nocrypt", "-in", "tls.key", "-out", "tls.key.p8")
    os.replace(os.path.join(directory, "tls.key.p8"), os.path.join(directory, "tls.key"))
    with open(os.path.join(directory, "tls-combined.pem"), "w", encoding="utf-8") as out:
        for name in ("tls.key", "tls.crt"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                out.write(f.read())


def check_gateway(port: int, ca: str, env: dict[str, str]) -> list[str]:
    """The in-process gateway of a secured render: HTTPS (when the listeners have TLS) and
    HTTP Basic, the callers' ACLs checked."""
    import base64
    import http.client
    import json
    import ssl
    problems: list[str] = []
    https = "STROM_GATEWAY_SSL_KEYSTORE_LOCATION" in env or "STROM_GATEWAY_SSL_KEYSTORE_CERTIFICATE_CHAIN" in env

    def call(method: str, path: str, user: str | None, body: dict | None = None):
        if https:
            c = http.client.HTTPSConnection("localhost", port, timeout=15,
                                            context=ssl.create_default_context(cafile=ca))
        else:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        headers = {"Content-Type": "application/vnd.kafka.json.v2+json"}
        if user:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        c.request(method, path, body=json.dumps(body).encode() if body else None, headers=headers)
        r = c.getresponse()
        text = r.read()
        c.close()
        return r.status, json.loads(text) if text else None

    try:
        status, _ = call("GET", "/topics", None)
        if status != 401:
            problems.append(f"gateway: a request without credentials got {status}, not 401")
        status, body = call("GET", "/topics", "admin")
        if status != 200 or "smoke-secure" not in (body or []):
            problems.append(f"gateway: admin's topics: {status} {body}")
        if "STROM_AUTHORIZER_CLASS_NAME" in env:
            status, body = call("POST", "/topics/smoke-secure", "alice", {"records": [{"value": 1}]})
            if status != 403 or (body or {}).get("error_code") != 40301:
                problems.append(f"gateway: alice without ACLs produced: {status} {body}")
    except (OSError, http.client.HTTPException, ValueError) as e:
        problems.append(f"gateway: {e}")
    return problems


def pod_spec(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        sts = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "StatefulSet")
    return sts["spec"]["template"]["spec"]["containers"][0]


def secret_value(ref: dict, tls_dir: str) -> str:
    key = ref["key"]
    if os.path.exists(os.path.join(tls_dir, key)):
        with open(os.path.join(tls_dir, key), encoding="utf-8") as f:
            return f.read()
    return JAAS


def client(port: int, protocol: str, user: str, password: str, ca: str | None) -> dict:
    conf = {"bootstrap.servers": f"localhost:{port}", "security.protocol": protocol,
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password,
            "socket.timeout.ms": 5000}
    if ca:
        conf["ssl.ca.location"] = ca
    return conf


def main(binary: str, rendered: str, without_authorizer: bool) -> int:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    c = pod_spec(rendered)
    workdir = tempfile.mkdtemp(prefix="strom-smoke-secure-")
    tls_dir = os.path.join(workdir, "tls")
    os.mkdir(tls_dir)
    make_certs(tls_dir)
    kafka, external, admin, gateway = free_port(), free_port(), free_port(), free_port()
    # What the gateway-client secret would hold: the super user's client properties.
    gw_client_dir = os.path.join(workdir, "gateway-client")
    os.mkdir(gw_client_dir)
    with open(os.path.join(gw_client_dir, "command.properties"), "w", encoding="utf-8") as f:
        f.write("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="admin" password="{USERS["admin"]}";\n')
    env: dict[str, str] = {}
    for e in c["env"]:
        if without_authorizer and e["name"] in AUTHORIZER_ENV:
            continue
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = secret_value(e["valueFrom"]["secretKeyRef"], tls_dir)
        else:
            env[e["name"]] = POD[e["name"]]
    for k, v in list(env.items()):
        if k.startswith("STROM_"):
            v = v.replace("/etc/strom/tls/", tls_dir + "/")
            v = v.replace("/etc/strom/gateway-client/", gw_client_dir + "/")
            if k == "STROM_GATEWAY_LISTENER" and v:
                v = f"127.0.0.1:{gateway}"
            # EXTERNAL advertises the node port; here the client must come back to loopback.
            v = v.replace("${env:HOST_IP}:${ordinal:30092}", f"localhost:{external}")
            env[k] = v.replace(":9092", f":{kafka}").replace(":9094", f":{external}").replace(":9080", f":{admin}")
    env["STROM_LOG_DIRS"] = os.path.join(workdir, "data")
    env["PATH"] = "/usr/bin:/bin"
    problems: list[str] = []
    stderr_path = os.path.join(workdir, "stderr.log")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen([binary, "serve", *c.get("args", [])], env=env, cwd=workdir,
                                stdout=err, stderr=err)
    ca = os.path.join(tls_dir, "ca.crt")
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http_status(admin, "/readyz")[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not ready:
            problems.append(f"/readyz never answered 200 (exit code {proc.poll()})")
        else:
            # admin is the render's super user, so this works with the authorizer on.
            ext = client(external, "SASL_SSL", "admin", USERS["admin"], ca)
            p = Producer(ext)
            p.produce("smoke-secure", b"over SASL_SSL")
            if p.flush(15) != 0:
                problems.append("EXTERNAL SASL_SSL: the record was not acknowledged")
            cons = Consumer(dict(ext, **{"group.id": "smoke", "auto.offset.reset": "earliest"}))
            cons.subscribe(["smoke-secure"])
            got = None
            end = time.monotonic() + 20
            while got is None and time.monotonic() < end:
                m = cons.poll(1)
                if m is not None and m.error() is None:
                    got = m.value()
            cons.close()
            if got != b"over SASL_SSL":
                problems.append(f"EXTERNAL SASL_SSL: read back {got!r}")
            if not without_authorizer and "STROM_AUTHORIZER_CLASS_NAME" in env:
                # alice has no ACL: the authorizer must refuse her write.
                errors: list = []
                ap = Producer(dict(client(external, "SASL_SSL", "alice", USERS["alice"], ca),
                                   **{"message.timeout.ms": 10000}))
                ap.produce("smoke-secure", b"denied", on_delivery=lambda err, _m: errors.append(err))
                ap.flush(15)
                if not errors or errors[0] is None:
                    problems.append(f"authorizer: alice without ACLs could write ({errors})")
                elif "AUTHORIZATION" not in str(errors[0]).upper():
                    problems.append(f"authorizer: alice's write failed, but not as an authorization error: {errors[0]}")
            if env.get("STROM_GATEWAY_LISTENER"):
                problems.extend(check_gateway(gateway, ca, env))
            try:
                md = AdminClient(client(kafka, "SASL_PLAINTEXT", "admin", USERS["admin"], None)).list_topics(timeout=10)
                if "smoke-secure" not in md.topics:
                    problems.append(f"LOCAL SASL_PLAINTEXT: topics {sorted(md.topics)}")
            except Exception as e:  # noqa: BLE001
                problems.append(f"LOCAL SASL_PLAINTEXT as admin: {e}")
            # Last: librdkafka keeps retrying a refused login, and the broker
            # refuses an address after 20 failures a minute.
            bad = AdminClient(dict(client(external, "SASL_SSL", "alice", "wrong", ca),
                                   **{"reconnect.backoff.ms": 10000, "reconnect.backoff.max.ms": 10000}))
            try:
                bad.list_topics(timeout=5)
                problems.append("EXTERNAL SASL_SSL: a wrong password was let in")
            except Exception:  # noqa: BLE001 - any client error is the refusal
                pass
            del bad
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            limit = int(env.get("STROM_SHUTDOWN_TIMEOUT_MS", "20000")) / 1000 + 5
            try:
                code = proc.wait(timeout=limit)
                if code != 0:
                    problems.append(f"exit code {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                problems.append(f"still running {limit:.0f} s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(stderr_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    if "names no Strom setting" in log:
        problems.append("a STROM_* variable names no setting: "
                        + "; ".join(line for line in log.splitlines() if "names no Strom setting" in line))
    for secret in USERS.values():
        if secret in log:
            problems.append("a PLAIN password appears in the broker's log")
    for p_ in problems:
        print(f"  {p_}")
    if problems:
        print("  broker log (last lines):")
        for line in log.splitlines()[-15:]:
            print(f"    {line}")
    subprocess.run(["rm", "-rf", workdir], check=False)
    print(f"{'FAIL' if problems else 'ok'}: secure smoke: {rendered}")
    return 1 if problems else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--without-authorizer"]
    if len(args) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(args[0], args[1], "--without-authorizer" in sys.argv[1:]))
