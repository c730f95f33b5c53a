#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target (fuzz/corpus/<target>/): real frames, request lines,
CNI configurations and state files, in the input layout each target reads (see its doc comment).
Run from anywhere; the files it writes are committed, so this only needs running after a change."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ---- frame: [flags, n, (a, c) per endpoint (+ a source-list byte after a source endpoint), pick, frame]
PALETTE = [bytes([2, 0, 0, 0, 0, i]) for i in range(1, 8)] + [bytes([1, 0, 0x5e, 0, 0, 1])]
OUTSIDE = bytes([0x02, 0x99, 0, 0, 0, 1])
MODES = {"bridge": 0, "private": 1, "vepa": 2, "passthru": 3, "source": 4}
VLAN_IDX = {0: 0, 10: 2, 20: 3}
MTU_IDX = {1500: 0, 68: 2, 9000: 3}

def endpoint(mode, mac, vlan=0, mtu=1500, down=False, nodst=False, keep_pcp=False, sources=()):
    a = MODES[mode] | (8 if down else 0) | (16 if nodst else 0) | (32 if keep_pcp else 0) | (VLAN_IDX[vlan] << 6)
    c = mac | (MTU_IDX[mtu] << 3)
    out = bytes([a, c])
    if mode == "source":
        out += bytes([sum(1 << i for i in sources)])
    return out

def table(eps, internal=False, frames=8, parent_mtu_idx=0):
    flags = (1 if internal else 0) | ((frames - 1) << 1) | (parent_mtu_idx << 4)
    return bytes([flags, len(eps)]) + b"".join(eps)

# Ports 1..6: bridge mac 02::02, bridge 02::03, vepa 02::04, VLAN 10 bridge 02::05,
# VLAN 10 keep_pcp 02::06, source 02::07 listing the parent host's MAC 02::01.
T = table([
    endpoint("bridge", 1), endpoint("bridge", 2), endpoint("vepa", 3),
    endpoint("bridge", 4, vlan=10), endpoint("bridge", 5, vlan=10, keep_pcp=True),
    endpoint("source", 6, sources=[0]),
])
T_PASSTHRU = table([endpoint("passthru", 1), endpoint("bridge", 2, vlan=10)])
T_INTERNAL = table([endpoint("bridge", 1), endpoint("bridge", 2), endpoint("bridge", 3, mtu=68)], internal=True)
T_PRIVATE = table([endpoint("private", 1), endpoint("private", 2, down=True), endpoint("source", 3, nodst=True, sources=[0, 1])])
T_SHORT = table([endpoint("bridge", 1), endpoint("vepa", 2, vlan=20)], frames=1)

def parent():
    return bytes([0x00])

def ingress(i):
    """Endpoint number i (1-based, in port order) of the table."""
    return bytes([0x20 | (i - 1)])

UNKNOWN = bytes([0x70])

def eth(dst, src, ethertype, payload, tci=None):
    tag = struct.pack("!HH", 0x8100, tci) if tci is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype) + payload

IPV4 = bytes.fromhex("4500002e0000400040110000c6120001c6120002") + b"\x00" * 26
ARP = bytes.fromhex("0001080006040001") + OUTSIDE + bytes([198, 18, 0, 1]) + b"\x00" * 6 + bytes([198, 18, 0, 2])
# IPv6 neighbour solicitation for 2001:db8::3 from 2001:db8::2 (ICMPv6 type 135).
ND = (bytes.fromhex("6000000000203aff") + bytes.fromhex("20010db8000000000000000000000002")
      + bytes.fromhex("ff0200000000000000000001ff000003") + bytes.fromhex("8700000000000000")
      + bytes.fromhex("20010db8000000000000000000000003") + bytes.fromhex("0101") + PALETTE[2])
BCAST = b"\xff" * 6
ND_MCAST = bytes([0x33, 0x33, 0xff, 0, 0, 3])

