/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Structures shared between bpf/xmacvlan.bpf.c and datapath/src/bpf.rs.
 * Every struct here has a #[repr(C)] twin with a compile-time size assert. */
#ifndef XMACVLAN_H
#define XMACVLAN_H

/* Key of the `macs` map: which (parent, VLAN, destination MAC) belongs to an endpoint. */
struct mac_key {
	__u32 parent_ifindex;
	__u16 vlan; /* 0 = untagged */
	__u8 mac[6];
};

/* Value of the `macs` map. */
struct mac_val {
	__u32 fast_ifindex; /* fast path: the endpoint's daemon-side veth (0 = AF_XDP path) */
	__u32 max_len;      /* longest untagged frame the endpoint takes: its MTU + 14 */
	__u32 slot;         /* the endpoint's slot: index into `fast_stats` */
	__u32 flags;        /* XMV_MAC_* */
};

/* mac_val.flags: how the endpoint's macvlan mode changes what the parent program does. */
#define XMV_MAC_NO_DST  1 /* source mode: never a unicast destination (the host stack gets it) */
#define XMV_MAC_REFLECT 2 /* private/passthru/source: a group frame it sent that comes back from
                           * the wire goes back to it alone, never to the host (macvlan_handle_frame) */
#define XMV_MAC_FAST_TC 4 /* the fast path is the tc one: xmv_parent passes the frame and
                           * xmv_parent_tc hands it to the container with bpf_redirect_peer */
#define XMV_MAC_BRIDGE  8 /* bridge mode: a bridge endpoint's unicast to it stays local */

/* Key of the `macs` map with an all-zero MAC: a passthru endpoint, which takes every unicast frame
 * of its (parent, VLAN). */

/* XDP metadata xmv_parent puts in front of a frame it passes on to the tc fast path, so that
 * xmv_parent_tc finds the endpoint without a second `macs` lookup. A hint, never trusted alone:
 * tc uses it only while `fast_ports[slot]` still holds `ifindex` (the endpoint is up and on the tc
 * fast path, and the slot has not changed hands), else it looks the destination up as before. */
struct fast_meta {
	__u32 magic;   /* XMV_META_MAGIC */
	__u32 slot;
	__u32 ifindex; /* the endpoint's daemon-side veth, as xmv_parent found it */
	__u32 pad;
};
#define XMV_META_MAGIC 0x786d7631u /* "xmv1" */

/* The one value of the `config` array: what lets the parent program skip a lookup. */
struct xmv_config {
	__u32 listed_sources; /* entries in `sources`: while 0, no frame's sender can be listed */
	__u32 ipvlan_ports;   /* entries in `ipvlan_ports`: while 0, no parent is an ipvlan port */
};

/* Value of the `sources` map (key: parent, VLAN, *source* MAC listed by a source-mode endpoint). */
#define XMV_SRC_NODST 1   /* a listing endpoint has nodst: the frame is consumed by the copies */

/* Per-CPU, indexed by the endpoint's slot: frames and bytes the kernel-side paths (the fast paths,
 * the tc flood) handed to an endpoint, and the ones they did not: the endpoint was down, the frame
 * longer than its MTU allows, or the kernel refused the copy. At a network's parent slot the same
 * five count what xmv_endpoint_tc sent to the wire (and could not).
 * The last four count what xmv_endpoint_tc took from the endpoint's container: frames it decided
 * itself (each has one outcome above, at another endpoint or at the parent slot), the bytes of
 * those, the bytes of those it delivered to another endpoint (what the parent's books subtract),
 * and frames for the workers the collector's backlog refused. The source guard's drops of a
 * container's frames (each an outcome at the sender) close the list. */
struct fast_count {
	__u64 frames;
	__u64 bytes;
	__u64 down;
	__u64 oversize;
	__u64 errors;
	__u64 rx;
	__u64 rx_bytes;
	__u64 local_bytes;
	__u64 lost;
	__u64 spoofed_src; /* a container's frame the source guard dropped: not its source MAC */
	__u64 spoofed_ip;  /* ... its IP/ARP sender fields not its addresses (the IP guard) */
	__u64 isolated;    /* ipvlan private: a container's frame for another endpoint of its port */
	__u64 not_routed;  /* ipvlan L3: a container's group or non-IP frame, or one without a route */
};

