#!/usr/bin/env bash
# Starts and stops a real Kubernetes control plane on loopback for the end-to-end
# suites (and for use by hand): etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler, built by tests/cluster/build.sh. See tests/cluster/README.md.
#
#   cluster.sh up DIR                  start a control plane in DIR (new or empty);
#                                      prints DIR/kubeconfig (admin, context devenv-test)
#   cluster.sh down DIR                stop it and remove DIR (idempotent)
#   cluster.sh user DIR NAME [GROUP..] mint a client certificate CN=NAME O=GROUP..;
#                                      prints DIR/NAME.kubeconfig
#   cluster.sh status DIR              which components run, on which ports
#
# Environment:
#   DEVENV_K8S_BIN           directory with etcd, kube-apiserver, kube-controller-manager,
#                            kube-scheduler (default: the cache dir of build.sh)
#   DEVENV_CLUSTER_BUILD=1   build the binaries with build.sh when missing (cold: 30+ min);
#                            otherwise a missing binary is an error that says so
#   DEVENV_CLUSTER_TIMEOUT   seconds `up` waits for the whole control plane (default 180)
#   DEVENV_CLUSTER_STOP_TIMEOUT seconds `down` waits after SIGTERM before SIGKILL (default 10)
#   DEVENV_K8S_CACHE         build.sh's cache root (default ~/.cache/devenv-k8s)
#   DEVENV_CLUSTER_OWNER_PID when set, a watchdog runs `down DIR` once that process is
#                            gone (the Rust harness passes its own pid: no leak on kill -9)
#   DEVENV_PORT_REGISTRY     where port reservations live (default /tmp/devenv-cluster-ports)
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
here=$(dirname "$self")
MARKER=.devenv-cluster
port_registry=${DEVENV_PORT_REGISTRY:-/tmp/devenv-cluster-ports}
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # first address of SERVICE_CIDR: the `kubernetes` Service

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

