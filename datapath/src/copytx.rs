//! Transmit-only packet socket for an endpoint that has no AF_XDP socket on a worker.
//!
//! Worker *w* transmits to an endpoint through the endpoint's queue *w*. A tap device has a single
//! queue, so only worker 0 can bind an AF_XDP socket to it; the other workers hand their frames for
//! it to the kernel with one `sendmmsg(2)` per batch on an AF_PACKET socket bound to the tap. The
//! kernel copies each frame out of the UMEM during the call (as copy-mode AF_XDP does), so the frames
//! are free again as soon as it returns.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use xdpilone::xdp::XdpDesc;

use crate::worker::BATCH;

pub struct CopyTx {
    fd: OwnedFd,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: `iov` and `msgs` are scratch space whose pointers are rewritten before every use in
// `send`; between calls they point nowhere that matters, so moving the struct to the worker thread
// is sound.
unsafe impl Send for CopyTx {}

impl CopyTx {
    /// A raw packet socket bound to `ifindex` with protocol 0: it transmits and receives nothing.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) with a live sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of_val(&sll) as u32)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let n = BATCH as usize * 2;
        // SAFETY: all-zero iovec/mmsghdr are valid (null pointers, zero lengths).
        let (iov, msgs) = unsafe { (vec![std::mem::zeroed(); n], vec![std::mem::zeroed(); n]) };
        Ok(CopyTx { fd, iov, msgs })
    }

    /// Sends the frames of `descs` (offsets into the UMEM at `base`); returns how many the kernel
    /// took, in order. The caller frees all of them.
    ///
    /// # Safety
    /// Every descriptor must describe `len` readable bytes at `base + addr`.
    pub unsafe fn send(&mut self, base: *const u8, descs: &[XdpDesc]) -> usize {
        let mut sent = 0;
        for chunk in descs.chunks(self.msgs.len()) {
            for (i, d) in chunk.iter().enumerate() {
                // SAFETY: per this function's contract.
                self.iov[i] =
                    libc::iovec { iov_base: unsafe { base.add(d.addr as usize) } as *mut _, iov_len: d.len as usize };
                self.msgs[i].msg_hdr.msg_iov = &mut self.iov[i];
                self.msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first chunk.len() headers point at live iovecs, which point at live frames.
            let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), self.msgs.as_mut_ptr(), chunk.len() as u32, 0) };
            if n <= 0 {
                break;
            }
            sent += n as usize;
            if (n as usize) < chunk.len() {
                break;
            }
        }
        sent
    }
}
