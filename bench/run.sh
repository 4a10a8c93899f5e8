#!/usr/bin/env bash
# Reproduces the load figures of BENCHMARKS.md: release builds of devenv-webhook and
# devenv-loadgen on this machine, a fresh webhook (fresh certificates, built-in
# policy, no Kubernetes API) per scenario so that its peak RSS belongs to that
# scenario alone. Prints one JSON report per scenario, with the load average.
#
#   bash bench/run.sh                 # every scenario
#   bash bench/run.sh saturation      # one of: saturation latency fixtures sweep
#   DURATION=30s bash bench/run.sh    # longer runs
#   WEBHOOK_BIN=/tmp/devenv-webhook LOADGEN_BIN=/tmp/devenv-loadgen bash bench/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

duration=${DURATION:-10s}
port=${PORT:-18443}
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(saturation latency fixtures sweep)

# WEBHOOK_BIN / LOADGEN_BIN: measure prebuilt binaries instead of building.
hook=${WEBHOOK_BIN:-target/release/devenv-webhook}
loadgen=${LOADGEN_BIN:-target/release/devenv-loadgen}
if [ -z "${WEBHOOK_BIN:-}${LOADGEN_BIN:-}" ]; then
    cargo build --release -p devenv-webhook -p devenv-bench
fi

dir=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
"$hook" gen-certs --out "$dir" --san 127.0.0.1 >/dev/null

start_hook() {
    if [ -n "$pid" ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
    "$hook" serve --listen "127.0.0.1:$port" --cert-dir "$dir" --kube off >"$dir/webhook.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "webhook did not start:" >&2; cat "$dir/webhook.log" >&2; exit 1
}

run() {
    echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# $loadgen --url https://127.0.0.1:$port --ca CA --pid PID $*"
    "$loadgen" --url "https://127.0.0.1:$port" --ca "$dir/ca.crt" --pid "$pid" --json "$@"
}

for s in "${scenarios[@]}"; do
    case "$s" in
    saturation)
        start_hook
        run --endpoint mutate --fixture workspace-pod --connections 16 --duration "$duration" --expect patched
        ;;
    latency)
        start_hook
        run --endpoint mutate --fixture workspace-pod --connections 16 --rate 2000 --duration "$duration" --expect patched
        ;;
    fixtures)
        for f in "mutate workspace-pod patched" "mutate non-workspace-pod unpatched" \
                 "validate workspace-pod any" "validate bare-pod-violations denied" \
                 "validate non-workspace-pod allowed"; do
            set -- $f
            start_hook
            run --endpoint "$1" --fixture "$2" --expect "$3" --connections 16 --duration "$duration"
        done
        ;;
    sweep)
        for c in 1 4 8 32 64; do
            start_hook
            run --endpoint mutate --fixture workspace-pod --connections "$c" --duration "$duration" --expect patched
        done
        ;;
    *)
        echo "unknown scenario $s (saturation latency fixtures sweep)" >&2
        exit 2
        ;;
    esac
done
