//! The programs of bpf/xmacvlan.bpf.c: loading them, and the maps the control plane fills;
//! attaching them is in `attach.rs`.

#![allow(clippy::all)]
mod attach;
pub mod block;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/xmacvlan.skel.rs"));
}

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, XdpFlags};

use crate::frame::MacAddr;
use crate::Error;

/// Twin of `struct mac_key` in bpf/xmacvlan.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacKey {
    pub parent_ifindex: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
}
const _: () = assert!(std::mem::size_of::<MacKey>() == 12);

/// Twin of `struct mac_val` in bpf/xmacvlan.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacVal {
    /// The endpoint's daemon-side veth for a fast path; 0 = AF_XDP path.
    pub fast_ifindex: u32,
    /// Longest untagged frame the endpoint takes (MTU + 14).
    pub max_len: u32,
    pub slot: u32,
    /// [`MAC_NO_DST`] | [`MAC_REFLECT`] | [`MAC_FAST_TC`].
    pub flags: u32,
}
const _: () = assert!(std::mem::size_of::<MacVal>() == 16);

/// Twin of `struct ep_port` in bpf/xmacvlan.h: a tc-fed endpoint, for xmv_endpoint_tc.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpPort {
    pub slot: u32,
    /// The network's parent (an internal network's anchor).
    pub parent_ifindex: u32,
    pub parent_slot: u32,
    /// The parent's MTU + 14.
    pub wire_max_len: u32,
    pub collector: u32,
    /// [`EP_BRIDGE`] | [`EP_WIRE`].
    pub flags: u32,
}
const _: () = assert!(std::mem::size_of::<EpPort>() == 24);
pub const EP_BRIDGE: u32 = 1;
pub const EP_WIRE: u32 = 2;

/// Twin of `struct xmv_config` in bpf/xmacvlan.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Config {
    listed_sources: u32,
}
const _: () = assert!(std::mem::size_of::<Config>() == 4);

/// `mac_val.flags` (XMV_MAC_*): a source-mode endpoint is never a unicast destination.
pub const MAC_NO_DST: u32 = 1;
/// A group frame the endpoint sent that comes back from the wire goes back to it alone.
pub const MAC_REFLECT: u32 = 2;
/// The endpoint's fast path is the tc one (xmv_parent passes, xmv_parent_tc redirects to the peer).
pub const MAC_FAST_TC: u32 = 4;
/// A bridge-mode endpoint (a bridge endpoint's unicast to it stays local).
pub const MAC_BRIDGE: u32 = 8;

/// Twin of `struct fast_count` in bpf/xmacvlan.h (one per CPU and slot): what the kernel-side
/// paths (fast paths, tc flood) did for an endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCount {
    pub frames: u64,
    pub bytes: u64,
    /// Not delivered: the endpoint was down.
    pub down: u64,
    /// Not delivered: longer than the endpoint's MTU allows.
    pub oversize: u64,
    /// Not delivered: the kernel refused the copy.
    pub errors: u64,
    /// Frames (and their bytes) xmv_endpoint_tc took from the endpoint's container and decided
    /// itself: each has one outcome above, at another endpoint or at the network's parent slot.
    pub rx: u64,
    pub rx_bytes: u64,
    /// The bytes of those it delivered to another endpoint.
    pub local_bytes: u64,
    /// Frames of the container for the workers that the collector's backlog refused.
    pub lost: u64,
}
impl FastCount {
    pub fn since(&self, base: &FastCount) -> FastCount {
        FastCount {
            frames: self.frames.wrapping_sub(base.frames),
            bytes: self.bytes.wrapping_sub(base.bytes),
            down: self.down.wrapping_sub(base.down),
            oversize: self.oversize.wrapping_sub(base.oversize),
            errors: self.errors.wrapping_sub(base.errors),
            rx: self.rx.wrapping_sub(base.rx),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            local_bytes: self.local_bytes.wrapping_sub(base.local_bytes),
            lost: self.lost.wrapping_sub(base.lost),
        }
    }

    pub fn add(&mut self, o: &FastCount) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.down += o.down;
        self.oversize += o.oversize;
        self.errors += o.errors;
        self.rx += o.rx;
        self.rx_bytes += o.rx_bytes;
        self.local_bytes += o.local_bytes;
        self.lost += o.lost;
    }

    /// Outcomes: delivered or not.
    pub fn outcomes(&self) -> u64 {
        self.frames + self.dropped()
    }

    pub fn dropped(&self) -> u64 {
        self.down + self.oversize + self.errors
    }
}

