#!/usr/bin/env bash
# A real worker node for the test control plane of tests/cluster/cluster.sh: a
# private containerd (CRI), a bridge CNI network, a kubelet registered as
# system:node:<name>, the test images imported, and local PersistentVolumes.
# See tests/cluster/node/README.md.
#
#   node.sh up DIR          join a node to the cluster in DIR (after `cluster.sh up DIR`);
#                           state lives in DIR/node; waits until the Node is Ready
#   node.sh down DIR        stop the node and remove DIR/node (idempotent; run it
#                           before `cluster.sh down DIR`)
#   node.sh runtime-up DIR  containerd + CNI + images only (no kubelet, no cluster
#                           needed); prints DIR/node/node.env
#   node.sh pvs DIR N       add N more PV sets (one 10Gi + two 1Gi local PVs each)
#   node.sh recycle DIR     wipe Released devenv-local PVs and make them Available
#   node.sh registry DIR 127.0.0.1:PORT [REGISTRY..]
#                           let the node's containerd pull from the plain-HTTP
#                           registry on 127.0.0.1:PORT, and serve every image named
#                           REGISTRY/... (e.g. ghcr.io) from it too: never from REGISTRY
#   node.sh status DIR      what runs
#
# Environment:
#   DEVENV_K8S_BIN        directory with kubelet (default: build.sh's cache dir; never builds)
#   DEVENV_NODE_NAME      node name (default devenv-node, devenv-node-N for slot N>0);
#                         mapped to 127.0.0.1 in /etc/hosts
#   DEVENV_NODE_PV_SETS   PV sets `up` creates (default 4)
#   DEVENV_NODE_TIMEOUT   seconds `up` waits for the Node to be Ready (default 120)
#   DEVENV_IMAGES_CACHE   image cache (see tests/cluster/images/build.sh)
#   DEVENV_PORT_REGISTRY  the port registry shared with cluster.sh
#   KUBECTL               kubectl to use (default: DEVENV_K8S_BIN/kubectl if there, else PATH)
#
# Up to 16 nodes (one per cluster dir) can run at once: each takes a slot N that
# picks its bridge devenvN, pod subnet 10.244.N.0/24 and cgroup root /devenv-N.
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
here=$(dirname "$self")
cluster_dir=$(dirname "$here")
MARKER=.devenv-node
CLUSTER_MARKER=.devenv-cluster
SLOTS=/run/devenv-node
port_registry=${DEVENV_PORT_REGISTRY:-/tmp/devenv-cluster-ports}
SERVICE_CIDR=10.96.0.0/16

die() { echo "node.sh: $*" >&2; exit 1; }
log() { echo "node.sh: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

# ------------------------------------------------------------------ state

# load: the node's settings from N/node.env (written by `up`/`runtime-up`)
load() {
  N=$DIR/node
  SOCK=$N/containerd.sock
  [ -f "$N/node.env" ] || return 1
  # shellcheck disable=SC1091
  . "$N/node.env"
}

settings() {
  N=$DIR/node
  SOCK=$N/containerd.sock
  BRIDGE=devenv$SLOT
  SUBNET=10.244.$SLOT.0/24
  GATEWAY=10.244.$SLOT.1
  CGROUP_ROOT=/devenv-$SLOT
  if [ -z "${NODE_NAME:-}" ]; then
    if [ -n "${DEVENV_NODE_NAME:-}" ]; then NODE_NAME=$DEVENV_NODE_NAME
    elif [ "$SLOT" = 0 ]; then NODE_NAME=devenv-node
    else NODE_NAME=devenv-node-$SLOT; fi
  fi
}

write_env() {
  cat >"$N/node.env" <<EOF
# Written by node.sh; sourceable.
SLOT=$SLOT
NODE_NAME=$NODE_NAME
CONTAINERD_ADDRESS=$SOCK
CONTAINER_RUNTIME_ENDPOINT=unix://$SOCK
BRIDGE=$BRIDGE
SUBNET=$SUBNET
GATEWAY=$GATEWAY
CGROUP_ROOT=$CGROUP_ROOT
KUBELET_PORT=${KUBELET_PORT:-}
KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-}
APISERVER_PORT=${APISERVER_PORT:-}
IMAGES_DIR=${IMAGES_DIR:-}
EOF
}

