//! The second receive path for frames from the wire that both the host and the workers get.
//!
//! XDP cannot both pass a frame to the host stack and redirect it to AF_XDP. Kernel macvlan gives
//! every child AND the host a copy of a broadcast, so the XDP program passes group-addressed
//! frames; xmv_parent_tc fans most of them out itself and hands the rest (tagged, reflected, from
//! listed sources, and unicast from listed sources) to the workers as a clone queued to the
//! collector, the daemon's veth xmacvlan1, marked with the parent's slot. This packet socket on
//! the collector takes its parent's (a classic BPF filter on the mark): `recvmmsg` lands a whole
//! batch directly in UMEM frames (one syscall per batch, none per frame); the worker then fans
//! each frame out to the endpoints by descriptor. Unlike a socket on the parent itself, it costs
//! the parent's other frames nothing.
//!
//! The same socket takes the container frames xmv_endpoint_tc leaves to the workers (a bridge
//! endpoint's broadcasts, tagged frames, ...): their mark also names the sending endpoint's slot
//! (read back with SO_RCVMARK). Those containers keep their checksum offload, so a frame may come
//! with its TCP/UDP checksum still to be done (CHECKSUM_PARTIAL): the virtio-net header the socket
//! puts in front of each frame (PACKET_VNET_HDR) says where, and [`complete_checksum`] does it.

use std::mem::{size_of, size_of_val, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::frame::{self, ETHERTYPE_VLAN, ETH_HLEN, VLAN_HLEN};
use crate::Error;

pub const BATCH: usize = 64;

const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const SO_RCVMARK: libc::c_int = 75;
/// `struct virtio_net_hdr`, which PACKET_VNET_HDR puts in front of every frame (little endian).
const VNET_HLEN: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// `struct tpacket_auxdata`: what PACKET_AUXDATA reports with each frame, the VLAN tag the kernel
/// took out of it included (also read by the tests' VLAN toolkit).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TpacketAuxdata {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_vlan_tci: u16,
    pub tp_vlan_tpid: u16,
}
const _: () = assert!(size_of::<TpacketAuxdata>() == 20);

/// Room for the cmsgs carrying tpacket_auxdata (CMSG_SPACE(20) = 40 on 64-bit) and the mark
/// (CMSG_SPACE(4) = 24).
const CMSG_BUF: usize = 96;

/// One received frame: where it landed and how long it is (an 802.1Q tag the kernel had moved to
/// metadata is re-inserted in place, so the frame is exactly what the wire carried).
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub offset: u64,
    pub len: u32,
    /// The frame did not fit in a chunk (MSG_TRUNC), or it is several frames in one (GSO): only
    /// its head is there, or it is no frame a port takes.
    pub truncated: bool,
    /// Sent by the endpoint in this datapath slot (a container's frame xmv_endpoint_tc collected),
    /// else received from the parent.
    pub from_slot: Option<u32>,
}

pub struct FloodSocket {
    fd: OwnedFd,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<[u64; CMSG_BUF / 8]>,
}

// SAFETY: the raw pointers inside `msgs`/`iovs` point into this struct's own heap buffers or into
// UMEM frames the owning worker holds; the socket moves to the worker thread as a whole.
unsafe impl Send for FloodSocket {}

fn sys(call: &'static str) -> Error {
    Error::Sys { call, cause: std::io::Error::last_os_error() }
}

