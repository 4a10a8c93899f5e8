#!/usr/bin/env bash
# CI smoke run of the fuzz targets: the regression inputs first (each must pass),
# then FUZZ_SECONDS (default 30) of fuzzing per target from the seed corpus.
# Needs a nightly toolchain and cargo-fuzz (installed here if missing). When it cannot
# run it fails; it is skipped only when the user opts out by name, DEVENV_SKIP=fuzz
# (comma- or space-separated names, as tests/run.sh takes them), and it says so.
#
#   bash fuzz/smoke.sh                    # every target, 30 s each
#   FUZZ_SECONDS=600 bash fuzz/smoke.sh   # the long run recorded in BENCHMARKS.md
#   bash fuzz/smoke.sh patch_apply        # one target
#   FUZZ_SANITIZER=none bash fuzz/smoke.sh   # no ASan: a much faster build; the
#                                           # crates fuzzed have no unsafe code
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-30}
# No sanitizer by default: the fuzzed crates have no `unsafe`, and instrumenting the whole
# kube dependency tree with AddressSanitizer made the first build take ~50 minutes here.
# FUZZ_SANITIZER=address for the long runs.
sanitizer=${FUZZ_SANITIZER:-none}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_path patch_apply)

if [[ " $(printf '%s' "${DEVENV_SKIP:-}" | tr ',' ' ') " == *" fuzz "* ]]; then
    echo "!!! fuzz/smoke.sh: SKIPPED, the fuzz targets did NOT run (DEVENV_SKIP names fuzz)" >&2
    exit 0
fi
cannot_run() {
    echo "fuzz/smoke.sh: cannot run the fuzz targets: $*" >&2
    echo "fuzz/smoke.sh: (to skip them on purpose: DEVENV_SKIP=fuzz)" >&2
    exit 1
}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cannot_run "a nightly toolchain is needed (rustup toolchain install nightly)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cannot_run "cargo install cargo-fuzz failed"
    cargo fuzz --version >/dev/null 2>&1 || cannot_run "cargo fuzz does not run after installing it"
fi

python3 make-seeds.py

for t in "${targets[@]}"; do
    echo "=== $t: regression inputs"
    if compgen -G "regressions/$t/*" >/dev/null; then
        # Files (not a directory): libFuzzer runs each once and exits; any crash fails.
        cargo +nightly fuzz run -s "$sanitizer" "$t" regressions/"$t"/* -- -runs=1
    else
        echo "(no regression inputs in fuzz/regressions/$t/)"
    fi
    if ! compgen -G "corpus/$t/*" >/dev/null; then
        cannot_run "make-seeds.py wrote no seed corpus for $t (fuzz/corpus/$t/ is empty)"
    fi
    echo "=== $t: fuzzing for ${seconds}s"
    log=$(mktemp)
    set +e
    cargo +nightly fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -dict=k8s.dict -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 80 "$log"
        echo "fuzz/smoke.sh: $t failed (exit $status); the crash input is under fuzz/artifacts/$t/" >&2
        exit "$status"
    fi
    rm -f "$log"
done
echo "fuzz: ${#targets[@]} passed, 0 failed"
