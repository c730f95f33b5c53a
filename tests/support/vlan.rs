//! 802.1Q for the end-to-end tests, without kernel VLAN devices (this kernel has no 8021q module
//! and no bridge vlan_filtering):
//!
//! - a tagged-frame toolkit: [`Tag`] (TPID, PCP, DEI, VID), [`push_tag`], [`pop_tag`],
//!   [`split_tags`], [`tagged_frame`];
//! - [`VlanSocket`], an AF_PACKET socket that shows received frames as they were on the wire. On
//!   receive the kernel moves the outer 802.1Q/802.1ad tag out of the frame (`skb_vlan_untag` in
//!   `__netif_receive_skb_core`, before the packet taps run) into skb metadata; a packet socket gets
//!   it only through `PACKET_AUXDATA` (`tp_vlan_tci`, `TP_STATUS_VLAN_VALID`, `tp_vlan_tpid` with
//!   `TP_STATUS_VLAN_TPID_VALID`). [`VlanSocket`] enables the option and puts the tag back. Sending
//!   through a packet socket sends the bytes as written, tag included;
//! - [`Tagger`], a userspace 802.1Q access port: a thread bridging one untagged access interface
//!   and a trunk for one VID (or the untagged/native VLAN);
//! - [`RefMacvlan`], a userspace reference for kernel macvlan (bridge mode) on VLAN sub-interfaces
//!   `eth1.VID`: what `ip link add link eth1.10 type macvlan` would do if 8021q existed, so the same
//!   checks can run against a reference and against xmacvlan;
//! - [`WireHosts`]: hosts on VLANs behind taggers on the wire side of the lab, so that real
//!   kernel-generated ARP and ping cross a tagged trunk.
//!
//! Every thread is stopped and joined, and every namespace removed, on drop (also while unwinding
//! from a failed assertion).
#![allow(dead_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use xmacvlan_datapath::flood::TpacketAuxdata;
use xmacvlan_lab::sys::PacketSocket;

use super::{frame, in_netns, mac_str, ok, ok_words, Netns, NetnsExt};

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

// <linux/if_packet.h>, spelled out so the tests do not depend on the libc crate's coverage.
const SOL_PACKET: i32 = 263;
const PACKET_AUXDATA: i32 = 8;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const PACKET_OUTGOING: u8 = 4;

// ---------------------------------------------------------------------------------------------
// The tagged-frame toolkit
// ---------------------------------------------------------------------------------------------

/// One VLAN tag: TPID, then the TCI's priority (PCP, 3 bits), drop eligible (DEI) and VLAN id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    pub tpid: u16,
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl Tag {
    /// An 802.1Q tag for `vid`, PCP 0, DEI 0.
    pub const fn vid(vid: u16) -> Self {
        Tag { tpid: TPID_8021Q, pcp: 0, dei: false, vid }
    }

    /// A priority tag (802.1p): VID 0 with priority `pcp`.
    pub const fn priority(pcp: u8) -> Self {
        Tag { tpid: TPID_8021Q, pcp, dei: false, vid: 0 }
    }

    pub const fn with_pcp(self, pcp: u8) -> Self {
        Tag { pcp, ..self }
    }

    pub const fn with_dei(self, dei: bool) -> Self {
        Tag { dei, ..self }
    }

    pub const fn with_tpid(self, tpid: u16) -> Self {
        Tag { tpid, ..self }
    }

    pub fn tci(&self) -> u16 {
        assert!(self.pcp < 8 && self.vid < 4096, "bad tag {self:?}");
        (self.pcp as u16) << 13 | (self.dei as u16) << 12 | self.vid
    }

    pub fn from_tci(tpid: u16, tci: u16) -> Self {
        Tag { tpid, pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
    }

    /// The four bytes on the wire.
    pub fn bytes(&self) -> [u8; 4] {
        let (t, c) = (self.tpid.to_be_bytes(), self.tci().to_be_bytes());
        [t[0], t[1], c[0], c[1]]
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.tpid == TPID_8021Q { String::new() } else { format!("{:#06x} ", self.tpid) };
        write!(f, "{kind}vid {} pcp {}{}", self.vid, self.pcp, if self.dei { " dei" } else { "" })
    }
}

pub fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == TPID_8021Q || ethertype == TPID_8021AD
}

