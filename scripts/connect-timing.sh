#!/usr/bin/env bash
# How `xmacvlan network connect` and `disconnect` scale with the endpoint count: N container
# namespaces are connected to one network one at a time, each call timed around the CLI process
# (request, the daemon's work — veth pair, XDP, AF_XDP sockets, every worker acknowledging, the
# state file — and the reply), then all disconnected again. Prints, per verb: the first call,
# median, p99, max, the median of the last 10 % of the calls (in call order: is the 1024th as fast
# as the first?) and the total. With all N connected it also times the read-only commands (stats,
# inspect, ls; median of 5, output to a pipe, so every row).
# A lab of its own in network namespaces (prefix xmvct<pid>-, addresses from 198.18.0.0/15):
# a daemon from target/release in `dp` on a parent veth eth1 whose peer is in `wire`; everything is
# removed on exit, also on failure or interrupt.
#
#   sudo scripts/connect-timing.sh [N]        (after `cargo build --release`; default N=256)
#
# PERF_OUT=FILE also records the daemon during the connects (perf record -e cpu-clock -g);
# TIMES_OUT=FILE writes every call's time (verb, index, µs) for plotting; DAEMON_LOG=FILE keeps
# the daemon's stderr. NO_IPV6=1 turns IPv6 off in the containers before they are connected: no
# container then sends the MLD and neighbour discovery multicast that every other endpoint gets a
# copy of, which leaves the control plane's own cost.
set -euo pipefail

BIN=${XMACVLAN_BIN_DIR:-$(dirname "$0")/../target/release}
N=${1:-256}
case $N in '' | *[!0-9]* | 0) echo "connect-timing.sh: N must be a positive integer, got '$N'" >&2; exit 2 ;; esac
if [ "$N" -gt 4000 ]; then echo "connect-timing.sh: N=$N: at most 4000 endpoints fit in 198.18.0.0/20" >&2; exit 2; fi
[ -x "$BIN/xmacvlan" ] || { echo "connect-timing.sh: $BIN/xmacvlan not found: run cargo build --release" >&2; exit 2; }
TAG=xmvct$$
TMP=$(mktemp -d /tmp/xmacvlan-connect-timing.XXXXXX)
DAEMON_PID=
PERF_PID=
MADE=0

cleanup() {
    set +e
    if [ -n "$PERF_PID" ] && kill -0 "$PERF_PID" 2>/dev/null; then kill -INT "$PERF_PID"; wait "$PERF_PID"; fi
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    fi
    # A container namespace takes its end of an endpoint's veth pair with it.
    for i in $(seq "$MADE"); do ip netns del "$TAG-c$i" 2>/dev/null; done
    ip netns del "$TAG-dp" 2>/dev/null; ip netns del "$TAG-wire" 2>/dev/null
    if [ -n "${DAEMON_LOG:-}" ]; then cp "$TMP/daemon.log" "$DAEMON_LOG"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$TAG-dp"; ip netns add "$TAG-wire"
ip link add wire0 netns "$TAG-wire" type veth peer name eth1 netns "$TAG-dp"
ip -n "$TAG-dp" link set eth1 up; ip -n "$TAG-wire" link set wire0 up
ip netns exec "$TAG-dp" "$BIN/xmacvlan" daemon --cpus 1 --socket "$TMP/sock" --state-dir "$TMP/state" \
    2>"$TMP/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
[ -S "$TMP/sock" ] || { echo "the daemon did not start:" >&2; cat "$TMP/daemon.log" >&2; exit 1; }

xmv() { "$BIN/xmacvlan" --socket "$TMP/sock" "$@"; }
for i in $(seq "$N"); do
    ip netns add "$TAG-c$i"; MADE=$i
    if [ -n "${NO_IPV6:-}" ]; then
        ip netns exec "$TAG-c$i" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    fi
done
xmv network create --subnet 198.18.0.0/20 --gateway 198.18.0.1 -o parent=eth1 timing >/dev/null

us() { local t=${EPOCHREALTIME/./}; echo "${t#0}"; }  # microseconds, without a fork of date
summary() {  # LABEL TIMES… (µs, in call order)
    local label=$1; shift
    local n=$# tail=$(( ($# + 9) / 10 ))
    # Sorted, then the last 10 % (in call order) sorted: awk picks ranks from both.
    { printf '%s\n' "$@" | sort -n; printf '%s\n' "${@: -$tail}" | sort -n; } | awk -v l="$label" -v n="$n" -v k="$tail" \
        -v first="$1" '
        NR <= n { s[NR] = $1; sum += $1; next }
        { t[NR - n] = $1 }
        function med(a, m) { return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
        END {
            p99 = s[int((99 * n + 99) / 100)]   # nearest rank
            printf "%-10s first %7.1f ms  median %7.1f ms  p99 %7.1f ms  max %7.1f ms  last 10%% median %7.1f ms  total %8.2f s  (n=%d)\n",
                l, first / 1000, med(s, n) / 1000, p99 / 1000, s[n] / 1000, med(t, k) / 1000, sum / 1e6, n
        }'
}

if [ -n "${PERF_OUT:-}" ]; then
    perf record -e cpu-clock -g -p "$DAEMON_PID" -o "$PERF_OUT" 2>"$TMP/perf.log" &
    PERF_PID=$!
    sleep 0.5
fi
declare -a CONNECT DISCONNECT
for i in $(seq "$N"); do
    t=$(us); xmv network connect timing "$TAG-c$i" >/dev/null; CONNECT+=($(( $(us) - t )))
done
if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=; fi
query() {  # LABEL ARGS…: median of 5 calls, ms
    local label=$1; shift
    local ts=() t
    for _ in 1 2 3 4 5; do t=$(us); xmv "$@" >/dev/null; ts+=($(( $(us) - t ))); done
    printf '%s %s ms' "$label" "$(printf '%s\n' "${ts[@]}" | sort -n | sed -n 3p | awk '{printf "%.1f", $1 / 1000}')"
}
QUERIES="$(query 'stats json' stats --format json), $(query 'stats table' stats), $(query 'inspect json' network inspect --format json timing), $(query 'inspect table' network inspect --format table timing), $(query ls network ls)"
for i in $(seq "$N"); do
    t=$(us); xmv network disconnect timing "$TAG-c$i" >/dev/null; DISCONNECT+=($(( $(us) - t )))
done
xmv network rm timing >/dev/null
if [ -n "${TIMES_OUT:-}" ]; then
    { for i in "${!CONNECT[@]}"; do echo "connect $((i + 1)) ${CONNECT[$i]}"; done
      for i in "${!DISCONNECT[@]}"; do echo "disconnect $((i + 1)) ${DISCONNECT[$i]}"; done; } >"$TIMES_OUT"
fi
echo "xmacvlan network connect/disconnect, $N endpoints on one network, one worker${NO_IPV6:+, IPv6 off in the containers}, $(nproc) CPUs, $(uname -r), $(date -u +%F)"
summary connect "${CONNECT[@]}"
summary disconnect "${DISCONNECT[@]}"
echo "with $N endpoints (median of 5): $QUERIES"
