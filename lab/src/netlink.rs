//! Raw netlink for the lab's hot reads: a socket bound to the namespace it was opened in, requests
//! built from a family header and attributes, and the answers walked message by message. Reading
//! 1 024 namespaces' counters this way takes milliseconds, where an `ip` process per namespace takes
//! seconds; generic netlink (the `netdev` family) finds NAPI threads by interface.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::sys;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;

/// A netlink socket of one protocol in one namespace, numbering its requests.
pub struct Netlink {
    fd: OwnedFd,
    seq: Cell<u32>,
}

impl Netlink {
    /// A socket of `protocol` (NETLINK_ROUTE, NETLINK_GENERIC) in the calling thread's namespace;
    /// receives give up after two seconds.
    pub fn open(protocol: libc::c_int) -> io::Result<Netlink> {
        let fd = sys::netlink_socket(protocol, Duration::from_secs(2))?;
        Ok(Netlink { fd, seq: Cell::new(0) })
    }

    /// [`Netlink::open`] inside the namespace at `path` (the socket stays bound to it).
    pub fn open_in(path: &Path, protocol: libc::c_int) -> io::Result<Netlink> {
        sys::in_netns(path, || Netlink::open(protocol))?
            .map_err(|e| sys::context(e, format!("a netlink socket in {}", path.display())))
    }

    /// Sends one request of type `ty` with `flags` (NLM_F_REQUEST is added): `body` is the family
    /// header (ifinfomsg, genlmsghdr, …) followed by attributes ([`push_attr`]). Its sequence number.
    pub fn request(&self, ty: u16, flags: u16, body: &[u8]) -> io::Result<u32> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let mut m = Vec::with_capacity(HEADER + body.len());
        m.extend_from_slice(&((HEADER + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        // SAFETY: sends from a live buffer of the length passed, on our socket (to the kernel: the
        // socket is unconnected and a netlink send without an address goes to port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) };
        sys::check(n as libc::c_int, || "netlink send".into())?;
        Ok(seq)
    }

    /// Receives the answers to request `seq` and calls `f(type, body)` for each, until NLMSG_DONE
    /// (`dump`) or after the first (not a dump). An NLMSG_ERROR with an error code ends it with that
    /// error (its raw errno kept); one with code 0 (an ack) ends it successfully.
    pub fn answers(&self, seq: u32, dump: bool, mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: `buf` is live, of the length passed, and recv writes at most that much.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            sys::check(n as libc::c_int, || "netlink recv".into())?;
            let mut p = &buf[..n as usize];
            while p.len() >= HEADER {
                let len = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]) as usize;
                let ty = u16::from_ne_bytes([p[4], p[5]]);
                let mseq = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
                if len < HEADER || len > p.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message"));
                }
                let body = &p[HEADER..len];
                p = &p[((len + 3) & !3).min(p.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let err = body.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                        return if err == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-err)) };
                    }
                    _ => {
                        f(ty, body);
                        if !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Appends attribute `ty` with `data`, padded to four bytes.
pub fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// The attributes in `p` as (type without the nested/byte-order flags, payload); stops at the first
/// malformed one.
pub fn attrs(mut p: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while p.len() >= 4 {
        let len = u16::from_ne_bytes([p[0], p[1]]) as usize;
        let ty = u16::from_ne_bytes([p[2], p[3]]) & 0x3fff;
        if len < 4 || len > p.len() {
            break;
        }
        v.push((ty, &p[4..len]));
        p = &p[((len + 3) & !3).min(p.len())..];
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_with_padding() {
        let mut b = Vec::new();
        push_attr(&mut b, 3, b"eth1\0");
        push_attr(&mut b, 0x8000 | 7, &[1, 2, 3, 4]);
        assert_eq!(b.len(), 12 + 8, "5 bytes of name padded to 8, plus the header");
        let a = attrs(&b);
        assert_eq!(a, vec![(3, &b"eth1\0"[..]), (7, &[1u8, 2, 3, 4][..])]);
        assert_eq!(attrs(&[9, 0, 1, 0]), vec![], "a length past the end stops the walk");
    }
}
