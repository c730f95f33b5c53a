// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
// The bench's `tc-floor` backend: the least a datapath of tc programs on veth endpoints can do for
// the bench's unicast paths, as a reference line next to kernel macvlan and xmacvlan. No counters,
// no modes, no floods, no state checks, no MTU checks: a destination MAC compared with an array
// entry found from the MAC's last two bytes (the lab numbers its containers there), and a redirect.
// - floor_parent (tcx ingress of the parent): unicast to a container → bpf_redirect_peer into its
//   end of the veth; anything else → the host stack.
// - floor_endpoint (tcx ingress of every endpoint's lab-side veth end): unicast to another container
//   → bpf_redirect_peer into it; anything else → out of the parent (bpf_redirect to its egress).
// What xmacvlan's own programs do beyond this is what its rows pay over this backend's.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#define FLOOR_PORTS 4096

struct port {
	__u8 mac[ETH_ALEN];
	__u16 pad;
	/* The lab-side end of the container's veth; 0: no container here. */
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOOR_PORTS);
	__type(key, __u32);
	__type(value, struct port);
} ports SEC(".maps");

/* The parent's ifindex. Set before load. */
const volatile __u32 parent_ifindex = 0;

/* The container whose MAC `dst` is, if any: its veth's lab-side end. */
static __always_inline __u32 lookup(const __u8 *dst)
{
	__u32 idx = (((__u32)dst[4] << 8) | dst[5]) & (FLOOR_PORTS - 1);
	struct port *p = bpf_map_lookup_elem(&ports, &idx);

	if (!p || !p->ifindex)
		return 0;
	if (p->mac[0] != dst[0] || p->mac[1] != dst[1] || p->mac[2] != dst[2] || p->mac[3] != dst[3] ||
	    p->mac[4] != dst[4] || p->mac[5] != dst[5])
		return 0;
	return p->ifindex;
}

SEC("tc")
int floor_parent(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex;

	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1))
		return TC_ACT_OK;
	ifindex = lookup(eth->h_dest);
	return ifindex ? bpf_redirect_peer(ifindex, 0) : TC_ACT_OK;
}

SEC("tc")
int floor_endpoint(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	if (!(eth->h_dest[0] & 1)) {
		ifindex = lookup(eth->h_dest);
		if (ifindex)
			return bpf_redirect_peer(ifindex, 0);
	}
	return bpf_redirect(parent_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
