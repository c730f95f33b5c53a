//! UMEM areas and AF_XDP sockets, spoken directly to the kernel (linux/if_xdp.h).
//!
//! A socket is set up in the order the kernel requires: the UMEM registration (only on the socket
//! that owns it), its fill and completion rings, RX/TX rings, the mappings of all four, then
//! `bind` — with `XDP_SHARED_UMEM` for a socket that uses another socket's UMEM on a different
//! (interface, queue), which then has fill and completion rings of its own. Every ring is sized
//! per socket: a parent queue gets deep rings, an endpoint shallow ones (see [`RingSizes`]).
//!
//! Ownership: the control plane creates sockets and keeps their descriptor (`Arc<OwnedFd>`, the
//! same one the XSKMAP entry and a later `XDP_SHARED_UMEM` bind refer to); the worker that serves
//! the socket gets the rings ([`Xsk`]). The socket closes when both have let go.

pub mod ring;

use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

pub use ring::{ConsRing, ProdRing, RingOffset, XdpDesc};

use crate::Error;

/// Where the datapath writes frames it builds itself (flood variants, copies towards the
/// parent): the same headroom the kernel leaves in copy mode (XDP_PACKET_HEADROOM).
pub const TX_HEADROOM: u64 = 256;

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_SHARED_UMEM: u16 = 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_PGOFF_RX_RING: u64 = 0;
const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

/// `struct xdp_umem_reg`.
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}
const _: () = assert!(size_of::<UmemReg>() == 32);