/// Twin of `struct flood_member`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodMember {
    pub ifindex: u32,
    pub max_len: u32,
    pub slot: u32,
    /// [`FLOOD_UP`].
    pub flags: u32,
}
const _: () = assert!(std::mem::size_of::<FloodMember>() == 16);

/// `flood_member.flags` (XMV_FLOOD_*): the endpoint is up.
pub const FLOOD_UP: u32 = 1;

/// Mirrors XMV_FLOOD_MAX.
pub const FLOOD_MAX: usize = 4096;

/// Twin of `struct flood_list`.
#[repr(C)]
pub struct FloodList {
    pub count: u32,
    /// The first `peers` members are veths, whose copies go through the relay; the rest are taps.
    pub peers: u32,
    /// The relay pair: where veth copies go, and where frames for the workers go.
    pub relay: u32,
    pub collector: u32,
    pub m: [FloodMember; FLOOD_MAX],
}
const _: () = assert!(std::mem::size_of::<FloodList>() == 16 + 16 * FLOOD_MAX);

/// Twin of `struct flood_count` (one per CPU and parent slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodCount {
    /// Group frames from the wire the tc flood fanned out.
    pub frames: u64,
    /// Outcomes at members: each copy handed over, or counted as not (a flood to n members has n).
    pub outcomes: u64,
    /// Floods that had no member.
    pub empty: u64,
    /// Frames for the workers that the collector's backlog refused.
    pub lost: u64,
}
const _: () = assert!(std::mem::size_of::<FloodCount>() == 32);

impl FloodCount {
    /// Outcomes beyond the frames themselves: a flood to n members makes n − 1 copies, an empty
    /// flood none (wrapping: a delta may be taken while a flood's outcomes are still to come).
    pub fn copies(&self) -> u64 {
        self.outcomes.wrapping_add(self.empty).wrapping_sub(self.frames)
    }
}
/// `sources` value (XMV_SRC_NODST): a listing endpoint has nodst.
pub const SRC_NODST: u32 = 1;

/// Mirrors XMV_MAX_QUEUES / XMV_MAX_SLOTS in bpf/xmacvlan.h.
pub const MAX_QUEUES: u32 = 64;
pub const MAX_SLOTS: u32 = 4096;

/// Indexes of the `xdp_stats` per-CPU array (enum xmv_stat).
pub const XDP_STAT_NAMES: [&str; 11] = [
    "to_xsk",
    "pass_multicast",
    "pass_unknown",
    "pass_short",
    "endpoint_to_xsk",
    "no_socket",
    "fast_path",
    "source_or_reflected",
    "fast_tc",
    "endpoint_tc",
    "endpoint_to_workers",
];

/// How an XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Native,
    Generic,
    /// Nothing attached (an internal network's anchor).
    None,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::None => "none",
        }
    }
    fn flags(self) -> XdpFlags {
        match self {
            XdpMode::Native => XdpFlags::DRV_MODE,
            XdpMode::Generic => XdpFlags::SKB_MODE,
            XdpMode::None => XdpFlags::empty(),
        }
    }
}

/// Which of the two XDP programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    Parent,
    Endpoint,
}

/// The daemon's relay veth pair (ifindexes): `relay` takes the tc flood's copies for veth
/// endpoints, `collector` the frames for the workers (their flood sockets listen there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relay {
    pub relay: u32,
    pub collector: u32,
}

/// skb->mark of a frame collected for the workers of the parent in `slot` (XMV_MARK_* in
/// bpf/xmacvlan.h): what the parent's flood socket filters on.
pub fn collect_mark(slot: u32) -> u32 {
    const MAGIC: u32 = 0xb000_0000;
    const COLLECT: u32 = 1 << 26;
    MAGIC | COLLECT | (slot << 12)
}

/// XMV_MARK_FROM_EP: with [`collect_mark`] of the parent's slot and the sending endpoint's slot in
/// the low 12 bits, a container's frame xmv_endpoint_tc collected for the workers.
pub const MARK_FROM_EP: u32 = 1 << 25;
/// Where the sending endpoint's slot is in such a mark.
pub const MARK_SLOT_MASK: u32 = 0xfff;

/// Which of the two tc programs (tcx ingress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcProg {
    /// xmv_parent_tc on a parent: the tc fast path and the tc flood.
    Parent,
    /// xmv_relay_tc on the daemon's relay pair: hands the tc flood's copies to container ends, and
    /// ends the frames collected for the workers.
    Relay,
    /// xmv_endpoint_tc on the endpoints' shared tc block (block.rs; the tc fast path): the frames
    /// their containers send. Never attached per interface.
    Endpoint,
}