usage() {
  sed -n '2,/^set -euo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

abspath() { realpath -m -- "$1"; }

# ---------------------------------------------------------------- binaries

# The binaries build.sh caches, without starting a build: a build is 30+ minutes,
# which a test run must never start by surprise.
find_bins() {
  local need=(etcd kube-apiserver kube-controller-manager kube-scheduler) dir missing=() b
  if [ -n "${DEVENV_K8S_BIN:-}" ]; then
    dir=$DEVENV_K8S_BIN
  else
    local k8s etcd
    k8s=$(sed -n 's/^K8S_VERSION=\([^[:space:]]*\).*/\1/p' "$here/build.sh" | head -n1)
    etcd=$(sed -n 's/^ETCD_VERSION=\([^[:space:]]*\).*/\1/p' "$here/build.sh" | head -n1)
    { [ -n "$k8s" ] && [ -n "$etcd" ]; } || die "cannot read K8S_VERSION/ETCD_VERSION from $here/build.sh"
    dir=${DEVENV_K8S_CACHE:-$HOME/.cache/devenv-k8s}/k8s-$k8s-etcd-$etcd
  fi
  for b in "${need[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
  if [ ${#missing[@]} -gt 0 ] && [ -z "${DEVENV_K8S_BIN:-}" ] && [ "${DEVENV_CLUSTER_BUILD:-}" = 1 ]; then
    log "building the Kubernetes binaries with $here/build.sh (cold: 30+ minutes)"
    dir=$("$here/build.sh")
    missing=()
    for b in "${need[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    die "Kubernetes binaries are not built: missing ${missing[*]} in $dir." \
        "Run tests/cluster/build.sh first (a cold build takes 30+ minutes on 2 cores)," \
        "or set DEVENV_K8S_BIN to a directory holding them, or DEVENV_CLUSTER_BUILD=1."
  fi
  BIN=$dir
}

# ---------------------------------------------------------------- ports

# Ports are reserved in a registry shared by all runs on the machine, under a lock,
# below the kernel's ephemeral range (so no outgoing connection takes one between
# the pick and the bind), and each is checked free by binding it. A reservation
# lasts until `down`, or until its cluster directory is gone (stale, reclaimed).
port_is_bindable() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# alloc_ports N: sets PORTS to N free ports, all reserved for $DIR.
alloc_ports() {
  local n=$1 lo hi eph_lo p tries=0 owner
  PORTS=()
  mkdir -p "$port_registry"
  eph_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  lo=10000; hi=$((eph_lo - 1))
  [ "$hi" -gt $((lo + 1000)) ] || { lo=20000; hi=29999; }
  exec 9>"$port_registry/.lock"
  flock -w 60 9 || die "could not lock $port_registry/.lock"
  while [ ${#PORTS[@]} -lt "$n" ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 2000 ] || { flock -u 9; die "no free port found in $lo-$hi"; }
    p=$(( lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1) ))
    if [ -e "$port_registry/$p" ]; then
      owner=$(cat "$port_registry/$p" 2>/dev/null || true)
      if [ -n "$owner" ] && [ -e "$owner/$MARKER" ]; then continue; fi
      rm -f "$port_registry/$p" # its cluster directory is gone: stale
    fi
    port_is_bindable "$p" || continue
    echo "$DIR" >"$port_registry/$p"
    echo "$p" >>"$DIR/ports"
    PORTS+=("$p")
  done
  flock -u 9
  exec 9>&-
}

release_ports() {
  local p
  [ -f "$DIR/ports" ] || return 0
  while read -r p; do
    [ -n "$p" ] || continue
    if [ "$(cat "$port_registry/$p" 2>/dev/null || true)" = "$DIR" ]; then rm -f "$port_registry/$p"; fi
  done <"$DIR/ports"
  rm -f "$DIR/ports"
}

# ---------------------------------------------------------------- certificates

ossl() { openssl "$@" 2>>"$DIR/logs/openssl.log" || die "openssl $1 failed: see $DIR/logs/openssl.log"; }

# new_ca [NAME [CN]]: NAME.key/NAME.crt in $PKI (default ca, devenv-test-ca).
new_ca() {
  local name=${1:-ca} cn=${2:-devenv-test-ca}
  ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.crt" -days 3650 -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign"
}

# new_cert NAME EKU SUBJECT [SAN [CA]]: NAME.key/NAME.crt in $PKI signed by CA (default ca).
new_cert() {
  local name=$1 eku=$2 subj=$3 san=${4:-} ca=${5:-ca} ext
  ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$ext"
  ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj"
  ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
    -set_serial "0x1$(openssl rand -hex 15)" -days 365 -extfile "$ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$ext"
  chmod 600 "$PKI/$name.key"
}

# subject CN [GROUP..] -> /O=g1/O=g2/CN=cn
subject() {
  local cn=$1 s="" g; shift
  for g in "$@"; do s+="/O=$g"; done
  echo "$s/CN=$cn"
}

# write_kubeconfig FILE USER CERTNAME
write_kubeconfig() {
  local file=$1 user=$2 cert=$3 tmp
  tmp="$file.tmp.$$"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: devenv-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$cert.crt")
    client-key-data: $(base64 -w0 <"$PKI/$cert.key")
contexts:
- name: devenv-test
  context:
    cluster: devenv-test
    user: $user
    namespace: default
current-context: devenv-test
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

# ---------------------------------------------------------------- processes

# Field 22 of /proc/PID/stat (start time): tells a process from a later one with the same pid.
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# alive PID: running (a zombie is dead).
alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# ours PID START: alive and started at START (as recorded in DIR/pids), so a recycled
# pid is never signalled.
ours() {
  [ -n "${2:-}" ] && [ "$2" != - ] && alive "$1" && [ "$(proc_start "$1")" = "$2" ]
}

# start NAME CMD..: CMD in its own session and process group, output to logs/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  local pid=$! st
  st=$(proc_start "$pid") || true
  echo "$name $pid ${st:--}" >>"$DIR/pids"
}

# stop_all: TERM every process group in DIR/pids, wait, then KILL what is left.
stop_all() {
  local name pid st pids=() deadline
  [ -f "$DIR/pids" ] || return 0
  while read -r name pid st; do
    [ -n "${pid:-}" ] || continue
    [ "$pid" = "$$" ] && continue # the watchdog runs `down` as itself
    ours "$pid" "$st" || continue
    pids+=("$pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done < <(tac "$DIR/pids")
  deadline=$((SECONDS + ${DEVENV_CLUSTER_STOP_TIMEOUT:-10}))
  for pid in "${pids[@]}"; do
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then
      log "pid $pid did not stop on SIGTERM: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do
    deadline=$((SECONDS + 5))
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  done
  rm -f "$DIR/pids"
}

# ---------------------------------------------------------------- waiting

FAILED=""
# fail_with COMPONENT MESSAGE: report, show the component's log tail, stop everything.
fail_with() {
  local comp=$1; shift
  log "up failed: $*"
  if [ -n "$comp" ] && [ -f "$DIR/logs/$comp.log" ]; then
    echo "----- last 40 lines of $DIR/logs/$comp.log -----" >&2
    tail -n 40 "$DIR/logs/$comp.log" >&2
    echo "----- end of $comp.log -----" >&2
  fi
  FAILED=1
  stop_all
  release_ports
  log "stopped; logs kept in $DIR/logs (\`cluster.sh down $DIR\` removes DIR)"
  exit 1
}

# check_running: every started component is still alive, or fail with its log.
check_running() {
  local name pid st
  while read -r name pid st; do
    ours "$pid" "$st" || fail_with "$name" "$name (pid $pid) exited" \
      "(recorded start ${st:-?}, /proc says: $(cut -d' ' -f1-5,22 "/proc/$pid/stat" 2>/dev/null || echo gone))"
  done <"$DIR/pids"
}

# wait_for COMPONENT WHAT CMD..: retry CMD until it succeeds or the deadline passes.
wait_for() {
  local comp=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    check_running
    [ "$SECONDS" -lt "$DEADLINE" ] || fail_with "$comp" "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.2
  done
}

# The probes below run through wait_for "$@", which shellcheck does not follow.
# shellcheck disable=SC2317
admin_curl() {
  curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}
# shellcheck disable=SC2317
readyz_ok() { [ "$(admin_curl /readyz)" = ok ]; }
# shellcheck disable=SC2317
healthz_ok() { [ "$(curl -ksS --max-time 5 "https://127.0.0.1:$1/healthz")" = ok ]; }
# shellcheck disable=SC2317
etcd_ok() { curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

# ---------------------------------------------------------------- commands

cmd_up() {
  local t0=$SECONDS
  TIMEOUT=${DEVENV_CLUSTER_TIMEOUT:-180}
  DEADLINE=$((SECONDS + TIMEOUT))
  for tool in openssl curl python3 setsid flock base64; do
    command -v "$tool" >/dev/null || die "$tool is needed (Debian: apt-get install -y openssl curl python3 util-linux)"
  done
  find_bins
  if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR is not empty: give a new or empty directory"
  fi
  mkdir -p "$DIR/logs" "$DIR/etcd"
  chmod 700 "$DIR" "$DIR/etcd"
  : >"$DIR/$MARKER"
  PKI=$DIR/pki
  mkdir -p "$PKI"
  # Exists from here until `down`: the watchdog stops watching once it is gone.
  : >"$DIR/pids"
  trap '[ -n "$FAILED" ] || { FAILED=1; log "interrupted"; stop_all; release_ports; }' EXIT
  trap 'exit 130' INT TERM

  alloc_ports 5
  ETCD_PORT=${PORTS[0]} ETCD_PEER_PORT=${PORTS[1]} APISERVER_PORT=${PORTS[2]}
  KCM_PORT=${PORTS[3]} SCHEDULER_PORT=${PORTS[4]}

  # --- certificates and keys
  new_ca
  new_cert apiserver serverAuth "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$(hostname)"
  new_cert admin clientAuth "$(subject devenv-admin system:masters)"
  new_cert apiserver-kubelet-client clientAuth "$(subject kube-apiserver-kubelet-client system:masters)"
  new_cert kube-controller-manager clientAuth "$(subject system:kube-controller-manager)"
  new_cert kube-scheduler clientAuth "$(subject system:kube-scheduler)"
  # The front proxy (aggregation layer): its own CA, as in kubeadm, so the
  # controller-manager's and scheduler's delegated authentication find a
  # requestheader CA in configmap kube-system/extension-apiserver-authentication.
  new_ca front-proxy-ca devenv-test-front-proxy-ca
  new_cert front-proxy-client clientAuth "/CN=front-proxy-client" "" front-proxy-ca
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
  ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  chmod 600 "$PKI/ca.key" "$PKI/front-proxy-ca.key" "$PKI/sa.key"
  write_kubeconfig "$DIR/kubeconfig" devenv-admin admin
  write_kubeconfig "$PKI/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  write_kubeconfig "$PKI/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  cat >"$DIR/cluster.env" <<EOF
# Written by cluster.sh up; sourceable.
DEVENV_K8S_BIN=$BIN
KUBECONFIG=$DIR/kubeconfig
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
APISERVER_PORT=$APISERVER_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
PKI_DIR=$PKI
SERVICE_CIDR=$SERVICE_CIDR
EOF

  # --- a watchdog that takes the cluster down when its owner process is gone
  if [ -n "${DEVENV_CLUSTER_OWNER_PID:-}" ]; then
    local owner=$DEVENV_CLUSTER_OWNER_PID owner_start
    owner_start=$(proc_start "$owner") || true
    [ -n "$owner_start" ] || die "DEVENV_CLUSTER_OWNER_PID=$owner is not a running process"
    # It waits for this `up` too: an `up` whose owner dies midway finishes (and on
    # failure cleans up) before the watchdog takes the cluster down.
    # shellcheck disable=SC2016
    start watchdog bash -c '
      owner=$1 owner_start=$2 up=$3 up_start=$4 dir=$5 script=$6
      st() { sed "s/^.*) //" "/proc/$1/stat" 2>/dev/null | cut -d" " -f20; }
      while { [ "$(st "$owner")" = "$owner_start" ] || [ "$(st "$up")" = "$up_start" ]; } && [ -e "$dir/pids" ]; do
        sleep 1
      done
      if [ -e "$dir/pids" ]; then
        echo "watchdog: owner $owner is gone: taking the cluster down"
        exec "$script" down "$dir"
      fi' devenv-cluster-watchdog "$owner" "$owner_start" "$$" "$(proc_start $$)" "$DIR" "$self"
  fi

  # --- etcd
  start etcd "$BIN/etcd" \
    --name=devenv \
    --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="devenv=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --initial-cluster-token="devenv-$$" \
    --unsafe-no-fsync \
    --log-level=warn
  wait_for etcd "etcd /health on 127.0.0.1:$ETCD_PORT" etcd_ok

  # --- kube-apiserver
  # Admission: the default-on set (NamespaceLifecycle, LimitRanger, ServiceAccount,
  # PodSecurity, ..., the validating/mutating webhook plugins); --enable-admission-plugins
  # only adds NodeRestriction to it, which belongs with --authorization-mode=Node.
  # --endpoint-reconciler-type=none: the advertise address is loopback, which an
  # Endpoints object may not hold, so the default (lease) reconciler would log an error
  # every 10 s. The `kubernetes` Service still exists, without endpoints.
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=Hostname \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false
  wait_for kube-apiserver "kube-apiserver /readyz on 127.0.0.1:$APISERVER_PORT" readyz_ok

  # --- kube-controller-manager and kube-scheduler
  # Each with its own client certificate (the RBAC bootstrap roles for
  # system:kube-controller-manager / system:kube-scheduler), also for delegated
  # authentication and authorization of their own HTTPS endpoints (/metrics with the
  # admin certificate works; /healthz is always allowed). --flex-volume-plugin-dir
  # keeps the controller-manager from creating /usr/libexec/kubernetes/... on the host.
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$KCM_PORT" \
    --cert-dir="$PKI/kube-controller-manager-serving" \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" \
    --cluster-name=devenv-test \
    --flex-volume-plugin-dir="$DIR/flexvolume" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --use-service-account-credentials=true \
    --controllers='*' \
    --leader-elect=false \
    --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$PKI/kube-scheduler-serving" \
    --leader-elect=false \
    --profiling=false
  wait_for kube-controller-manager "kube-controller-manager /healthz on 127.0.0.1:$KCM_PORT" healthz_ok "$KCM_PORT"
  wait_for kube-scheduler "kube-scheduler /healthz on 127.0.0.1:$SCHEDULER_PORT" healthz_ok "$SCHEDULER_PORT"
  wait_for kube-apiserver "the default namespace" admin_curl /api/v1/namespaces/default
  wait_for kube-controller-manager "the default ServiceAccount in namespace default" \
    admin_curl /api/v1/namespaces/default/serviceaccounts/default

  FAILED=0 # success: the EXIT trap leaves the cluster running
  trap - EXIT INT TERM
  log "control plane up in $((SECONDS - t0))s: export KUBECONFIG=$DIR/kubeconfig (server https://127.0.0.1:$APISERVER_PORT)"
  echo "$DIR/kubeconfig"
}

cmd_down() {
  if [ ! -e "$DIR" ]; then return 0; fi
  if [ ! -e "$DIR/$MARKER" ]; then
    die "$DIR was not made by cluster.sh up (no $MARKER): not touching it"
  fi
  # A node (tests/cluster/node/node.sh) first: its busy mounts would make rm -rf fail.
  if [ -e "$DIR/node" ]; then
    "$here/node/node.sh" down "$DIR" || log "node.sh down $DIR failed; continuing"
  fi
  stop_all
  release_ports
  rm -rf -- "$DIR"
}

cmd_user() {
  local name=${1:-}
  [ -n "$name" ] || usage
  shift
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._@:-]*$ ]] || die "user name '$name': use letters, digits and ._@:-"
  local g
  for g in "$@"; do [[ $g =~ ^[A-Za-z0-9][A-Za-z0-9._@:-]*$ ]] || die "group '$g': use letters, digits and ._@:-"; done
  { [ -e "$DIR/$MARKER" ] && [ -f "$DIR/cluster.env" ]; } || die "$DIR is not a cluster made by cluster.sh up"
  PKI=$DIR/pki
  APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$DIR/cluster.env")
  local cert="user-${name//:/_}"
  new_cert "$cert" clientAuth "$(subject "$name" "$@")"
  write_kubeconfig "$DIR/$name.kubeconfig" "$name" "$cert"
  echo "$DIR/$name.kubeconfig"
}

cmd_status() {
  [ -e "$DIR/$MARKER" ] || die "$DIR is not a cluster made by cluster.sh up"
  local name pid st rc=0
  [ -f "$DIR/cluster.env" ] && grep -v '^#' "$DIR/cluster.env"
  if [ -f "$DIR/pids" ]; then
    while read -r name pid st; do
      if ours "$pid" "$st"; then echo "$name: running (pid $pid)"; else echo "$name: NOT running (pid $pid)"; rc=1; fi
    done <"$DIR/pids"
  else
    echo "no processes recorded"; rc=1
  fi
  return $rc
}

main() {
  [ $# -ge 2 ] || usage
  local cmd=$1
  DIR=$(abspath "$2")
  shift 2
  [ "$DIR" != / ] || die "refusing DIR=/"
  case $cmd in
    up) [ $# -eq 0 ] || usage; cmd_up ;;
    down) [ $# -eq 0 ] || usage; cmd_down ;;
    user) cmd_user "$@" ;;
    status) [ $# -eq 0 ] || usage; cmd_status ;;
    *) usage ;;
  esac
}

# One line, ending in exit: bash has read all of it before running it, so editing this
# file while a cluster starts (bash reads scripts as it goes) cannot break the run.
main "$@"; exit $?
