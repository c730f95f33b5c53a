// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/* xmacvlan's XDP and tc programs.
 *
 * xmv_parent runs on a network's parent interface. It steers frames whose (parent, VLAN, destination
 * MAC) belongs to an endpoint into the AF_XDP socket of the receive queue. Everything else —
 * broadcast/multicast, unknown unicast, frames too short to parse — goes to the host stack
 * untouched (XDP_PASS); broadcast/multicast is picked up again there by xmv_parent_tc, which
 * fans it out to the endpoints (or hands it to the workers), so that both the host and the
 * endpoints get it, as with kernel macvlan.
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
 * A listed source without nodst needs both the host and the copies: the frame is passed, and
 * xmv_parent_tc hands the workers a clone of it (collect).
 *
 * A container's frames: with the tc fast path, xmv_endpoint_tc on the ingress of the endpoint veth's
 * host side (the endpoints' shared tc block: one cls_bpf filter for all of them) decides what fwd::decide would for the common cases — a bridge endpoint's unicast
 * to another bridge endpoint goes to that container's end (bpf_redirect_peer), everything a
 * container sends towards the wire to the parent's egress — and hands the rest (a bridge endpoint's
 * broadcast/multicast, tagged frames, endpoints the workers serve) to the workers through the
 * collector. No XDP program on the endpoint: the container keeps its TSO and checksum offload.
 * Otherwise (--fast-path xdp|off, taps, tagged and internal networks) xmv_endpoint on the host side
 * sends all a container sends to AF_XDP.
 * xmv_relay_tc, on the daemon's relay veth pair (xmacvlan0/xmacvlan1), hands containers the wire
 * floods' copies, and ends the frames collected for the workers after their packet socket saw them.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
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

/* Slot -> the daemon-side veth of an endpoint on the tc fast path while it is up, else 0: what
 * xmv_parent_tc checks a frame's fast_meta against. Written with the endpoint's `macs` value. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XMV_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} fast_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xmv_config);
} config SEC(".maps");

/* An endpoint's daemon-side veth -> what xmv_endpoint_tc needs to decide its container's frames. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XMV_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct ep_port);
} ep_ports SEC(".maps");

/* The IP guard's addresses: (slot, address) -> 1 for every address an endpoint with
 * XMV_EP_IP_GUARD may send from (its own, and its EUI-64 link-local one). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * XMV_MAX_SLOTS);
	__type(key, struct guard_key);
	__type(value, __u8);
} guard_ips SEC(".maps");

/* ipvlan ports: (parent, VLAN) -> the parent's MAC and the port's mode and flag. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct port_key);
	__type(value, struct ipvlan_port);
} ipvlan_ports SEC(".maps");

/* ipvlan endpoints' addresses: (parent, VLAN, address) -> the endpoint, as `macs` for MACs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * XMV_MAX_SLOTS);
	__type(key, struct ip_key);
	__type(value, struct mac_val);
} ipvlan_ips SEC(".maps");

/* Parent slot -> the endpoints its wire floods reach (only where the tc flood is on). */
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

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
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

/* A frame xmv_parent found the endpoint `v` for: its fast path when the endpoint has one that takes
 * it (`plain`: untagged unicast from a sender no source-mode endpoint lists), else the workers. */
static __always_inline int steer(struct xdp_md *ctx, struct mac_val *v, int plain)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (v->fast_ifindex && plain) {
		__u64 len = data_end - data;
		__u32 slot = v->slot;

		if (len <= v->max_len && (v->flags & XMV_MAC_FAST_TC)) {
			__u32 ifindex = v->fast_ifindex;
			struct fast_meta *m;

			count(XMV_STAT_FAST_TC);
			/* Without room for metadata (a driver that has none) tc looks it up itself. */
			if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*m)))
				return XDP_PASS;
			m = (void *)(long)ctx->data_meta;
			if ((void *)(m + 1) > (void *)(long)ctx->data)
				return XDP_PASS;
			m->magic = XMV_META_MAGIC;
			m->slot = slot;
			m->ifindex = ifindex;
			m->pad = 0;
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

enum l3_kind { L3_NONE, L3_NO_ADDR, L3_ARP, L3_IP, L3_ICMP6 };

/* The address an ipvlan port demuxes a frame by (ipvlan.rs, l3_addr), into addr (IPv4 as
 * ::ffff:a.b.c.d): with `dest` ARP's target, the IPv4/IPv6 destination, a DAD solicitation's target;
 * else the sender's. The L3 header starts at `off`; `len` is the whole frame's length. */
static __always_inline int l3_addr(void *data, void *data_end, __u32 off, __u16 proto, __u32 len, int dest,
				   __u8 *addr)
{
	if (proto == bpf_htons(ETH_P_ARP)) {
		__u8 *a = data + off;

		if ((void *)(a + 28) > data_end)
			return L3_NONE;
		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(addr + 12, a + (dest ? 24 : 14), 4);
		return L3_ARP;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 total;

		if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
			return L3_NONE;
		total = bpf_ntohs(ip->tot_len);
		if (len < off + total || total < ip->ihl * 4u)
			return L3_NONE;
		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(addr + 12, dest ? &ip->daddr : &ip->saddr, 4);
		return L3_IP;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		__u64 s0, s1;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return L3_NONE;
		__builtin_memcpy(&s0, &ip6->saddr, 8);
		__builtin_memcpy(&s1, (__u8 *)&ip6->saddr + 8, 8);
		if (!(s0 | s1) && ip6->nexthdr == IPPROTO_ICMPV6) {
			__u8 *icmp = (void *)(ip6 + 1);

			if ((void *)(icmp + 4) > data_end)
				return L3_NONE;
			if (icmp[0] != 135)
				return L3_NO_ADDR;
			if ((void *)(icmp + 24) > data_end)
				return L3_NONE;
			__builtin_memcpy(addr, icmp + 8, 16);
			return L3_ICMP6;
		}
		__builtin_memcpy(addr, dest ? &ip6->daddr : &ip6->saddr, 16);
		return L3_IP;
	}
	return L3_NONE;
}

