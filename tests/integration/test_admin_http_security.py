"""The admin HTTP listener's TLS and bearer token (issue 14): /metrics and the health
endpoints over https with a CA made here, 401 without the token, 200 with it (a static token
file or an OAUTHBEARER JWT), and the paths left open for the Kubernetes probes."""

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import READY_LINE, free_port
from helpers import kcat_roundtrip, unique_topic
from pki import make_pki
from test_sasl import jwks  # noqa: F401  (the module-scoped fixture: a signer and its JWKS file)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def start(make_broker, env=None, **overrides):
    """A broker whose admin listener is on a free port; readiness is read from the log, as
    the harness' own /readyz poll is plain HTTP without a token."""
    port = free_port()
    b = make_broker(start=False, env=env, **{"admin.http.listener": f"127.0.0.1:{port}", **overrides})
    b.start(wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert b.proc.poll() is None, b.log_tail()
        if READY_LINE in b.log_text():
            return b, port
        time.sleep(0.05)
    raise AssertionError(f"not ready in 20 s\n{b.log_tail()}")


def get(url, token=None, context=None, timeout=5):
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=context, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def ca_context(pki, ca="ca"):
    return ssl.create_default_context(cafile=str(pki.root / f"{ca}.pem"))


def test_https_with_the_test_ca(make_broker, pki):
    b, port = start(make_broker, **{"admin.http.ssl.keystore.location": str(pki.root / "server.pem")})
    ctx = ca_context(pki)
    for path in ["/healthz", "/readyz", "/metrics", "/"]:
        status, body, _ = get(f"https://localhost:{port}{path}", context=ctx)
        assert status == 200, (path, body)
    status, body, headers = get(f"https://127.0.0.1:{port}/metrics", context=ctx)
    assert "strom_" in body and headers["content-type"].startswith("text/plain")
    # curl with the CA, as a scraper or an operator would.
    out = subprocess.run(["curl", "-sS", "--cacert", str(pki.root / "ca.pem"), f"https://localhost:{port}/healthz"],
                         capture_output=True, timeout=20)
    assert out.returncode == 0 and out.stdout == b"ok\n", out
    # Plain HTTP on the HTTPS port gets no answer, and a client that does not trust the CA
    # is refused by its own verification.
    import http.client
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(f"https://localhost:{port}/healthz", context=ca_context(pki, "otherca"), timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    # A client that connects and sends nothing holds up no one else.
    import socket
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        assert get(f"https://localhost:{port}/healthz", context=ctx)[0] == 200
    finally:
        idle.close()
    kcat_roundtrip(b.bootstrap, unique_topic("adm"))
    assert b.stop() == 0


def test_https_certificate_rotation_is_picked_up(make_broker, pki, tmp_path):
    keystore = tmp_path / "admin.pem"
    keystore.write_text((pki.root / "server.pem").read_text())
    b, port = start(make_broker, **{"admin.http.ssl.keystore.location": str(keystore)})
    assert get(f"https://localhost:{port}/healthz", context=ca_context(pki))[0] == 200
    keystore.write_text((pki.root / "server2.pem").read_text())
    time.sleep(1.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert get(f"https://localhost:{port}/healthz", context=ca_context(pki, "otherca"))[0] == 200
            break
        except urllib.error.URLError:
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.3)


def test_bearer_token_file(make_broker, tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret-token-1\n")
    b, port = start(make_broker, **{"admin.http.auth.token.file": str(token_file)})
    base = f"http://127.0.0.1:{port}"
    for path in ["/metrics", "/healthz", "/readyz"]:
        status, body, headers = get(base + path)
        assert status == 401, (path, body)
        assert headers["www-authenticate"].startswith("Bearer")
        assert get(base + path, token="wrong")[0] == 401
        assert 'error="invalid_token"' in get(base + path, token="wrong")[2]["www-authenticate"]
        status, body, _ = get(base + path, token="s3cret-token-1")
        assert status == 200, (path, body)
    # The index names the endpoints and stays open; other schemes are not a bearer token.
    assert get(base + "/")[0] == 200
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Basic czNjcmV0LXRva2VuLTE="})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401
    # A rotated Secret: the new token works within a few seconds, the old one stops.
    token_file.write_text("s3cret-token-2")
    deadline = time.monotonic() + 10
    while get(base + "/metrics", token="s3cret-token-2")[0] != 200:
        assert time.monotonic() < deadline, "the rotated token was never taken"
        time.sleep(0.2)
    assert get(base + "/metrics", token="s3cret-token-1")[0] == 401
    # A file emptied mid-rotation keeps the token in use instead of opening the door.
    token_file.write_text("")
    time.sleep(1.2)
    assert get(base + "/metrics", token="")[0] == 401
    assert get(base + "/metrics", token="s3cret-token-2")[0] == 200
    assert b.alive()


def test_probes_stay_open_when_only_metrics_is_protected(make_broker, tmp_path):
    """The Helm chart's probes (httpGet /readyz, /healthz, no header) with the token on."""
    token_file = tmp_path / "admin-token"
    token_file.write_text("tok")
    b, port = start(make_broker, **{"admin.http.auth.token.file": str(token_file),
                                    "admin.http.auth.paths": "/metrics"})
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/readyz")[0] == 200
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/metrics")[0] == 401
    assert get(base + "/metrics", token="tok")[0] == 200


def test_oauthbearer_jwt_over_https(make_broker, pki, jwks):  # noqa: F811
    path, token = jwks
    b, port = start(make_broker, **{
        "admin.http.ssl.keystore.location": str(pki.root / "server.pem"),
        "admin.http.auth.oauthbearer.enable": "true",
        "sasl.oauthbearer.jwks.endpoint.url": f"file://{path}",
        "sasl.oauthbearer.expected.audience": "strom",
        "sasl.oauthbearer.expected.issuer": "https://issuer.example",
    })
    url = f"https://localhost:{port}/metrics"
    ctx = ca_context(pki)
    assert get(url, context=ctx)[0] == 401
    assert get(url, token=token()[0], context=ctx)[0] == 200
    for bad in [token(aud="other")[0], token(iss="https://evil.example")[0], token(lifetime_s=-120)[0],
                token()[0][:-4] + "AAAA"]:
        assert get(url, token=bad, context=ctx)[0] == 401


def test_admin_tls_and_token_from_strom_environment_variables(make_broker, pki, tmp_path):
    """admin.http.ssl.* and admin.http.auth.* as STROM_* variables, as a Kubernetes pod sets
    them, like every other setting."""
    token_file = tmp_path / "admin-token"
    token_file.write_text("env-token")
    b, port = start(make_broker, env={
        "STROM_ADMIN_HTTP_SSL_KEYSTORE_LOCATION": str(pki.root / "server.pem"),
        "STROM_ADMIN_HTTP_SSL_ENABLED_PROTOCOLS": "TLSv1.3",
        "STROM_ADMIN_HTTP_AUTH_TOKEN_FILE": str(token_file),
        "STROM_ADMIN_HTTP_AUTH_PATHS": "/metrics",
    })
    assert "names no Strom setting" not in b.log_text(), b.log_tail()
    ctx = ca_context(pki)
    base = f"https://localhost:{port}"
    assert get(base + "/healthz", context=ctx)[0] == 200
    assert get(base + "/metrics", context=ctx)[0] == 401
    assert get(base + "/metrics", token="env-token", context=ctx)[0] == 200
    # TLS 1.3 only, from the variable: a TLS 1.2 client is refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(pki.root / "ca.pem"))
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((urllib.error.URLError, ssl.SSLError, OSError)):
        urllib.request.urlopen(base + "/healthz", context=old, timeout=5).read()
    # A bad value from the environment is a start-up error naming the setting.
    b = make_broker(start=False, env={"STROM_ADMIN_HTTP_SSL_KEYSTORE_LOCATION": "/nonexistent.pem"},
                    **{"admin.http.listener": f"127.0.0.1:{free_port()}"})
    b.start(wait=False)
    assert b.proc.wait(20) == 2, b.log_tail()
    assert "admin.http.ssl.keystore.location" in b.log_text(), b.log_tail()


@pytest.mark.parametrize("setting,value", [
    ("admin.http.auth.token.file", "/nonexistent/token"),
    ("admin.http.auth.paths", "metrics"),
    ("admin.http.auth.oauthbearer.enable", "true"),  # without sasl.oauthbearer.jwks.endpoint.url
    ("admin.http.auth.oauthbearer.enable", "maybe"),
    ("admin.http.ssl.keystore.location", "/nonexistent.pem"),
    ("admin.http.ssl.client.auth", "required"),  # TLS settings without a keystore
])
def test_bad_admin_settings_are_start_up_errors(make_broker, tmp_path, setting, value):
    b = make_broker(start=False, **{"admin.http.listener": f"127.0.0.1:{free_port()}", setting: value})
    b.start(wait=False)
    rc = b.proc.wait(20)
    assert rc == 2, b.log_tail()
    assert setting in b.log_text(), b.log_tail()


def test_empty_token_file_is_refused(make_broker, tmp_path):
    (tmp_path / "empty").write_text("\n")
    b = make_broker(start=False, **{"admin.http.listener": f"127.0.0.1:{free_port()}",
                                    "admin.http.auth.token.file": str(tmp_path / "empty")})
    b.start(wait=False)
    assert b.proc.wait(20) == 2
    assert "holds no token" in b.log_text()


def test_describe_configs_lists_the_admin_auth_settings(broker):
    from confluent_kafka.admin import ConfigResource
    from helpers import admin
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    a = admin(broker.bootstrap)
    configs = a.describe_configs([res])[res].result(20)
    assert configs["admin.http.auth.paths"].value == "/metrics,/healthz,/readyz"
    assert configs["admin.http.auth.oauthbearer.enable"].value == "false"
    json.dumps({k: v.value for k, v in configs.items()})
