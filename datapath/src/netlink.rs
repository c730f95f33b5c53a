//! Raw netlink, the little the datapath needs where a netlink library costs more than it gives: a
//! tc request acknowledged in ~0.1 ms (the endpoints' shared block), one interface's XDP
//! attachment without a dump of every link. The lab that tests and measures xmacvlan speaks it
//! too (interface counters of a thousand namespaces, generic netlink): one way to build a request,
//! walk attributes and read answers.
//!
//! linux/netlink.h: a message is a 16-byte header (length, type, flags, sequence, port), a family
//! header (tcmsg, ifinfomsg, genlmsghdr, …) and attributes, each 4-byte aligned.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16;

/// One request: the netlink header, the family header, attributes.
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A request of type `ty` with `flags` (NLM_F_REQUEST is added; the sequence number is set
    /// when it is sent).
    pub fn new(ty: u16, flags: libc::c_int) -> Self {
        let mut buf = vec![0u8; HEADER];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
        Msg { buf }
    }

    /// Appends raw bytes: the family header (tcmsg, ifinfomsg, genlmsghdr).
    pub fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends attribute `kind` with `payload`, padded to four bytes.
    pub fn attr(&mut self, kind: u16, payload: &[u8]) {
        self.buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    /// Opens a nested attribute; [`Msg::end`] writes its length.
    pub fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.attr(kind, &[]);
        at
    }

    pub fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// The message so far (its length and sequence number are written when it is sent).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The message as sent with sequence number `seq`.
    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// A netlink socket of one protocol, in the namespace of the thread that opened it (for good),
/// numbering its requests.
pub struct Netlink {
    fd: OwnedFd,
    seq: Cell<u32>,
}

impl Netlink {
    /// NETLINK_ROUTE, NETLINK_GENERIC, … in the calling thread's namespace.
    pub fn open(protocol: libc::c_int) -> io::Result<Netlink> {
        // SAFETY: socket(2) has no memory arguments; the result is checked before it is owned.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Netlink { fd: unsafe { OwnedFd::from_raw_fd(raw) }, seq: Cell::new(0) })
    }

    /// Receives give up after `timeout` (the default is to wait for the kernel, which answers).
    pub fn with_timeout(self, timeout: Duration) -> io::Result<Netlink> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: the option value is a live timeval of the size passed; the socket is ours.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self)
    }

    /// Sends `msg`; its sequence number, to read the answers by.
    pub fn send(&self, mut msg: Msg) -> io::Result<u32> {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        let m = msg.finish(seq);
        // SAFETY: sends a live buffer of its length on our socket (unconnected: to the kernel).
        if unsafe { libc::send(self.fd.as_raw_fd(), m.as_ptr().cast(), m.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(seq)
    }

    /// Sends `msg` with NLM_F_ACK and waits for the kernel's acknowledgement (or its error).
    pub fn ack(&self, mut msg: Msg) -> io::Result<()> {
        let flags = u16::from_ne_bytes([msg.buf[6], msg.buf[7]]) | libc::NLM_F_ACK as u16;
        msg.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let seq = self.send(msg)?;
        self.answers(seq, false, |_, _| {})
    }

    /// Reads the answers to request `seq` and calls `f(type, body)` for each (the body is what
    /// follows the netlink header), until NLMSG_DONE (`dump`) or after the first (not a dump). An
    /// NLMSG_ERROR with an error code ends it with that error (its errno kept); one with code 0 (an
    /// acknowledgement) ends it successfully.
    pub fn answers(&self, seq: u32, dump: bool, mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            // SAFETY: receives into a live buffer of the length passed.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut p = &buf[..n as usize];
            while p.len() >= HEADER {
                let len = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]) as usize;
                let ty = u16::from_ne_bytes([p[4], p[5]]);
                let mseq = u32::from_ne_bytes([p[8], p[9], p[10], p[11]]);
                if len < HEADER || len > p.len() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed netlink message"));
                }
                let body = &p[HEADER..len];
                p = &p[len.next_multiple_of(4).min(p.len())..];
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let err = body.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
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

/// Netlink attributes as (type without the nested/byte-order flags, payload), each padded to 4
/// bytes; stops at a malformed one.
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let (len, ty) = (u16::from_ne_bytes([b[0], b[1]]) as usize, u16::from_ne_bytes([b[2], b[3]]) & 0x3fff);
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_their_padding_and_a_bad_length_stops_the_walk() {
        // (len 5, type 2, one byte + 3 padding), (len 8, type 4 | NLA_F_NESTED, u32 7), (len 2: bad)
        let b = [5, 0, 2, 0, 1, 0, 0, 0, 8, 0, 4, 0x80, 7, 0, 0, 0, 2, 0, 9, 0];
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(t, p)| (t, p.to_vec())).collect();
        assert_eq!(got, vec![(2, vec![1]), (4, vec![7, 0, 0, 0])]);
        assert_eq!(attrs(&[]).count(), 0);
    }

    #[test]
    fn a_nested_attribute_counts_its_members_and_everything_stays_aligned() {
        let mut m = Msg::new(44, 0);
        m.put(&[0; 20]);
        m.attr(1, b"bpf\0");
        let at = m.begin(2);
        m.attr(6, &5u32.to_ne_bytes());
        m.attr(7, b"xmv\0\0");
        m.end(at);
        let bytes = m.finish(9).to_vec();
        assert_eq!(bytes.len() % 4, 0);
        // header 16 + family header 20 + kind 8 + options (4 + fd 8 + name 12) 24
        assert_eq!(bytes.len(), 16 + 20 + 8 + 24);
        assert_eq!(u16::from_ne_bytes([bytes[at], bytes[at + 1]]), 24);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), bytes.len() as u32, "length");
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 9, "sequence");
        assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), libc::NLM_F_REQUEST as u16, "flags");
    }
}