/// BPF_PROG_RUN flag: run an XDP program on frames as if a device had received them, acting on its
/// verdicts (redirect, transmit, pass to the stack) — the benchmark's generator and CNI CHECK's probe.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct xdp_md` from <linux/bpf.h>, the context (`ctx_in`) of an XDP test run.
#[repr(C)]
#[derive(Debug, Default)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// The loaded object: program and map fds, independent of the skeleton's lifetime.
pub struct Bpf {
    parent: OwnedFd,
    parent_tc: OwnedFd,
    endpoint: OwnedFd,
    relay_tc: OwnedFd,
    endpoint_tc: OwnedFd,
    macs: MapHandle,
    ep_ports: MapHandle,
    /// Slot → the tc fast path's veth (0 = none): what a frame's XDP metadata is checked against.
    fast_ports: MapHandle,
    sources: MapHandle,
    /// Entries in `sources`, mirrored into `config` (the parent program skips the lookup while 0).
    listed_sources: AtomicU32,
    config: MapHandle,
    slots: MapHandle,
    xsks: MapHandle,
    stats: MapHandle,
    fast_stats: MapHandle,
    floods: MapHandle,
    flood_stats: MapHandle,
    /// Interfaces this daemon put on the endpoints' tc block, and whether the block's filter is
    /// ours (written after the first join; the block and its filter go with the last member).
    block_members: AtomicU32,
    block_filter: AtomicBool,
}

fn bpf_err(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |e| Error::Bpf { what, cause: e }
}

impl Bpf {
    pub fn load() -> Result<Self, Error> {
        let mut storage = MaybeUninit::uninit();
        let open = skel::XmacvlanSkelBuilder::default().open(&mut storage).map_err(bpf_err("open"))?;
        let skel = open.load().map_err(bpf_err("load (is BPF available and are you root?)"))?;
        let dup = |fd: BorrowedFd<'_>| fd.try_clone_to_owned().map_err(|e| Error::Sys { call: "dup", cause: e });
        Ok(Bpf {
            parent: dup(skel.progs.xmv_parent.as_fd())?,
            parent_tc: dup(skel.progs.xmv_parent_tc.as_fd())?,
            endpoint: dup(skel.progs.xmv_endpoint.as_fd())?,
            relay_tc: dup(skel.progs.xmv_relay_tc.as_fd())?,
            endpoint_tc: dup(skel.progs.xmv_endpoint_tc.as_fd())?,
            macs: MapHandle::try_from(&skel.maps.macs).map_err(bpf_err("map macs"))?,
            ep_ports: MapHandle::try_from(&skel.maps.ep_ports).map_err(bpf_err("map ep_ports"))?,
            fast_ports: MapHandle::try_from(&skel.maps.fast_ports).map_err(bpf_err("map fast_ports"))?,
            sources: MapHandle::try_from(&skel.maps.sources).map_err(bpf_err("map sources"))?,
            listed_sources: AtomicU32::new(0),
            config: MapHandle::try_from(&skel.maps.config).map_err(bpf_err("map config"))?,
            slots: MapHandle::try_from(&skel.maps.slots).map_err(bpf_err("map slots"))?,
            xsks: MapHandle::try_from(&skel.maps.xsks).map_err(bpf_err("map xsks"))?,
            stats: MapHandle::try_from(&skel.maps.xdp_stats).map_err(bpf_err("map xdp_stats"))?,
            fast_stats: MapHandle::try_from(&skel.maps.fast_stats).map_err(bpf_err("map fast_stats"))?,
            floods: MapHandle::try_from(&skel.maps.floods).map_err(bpf_err("map floods"))?,
            flood_stats: MapHandle::try_from(&skel.maps.flood_stats).map_err(bpf_err("map flood_stats"))?,
            block_members: AtomicU32::new(0),
            block_filter: AtomicBool::new(false),
        })
    }