seeds = {
    "wire-unicast-untagged": T + parent() + eth(PALETTE[1], OUTSIDE, 0x0800, IPV4),
    "wire-broadcast-arp": T + parent() + eth(BCAST, OUTSIDE, 0x0806, ARP),
    "wire-broadcast-vlan10-pcp5": T + parent() + eth(BCAST, OUTSIDE, 0x0806, ARP, tci=(5 << 13) | 10),
    "wire-unicast-vlan10": T + parent() + eth(PALETTE[4], OUTSIDE, 0x0800, IPV4, tci=10),
    "wire-unicast-vlan10-pcp5-keep": T + parent() + eth(PALETTE[5], OUTSIDE, 0x0800, IPV4, tci=(5 << 13) | 10),
    "wire-from-listed-source": T + parent() + eth(PALETTE[2], PALETTE[0], 0x0800, IPV4),
    "wire-reflected-from-vepa": T + parent() + eth(BCAST, PALETTE[3], 0x0806, ARP),
    "endpoint-ipv6-nd": T + ingress(2) + eth(ND_MCAST, PALETTE[2], 0x86DD, ND),
    "endpoint-to-sibling": T + ingress(1) + eth(PALETTE[2], PALETTE[1], 0x0800, IPV4),
    "endpoint-to-wire": T + ingress(1) + eth(OUTSIDE, PALETTE[1], 0x0800, IPV4),
    "vlan-endpoint-to-wire-push": T + ingress(4) + eth(OUTSIDE, PALETTE[4], 0x0800, IPV4),
    "vlan-endpoint-priority-tag-setvid": T + ingress(4) + eth(OUTSIDE, PALETTE[4], 0x0800, IPV4, tci=3 << 13),
    "vlan-endpoint-broadcast": T + ingress(5) + eth(BCAST, PALETTE[5], 0x0806, ARP),
    "runt": T + parent() + eth(PALETTE[1], OUTSIDE, 0x0800, b"")[:10],
    "truncated-8021q": T + parent() + eth(PALETTE[1], OUTSIDE, 0x0800, b"", tci=10)[:16],
    "oversize": T_INTERNAL + ingress(1) + eth(PALETTE[3], PALETTE[1], 0x0800, IPV4 + b"\x00" * 100),
    "internal-broadcast": T_INTERNAL + ingress(2) + eth(BCAST, PALETTE[2], 0x0806, ARP),
    "passthru-unicast": T_PASSTHRU + parent() + eth(OUTSIDE, OUTSIDE, 0x0800, IPV4),
    "passthru-vlan-broadcast": T_PASSTHRU + parent() + eth(BCAST, OUTSIDE, 0x0806, ARP, tci=10),
    "private-reflected": T_PRIVATE + parent() + eth(BCAST, PALETTE[1], 0x0806, ARP),
    "private-down-nodst": T_PRIVATE + parent() + eth(PALETTE[2], PALETTE[0], 0x0800, IPV4),
    "short-of-frames-flood": T_SHORT + ingress(2) + eth(BCAST, PALETTE[2], 0x0806, ARP),
    "unknown-ingress": T + UNKNOWN + eth(PALETTE[1], OUTSIDE, 0x0800, IPV4),
    "endpoint-leaves": T[:-0] + bytes([0x80 | 0x20]) + eth(PALETTE[1], OUTSIDE, 0x0800, IPV4),
}
for name, data in seeds.items():
    write("frame", name, data)

# ---- request: one line as the client writes it (api::Envelope, version 4).
def req(op, **fields):
    return json.dumps({"version": 4, "request": {"op": op, **fields}}, separators=(",", ":")) + "\n"

ipam = {"subnets": ["198.18.0.0/24", "2001:db8::/64"], "gateways": ["198.18.0.1"],
        "ip_ranges": ["198.18.0.128/25"], "aux_addresses": ["sw=198.18.0.7"], "ipv6": True}
attachment = {"container_id": "c0ffee", "ifname": "eth0"}
cni_net = {"name": "xnet", "master": "eth1", "mode": "bridge"}
ips = [{"address": "198.18.0.100/24", "gateway": "198.18.0.1"}]
routes = [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]
requests = {
    "network-create": req("network_create", name="lab", driver="macvlan", ipam=ipam, internal=False,
                          options=[["parent", "eth0.50"], ["macvlan_mode", "source"], ["nodst", "true"],
                                   ["vlan_pcp", "keep"], ["com.docker.network.driver.mtu", "1400"]]),
    "network-create-internal": req("network_create", name="int", driver="macvlan",
                                   ipam={"subnets": ["198.19.0.0/24"], "gateways": [], "ip_ranges": [],
                                         "aux_addresses": [], "ipv6": False}, internal=True, options=[]),
    "network-rm": req("network_rm", name="lab", force=True),
    "network-ls": req("network_ls"),
    "network-inspect": req("network_inspect", name="lab"),
    "connect": req("connect", network="lab", netns="c1", tap=None, owner=None, ip="198.18.0.10",
                   ip6="2001:db8::10", mac="02:42:c6:12:00:0a", ifname="eth0", mtu=1400),
    "connect-tap": req("connect", network="lab", netns=None, tap="vm0", owner=1000, ip=None, ip6=None,
                       mac=None, ifname="eth0", mtu=None),
    "disconnect": req("disconnect", network="lab", endpoint="c1"),
    "macaddr": req("macaddr", network="lab", endpoint="c1", action="set",
                   macs=["02:77:00:00:00:01", "02-77-00-00-00-02"]),
    "stats": req("stats"),
    "cni-add": req("cni_add", network=cni_net, attachment=attachment, netns="/var/run/netns/c1", mtu=0,
                   mac="02:42:c6:12:00:0b", ips=ips, routes=routes),
    "cni-del": req("cni_del", network="xnet", attachment=attachment),
    "cni-check": req("cni_check", network=cni_net, attachment=attachment, netns="/var/run/netns/c1",
                     mac="02:42:c6:12:00:0b", ips=ips, routes=routes),
    "cni-status": req("cni_status", network="xnet", master=None),
    "cni-gc": req("cni_gc", network="xnet", valid=[attachment]),
    "old-version": '{"version":1,"request":{"op":"network_ls"}}\n',
}
for name, data in requests.items():
    write("request", name, data)