/* Value of the `ep_ports` map, keyed by the daemon-side veth of an endpoint whose container's
 * frames xmv_endpoint_tc decides (the tc fast path's veths): what it needs to know of the endpoint
 * and its network. */
struct ep_port {
	__u32 slot;
	__u32 parent_ifindex; /* the network's parent (an internal network's anchor): `macs` keys */
	__u32 parent_slot;    /* the parent's slot: its wire counters, and the workers' mark */
	__u32 wire_max_len;   /* longest untagged frame the wire takes: the parent's MTU + 14 */
	__u32 collector;      /* where frames for the workers go (the relay pair's xmacvlan1) */
	__u32 flags;          /* XMV_EP_* */
	__u8 mac[6];          /* the endpoint's MAC: the only source the MAC guard lets out */
	__u16 vlan;           /* an ipvlan endpoint's VLAN: its `ipvlan_ips` keys */
};
#define XMV_EP_BRIDGE 1 /* bridge mode: unicast to a bridge endpoint stays local, floods need the workers */
#define XMV_EP_WIRE   2 /* the network has a wire (not internal) */
#define XMV_EP_MAC_GUARD 4 /* spoof_check: a frame whose source MAC is not `mac` is dropped */
#define XMV_EP_IP_GUARD  8 /* ip_guard: IPv4/IPv6 sources and ARP senders must be in `guard_ips`;
                            * neighbour discovery goes to the workers, which check its options */
#define XMV_EP_IPVLAN 16           /* an ipvlan endpoint (datapath/src/ipvlan.rs): found by address */
#define XMV_EP_IPVLAN_ROUTED 32    /* ... of an L3/L3S port: its frames are local or routed */
#define XMV_EP_IPVLAN_PRIVATE 64   /* ... of a `private` port: none to another endpoint */
#define XMV_EP_IPVLAN_VEPA 128     /* ... of a `vepa` port: unicast to another endpoint via the wire */

/* An ipvlan port (datapath/src/ipvlan.rs): a (parent, VLAN) whose endpoints all have the parent's
 * MAC and are found by address. Key of `ipvlan_ports`: */
struct port_key {
	__u32 parent_ifindex;
	__u16 vlan;
	__u16 pad;
};

/* Value of `ipvlan_ports`. */
struct ipvlan_port {
	__u8 mac[6]; /* the parent's */
	__u8 mode;   /* XMV_IPVLAN_L2 | _L3 | _L3S */
	__u8 flag;   /* XMV_IPVLAN_BRIDGE | _PRIVATE | _VEPA */
};
#define XMV_IPVLAN_L2 0
#define XMV_IPVLAN_L3 1
#define XMV_IPVLAN_L3S 2
#define XMV_IPVLAN_BRIDGE 0
#define XMV_IPVLAN_PRIVATE 1
#define XMV_IPVLAN_VEPA 2

/* Key of `ipvlan_ips`: an ipvlan endpoint's address on its port (IPv4 as ::ffff:a.b.c.d); the
 * value is the endpoint's `struct mac_val`, as for a macvlan endpoint's MAC. */
struct ip_key {
	__u32 parent_ifindex;
	__u16 vlan;
	__u16 pad;
	__u8 addr[16];
};

/* Key of the `guard_ips` map: an address the IP guard lets the endpoint in `slot` send from
 * (IPv4 as ::ffff:a.b.c.d). */
struct guard_key {
	__u32 slot;
	__u8 addr[16];
};

/* The endpoints a broadcast/multicast frame from the wire reaches (tc flood), per parent slot:
 * every untagged private/vepa/bridge/passthru endpoint (kernel macvlan's macvlan_broadcast to
 * children of a parent, MACVLAN_MODE_ALL but source). Rewritten whole by the control plane on
 * every change. The first `peers` members are veths: their copies are queued to the relay's
 * ingress, whose program (xmv_relay_tc) hands each to its container end with bpf_redirect_peer.
 * The rest (taps) get their copy transmitted out of the interface. */
#define XMV_FLOOD_MAX 4096
struct flood_member {
	__u32 ifindex;  /* the endpoint's daemon-side interface */
	__u32 max_len;  /* its MTU + 14 */
	__u32 slot;
	__u32 flags;    /* XMV_FLOOD_* */
};
#define XMV_FLOOD_UP 1
struct flood_list {
	__u32 count;
	__u32 peers;
	__u32 relay;     /* the relay interface (the daemon's veth xmacvlan0) */
	__u32 collector; /* where frames for the workers go (its peer xmacvlan1) */
	struct flood_member m[XMV_FLOOD_MAX];
};