/* The endpoint of ik's port (parent, VLAN) that has the frame's destination address (l3_addr with
 * `dest`), or 0; with `ip_only` (L3S from the wire) only an IPv4/IPv6 destination counts. */
static __always_inline struct mac_val *ipvlan_dest(void *data, void *data_end, __u16 proto, __u32 len,
						   struct ip_key *ik, int ip_only)
{
	int kind = l3_addr(data, data_end, ETH_HLEN, proto, len, 1, ik->addr);

	if (kind == L3_NONE || kind == L3_NO_ADDR || (ip_only && kind != L3_IP))
		return 0;
	return bpf_map_lookup_elem(&ipvlan_ips, ik);
}

/* A wire frame on an ipvlan port (ipvlan.rs; ipvlan_handle_mode_l2/_l3): to the endpoint that has its
 * destination address, else the host's. L2 group frames are the host's and the tc flood's; L3S hands
 * only IP for the parent's MAC to endpoints. Unicast for another MAC is the host's in every mode. */
static __always_inline int ipvlan_rx(struct xdp_md *ctx, struct ipvlan_port *pv, struct mac_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ip_key ik = { .parent_ifindex = key->parent_ifindex, .vlan = key->vlan };
	__u32 off = ETH_HLEN;
	__u16 proto;
	struct mac_val *v;
	int group, kind;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return XDP_PASS;
		proto = vh->encapsulated_proto;
		off += sizeof(*vh);
	}
	group = eth->h_dest[0] & 1;
	if (group && pv->mode == XMV_IPVLAN_L2) {
		count(XMV_STAT_PASS_MULTICAST);
		return XDP_PASS;
	}
	if (pv->mode == XMV_IPVLAN_L3S ? group || proto == bpf_htons(ETH_P_ARP) : 0) {
		count(XMV_STAT_PASS_UNKNOWN);
		return XDP_PASS;
	}
	if (!group && !mac_eq(eth->h_dest, pv->mac)) {
		count(XMV_STAT_PASS_UNKNOWN);
		return XDP_PASS;
	}
	kind = l3_addr(data, data_end, off, proto, data_end - data, 1, ik.addr);
	if (kind == L3_NONE || kind == L3_NO_ADDR || (kind == L3_ICMP6 && pv->mode == XMV_IPVLAN_L3S)) {
		count(XMV_STAT_PASS_UNKNOWN);
		return XDP_PASS;
	}
	v = bpf_map_lookup_elem(&ipvlan_ips, &ik);
	if (!v) {
		count(group ? XMV_STAT_PASS_MULTICAST : XMV_STAT_PASS_UNKNOWN);
		return XDP_PASS;
	}
	return steer(ctx, v, !group && off == ETH_HLEN);
}

SEC("xdp")
int xmv_parent(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct mac_key key = {};
	struct xmv_config *cfg;
	struct mac_val *v;
	__u32 *listed = 0;
	__u32 zero = 0;

	if ((void *)(eth + 1) > data_end) {
		count(XMV_STAT_PASS_SHORT);
		return XDP_PASS;
	}
	/* A group source MAC is nobody's: the host stack may have the frame, no endpoint gets it. */
	if (eth->h_source[0] & 1) {
		count(XMV_STAT_GROUP_SRC);
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
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->ipvlan_ports) {
		struct port_key pk = { .parent_ifindex = key.parent_ifindex, .vlan = key.vlan };
		struct ipvlan_port *pv = bpf_map_lookup_elem(&ipvlan_ports, &pk);

		if (pv)
			return ipvlan_rx(ctx, pv, &key);
	}

	/* By source MAC: source-mode lists, and group frames reflected to their sender. */
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	if (!cfg || cfg->listed_sources)
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
	return steer(ctx, v, !listed && eth->h_proto != bpf_htons(ETH_P_8021Q));
}

/* The flood list of `parent` (its slot in *slot): there while the parent has our tc program. */
static __always_inline struct flood_list *parent_list(__u32 parent, __u32 *slot)
{
	__u32 *s = bpf_map_lookup_elem(&slots, &parent);

	if (!s)
		return 0;
	*slot = *s;
	return bpf_map_lookup_elem(&floods, s);
}

/* Whether the tc flood fans this group frame out itself: untagged, from a sender that is neither
 * one of our endpoints (reflected frames have rules of their own) nor listed by a source-mode
 * endpoint. The rest goes to the workers (collect). */