fn ethertype_at(f: &[u8], off: usize) -> Option<u16> {
    f.get(off..off + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// `frame` with `tag` inserted after the MAC addresses (as the new outermost tag).
pub fn push_tag(frame: &[u8], tag: Tag) -> Vec<u8> {
    assert!(frame.len() >= 14, "not an Ethernet frame ({} bytes)", frame.len());
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&tag.bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// The outermost tag and the frame without it; None when the frame is untagged.
pub fn pop_tag(frame: &[u8]) -> Option<(Tag, Vec<u8>)> {
    let tpid = ethertype_at(frame, 12)?;
    if !is_vlan_tpid(tpid) || frame.len() < 18 {
        return None;
    }
    let tag = Tag::from_tci(tpid, ethertype_at(frame, 14)?);
    let mut f = Vec::with_capacity(frame.len() - 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&frame[16..]);
    Some((tag, f))
}

/// Every tag, outermost first, and the frame with all of them removed.
pub fn split_tags(frame: &[u8]) -> (Vec<Tag>, Vec<u8>) {
    let mut tags = Vec::new();
    let mut f = frame.to_vec();
    while let Some((t, rest)) = pop_tag(&f) {
        tags.push(t);
        f = rest;
    }
    (tags, f)
}

/// A marked test frame ([`frame`] of `len` bytes) with `tag` pushed: `len + 4` bytes on the wire.
pub fn tagged_frame(dst: [u8; 6], src: [u8; 6], tag: Tag, marker: &[u8; 8], len: usize) -> Vec<u8> {
    push_tag(&frame(dst, src, marker, len), tag)
}

pub fn is_multicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// One received frame.
#[derive(Clone, Debug)]
pub struct Rx {
    /// The frame as it was on the wire: the tag the kernel moved into PACKET_AUXDATA put back.
    pub wire: Vec<u8>,
    /// The tag the kernel reported in PACKET_AUXDATA (None: none was stripped on receive).
    pub aux: Option<Tag>,
    /// sll_pkttype (PACKET_HOST, PACKET_BROADCAST, PACKET_OTHERHOST, ...).
    pub pkttype: u8,
}

impl Rx {
    pub fn dst(&self) -> [u8; 6] {
        self.wire[..6].try_into().unwrap()
    }

    pub fn src(&self) -> [u8; 6] {
        self.wire[6..12].try_into().unwrap()
    }

    /// Every tag on the wire, outermost first.
    pub fn tags(&self) -> Vec<Tag> {
        split_tags(&self.wire).0
    }

    /// The frame without any tag.
    pub fn untagged(&self) -> Vec<u8> {
        split_tags(&self.wire).1
    }

    pub fn has(&self, marker: &[u8; 8]) -> bool {
        self.wire.windows(8).any(|w| w == marker)
    }

    /// The frame's EtherType after its tags.
    pub fn ethertype(&self) -> u16 {
        ethertype_at(&self.untagged(), 12).unwrap_or(0)
    }

    /// "vid 10 pcp 0" / "vid 10 pcp 0 + vid 99" / "untagged".
    pub fn tags_str(&self) -> String {
        tags_str(&self.tags())
    }
}

pub fn tags_str(tags: &[Tag]) -> String {
    if tags.is_empty() {
        "untagged".into()
    } else {
        tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" + ")
    }
}

// ---------------------------------------------------------------------------------------------
// The tag-aware packet socket
// ---------------------------------------------------------------------------------------------

/// An AF_PACKET socket bound to one interface of one namespace, with PACKET_AUXDATA (receive shows
/// the wire's tags) and PACKET_IGNORE_OUTGOING (never the frames sent on that interface, by this or
/// any other socket: taggers do not loop).
pub struct VlanSocket {
    sock: PacketSocket,
    pub ifname: String,
    pub ns: String,
}

impl VlanSocket {
    pub fn open(ns: &Netns, ifname: &str) -> Self {
        Self::open_in(&ns.path(), ifname)
    }

    /// Opens the socket in the namespace at `netns_path` (from a short-lived thread: setns changes
    /// only that thread; the socket stays in the namespace it was created in).
    pub fn open_in(netns_path: &str, ifname: &str) -> Self {
        let options = [
            (SOL_PACKET, PACKET_AUXDATA, 1),
            (SOL_PACKET, PACKET_IGNORE_OUTGOING, 1),
            // Room for a burst while the test is elsewhere (root may exceed rmem_max).
            (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20),
        ];
        let sock = in_netns(netns_path, || PacketSocket::open(ifname, libc::ETH_P_ALL as u16, &options))
            .unwrap_or_else(|e| panic!("a tag-aware packet socket in {netns_path}: {e}"));
        VlanSocket { sock, ifname: ifname.to_string(), ns: netns_path.to_string() }
    }

    fn raw(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends `frame` exactly as written (a tag in it goes on the wire as is).
    pub fn send(&self, frame: &[u8]) {
        self.try_send(frame).unwrap_or_else(|e| panic!("send on {} ({} bytes): {e}", self.ifname, frame.len()));
    }

    pub fn try_send(&self, frame: &[u8]) -> std::io::Result<()> {
        self.sock.send(frame)
    }

    /// The next received frame if one is queued (never blocks).
    pub fn try_recv(&self) -> Option<Rx> {
        loop {
            let mut buf = vec![0u8; 65536];
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value, and recvmsg fills it in.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            // u64s: cmsg alignment.
            let mut ctrl = [0u64; 16];
            // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of_val(&from) as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctrl.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
            // SAFETY: see above.
            let n = unsafe { libc::recvmsg(self.raw(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            buf.truncate(n as usize);
            if from.sll_pkttype == PACKET_OUTGOING || buf.len() < 14 {
                continue;
            }
            let mut aux = None;
            // SAFETY: walking the control messages the kernel wrote into `ctrl`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                        let a: TpacketAuxdata = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        if a.tp_status & TP_STATUS_VLAN_VALID != 0 {
                            let tpid =
                                if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { a.tp_vlan_tpid } else { TPID_8021Q };
                            aux = Some(Tag::from_tci(tpid, a.tp_vlan_tci));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let wire = match aux {
                Some(t) => push_tag(&buf, t),
                None => buf,
            };
            return Some(Rx { wire, aux, pkttype: from.sll_pkttype });
        }
    }

    /// The next received frame, waiting up to `wait`.
    pub fn recv(&self, wait: Duration) -> Option<Rx> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(rx) = self.try_recv() {
                return Some(rx);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut pfd = libc::pollfd { fd: self.raw(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, i32::MAX as u128) as i32) };
        }
    }

    /// Every frame received until `wait` has passed.
    pub fn collect_all(&self, wait: Duration) -> Vec<Rx> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        while let Some(rx) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            got.push(rx);
        }
        got
    }

    /// The frames carrying `marker` received until `wait` has passed.
    pub fn collect(&self, marker: &[u8; 8], wait: Duration) -> Vec<Rx> {
        self.collect_all(wait).into_iter().filter(|r| r.has(marker)).collect()
    }

    /// Throws away everything queued so far.
    pub fn drain(&self) {
        while self.try_recv().is_some() {}
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding threads: the tagger (802.1Q access port) and the reference macvlan
// ---------------------------------------------------------------------------------------------

/// Counters of a forwarding thread.
#[derive(Default, Debug)]
pub struct FwdCounts {
    /// Frames received on the trunk / on the access side(s).
    pub from_trunk: AtomicU64,
    pub from_access: AtomicU64,
    /// Frames sent to the trunk / to the access side(s).
    pub to_trunk: AtomicU64,
    pub to_access: AtomicU64,
    /// Frames received and not forwarded anywhere.
    pub ignored: AtomicU64,
    pub send_errors: AtomicU64,
}

impl FwdCounts {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "from trunk {} from access {} to trunk {} to access {} ignored {} send errors {}",
            Self::get(&self.from_trunk),
            Self::get(&self.from_access),
            Self::get(&self.to_trunk),
            Self::get(&self.to_access),
            Self::get(&self.ignored),
            Self::get(&self.send_errors)
        )
    }
}

/// A thread polling sockets; socket 0 is the trunk. `decide(from, frame)` returns where each copy
/// goes (socket index and bytes). Stopped and joined on drop.
struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<FwdCounts>,
}

type Decide = dyn FnMut(usize, &Rx) -> Vec<(usize, Vec<u8>)> + Send;

impl Forwarder {
    fn spawn(name: String, socks: Vec<VlanSocket>, mut decide: Box<Decide>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FwdCounts::default());
        let (st, c) = (stop.clone(), counts.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    let mut pfds: Vec<libc::pollfd> =
                        socks.iter().map(|s| libc::pollfd { fd: s.raw(), events: libc::POLLIN, revents: 0 }).collect();
                    // SAFETY: a valid pollfd array; 20 ms so that a stop is seen quickly.
                    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
                    for (i, s) in socks.iter().enumerate() {
                        if pfds[i].revents == 0 {
                            continue;
                        }
                        for _ in 0..256 {
                            let Some(rx) = s.try_recv() else { break };
                            let from = if i == 0 { &c.from_trunk } else { &c.from_access };
                            from.fetch_add(1, Ordering::Relaxed);
                            let out = decide(i, &rx);
                            if out.is_empty() {
                                c.ignored.fetch_add(1, Ordering::Relaxed);
                            }
                            for (j, f) in out {
                                let to = if j == 0 { &c.to_trunk } else { &c.to_access };
                                match socks[j].try_send(&f) {
                                    Ok(()) => to.fetch_add(1, Ordering::Relaxed),
                                    Err(_) => c.send_errors.fetch_add(1, Ordering::Relaxed),
                                };
                            }
                        }
                    }
                }
            })
            .expect("spawning a forwarding thread");
        Forwarder { stop, thread: Some(thread), counts }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panicked forwarding thread must not turn a test's unwinding into an abort.
            let _ = t.join();
        }
    }
}