/* The veth copies of one wire flood are queued to the CPU's backlog (netif_rx into the relay),
 * which holds net.core.netdev_max_backlog (1000 by default) frames, so a flood to thousands of
 * endpoints cannot be queued at once. They go in chunks: XMV_FLOOD_CHUNK copies and a carrier,
 * the next member's copy marked to make the following chunk when the backlog reaches it, i.e.
 * when this chunk has been delivered. Kernel macvlan's broadcast work runs the backlog between its
 * copies; this is the same, done with the queue's own order. A parent's NAPI poll of 64 broadcasts
 * queues at most 64 * (XMV_FLOOD_CHUNK + 1) = 576. */
#define XMV_FLOOD_CHUNK 8

/* What a queued copy carries to xmv_relay_tc. skb->mark: magic | CARRIER (make the chunk after
 * this member first) | COPY (hand it to this member) | parent slot << 12 | member index — or
 * magic | COLLECT | parent slot << 12 on a frame for the workers, queued to the collector
 * (| FROM_EP | the sending endpoint's slot on a container's frame, xmv_endpoint_tc);
 * skb->tc_index: the member's slot, checked against the list the relay reads (the list may
 * have changed while the copy was queued: then the copy is counted as an error, never misdelivered). */
#define XMV_MARK_MAGIC 0xb0000000u
#define XMV_MARK_MAGIC_MASK 0xf8000000u
#define XMV_MARK_COLLECT (1u << 26)
#define XMV_MARK_CARRIER (1u << 25)
#define XMV_MARK_FROM_EP (1u << 25) /* with COLLECT only */
#define XMV_MARK_COPY (1u << 24)
#define XMV_MARK_SLOT_SHIFT 12
#define XMV_MARK_IDX_MASK 0xfffu
/* skb->mark of a container's frame an ipvlan endpoint hands the host stack (as if received on the
 * parent): the parent's tc program lets it through, unmarked, instead of finding an endpoint for it
 * again (another magic: the relay never takes it). */
#define XMV_MARK_HOST 0xb8000000u

/* Per-CPU, indexed by the parent's slot: group frames the tc flood fanned out, the outcomes at
 * members (each copy handed over, or counted as not, is one: a flood of n members has n, i.e. n - 1
 * copies beyond the frame; counted where each outcome happens, so the books stay exact when the list
 * changes under a flood in flight), floods without any member, and frames for the workers the
 * collector's backlog refused. */
struct flood_count {
	__u64 frames;
	__u64 outcomes;
	__u64 empty;
	__u64 lost;
};

/* Maximum queues per interface; XSKMAP index = slot * XMV_MAX_QUEUES + rx_queue_index. */
#define XMV_MAX_QUEUES 64
#define XMV_MAX_SLOTS 4096

/* Indexes of the per-CPU `xdp_stats` array. */
enum xmv_stat {
	XMV_STAT_TO_XSK = 0,        /* parent: known unicast redirected to AF_XDP */
	XMV_STAT_PASS_MULTICAST,    /* parent: broadcast/multicast passed to the stack (+ flood path) */
	XMV_STAT_PASS_UNKNOWN,      /* parent: unknown unicast passed to the host stack */
	XMV_STAT_PASS_SHORT,        /* parent: runt or truncated 802.1Q passed untouched */
	XMV_STAT_EP_TO_XSK,         /* endpoint: frame from a container redirected to AF_XDP */
	XMV_STAT_NO_SOCKET,         /* slot or socket missing: parent passes, endpoint drops */
	XMV_STAT_FAST,              /* parent: known unicast redirected to the endpoint veth in XDP */
	XMV_STAT_SOURCE,            /* parent: listed source (nodst) or reflected group frame to AF_XDP */
	XMV_STAT_FAST_TC,           /* parent: known unicast passed on to the tc fast path */
	XMV_STAT_EP_TC,             /* endpoint tc: a container's frame decided in the kernel */
	XMV_STAT_EP_TO_WORKERS,     /* endpoint tc: a container's frame handed to the workers */
	XMV_STAT_GROUP_SRC,         /* parent: a group source MAC, passed to the host stack only */
	XMV_STAT_MAX,
};

#endif