static __always_inline int tc_floods(__u32 parent, const __u8 *src, int tagged)
{
	struct mac_key key = { .parent_ifindex = parent };
	struct port_key pk = { .parent_ifindex = parent };
	struct ipvlan_port *pv;

	if (tagged)
		return 0;
	/* An ipvlan port's own MAC may be one of its endpoints' frames back (ipvlan_external_frame). */
	pv = bpf_map_lookup_elem(&ipvlan_ports, &pk);
	if (pv && mac_eq(src, pv->mac))
		return 0;
	__builtin_memcpy(key.mac, src, ETH_ALEN);
	return !bpf_map_lookup_elem(&macs, &key) && !bpf_map_lookup_elem(&sources, &key);
}

/* Hands the workers a frame the host stack gets too: a clone into the collector's ingress, where
 * the packet socket of the parent in `slot` (the worker's flood socket, whose filter matches the
 * mark) receives it — as a tap on the parent would, without making every other frame of the
 * parent pass a tap. A clone the collector's backlog refuses is counted. */
static __always_inline void collect(struct __sk_buff *skb, struct flood_list *fl, __u32 slot)
{
	__u32 mark = skb->mark;
	struct flood_count *fs;

	skb->mark = XMV_MARK_MAGIC | XMV_MARK_COLLECT | slot << XMV_MARK_SLOT_SHIFT;
	if (bpf_clone_redirect(skb, fl->collector, BPF_F_INGRESS)) {
		fs = bpf_map_lookup_elem(&flood_stats, &slot);
		if (fs)
			fs->lost += 1;
	}
	skb->mark = mark;
}

struct flood_ctx {
	struct __sk_buff *skb;
	struct flood_list *fl;
	__u32 len;
	__u32 first;    /* the member of the loop's first round */
	__u32 mark;     /* veths: the copies' mark but the member index; 0 = taps */
	__u32 outcomes; /* outcomes at members counted here (see struct flood_count) */
};

static __always_inline void add_outcomes(__u32 slot, __u32 n)
{
	struct flood_count *fs = bpf_map_lookup_elem(&flood_stats, &slot);

	if (fs)
		fs->outcomes += n;
}

/* One member's copy. A veth's is queued to the relay, which counts it when it hands it over; a
 * tap's is transmitted and counted here. */
static long flood_one(__u32 i, void *data)
{
	struct flood_ctx *c = data;
	__u32 idx = c->first + i;
	struct flood_member *m;
	struct fast_count *fc;
	__u32 slot;

	if (idx >= XMV_FLOOD_MAX)
		return 1;
	m = &c->fl->m[idx];
	slot = m->slot;
	fc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!fc)
		return 0;
	if (!(m->flags & XMV_FLOOD_UP)) {
		fc->down += 1;
		c->outcomes += 1;
		return 0;
	}
	if (c->len > m->max_len) {
		fc->oversize += 1;
		c->outcomes += 1;
		return 0;
	}
	if (c->mark) {
		c->skb->mark = c->mark | idx;
		c->skb->tc_index = slot;
		if (bpf_clone_redirect(c->skb, c->fl->relay, BPF_F_INGRESS)) {
			fc->errors += 1;
			c->outcomes += 1;
		}
		return 0;
	}
	c->outcomes += 1;
	if (bpf_clone_redirect(c->skb, m->ifindex, 0)) {
		fc->errors += 1;
		return 0;
	}
	fc->frames += 1;
	fc->bytes += c->len;
	return 0;
}

/* A carrier the backlog refused: the members of the chunks it was to make count an error. */
static long flood_lost(__u32 i, void *data)
{
	struct flood_ctx *c = data;
	__u32 idx = c->first + i, slot;
	struct fast_count *fc;

	if (idx >= XMV_FLOOD_MAX)
		return 1;
	slot = c->fl->m[idx].slot;
	fc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (fc)
		fc->errors += 1;
	c->outcomes += 1;
	return 0;
}

/* Queues the copies of veth members [first, first + XMV_FLOOD_CHUNK) and, when members remain, the
 * next member's copy as the carrier that makes the following chunk. Changes skb->mark and
 * skb->tc_index (the caller restores them where they matter). */
static __always_inline void flood_chunk(struct __sk_buff *skb, struct flood_list *fl, __u32 slot, __u32 first)
{
	__u32 base = XMV_MARK_MAGIC | slot << XMV_MARK_SLOT_SHIFT;
	struct flood_ctx c = { .skb = skb, .fl = fl, .len = skb->len, .first = first, .mark = base | XMV_MARK_COPY };
	__u32 peers = fl->peers, end, copy, mslot;
	struct flood_member *m;
	struct fast_count *fc;

	if (peers > XMV_FLOOD_MAX)
		peers = XMV_FLOOD_MAX;
	if (first >= peers)
		return;
	end = first + XMV_FLOOD_CHUNK;
	if (end > peers)
		end = peers;
	bpf_loop(end - first, flood_one, &c, 0);
	if (end >= peers || end >= XMV_FLOOD_MAX)
		goto out;
	m = &fl->m[end];
	mslot = m->slot;
	fc = bpf_map_lookup_elem(&fast_stats, &mslot);
	if (!fc)
		goto out;
	copy = 0;
	if (!(m->flags & XMV_FLOOD_UP))
		fc->down += 1;
	else if (c.len > m->max_len)
		fc->oversize += 1;
	else
		copy = XMV_MARK_COPY;
	if (!copy)
		c.outcomes += 1;
	skb->mark = base | XMV_MARK_CARRIER | copy | end;
	skb->tc_index = mslot;
	if (bpf_clone_redirect(skb, fl->relay, BPF_F_INGRESS)) {
		if (copy) {
			fc->errors += 1;
			c.outcomes += 1;
		}
		c.first = end + 1;
		if (end + 1 < peers)
			bpf_loop(peers - end - 1, flood_lost, &c, 0);
	}
out:
	if (c.outcomes)
		add_outcomes(slot, c.outcomes);
}

