#!/usr/bin/env bash
# xmacvlan demo: a lab in network namespaces, the daemon, three "containers", pings and counters.
# Everything it creates is removed on exit, also on failure or Ctrl-C.
set -euo pipefail

BIN=${XMACVLAN_BIN:-$(dirname "$0")/../target/release/xmacvlan}
TAG=xmvdemo$$
WIRE=$TAG-wire DP=$TAG-dp
CONTAINERS=("$TAG-c1" "$TAG-c2" "$TAG-c3")
TMP=$(mktemp -d /tmp/xmacvlan-demo.XXXXXX)
SOCK=$TMP/xmacvlan.sock
QUEUES=${XMACVLAN_DEMO_QUEUES:-1}          # receive queues of the parent veth
CPUS=${XMACVLAN_DEMO_CPUS:+--cpus $XMACVLAN_DEMO_CPUS}   # e.g. 0,1 for two workers
DAEMON_PID=

cleanup() {
    set +e
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    fi
    for ns in "${CONTAINERS[@]}" "$DP" "$WIRE"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
x() { echo "+ xmacvlan $*"; "$BIN" --socket "$SOCK" "$@"; }

say "lab: wire host <-veth-> parent eth1 (in the daemon's namespace), three container namespaces"
ip netns add "$WIRE"; ip netns add "$DP"
for ns in "${CONTAINERS[@]}"; do ip netns add "$ns"; done
ip link add wire0 netns "$WIRE" numtxqueues "$QUEUES" numrxqueues "$QUEUES" type veth \
    peer name eth1 netns "$DP" numtxqueues "$QUEUES" numrxqueues "$QUEUES"
ip -n "$WIRE" addr add 198.18.0.254/24 dev wire0
ip -n "$WIRE" addr add 2001:2::fe/64 dev wire0 nodad
ip -n "$DP" addr add 198.18.0.253/24 dev eth1
for ns in "$WIRE" "$DP"; do ip -n "$ns" link set lo up; done
ip -n "$WIRE" link set wire0 up; ip -n "$DP" link set eth1 up

start_daemon() {
    # shellcheck disable=SC2086
    ip netns exec "$DP" "$BIN" daemon --socket "$SOCK" --state-dir "$TMP/state" $CPUS &
    DAEMON_PID=$!
    for _ in $(seq 100); do "$BIN" --socket "$SOCK" network ls >/dev/null 2>&1 && return; sleep 0.1; done
    echo "daemon did not start"; exit 1
}
say "daemon (in $DP; workers: ${XMACVLAN_DEMO_CPUS:-one on the last CPU})"
start_daemon

say "network and endpoints"
x network create -d macvlan --subnet 198.18.0.0/24 --gateway 198.18.0.254 \
    --ipv6 --subnet 2001:2::/64 --gateway 2001:2::fe -o parent=eth1 pub_net
x network connect --ip 198.18.0.11 pub_net "${CONTAINERS[0]}"
x network connect --ip 198.18.0.12 pub_net "${CONTAINERS[1]}"
x network connect --mac-address 02:42:c6:12:00:63 pub_net "/var/run/netns/${CONTAINERS[2]}"   # next free address: 198.18.0.1
x network create --internal --subnet 198.19.0.0/24 backend                # no parent, no XDP on the host
x network connect --ifname eth1 --ip 198.19.0.11 backend "${CONTAINERS[0]}"
x network connect --ifname eth1 --ip 198.19.0.13 backend "${CONTAINERS[2]}"
x network ls
x network inspect --format table pub_net
ip -n "$DP" link show eth1 | sed -n 1,3p

say "pings through the datapath"
ip netns exec "${CONTAINERS[0]}" ping -c 3 -i 0.2 198.18.0.12      # container -> container (stays local)
ip netns exec "${CONTAINERS[0]}" ping -c 3 -i 0.2 198.18.0.254     # container -> wire host
ip netns exec "$WIRE" ping -c 3 -i 0.2 198.18.0.1                  # wire host -> container
ip netns exec "${CONTAINERS[0]}" ping -c 2 -i 0.2 2001:2::2        # IPv6: ND through the datapath, no DAD wait
ip netns exec "${CONTAINERS[2]}" ping -c 2 -i 0.2 198.19.0.11      # internal network
say "the host's own address on the parent keeps answering (broadcast ARP reaches host and endpoints)"
ip netns exec "$WIRE" ping -c 2 -i 0.2 198.18.0.253

say "source guard: c2 takes c1's MAC; its frames are dropped and counted (spoofed_src), c1 is unaffected"
ip -n "${CONTAINERS[1]}" link set eth0 address 02:42:c6:12:00:0b
ip netns exec "${CONTAINERS[1]}" ping -c 2 -i 0.2 -W 1 198.18.0.254 || echo "(no reply: the datapath dropped c2's forged frames)"
ip -n "${CONTAINERS[1]}" link set eth0 address 02:42:c6:12:00:0c
ip netns exec "${CONTAINERS[0]}" ping -c 2 -i 0.2 198.18.0.254

say "counters"
x stats

say "crash and restart: kill -9, start again; the datapath's programs are taken over and the endpoints re-adopted from the state file"
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
start_daemon
x network inspect --format table pub_net
ip netns exec "${CONTAINERS[0]}" ping -c 2 -i 0.2 198.18.0.254
x network disconnect pub_net "${CONTAINERS[2]}"
x network rm --force pub_net
x network rm --force backend

say "ipvlan: the containers behind eth1's one MAC, told apart by address (for a switch port that allows one MAC)"
x network create -d ipvlan -o ipvlan_mode=l2 --subnet 198.18.0.0/24 --gateway 198.18.0.254 -o parent=eth1 ipnet
x network connect --ip 198.18.0.21 ipnet "${CONTAINERS[0]}"
x network connect --ip 198.18.0.22 ipnet "${CONTAINERS[1]}"
echo "eth1: $(ip -n "$DP" -o link show eth1 | grep -o 'link/ether [^ ]*')"
for c in "${CONTAINERS[0]}" "${CONTAINERS[1]}"; do
    echo "$c eth0: $(ip -n "$c" -o link show eth0 | grep -o 'link/ether [^ ]*')"
done
ip netns exec "${CONTAINERS[0]}" ping -c 2 -i 0.2 198.18.0.22       # endpoint -> endpoint, by address
ip netns exec "${CONTAINERS[1]}" ping -c 2 -i 0.2 198.18.0.254      # endpoint -> wire
ip netns exec "$WIRE" ping -c 2 -i 0.2 198.18.0.21                  # wire -> endpoint
echo "the wire host's neighbours (one MAC for both containers):"
ip -n "$WIRE" neigh show dev wire0 | grep -E '198\.18\.0\.2[12] ' || true
x network rm --force ipnet
say "done: everything the demo created is removed on exit"
