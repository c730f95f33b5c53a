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
//! Spoken as raw rtnetlink (linux/rtnetlink.h, linux/pkt_sched.h, linux/pkt_cls.h): tcmsg and a few
//! attributes, each request acknowledged.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The shared block's index: "xmv" in ASCII. Ours alone on this host (nothing else uses it).
pub const BLOCK: u32 = 0x0078_6d76;

const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const NLMSG_ERROR: u16 = 2;
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
    let mut m = Msg::new(RTM_NEWQDISC, libc::NLM_F_CREATE | libc::NLM_F_EXCL);
    m.tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    m.attr(TCA_KIND, b"clsact\0");
    m.attr(TCA_INGRESS_BLOCK, &BLOCK.to_ne_bytes());
    m.send()
}

/// Takes `ifindex` off the block (deletes its clsact qdisc). The block and its filter go with the
/// last member.
pub fn leave(ifindex: u32) -> std::io::Result<()> {
    let mut m = Msg::new(RTM_DELQDISC, 0);
    m.tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT, 0);
    m.send()
}

/// Writes (or replaces) the block's one filter: `prog` (xmv_endpoint_tc), direct action, every
/// protocol. The block must exist: call after a join.
pub fn set_filter(prog: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    let mut m = Msg::new(RTM_NEWTFILTER, libc::NLM_F_CREATE | libc::NLM_F_REPLACE);
    // tcm_parent is tcm_block_index when tcm_ifindex is the block magic.
    m.tcmsg(TCM_IFINDEX_MAGIC_BLOCK, FILTER_HANDLE, BLOCK, FILTER_PRIO << 16 | u32::from(ETH_P_ALL.to_be()));
    m.attr(TCA_KIND, b"bpf\0");
    let opts = m.begin(TCA_OPTIONS);
    m.attr(TCA_BPF_FD, &(prog.as_raw_fd() as u32).to_ne_bytes());
    let mut cname = name.as_bytes().to_vec();
    cname.push(0);
    m.attr(TCA_BPF_NAME, &cname);
    m.attr(TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes());
    m.end(opts);
    m.send()
}

/// Sends one rtnetlink request on a socket of its own and reads the first reply into `reply`;
/// returns its length.
pub(super) fn rtnl_request(req: &[u8], reply: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: plain socket(2); owned below.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sends our buffer of its length on our socket (to the kernel: no address needed).
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: receives into the caller's buffer of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One rtnetlink request: nlmsghdr, tcmsg, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: libc::c_int) -> Self {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | flags) as u16;
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        Msg { buf }
    }

    /// struct tcmsg: family, pad, ifindex, handle, parent, info.
    fn tcmsg(&mut self, ifindex: u32, handle: u32, parent: u32, info: u32) {
        self.buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        for v in [ifindex, handle, parent, info] {
            self.buf.extend_from_slice(&v.to_ne_bytes());
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        self.buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    /// Opens a nested attribute; [`Msg::end`] writes its length.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.attr(kind, &[]);
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Sends the request and waits for the kernel's acknowledgement.
    fn send(mut self) -> std::io::Result<()> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        let mut reply = [0u8; 1024];
        let n = rtnl_request(&self.buf, &mut reply)?;
        if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
            return Err(std::io::Error::other("unexpected rtnetlink reply to a tc request"));
        }
        match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(-e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_attribute_counts_its_members_and_everything_stays_aligned() {
        let mut m = Msg::new(RTM_NEWTFILTER, 0);
        m.tcmsg(7, 1, 2, 3);
        m.attr(TCA_KIND, b"bpf\0");
        let at = m.begin(TCA_OPTIONS);
        m.attr(TCA_BPF_FD, &5u32.to_ne_bytes());
        m.attr(TCA_BPF_NAME, b"xmv\0\0");
        m.end(at);
        assert_eq!(m.buf.len() % 4, 0);
        // header 16 + tcmsg 20 + kind 8 + options (4 + fd 8 + name 12) 24
        assert_eq!(m.buf.len(), 16 + 20 + 8 + 24);
        assert_eq!(u16::from_ne_bytes([m.buf[at], m.buf[at + 1]]), 24);
        assert_eq!(u32::from_ne_bytes(m.buf[20..24].try_into().unwrap()), 7, "tcm_ifindex after family and pad");
    }
}