impl FloodSocket {
    /// A non-blocking packet socket on `ifindex` (the collector) that only takes frames whose
    /// skb->mark is `mark` (bpf::collect_mark of its parent's slot), or that mark with
    /// bpf::MARK_FROM_EP and an endpoint's slot.
    pub fn open(ifindex: u32, mark: u32) -> Result<Self, Error> {
        // Protocol 0 first: the socket receives nothing until the filter is in place and it is bound.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut filter = mark_filter(mark);
        let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog, "SO_ATTACH_FILTER")?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32, "PACKET_IGNORE_OUTGOING")?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_AUXDATA, &1i32, "PACKET_AUXDATA")?;
        setsockopt(&fd, libc::SOL_PACKET, PACKET_VNET_HDR, &1i32, "PACKET_VNET_HDR")?;
        setsockopt(&fd, libc::SOL_SOCKET, SO_RCVMARK, &1i32, "SO_RCVMARK")?;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &(8i32 << 20), "SO_RCVBUFFORCE")?;
        // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds with a fully initialised sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), size_of::<libc::sockaddr_ll>() as u32)
        };
        if rc != 0 {
            return Err(sys("bind(AF_PACKET)"));
        }
        // SAFETY: zeroed mmsghdr/iovec are valid "empty" values; pointers are set before each use.
        let msgs = vec![unsafe { zeroed::<libc::mmsghdr>() }; BATCH];
        let iovs = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
        Ok(FloodSocket { fd, msgs, iovs, cmsgs: vec![[0; CMSG_BUF / 8]; BATCH] })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Frames the kernel dropped because the receive queue was full since the last call
    /// (PACKET_STATISTICS, which the kernel resets on every read).
    pub fn take_drops(&self) -> u64 {
        let mut st = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = size_of_val(&st) as libc::socklen_t;
        // SAFETY: `st` is a writable tpacket_stats of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_STATISTICS, st.as_mut_ptr().cast(), &mut len)
        };
        if rc == 0 {
            u64::from(st[1])
        } else {
            0
        }
    }

    /// Receives up to `frames.len()` frames, the i-th into the UMEM chunk at `frames[i]`, and
    /// reports them in `out`. Returns how many arrived (0 when none is waiting).
    ///
    /// # Safety
    /// `base` must be the start of the UMEM area and each `frames[i]` the offset of a chunk of
    /// `chunk` bytes inside it that nobody else (kernel included) uses until this call returns.
    #[allow(clippy::needless_range_loop)] // i indexes frames, iovecs, headers and cmsgs together
    pub unsafe fn recv(&mut self, base: *mut u8, chunk: usize, frames: &[u64], out: &mut Vec<Received>) -> usize {
        let n = frames.len().min(BATCH);
        // Leave VLAN_HLEN bytes in front so a stripped tag can be put back without moving the
        // payload; the virtio-net header lands in front of that (read before a tag overwrites it).
        let lead = crate::xsk::TX_HEADROOM as usize + VLAN_HLEN;
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY (of the caller's contract): the chunk is inside the area and unused.
                iov_base: base.add(frames[i] as usize + lead - VNET_HLEN).cast(),
                iov_len: chunk - lead + VNET_HLEN,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = std::ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            hdr.msg_controllen = CMSG_BUF;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        let got = libc::recvmmsg(
            self.fd.as_raw_fd(),
            self.msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        );
        if got <= 0 {
            return 0;
        }
        let got = got as usize;
        for i in 0..got {
            let hdr = &self.msgs[i].msg_hdr;
            let mut len = (self.msgs[i].msg_len as usize).saturating_sub(VNET_HLEN);
            let mut start = frames[i] + lead as u64;
            let (aux, mark) = cmsgs(hdr);
            let from_slot = (mark & crate::bpf::MARK_FROM_EP != 0).then_some(mark & crate::bpf::MARK_SLOT_MASK);
            let vnet = std::slice::from_raw_parts(base.add(start as usize - VNET_HLEN), VNET_HLEN);
            let (flags, gso) = (vnet[0], vnet[1]);
            let csum = (
                usize::from(u16::from_le_bytes([vnet[6], vnet[7]])),
                usize::from(u16::from_le_bytes([vnet[8], vnet[9]])),
            );
            if hdr.msg_flags & libc::MSG_TRUNC != 0 || len < ETH_HLEN || gso != 0 {
                // Too big for a chunk (flagged), GSO, or a runt (the decision drops and counts it).
                let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0 || gso != 0;
                out.push(Received { offset: start, len: len.min(chunk - lead) as u32, truncated, from_slot });
                continue;
            }
            if flags & VNET_F_NEEDS_CSUM != 0 {
                // SAFETY: the kernel just wrote `len` bytes at `start`, inside the chunk we own.
                let frame = std::slice::from_raw_parts_mut(base.add(start as usize), len);
                complete_checksum(frame, csum.0, csum.1);
            }
            if let Some(aux) = aux {
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    // Put the tag back between the source MAC and the EtherType, into the
                    // VLAN_HLEN bytes left in front of the frame.
                    // SAFETY: the kernel wrote `len` ≥ ETH_HLEN bytes at `start`, `lead` ≥ VLAN_HLEN
                    // bytes into a chunk we own.
                    let buf = std::slice::from_raw_parts_mut(base.add(start as usize - VLAN_HLEN), VLAN_HLEN + len);
                    let tpid = if aux.tp_vlan_tpid != 0 { aux.tp_vlan_tpid } else { ETHERTYPE_VLAN };
                    let (at, n) = frame::push_tag(buf, VLAN_HLEN, len, tpid, aux.tp_vlan_tci);
                    start = start - VLAN_HLEN as u64 + at as u64;
                    len = n;
                }
            }
            out.push(Received { offset: start, len: len as u32, truncated: false, from_slot });
        }
        got
    }
}