# ---- cni_conf: the network configuration on stdin (also read as an IPAM result).
def conf(**extra):
    c = {"cniVersion": "1.0.0", "name": "xnet", "type": "xmacvlan-cni", "master": "eth1",
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/24", "rangeStart": "198.18.0.100",
                                                     "gateway": "198.18.0.1"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}}
    c.update(extra)
    return json.dumps(c, indent=1)

prev = {"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:42:c6:12:00:0a", "sandbox": "/var/run/netns/fuzz"}],
        "ips": [{"address": "198.18.0.100/24", "gateway": "198.18.0.1", "interface": 0},
                {"address": "2001:db8::64/64", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}, {"dst": "2001:db8:1::/48"}],
        "dns": {"nameservers": ["198.18.0.1"]}}
confs = {
    "add": conf(),
    "add-0.3.1-vlan-mode": conf(cniVersion="0.3.1", mode="vepa", mtu=1400, mac="02:00:c6:12:00:03",
                                runtimeConfig={"mac": "02:00:c6:12:00:02"}),
    "check-prev-result": conf(cniVersion="1.1.0", prevResult=prev, dns={"nameservers": ["9.9.9.9"]}),
    "gc": conf(**{"cni.dev/valid-attachments": [{"containerID": "c0ffee", "ifname": "eth0"}]}),
    "socket-no-ipam": conf(ipam={}, socket="/run/xmacvlan/x.sock", mode="passthru"),
    "link-in-container": conf(linkInContainer=True),
    "version": '{"cniVersion":"0.4.0"}',
    "ipam-result": json.dumps(prev),
    "docs-conflist": open(os.path.join(HERE, "../../docs/cni-examples/xnet.conflist")).read(),
}
for name, data in confs.items():
    write("cni_conf", name, data)

# ---- state: state.json, a NUL byte, state.journal.
endpoint_veth = {"kind": "veth", "netns": "/run/netns/a", "ns_id": [4, 5], "ifname": "eth0", "host": "xmv1",
                 "mac": "02:42:c6:12:00:02", "addrs": ["198.18.0.2/24"], "mtu": 1500,
                 "source_macs": ["02:77:00:00:00:01"], "cni": {"container_id": "c0ffee", "ifname": "eth0"},
                 "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]}
endpoint_tap = {"kind": "tap", "owner": 1000, "ifname": "vm0", "host": "vm0", "mac": "02:42:c6:12:00:03",
                "addrs": ["198.18.0.3/24"], "mtu": 1500}
endpoint_docker = {"kind": "docker", "endpoint_id": "e1d0", "ifname": "eth0", "host": "xmv2",
                   "mac": "02:42:c6:13:00:02", "addrs": ["198.19.0.2/24"], "mtu": 1500}
net = {"name": "n", "id": 2, "parent": "eth9", "internal": False, "mode": "source",
       "options": [["parent", "eth9.10"], ["macvlan_mode", "source"]],
       "ipam": {"subnets": ["198.18.0.0/24"], "gateways": [], "ip_ranges": [], "aux_addresses": [], "ipv6": False},
       "endpoints": [endpoint_veth, endpoint_tap], "cni": True,
       "passthru": {"mac": "02:00:00:00:00:09", "promisc": True}}
dnet = {"name": "d0c4e1", "id": 3, "parent": None, "internal": True, "mode": "bridge", "options": [],
        "ipam": {"subnets": ["198.19.0.0/24"], "gateways": ["198.19.0.1"], "ip_ranges": [], "aux_addresses": [],
                 "ipv6": False},
        "endpoints": [endpoint_docker], "docker": True, "docker_name": "web"}
state = {"version": 2, "next_id": 4, "networks": [dnet, net], "rx_vlan_off": ["eth9"], "generation": 7}
journal = "\n".join([
    json.dumps({"op": "start", "generation": 7}),
    json.dumps([{"op": "meta", "next_id": 5, "rx_vlan_off": []}]),
    json.dumps([{"op": "network", "network": {**dnet, "name": "e", "endpoints": []}},
                {"op": "endpoint", "network": "e", "endpoint": endpoint_tap}]),
    json.dumps([{"op": "endpoint_gone", "network": "n", "host": "vm0"}, {"op": "network_gone", "name": "e"}]),
    '[{"op":"endpoint","network":"n","endpoint":{"kind":"ve',  # torn by a crash: ignored
])
states = {
    "state-and-journal": json.dumps(state, indent=2) + "\0" + journal,
    "state-only": json.dumps(state, indent=2),
    "state-v1-empty": json.dumps({"version": 1, "next_id": 1, "networks": []}),
    "journal-other-generation": json.dumps(state) + "\0" + json.dumps({"op": "start", "generation": 6}) + "\n"
                                + json.dumps([{"op": "network_gone", "name": "zz"}]) + "\n",
    "journal-bad-record": json.dumps(state) + "\0" + json.dumps({"op": "start", "generation": 7}) + "\n"
                          + json.dumps([{"op": "endpoint_gone", "network": "n", "host": "nope"}]) + "\n",
}
for name, data in states.items():
    write("state", name, data)
