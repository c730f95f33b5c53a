//! Transmit towards endpoints: every frame of a round, whatever endpoint it goes to, in one
//! `sendmmsg(2)` on one packet socket per worker, each message addressed by the endpoint's ifindex.
//!
//! Copy-mode AF_XDP TX (all a veth offers) makes the kernel allocate an skb and copy the frame
//! anyway, but it needs one `sendto` per socket: with frames spread over many endpoints that is a
//! syscall per frame. A packet socket makes the same skb and copy per message, and one call covers
//! all destinations. The kernel has copied every frame when the call returns, so the frames are
//! free again at once, and a flood frame can back any number of messages.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Messages per `sendmmsg` call (the kernel's UIO_MAXIOV).
pub const MAX_MSGS: usize = 1024;
const PACKET_QDISC_BYPASS: libc::c_int = 20;

pub struct PacketTx {
    fd: OwnedFd,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_ll>,
    /// Per message of the last [`PacketTx::send`]: 0 when the kernel took it, else the errno.
    results: Vec<i32>,
}

// SAFETY: the raw pointers in `msgs`/`iovs` are scratch, rewritten before every call; between calls
// they point nowhere that is used.
unsafe impl Send for PacketTx {}

/// One frame to send: the endpoint's ifindex and the frame's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub ifindex: u32,
    pub data: *const u8,
    pub len: u32,
}

impl PacketTx {
    /// An unbound raw packet socket (protocol 0: it receives nothing) that bypasses the qdisc
    /// layer, with a send buffer large enough for a flood to thousands of endpoints in flight.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt(&fd, libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 64 << 20)?;
        // SAFETY: all-zero mmsghdr/iovec/sockaddr_ll are valid (null pointers, zero lengths).
        let (msgs, iovs, addrs) =
            unsafe { (vec![zeroed::<libc::mmsghdr>(); MAX_MSGS], vec![zeroed(); MAX_MSGS], vec![zeroed(); MAX_MSGS]) };
        Ok(PacketTx { fd, msgs, iovs, addrs, results: Vec::with_capacity(MAX_MSGS) })
    }

    /// Sends `messages` in order, as few calls as possible. Returns one result per message: 0 when
    /// the kernel took it, else the errno that refused it (the others are still sent).
    ///
    /// # Safety
    /// Each message's `data` must be readable for `len` bytes until this call returns.
    pub unsafe fn send(&mut self, messages: impl ExactSizeIterator<Item = Message>) -> &[i32] {
        self.results.clear();
        let total = messages.len();
        self.results.reserve(total);
        let mut messages = messages.peekable();
        while messages.peek().is_some() {
            let mut n = 0;
            for m in messages.by_ref().take(MAX_MSGS) {
                let a = &mut self.addrs[n];
                a.sll_family = libc::AF_PACKET as u16;
                a.sll_ifindex = m.ifindex as i32;
                self.iovs[n] = libc::iovec { iov_base: m.data as *mut libc::c_void, iov_len: m.len as usize };
                let h = &mut self.msgs[n].msg_hdr;
                h.msg_name = (a as *mut libc::sockaddr_ll).cast();
                h.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
                h.msg_iov = &mut self.iovs[n];
                h.msg_iovlen = 1;
                n += 1;
            }
            let mut start = 0;
            while start < n {
                // SAFETY: headers [start, n) point at live iovecs and addresses in this struct,
                // the iovecs at frames the caller keeps readable.
                let r = unsafe {
                    libc::sendmmsg(self.fd.as_raw_fd(), self.msgs[start..].as_mut_ptr(), (n - start) as u32, 0)
                };
                if r > 0 {
                    self.results.extend(std::iter::repeat_n(0, r as usize));
                    start += r as usize;
                } else {
                    // The message at `start` was refused (a partial call reports nothing about the
                    // one that stopped it: the next call starts there and says).
                    let e = io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
                    self.results.push(if r == 0 { libc::EIO } else { e });
                    start += 1;
                }
            }
        }
        debug_assert_eq!(self.results.len(), total);
        &self.results
    }
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its size.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (&v as *const i32).cast(), 4) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
