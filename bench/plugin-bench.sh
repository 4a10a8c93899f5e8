#!/usr/bin/env bash
# Reproduces the plugin-vs-kubectl figures of BENCHMARKS.md (issue 5), end to end:
# a release build of kubectl-devenv, a real control plane on loopback
# (tests/cluster/cluster.sh), 500 workspaces in 5 namespaces applied without the
# webhook (the controller-manager makes their pods and claims, all Pending: no node,
# no storage class), then hyperfine:
#   list     kubectl-devenv list -A | kubectl devenv list -A | kubectl get statefulsets -A -l devenv.io/workspace
#   startup  kubectl devenv --help | kubectl-devenv --help | kubectl version --client
#   floor    the four LISTs that `list -A` sends, with curl (what the API server alone costs)
# plus the peak RSS of `kubectl-devenv list -A` (/usr/bin/time -v) and a check that
# `list -A` prints one row per workspace. The cluster is always taken down.
#
#   bash bench/plugin-bench.sh                       # everything; results in /tmp/plugin-bench
#   OUT=/tmp/pb RUNS=10 WARMUP=1 bash bench/plugin-bench.sh
#   PLUGIN_BIN=/path/kubectl-devenv bash bench/plugin-bench.sh   # no cargo build
#   NAMESPACES=5 PER_NS=100                          # the workspace count (default 5 x 100)
#
# Needs: hyperfine (apt-get install -y hyperfine), /usr/bin/time, curl, python3, kubectl,
# and the Kubernetes binaries of tests/cluster/build.sh. Each figure in $OUT/summary.txt
# carries the load average (the box may be busy: compare figures of one run only).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

out=${OUT:-/tmp/plugin-bench}
runs=${RUNS:-20}
warmup=${WARMUP:-3}
namespaces=${NAMESPACES:-5}
per_ns=${PER_NS:-100}
total=$((namespaces * per_ns))
selector=devenv.io/workspace

die() { echo "plugin-bench: $*" >&2; exit 1; }
log() { echo "plugin-bench: $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg): $*" >&2; }
load() { echo "$(date -u +%FT%TZ) $1 uptime:$(uptime | sed 's/.*load average//')" >>"$out/load.txt"; }

for tool in hyperfine curl python3 kubectl; do
    command -v "$tool" >/dev/null || die "$tool is needed (Debian: apt-get install -y $tool)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is needed (Debian: apt-get install -y time)"

if [ -z "${PLUGIN_BIN:-}" ]; then
    cargo build --release -p kubectl-devenv
    PLUGIN_BIN=$root/target/release/kubectl-devenv
fi
plugin=$(realpath "$PLUGIN_BIN")
[ -x "$plugin" ] || die "$plugin is not an executable"
# `kubectl devenv` finds the plugin on PATH, as users install it.
PATH="$(dirname "$plugin"):$PATH"
export PATH
[ "$(command -v kubectl-devenv)" = "$plugin" ] || die "kubectl-devenv on PATH is not $plugin"

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.md "$out"/load.txt
work=$(mktemp -d)
D=$work/cluster
cleanup() {
    tests/cluster/cluster.sh down "$D" || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- cluster
log "cluster up in $D"
load "before-cluster-up"
DEVENV_CLUSTER_OWNER_PID=$$ tests/cluster/cluster.sh up "$D" >/dev/null
export KUBECONFIG=$D/kubeconfig
# kubectl's discovery cache, private to this run (warmed by hyperfine's warm-up runs).
export KUBECACHEDIR=$work/kube-cache
# shellcheck disable=SC1091
. "$D/cluster.env"

# ---------------------------------------------------------------- seed
log "generating $total workspaces with kubectl-devenv create --dry-run=client"
t0=$SECONDS
for k in $(seq 1 "$namespaces"); do
    kubectl create namespace "ns$k" >/dev/null
    for i in $(seq 0 $((per_ns - 1))); do
        "$plugin" create "ws$i" -n "ns$k" --dry-run=client -o yaml --no-wait
        echo ---
    done >"$work/ns$k.yaml"
done
log "applying (server-side, one batch per namespace, in parallel)"
pids=()
for k in $(seq 1 "$namespaces"); do
    kubectl apply --server-side --field-manager=devenv-bench -f "$work/ns$k.yaml" >"$work/apply-ns$k.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "kubectl apply failed: see $work/apply-ns*.log"; done
log "applied in $((SECONDS - t0))s; waiting for $total pods and $((3 * total)) claims"
count() { kubectl get "$1" -A -l "$selector" --no-headers 2>/dev/null | wc -l; }
prev=
deadline=$((SECONDS + ${SETTLE_TIMEOUT:-900}))
while :; do
    now="$(count pods) $(count persistentvolumeclaims)"
    if [ "$now" = "$total $((3 * total))" ] && [ "$now" = "$prev" ]; then break; fi
    [ "$SECONDS" -lt "$deadline" ] || die "pods/claims did not settle: $now"
    prev=$now
    sleep 10
done
sts=$(count statefulsets)
events=$(kubectl get events -A --no-headers 2>/dev/null | wc -l)
log "settled after $((SECONDS - t0))s: $sts statefulsets, pods/claims $now, $events events"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(nproc) cores, $(uname -r)"
    echo "kubectl: $(kubectl version --client 2>/dev/null | head -1)"
    echo "server: $(kubectl version 2>/dev/null | sed -n 's/^Server Version: //p')"
    echo "plugin: $plugin ($("$plugin" --version))"
    echo "hyperfine: $(hyperfine --version)"
    echo "objects: $sts statefulsets, pods/claims $now, $events events"
    echo "seed: $((SECONDS - t0))s (generate + apply + settle)"
} >"$out/meta.txt"