/// Classic BPF: accept the whole frame when skb->mark is `mark`, or `mark` | MARK_FROM_EP with
/// any slot in the low bits; else nothing.
fn mark_filter(mark: u32) -> [libc::sock_filter; 6] {
    const SKF_AD_OFF: u32 = -0x1000i32 as u32;
    const SKF_AD_MARK: u32 = 20;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, SKF_AD_OFF + SKF_AD_MARK),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 2, 0, mark),
        op(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, !crate::bpf::MARK_SLOT_MASK),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, mark | crate::bpf::MARK_FROM_EP),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ]
}

/// The PACKET_AUXDATA and SO_MARK control messages of a received message (mark 0 when absent).
///
/// # Safety
/// `hdr` must describe a message just filled by recvmsg, with msg_control pointing to live memory.
unsafe fn cmsgs(hdr: &libc::msghdr) -> (Option<TpacketAuxdata>, u32) {
    let (mut aux, mut mark) = (None, 0);
    let mut c = libc::CMSG_FIRSTHDR(hdr);
    while !c.is_null() {
        if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
            aux = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>()));
        } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_MARK {
            mark = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>());
        }
        c = libc::CMSG_NXTHDR(hdr, c);
    }
    (aux, mark)
}

/// Completes a checksum the sender left to "hardware" (CHECKSUM_PARTIAL, as the virtio-net header
/// reports it): the Internet checksum of `frame[start..]`, whose field at `start + offset` holds
/// the pseudo-header's sum, goes into that field (0 as 0xffff, as the kernel's
/// skb_checksum_help does). Offsets outside the frame leave it as it is.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) {
    let at = start + offset;
    if start >= frame.len() || at + 2 > frame.len() {
        return;
    }
    let mut sum = 0u64;
    let mut words = frame[start..].chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[at..at + 2].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T, call: &'static str) -> Result<(), Error> {
    // SAFETY: passes a pointer to a live T and its exact size.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (v as *const T).cast(), size_of::<T>() as u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(sys(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of `data` computed the plain way.
    fn inet(data: &[u8]) -> u16 {
        let mut sum: u32 = data.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn a_partial_udp_checksum_is_completed_as_the_receiver_verifies_it() {
        // Ethernet + IPv4 (198.18.0.1 -> 198.18.0.2) + UDP with an odd-length payload.
        let payload = b"hello, xmacvlan";
        let udp_len = 8 + payload.len();
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f.extend_from_slice(&1234u16.to_be_bytes());
        f.extend_from_slice(&5678u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        // What the stack leaves in the field: the pseudo-header's sum, not complemented.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        let partial = !inet(&pseudo);
        f[34 + 6..34 + 8].copy_from_slice(&partial.to_be_bytes());
        complete_checksum(&mut f, 34, 6);
        // The receiver's check: pseudo-header + UDP (checksum included) sums to 0xffff.
        let mut all = pseudo.clone();
        all.extend_from_slice(&f[34..]);
        assert_eq!(inet(&all), 0, "checksum {:#06x} does not verify", u16::from_be_bytes([f[40], f[41]]));
    }

    #[test]
    fn offsets_outside_the_frame_change_nothing() {
        let mut f = vec![7u8; 40];
        complete_checksum(&mut f, 38, 6);
        complete_checksum(&mut f, 60, 0);
        assert_eq!(f, vec![7u8; 40]);
    }
}
