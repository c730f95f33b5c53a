#!/usr/bin/env bash
# Jumbo frames on the default datapath against kernel macvlan: a wire with MTU M (default 9000), two
# containers at MTU M on kernel macvlan bridge children, then on an xmacvlan network (a daemon with
# no tuning flags), alternately for R rounds (default 3). Each round checks that an (M − 1000)-byte
# ping with DF set crosses wire → c1 and c1 → c2, and runs iperf3 wire → c1 for 5 s; the wire sends
# finished frames (tx offload off on its veth, as the bench's wire host does), so every TCP segment
# is one frame of up to M bytes.
# A lab of its own in network namespaces (prefix xmvjt<pid>-, addresses from 198.18.9.0/24): a
# daemon from target/release in `dp` on a parent veth eth1 whose peer is in `wire`; everything is
# removed on exit, also on failure or interrupt.
#
#   sudo scripts/jumbo-tcp.sh [M] [R]        (after `cargo build --release`; needs iperf3, ethtool)
#
# FAST_PATH=off|xdp starts the daemon with that --fast-path instead (the AF_XDP paths: see README,
# Limits, for what they do with frames larger than a UMEM chunk).
set -euo pipefail

BIN=${XMACVLAN_BIN_DIR:-$(dirname "$0")/../target/release}
MTU=${1:-9000}
ROUNDS=${2:-3}
case $MTU in '' | *[!0-9]*) echo "jumbo-tcp.sh: MTU must be a number, got '$MTU'" >&2; exit 2 ;; esac
case $ROUNDS in '' | *[!0-9]* | 0) echo "jumbo-tcp.sh: rounds must be a positive integer, got '$ROUNDS'" >&2; exit 2 ;; esac
if [ "$MTU" -lt 1500 ] || [ "$MTU" -gt 65535 ]; then echo "jumbo-tcp.sh: MTU $MTU: out of range 1500..65535" >&2; exit 2; fi
[ -x "$BIN/xmacvlan" ] || { echo "jumbo-tcp.sh: $BIN/xmacvlan not found: run cargo build --release" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "jumbo-tcp.sh: iperf3 not found (make deps installs it)" >&2; exit 2; }
T=xmvjt$$
TMP=$(mktemp -d /tmp/xmacvlan-jumbo.XXXXXX)
DAEMON_PID=
SERVER_PID=

stop_daemon() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
    fi
    DAEMON_PID=
}
cleanup() {
    set +e
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; wait "$SERVER_PID"; fi
    stop_daemon
    for n in c1 c2 dp wire; do ip netns del "$T-$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in dp wire c1 c2; do ip netns add "$T-$n"; done
ip link add wire0 netns "$T-wire" mtu "$MTU" type veth peer name eth1 netns "$T-dp" mtu "$MTU"
ip -n "$T-dp" link set eth1 up
ip -n "$T-wire" link set wire0 up
ip -n "$T-wire" addr add 198.18.9.1/24 dev wire0
ip netns exec "$T-wire" ethtool -K wire0 tx off >/dev/null
for n in wire c1 c2; do ip -n "$T-$n" link set lo up; done

xmv() { "$BIN/xmacvlan" --socket "$TMP/sock" "$@"; }

# Sets the containers up on backend $1.
setup() {
    if [ "$1" = kernel ]; then
        for i in 1 2; do
            ip -n "$T-dp" link add link eth1 name eth0 netns "$T-c$i" mtu "$MTU" type macvlan mode bridge
            ip -n "$T-c$i" addr add "198.18.9.1$i/24" dev eth0
            ip -n "$T-c$i" link set eth0 up
        done
    else
        rm -rf "$TMP/state" "$TMP/sock"
        ip netns exec "$T-dp" "$BIN/xmacvlan" daemon ${FAST_PATH:+--fast-path "$FAST_PATH"} --cpus 1 \
            --socket "$TMP/sock" --state-dir "$TMP/state" 2>>"$TMP/daemon.log" &
        DAEMON_PID=$!
        for _ in $(seq 200); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
        [ -S "$TMP/sock" ] || { echo "the daemon did not start:" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
        xmv network create --subnet 198.18.9.0/24 -o parent=eth1 jumbo >/dev/null
        for i in 1 2; do xmv network connect --ip "198.18.9.1$i" jumbo "/var/run/netns/$T-c$i" >/dev/null; done
    fi
}

teardown() {
    stop_daemon
    for i in 1 2; do ip -n "$T-c$i" link del eth0 2>/dev/null || true; done
    # The next backend's containers have other MACs.
    ip -n "$T-wire" neigh flush dev wire0
}

# ping with DF set: "ok" or "FAILED".
ping_df() { ip netns exec "$1" ping -q -c 2 -W 1 -s $((MTU - 1000)) -M do "$2" >/dev/null 2>&1 && echo ok || echo FAILED; }

echo "MTU $MTU, $ROUNDS round(s); iperf3 wire → c1, 5 s, one stream"
for r in $(seq "$ROUNDS"); do
    for backend in kernel xmacvlan; do
        setup "$backend"
        sleep 0.5
        p1=$(ping_df "$T-wire" 198.18.9.11)
        p2=$(ping_df "$T-c1" 198.18.9.12)
        ip netns exec "$T-c1" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
        SERVER_PID=$!
        sleep 0.5
        out=$(ip netns exec "$T-wire" iperf3 -c 198.18.9.11 -p 5201 -t 5 -J 2>/dev/null || true)
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        tcp=$(printf '%s' "$out" | python3 -c 'import json,sys
try:
    s = json.load(sys.stdin)["end"]["sum_sent"]; print("%.2f Gbit/s (%d retransmits)" % (s["bits_per_second"] / 1e9, s["retransmits"]))
except Exception:
    print("no result")')
        printf 'round %d  %-8s  ping wire→c1 %s, c1→c2 %s  TCP %s\n' "$r" "$backend" "$p1" "$p2" "$tcp"
        teardown
    done
done
