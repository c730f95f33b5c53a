//! Attaching our programs: XDP (native, else generic; a stale one of ours replaced or removed, anyone
//! else's refused) and tcx ingress, and reading back what is attached — one `RTM_GETLINK` for one
//! link's XDP, `BPF_PROG_QUERY` for its tcx programs.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::{ProgramHandle, Xdp, XdpFlags};

use super::{Bpf, Prog, TcProg, XdpMode};
use crate::netlink::{attrs, Msg, Netlink};
use crate::Error;

/// Names of our programs, as the kernel reports them: how a restarted daemon recognises what a
/// previous one attached.
const OURS: [&str; 2] = ["xmv_parent", "xmv_endpoint"];
/// Names of our tc programs (the kernel keeps the first 15 characters).
const OURS_TC: [&str; 3] = ["xmv_parent_tc", "xmv_relay_tc", "xmv_endpoint_tc"];

impl Bpf {
    /// Attaches `p` to `ifindex`, native mode first, generic when the driver has none. Refuses to
    /// replace a program someone else attached; replaces (atomically) one of ours that a previous
    /// daemon left behind, e.g. after `kill -9`, so there is never more than one.
    pub fn attach(&self, p: Prog, ifindex: u32, ifname: &str) -> Result<XdpMode, Error> {
        if [XdpMode::Native, XdpMode::Generic].iter().any(|&m| self.attached_id(ifindex, m) != 0) {
            return self.replace_stale(p, ifindex, ifname);
        }
        let xdp = Xdp::new(self.prog(p));
        let mut last = None;
        for mode in [XdpMode::Native, XdpMode::Generic] {
            match xdp.attach(ifindex as i32, mode.flags() | XdpFlags::UPDATE_IF_NOEXIST) {
                Ok(()) => return Ok(mode),
                Err(e) if e.kind() == libbpf_rs::ErrorKind::AlreadyExists => {
                    return Err(Error::XdpBusy { ifname: ifname.to_string() })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Attach { ifname: ifname.to_string(), cause: last.expect("tried at least once") })
    }

    /// Makes sure no XDP program is on `ifindex` while we attach none: detaches one of ours that a
    /// previous daemon left behind (it would steer by that daemon's maps), refuses one someone else
    /// attached, as [`Bpf::attach`] does.
    pub fn clear_stale(&self, ifindex: u32, ifname: &str) -> Result<(), Error> {
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let id = self.attached_id(ifindex, mode);
            if id == 0 {
                continue;
            }
            let ours = ProgramHandle::from_prog_id(id).is_ok_and(|old| OURS.iter().any(|n| old.name() == *n));
            if !ours {
                return Err(Error::XdpBusy { ifname: ifname.to_string() });
            }
            self.detach(ifindex, mode);
        }
        Ok(())
    }

    fn replace_stale(&self, p: Prog, ifindex: u32, ifname: &str) -> Result<XdpMode, Error> {
        let busy = || Error::XdpBusy { ifname: ifname.to_string() };
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let id = self.attached_id(ifindex, mode);
            if id == 0 {
                continue;
            }
            let old = ProgramHandle::from_prog_id(id).map_err(|_| busy())?;
            if !OURS.iter().any(|n| old.name() == *n) {
                return Err(busy());
            }
            let opts = libbpf_rs::libbpf_sys::bpf_xdp_attach_opts {
                sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_xdp_attach_opts>() as _,
                old_prog_fd: old.as_fd().as_raw_fd(),
                ..Default::default()
            };
            let flags = (mode.flags() | XdpFlags::REPLACE).bits();
            // SAFETY: plain libbpf call with live program fds and a sized opts struct.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_xdp_attach(ifindex as i32, self.prog(p).as_raw_fd(), flags, &opts)
            };
            if rc != 0 {
                let cause = libbpf_rs::Error::from(std::io::Error::from_raw_os_error(rc.abs()));
                return Err(Error::Attach { ifname: ifname.to_string(), cause });
            }
            return Ok(mode);
        }
        Err(busy())
    }

    /// Detaches whatever we attached in `mode`; a link that is gone already is not an error.
    pub fn detach(&self, ifindex: u32, mode: XdpMode) {
        if mode == XdpMode::None {
            return;
        }
        let xdp = Xdp::new(self.prog(Prog::Parent));
        let _ = xdp.detach(ifindex as i32, mode.flags());
    }

    /// Id of the program attached to `ifindex` in `mode` (0 = none).
    pub fn attached_id(&self, ifindex: u32, mode: XdpMode) -> u32 {
        let ids = xdp_ids(ifindex).unwrap_or_default();
        match mode {
            XdpMode::Native => ids.native,
            XdpMode::Generic => ids.generic,
            XdpMode::None => 0,
        }
    }

    /// The kernel's id of our program `p` (what [`Bpf::attached_id`] shows when it is attached).
    pub fn prog_id(&self, p: Prog) -> u32 {
        prog_id(self.prog(p))
    }

    /// Attaches the tc program `p` to `ifindex`'s tcx ingress,
    /// after any program already there, or atomically in place of ours that a previous daemon left
    /// (kill -9). The attachment is not tied to this process, like the XDP one: the next start
    /// takes it over.
    pub fn attach_tc(&self, p: TcProg, ifindex: u32, ifname: &str) -> Result<(), Error> {
        use libbpf_rs::libbpf_sys as sys;
        let err = |rc: i32| Error::Attach {
            ifname: ifname.to_string(),
            cause: libbpf_rs::Error::from(std::io::Error::from_raw_os_error(rc.abs())),
        };
        let mut opts = sys::bpf_prog_attach_opts {
            sz: std::mem::size_of::<sys::bpf_prog_attach_opts>() as _,
            ..Default::default()
        };
        let stale = self
            .tc_ids(ifindex)
            .into_iter()
            .find_map(|id| ProgramHandle::from_prog_id(id).ok().filter(|h| OURS_TC.iter().any(|n| h.name() == *n)));
        if let Some(old) = &stale {
            opts.flags = libbpf_rs::libbpf_sys::BPF_F_REPLACE;
            opts.__bindgen_anon_1.replace_prog_fd = old.as_fd().as_raw_fd();
        }
        // SAFETY: plain libbpf call with a live program fd and a sized opts struct.
        let rc = unsafe {
            sys::bpf_prog_attach_opts(self.tc_prog(p).as_raw_fd(), ifindex as i32, sys::BPF_TCX_INGRESS, &opts)
        };
        if rc != 0 {
            return Err(err(rc));
        }
        Ok(())
    }

    /// Detaches the tc program `p` from `ifindex` (a link that is gone already is not an error).
    pub fn detach_tc(&self, p: TcProg, ifindex: u32) {
        use libbpf_rs::libbpf_sys as sys;
        let opts = sys::bpf_prog_detach_opts {
            sz: std::mem::size_of::<sys::bpf_prog_detach_opts>() as _,
            ..Default::default()
        };
        // SAFETY: plain libbpf call with a live program fd and a sized opts struct.
        unsafe { sys::bpf_prog_detach_opts(self.tc_prog(p).as_raw_fd(), ifindex as i32, sys::BPF_TCX_INGRESS, &opts) };
    }

    /// Ids of the programs on `ifindex`'s tcx ingress.
    pub fn tc_ids(&self, ifindex: u32) -> Vec<u32> {
        tcx_ids(ifindex)
    }

    /// Whether the tc program `p` is attached to `ifindex`.
    pub fn tc_attached(&self, p: TcProg, ifindex: u32) -> bool {
        let ours = prog_id(self.tc_prog(p));
        ours != 0 && self.tc_ids(ifindex).contains(&ours)
    }
}