/* Whether a frame for the tc fast path is longer than the endpoint takes (`max_len`: MTU + 14),
 * as it was received: the skb itself, or for one GRO merged, a segment (headers + gso_size; TCP
 * and UDP over IPv4/IPv6, what GRO merges here). Only frames that did not pass the parent's XDP
 * program can be: it steers long ones to the workers, and the parent carries it whenever an
 * endpoint's MTU is below the parent's (EndpointRec::needs_steering). */
static __always_inline int too_long(struct __sk_buff *skb, void *data, void *data_end, __u32 max_len)
{
	__u32 hdr = ETH_HLEN;
	__u8 proto;

	if (!skb->gso_size)
		return skb->len > max_len;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > data_end)
			return 0;
		hdr += ip->ihl * 4;
		proto = ip->protocol;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		hdr += sizeof(*ip6);
		proto = ip6->nexthdr;
	} else {
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		hdr += sizeof(struct udphdr);
	} else if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + (hdr & 0xff);

		if ((void *)(th + 1) > data_end)
			return 0;
		hdr += th->doff * 4;
	} else {
		return 0;
	}
	return hdr + skb->gso_size > max_len;
}

/* The tc fast path's last step: the frame (or GRO'd frames) for the endpoint in `slot`, whose
 * daemon-side veth is `ifindex` (0: it is down), to the container's end, counted. */
static __always_inline int fast_tc(struct __sk_buff *skb, __u32 slot, __u32 ifindex)
{
	struct fast_count *c = bpf_map_lookup_elem(&fast_stats, &slot);

	if (!ifindex) {
		if (c)
			c->down += skb->gso_segs ? skb->gso_segs : 1;
		return TC_ACT_SHOT;
	}
	if (c) {
		c->frames += skb->gso_segs ? skb->gso_segs : 1;
		c->bytes += skb->len;
	}
	return bpf_redirect_peer(ifindex, 0);
}

/* An ipvlan port's endpoint for an untagged frame that reached tc without the parent program's
 * verdict (with the tc fast path the parent carries none unless an endpoint needs it): ipvlan_rx's
 * rules for unicast to the port's MAC, and for an L3 port's group frames. 0 when the parent is no
 * ipvlan port or the frame is the host's (or the tc flood's). It may pull the headers into the
 * linear part: the caller reloads its packet pointers. */
static __always_inline struct mac_val *ipvlan_tc(struct __sk_buff *skb, __u32 parent, int group)
{
	struct port_key pk = { .parent_ifindex = parent };
	struct ip_key ik = { .parent_ifindex = parent };
	__u32 zero = 0, need = ETH_HLEN + 64;
	struct ipvlan_port *pv;
	struct xmv_config *cfg;
	void *data, *data_end;
	struct ethhdr *eth;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && !cfg->ipvlan_ports)
		return 0;
	pv = bpf_map_lookup_elem(&ipvlan_ports, &pk);
	if (!pv || (group && pv->mode != XMV_IPVLAN_L3))
		return 0;
	if (need > skb->len)
		need = skb->len;
	bpf_skb_pull_data(skb, need);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end || (!group && !mac_eq(eth->h_dest, pv->mac)))
		return 0;
	return ipvlan_dest(data, data_end, eth->h_proto, skb->len, &ik, pv->mode == XMV_IPVLAN_L3S);
}

/* The tc program on the parent's tcx ingress (the default fast path, `--fast-path tc`):
 * - unicast that xmv_parent passed for an endpoint on the tc fast path goes straight to the
 *   container's end of its veth (bpf_redirect_peer). xmv_parent checked tag, size, sources and
 *   state on the frame as received; the skb here may be several such frames merged by GRO. An
 *   endpoint that went down since xmv_parent saw the frame gets nothing, counted.
 * - a broadcast/multicast frame that tc_floods() accepts gets a clone per endpoint of its list
 *   (taps: transmitted out of the tap; veths: queued chunk by chunk to the relay, see
 *   XMV_FLOOD_CHUNK and xmv_relay_tc), and the host stack the original — macvlan_broadcast's
 *   clone per child, without a trip to userspace.
 * - what the workers must see as well — group frames the tc flood leaves to them (tagged, from one
 *   of our endpoints, from a listed source) and unicast from a listed source — is cloned to them.
 * Anything else continues to the host stack untouched. */
