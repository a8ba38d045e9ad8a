#!/usr/bin/env bash
# Installs what the integration tests need: Debian's kcat and a Python venv at
# .venv with the Kafka clients. Idempotent, and fast when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

# --- Debian packages: kcat (1.7.1 on librdkafka 2.0.2 on bookworm), podman (builds the
# container image without a daemon), unshare/setpriv (util-linux, for the pod test) ---
APT_WANT=()
command -v kcat >/dev/null 2>&1 || APT_WANT+=(kcat)
command -v podman >/dev/null 2>&1 || APT_WANT+=(podman)
command -v setpriv >/dev/null 2>&1 || APT_WANT+=(util-linux)
# Node.js runs the kafkajs client of the integration tests.
command -v node >/dev/null 2>&1 || APT_WANT+=(nodejs)
command -v npm >/dev/null 2>&1 || APT_WANT+=(npm)
# prometheus and promtool (2.42 on bookworm): test_metrics.py runs its own instance on a free
# loopback port against the dashboard's and alert rules' queries.
command -v promtool >/dev/null 2>&1 || APT_WANT+=(prometheus)
# Debian's Chromium: test_gateway_browser.py drives it headless with playwright-core (below), so
# Playwright never downloads a browser of its own.
command -v chromium >/dev/null 2>&1 || APT_WANT+=(chromium)
# PostgreSQL's server (initdb, pg_ctl): strom-metadata-postgres's tests run their own on loopback.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    APT_WANT+=(postgresql)
fi
# Debian's own python3 needs python3-venv (ensurepip) to make the venv below.
if [ ! -x .venv/bin/python ] && ! "${PYTHON:-python3}" -c 'import ensurepip' >/dev/null 2>&1; then
    APT_WANT+=(python3-venv)
fi
if [ "${#APT_WANT[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    log "installing ${APT_WANT[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq
    $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${APT_WANT[@]}" >/dev/null
fi
log "kcat: $(command -v kcat)"

# --- s3s-fs: the S3-compatible server (HTTP on loopback, objects as files) that the
# shared-storage tests start (crates/shared-storage/src/testing.rs). Built once from crates.io
# into .cache/s3s-fs and reused; chosen over Garage and RustFS for its build time (see the
# README's "Test it") and because it needs no cluster layout or key setup before first use.
# Built with the dev profile (--debug): 1 min 51 s on this 2-core machine against 15 min 53 s
# for release under load, and the tests need a correct server, not a fast one. ---
S3S_FS_VERSION=0.14.1
S3S_FS_BUILD="$S3S_FS_VERSION-debug"
S3S_FS_DIR=.cache/s3s-fs
if [ -x "$S3S_FS_DIR/bin/s3s-fs" ] && [ "$(cat "$S3S_FS_DIR/.version" 2>/dev/null)" = "$S3S_FS_BUILD" ]; then
    log "s3s-fs $S3S_FS_VERSION already built"
else
    log "building s3s-fs $S3S_FS_VERSION into $S3S_FS_DIR"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --debug \
        --root "$S3S_FS_DIR" >&2
    printf '%s\n' "$S3S_FS_BUILD" >"$S3S_FS_DIR/.version"
fi

# --- Python venv ---
VENV=.venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PY" -m venv "$VENV"
fi

# Kept in one place so the stamp below changes whenever the list does.
REQUIREMENTS=(
    "pytest>=8"
    "pytest-timeout>=2.3"
    "confluent-kafka>=2.6"
    "kafka-python>=2.1"
    "aiokafka>=0.11"
    "lz4>=4"
    "cramjam>=2.8"
    "python-snappy>=0.7"
    "zstandard>=0.22"
    "pyyaml>=6"
    "prometheus-client>=0.20"
    "websockets>=13"
    "schemathesis>=4.3,<5"
)
STAMP="$VENV/.strom-test-deps"
WANT="$(printf '%s\n' "${REQUIREMENTS[@]}")"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
    && "$VENV/bin/python" -c 'import pytest, pytest_timeout, confluent_kafka, kafka, aiokafka, lz4, cramjam, zstandard, yaml, prometheus_client, websockets, schemathesis' 2>/dev/null; then
    log "python deps already installed"
else
    log "installing python deps into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}"
    printf '%s\n' "$WANT" >"$STAMP"
fi
# --- Stream-processing frameworks in exactly-once mode (test_txn_frameworks.py) ---
# A venv of their own: quixstreams pins an older confluent-kafka than the tests above use.
FW_VENV=.venv-frameworks
FW_REQUIREMENTS=("quixstreams==3.28.1" "faust-streaming==0.15.3")
FW_STAMP="$FW_VENV/.strom-test-deps"
FW_WANT="$(printf '%s\n' "${FW_REQUIREMENTS[@]}")"
if [ -f "$FW_STAMP" ] && [ "$(cat "$FW_STAMP")" = "$FW_WANT" ] \
    && "$FW_VENV/bin/python" -c 'import quixstreams, faust' 2>/dev/null; then
    log "framework deps already installed"
else
    log "installing quixstreams and faust-streaming into $FW_VENV"
    [ -x "$FW_VENV/bin/python" ] || "$PY" -m venv "$FW_VENV"
    "$FW_VENV/bin/python" -m pip install -q --disable-pip-version-check "${FW_REQUIREMENTS[@]}"
    printf '%s\n' "$FW_WANT" >"$FW_STAMP"
fi
# --- Node.js clients (kafkajs) and playwright-core (drives the system Chromium), pinned by tests/integration/js/package-lock.json ---
JS_DIR=tests/integration/js
if [ -f "$JS_DIR/node_modules/.package-lock.json" ] \
    && cmp -s <(sed -n '/"node_modules\//,$p' "$JS_DIR/package-lock.json") \
              <(sed -n '/"node_modules\//,$p' "$JS_DIR/node_modules/.package-lock.json"); then
    log "node deps already installed"
else
    log "installing node deps into $JS_DIR/node_modules"
    npm ci --prefix "$JS_DIR" --no-audit --no-fund --loglevel=error >&2
fi
log "node $(node --version), kafkajs $(node -p 'require("./'"$JS_DIR"'/node_modules/kafkajs/package.json").version'), playwright-core $(node -p 'require("./'"$JS_DIR"'/node_modules/playwright-core/package.json").version')"
if command -v chromium >/dev/null 2>&1; then log "$(chromium --version 2>/dev/null)"; fi

"$VENV/bin/python" - <<'PY' >&2
import confluent_kafka, kafka, aiokafka, pytest
print("[install-test-deps] confluent-kafka %s (librdkafka %s), kafka-python %s, aiokafka %s, pytest %s" % (
    confluent_kafka.version(), confluent_kafka.libversion()[0], kafka.__version__,
    aiokafka.__version__, pytest.__version__))
PY