# take_slot: the lowest free slot (its owner dir is gone or not a node any more)
take_slot() {
  mkdir -p "$SLOTS"
  exec 8>"$SLOTS/.lock"
  flock -w 60 8 || die "could not lock $SLOTS/.lock"
  local i owner
  for i in $(seq 0 15); do
    if [ -e "$SLOTS/$i" ]; then
      owner=$(cat "$SLOTS/$i" 2>/dev/null || true)
      if [ -n "$owner" ] && [ -e "$owner/node/$MARKER" ]; then continue; fi
      # a stale slot: its node dir is gone; clean what it may have left
      stale_cleanup "$i" "$owner"
    fi
    echo "$DIR" >"$SLOTS/$i"
    SLOT=$i
    flock -u 8; exec 8>&-
    return 0
  done
  flock -u 8; exec 8>&-
  die "all 16 node slots are taken (see $SLOTS)"
}

release_slot() {
  [ -n "${SLOT:-}" ] || return 0
  if [ "$(cat "$SLOTS/$SLOT" 2>/dev/null || true)" = "$DIR" ]; then rm -f "$SLOTS/$SLOT"; fi
}

# a slot whose dir vanished without `down` (e.g. rm -rf): drop its bridge, rules, cgroups
stale_cleanup() {
  local s=$1 owner=${2:-} p
  if [ -n "$owner" ]; then
    # its kubelet, containerd and shims may still run: their command lines name its dir
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      case $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) in
        *containerd-shim*"$owner/node/"*) kill_shim "$p" ;;
        *"$owner/node/"*) kill -KILL "$p" 2>/dev/null || true ;;
      esac
    done
    N=$owner/node umount_all
  fi
  BRIDGE=devenv$s CGROUP_ROOT=/devenv-$s net_down
  CGROUP_ROOT=/devenv-$s cgroups_down
}

# ------------------------------------------------------------------ ports

port_is_bindable() {
  python3 -c 'import socket,sys
s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

# alloc_ports N: N free ports reserved in cluster.sh's registry for the cluster DIR
# (so neither hands out the other's), recorded in DIR/ports and N/ports.
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
      if [ -n "$owner" ] && [ -e "$owner/$CLUSTER_MARKER" ]; then continue; fi
      rm -f "$port_registry/$p"
    fi
    port_is_bindable "$p" || continue
    echo "$DIR" >"$port_registry/$p"
    [ ! -e "$DIR/$CLUSTER_MARKER" ] || echo "$p" >>"$DIR/ports"
    echo "$p" >>"$N/ports"
    PORTS+=("$p")
  done
  flock -u 9
  exec 9>&-
}

release_ports() {
  local p
  [ -f "$N/ports" ] || return 0
  while read -r p; do
    [ -n "$p" ] || continue
    if [ "$(cat "$port_registry/$p" 2>/dev/null || true)" = "$DIR" ]; then rm -f "$port_registry/$p"; fi
  done <"$N/ports"
  rm -f "$N/ports"
}

# ------------------------------------------------------------------ processes

alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
# ours PID: alive and its command line names our node dir (a recycled pid is never killed)
ours() { alive "$1" && { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$N"; }

start() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$N/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$N/pids"
}
pid_of() { { awk -v n="$1" '$1 == n { print $2 }' "$N/pids" 2>/dev/null || true; } | tail -n1; }

# stop NAME [TIMEOUT]: TERM the process group, wait, KILL
stop() {
  local pid deadline
  pid=$(pid_of "$1")
  [ -n "$pid" ] || return 0
  if ours "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ${2:-15}))
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if alive "$pid"; then
      log "$1 (pid $pid) did not stop on SIGTERM: SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    fi
  fi
  sed -i "/^$1 /d" "$N/pids" 2>/dev/null || true
}

# pids of this node's containerd shims: they run detached from containerd with
# `-address N/containerd.sock` on their command line
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    case $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) in
      *containerd-shim*" -address $SOCK "*) echo "$p" ;;
    esac
  done
  return 0
}

# kill_shim PID: SIGKILL a shim and remove its socket, which containerd names
# /run/containerd/s/sha256(<containerd address>/<namespace>/<id>)
kill_shim() {
  local pid=$1 ns="" id="" addr="" prev="" a
  for a in $({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null); do
    case $prev in -namespace) ns=$a ;; -id) id=$a ;; -address) addr=$a ;; esac
    prev=$a
  done
  kill -KILL "$pid" 2>/dev/null || true
  if [ -n "$ns" ] && [ -n "$id" ] && [ -n "$addr" ]; then
    rm -f "/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)"
  fi
}

# ------------------------------------------------------------------ binaries