SEC("tc")
int xmv_parent_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct mac_key key = {};
	struct mac_val *v;
	__u32 slot = 0;

	/* The stack has moved an 802.1Q tag out of the frame by now (vlan_present). A group source
	 * MAC (xmv_parent counted it) is the host's alone, and so is what an ipvlan endpoint gave it. */
	if (skb->mark == XMV_MARK_HOST) {
		skb->mark = 0;
		return TC_ACT_OK;
	}
	if ((void *)(eth + 1) > data_end || (eth->h_source[0] & 1))
		return TC_ACT_OK;
	key.parent_ifindex = skb->ingress_ifindex;
	if (eth->h_dest[0] & 1) {
		struct flood_ctx fc = { .skb = skb, .len = skb->len };
		__u32 n, mark = skb->mark, tc_index = skb->tc_index;
		struct flood_count *fs;

		if (!skb->vlan_present) {
			/* An L3 ipvlan port's group frame for one endpoint's address (an ARP request). */
			v = ipvlan_tc(skb, key.parent_ifindex, 1);
			if (v && (v->flags & XMV_MAC_FAST_TC))
				return fast_tc(skb, v->slot, v->fast_ifindex);
			data = (void *)(long)skb->data;
			data_end = (void *)(long)skb->data_end;
			eth = data;
			if ((void *)(eth + 1) > data_end)
				return TC_ACT_OK;
		}

		fc.fl = parent_list(key.parent_ifindex, &slot);
		if (!fc.fl)
			return TC_ACT_OK;
		if (!tc_floods(key.parent_ifindex, eth->h_source, skb->vlan_present)) {
			collect(skb, fc.fl, slot);
			return TC_ACT_OK;
		}
		n = fc.fl->count;
		if (n > XMV_FLOOD_MAX)
			n = XMV_FLOOD_MAX;
		fc.first = fc.fl->peers;
		if (fc.first < n)
			bpf_loop(n - fc.first, flood_one, &fc, 0);
		flood_chunk(skb, fc.fl, slot, 0);
		skb->mark = mark;
		skb->tc_index = tc_index;
		fs = bpf_map_lookup_elem(&flood_stats, &slot);
		if (fs) {
			fs->frames += 1;
			fs->outcomes += fc.outcomes;
			if (!n)
				fs->empty += 1;
		}
		return TC_ACT_OK;
	}
	if (!skb->vlan_present) {
		struct fast_meta *m = (void *)(long)skb->data_meta;
		__u32 *port;

		if ((void *)(m + 1) <= data && m->magic == XMV_META_MAGIC) {
			slot = m->slot;
			port = bpf_map_lookup_elem(&fast_ports, &slot);
			if (port && *port && *port == m->ifindex)
				return fast_tc(skb, slot, *port);
		}
		v = ipvlan_tc(skb, key.parent_ifindex, 0);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
		if ((void *)(eth + 1) > data_end)
			return TC_ACT_OK;
		if (!v) {
			__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
			v = bpf_map_lookup_elem(&macs, &key);
			if (!v || (v->flags & XMV_MAC_NO_DST)) {
				__builtin_memset(key.mac, 0, ETH_ALEN);
				v = bpf_map_lookup_elem(&macs, &key);
			}
		}
		if (v && (v->flags & XMV_MAC_FAST_TC)) {
			if (too_long(skb, data, data_end, v->max_len)) {
				struct fast_count *c = bpf_map_lookup_elem(&fast_stats, &v->slot);

				if (c)
					c->oversize += skb->gso_segs ? skb->gso_segs : 1;
				return TC_ACT_SHOT;
			}
			goto fast;
		}
	}
	/* The host's frame; the workers' too when a source-mode endpoint lists its sender (passed
	 * by xmv_parent: a listed sender without nodst). */
	key.vlan = skb->vlan_present ? (skb->vlan_tci & 0x0fff) : 0;
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	if (bpf_map_lookup_elem(&sources, &key)) {
		struct flood_list *fl = parent_list(key.parent_ifindex, &slot);

		if (fl)
			collect(skb, fl, slot);
	}
	return TC_ACT_OK;
fast:
	return fast_tc(skb, v->slot, v->fast_ifindex);
}

/* The tc program on the tcx ingress of the relay pair, a veth pair of the daemon's own:
 * - xmacvlan0: the tc flood queues its veth copies here, and this hands each to its container end
 *   (bpf_redirect_peer), after making the flood's next chunk when the copy is a chunk's carrier (a
 *   carrier whose own endpoint is down or too small only does that);
 * - xmacvlan1, the collector: frames for the workers, which their packet sockets (taps, before tc)
 *   have seen by now, end here.
 * Nothing else is expected on either; it is dropped. */
SEC("tc")
int xmv_relay_tc(struct __sk_buff *skb)
{
	__u32 mark = skb->mark, mslot = skb->tc_index, slot, idx, ifindex;
	struct flood_member *m;
	struct flood_list *fl;
	struct fast_count *fc;

	if ((mark & XMV_MARK_MAGIC_MASK) != XMV_MARK_MAGIC || (mark & XMV_MARK_COLLECT))
		return TC_ACT_SHOT;
	slot = (mark >> XMV_MARK_SLOT_SHIFT) & (XMV_MAX_SLOTS - 1);
	idx = mark & XMV_MARK_IDX_MASK;
	fl = bpf_map_lookup_elem(&floods, &slot);
	if (!fl || idx >= XMV_FLOOD_MAX)
		return TC_ACT_SHOT;
	m = &fl->m[idx];
	ifindex = m->ifindex;
	if (mark & XMV_MARK_CARRIER)
		flood_chunk(skb, fl, slot, idx + 1);
	if (!(mark & XMV_MARK_COPY))
		return TC_ACT_SHOT;
	fc = bpf_map_lookup_elem(&fast_stats, &mslot);
	if (!fc)
		return TC_ACT_SHOT;
	add_outcomes(slot, 1);
	if (m->slot != mslot) {
		fc->errors += 1;
		return TC_ACT_SHOT;
	}
	fc->frames += 1;
	fc->bytes += skb->len;
	skb->mark = 0;
	skb->tc_index = 0;
	return bpf_redirect_peer(ifindex, 0);
}

