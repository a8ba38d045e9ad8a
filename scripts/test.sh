#!/usr/bin/env bash
# Strom's one test command (CI runs it through .ci/run).
#
#   ./scripts/test.sh                      everything
#   STROM_TEST_SKIP_RUST=1 ./scripts/test.sh   skip fmt/clippy/cargo test
#   STROM_PYTEST_ARGS="-k durability -x" ./scripts/test.sh   extra pytest args
#   STROM_TEST_FAIL_FAST=1 ./scripts/test.sh   stop at the first failed step
#   FUZZ_SECONDS=10 ./scripts/test.sh         shorter fuzz runs (default 30 s per target)
#
# Each check is one `step NAME cmd args...` line; add new sections the same way.
# A failed step does not stop the later ones (unless STROM_TEST_FAIL_FAST=1),
# and the script exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export PYTHONDONTWRITEBYTECODE=1

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECS=()
FAILED=0
SCRIPT_START=$(date +%s)

# step NAME cmd args... : run one check, time it, record the result.
step() {
    local name=$1; shift
    local start rc
    start=$(date +%s)
    printf '\n==> [%s] %s\n' "$name" "$*"
    set +e
    "$@"
    rc=$?
    set -e
    local secs=$(( $(date +%s) - start ))
    STEP_NAMES+=("$name")
    STEP_SECS+=("$secs")
    if [ "$rc" -eq 0 ]; then
        STEP_RESULTS+=("ok")
        printf '<== [%s] ok (%ss)\n' "$name" "$secs"
    else
        STEP_RESULTS+=("FAILED (exit $rc)")
        FAILED=$((FAILED + 1))
        printf '<== [%s] FAILED with exit code %s (%ss)\n' "$name" "$rc" "$secs"
        if [ "${STROM_TEST_FAIL_FAST:-0}" = "1" ]; then
            summary
            exit 1
        fi
    fi
}

# skip_step NAME REASON : record a step that was not run.
skip_step() {
    STEP_NAMES+=("$1"); STEP_SECS+=("0"); STEP_RESULTS+=("skipped: $2")
    printf '\n==> [%s] skipped: %s\n' "$1" "$2"
}

summary() {
    local i passed=0 skipped=0
    printf '\n==== summary (%ss total) ====\n' "$(( $(date +%s) - SCRIPT_START ))"
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-22s %6ss  %s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_RESULTS[$i]}"
        case "${STEP_RESULTS[$i]}" in
            ok) passed=$((passed + 1)) ;;
            skipped*) skipped=$((skipped + 1)) ;;
        esac
    done
    printf 'steps: %d passed, %d failed, %d skipped\n' "$passed" "$FAILED" "$skipped"
}

# --- helpers used by steps ---------------------------------------------------

run_integration_tests() {
    local bin=${STROM_BIN:-$ROOT/target/release/strom}
    if [ ! -x "$bin" ]; then
        echo "broker binary $bin is missing (did the build step fail?)" >&2
        return 1
    fi
    # shellcheck disable=SC2086
    STROM_BIN=$bin "$ROOT/.venv/bin/python" -m pytest tests/integration \
        -p no:cacheprovider \
        --timeout="${STROM_PYTEST_TIMEOUT:-180}" \
        -rfEs --tb=short --durations=15 \
        ${STROM_PYTEST_ARGS:-}
}

# --- the steps ---------------------------------------------------------------

step install-deps ./scripts/install-test-deps.sh

if [ "${STROM_TEST_SKIP_RUST:-0}" = "1" ]; then
    skip_step cargo-fmt "STROM_TEST_SKIP_RUST=1"
    skip_step cargo-clippy "STROM_TEST_SKIP_RUST=1"
    skip_step cargo-test "STROM_TEST_SKIP_RUST=1"
else
    step cargo-fmt cargo fmt --all -- --check
    step cargo-clippy cargo clippy --workspace --all-targets -- -D warnings
    # The dev profile: the tests run a few minutes longer than in release, but compiling
    # every test binary with release's thin LTO took most of this step (21 of 22 minutes
    # in a fresh clone). The release binary is built below for the integration tests.
    step cargo-test cargo test --workspace --no-fail-fast
fi

step build-strom cargo build --release -p strom
# cargo-fuzz targets, FUZZ_SECONDS each (30 here, 60 when fuzz.sh runs alone: CI's run is a
# regression check over the committed corpus, longer searches are run by hand); a crash
# fails the step (scripts/fuzz.sh).
step fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-30}" ./scripts/fuzz.sh
step integration run_integration_tests
step k8s-validate ./scripts/k8s-validate.sh
step image-build ./scripts/build-image.sh --binary target/release/strom --no-save
step bench-smoke ./bench/run.sh --smoke
step bench-groups-smoke "$ROOT/.venv/bin/python" bench/groups.py --smoke
step bench-transactions-smoke "$ROOT/.venv/bin/python" bench/transactions.py --smoke

summary
[ "$FAILED" -eq 0 ]
