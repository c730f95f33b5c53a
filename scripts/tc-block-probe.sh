#!/usr/bin/env bash
# A measurement for the next datapath step (issue 15): can container endpoints do without an XDP
# program — which strips TSO/GSO from the container's end of a veth — and still reach the daemon's
# BPF, at a control-plane cost that stays flat with the endpoint count?
#
# The candidate: every endpoint's daemon-side veth end joins ONE shared tc block (a clsact qdisc
# with `ingress_block`), and one program attached to the block once serves them all. This script
# measures, in a lab of its own:
#   1. container -> container TCP (iperf3, one stream, client on CPU 0, server on CPU 1) through a
#      minimal block program (bpf_redirect_peer to the other endpoint), against two kernel macvlan
#      bridge children in the same run, both with TSO as the containers have it;
#   2. what the control plane pays with N veth ends in the namespace: joining the block, leaving
#      it, and deleting a veth pair with and without membership (each measured as one batch).
# A per-device tcx attachment, by contrast, waits for an RCU grace period (~16 ms each here: README,
# Measured results, "The relay and the collector").
#
#   sudo scripts/tc-block-probe.sh [N]        (default N=1000; needs clang, iproute2, iperf3)
#
# Namespaces xmvtb<pid>-*, addresses from 198.18.0.0/15; everything is removed on exit, also on
# failure or interrupt.
set -euo pipefail

N=${1:-1000}
case $N in '' | *[!0-9]*) echo "tc-block-probe.sh: N must be an integer of at least 4, got '$N'" >&2; exit 2 ;; esac
[ "$N" -ge 4 ] || { echo "tc-block-probe.sh: N must be an integer of at least 4, got '$N'" >&2; exit 2; }
for tool in clang tc ip iperf3 python3; do
    command -v "$tool" >/dev/null || { echo "tc-block-probe.sh: $tool not found" >&2; exit 2; }
done
TAG=xmvtb$$
TMP=$(mktemp -d /tmp/xmacvlan-tc-block.XXXXXX)
SERVER_PID=
NSES=(dp c1 c2 m1 m2 join)

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    for n in "${NSES[@]}"; do ip netns del "$TAG-$n" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

in_ns() { local n=$1; shift; ip netns exec "$TAG-$n" "$@"; }

# The block program: frames entering endpoint A's daemon-side end go to B's container end and
# back (the indices are fixed when the pair is created).
A=901 B=902
cat >"$TMP/block.bpf.c" <<'EOF'
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
SEC("tc")
int block_probe(struct __sk_buff *skb)
{
	if (skb->ingress_ifindex == A)
		return bpf_redirect_peer(B, 0);
	if (skb->ingress_ifindex == B)
		return bpf_redirect_peer(A, 0);
	return TC_ACT_OK;
}
char LICENSE[] SEC("license") = "GPL";
EOF
clang -O2 -g -target bpf -DA=$A -DB=$B -I/usr/include/x86_64-linux-gnu -c "$TMP/block.bpf.c" -o "$TMP/block.o"

for n in "${NSES[@]}"; do ip netns add "$TAG-$n"; done

# 1a. Two endpoints whose daemon-side ends share block 10.
in_ns dp ip link add a1 index $A type veth peer name eth0 netns "$TAG-c1"
in_ns dp ip link add a2 index $B type veth peer name eth0 netns "$TAG-c2"
for i in 1 2; do
    in_ns dp ip link set "a$i" up
    in_ns "c$i" ip link set lo up
    in_ns "c$i" ip link set eth0 up
    in_ns "c$i" ip addr add "198.18.0.$i/24" dev eth0
    in_ns dp tc qdisc add dev "a$i" ingress_block 10 clsact
done
in_ns dp tc filter add block 10 ingress bpf direct-action obj "$TMP/block.o" sec tc
# 1b. Two kernel macvlan bridge children of a parent veth.
in_ns dp ip link add par type veth peer name parp
in_ns dp ip link set par up
in_ns dp ip link set parp up
for i in 1 2; do
    in_ns dp ip link add "mv$i" link par type macvlan mode bridge
    in_ns dp ip link set "mv$i" netns "$TAG-m$i"
    in_ns "m$i" ip link set "mv$i" name eth0
    in_ns "m$i" ip link set lo up
    in_ns "m$i" ip link set eth0 up
    in_ns "m$i" ip addr add "198.18.1.$i/24" dev eth0
done
in_ns c1 ping -c 1 -W 2 198.18.0.2 >/dev/null || { echo "tc-block-probe.sh: no ping through the block" >&2; exit 1; }
in_ns m1 ping -c 1 -W 2 198.18.1.2 >/dev/null || { echo "tc-block-probe.sh: no ping between macvlan children" >&2; exit 1; }

tcp() { # client-ns server-ns server-address -> Gbit/s
    in_ns "$2" taskset -c 1 iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    SERVER_PID=$!
    sleep 0.5
    in_ns "$1" taskset -c 0 iperf3 -c "$3" -p 5201 -t 5 -J |
        python3 -c 'import json, sys; print("%.1f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
    wait "$SERVER_PID" || true
    SERVER_PID=
}
echo "container -> container TCP, one stream, 5 s (TSO in the containers: $(in_ns c1 ethtool -k eth0 | awk '/^tcp-segmentation-offload/ {print $2}'))"
for round in 1 2; do
    echo "  round $round: shared tc block $(tcp c1 c2 198.18.0.2) Gbit/s, kernel macvlan $(tcp m1 m2 198.18.1.2) Gbit/s"
done

# 2. Joining the block, leaving it, deleting members: each as one batch (a tc or ip process dumps
# every link of the namespace when it starts, ~10 ms with a thousand of them: one process per
# operation would measure that instead).
{ for i in $(seq 1 "$N"); do echo "link add b$i type veth peer name p$i"; echo "link set b$i up"; done; } >"$TMP/links"
in_ns join ip -batch "$TMP/links"
in_ns join tc qdisc add dev b1 ingress_block 20 clsact
in_ns join tc filter add block 20 ingress bpf direct-action obj "$TMP/block.o" sec tc
batch() { # label count tool file
    local t0 t1
    t0=$(date +%s.%N); in_ns join "$3" -batch "$4"; t1=$(date +%s.%N)
    python3 -c "import sys; t = (float(sys.argv[3]) - float(sys.argv[2])) * 1000; n = int(sys.argv[4]); print(f'  {sys.argv[1]}: {n} in {t:.1f} ms, {t / n * 1000:.0f} µs each')" "$1" "$t0" "$t1" "$2"
}
H=$((N / 2))
{ for i in $(seq 2 "$N"); do echo "qdisc add dev b$i ingress_block 20 clsact"; done; } >"$TMP/joins"
{ for i in $(seq 2 "$H"); do echo "qdisc del dev b$i clsact"; done; } >"$TMP/leaves"
{ for i in $(seq $((H + 1)) "$N"); do echo "link del b$i"; done; } >"$TMP/deletes"
{ for i in $(seq 2 "$H"); do echo "link del b$i"; done; } >"$TMP/plain-deletes"
echo "a shared block with its program, $N veth ends in the namespace (one process per batch):"
batch "joining" $((N - 1)) tc "$TMP/joins"
batch "leaving" $((H - 1)) tc "$TMP/leaves"
batch "deleting a member's veth pair" $((N - H)) ip "$TMP/deletes"
batch "deleting a veth pair that left the block (no qdisc)" $((H - 1)) ip "$TMP/plain-deletes"