/* A container's frame for the workers: a clone into the collector's ingress marked with the parent's
 * and the endpoint's slot, where the parent's flood socket takes it as received from the endpoint.
 * A clone the collector's backlog refuses is counted at the endpoint. */
static __always_inline int ep_to_workers(struct __sk_buff *skb, struct ep_port *ep, struct fast_count *c)
{
	/* Several frames in one (the container's TSO/GSO): the workers take frames, not these, and
	 * there is nothing to segment them with here. Counted at the sender as too long. */
	if (skb->gso_size) {
		__u32 segs = skb->gso_segs ? skb->gso_segs : 1;

		c->rx += segs;
		c->rx_bytes += skb->len;
		c->oversize += segs;
		return TC_ACT_SHOT;
	}
	skb->mark = XMV_MARK_MAGIC | XMV_MARK_COLLECT | XMV_MARK_FROM_EP |
		    (ep->parent_slot & (XMV_MAX_SLOTS - 1)) << XMV_MARK_SLOT_SHIFT | (ep->slot & XMV_MARK_IDX_MASK);
	count(XMV_STAT_EP_TO_WORKERS);
	if (bpf_clone_redirect(skb, ep->collector, BPF_F_INGRESS))
		c->lost += 1;
	return TC_ACT_SHOT;
}

/* A container's frame xmv_endpoint_tc decides itself: taken from its sender (counters `c`), and its
 * one outcome counted at the target's (`dc`: another endpoint's, or the parent's slot) — not `up`,
 * longer than `max_len` allows, or delivered. Returns whether it may go. */
static __always_inline int ep_take(struct __sk_buff *skb, void *data, void *data_end, struct fast_count *c,
				   struct fast_count *dc, __u32 up, __u32 max_len)
{
	__u32 segs = skb->gso_segs ? skb->gso_segs : 1;

	count(XMV_STAT_EP_TC);
	c->rx += segs;
	c->rx_bytes += skb->len;
	if (!up) {
		dc->down += segs;
		return 0;
	}
	if (too_long(skb, data, data_end, max_len)) {
		dc->oversize += segs;
		return 0;
	}
	dc->frames += segs;
	dc->bytes += skb->len;
	return 1;
}

/* A container's frame refused at its sender — by an ipvlan port (`private`, not routable) or by the
 * source guard: taken from it and dropped there, one outcome counted under `reason`. */
static __always_inline int ep_refused(struct __sk_buff *skb, struct fast_count *c, __u64 *reason)
{
	__u32 segs = skb->gso_segs ? skb->gso_segs : 1;

	c->rx += segs;
	c->rx_bytes += skb->len;
	*reason += segs;
	return TC_ACT_SHOT;
}

/* A container's frame the source guard refused: taken from it and dropped there, one outcome. */
static __always_inline int ep_spoofed(struct __sk_buff *skb, struct fast_count *c, int ip)
{
	return ep_refused(skb, c, ip ? &c->spoofed_ip : &c->spoofed_src);
}

enum guard_verdict { GUARD_OK, GUARD_SPOOFED, GUARD_WORKERS };

static __always_inline int guard_allows(__u32 slot, const __u8 *addr, int v4)
{
	struct guard_key key = { .slot = slot };

	if (v4) {
		if (!(addr[0] | addr[1] | addr[2] | addr[3]))
			return 1; /* 0.0.0.0: DHCP discovery, ARP probes */
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	} else {
		__u64 a, b;

		__builtin_memcpy(&a, addr, 8);
		__builtin_memcpy(&b, addr + 8, 8);
		if (!(a | b))
			return 1; /* ::, duplicate address detection */
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&guard_ips, &key) != 0;
}

/* The IP guard of an untagged frame (guard.rs has the rules; the workers apply all of them):
 * IPv4 and IPv6 sources and ARP's sender fields are checked here; neighbour discovery, and IPv6
 * behind extension headers, go to the workers, which read ND's options. */
static __always_inline int ip_guard(struct __sk_buff *skb, struct ep_port *ep)
{
	void *data, *data_end;
	__u16 proto;
	__u32 need;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN > data_end)
		return GUARD_WORKERS;
	proto = ((struct ethhdr *)data)->h_proto;
	if (proto == bpf_htons(ETH_P_IP))
		need = ETH_HLEN + sizeof(struct iphdr);
	else if (proto == bpf_htons(ETH_P_IPV6))
		need = ETH_HLEN + sizeof(struct ipv6hdr) + 1;
	else if (proto == bpf_htons(ETH_P_ARP))
		need = ETH_HLEN + 28;
	else
		return GUARD_OK;
	if (data + need > data_end) {
		if (skb->len < need)
			return GUARD_WORKERS; /* too short to check: the workers count it */
		bpf_skb_pull_data(skb, need);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + need > data_end)
			return GUARD_WORKERS;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;

		return guard_allows(ep->slot, (const __u8 *)&ip->saddr, 1) ? GUARD_OK : GUARD_SPOOFED;
	}
	if (proto == bpf_htons(ETH_P_ARP)) {
		__u8 *arp = data + ETH_HLEN;

		/* Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4); sha at 8, spa at 14. */
		if (arp[0] != 0 || arp[1] != 1 || arp[2] != 0x08 || arp[3] != 0 || arp[4] != 6 || arp[5] != 4 ||
		    !mac_eq(arp + 8, ep->mac))
			return GUARD_SPOOFED;
		return guard_allows(ep->slot, arp + 14, 1) ? GUARD_OK : GUARD_SPOOFED;
	}
	{
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		__u8 next = ip6->nexthdr;

		if (!guard_allows(ep->slot, (const __u8 *)&ip6->saddr, 0))
			return GUARD_SPOOFED;
		if (next == 0 || next == 43 || next == 60)
			return GUARD_WORKERS;
		if (next == IPPROTO_ICMPV6) {
			__u8 *type = (void *)(ip6 + 1);

			if (*type >= 133 && *type <= 137)
				return GUARD_WORKERS;
		}
		return GUARD_OK;
	}
}