find_kubelet() {
  local dir
  if [ -n "${DEVENV_K8S_BIN:-}" ]; then dir=$DEVENV_K8S_BIN
  elif [ -f "$DIR/cluster.env" ] && grep -q '^DEVENV_K8S_BIN=' "$DIR/cluster.env"; then
    dir=$(sed -n 's/^DEVENV_K8S_BIN=//p' "$DIR/cluster.env")
  else
    local k8s etcd
    k8s=$(sed -n 's/^K8S_VERSION=\([^[:space:]]*\).*/\1/p' "$cluster_dir/build.sh" | head -n1)
    etcd=$(sed -n 's/^ETCD_VERSION=\([^[:space:]]*\).*/\1/p' "$cluster_dir/build.sh" | head -n1)
    dir=${DEVENV_K8S_CACHE:-$HOME/.cache/devenv-k8s}/k8s-$k8s-etcd-$etcd
  fi
  [ -x "$dir/kubelet" ] || die "no kubelet in $dir: run tests/cluster/build.sh first (cold: 30+ minutes) or set DEVENV_K8S_BIN"
  KUBELET=$dir/kubelet
}

check_tools() {
  local t missing=()
  for t in containerd containerd-shim-runc-v2 runc ctr umoci skopeo busybox iptables ip openssl \
      python3 setsid flock; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  for t in bridge host-local loopback portmap; do [ -x "/usr/lib/cni/$t" ] || missing+=("cni/$t"); done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run tests/cluster/node/install-deps.sh"
  [ "$(id -u)" = 0 ] || die "must run as root (containerd, kubelet, mounts, bridge)"
}

# ------------------------------------------------------------------ cgroups

# cgroup v1 (this machine) or v2; the kubelet's cgroupRoot must exist beforehand
cgroups_up() {
  local h
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    mkdir -p "/sys/fs/cgroup$CGROUP_ROOT"
    return 0
  fi
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ "$(stat -fc %T "$h")" = cgroupfs ] || [ "$(stat -fc %T "$h")" = cgroup2fs ] || continue
    mkdir -p "$h$CGROUP_ROOT"
    if [ -f "$h/cpuset.cpus" ]; then
      [ -n "$(cat "$h$CGROUP_ROOT/cpuset.cpus")" ] || cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
      [ -n "$(cat "$h$CGROUP_ROOT/cpuset.mems")" ] || cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
    fi
  done
}

# remove the cgroup tree under CGROUP_ROOT (deepest first); processes left in it are killed
cgroups_down() {
  local h d p
  for h in /sys/fs/cgroup /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -d "$h$CGROUP_ROOT" ] || continue
    for p in $(find "$h$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
      kill -KILL "$p" 2>/dev/null || true
    done
    find "$h$CGROUP_ROOT" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  done
  return 0
}

# ------------------------------------------------------------------ network

ipt_rules() {
  # Pods talk to each other and to the host only: nothing forwarded between the
  # bridge and any other interface (no route out, no masquerade, and this drop).
  echo "FORWARD -i $BRIDGE ! -o $BRIDGE -m comment --comment devenv-node -j DROP"
  echo "FORWARD -o $BRIDGE ! -i $BRIDGE -m comment --comment devenv-node -j DROP"
}

# The `kubernetes` Service (10.96.0.1:443) for pods, as kube-proxy would route it: the
# API server listens on 127.0.0.1 only, so connections from the bridge to 10.96.0.1:443
# are DNATed to it (route_localnet on the bridge lets them reach 127.0.0.1; the
# kubelet's KUBE-FIREWALL lets DNATed ones in). The serving certificate has
# IP:10.96.0.1. Only when a cluster's API server port is known (not for runtime-up).
SERVICE_IP=10.96.0.1
nat_rules() {
  [ -n "${APISERVER_PORT:-}" ] || return 0
  echo "PREROUTING -i $BRIDGE -d $SERVICE_IP/32 -p tcp --dport 443 -m comment --comment devenv-node -j DNAT --to-destination 127.0.0.1:$APISERVER_PORT"
}

apiserver_route_up() {
  local r
  APISERVER_PORT=$(sed -n 's/^APISERVER_PORT=//p' "$DIR/cluster.env" 2>/dev/null || true)
  [ -n "$APISERVER_PORT" ] || return 0
  sysctl -qw "net.ipv4.conf.$BRIDGE.route_localnet=1"
  while read -r r; do
    # shellcheck disable=SC2086
    iptables -w -t nat -C $r 2>/dev/null || iptables -w -t nat -I $r
  done < <(nat_rules)
  write_env
}

