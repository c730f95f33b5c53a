#!/usr/bin/env bash
# What an endpoint costs in open descriptors of the daemon, for sizing its NOFILE limit: N endpoints
# on one network, counted in /proc/PID/fd after the network's first endpoint and after the last,
# for the default datapath and for `--fast-path off` (every endpoint with AF_XDP sockets), with one
# and with two workers. A lab of its own in network namespaces (198.18.0.0/20), removed on exit,
# also on failure.
#
#   sudo scripts/endpoint-fds.sh [N]        (after `cargo build --release`; default N=128)
set -euo pipefail

BIN=${XMACVLAN_BIN_DIR:-$(dirname "$0")/../target/release}
N=${1:-128}
TAG=xmvfd$$
TMP=$(mktemp -d /tmp/xmacvlan-endpoint-fds.XXXXXX)
DAEMON_PID=

stop_daemon() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
    fi
    DAEMON_PID=
}
cleanup() {
    set +e
    stop_daemon
    for i in $(seq "$N"); do ip netns del "$TAG-c$i" 2>/dev/null; done
    ip netns del "$TAG-dp" 2>/dev/null; ip netns del "$TAG-wire" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$TAG-dp"; ip netns add "$TAG-wire"
ip link add wire0 netns "$TAG-wire" numtxqueues 2 numrxqueues 2 type veth peer name eth1 netns "$TAG-dp" \
    numtxqueues 2 numrxqueues 2
ip -n "$TAG-dp" link set eth1 up; ip -n "$TAG-wire" link set wire0 up
for i in $(seq "$N"); do ip netns add "$TAG-c$i"; done

fds() { ls "/proc/$DAEMON_PID/fd" | wc -l; }

measure() {  # LABEL DAEMON-ARGS...
    local label=$1; shift
    rm -rf "$TMP/state" "$TMP/sock"
    ip netns exec "$TAG-dp" "$BIN/xmacvlan" daemon --socket "$TMP/sock" --state-dir "$TMP/state" "$@" \
        2>"$TMP/daemon.log" &
    DAEMON_PID=$!
    for _ in $(seq 200); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
    local X=("$BIN/xmacvlan" --socket "$TMP/sock")
    "${X[@]}" network create --subnet 198.18.0.0/20 --gateway 198.18.15.254 -o parent=eth1 fdnet >/dev/null
    "${X[@]}" network connect fdnet "/var/run/netns/$TAG-c1" >/dev/null   # the network's first endpoint
    local base; base=$(fds)
    for i in $(seq 2 "$N"); do "${X[@]}" network connect fdnet "/var/run/netns/$TAG-c$i" >/dev/null; done
    local all; all=$(fds)
    awk -v l="$label" -v b="$base" -v a="$all" -v n=$((N - 1)) 'BEGIN {
        printf "%-36s %5d descriptors with 1 endpoint, %5d with %d: %.2f per endpoint\n", l, b, a, n + 1, (a - b) / n }'
    for i in $(seq "$N"); do "${X[@]}" network disconnect fdnet "/var/run/netns/$TAG-c$i" >/dev/null; done
    stop_daemon
}

measure "default (tc fast path), 1 worker" --cpus 1
measure "default (tc fast path), 2 workers" --cpus 0,1
measure "--fast-path off, 1 worker" --cpus 1 --fast-path off
measure "--fast-path off, 2 workers" --cpus 0,1 --fast-path off
echo "($(nproc) CPUs, $(uname -r), $(date -u +%F))"
