#!/usr/bin/env bash
# End-to-end check of the test node: control plane (cluster.sh) + node (node.sh),
# then a restricted pod with a bound local PV: exec, logs, data kept across pods,
# and the git-daemon image cloned from a second pod. Tears everything down, even on
# failure. Prints timings.
#
#   tests/cluster/node/smoke.sh [DIR]     (DIR default: a new /tmp/devenv-smoke.XXXX)
#
# Needs the binaries of tests/cluster/build.sh and tests/cluster/node/install-deps.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cluster=$(dirname "$here")/cluster.sh
node=$here/node.sh
DIR=${1:-$(mktemp -d /tmp/devenv-smoke.XXXXXX)}
rmdir "$DIR" 2>/dev/null || true # cluster.sh wants a new or empty dir

ok=0
cleanup() {
  local rc=$?
  set +e
  if [ "$ok" != 1 ]; then
    echo "smoke: FAILED (rc $rc); node logs:" >&2
    for f in "$DIR"/node/logs/kubelet.log "$DIR"/node/logs/containerd.log; do
      [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 30 "$f" >&2; }
    done
    kc get pods -A -o wide >&2 2>/dev/null
    kc get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2
  fi
  "$node" down "$DIR"
  "$cluster" down "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kc() { kubectl --kubeconfig "$DIR/kubeconfig" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

t=$(now); "$cluster" up "$DIR" >/dev/null; echo "smoke: control plane up in $(since "$t")"
t=$(now); "$node" up "$DIR" >/dev/null; echo "smoke: node up (Ready, PVs made) in $(since "$t")"
kc get nodes -o wide

kc apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: smoke
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: home, namespace: smoke}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
EOF

# pod NAME IMAGE [COMMAND] [pvc]: a pod that passes pod-security "restricted"
pod() {
  local cmd="" mounts="" vols=""
  [ -z "${3:-}" ] || cmd="command: [/bin/sh, -c, '$3']"
  if [ -n "${4:-}" ]; then
    mounts="volumeMounts: [{name: home, mountPath: /home/dev}]"
    vols="volumes: [{name: home, persistentVolumeClaim: {claimName: home}}]"
  fi
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: smoke, labels: {app: $1}}
spec:
  terminationGracePeriodSeconds: 5
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $2
    imagePullPolicy: Never
    $cmd
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
    $mounts
  $vols
EOF
}

ws_cmd='echo started as uid $(id -u); trap "exit 0" TERM; while :; do sleep 3600 & wait; done'

t=$(now)
pod ws devenv.test/workspace:1 "$ws_cmd" pvc
kc -n smoke wait --for=condition=Ready pod/ws --timeout=120s >/dev/null
echo "smoke: first pod (PVC bind + sandbox + container) Ready in $(since "$t")"
kc -n smoke get pvc home -o jsonpath='{.status.phase} {.spec.volumeName}{"\n"}'
[ "$(kc -n smoke get pvc home -o jsonpath='{.status.phase}')" = Bound ]

uid=$(kc -n smoke exec ws -- id -u)
echo "smoke: kubectl exec id -u -> $uid"
[ "$uid" = 1000 ]
kc -n smoke exec ws -- sh -c 'cd ~ && echo kept > proof && git init -q repo && bash -c "echo bash \$BASH_VERSION" && ls -ln ~' 
logs=$(kc -n smoke logs ws)
echo "smoke: kubectl logs -> $logs"
[ "$logs" = "started as uid 1000" ]
# an interactive TTY session through the API server (what the plugin's attach uses)
tty_out=$(script -qec "kubectl --kubeconfig $DIR/kubeconfig -n smoke exec -it ws -- tty" /dev/null </dev/null | tr -d '\r')
echo "smoke: exec -it -> $(echo "$tty_out" | tr '\n' ' ')"
echo "$tty_out" | grep -q '/dev/pts/[0-9]'  # script(1) may echo a literal ^@ first

t=$(now)
kc -n smoke delete pod ws --wait=true >/dev/null
echo "smoke: pod deleted in $(since "$t")"
t=$(now)
pod ws devenv.test/workspace:1 "$ws_cmd" pvc
kc -n smoke wait --for=condition=Ready pod/ws --timeout=120s >/dev/null
echo "smoke: re-created pod Ready in $(since "$t")"
kept=$(kc -n smoke exec ws -- cat /home/dev/proof)
echo "smoke: file on the PVC after re-create -> $kept"
[ "$kept" = kept ]

# git daemon in a pod, cloned from the workspace pod over the pod network
t=$(now)
pod git devenv.test/git-daemon:1
kc -n smoke wait --for=condition=Ready pod/git --timeout=120s >/dev/null
gip=$(kc -n smoke get pod git -o jsonpath='{.status.podIP}')
echo "smoke: git-daemon pod Ready at $gip in $(since "$t")"
for _ in $(seq 1 50); do
  kc -n smoke exec ws -- sh -c "rm -rf /tmp/c && git clone -q git://$gip/demo.git /tmp/c" 2>/dev/null && break
  sleep 0.2
done
kc -n smoke exec ws -- git -C /tmp/c log --oneline

t=$(now)
"$node" down "$DIR"
echo "smoke: node down in $(since "$t")"
ok=1
echo "smoke: 1 passed, 0 failed"
