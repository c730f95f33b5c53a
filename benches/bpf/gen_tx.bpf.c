// SPDX-License-Identifier: GPL-2.0
// Traffic generator for xmacvlan bench: run with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES with
// ingress_ifindex = the generator veth; every frame it lets through goes back out of that veth
// (XDP_TX), i.e. onto the "wire" towards the parent interface of the device under test.
//
// Pacing: with interval_ns != 0 a frame is sent only when its slot has come (bpf_ktime_get_ns);
// the others are dropped on the spot (recycled by the test run, never leave the generator). The
// schedule is per frame, so the offered load is smooth at the frame scale, not a burst per call.
//
// Destinations: the template's destination MAC is rewritten per frame. `bcast_per_mille` of every
// 1000 frames go to ff:ff:ff:ff:ff:ff; the others cycle through `n_dst` unicast MACs whose last two
// bytes are dst_lo16 + i (i = 0 .. n_dst-1) after dst_hi32, so traffic is spread evenly across the endpoints.
// With `spread_ip` (ipvlan: every endpoint has the parent's MAC) the unicast MAC stays the
// template's and the IPv4 destination address counts instead: its last two bytes are ip_lo16 + i,
// and the header checksum is the template's updated for that word (RFC 1624, eqn. 3), so a valid
// checksum stays valid and a deliberately wrong one stays wrong. Nothing is derived from the
// frame's current bytes: a live-frames run hands the program pages it has written before.
// The UDP checksum is 0 (none) in the template and stays so: no pseudo-header to update.
//
// One generator thread runs the program, so the globals need no atomics; userspace reads the
// counters through the mmap'd .bss.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

/* Nanoseconds between two sent frames; 0 = as fast as possible. Set before load. */
const volatile __u64 interval_ns = 0;
/* Unicast destinations: dst_hi32 in the first four bytes, dst_lo16 + 0 .. n_dst - 1 in the MAC's last two bytes (big endian). */
const volatile __u32 dst_hi32 = 0;
const volatile __u32 n_dst = 1;
const volatile __u32 dst_lo16 = 0;
/* Spread by IPv4 destination instead (1): the template's last two address bytes and its header
 * checksum (frame offsets 32 and 24, an untagged IPv4 frame with a 20-byte header). */
const volatile __u32 spread_ip = 0;
const volatile __u32 ip_lo16 = 0;
const volatile __u32 ip_csum = 0;
/* Broadcast frames per 1000. */
const volatile __u32 bcast_per_mille = 0;

/* Next send slot, position in the destination cycles, and frames sent so far. */
__u64 next_ns = 0;
__u32 uidx = 0;
__u32 mix = 0;
__u64 tx_count = 0;
__u64 tx_bcast = 0;

SEC("xdp")
int gen_tx(struct xdp_md *ctx)
{
	unsigned char *d = (void *)(long)ctx->data;
	unsigned char *end = (void *)(long)ctx->data_end;

	if (d + 6 > end)
		return XDP_DROP;
	if (interval_ns) {
		__u64 now = bpf_ktime_get_ns();

		if (now < next_ns)
			return XDP_DROP;
		/* Fell behind (between two BPF_PROG_RUN calls the generator pauses): restart the
		 * schedule instead of catching up with a burst. */
		if (now - next_ns > 64 * interval_ns)
			next_ns = now;
		next_ns += interval_ns;
	}
	if (bcast_per_mille && mix < bcast_per_mille) {
		d[0] = d[1] = d[2] = d[3] = d[4] = d[5] = 0xff;
		tx_bcast++;
	} else {
		__u32 lo = dst_lo16 + (spread_ip ? 0 : uidx);

		/* Unicast: the template's first four bytes, our last two (restored after a broadcast). */
		d[0] = (dst_hi32 >> 24) & 0xff;
		d[1] = (dst_hi32 >> 16) & 0xff;
		d[2] = (dst_hi32 >> 8) & 0xff;
		d[3] = dst_hi32 & 0xff;
		d[4] = (lo >> 8) & 0xff;
		d[5] = lo & 0xff;
		if (spread_ip) {
			__u32 a = (ip_lo16 + uidx) & 0xffff;
			/* ~HC' = ~HC + ~m + m' in ones' complement, folded twice. */
			__u32 sum = (~ip_csum & 0xffff) + (~ip_lo16 & 0xffff) + a;

			if (d + 34 > end)
				return XDP_DROP;
			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			sum = ~sum & 0xffff;
			d[24] = sum >> 8;
			d[25] = sum & 0xff;
			d[32] = a >> 8;
			d[33] = a & 0xff;
		}
		if (++uidx >= n_dst)
			uidx = 0;
	}
	if (++mix >= 1000)
		mix = 0;
	tx_count++;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