/* An ipvlan endpoint's frame to the endpoint `v` of its port: to that container's end, or the workers
 * when the target is not on the tc fast path; nothing with `private`. */
static __always_inline int ipvlan_local(struct __sk_buff *skb, struct ep_port *ep, struct fast_count *c,
					struct mac_val *v)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 dslot = v->slot, len = skb->len;
	struct fast_count *dc;

	if (ep->flags & XMV_EP_IPVLAN_PRIVATE)
		return ep_refused(skb, c, &c->isolated);
	if (!(v->flags & XMV_MAC_FAST_TC))
		return ep_to_workers(skb, ep, c);
	dc = bpf_map_lookup_elem(&fast_stats, &dslot);
	if (!dc || !ep_take(skb, data, data_end, c, dc, v->fast_ifindex, v->max_len))
		return TC_ACT_SHOT;
	c->local_bytes += len;
	return bpf_redirect_peer(v->fast_ifindex, 0);
}

/* An ipvlan endpoint's frame out of the parent (`ingress` 0), or into the host stack as if
 * received there (BPF_F_INGRESS: ipvlan's dev_forward_skb to its master), counted at the parent's
 * slot. A VLAN's or an internal network's go to the workers (which tag them, or count them). */
static __always_inline int ipvlan_out(struct __sk_buff *skb, struct ep_port *ep, struct fast_count *c,
				      __u64 ingress)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 slot = ep->parent_slot;
	struct fast_count *dc;

	if (ep->vlan || !(ep->flags & XMV_EP_WIRE))
		return ep_to_workers(skb, ep, c);
	dc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!dc || !ep_take(skb, data, data_end, c, dc, 1, ep->wire_max_len))
		return TC_ACT_SHOT;
	if (ingress)
		skb->mark = XMV_MARK_HOST;
	return bpf_redirect(ep->parent_ifindex, ingress);
}

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* An L3 endpoint's IP frame for nobody of its port: routed by the host (ipvlan_process_outbound),
 * by its routes with the parent as the output interface, to a next hop from its neighbour table
 * (bpf_redirect_neigh resolves one it lacks). What the routes do not forward — the host's own
 * address, a broadcast route, no route at all: bpf_fib_lookup says NOT_FWDED for each — goes into
 * the host stack as if received on the parent, which delivers the first two and drops the last
 * (where the kernel's ipvlan drops it itself). Where forwarding is off on the parent,
 * bpf_fib_lookup will not say, and the frame takes the kernel's own route lookup in
 * bpf_redirect_neigh (as ipvlan's ip_route_output_flow), which cannot deliver to the host. */
static __always_inline int ipvlan_route(struct __sk_buff *skb, struct ep_port *ep, struct fast_count *c,
					void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct bpf_fib_lookup p = {};
	struct bpf_redir_neigh nh = {};
	struct fast_count *dc;
	__u32 slot = ep->parent_slot;
	long rc;

	if (ep->vlan || !(ep->flags & XMV_EP_WIRE))
		return ep_to_workers(skb, ep, c);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return ep_refused(skb, c, &c->not_routed);
		p.family = AF_INET;
		p.tos = ip->tos;
		p.l4_protocol = ip->protocol;
		p.tot_len = bpf_ntohs(ip->tot_len);
		p.ipv4_src = ip->saddr;
		p.ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return ep_refused(skb, c, &c->not_routed);
		p.family = AF_INET6;
		p.flowinfo = *(__be32 *)ip6 & bpf_htonl(0x0fffffff);
		p.l4_protocol = ip6->nexthdr;
		p.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		__builtin_memcpy(p.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(p.ipv6_dst, &ip6->daddr, 16);
	}
	p.ifindex = ep->parent_ifindex;
	rc = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return ipvlan_out(skb, ep, c, BPF_F_INGRESS);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_FWD_DISABLED && rc != BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return ep_refused(skb, c, &c->not_routed);
	dc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!dc || !ep_take(skb, data, data_end, c, dc, 1, rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ? 0 : ep->wire_max_len))
		return TC_ACT_SHOT;
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return bpf_redirect_neigh(ep->parent_ifindex, 0, 0, 0);
	nh.nh_family = p.family;
	if (p.family == AF_INET)
		nh.ipv4_nh = p.ipv4_dst;
	else
		__builtin_memcpy(nh.ipv6_nh, p.ipv6_dst, 16);
	return bpf_redirect_neigh(p.ifindex, &nh, sizeof(nh), 0);
}

/* An ipvlan endpoint's untagged frame (ipvlan.rs; ipvlan_xmit_mode_l2/_l3). */
static __always_inline int ipvlan_tx(struct __sk_buff *skb, struct ep_port *ep, struct fast_count *c)
{
	struct ip_key ik = { .parent_ifindex = ep->parent_ifindex, .vlan = ep->vlan };
	void *data, *data_end;
	struct ethhdr *eth;
	struct mac_val *v;
	__u32 need = ETH_HLEN + 64;
	int group, l2 = !(ep->flags & XMV_EP_IPVLAN_ROUTED);

	if (need > skb->len)
		need = skb->len;
	bpf_skb_pull_data(skb, need);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return ep_to_workers(skb, ep, c);
	group = eth->h_dest[0] & 1;
	/* L2: group frames to the other endpoints and the wire (the workers' flood); unicast to
	 * another MAC out of the parent. */
	if (l2 && group)
		return ep_to_workers(skb, ep, c);
	if (l2 && !mac_eq(eth->h_dest, eth->h_source))
		return ipvlan_out(skb, ep, c, 0);
	/* What the kernel looks the destination address up for (not with vepa): L2 unicast to the
	 * shared MAC, and all L3 sends. */
	if (!(ep->flags & XMV_EP_IPVLAN_VEPA)) {
		v = ipvlan_dest(data, data_end, eth->h_proto, skb->len, &ik, 0);
		if (v)
			return ipvlan_local(skb, ep, c, v);
	}
	if (l2)
		return ipvlan_out(skb, ep, c, (ep->flags & XMV_EP_IPVLAN_VEPA) ? 0 : BPF_F_INGRESS);
	if (group || (eth->h_proto != bpf_htons(ETH_P_IP) && eth->h_proto != bpf_htons(ETH_P_IPV6)))
		return ep_refused(skb, c, &c->not_routed);
	return ipvlan_route(skb, ep, c, data, data_end);
}

/* The filter of the endpoints' shared tc block, on the ingress of every tc-fed endpoint veth's host
 * side (the tc fast path; datapath/src/bpf/block.rs): a container's frame, as fwd::decide rules for
 * an untagged network on a wire —
 * - a bridge endpoint's unicast to a bridge endpoint: to that container's end (bpf_redirect_peer),
 *   or counted there as down / too long;
 * - a bridge endpoint's unicast to anyone else, and everything the other modes send: to the
 *   parent's egress, or counted at the parent's slot as too long;
 * - the rest goes to the workers: a bridge endpoint's broadcast/multicast (the copies to the other
 *   bridge endpoints), tagged frames, frames for endpoints the workers serve (taps).
 * Nothing a container sends reaches the daemon's namespace. */
SEC("tc")
int xmv_endpoint_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ingress_ifindex, slot, len = skb->len;
	struct fast_count *c, *dc;
	struct mac_key key = {};
	struct mac_val *v;
	struct ep_port *ep;

	ep = bpf_map_lookup_elem(&ep_ports, &ifindex);
	if (!ep) {
		count(XMV_STAT_NO_SOCKET);
		return TC_ACT_SHOT;
	}
	slot = ep->slot;
	c = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!c)
		return TC_ACT_SHOT;
	/* The source guard (guard.rs): a group source MAC from anyone, another's with spoof_check. */
	if ((void *)(eth + 1) <= data_end &&
	    ((eth->h_source[0] & 1) || ((ep->flags & XMV_EP_MAC_GUARD) && !mac_eq(eth->h_source, ep->mac))))
		return ep_spoofed(skb, c, 0);
	if ((ep->flags & XMV_EP_IP_GUARD) && !skb->vlan_present) {
		int verdict = ip_guard(skb, ep);

		if (verdict == GUARD_SPOOFED)
			return ep_spoofed(skb, c, 1);
		if (verdict == GUARD_WORKERS)
			return ep_to_workers(skb, ep, c);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		eth = data;
	}
	if ((void *)(eth + 1) > data_end || skb->vlan_present || eth->h_proto == bpf_htons(ETH_P_8021Q) ||
	    eth->h_proto == bpf_htons(ETH_P_8021AD))
		return ep_to_workers(skb, ep, c);
	if (ep->flags & XMV_EP_IPVLAN)
		return ipvlan_tx(skb, ep, c);
	if (ep->flags & XMV_EP_BRIDGE) {
		if (eth->h_dest[0] & 1)
			return ep_to_workers(skb, ep, c);
		key.parent_ifindex = ep->parent_ifindex;
		__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
		v = bpf_map_lookup_elem(&macs, &key);
		if (v && (v->flags & XMV_MAC_BRIDGE)) {
			__u32 dslot = v->slot;

			if (!(v->flags & XMV_MAC_FAST_TC))
				return ep_to_workers(skb, ep, c);
			dc = bpf_map_lookup_elem(&fast_stats, &dslot);
			if (!dc || !ep_take(skb, data, data_end, c, dc, v->fast_ifindex, v->max_len))
				return TC_ACT_SHOT;
			c->local_bytes += len;
			return bpf_redirect_peer(v->fast_ifindex, 0);
		}
	}
	if (!(ep->flags & XMV_EP_WIRE))
		return ep_to_workers(skb, ep, c);
	slot = ep->parent_slot;
	dc = bpf_map_lookup_elem(&fast_stats, &slot);
	if (!dc || !ep_take(skb, data, data_end, c, dc, 1, ep->wire_max_len))
		return TC_ACT_SHOT;
	return bpf_redirect(ep->parent_ifindex, 0);
}

SEC("xdp")
int xmv_endpoint(struct xdp_md *ctx)
{
	/* Nothing a container sends may leak into the daemon's namespace. */
	count(XMV_STAT_EP_TO_XSK);
	return to_xsk(ctx, XDP_DROP);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
