// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* xmacvlan XDP programs.
 *
 * xmv_parent runs on a network's parent interface. It steers frames whose (parent, VLAN, destination
 * MAC) belongs to an endpoint into the AF_XDP socket of the receive queue. Everything else —
 * broadcast/multicast, unknown unicast, frames too short to parse — goes to the host stack
 * untouched (XDP_PASS); broadcast/multicast is picked up again there by the daemon's flood socket,
 * so that both the host and the endpoints get it, as with kernel macvlan.
 *
 * Fast paths: an untagged known unicast frame for an endpoint that is up and whose MTU it fits goes
 * to the container without the trip through AF_XDP and a worker — the same decision fwd::decide
 * makes for it. Everything else still goes to the worker, which keeps the exact rules and drop
 * counters.
 * - tc (the default): xmv_parent passes the frame; the kernel builds the skb (and GRO merges it);
 *   xmv_parent_tc, on the parent's tcx ingress, moves it into the container's end of the endpoint
 *   veth with bpf_redirect_peer — one pass, as kernel macvlan's rx_handler does.
 * - XDP (daemon --fast-path xdp): xmv_parent redirects the frame to the endpoint's veth
 *   (bpf_redirect); the container end builds the skb in its own NAPI.
 *
 * macvlan modes (drivers/net/macvlan.c, macvlan_handle_frame) that change what the host gets:
 * - a frame whose source MAC a source-mode endpoint lists with `nodst` is consumed by the copies
 *   made for it: AF_XDP, never the host stack;
 * - a group frame sent by a private/passthru/source endpoint that comes back from the wire goes
 *   back to that endpoint only: AF_XDP;
 * - a passthru endpoint takes every unicast frame of its (parent, VLAN): the all-zero MAC key;
 * - a source-mode endpoint is never a unicast destination: its MAC is passed as unknown.
 * A listed source without nodst needs both the host and the copies: the frame is passed, and the
 * flood socket's filter (xmv_flood_filter) picks it up again.
 *
 * xmv_endpoint runs on the host side of every endpoint veth: all a container sends goes to AF_XDP.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xmacvlan.h"

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mac_key);
	__type(value, struct mac_val);
} macs SEC(".maps");

/* Source MACs listed by source-mode endpoints, per (parent, VLAN): value XMV_SRC_*. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mac_key);
	__type(value, __u32);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XMV_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct fast_count);
} fast_stats SEC(".maps");

/* Parent ifindex -> the endpoints its wire floods reach (only where the tc flood is on). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct flood_list);
} floods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XMV_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct flood_count);
} flood_stats SEC(".maps");

/* ifindex -> slot: where this interface's sockets start in `xsks`. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XMV_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XMV_MAX_SLOTS * XMV_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XMV_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline int to_xsk(struct xdp_md *ctx, int fallback)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slot = bpf_map_lookup_elem(&slots, &ifindex);
	if (!slot || ctx->rx_queue_index >= XMV_MAX_QUEUES) {
		count(XMV_STAT_NO_SOCKET);
		return fallback;
	}
	return bpf_redirect_map(&xsks, *slot * XMV_MAX_QUEUES + ctx->rx_queue_index, fallback);
}

SEC("xdp")
int xmv_parent(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct mac_key key = {};
	struct mac_val *v;
	__u32 *listed;

	if ((void *)(eth + 1) > data_end) {
		count(XMV_STAT_PASS_SHORT);
		return XDP_PASS;
	}
	if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);
		if ((void *)(vh + 1) > data_end) {
			count(XMV_STAT_PASS_SHORT);
			return XDP_PASS;
		}
		key.vlan = bpf_ntohs(vh->tci) & 0x0fff;
	}
	key.parent_ifindex = ctx->ingress_ifindex;

	/* By source MAC: source-mode lists, and group frames reflected to their sender. */
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	listed = bpf_map_lookup_elem(&sources, &key);
	if (listed && (*listed & XMV_SRC_NODST)) {
		count(XMV_STAT_SOURCE);
		return to_xsk(ctx, XDP_PASS);
	}
	if (eth->h_dest[0] & 1) {
		v = bpf_map_lookup_elem(&macs, &key);
		if (v && (v->flags & XMV_MAC_REFLECT)) {
			count(XMV_STAT_SOURCE);
			return to_xsk(ctx, XDP_PASS);
		}
		count(XMV_STAT_PASS_MULTICAST);
		return XDP_PASS;
	}

	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	v = bpf_map_lookup_elem(&macs, &key);
	if (!v || (v->flags & XMV_MAC_NO_DST)) {
		__builtin_memset(key.mac, 0, ETH_ALEN);
		v = bpf_map_lookup_elem(&macs, &key);
	}
	if (!v) {
		count(XMV_STAT_PASS_UNKNOWN);
		return XDP_PASS;
	}
	if (v->fast_ifindex && !listed && eth->h_proto != bpf_htons(ETH_P_8021Q)) {
		__u64 len = data_end - data;
		__u32 slot = v->slot;

		if (len <= v->max_len && (v->flags & XMV_MAC_FAST_TC)) {
			count(XMV_STAT_FAST_TC);
			return XDP_PASS;
		}
		if (len <= v->max_len) {
			struct fast_count *c = bpf_map_lookup_elem(&fast_stats, &slot);
			if (c) {
				c->frames += 1;
				c->bytes += len;
			}
			count(XMV_STAT_FAST);
			return bpf_redirect(v->fast_ifindex, 0);
		}
	}
	count(XMV_STAT_TO_XSK);
	return to_xsk(ctx, XDP_PASS);
}

