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
	XMV_STAT_MAX,
};

#endif
