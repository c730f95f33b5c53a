//! UMEM areas and AF_XDP sockets (through xdpilone), one set per (network, worker).
//!
//! A worker's sockets for one network share one UMEM, so a frame received on the parent is
//! transmitted on an endpoint by moving its descriptor: no copy in userspace. The UMEM is owned by
//! the parent's socket of that worker's queue; endpoint sockets bind with XDP_SHARED_UMEM.

use std::num::NonZeroU32;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use xdpilone::{CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

use crate::Error;

/// Frame (chunk) size: holds a 3 KiB+ frame after the kernel's XDP headroom.
pub const FRAME_SIZE: u32 = 4096;
pub const FRAME_SHIFT: u32 = 12;
/// Where the datapath writes frames it builds itself (flood copies): same as the kernel's headroom.
pub const TX_HEADROOM: u64 = 256;
/// Ring sizes (power of two).
/// Fill/completion rings are per (interface, queue) but sized per UMEM: deep enough that the
/// parent's NAPI can fill a whole scheduler slice's worth of frames when it shares the worker's core.
pub const FILL_SIZE: u32 = 8192;
pub const COMP_SIZE: u32 = 8192;
/// RX ring of the parent's sockets (endpoints use [`RX_SIZE`]).
pub const PARENT_RX_SIZE: u32 = 8192;
pub const RX_SIZE: u32 = 2048;
pub const TX_SIZE: u32 = 2048;

const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// An anonymous, page-aligned mapping that backs one UMEM.
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; which thread touches which frame is governed by the
// descriptor ownership protocol of the rings (one worker per UMEM).
unsafe impl Send for Area {}
// SAFETY: see Send; the control plane never reads frame contents.
unsafe impl Sync for Area {}

impl Area {
    pub fn new(frames: u32) -> Result<Self, Error> {
        let len = frames as usize * FRAME_SIZE as usize;
        // SAFETY: anonymous private mapping, no fd, checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::Sys { call: "mmap UMEM", cause: std::io::Error::last_os_error() });
        }
        Ok(Area { ptr: NonNull::new(ptr.cast()).expect("mmap never returns NULL on success"), len })
    }

    pub fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn frames(&self) -> u32 {
        (self.len / FRAME_SIZE as usize) as u32
    }

    fn as_slice_ptr(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `new`; every socket using it is closed by now
        // (sockets hold an Arc<Area> through their `Umem`/`XskPort`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A UMEM registered with the kernel plus the memory behind it. Lives on the control plane; the
/// worker gets the rings and an `Arc<Area>`.
pub struct SharedUmem {
    // Field order matters: the UMEM socket closes before the area is unmapped.
    umem: Umem,
    pub area: Arc<Area>,
}

// SAFETY: xdpilone's Umem holds a raw pointer to `area` (kept alive by the Arc next to it) and an
// Arc'd fd; its device registry is behind a spin lock. Only the control thread uses it.
unsafe impl Send for SharedUmem {}

impl SharedUmem {
    pub fn new(frames: u32) -> Result<Self, Error> {
        let area = Arc::new(Area::new(frames)?);
        let config = UmemConfig {
            fill_size: FILL_SIZE,
            complete_size: COMP_SIZE,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned, sized for `frames` chunks, and outlives the Umem
        // (declared after it in this struct, plus an Arc held by every XskPort).
        let umem = unsafe { Umem::new(config, area.as_slice_ptr()) }.map_err(|e| Error::xsk("register UMEM", "", e))?;
        Ok(SharedUmem { umem, area })
    }
}

/// Copy or zero-copy, as the kernel chose at bind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    Copy,
    ZeroCopy,
}

impl XskMode {
    pub fn name(self) -> &'static str {
        match self {
            XskMode::Copy => "copy",
            XskMode::ZeroCopy => "zerocopy",
        }
    }
}

/// The rings of one socket bound to (ifindex, queue).
pub struct XskPort {
    pub fq: FillQueue,
    pub cq: CompletionQueue,
    pub rx: RingRx,
    pub tx: RingTx,
    pub mode: XskMode,
    // Keeps the UMEM memory mapped while the kernel may still write into it.
    _area: Arc<Area>,
}

impl XskPort {
    /// Opens a socket on `ifindex`/`queue` sharing `umem`. `owner` marks the socket that owns the
    /// UMEM (the parent's); all others bind with XDP_SHARED_UMEM to it.
    ///
    /// Binding asks for neither XDP_COPY nor XDP_ZEROCOPY: the kernel uses zero-copy where the
    /// driver offers it and falls back to copy mode (always the case on veth).
    pub fn open(
        umem: &SharedUmem,
        ifindex: u32,
        queue: u32,
        ifname: &str,
        owner: bool,
        rx_size: u32,
    ) -> Result<Self, Error> {
        let err = |what: &'static str| move |e: xdpilone::Errno| Error::xsk(what, ifname, e);
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(err("look up interface"))?;
        info.set_queue(queue);
        let sock = if owner {
            Socket::with_shared(&info, &umem.umem).map_err(err("socket"))?
        } else {
            Socket::new(&info).map_err(err("socket"))?
        };
        let device = umem.umem.fq_cq(&sock).map_err(err("fill/completion rings"))?;
        let config = SocketConfig {
            rx_size: NonZeroU32::new(rx_size),
            tx_size: NonZeroU32::new(TX_SIZE),
            // Sockets that share the UMEM inherit the owner's flags and may not pass their own.
            bind_flags: if owner { SocketConfig::XDP_BIND_NEED_WAKEUP } else { 0 },
        };
        let user = umem.umem.rx_tx(&sock, &config).map_err(err("rx/tx rings"))?;
        let rx = user.map_rx().map_err(err("map rx ring"))?;
        let tx = user.map_tx().map_err(err("map tx ring"))?;
        umem.umem.bind(&user).map_err(err("bind"))?;
        let (fq, cq) = device.into_parts();
        let fd = rx.as_raw_fd();
        // Copy-mode TX sends at most 32 frames per sendto() by default; allow a whole batch per kick
        // (Linux 6.17+; older kernels keep the default, which only costs extra kicks).
        let _ = setsockopt_u32(fd, XDP_MAX_TX_SKB_BUDGET, TX_SIZE / 2);
        let mode = match getsockopt_u32(fd, XDP_OPTIONS) {
            Ok(flags) if flags & XDP_OPTIONS_ZEROCOPY != 0 => XskMode::ZeroCopy,
            _ => XskMode::Copy,
        };
        Ok(XskPort { fq, cq, rx, tx, mode, _area: umem.area.clone() })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd is owned by the rings held in `self`, so it is open for `'_`.
        unsafe { BorrowedFd::borrow_raw(self.rx.as_raw_fd()) }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Kernel-side drops of this socket: (rx_dropped, rx_ring_full, rx_fill_ring_empty_descs).
    pub fn kernel_stats(&self) -> Option<(u64, u64, u64)> {
        let mut st = [0u64; 6];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a writable buffer of `len` bytes; the kernel fills at most that.
        let rc = unsafe { libc::getsockopt(self.raw_fd(), SOL_XDP, XDP_STATISTICS, st.as_mut_ptr().cast(), &mut len) };
        (rc == 0).then_some((st[0], st[3], st[4]))
    }
}

fn setsockopt_u32(fd: RawFd, opt: libc::c_int, v: u32) -> std::io::Result<()> {
    // SAFETY: passes a pointer to a live u32 with its exact size.
    let rc = unsafe { libc::setsockopt(fd, SOL_XDP, opt, (&v as *const u32).cast(), 4) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn getsockopt_u32(fd: RawFd, opt: libc::c_int) -> std::io::Result<u32> {
    let mut v = 0u32;
    let mut len: libc::socklen_t = 4;
    // SAFETY: `v` is a writable u32 and `len` says so.
    let rc = unsafe { libc::getsockopt(fd, SOL_XDP, opt, (&mut v as *mut u32).cast(), &mut len) };
    if rc == 0 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error())
    }
}
