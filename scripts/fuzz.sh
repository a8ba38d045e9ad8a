#!/usr/bin/env bash
# Runs Strom's cargo-fuzz targets (fuzz/) for a bounded time each; fails on any crash,
# leak, hang or failed assertion. CI runs it as a step of scripts/test.sh.
#
#   ./scripts/fuzz.sh                     every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=300 ./scripts/fuzz.sh request batch
#   ./scripts/fuzz.sh --seed              rewrite fuzz/corpus/ from the codecs (then commit)
#
# The targets are built with AddressSanitizer on the stable toolchain (RUSTC_BOOTSTRAP=1
# lets cargo-fuzz pass its -Z flags). The committed corpus (fuzz/corpus/<target>) is only
# read; what a run finds goes to a scratch corpus (FUZZ_WORK, kept between local runs), and
# a crashing input to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGETS_ALL=(request batch metadata group_records txn_records sasl)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_WORK=${FUZZ_WORK:-$ROOT/fuzz/target/work-corpus}
export RUSTC_BOOTSTRAP=1

if [ "${1:-}" = "--seed" ]; then
    rm -rf fuzz/corpus
    STROM_FUZZ_CORPUS=$ROOT/fuzz/corpus \
        cargo test -p strom-broker --features fuzzing --lib fuzzing::tests::write_seed_corpus
    find fuzz/corpus -type f | wc -l | xargs echo "seed files written:"
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# The seeds are built and checked by a test: every request seed is answered.
cargo test -p strom-broker --features fuzzing --lib fuzzing::

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${TARGETS_ALL[@]}")

cargo fuzz build

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$FUZZ_WORK/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
    log=$FUZZ_WORK/$t.log
    echo "==> fuzz $t for ${FUZZ_SECONDS}s"
    dict=()
    [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
    set +e
    cargo fuzz run "$t" "$FUZZ_WORK/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dict[@]}" >"$log" 2>&1
    rc=$?
    set -e
    # A run that never started has neither line: the summary says "?", not set -e's exit.
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
    if [ "$rc" -eq 0 ]; then
        summary+=("$t: ok, ${runs:-?} runs, cov ${cov:-?}")
    else
        failed=$((failed + 1))
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} runs; see $log and fuzz/artifacts/$t/")
        grep -E 'panicked|ERROR: |SUMMARY|==ERROR|Test unit written' "$log" | head -20 || true
    fi
done
printf '%s\n' "${summary[@]}"
[ "$failed" -eq 0 ]
