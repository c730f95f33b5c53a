//! The endpoints' shared tc block: where xmv_endpoint_tc meets the frames containers send.
//!
//! Every tc-fed endpoint's daemon-side veth gets a `clsact` qdisc whose ingress is the shared block
//! [`BLOCK`], and one cls_bpf filter on that block (direct action) runs xmv_endpoint_tc for all of
//! them. Joining is one RTM_NEWQDISC and costs ~0.1 ms whatever the member count; a tcx attachment
//! per endpoint would cost an RCU grace period each (~16 ms here: `connect` 3.3 → 19.4 ms, and a
//! daemon with 1024 endpoints overran a 10 s stop deadline detaching them; README, Measured results).
//! The block lives while a qdisc holds it: the filter is (re)written after the first join of a
//! daemon's life, and goes with the last member.
//!
//! Spoken as raw rtnetlink ([`crate::netlink`]; linux/rtnetlink.h, linux/pkt_sched.h,
//! linux/pkt_cls.h): tcmsg and a few attributes, each request acknowledged.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::netlink::{Msg, Netlink};

/// The shared block's index: "xmv" in ASCII. Ours alone on this host (nothing else uses it).
pub const BLOCK: u32 = 0x0078_6d76;

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_INGRESS_BLOCK: u16 = 13;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const TC_H_CLSACT: u32 = 0xffff_fff1;
const CLSACT_HANDLE: u32 = 0xffff_0000;
const TCM_IFINDEX_MAGIC_BLOCK: u32 = 0xffff_ffff;
/// The filter's priority and handle on the block (one filter: any fixed pair).
const FILTER_PRIO: u32 = 1;
const FILTER_HANDLE: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// Puts `ifindex` (in the calling thread's namespace) on the shared block: a `clsact` qdisc whose
/// ingress block is [`BLOCK`]. A clsact it had (ours from an earlier run, or a stale one) is
/// replaced.
pub fn join(ifindex: u32) -> std::io::Result<()> {
    match leave(ifindex) {
        Ok(()) => {}
        // None there (ENOENT), or no qdisc of that kind (EINVAL): nothing to replace.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    let mut m = tc_msg(RTM_NEWQDISC, libc::NLM_F_CREATE | libc::NLM_F_EXCL, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    m.attr(TCA_KIND, b"clsact\0");
    m.attr(TCA_INGRESS_BLOCK, &BLOCK.to_ne_bytes());
    send(m)
}

/// Takes `ifindex` off the block (deletes its clsact qdisc). The block and its filter go with the
/// last member.
pub fn leave(ifindex: u32) -> std::io::Result<()> {
    send(tc_msg(RTM_DELQDISC, 0, ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0))
}

/// Writes (or replaces) the block's one filter: `prog` (xmv_endpoint_tc), direct action, every
/// protocol. The block must exist: call after a join.
pub fn set_filter(prog: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    // tcm_parent is tcm_block_index when tcm_ifindex is the block magic.
    let info = FILTER_PRIO << 16 | u32::from(ETH_P_ALL.to_be());
    let flags = libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
    let mut m = tc_msg(RTM_NEWTFILTER, flags, TCM_IFINDEX_MAGIC_BLOCK, FILTER_HANDLE, BLOCK, info);
    m.attr(TCA_KIND, b"bpf\0");
    let opts = m.begin(TCA_OPTIONS);
    m.attr(TCA_BPF_FD, &(prog.as_raw_fd() as u32).to_ne_bytes());
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    m.attr(TCA_BPF_NAME, &cname);
    m.attr(TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes());
    m.end(opts);
    send(m)
}

/// A tc request (rtnetlink, acknowledged): `struct tcmsg` (family, pad, ifindex, handle, parent,
/// info), then the caller's attributes.
fn tc_msg(kind: u16, flags: libc::c_int, ifindex: u32, handle: u32, parent: u32, info: u32) -> Msg {
    let mut m = Msg::new(kind, flags);
    m.put(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    for v in [ifindex, handle, parent, info] {
        m.put(&v.to_ne_bytes());
    }
    m
}

/// Sends a tc request on a socket of its own and waits for the kernel's acknowledgement.
fn send(m: Msg) -> std::io::Result<()> {
    Netlink::open(libc::NETLINK_ROUTE)?.ack(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tc_request_has_its_tcmsg_after_the_header() {
        let m = tc_msg(RTM_NEWTFILTER, 0, 7, 1, 2, 3);
        let b = m.bytes();
        // header 16 + tcmsg 20 (family, 3 pad, ifindex, handle, parent, info)
        assert_eq!(b.len(), 16 + 20);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_NEWTFILTER);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 7, "tcm_ifindex after family and pad");
        assert_eq!(u32::from_ne_bytes(b[32..36].try_into().unwrap()), 3, "tcm_info last");
    }
}
