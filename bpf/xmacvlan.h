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

/* Key of the `macs` map with an all-zero MAC: a passthru endpoint, which takes every unicast frame
 * of its (parent, VLAN). */

/* Value of the `sources` map (key: parent, VLAN, *source* MAC listed by a source-mode endpoint). */
#define XMV_SRC_NODST 1   /* a listing endpoint has nodst: the frame is consumed by the copies */

/* Per-CPU, indexed by the endpoint's slot: frames and bytes the kernel-side paths (the fast paths,
 * the tc flood) handed to an endpoint, and the ones they did not: the endpoint was down, the frame
 * longer than its MTU allows, or the kernel refused the copy. */
struct fast_count {
	__u64 frames;
	__u64 bytes;
	__u64 down;
	__u64 oversize;
	__u64 errors;
};

/* The endpoints a broadcast/multicast frame from the wire reaches (tc flood), per parent: every
 * untagged private/vepa/bridge/passthru endpoint (kernel macvlan's macvlan_broadcast to children of
 * a parent, MACVLAN_MODE_ALL but source). Rewritten whole by the control plane on every change. */
#define XMV_FLOOD_MAX 4096
struct flood_member {
	__u32 ifindex;  /* the endpoint's daemon-side interface: a clone leaves through it */
	__u32 max_len;  /* its MTU + 14 */
	__u32 slot;
	__u32 up;
};
struct flood_list {
	__u32 count;
	__u32 pad;
	struct flood_member m[XMV_FLOOD_MAX];
};

/* Per-CPU, indexed by the parent's slot: group frames the tc flood fanned out, the extra outcomes
 * (a flood of n targets has n; copies = n - 1) and floods without any target. */
struct flood_count {
	__u64 frames;
	__u64 copies;
	__u64 empty;
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
	XMV_STAT_MAX,
};

#endif