/// A userspace 802.1Q access port. With `Some(vid)`: untagged frames from the access interface
/// get the tag (that VID, PCP 0) pushed and go out on the trunk; frames on the trunk whose outer
/// tag is 802.1Q with that VID get it popped and go to the access interface; everything else is
/// ignored (tagged frames from the access side, other VLANs, untagged trunk frames). With `None`
/// it is the untagged (native) port: only untagged frames pass, in both directions, unchanged.
///
/// Both sockets ignore outgoing frames, so a tagger never forwards what it (or another tagger on
/// the same trunk) sent: several taggers share a trunk without loops, and, unlike a switch, they do
/// not forward between each other (each is a point-to-point link to the far end of the trunk).
pub struct Tagger {
    fwd: Forwarder,
    pub vid: Option<u16>,
    pub access: String,
    pub trunk: String,
}

impl Tagger {
    pub fn start(ns: &Netns, access: &str, trunk: &str, vid: Option<u16>) -> Self {
        if let Some(v) = vid {
            assert!((1..4095).contains(&v), "a tagger's VID must be 1..=4094, not {v}");
        }
        let socks = vec![VlanSocket::open(ns, trunk), VlanSocket::open(ns, access)];
        let decide = move |from: usize, rx: &Rx| -> Vec<(usize, Vec<u8>)> {
            let outer = pop_tag(&rx.wire);
            match (from, vid, outer) {
                // Access → trunk: only untagged frames (an access port drops tagged ones).
                (1, Some(v), None) => vec![(0, push_tag(&rx.wire, Tag::vid(v)))],
                (1, None, None) => vec![(0, rx.wire.clone())],
                // Trunk → access: our VLAN, popped; or, for the native port, untagged frames.
                (0, Some(v), Some((t, inner))) if t.tpid == TPID_8021Q && t.vid == v => vec![(1, inner)],
                (0, None, None) => vec![(1, rx.wire.clone())],
                _ => Vec::new(),
            }
        };
        let name = format!("tagger-{access}");
        Tagger { fwd: Forwarder::spawn(name, socks, Box::new(decide)), vid, access: access.into(), trunk: trunk.into() }
    }

