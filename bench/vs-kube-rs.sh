#!/usr/bin/env bash
# devenv-webhook against the kube-rs admission example (`examples/admission_controller.rs`),
# side by side in one run, with independent clients: wrk (HTTP/1.1, Debian `wrk`) and
# h2load (h2, what the API server speaks to a webhook; Debian `nghttp2-client`). Both
# servers get the same certificate and the same request: bench/fixtures/workspace-pod.json
# posted to /mutate. Ours does its full policy work and returns a real patch; the example
# adds one label. Rounds alternate between the two so that a change in the machine's load
# hits both. Issue 16's targets: ours ≥ 1.5× the example's requests/s, peak RSS ≤ 2× at 64
# connections; and ours' CPU time per request for every fixture and endpoint.
#
#   KUBE_RS=/path/to/kube-rs bash bench/vs-kube-rs.sh
#
# KUBE_RS: a checkout of https://github.com/kube-rs/kube (nothing of it enters this
# repository; the example is built in release in its own target directory). Environment:
# ROUNDS (default 3), DURATION (wrk seconds, default 8), H2_REQUESTS (per h2load run,
# default 200000), WEBHOOK_BIN (default: build target/release/devenv-webhook).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { echo "vs-kube-rs.sh: $*" >&2; exit 1; }
log() { echo "vs-kube-rs.sh: $*" >&2; }

[ -n "${KUBE_RS:-}" ] && [ -f "$KUBE_RS/examples/admission_controller.rs" ] ||
  die "set KUBE_RS to a kube-rs checkout (git clone https://github.com/kube-rs/kube)"
command -v wrk >/dev/null || die "wrk is needed (Debian: apt-get install -y wrk)"
command -v h2load >/dev/null || die "h2load is needed (Debian: apt-get install -y nghttp2-client)"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
H2_REQUESTS=${H2_REQUESTS:-200000}
OURS_PORT=18443
EXAMPLE_PORT=8443 # the example's own, fixed

if [ -z "${WEBHOOK_BIN:-}" ]; then
  cargo build --release -p devenv-webhook
  WEBHOOK_BIN=${CARGO_TARGET_DIR:-$root/target}/release/devenv-webhook
fi
log "building the kube-rs example in release in $KUBE_RS"
(cd "$KUBE_RS" && cargo build --release -p kube-examples --example admission_controller)
example_bin=$(cd "$KUBE_RS" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/admission_controller
[ -x "$example_bin" ] || die "no $example_bin after the build"

work=$(mktemp -d)
pid=
stop() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap 'stop; rm -rf "$work"' EXIT
"$WEBHOOK_BIN" gen-certs --out "$work/tls" --san 127.0.0.1 >/dev/null
mkdir -p "$work/example"
cp "$work/tls/tls.crt" "$work/example/admission-controller-tls.crt"
cp "$work/tls/tls.key" "$work/example/admission-controller-tls.key"
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("FIXTURE"), "rb"))
wrk.body = f:read("*a")
f:close()
EOF

# start ours|example: a fresh server (its peak RSS is this round's alone).
start() {
  stop
  case $1 in
    ours) "$WEBHOOK_BIN" serve --listen "127.0.0.1:$OURS_PORT" --cert-dir "$work/tls" --kube off \
            >"$work/ours.log" 2>&1 & pid=$!; port=$OURS_PORT ;;
    example) (cd "$work/example" && exec env ADMISSION_PRIVATE_IP=127.0.0.1 "$example_bin") \
            >"$work/example.log" 2>&1 & pid=$!; port=$EXAMPLE_PORT ;;
  esac
  for _ in $(seq 100); do
    curl -sk -o /dev/null -X POST -H 'content-type: application/json' \
      --data-binary @bench/fixtures/workspace-pod.json "https://127.0.0.1:$port/mutate" && return 0
    sleep 0.1
  done
  die "$1 did not answer on $port: $(tail -5 "$work/$1.log")"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }

# wrk CONNECTIONS FIXTURE ENDPOINT -> "req/s p99_ms non2xx cpu_us_per_request"
run_wrk() {
  local c=$1 fixture=$2 endpoint=$3 out t0 t1 rps reqs non2xx p99
  t0=$(cpu_ticks)
  out=$(FIXTURE="bench/fixtures/$fixture.json" wrk -t2 -c"$c" -d"${DURATION}s" --latency \
    -s "$work/post.lua" "https://127.0.0.1:$port/$endpoint")
  t1=$(cpu_ticks)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  [ -n "$rps" ] || die "wrk printed no rate: $out"
  echo "$rps $p99 ${non2xx:-0} $(python3 -c "print(round(($t1-$t0)/$(getconf CLK_TCK)*1e6/$reqs, 1))")"
}
# h2load CONNECTIONS STREAMS -> "req/s succeeded failed"
run_h2() {
  local c=$1 m=$2 out
  local threads=2
  [ "$c" -ge 2 ] || threads=1
  out=$(h2load -n "$H2_REQUESTS" -c "$c" -m "$m" -t "$threads" -H 'content-type: application/json' \
    -d bench/fixtures/workspace-pod.json "https://127.0.0.1:$port/mutate")
  grep -qi 'application protocol: h2' <<<"$out" || die "h2load did not negotiate h2: $out"
  echo "$(awk '/^finished in/ {print $4}' <<<"$out") $(awk '/^status codes:/ {print $3}' <<<"$out") $(awk '/^requests:/ {print $10}' <<<"$out")"
}

echo "date: $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)  kube-rs: $(git -C "$KUBE_RS" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| round | server | wrk -c32 req/s | p99 | non-2xx | CPU µs/req | wrk -c64 req/s | peak RSS at 64 (MiB) | h2load -c32 -m1 req/s | h2load -c1 -m32 req/s | h2 2xx of $H2_REQUESTS ×2 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for server in ours example; do
    start "$server"
    read -r rps32 p99 non2xx cpu <<<"$(run_wrk 32 workspace-pod mutate)"
    read -r rps64 _ non64 _ <<<"$(run_wrk 64 workspace-pod mutate)"
    hwm=$(hwm_kib)
    read -r h2a ok_a _ <<<"$(run_h2 32 1)"
    read -r h2b ok_b _ <<<"$(run_h2 1 32)"
    # The runs are in subshells: an error there leaves these empty.
    [ -n "$rps32" ] && [ -n "$rps64" ] && [ -n "$h2a" ] && [ -n "$h2b" ] || die "a run of round $round ($server) failed (see above)"
    echo "| $round | $server | $rps32 | $p99 | $((non2xx + non64)) | $cpu | $rps64 | $(python3 -c "print(round($hwm/1024, 1))") | $h2a | $h2b | $((ok_a + ok_b)) |"
  done
done
stop

echo
echo "Ours, every fixture and endpoint (wrk -c32, ${DURATION}s; CPU time of the webhook per request):"
echo
echo "| fixture | endpoint | req/s | p99 | non-2xx | CPU µs/req |"
echo "|---|---|---|---|---|---|"
start ours
for fixture in workspace-pod bare-pod-violations non-workspace-pod; do
  for endpoint in mutate validate; do
    read -r rps p99 non2xx cpu <<<"$(run_wrk 32 "$fixture" "$endpoint")"
    [ -n "$rps" ] || die "the wrk run of $fixture on /$endpoint failed (see above)"
    echo "| $fixture | $endpoint | $rps | $p99 | $non2xx | $cpu |"
  done
done
stop
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
