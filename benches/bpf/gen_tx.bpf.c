// SPDX-License-Identifier: GPL-2.0
// Traffic generator for xmacvlan-bench: run with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES with
// ingress_ifindex = the generator veth; every frame it lets through goes back out of that veth
// (XDP_TX), i.e. onto the "wire" towards the parent interface of the device under test.
//
// Pacing: with interval_ns != 0 a frame is sent only when its slot has come (bpf_ktime_get_ns);
// the others are dropped on the spot (recycled by the test run, never leave the generator). One
// generator thread runs the program, so the globals need no atomics. tx_count is read by userspace.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;

/* Nanoseconds between two sent frames; 0 = as fast as possible. Set before load. */
const volatile __u64 interval_ns = 0;

/* Next send slot, and frames sent so far. */
__u64 next_ns = 0;
__u64 tx_count = 0;

SEC("xdp")
int gen_tx(struct xdp_md *ctx)
{
	(void)ctx;
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
	tx_count++;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