    pub fn counts(&self) -> &FwdCounts {
        &self.fwd.counts
    }
}

/// One endpoint of the reference macvlan: the dp-side end of a veth into a container, its VLAN
/// (None: the parent itself, untagged) and the container's MAC.
#[derive(Clone, Debug)]
pub struct RefMember {
    pub ifname: String,
    pub vid: Option<u16>,
    pub mac: [u8; 6],
}

/// A userspace reference for kernel macvlan children (bridge mode) of VLAN sub-interfaces of one
/// parent (`eth1.10`, `eth1.20`) and of the parent itself. It decides as the kernel would:
///
/// - from the trunk: the outer 802.1Q tag selects the VLAN (none, or a priority tag with VID 0:
///   the parent's own untagged domain); the tag is popped (the vlan device strips it, PCP
///   included); a broadcast/multicast goes to every member of that VLAN, a unicast to the member
///   with that MAC, anything else to nobody (the host stack, which sees every frame anyway);
/// - from a member: a broadcast/multicast goes to the other members of its VLAN and out of the
///   trunk, tagged with the VLAN; a unicast to a sibling's MAC goes to that sibling only; anything
///   else goes out of the trunk, tagged. Tagged frames from a member are dropped.
///
/// Its sockets see every frame on the parent, so unlike xmacvlan (whose XDP program redirects
/// frames before the stack) a packet tap on the parent sees every frame too.
pub struct RefMacvlan {
    fwd: Forwarder,
    pub members: Vec<RefMember>,
}