/* Whether the tc flood fans this group frame out itself: untagged, on a parent where the tc flood
 * is on, from a sender that is neither one of our endpoints (reflected frames have rules of their
 * own) nor listed by a source-mode endpoint. Everything else goes to the workers through the flood
 * socket, whose filter asks the same question of the same maps. */
static __always_inline struct flood_list *tc_floods(__u32 parent, const __u8 *src, int tagged)
{
	struct mac_key key = { .parent_ifindex = parent };
	struct flood_list *fl;

	if (tagged)
		return 0;
	fl = bpf_map_lookup_elem(&floods, &parent);
	if (!fl)
		return 0;
	__builtin_memcpy(key.mac, src, ETH_ALEN);
	if (bpf_map_lookup_elem(&macs, &key) || bpf_map_lookup_elem(&sources, &key))
		return 0;
	return fl;
}

struct flood_ctx {
	struct __sk_buff *skb;
	struct flood_list *fl;
	__u32 len;
};

static long flood_one(__u32 i, void *data)
{
	struct flood_ctx *c = data;
	struct flood_member *m;
	struct fast_count *fc;
	__u32 slot;

	if (i >= XMV_FLOOD_MAX)
		return 1;
	m = &c->fl->m[i];
	slot = m->slot;
	fc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!fc)
		return 0;
	if (!m->up) {
		fc->down += 1;
		return 0;
	}
	if (c->len > m->max_len) {
		fc->oversize += 1;
		return 0;
	}
	if (bpf_clone_redirect(c->skb, m->ifindex, 0)) {
		fc->errors += 1;
		return 0;
	}
	fc->frames += 1;
	fc->bytes += c->len;
	return 0;
}

/* The tc program on the parent's tcx ingress (the default fast path, `--fast-path tc`):
 * - unicast that xmv_parent passed for an endpoint on the tc fast path goes straight to the
 *   container's end of its veth (bpf_redirect_peer). xmv_parent checked tag, size, sources and
 *   state on the frame as received; the skb here may be several such frames merged by GRO. An
 *   endpoint that went down since xmv_parent saw the frame gets nothing, counted.
 * - a broadcast/multicast frame that tc_floods() accepts gets a clone per endpoint of its list
 *   (bpf_clone_redirect out of the endpoint's daemon-side interface), and the host stack the
 *   original — macvlan_broadcast's clone per child, without a trip to userspace.
 * Anything else continues to the host stack untouched. */
SEC("tc")
int xmv_parent_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct mac_key key = {};
	struct fast_count *c;
	struct mac_val *v;
	__u32 slot;

	/* The stack has moved an 802.1Q tag out of the frame by now (vlan_present). */
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	key.parent_ifindex = skb->ingress_ifindex;
	if (eth->h_dest[0] & 1) {
		struct flood_ctx fc = { .skb = skb, .len = skb->len };
		struct flood_count *fs;
		__u32 *pslot, n;

		fc.fl = tc_floods(key.parent_ifindex, eth->h_source, skb->vlan_present);
		if (!fc.fl)
			return TC_ACT_OK;
		pslot = bpf_map_lookup_elem(&slots, &key.parent_ifindex);
		if (!pslot)
			return TC_ACT_OK;
		slot = *pslot;
		n = fc.fl->count;
		if (n > XMV_FLOOD_MAX)
			n = XMV_FLOOD_MAX;
		bpf_loop(n, flood_one, &fc, 0);
		fs = bpf_map_lookup_elem(&flood_stats, &slot);
		if (fs) {
			fs->frames += 1;
			if (n)
				fs->copies += n - 1;
			else
				fs->empty += 1;
		}
		return TC_ACT_OK;
	}
	if (skb->vlan_present)
		return TC_ACT_OK;
	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	v = bpf_map_lookup_elem(&macs, &key);
	if (!v || (v->flags & XMV_MAC_NO_DST)) {
		__builtin_memset(key.mac, 0, ETH_ALEN);
		v = bpf_map_lookup_elem(&macs, &key);
	}
	if (!v || !(v->flags & XMV_MAC_FAST_TC))
		return TC_ACT_OK;
	slot = v->slot;
	c = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!v->fast_ifindex) {
		if (c)
			c->down += skb->gso_segs ? skb->gso_segs : 1;
		return TC_ACT_SHOT;
	}
	if (c) {
		c->frames += skb->gso_segs ? skb->gso_segs : 1;
		c->bytes += skb->len;
	}
	return bpf_redirect_peer(v->fast_ifindex, 0);
}

SEC("xdp")
int xmv_endpoint(struct xdp_md *ctx)
{
	/* Nothing a container sends may leak into the daemon's namespace. */
	count(XMV_STAT_EP_TO_XSK);
	return to_xsk(ctx, XDP_DROP);
}

/* Filter of the daemon's flood socket on the parent (SO_ATTACH_BPF): group-addressed frames the tc
 * flood does not fan out itself, and unicast from a source MAC a source-mode endpoint lists
 * (passed to the host by xmv_parent, copied to the listing endpoints by the worker). The kernel
 * has moved an 802.1Q tag to metadata here. */
SEC("socket")
int xmv_flood_filter(struct __sk_buff *skb)
{
	struct mac_key key = {};
	__u8 hdr[12];

	if (bpf_skb_load_bytes(skb, 0, hdr, sizeof(hdr)))
		return 0;
	if (hdr[0] & 1)
		return tc_floods(skb->ifindex, hdr + 6, skb->vlan_present) ? 0 : skb->len;
	key.parent_ifindex = skb->ifindex;
	key.vlan = skb->vlan_present ? (skb->vlan_tci & 0x0fff) : 0;
	__builtin_memcpy(key.mac, hdr + 6, ETH_ALEN);
	return bpf_map_lookup_elem(&sources, &key) ? skb->len : 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