/// Ids of the programs on `ifindex`'s tcx ingress.
fn tcx_ids(ifindex: u32) -> Vec<u32> {
    {
        use libbpf_rs::libbpf_sys as sys;
        let mut ids = [0u32; 64];
        let mut opts =
            sys::bpf_prog_query_opts { sz: std::mem::size_of::<sys::bpf_prog_query_opts>() as _, ..Default::default() };
        opts.prog_ids = ids.as_mut_ptr();
        opts.__bindgen_anon_1.count = ids.len() as u32;
        // SAFETY: `ids` is a writable array whose length `count` states.
        let rc = unsafe { sys::bpf_prog_query_opts(ifindex as i32, sys::BPF_TCX_INGRESS, &mut opts) };
        if rc != 0 {
            return Vec::new();
        }
        // SAFETY: the kernel wrote the count of ids it filled in.
        let n = unsafe { opts.__bindgen_anon_1.count } as usize;
        ids[..n.min(ids.len())].to_vec()
    }
}

/// The XDP programs attached to one interface, per mode (0 = none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct XdpIds {
    native: u32,
    generic: u32,
}

/// Asks the kernel for one link's XDP attachment (RTM_GETLINK for that ifindex). libbpf's
/// bpf_xdp_query dumps every link of the namespace and picks one: with thousands of endpoint
/// veths each attach paid for a dump of all of them.
fn xdp_ids(ifindex: u32) -> std::io::Result<XdpIds> {
    const RTM_GETLINK: u16 = 18;
    const RTM_NEWLINK: u16 = 16;
    const IFLA_EXT_MASK: u16 = 29;
    const IFLA_XDP: u16 = 43;
    const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
    const XDP_ATTACHED_DRV: u8 = 1;
    const XDP_ATTACHED_SKB: u8 = 2;
    const XDP_ATTACHED_MULTI: u8 = 4;
    const IFLA_XDP_ATTACHED: u16 = 2;
    const IFLA_XDP_PROG_ID: u16 = 4;
    const IFLA_XDP_DRV_PROG_ID: u16 = 5;
    const IFLA_XDP_SKB_PROG_ID: u16 = 6;

    // ifinfomsg (family, pad, type, index, flags, change), and no statistics in the answer.
    let mut m = Msg::new(RTM_GETLINK, 0);
    let mut ifinfo = [0u8; 16];
    ifinfo[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    m.put(&ifinfo);
    m.attr(IFLA_EXT_MASK, &RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    let nl = Netlink::open(libc::NETLINK_ROUTE)?;
    let seq = nl.send(m)?;
    let mut link = None;
    nl.answers(seq, false, |ty, body| {
        if ty == RTM_NEWLINK && body.len() >= 16 {
            link = Some(body[16..].to_vec());
        }
    })?;
    let link = link.ok_or_else(|| std::io::Error::other("no RTM_NEWLINK in the answer"))?;
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut ids = XdpIds::default();
    let Some((_, xdp)) = attrs(&link).find(|&(t, _)| t == IFLA_XDP) else { return Ok(ids) };
    let (mut attached, mut prog) = (0u8, 0u32);
    for (t, p) in attrs(xdp) {
        match (t, p.len()) {
            (IFLA_XDP_ATTACHED, 1..) => attached = p[0],
            (IFLA_XDP_PROG_ID, 4..) => prog = u32_at(p, 0),
            (IFLA_XDP_DRV_PROG_ID, 4..) => ids.native = u32_at(p, 0),
            (IFLA_XDP_SKB_PROG_ID, 4..) => ids.generic = u32_at(p, 0),
            _ => {}
        }
    }
    match attached {
        XDP_ATTACHED_DRV => ids.native = prog,
        XDP_ATTACHED_SKB => ids.generic = prog,
        XDP_ATTACHED_MULTI => {}
        _ => {}
    }
    Ok(ids)
}

/// The kernel's id of a loaded program.
fn prog_id(fd: BorrowedFd<'_>) -> u32 {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a writable bpf_prog_info of `len` bytes; the fd is a live program.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc == 0 {
        info.id
    } else {
        0
    }
}