    pub(crate) fn prog(&self, p: Prog) -> BorrowedFd<'_> {
        match p {
            Prog::Parent => self.parent.as_fd(),
            Prog::Endpoint => self.endpoint.as_fd(),
        }
    }

    fn tc_prog(&self, p: TcProg) -> BorrowedFd<'_> {
        match p {
            TcProg::Parent => self.parent_tc.as_fd(),
            TcProg::Relay => self.relay_tc.as_fd(),
            TcProg::Endpoint => self.endpoint_tc.as_fd(),
        }
    }

    /// Writes an endpoint's `macs` entry, and first the `fast_ports` entry of its slot that the tc
    /// fast path checks XDP's metadata against (the endpoint's veth while it is up on the tc fast
    /// path, else 0).
    pub fn set_mac(&self, key: MacKey, val: MacVal) -> Result<(), Error> {
        let port = if val.flags & MAC_FAST_TC != 0 { val.fast_ifindex } else { 0 };
        self.fast_ports
            .update(&val.slot.to_ne_bytes(), &port.to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf_err("update fast_ports"))?;
        self.macs.update(as_bytes(&key), as_bytes(&val), MapFlags::ANY).map_err(bpf_err("update macs"))
    }

    /// What the kernel-side paths did for the endpoint in `slot`, summed over CPUs (cumulative
    /// since the slot was first used).
    pub fn fast_counts(&self, slot: u32) -> FastCount {
        let [frames, bytes, down, oversize, errors, rx, rx_bytes, local_bytes, lost] =
            percpu_sum(&self.fast_stats, slot);
        FastCount { frames, bytes, down, oversize, errors, rx, rx_bytes, local_bytes, lost }
    }

    /// What the tc flood did on the parent in `slot`, summed over CPUs.
    pub fn flood_counts(&self, slot: u32) -> FloodCount {
        let [frames, outcomes, empty, lost] = percpu_sum(&self.flood_stats, slot);
        FloodCount { frames, outcomes, empty, lost }
    }

    /// Sets the endpoints a wire flood on the parent in `slot` reaches through the tc flood (which
    /// is on for a parent while it has a list), replacing the whole list at once: `peers` veths
    /// first, whose copies go through the relay, then the taps.
    pub fn set_flood_list(&self, slot: u32, members: &[FloodMember], peers: usize, relay: Relay) -> Result<(), Error> {
        let mut list: Box<FloodList> = Box::new(FloodList {
            count: 0,
            peers: 0,
            relay: relay.relay,
            collector: relay.collector,
            m: [FloodMember::default(); FLOOD_MAX],
        });
        let n = members.len().min(FLOOD_MAX);
        list.m[..n].copy_from_slice(&members[..n]);
        list.count = n as u32;
        list.peers = peers.min(n) as u32;
        // SAFETY: FloodList is repr(C) plain data of u32 fields without padding (size asserted).
        let bytes = unsafe {
            std::slice::from_raw_parts((&*list as *const FloodList).cast::<u8>(), std::mem::size_of::<FloodList>())
        };
        self.floods.update(&slot.to_ne_bytes(), bytes, MapFlags::ANY).map_err(bpf_err("update floods"))
    }

    pub fn del_flood_list(&self, slot: u32) {
        let _ = self.floods.delete(&slot.to_ne_bytes());
    }

    /// Removes an endpoint's `macs` entry, then clears its slot's `fast_ports` entry.
    pub fn del_mac(&self, key: MacKey, slot: u32) {
        let _ = self.macs.delete(as_bytes(&key));
        let _ = self.fast_ports.update(&slot.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY);
    }

    /// Lists (`Some(flags)`) or unlists (`None`) a source MAC of a source-mode endpoint, and keeps
    /// `config.listed_sources` the number of entries (the first is counted before it is written,
    /// the last uncounted after it is gone: the parent program never skips a listed sender).
    pub fn set_source(&self, key: MacKey, flags: Option<u32>) -> Result<(), Error> {
        let present = matches!(self.sources.lookup(as_bytes(&key), MapFlags::ANY), Ok(Some(_)));
        match flags {
            Some(f) => {
                if !present {
                    self.count_sources(1)?;
                }
                let r = self.sources.update(as_bytes(&key), &f.to_ne_bytes(), MapFlags::ANY);
                if r.is_err() && !present {
                    let _ = self.count_sources(-1);
                }
                r.map_err(bpf_err("update sources"))
            }
            None => {
                if present && self.sources.delete(as_bytes(&key)).is_ok() {
                    let _ = self.count_sources(-1);
                }
                Ok(())
            }
        }
    }

    fn count_sources(&self, delta: i32) -> Result<(), Error> {
        let n = self.listed_sources.load(Ordering::Relaxed).saturating_add_signed(delta);
        self.config
            .update(&0u32.to_ne_bytes(), as_bytes(&Config { listed_sources: n }), MapFlags::ANY)
            .map_err(bpf_err("update config"))?;
        self.listed_sources.store(n, Ordering::Relaxed);
        Ok(())
    }

    /// Puts a tc-fed endpoint's daemon-side veth on the endpoints' tc block (block.rs), whose filter
    /// runs xmv_endpoint_tc, and makes sure that filter is this daemon's program.
    pub fn join_block(&self, ifindex: u32, ifname: &str) -> Result<(), Error> {
        let err =
            |cause: std::io::Error| Error::Attach { ifname: ifname.to_string(), cause: libbpf_rs::Error::from(cause) };
        block::join(ifindex).map_err(err)?;
        self.block_members.fetch_add(1, Ordering::Relaxed);
        if !self.block_filter.load(Ordering::Relaxed) {
            if let Err(e) = block::set_filter(self.endpoint_tc.as_fd(), "xmv_endpoint_tc") {
                self.leave_block(ifindex);
                return Err(err(e));
            }
            self.block_filter.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes an endpoint's veth off the block (a link that is gone already is not an error).
    pub fn leave_block(&self, ifindex: u32) {
        let _ = block::leave(ifindex);
        if self.block_members.fetch_sub(1, Ordering::Relaxed) == 1 {
            // The last member took the block, and its filter, with it.
            self.block_filter.store(false, Ordering::Relaxed);
        }
    }

    /// Writes (or rewrites) the `ep_ports` entry of a tc-fed endpoint's daemon-side veth.
    pub fn set_ep_port(&self, ifindex: u32, port: EpPort) -> Result<(), Error> {
        self.ep_ports.update(&ifindex.to_ne_bytes(), as_bytes(&port), MapFlags::ANY).map_err(bpf_err("update ep_ports"))
    }

    pub fn del_ep_port(&self, ifindex: u32) {
        let _ = self.ep_ports.delete(&ifindex.to_ne_bytes());
    }

    pub fn set_slot(&self, ifindex: u32, slot: u32) -> Result<(), Error> {
        self.slots.update(&ifindex.to_ne_bytes(), &slot.to_ne_bytes(), MapFlags::ANY).map_err(bpf_err("update slots"))
    }

    pub fn del_slot(&self, ifindex: u32) {
        let _ = self.slots.delete(&ifindex.to_ne_bytes());
    }

    pub fn set_xsk(&self, slot: u32, queue: u32, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let idx = slot * MAX_QUEUES + queue;
        self.xsks
            .update(&idx.to_ne_bytes(), &(fd.as_raw_fd() as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(bpf_err("update xsks"))
    }

    pub fn del_xsk(&self, slot: u32, queue: u32) {
        let _ = self.xsks.delete(&(slot * MAX_QUEUES + queue).to_ne_bytes());
    }

    /// The per-CPU XDP counters summed over CPUs, in [`XDP_STAT_NAMES`] order.
    pub fn xdp_stats(&self) -> [u64; XDP_STAT_NAMES.len()] {
        let mut out = [0u64; XDP_STAT_NAMES.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(Some(per_cpu)) = self.stats.lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY) {
                *slot =
                    per_cpu.iter().filter_map(|v| v.get(..8)).map(|b| u64::from_ne_bytes(b.try_into().unwrap())).sum();
            }
        }
        out
    }
}

/// Sums a per-CPU array entry of N u64 counters over CPUs.
fn percpu_sum<const N: usize>(map: &MapHandle, key: u32) -> [u64; N] {
    let mut out = [0u64; N];
    if let Ok(Some(per_cpu)) = map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY) {
        for v in per_cpu.iter().filter(|v| v.len() >= N * 8) {
            for (i, o) in out.iter_mut().enumerate() {
                *o += u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            }
        }
    }
    out
}

pub fn mac_key(parent_ifindex: u32, vlan: u16, mac: MacAddr) -> MacKey {
    MacKey { parent_ifindex, vlan, mac: mac.0 }
}

/// Plain-data map keys and values: MacKey and MacVal.
trait Pod: Copy {}
impl Pod for MacKey {}
impl Pod for MacVal {}
impl Pod for Config {}
impl Pod for EpPort {}

fn as_bytes<T: Pod>(k: &T) -> &[u8] {
    // SAFETY: T is one of our repr(C) structs of u32/u16/u8 fields without padding (sizes
    // asserted above), so every byte is initialised plain data.
    unsafe { std::slice::from_raw_parts((k as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_copies_are_the_outcomes_beyond_the_frames() {
        // Two floods to three members each, and one to none.
        let c = FloodCount { frames: 3, outcomes: 6, empty: 1, lost: 0 };
        assert_eq!(c.copies(), 4);
        // Read while a flood's copies are still queued: it wraps, and the outcomes to come put it right.
        let mid = FloodCount { frames: 1, outcomes: 0, empty: 0, lost: 0 };
        assert_eq!(mid.copies().wrapping_add(3), 2);
    }
}