net_up() {
  local r
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  while read -r r; do
    # shellcheck disable=SC2086
    iptables -w -C $r 2>/dev/null || iptables -w -I $r
  done < <(ipt_rules)
  mkdir -p "$N/cni" "$N/cni-ipam"
  cat >"$N/cni/10-devenv.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "devenv-$SLOT",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$N/cni-ipam",
        "ranges": [[{ "subnet": "$SUBNET", "gateway": "$GATEWAY" }]],
        "routes": [{ "dst": "$SERVICE_CIDR" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

net_down() {
  local r v
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$v" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
  fi
  while read -r r; do
    # shellcheck disable=SC2086
    while iptables -w -C $r 2>/dev/null; do iptables -w -D $r || break; done
  done < <(ipt_rules)
  # the DNAT rules by what they match, not by nat_rules: a stale slot's cleanup does
  # not know the API server port its rule names
  while read -r r; do
    # shellcheck disable=SC2086
    iptables -w -t nat -D ${r#-A } 2>/dev/null || true
  done < <(iptables -w -t nat -S PREROUTING 2>/dev/null | grep -F -- "-i $BRIDGE " | grep -F -- "devenv-node" || true)
  return 0
}

# the chains every kubelet makes (v4 and v6): KUBE-FIREWALL (drops non-local
# sources to 127/8), KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT; kept while another
# node of ours runs
kubelet_iptables_down() {
  other_nodes_running && return 0
  local ipt t c
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for c in INPUT OUTPUT; do
      while "$ipt" -w -C "$c" -j KUBE-FIREWALL 2>/dev/null; do "$ipt" -w -D "$c" -j KUBE-FIREWALL || break; done
    done
    for t in filter nat mangle; do
      for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        if "$ipt" -w -t "$t" -S "$c" >/dev/null 2>&1; then
          "$ipt" -w -t "$t" -F "$c" 2>/dev/null || true
          "$ipt" -w -t "$t" -X "$c" 2>/dev/null || true
        fi
      done
    done
  done
  return 0
}

# what the kubelet, containerd and libcni keep at fixed host paths: ours goes;
# the directories go when empty (never a system runtime's state)
host_paths_down() {
  local f id
  for f in /var/lib/cni/results/"devenv-$SLOT"-*; do
    [ -e "$f" ] || continue
    id=${f#/var/lib/cni/results/devenv-"$SLOT"-}; id=${id%-*}
    rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  if ! other_nodes_running; then
    # the kubelet's device-plugin socket is at a fixed path whatever --root-dir says
    [ -S /var/lib/kubelet/device-plugins/kubelet.sock ] && rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  fi
  for f in /var/lib/cni/results /var/lib/cni /var/lib/kubelet/device-plugins /var/lib/kubelet \
      /var/log/containers /run/containerd/fifo /run/containerd/s /run/containerd/runc/k8s.io \
      /run/containerd/runc /run/containerd; do
    [ -d "$f" ] && rmdir "$f" 2>/dev/null || true
  done
  return 0
}

# ------------------------------------------------------------------ mounts

# unmount everything under N (deepest first), lazily if busy
umount_all() {
  local m i
  for i in 1 2 3; do
    mapfile -t ms < <(awk -v d="$N" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [ ${#ms[@]} -gt 0 ] || return 0
    for m in "${ms[@]}"; do
      # mountinfo escapes spaces etc. as \040: decode
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

# ------------------------------------------------------------------ containerd

containerd_up() {
  mkdir -p "$N/containerd/root" "$N/containerd/state" "$N/containerd/opt"
  # Overlay on this filesystem? (some VMs/container hosts refuse it): test once.
  local snap=overlayfs t=$N/overlay-test
  mkdir -p "$t/l" "$t/u" "$t/w" "$t/m"
  if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
    umount "$t/m"
  else
    snap=native
    log "overlayfs does not mount under $N: using the native snapshotter"
  fi
  rm -rf "$t"
  SNAPSHOTTER=$snap
  cat >"$N/containerd.toml" <<EOF
# Private containerd of the devenv test node: own root, state, socket.
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$N/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: without this every sandbox fails with
  # "can't get final child's PID from pipe" (runc cannot lower oom_score_adj).
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snap"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state of our containers under N, not /run/containerd/runc
        Root = "$N/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni"
    max_conf_num = 1

  # hosts.toml per registry (node.sh registry): none until then, so nothing is pulled
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$N/certs.d"
EOF
  mkdir -p "$N/certs.d"
  start containerd containerd --config "$N/containerd.toml"
  local deadline=$((SECONDS + 30))
  until ctr -a "$SOCK" version >/dev/null 2>&1; do
    alive "$(pid_of containerd)" || fail_with containerd "containerd exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_with containerd "containerd did not answer on $SOCK in 30s"
    sleep 0.2
  done
}

containerd_down() {
  local pid ids id p deadline
  if [ -S "$SOCK" ] && alive "$(pid_of containerd || echo 0)"; then
    # SIGKILL every task (pods and any `ctr run` ones); the CRI plugin reaps its
    # own exits (and unmounts their rootfs); delete what is left once
    for ns in k8s.io default; do
      ids=$(ctr -a "$SOCK" -n "$ns" tasks ls -q 2>/dev/null || true)
      [ -n "$ids" ] || continue
      for id in $ids; do ctr -a "$SOCK" -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
      deadline=$((SECONDS + 10))
      while ctr -a "$SOCK" -n "$ns" tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q .; do
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.1
      done
      for id in $(ctr -a "$SOCK" -n "$ns" tasks ls -q 2>/dev/null || true); do
        ctr -a "$SOCK" -n "$ns" tasks delete "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  stop containerd 20
  # shims outlive containerd by design: stop ours (and their containers with them)
  for pid in $(shim_pids); do kill_shim "$pid"; done
  return 0
}

import_images() {
  local t0=$SECONDS
  IMAGES_DIR=$("$cluster_dir/images/build.sh" import "$SOCK" "$SNAPSHOTTER") || fail_with containerd "image build/import failed"
  # shellcheck disable=SC1091
  . "$IMAGES_DIR/images.env"
  log "images imported in $((SECONDS - t0))s from $IMAGES_DIR"
}

# ------------------------------------------------------------------ kubelet

# node_cert NAME EKU SUBJECT [SAN]: N/pki/NAME.{key,crt} signed by the cluster CA
node_cert() {
  local name=$1 eku=$2 subj=$3 san=${4:-} ext
  mkdir -p "$N/pki"
  ext=$N/pki/$name.ext
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$N/pki/$name.key" -out "$N/pki/$name.csr" -subj "$subj" 2>>"$N/logs/openssl.log"
  openssl x509 -req -in "$N/pki/$name.csr" -CA "$CA_CRT" -CAkey "$CA_KEY" \
    -set_serial "0x1$(openssl rand -hex 15)" -days 365 -extfile "$ext" \
    -out "$N/pki/$name.crt" 2>>"$N/logs/openssl.log"
  rm -f "$N/pki/$name.csr" "$ext"
  chmod 600 "$N/pki/$name.key"
}

hosts_entry() {
  # the API server reaches the kubelet by its Hostname address (exec, logs)
  if ! awk -v h="$NODE_NAME" '$1 == "127.0.0.1" { for (i = 2; i <= NF; i++) if ($i == h) f = 1 } END { exit !f }' /etc/hosts; then
    # /etc/hosts may be a bind mount: append in place, never replace the file
    echo "127.0.0.1 $NODE_NAME # devenv test node" >>/etc/hosts
  fi
}

kubelet_up() {
  local server
  CA_CRT=$DIR/pki/ca.crt
  CA_KEY=$DIR/pki/ca.key
  [ -f "$CA_CRT" ] && [ -f "$CA_KEY" ] || die "no cluster CA in $DIR/pki (ca.crt, ca.key): run cluster.sh up $DIR first"
  [ -f "$DIR/kubeconfig" ] || die "no $DIR/kubeconfig: run cluster.sh up $DIR first"
  server=$(sed -n 's/^ *server: *//p' "$DIR/kubeconfig" | head -n1)
  [ -n "$server" ] || die "no server: in $DIR/kubeconfig"
  hosts_entry

  node_cert kubelet-client clientAuth "/O=system:nodes/CN=system:node:$NODE_NAME"
  node_cert kubelet-serving serverAuth "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$GATEWAY"
  cat >"$N/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: devenv-test
  cluster:
    server: $server
    certificate-authority: $CA_CRT
users:
- name: system:node:$NODE_NAME
  user:
    client-certificate: $N/pki/kubelet-client.crt
    client-key: $N/pki/kubelet-client.key
contexts:
- name: node
  context: {cluster: devenv-test, user: "system:node:$NODE_NAME"}
current-context: node
EOF
  chmod 600 "$N/kubelet.kubeconfig"
  # Pods need no DNS here; this keeps their queries on their own loopback.
  printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$N/resolv.conf"
  mkdir -p "$N/kubelet" "$N/pod-logs" "$N/volume-plugins"

  alloc_ports 2
  KUBELET_PORT=${PORTS[0]} KUBELET_HEALTHZ_PORT=${PORTS[1]}
  cat >"$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $N/pki/kubelet-serving.crt
tlsPrivateKeyFile: $N/pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 10s}
  x509: {clientCAFile: $CA_CRT}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
# cgroup v1 here, no systemd: cgroupfs; the QoS tree lives under our own root
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failCgroupV1: false
# no CAP_SYS_RESOURCE: the kubelet may not lower its own oom_score_adj
oomScoreAdj: 0
failSwapOn: false
# do not refuse to start on the host's kernel defaults; node.sh restores the
# sysctls the kubelet changes (vm.overcommit_memory, kernel.panic, ...) on down
protectKernelDefaults: false
# no DNS server runs: pods get the pod's own loopback as nameserver (no query
# leaves the pod) and no "MissingClusterDNS" warning event per pod
clusterDNS: [127.0.0.1]
clusterDomain: cluster.local
resolvConf: $N/resolv.conf
staticPodPath: ""
podLogsDir: $N/pod-logs
volumePluginDir: $N/volume-plugins
hairpinMode: none
serializeImagePulls: false
localStorageCapacityIsolation: true
# images are imported, never pulled: never garbage-collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 256Mi
  nodefs.inodesFree: 1%
  imagefs.available: 256Mi
  imagefs.inodesFree: 1%
evictionPressureTransitionPeriod: 10s
maxPods: 110
nodeStatusUpdateFrequency: 5s
nodeStatusReportFrequency: 1m
syncFrequency: 10s
fileCheckFrequency: 20s
runtimeRequestTimeout: 5m
registerNode: true
shutdownGracePeriod: 0s
EOF
  start kubelet "$KUBELET" \
    --config="$N/kubelet.yaml" \
    --kubeconfig="$N/kubelet.kubeconfig" \
    --root-dir="$N/kubelet" \
    --cert-dir="$N/pki" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$GATEWAY" \
    --v=2
  write_env
}

# The kubelet (protectKernelDefaults: false) sets vm.overcommit_memory=1,
# kernel.panic=10, kernel.panic_on_oops=1, ...; the bridge plugin ip_forward=1.
# The values from before the first node are kept machine-wide and put back
# when the last node goes down.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward"
save_sysctls() {
  mkdir -p "$SLOTS"
  (
    flock -w 60 8 || exit 0
    # shellcheck disable=SC2086
    [ -f "$SLOTS/sysctl.saved" ] || sysctl -e $SYSCTLS 2>/dev/null | sed 's/ = /=/' >"$SLOTS/sysctl.saved"
  ) 8>"$SLOTS/.lock"
  return 0
}
restore_sysctls() {
  [ -f "$SLOTS/sysctl.saved" ] || return 0
  (
    flock -w 60 8 || exit 0
    other_nodes_running && exit 0
    while read -r kv; do sysctl -qw "$kv" 2>/dev/null || true; done <"$SLOTS/sysctl.saved"
    rm -f "$SLOTS/sysctl.saved"
  ) 8>"$SLOTS/.lock"
  return 0
}
other_nodes_running() {
  local f owner
  for f in "$SLOTS"/[0-9]*; do
    [ -e "$f" ] || continue
    owner=$(cat "$f" 2>/dev/null || true)
    [ "$owner" != "$DIR" ] && [ -e "$owner/node/$MARKER" ] && return 0
  done
  return 1
}

# kubectl: $KUBECTL, else one next to the cluster's binaries, else the PATH's
kc() {
  if [ -z "${KC:-}" ]; then
    local b=${DEVENV_K8S_BIN:-}
    [ -n "$b" ] || b=$(sed -n 's/^DEVENV_K8S_BIN=//p' "$DIR/cluster.env" 2>/dev/null || true)
    if [ -n "${KUBECTL:-}" ]; then KC=$KUBECTL
    elif [ -n "$b" ] && [ -x "$b/kubectl" ]; then KC=$b/kubectl
    else KC=kubectl; fi
  fi
  "$KC" --kubeconfig "$DIR/kubeconfig" "$@"
}

node_ready() {
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ------------------------------------------------------------------ storage

storage_class() {
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: devenv-local
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
}

# pvs COUNT: COUNT more sets of local PVs (10Gi + 2x1Gi: a workspace pod's three claims)
make_pvs() {
  local count=$1 i start last name size docs=""
  last=$(ls "$N/pv" 2>/dev/null | sed -n 's/^set-\([0-9]*\)-.*/\1/p' | sort -n | tail -n1 || true)
  start=$(( ${last:--1} + 1 ))
  for i in $(seq "$start" $((start + count - 1))); do
    for size in 10Gi 1Gi-a 1Gi-b; do
      name=set-$i-$(echo "$size" | tr 'A-Z' 'a-z')
      mkdir -p "$N/pv/$name"
      chmod 0777 "$N/pv/$name"
      docs+="---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $NODE_NAME-$name
  labels: {devenv.test/node: $NODE_NAME}
spec:
  capacity: {storage: ${size%%-*}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: devenv-local
  volumeMode: Filesystem
  local: {path: $N/pv/$name}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [$NODE_NAME]}
"
    done
  done
  printf '%s' "$docs" | kc apply -f - >/dev/null
}

# Released PVs (their claim was deleted): wipe the directory, drop the claimRef
recycle_pvs() {
  local pv path n=0
  for pv in $(kc get pv -l "devenv.test/node=$NODE_NAME" \
      -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}'); do
    path=$(kc get pv "$pv" -o jsonpath='{.spec.local.path}')
    case $path in "$N/pv/"*) ;; *) continue ;; esac
    find "$path" -mindepth 1 -delete 2>/dev/null || rm -rf "${path:?}"/* "${path:?}"/.[!.]* 2>/dev/null || true
    kc patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null
    n=$((n + 1))
  done
  log "recycled $n PVs"
}

# ------------------------------------------------------------------ registries

# registry LOOPBACK [NAME..]: hosts.toml files, which containerd reads at every pull
cmd_registry() {
  local reg=$1 name dir
  shift
  [[ $reg =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "registry $reg: only a plain-HTTP registry on 127.0.0.1:PORT"
  for name in "$reg" "$@"; do
    [[ $name =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || die "registry host '$name': HOST or HOST:PORT"
    dir=$N/certs.d/$name
    mkdir -p "$dir"
    # server: where images named NAME/... come from: the loopback registry, so
    # containerd never falls back to NAME itself
    cat >"$dir/hosts.toml.tmp" <<EOF
# Written by node.sh registry: images named $name/... come from http://$reg
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve"]
EOF
    mv "$dir/hosts.toml.tmp" "$dir/hosts.toml"
  done
  log "containerd pulls $reg/... $(printf '%s/... ' "$@")from http://$reg"
}

# ------------------------------------------------------------------ commands

FAILED=""
fail_with() {
  local comp=$1; shift
  log "up failed: $*"
  if [ -n "$comp" ] && [ -f "$N/logs/$comp.log" ]; then
    echo "----- last 40 lines of $N/logs/$comp.log -----" >&2
    tail -n 40 "$N/logs/$comp.log" >&2
    echo "----- end of $comp.log -----" >&2
  fi
  FAILED=1
  teardown
  log "stopped; logs kept in $N/logs (\`node.sh down $DIR\` removes $N)"
  exit 1
}

begin() {
  check_tools
  [ ! -e "$DIR/node/$MARKER" ] || die "$DIR/node already holds a node: node.sh down $DIR first"
  mkdir -p "$DIR"
  N=$DIR/node
  rm -rf "$N"; mkdir -p "$N/logs"
  : >"$N/$MARKER"
  take_slot
  settings
  write_env
  trap '[ -n "$FAILED" ] || { FAILED=1; log "interrupted"; teardown; }' EXIT
  trap 'exit 130' INT TERM
}

runtime_up() {
  save_sysctls
  cgroups_up
  net_up
  # the pause image tag must be known before containerd starts: read it from the build
  IMAGES_DIR=$("$cluster_dir/images/build.sh") || fail_with "" "image build failed"
  # shellcheck disable=SC1091
  . "$IMAGES_DIR/images.env"
  containerd_up
  import_images
  write_env
}

cmd_runtime_up() {
  local t0=$SECONDS
  begin
  runtime_up
  FAILED=0; trap - EXIT INT TERM
  log "runtime up in $((SECONDS - t0))s: ctr -a $SOCK -n k8s.io ..."
  echo "$N/node.env"
}

cmd_up() {
  local t0=$SECONDS timeout=${DEVENV_NODE_TIMEOUT:-120} deadline
  [ -e "$DIR/$CLUSTER_MARKER" ] && [ -f "$DIR/kubeconfig" ] || die "$DIR is not a cluster made by cluster.sh up"
  find_kubelet
  begin
  runtime_up
  apiserver_route_up
  kubelet_up
  deadline=$((SECONDS + timeout))
  until node_ready; do
    alive "$(pid_of kubelet)" || fail_with kubelet "kubelet exited"
    alive "$(pid_of containerd)" || fail_with containerd "containerd exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_with kubelet "Node $NODE_NAME not Ready after ${timeout}s"
    sleep 0.5
  done
  local t_ready=$((SECONDS - t0))
  storage_class
  make_pvs "${DEVENV_NODE_PV_SETS:-4}"
  FAILED=0; trap - EXIT INT TERM
  log "node $NODE_NAME Ready in ${t_ready}s (up in $((SECONDS - t0))s); kubelet on 127.0.0.1:$KUBELET_PORT, pods in $SUBNET"
  echo "$N/node.env"
}

# teardown: stop everything, undo host changes; leaves N (logs) in place
teardown() {
  [ -n "${N:-}" ] || return 0
  # best effort from here on: one step failing must not skip the others
  set +e
  [ -n "${SOCK:-}" ] || SOCK=$N/containerd.sock
  # the kubelet first, so it does not restart what we stop
  stop kubelet 20
  containerd_down
  [ -z "${BRIDGE:-}" ] || net_down
  kubelet_iptables_down
  umount_all
  [ -z "${CGROUP_ROOT:-}" ] || cgroups_down
  restore_sysctls
  # container log symlinks the kubelet keeps in /var/log/containers
  local l
  for l in /var/log/containers/*.log; do
    [ -L "$l" ] || continue
    case $(readlink "$l") in "$N"/*) rm -f "$l" ;; esac
  done
  [ -z "${SLOT:-}" ] || host_paths_down
  release_ports
  release_slot
  rm -f "$N/pids"
  set -e
}

# the Node and its PVs leave the API with the node (their data is gone): best
# effort, the control plane may be down already
api_cleanup() {
  [ -n "${NODE_NAME:-}" ] && [ -f "$DIR/kubeconfig" ] || return 0
  local k=(kc --request-timeout=5s) pvs
  "${k[@]}" get --raw /readyz >/dev/null 2>&1 || return 0
  pvs=$("${k[@]}" get pv -l "devenv.test/node=$NODE_NAME" -o name 2>/dev/null || true)
  if [ -n "$pvs" ]; then
    # shellcheck disable=SC2086
    "${k[@]}" delete --wait=false $pvs >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    "${k[@]}" patch $pvs --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  fi
  "${k[@]}" delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
}

cmd_down() {
  N=$DIR/node
  local f
  [ -e "$N" ] || return 0
  if [ ! -e "$N/$MARKER" ]; then
    # DIR was rm -rf'ed under a running node (e.g. `cluster.sh down` first): what
    # is left are busy mount points; the slot file still names DIR
    for f in "$SLOTS"/[0-9]*; do
      [ "$(cat "$f" 2>/dev/null || true)" = "$DIR" ] && SLOT=${f##*/}
    done
    if [ -z "${SLOT:-}" ]; then
      if [ -n "$(awk -v d="$N" 'index($5, d "/") == 1' /proc/self/mountinfo)" ]; then
        die "$N has no $MARKER and no slot names it, but things are mounted under it: not touching it"
      fi
      die "$N has no $MARKER and no slot names it: not touching it (nothing is mounted under it; its node was cleaned when its slot was reused: rm -rf it)"
    fi
    log "$N lost its files under a running node: cleaning up slot $SLOT"
    settings
    stale_cleanup "$SLOT" "$DIR"
  else
    load || true
  fi
  SOCK=$N/containerd.sock
  teardown
  api_cleanup
  if [ -n "$(awk -v d="$N" 'index($5, d) == 1' /proc/self/mountinfo)" ]; then
    die "mounts left under $N: not removing it"
  fi
  rm -rf -- "$N"
}

cmd_status() {
  N=$DIR/node
  load || die "no node in $DIR"
  grep -v '^#' "$N/node.env"
  local name pid
  while read -r name pid; do
    if ours "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: NOT running (pid $pid)"; fi
  done <"$N/pids"
  echo "shims: $(shim_pids | wc -l)"
  if [ -f "$DIR/kubeconfig" ]; then kc get node "$NODE_NAME" -o wide 2>&1 || true; fi
}

[ $# -ge 2 ] || usage
cmd=$1
DIR=$(realpath -m -- "$2")
shift 2
[ "$DIR" != / ] || die "refusing DIR=/"
case $cmd in
  up) [ $# -eq 0 ] || usage; cmd_up ;;
  runtime-up) [ $# -eq 0 ] || usage; cmd_runtime_up ;;
  down) [ $# -eq 0 ] || usage; cmd_down ;;
  pvs) [ $# -eq 1 ] || usage; load || die "no node in $DIR"; make_pvs "$1" ;;
  recycle) [ $# -eq 0 ] || usage; load || die "no node in $DIR"; recycle_pvs ;;
  registry) [ $# -ge 1 ] || usage; load || die "no node in $DIR"; cmd_registry "$@" ;;
  status) [ $# -eq 0 ] || usage; cmd_status ;;
  *) usage ;;
esac