# ---------------------------------------------------------------- correctness
"$plugin" list -A >"$out/list-A.txt" 2>"$out/list-A.stderr"
rows=$(($(wc -l <"$out/list-A.txt") - 1))
[ "$rows" -eq "$total" ] || die "list -A printed $rows rows, not $total (see $out/list-A.txt)"
awk 'NR > 1 {print $1 "/" $2}' "$out/list-A.txt" | sort >"$work/plugin-names"
kubectl get statefulsets -A -l "$selector" --no-headers \
    -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name | awk '{print $1 "/" $2}' | sort >"$work/kubectl-names"
cmp -s "$work/plugin-names" "$work/kubectl-names" || die "list -A and kubectl get statefulsets name different workspaces"
echo "list -A: $rows rows, same namespace/name set as kubectl get statefulsets; STATUS: $(awk 'NR > 1 {print $4, $5}' "$out/list-A.txt" | sort | uniq -c | sed 's/^ *//' | paste -sd,)" >>"$out/meta.txt"

# ---------------------------------------------------------------- timings
hf() { # hf NAME hyperfine-args..
    local name=$1; shift
    log "hyperfine $name"
    load "before-$name"
    hyperfine --warmup "$warmup" --runs "$runs" --export-json "$out/$name.json" --export-markdown "$out/$name.md" "$@" >&2
    load "after-$name"
}

# kubectl on PATH may be a dispatcher (Google Cloud SDK) that asks the server for its
# version and then runs kubectl.1.MINOR: time that binary directly too, when present.
direct=${KUBECTL_DIRECT:-}
if [ -z "$direct" ]; then
    minor=$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["minor"].rstrip("+"))' || true)
    cand=$(dirname "$(readlink -f "$(command -v kubectl)")")/kubectl.1.$minor
    if [ -n "$minor" ] && [ -x "$cand" ]; then direct=$cand; fi
fi
extra_list=() extra_start=()
if [ -n "$direct" ]; then
    extra_list=(-n "kubectl.1.$minor get statefulsets -A -l $selector (direct)" "$direct get statefulsets -A -l $selector")
    extra_start=(-n "kubectl.1.$minor version --client (direct)" "$direct version --client")
fi

hf list -N \
    -n "kubectl-devenv list -A" "$plugin list -A" \
    -n "kubectl devenv list -A" "kubectl devenv list -A" \
    -n "kubectl get statefulsets -A -l $selector" "kubectl get statefulsets -A -l $selector" \
    -n "kubectl get statefulsets,pods,pvc -A -l $selector" "kubectl get statefulsets,pods,persistentvolumeclaims -A -l $selector" \
    "${extra_list[@]}"

hf startup -N \
    -n "kubectl devenv --help" "kubectl devenv --help" \
    -n "kubectl-devenv --help" "$plugin --help" \
    -n "kubectl version --client" "kubectl version --client" \
    "${extra_start[@]}"

