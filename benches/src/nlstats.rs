//! Interface counters of many namespaces, read fast: one NETLINK_ROUTE socket per namespace, opened
//! once from a thread that entered it (a netlink socket stays bound to the namespace it was created
//! in), then an RTM_GETLINK dump per read from any thread. Summing 1024 containers' rx_packets this
//! way takes milliseconds, where `ip -s link` per namespace would take seconds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;
const IFF_UP: u32 = 1;
const IFF_LOOPBACK: u32 = 8;

/// One interface as a dump reports it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub ifindex: i32,
    pub name: String,
    pub up: bool,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
}

/// A NETLINK_ROUTE socket bound to one network namespace.
pub struct NsSock {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

impl NsSock {
    /// Opens the socket inside the namespace at `ns_path`.
    pub fn open(ns_path: &Path) -> Result<NsSock> {
        let fd = crate::napi::in_netns(ns_path, || {
            // SAFETY: socket(2) with constant arguments; the result is checked and owned below.
            let fd =
                unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
            if fd < 0 {
                bail!("netlink socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is the fresh socket just returned (checked above) and nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?;
        let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
        // SAFETY: `fd` is the socket we own, open for the call; the option value points at the local `tv` and its size
        // is passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(NsSock { fd, seq: std::cell::Cell::new(1) })
    }

    fn request(&self, ty: u16, flags: u16, ifindex: i32) -> Result<u32> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        // nlmsghdr (16) + ifinfomsg (16).
        let mut m = [0u8; 32];
        m[0..4].copy_from_slice(&32u32.to_ne_bytes());
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m[16] = libc::AF_UNSPEC as u8;
        m[20..24].copy_from_slice(&ifindex.to_ne_bytes());
        // SAFETY: `self.fd` is our open netlink socket; `m` is a live 32-byte array and its length is passed.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr() as *const libc::c_void, m.len(), 0) };
        if r < 0 {
            bail!("netlink send: {}", std::io::Error::last_os_error());
        }
        Ok(seq)
    }

    /// Every interface of the namespace but loopback.
    pub fn links(&self) -> Result<Vec<Link>> {
        let seq = self.request(RTM_GETLINK, libc::NLM_F_DUMP as u16, 0)?;
        let mut out = Vec::new();
        crate::napi::recv_msgs(self.fd.as_raw_fd(), seq, true, |ty, body| {
            if ty != RTM_NEWLINK || body.len() < 16 {
                return;
            }
            let ifindex = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
            if flags & IFF_LOOPBACK != 0 {
                return;
            }
            let mut l = Link { ifindex, up: flags & IFF_UP != 0, ..Default::default() };
            for (t, d) in crate::napi::attrs(&body[16..]) {
                match t {
                    IFLA_IFNAME => l.name = String::from_utf8_lossy(d.split(|&b| b == 0).next().unwrap_or(d)).into(),
                    IFLA_STATS64 if d.len() >= 64 => {
                        let u = |i: usize| u64::from_ne_bytes(d[i * 8..i * 8 + 8].try_into().unwrap());
                        l.rx_packets = u(0);
                        l.tx_packets = u(1);
                        l.rx_dropped = u(6);
                    }
                    _ => {}
                }
            }
            out.push(l);
        })
        .context("RTM_GETLINK dump")?;
        Ok(out)
    }

    /// Deletes interface `ifindex` (a veth takes its peer along).
    pub fn del_link(&self, ifindex: i32) -> Result<()> {
        let seq = self.request(RTM_DELLINK, libc::NLM_F_ACK as u16, ifindex)?;
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: `self.fd` is our open netlink socket; `buf` is a live Vec of `buf.len()` bytes, the length
            // passed, which recv writes.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                bail!("netlink recv: {}", std::io::Error::last_os_error());
            }
            let p = &buf[..n as usize];
            if p.len() >= 16 && u32::from_ne_bytes([p[8], p[9], p[10], p[11]]) == seq {
                let ty = u16::from_ne_bytes([p[4], p[5]]);
                if ty == NLMSG_ERROR {
                    let body = &p[16..];
                    let err = body.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                    if err != 0 && err != -libc::ENODEV {
                        bail!("deleting interface {ifindex}: {}", std::io::Error::from_raw_os_error(-err));
                    }
                    return Ok(());
                }
            }
        }
    }
}
