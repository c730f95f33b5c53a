#!/usr/bin/env bash
# How long xmacvlan-cni takes per verb, as a runtime sees it: N containers get ADD (host-local +
# veth + XDP + every worker acknowledging), CHECK (link, addresses, routes in the container + the
# probe frame through the datapath) and DEL (host-local + veth), one at a time, each timed around
# the plugin process (its `ip netns exec` start included). Prints median and max per verb.
# A lab of its own in network namespaces (198.18.0.0/24), removed on exit, also on failure.
#
#   sudo scripts/cni-timing.sh [N]        (after `cargo build --release`; default N=20)
set -euo pipefail

BIN=${XMACVLAN_BIN_DIR:-$(dirname "$0")/../target/release}
N=${1:-20}
TAG=xmvcni$$
TMP=$(mktemp -d /tmp/xmacvlan-cni-timing.XXXXXX)
DAEMON_PID=

cleanup() {
    set +e
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    fi
    for i in $(seq "$N"); do ip netns del "$TAG-c$i" 2>/dev/null; done
    ip netns del "$TAG-dp" 2>/dev/null; ip netns del "$TAG-wire" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$TAG-dp"; ip netns add "$TAG-wire"
ip link add wire0 netns "$TAG-wire" type veth peer name eth1 netns "$TAG-dp"
ip -n "$TAG-dp" link set eth1 up; ip -n "$TAG-wire" link set wire0 up
ip netns exec "$TAG-dp" "$BIN/xmacvlan" daemon --cpus 1 --socket "$TMP/sock" --state-dir "$TMP/state" \
    2>"$TMP/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$TMP/sock" ] && break; sleep 0.05; done

CONF='{"cniVersion":"1.0.0","name":"timing","type":"xmacvlan-cni","master":"eth1","socket":"'$TMP'/sock",
 "ipam":{"type":"host-local","dataDir":"'$TMP'/ipam","ranges":[[{"subnet":"198.18.0.0/24",
 "rangeStart":"198.18.0.100","gateway":"198.18.0.254"}]],"routes":[{"dst":"0.0.0.0/0"}]}}'

plugin() {  # VERB INDEX CONFIG
    echo "$3" | CNI_COMMAND=$1 CNI_CONTAINERID="c$2" CNI_NETNS="/var/run/netns/$TAG-c$2" CNI_IFNAME=eth0 \
        CNI_PATH=/usr/lib/cni ip netns exec "$TAG-dp" "$BIN/xmacvlan-cni"
}
with_prev() {  # RESULT → CONF with it as prevResult (built before the clock starts)
    python3 -c 'import json,sys; c=json.loads(sys.argv[1]); c["prevResult"]=json.loads(sys.argv[2]); print(json.dumps(c))' "$CONF" "$1"
}
now_us() { echo $(( $(date +%s%N) / 1000 )); }
summary() {  # LABEL TIMES…
    local label=$1; shift
    printf '%s\n' "$@" | sort -n | awk -v l="$label" '{a[NR]=$1} END {printf "%-6s median %6.1f ms   max %6.1f ms   (n=%d)\n", l, a[int((NR+1)/2)]/1000, a[NR]/1000, NR}'
}

for i in $(seq "$N"); do ip netns add "$TAG-c$i"; done
declare -a ADD CHECK DEL CHECKCONF
for i in $(seq "$N"); do t=$(now_us); r=$(plugin ADD "$i" "$CONF"); ADD+=($(( $(now_us) - t ))); CHECKCONF[$i]=$(with_prev "$r"); done
for i in $(seq "$N"); do t=$(now_us); plugin CHECK "$i" "${CHECKCONF[$i]}" >/dev/null; CHECK+=($(( $(now_us) - t ))); done
for i in $(seq "$N"); do t=$(now_us); plugin DEL "$i" "$CONF" >/dev/null; DEL+=($(( $(now_us) - t ))); done
echo "xmacvlan-cni, $N containers, $(nproc) CPUs, $(uname -r), $(date -u +%F)"
summary ADD "${ADD[@]}"
summary CHECK "${CHECK[@]}"
summary DEL "${DEL[@]}"