/// `struct sockaddr_xdp`.
#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}
const _: () = assert!(size_of::<SockaddrXdp>() == 16);

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}
const _: () = assert!(size_of::<MmapOffsets>() == 128);

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct XdpStatistics {
    /// Frames the kernel could not place: no fill-ring frame, or longer than a chunk.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}
const _: () = assert!(size_of::<XdpStatistics>() == 48);

/// An anonymous, page-aligned mapping that backs one UMEM, cut into chunks of `chunk` bytes.
pub struct Area {
    ptr: NonNull<u8>,
    len: usize,
    shift: u32,
}

// SAFETY: the mapping is plain memory; which thread touches which chunk is governed by the
// descriptor ownership protocol (one worker per UMEM, see pool.rs).
unsafe impl Send for Area {}
// SAFETY: see Send; the control plane never reads frame contents.
unsafe impl Sync for Area {}

impl Area {
    /// `frames` chunks of `chunk` bytes (a power of two, 2048 or 4096).
    pub fn new(frames: u32, chunk: u32) -> Result<Self, Error> {
        assert!(chunk.is_power_of_two() && (2048..=4096).contains(&chunk), "chunk size {chunk}");
        let len = frames as usize * chunk as usize;
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
        Ok(Area {
            ptr: NonNull::new(ptr.cast()).expect("mmap never returns NULL on success"),
            len,
            shift: chunk.trailing_zeros(),
        })
    }

    pub fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn chunk(&self) -> u32 {
        1 << self.shift
    }

    /// log2 of the chunk size: `addr >> shift()` is the frame index of any address in a chunk.
    pub fn shift(&self) -> u32 {
        self.shift
    }

    pub fn frames(&self) -> u32 {
        (self.len >> self.shift) as u32
    }

    pub fn bytes(&self) -> usize {
        self.len
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `new`. The kernel keeps its own pin of the pages
        // for as long as a socket uses the UMEM and writes only into chunks we handed it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Ring sizes of one socket (powers of two; 0 = no such ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSizes {
    pub fill: u32,
    pub comp: u32,
    pub rx: u32,
    pub tx: u32,
}

impl RingSizes {
    /// Bytes of ring memory the kernel allocates for these sizes (each ring is at least a page).
    pub fn bytes(&self) -> usize {
        let ring = |n: u32, entry: usize| if n == 0 { 0 } else { (n as usize * entry + 128).next_multiple_of(4096) };
        ring(self.fill, 8) + ring(self.comp, 8) + ring(self.rx, 16) + ring(self.tx, 16)
    }
}

/// Which UMEM a new socket uses.
pub enum Umem<'a> {
    /// Register `area` as a new UMEM on this socket (it becomes the UMEM's owner).
    Register(&'a Arc<Area>),
    /// Share the UMEM registered on `with` (a bound socket), backed by `area`.
    Share { with: BorrowedFd<'a>, area: &'a Arc<Area> },
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

/// The rings of one bound socket, as the worker uses them.
pub struct Xsk {
    pub fill: ProdRing<u64>,
    pub comp: ConsRing<u64>,
    pub rx: Option<ConsRing<XdpDesc>>,
    pub tx: Option<ProdRing<XdpDesc>>,
    pub mode: XskMode,
    fd: Arc<OwnedFd>,
    area: Arc<Area>,
}

impl Xsk {
    /// Creates a socket on `ifindex`/`queue` and binds it. Neither XDP_COPY nor XDP_ZEROCOPY is
    /// asked for: the kernel uses zero-copy where the driver offers it and copy mode otherwise
    /// (always on veth); [`Xsk::mode`] says which.
    pub fn open(umem: Umem<'_>, ifindex: u32, queue: u32, ifname: &str, sizes: RingSizes) -> Result<Self, Error> {
        let err =
            |what: &'static str| move |cause: std::io::Error| Error::Xsk { what, ifname: ifname.to_string(), cause };
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err("socket")(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let (area, shared_with) = match &umem {
            Umem::Register(area) => {
                let reg = UmemReg {
                    addr: area.base() as u64,
                    len: area.bytes() as u64,
                    chunk_size: area.chunk(),
                    headroom: 0,
                    flags: 0,
                    tx_metadata_len: 0,
                };
                setsockopt(raw, XDP_UMEM_REG, &reg).map_err(err("register UMEM"))?;
                ((*area).clone(), None)
            }
            Umem::Share { with, area } => ((*area).clone(), Some(with.as_raw_fd())),
        };
        setsockopt(raw, XDP_UMEM_FILL_RING, &sizes.fill).map_err(err("fill ring"))?;
        setsockopt(raw, XDP_UMEM_COMPLETION_RING, &sizes.comp).map_err(err("completion ring"))?;
        if sizes.rx > 0 {
            setsockopt(raw, XDP_RX_RING, &sizes.rx).map_err(err("rx ring"))?;
        }
        if sizes.tx > 0 {
            setsockopt(raw, XDP_TX_RING, &sizes.tx).map_err(err("tx ring"))?;
        }
        let mut off = MmapOffsets::default();
        let mut len = size_of::<MmapOffsets>() as libc::socklen_t;
        // SAFETY: `off` is a writable MmapOffsets of `len` bytes.
        if unsafe { libc::getsockopt(raw, SOL_XDP, XDP_MMAP_OFFSETS, (&mut off as *mut MmapOffsets).cast(), &mut len) }
            != 0
        {
            return Err(err("ring offsets")(std::io::Error::last_os_error()));
        }
        let fill = ProdRing::map(raw, XDP_UMEM_PGOFF_FILL_RING, &off.fr, sizes.fill).map_err(err("map fill ring"))?;
        let comp = ConsRing::map(raw, XDP_UMEM_PGOFF_COMPLETION_RING, &off.cr, sizes.comp)
            .map_err(err("map completion ring"))?;
        let rx = (sizes.rx > 0)
            .then(|| ConsRing::map(raw, XDP_PGOFF_RX_RING, &off.rx, sizes.rx))
            .transpose()
            .map_err(err("map rx ring"))?;
        let tx = (sizes.tx > 0)
            .then(|| ProdRing::map(raw, XDP_PGOFF_TX_RING, &off.tx, sizes.tx))
            .transpose()
            .map_err(err("map tx ring"))?;
        let addr = SockaddrXdp {
            family: AF_XDP as u16,
            // Sockets that share a UMEM inherit the owner's flags and may not pass their own.
            flags: if shared_with.is_some() { XDP_SHARED_UMEM } else { XDP_USE_NEED_WAKEUP },
            ifindex,
            queue_id: queue,
            shared_umem_fd: shared_with.unwrap_or(0) as u32,
        };
        // SAFETY: binds with a fully initialised sockaddr_xdp of the right size.
        if unsafe { libc::bind(raw, (&addr as *const SockaddrXdp).cast(), size_of::<SockaddrXdp>() as u32) } != 0 {
            return Err(err("bind")(std::io::Error::last_os_error()));
        }
        if sizes.tx > 0 {
            // Copy-mode TX sends at most 32 frames per sendto() by default; allow a whole batch per
            // kick (Linux 6.17+; older kernels keep the default, which only costs extra kicks).
            let _ = setsockopt(raw, XDP_MAX_TX_SKB_BUDGET, &(sizes.tx / 2));
        }
        let mode = match getsockopt_u32(raw, XDP_OPTIONS) {
            Ok(flags) if flags & XDP_OPTIONS_ZEROCOPY != 0 => XskMode::ZeroCopy,
            _ => XskMode::Copy,
        };
        Ok(Xsk { fill, comp, rx, tx, mode, fd: Arc::new(fd), area })
    }

    /// The socket's descriptor, shared with the control plane (XSKMAP entry, UMEM sharing).
    pub fn fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn area(&self) -> &Arc<Area> {
        &self.area
    }

    /// Tells the kernel to look at the TX ring (copy mode: transmits during this call).
    #[inline]
    pub fn kick_tx(&self) {
        // SAFETY: sendto(2) with no buffer on our own socket; errors (EAGAIN, ENOBUFS, ENETDOWN)
        // leave descriptors in the ring for the next kick.
        unsafe { libc::sendto(self.raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
    }

    /// Tells the kernel the fill ring has frames again (needed only when it asks: zero-copy).
    #[inline]
    pub fn wake_fill(&self) {
        // SAFETY: recvfrom(2) with no buffer on our own socket, non-blocking.
        unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's per-socket counters (a syscall: call rarely).
    pub fn statistics(&self) -> Option<XdpStatistics> {
        statistics(self.raw_fd())
    }
}

/// XDP_STATISTICS of an AF_XDP socket.
pub fn statistics(fd: RawFd) -> Option<XdpStatistics> {
    let mut st = XdpStatistics::default();
    let mut len = size_of::<XdpStatistics>() as libc::socklen_t;
    // SAFETY: `st` is a writable buffer of `len` bytes; the kernel fills at most that.
    let rc = unsafe { libc::getsockopt(fd, SOL_XDP, XDP_STATISTICS, (&mut st as *mut XdpStatistics).cast(), &mut len) };
    (rc == 0).then_some(st)
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T) -> std::io::Result<()> {
    // SAFETY: passes a pointer to a live T with its exact size.
    let rc = unsafe { libc::setsockopt(fd, SOL_XDP, opt, (v as *const T).cast(), size_of::<T>() as u32) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_memory_is_counted_in_pages() {
        let endpoint = RingSizes { fill: 512, comp: 64, rx: 512, tx: 0 };
        assert_eq!(endpoint.bytes(), 8192 + 4096 + 12288);
        let none = RingSizes { fill: 0, comp: 0, rx: 0, tx: 0 };
        assert_eq!(none.bytes(), 0);
    }

    #[test]
    fn area_chunks() {
        let a = Area::new(16, 2048).unwrap();
        assert_eq!((a.frames(), a.chunk(), a.shift(), a.bytes()), (16, 2048, 11, 32768));
    }
}