impl RefMacvlan {
    pub fn start(ns: &Netns, parent: &str, members: Vec<RefMember>) -> Self {
        let mut socks = vec![VlanSocket::open(ns, parent)];
        socks.extend(members.iter().map(|m| VlanSocket::open(ns, &m.ifname)));
        let ms = members.clone();
        let decide = move |from: usize, rx: &Rx| -> Vec<(usize, Vec<u8>)> {
            let dst = rx.dst();
            let mcast = is_multicast(dst);
            if from == 0 {
                let (vlan, inner) = match pop_tag(&rx.wire) {
                    None => (None, rx.wire.clone()),
                    Some((t, inner)) if t.tpid == TPID_8021Q => (if t.vid == 0 { None } else { Some(t.vid) }, inner),
                    Some(_) => return Vec::new(),
                };
                ms.iter()
                    .enumerate()
                    .filter(|(_, m)| m.vid == vlan && (mcast || m.mac == dst))
                    .map(|(j, _)| (j + 1, inner.clone()))
                    .collect()
            } else {
                if pop_tag(&rx.wire).is_some() {
                    return Vec::new();
                }
                let me = &ms[from - 1];
                let push = |f: &[u8]| match me.vid {
                    Some(v) => push_tag(f, Tag::vid(v)),
                    None => f.to_vec(),
                };
                let mut out: Vec<(usize, Vec<u8>)> = ms
                    .iter()
                    .enumerate()
                    .filter(|(j, m)| *j + 1 != from && m.vid == me.vid && (mcast || m.mac == dst))
                    .map(|(j, _)| (j + 1, rx.wire.clone()))
                    .collect();
                if mcast || out.is_empty() {
                    out.push((0, push(&rx.wire)));
                }
                out
            }
        };
        RefMacvlan { fwd: Forwarder::spawn("ref-macvlan".into(), socks, Box::new(decide)), members }
    }

    pub fn counts(&self) -> &FwdCounts {
        &self.fwd.counts
    }
}

