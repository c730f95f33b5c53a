#!/usr/bin/env bash
# What an endpoint costs in memory: N endpoints on one network of a daemon with one worker, against N
# kernel macvlan children of the same parent, each measured as the change of /proc/meminfo's
# MemAvailable, Slab and VmallocUsed (the namespaces exist before the first reading, so they are not
# counted). A lab of its own in network namespaces (198.18.0.0/20), removed on exit, also on failure.
#
#   sudo scripts/endpoint-memory.sh [N]        (after `cargo build --release`; default N=256)
set -euo pipefail

BIN=${XMACVLAN_BIN_DIR:-$(dirname "$0")/../target/release}
N=${1:-256}
TAG=xmvmem$$
TMP=$(mktemp -d /tmp/xmacvlan-endpoint-memory.XXXXXX)
DAEMON_PID=

cleanup() {
    set +e
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    fi
    for i in $(seq "$N"); do ip netns del "$TAG-c$i" 2>/dev/null; ip netns del "$TAG-k$i" 2>/dev/null; done
    ip netns del "$TAG-dp" 2>/dev/null; ip netns del "$TAG-wire" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

meminfo() { awk '/^(MemAvailable|Slab|VmallocUsed):/ {printf "%s ", $2}' /proc/meminfo; }
report() {  # LABEL BEFORE AFTER
    read -r a0 s0 v0 <<<"$2"; read -r a1 s1 v1 <<<"$3"
    awk -v l="$1" -v n="$N" -v a=$((a0 - a1)) -v s=$((s1 - s0)) -v v=$((v1 - v0)) 'BEGIN {
        printf "%-34s per endpoint: MemAvailable -%6.0f KiB   Slab +%5.0f KiB   VmallocUsed +%4.0f KiB\n",
            l, a / n, s / n, v / n }'
}

ip netns add "$TAG-dp"; ip netns add "$TAG-wire"
ip link add wire0 netns "$TAG-wire" type veth peer name eth1 netns "$TAG-dp"
ip -n "$TAG-dp" link set eth1 up; ip -n "$TAG-wire" link set wire0 up
for i in $(seq "$N"); do ip netns add "$TAG-c$i"; ip netns add "$TAG-k$i"; done

# Kernel macvlan children first (no daemon yet).
sync; sleep 1; before=$(meminfo)
for i in $(seq "$N"); do
    ip -n "$TAG-dp" link add link eth1 name "m$i" netns "$TAG-k$i" type macvlan mode bridge
    ip -n "$TAG-k$i" link set "m$i" up
done
sleep 1; after=$(meminfo)
report "kernel macvlan, $N children" "$before" "$after"

ip netns exec "$TAG-dp" "$BIN/xmacvlan" daemon --cpus 1 --socket "$TMP/sock" --state-dir "$TMP/state" \
    2>"$TMP/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
X=("$BIN/xmacvlan" --socket "$TMP/sock")
"${X[@]}" network create --subnet 198.18.0.0/20 --gateway 198.18.15.254 -o parent=eth1 memnet >/dev/null
"${X[@]}" network connect memnet "/var/run/netns/$TAG-c1" >/dev/null   # the network's first endpoint
sync; sleep 1; before=$(meminfo)
for i in $(seq 2 "$N"); do "${X[@]}" network connect memnet "/var/run/netns/$TAG-c$i" >/dev/null; done
sleep 1; after=$(meminfo)
N=$((N - 1)) report "xmacvlan, $((N - 1)) endpoints, 1 worker" "$before" "$after"
echo "($(nproc) CPUs, $(uname -r), $(date -u +%F); the kernel's numbers move with its caches: compare in one run)"
