#!/usr/bin/env bash
# Strom's benchmark suite, in one command:
#
#   ./bench/run.sh            full run: writes bench/RESULTS.md and bench/latency-throughput.png
#   ./bench/run.sh --smoke    a few seconds per scenario, tiny data; writes bench/out/ only
#                             (CI runs this to prove the suite still works; it never fails on
#                             a missed target, only when a scenario cannot run)
#
# Extra arguments go to bench/run.py (e.g. --only produce,consume, --perf).
#
# It installs what it needs (Debian's iperf3 and fio, a Python venv with matplotlib under
# bench/out/venv), builds the broker and the load generator in release mode, then hands over
# to run.py, which starts Strom on fresh data directories and runs every scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
mkdir -p "$OUT"

log() { printf '[bench] %s\n' "$*" >&2; }

# --- system packages --------------------------------------------------------------------
# iperf3 and fio measure the machine's limits; make and a C compiler build librdkafka from
# the source the rdkafka crate ships (no cmake needed).
need=()
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
PY=${PYTHON:-python3}
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    log "installing with apt-get: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq
    $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- Python venv for the plot -------------------------------------------------------------
VENV=$OUT/venv
if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
    log "installing matplotlib into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "matplotlib>=3.6"
fi

# --- builds -------------------------------------------------------------------------------
now() { date +%s.%N; }
t0=$(now)
log "building the broker: cargo build --release -p strom"
cargo build --release -p strom
t1=$(now)
log "building the load generator: bench/loadgen (its own workspace and target dir)"
(cd bench/loadgen && cargo build --release)
t2=$(now)
if [ "${1:-}" = "--smoke" ]; then
    # The generator's own unit tests (payload format, arguments, /proc parsing): cheap here,
    # since they reuse the release build of every dependency.
    (cd bench/loadgen && cargo test --release -q)
fi
BUILD_STROM_S=$("$PY" -c "print(round($t1 - $t0, 1))")
BUILD_LOADGEN_S=$("$PY" -c "print(round($t2 - $t1, 1))")

exec "$VENV/bin/python" "$ROOT/bench/run.py" \
    --strom "$ROOT/target/release/strom" \
    --loadgen "$ROOT/bench/loadgen/target/release/strom-loadgen" \
    --build-strom-s "$BUILD_STROM_S" --build-loadgen-s "$BUILD_LOADGEN_S" \
    "$@"