// ---------------------------------------------------------------------------------------------
// Namespaces and hosts
// ---------------------------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A prefix for namespace names unique to this process and call ("xmvq<pid>-<n>").
pub fn unique_prefix() -> String {
    format!("xmvq{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// No IPv6 on interfaces created from now on in `ns` (and none on its existing ones): fewer
/// stray frames (router solicitations, MLD, DAD) in the taps.
pub fn quiet_ipv6(ns: &Netns) {
    ns.ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
}

/// Transmit checksum offload off on `ifname` in `ns`: a frame a userspace tagger copies must carry
/// a complete checksum (the kernel leaves CHECKSUM_PARTIAL frames unfinished on a veth).
pub fn no_tx_csum_offload(ns: &Netns, ifname: &str) {
    let _ = ns.exec(&["ethtool", "-K", ifname, "tx", "off"]);
}

/// One host on the wire side.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// Its name: the namespace is `<prefix>-<name>`, the wire-side end of its veth is `<name>`.
    pub name: String,
    /// The VLAN its access port is on (None: untagged).
    pub vid: Option<u16>,
    pub mac: [u8; 6],
    /// Addresses with prefix length; the first is its own, others can be decoys on other subnets.
    pub addrs: Vec<String>,
}

pub struct WireHost {
    pub spec: HostSpec,
    pub ns: Netns,
}

impl WireHost {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn mac(&self) -> [u8; 6] {
        self.spec.mac
    }

    /// Its own address (the first, without the prefix length).
    pub fn ip(&self) -> String {
        self.spec.addrs[0].split('/').next().unwrap().to_string()
    }
}

/// Hosts behind 802.1Q access ports on the wire side: for each, a namespace with `eth0`, a veth
/// to the wire namespace and a [`Tagger`] between that veth and the trunk. Taggers stop before the
/// namespaces go (field order).
pub struct WireHosts {
    pub taggers: Vec<Tagger>,
    pub hosts: Vec<WireHost>,
}

impl WireHosts {
    pub fn new(wire: &Netns, trunk: &str, prefix: &str, specs: &[HostSpec]) -> Self {
        ok(&["ip", "netns", "exec", &wire.name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        let mut hosts = Vec::new();
        for s in specs {
            let ns = Netns::new(format!("{prefix}-{}", s.name));
            quiet_ipv6(&ns);
            ok_words(&format!("ip link add {} netns {} type veth peer name eth0 netns {}", s.name, wire.name, ns.name));
            ok(&["ip", "-n", &ns.name, "link", "set", "eth0", "address", &mac_str(s.mac), "up"]);
            for a in &s.addrs {
                ok(&["ip", "-n", &ns.name, "addr", "add", a, "dev", "eth0"]);
            }
            no_tx_csum_offload(&ns, "eth0");
            ok(&["ip", "-n", &wire.name, "link", "set", &s.name, "up"]);
            hosts.push(WireHost { spec: s.clone(), ns });
        }
        let taggers = specs.iter().map(|s| Tagger::start(wire, &s.name, trunk, s.vid)).collect();
        WireHosts { taggers, hosts }
    }

    pub fn host(&self, name: &str) -> &WireHost {
        self.hosts.iter().find(|h| h.spec.name == name).unwrap_or_else(|| panic!("no wire host {name}"))
    }

    pub fn summary(&self) -> String {
        self.taggers
            .iter()
            .map(|t| format!("{} ({:?}): {}", t.access, t.vid, t.counts().summary()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// Pings and counters
// ---------------------------------------------------------------------------------------------

/// Runs every ping at once (one echo each, `wait` seconds for the answer, ARP included) and returns
/// which were answered, in order.
pub fn pings(cases: &[(&Netns, &str)], wait_s: u32) -> Vec<bool> {
    let w = wait_s.to_string();
    let children: Vec<Child> = cases
        .iter()
        .map(|(ns, ip)| {
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "ping", "-n", "-q", "-c", "1", "-W", &w, ip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning ping")
        })
        .collect();
    children.into_iter().map(|mut c| c.wait().expect("ping").success()).collect()
}

/// The stats object of the endpoint port whose MAC is `mac`, in whichever network it is
/// (`stats --format json` → networks[i].ports[j], a port identified by "mac"; the parent's own
/// port, listed in every network on it, is skipped).
pub fn endpoint_port(stats: &Value, mac: [u8; 6]) -> Value {
    let m = mac_str(mac);
    stats["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["ports"].as_array().into_iter().flatten())
        .find(|p| p["mac"] == m.as_str() && p["kind"] != "parent")
        .cloned()
        .unwrap_or_else(|| panic!("no endpoint port with mac {m} in stats: {stats}"))
}

/// A counter of the endpoint port with `mac` (e.g. "pcp_stripped").
pub fn endpoint_counter(stats: &Value, mac: [u8; 6], key: &str) -> u64 {
    let p = endpoint_port(stats, mac);
    p[key].as_u64().unwrap_or_else(|| panic!("no counter {key:?} in the endpoint port {}: {p}", mac_str(mac)))
}

// ---------------------------------------------------------------------------------------------
// Toolkit unit tests (no root needed)
// ---------------------------------------------------------------------------------------------

/// Checks of the toolkit itself; called from a plain #[test] in tests/vlan.rs.
pub fn toolkit_self_check() {
    let t = Tag::vid(10).with_pcp(5).with_dei(true);
    assert_eq!(t.tci(), 0xb00a);
    assert_eq!(Tag::from_tci(TPID_8021Q, 0xb00a), t);
    assert_eq!(t.bytes(), [0x81, 0x00, 0xb0, 0x0a]);
    assert_eq!(Tag::priority(3).tci(), 0x6000);
    assert_eq!(Tag::vid(4094).tci(), 0x0ffe);
    let k = *b"ABCDEFGH";
    let plain = frame([2; 6], [4; 6], &k, 100);
    let one = push_tag(&plain, Tag::vid(10));
    assert_eq!(one.len(), 104);
    assert_eq!(&one[12..18], &[0x81, 0x00, 0x00, 0x0a, 0x88, 0xb5]);
    assert_eq!(pop_tag(&one), Some((Tag::vid(10), plain.clone())));
    assert_eq!(pop_tag(&plain), None);
    let two = push_tag(&push_tag(&plain, Tag::vid(99)), Tag::vid(10).with_tpid(TPID_8021AD));
    let (tags, rest) = split_tags(&two);
    assert_eq!(tags, [Tag::vid(10).with_tpid(TPID_8021AD), Tag::vid(99)]);
    assert_eq!(rest, plain);
    assert_eq!(tagged_frame([2; 6], [4; 6], Tag::vid(7), &k, 100), push_tag(&plain, Tag::vid(7)));
    assert_eq!(tags_str(&tags), "0x88a8 vid 10 pcp 0 + vid 99 pcp 0");
    // A truncated tag header is not a tag.
    assert_eq!(pop_tag(&one[..16]), None);
}