# The API server alone: the requests `list -A` sends (three LISTs at once, then the
# FailedCreate events), with curl, JSON, HTTP/1.1 as kube-rs speaks it.
c="curl -fsS -o /dev/null --http1.1 -H 'Accept: application/json' --cacert $PKI_DIR/ca.crt --cert $PKI_DIR/admin.crt --key $PKI_DIR/admin.key"
q="labelSelector=devenv.io%2Fworkspace"
hf floor \
    -n "curl: the 4 LISTs of list -A" \
    "$c '$APISERVER_URL/apis/apps/v1/statefulsets?$q' & $c '$APISERVER_URL/api/v1/pods?$q' & $c '$APISERVER_URL/api/v1/persistentvolumeclaims?$q' & wait; $c '$APISERVER_URL/api/v1/events?fieldSelector=reason%3DFailedCreate%2CinvolvedObject.kind%3DStatefulSet'"

# ---------------------------------------------------------------- peak RSS
log "peak RSS (/usr/bin/time -v, 5 runs each)"
load "before-rss"
rss() { # rss LABEL CMD..
    local label=$1 i kb=()
    shift
    for i in 1 2 3 4 5; do
        /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>&1
        kb+=("$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")")
    done
    echo "$label: ${kb[*]} KiB"
}
{
    rss "kubectl-devenv list -A" "$plugin" list -A
    rss "kubectl devenv list -A" kubectl devenv list -A
    rss "kubectl get statefulsets -A -l $selector" kubectl get statefulsets -A -l "$selector"
    rss "kubectl-devenv --help" "$plugin" --help
} >"$out/rss.txt"
load "after-rss"

# ---------------------------------------------------------------- summary
python3 - "$out" >"$out/summary.txt" <<'EOF'
import json, math, os, sys
out = sys.argv[1]
def results(name):
    with open(os.path.join(out, name + ".json")) as f:
        return {r["command"]: r for r in json.load(f)["results"]}
def fmt(r):
    return "%8.1f ms ± %6.1f  (median %.1f, min %.1f, max %.1f, user %.1f, sys %.1f)" % (
        r["mean"] * 1e3, r["stddev"] * 1e3, r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3,
        r["user"] * 1e3, r["system"] * 1e3)
def ratio(a, b):
    r = a["mean"] / b["mean"]
    return "%.2f ± %.2f" % (r, r * math.hypot(a["stddev"] / a["mean"], b["stddev"] / b["mean"]))
print(open(os.path.join(out, "meta.txt")).read())
print("load average per phase:\n" + open(os.path.join(out, "load.txt")).read())
ratios = {
    "list": [("kubectl-devenv list -A", "kubectl get statefulsets -A -l devenv.io/workspace"),
             ("kubectl devenv list -A", "kubectl get statefulsets -A -l devenv.io/workspace"),
             ("kubectl-devenv list -A", "kubectl get statefulsets,pods,pvc -A -l devenv.io/workspace"),
             ("kubectl devenv list -A", "kubectl-devenv list -A")],
    "startup": [("kubectl-devenv --help", "kubectl version --client"),
                ("kubectl devenv --help", "kubectl version --client"),
                ("kubectl devenv --help", "kubectl-devenv --help")],
    "floor": [],
}
for group in ("list", "startup", "floor"):
    res = results(group)
    print("== %s (hyperfine, mean ± stddev)" % group)
    for cmd, r in res.items():
        print("  %-62s %s" % (cmd, fmt(r)))
    for a, b in ratios[group]:
        if a in res and b in res:
            print("  ratio %s / %s = %s" % (a, b, ratio(res[a], res[b])))
    direct = [c for c in res if c.endswith("(direct)")]
    for c in direct:
        for a in ("kubectl-devenv list -A", "kubectl-devenv --help"):
            if a in res:
                print("  ratio %s / %s = %s" % (a, c, ratio(res[a], res[c])))
    print()
fl = results("floor")["curl: the 4 LISTs of list -A"]
li = results("list")["kubectl-devenv list -A"]
print("  ratio kubectl-devenv list -A / curl floor = %s\n" % ratio(li, fl))
print("== peak RSS (/usr/bin/time -v, KiB, 5 runs)")
print(open(os.path.join(out, "rss.txt")).read())
EOF
cat "$out/summary.txt"
log "done: $out"
