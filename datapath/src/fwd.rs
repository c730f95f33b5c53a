//! The forwarding decision: a pure function of (frame, ingress port, table) → action.
//!
//! It encodes kernel macvlan (drivers/net/macvlan.c, shared/REFERENCE.md §1) for every mode. A
//! domain is one parent link; its endpoints belong to a VLAN of that link (0 = untagged), which
//! plays the part of the kernel's VLAN sub-interface: lookups are by (VLAN, MAC), floods stay in
//! their VLAN, and [`Table::edit`] says where a tag is popped or pushed.
//! - from the wire (the parent), macvlan_handle_frame: a source MAC listed by source-mode
//!   endpoints is copied to them first (with `nodst` nothing else happens); a group frame whose
//!   source is one of our private/passthru/source endpoints goes back to it alone; one sent by a
//!   vepa endpoint floods vepa and bridge endpoints but the sender; one sent by a bridge endpoint
//!   floods vepa endpoints only (bridge ports saw it on the way out); any other group frame floods
//!   every private/vepa/bridge/passthru endpoint (the host stack got its copy before us: the XDP
//!   program passed it). Unicast goes to the passthru endpoint of the VLAN if there is one, else
//!   to the endpoint with that MAC unless it is in source mode (then, as for unknown MACs, the
//!   host stack has it).
//! - from an endpoint, macvlan_queue_xmit: a bridge endpoint's unicast to a bridge sibling stays
//!   local, its group frames go to the bridge siblings and the wire; everything else, and
//!   everything a private/vepa/passthru/source endpoint sends, goes out of the parent.
//! - a destination that is down gets nothing; frames longer than the destination MTU are dropped.
//! - where kernel macvlan trusts its children, this does not: a container's frame passes its
//!   endpoint's source guard first (guard.rs: its own source MAC, and with the IP guard its own
//!   addresses), and a group source MAC is dropped from the wire too.

use std::str::FromStr;

use crate::frame::{Ethernet, MacAddr, ParseError};
use crate::guard::{self, Guard};
use crate::ipvlan::{self, Ipvlan, Verdict};
pub use crate::table::{MacHasher, Table, TableError};

/// A port of one forwarding domain (one parent and its endpoints). Port 0 is the parent.
pub type PortId = u16;
pub const PARENT: PortId = 0;
/// Ports per domain the datapath serves (parent included): the XDP program's XSKMAP holds
/// XMV_MAX_SLOTS slots. A [`Table`] itself takes any `PortId`.
pub const MAX_PORTS: usize = 4096;

/// Why a frame, or one copy of it, was not delivered. Every frame is delivered or counted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt = 0,
    /// 802.1Q EtherType without a complete tag.
    BadVlan,
    /// Longer than the destination's MTU allows.
    Oversize,
    /// The destination endpoint's container side is down.
    DstDown,
    /// A unicast frame from the wire whose endpoint left while the frame was in flight.
    NoEndpoint,
    /// A broadcast reflected back from the wire that bridge ports already got on the way out.
    Reflected,
    /// The destination's TX ring, or the worker's send buffer, was full.
    TxRingFull,
    /// No free UMEM frame for a copy (a flood variant, or an endpoint's frame towards the wire).
    NoBuffer,
    /// The kernel dropped the frame at the port's AF_XDP socket: no fill-ring frame to receive
    /// into, or longer than a UMEM chunk (XDP_STATISTICS `rx_dropped`).
    XskRxDropped,
    /// The kernel dropped the frame because the socket's RX ring was full (`rx_ring_full`).
    XskRxRingFull,
    /// The kernel dropped a broadcast/multicast frame because the flood socket's receive queue was
    /// full (PACKET_STATISTICS `tp_drops`).
    SocketFull,
    /// The kernel refused to transmit the frame for another reason (the errno is not kept).
    TxError,
    /// A container's frame whose source MAC is not its endpoint's (the MAC guard), or any frame
    /// with a group source MAC.
    SpoofedSrc,
    /// A container's frame whose IP, ARP or ND sender fields are not its endpoint's (the IP guard).
    SpoofedIp,
    /// ipvlan `private`: a frame for another endpoint of the port (ipvlan_xmit_mode_l2/l3).
    Isolated,
    /// ipvlan L3/L3S: a container's broadcast/multicast or non-IP frame, which the host's routes
    /// do not carry (ipvlan_process_outbound); or one the workers cannot route.
    NotRouted,
}

impl DropReason {
    pub const COUNT: usize = 16;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::BadVlan,
        DropReason::Oversize,
        DropReason::DstDown,
        DropReason::NoEndpoint,
        DropReason::Reflected,
        DropReason::TxRingFull,
        DropReason::NoBuffer,
        DropReason::XskRxDropped,
        DropReason::XskRxRingFull,
        DropReason::SocketFull,
        DropReason::TxError,
        DropReason::SpoofedSrc,
        DropReason::SpoofedIp,
        DropReason::Isolated,
        DropReason::NotRouted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadVlan => "bad_vlan",
            DropReason::Oversize => "oversize",
            DropReason::DstDown => "dst_down",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::Reflected => "reflected",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::XskRxDropped => "xsk_rx_dropped",
            DropReason::XskRxRingFull => "xsk_rx_ring_full",
            DropReason::SocketFull => "socket_full",
            DropReason::TxError => "tx_error",
            DropReason::SpoofedSrc => "spoofed_src",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::Isolated => "isolated",
            DropReason::NotRouted => "not_routed",
        }
    }
}

/// macvlan modes, with the kernel's values (enum macvlan_mode), so a set of them is a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Mode {
    Private = 1,
    Vepa = 2,
    #[default]
    Bridge = 4,
    Passthru = 8,
    Source = 16,
}

impl Mode {
    pub const ALL: [Mode; 5] = [Mode::Bridge, Mode::Private, Mode::Vepa, Mode::Passthru, Mode::Source];

    #[inline]
    pub fn bit(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Bridge => "bridge",
            Mode::Passthru => "passthru",
            Mode::Source => "source",
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            format!("requested macvlan mode '{s}' is not valid (bridge, private, vepa, passthru, source)")
        })
    }
}

/// Group frames from an outside sender reach endpoints of these modes (macvlan_multicast_rx).
const FROM_OUTSIDE: u8 = Mode::Private as u8 | Mode::Vepa as u8 | Mode::Passthru as u8 | Mode::Bridge as u8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub mac: MacAddr,
    /// L3 MTU; frames up to `mtu` + the L2 header are delivered.
    pub mtu: u32,
    /// The VLAN of the parent this endpoint hangs off (0 = untagged).
    pub vlan: u16,
    /// Operational state of the far side (the container interface for endpoints).
    pub up: bool,
    pub mode: Mode,
    /// Source mode: frames from a listed sender are consumed by the copies (the kernel's `nodst`).
    pub nodst: bool,
    /// VLAN endpoints: a tag with a non-zero priority (PCP) is rewritten to a priority tag (VID 0,
    /// PCP and DEI kept) instead of being removed.
    pub keep_pcp: bool,
    /// Which sender fields of the container's frames are checked (endpoints; the parent's is unused).
    pub guard: Guard,
    /// An endpoint of an ipvlan port (ipvlan.rs): it has the parent's MAC and is found by its
    /// addresses, never by its MAC.
    pub ipvlan: Option<Ipvlan>,
}

impl PortInfo {
    /// Whether a frame of `len` bytes with an L2 header of `hlen` may go to this port.
    #[inline]
    pub fn admits(&self, len: usize, hlen: usize) -> Result<(), DropReason> {
        if !self.up {
            Err(DropReason::DstDown)
        } else if len > self.mtu as usize + hlen {
            Err(DropReason::Oversize)
        } else {
            Ok(())
        }
    }

    /// An untagged bridge-mode endpoint that is up.
    pub fn endpoint(mac: MacAddr, mtu: u32) -> Self {
        PortInfo {
            mac,
            mtu,
            vlan: 0,
            up: true,
            mode: Mode::Bridge,
            nodst: false,
            keep_pcp: false,
            guard: Guard::DEFAULT,
            ipvlan: None,
        }
    }
}

/// One frame to several ports (broadcast/multicast, or source-mode copies): the targets are, in
/// this order, the source-mode endpoints listing `src` (when `sources`), the endpoints of `vlan`
/// whose mode is in `modes` except `exclude`, then `also`, then the parent when `wire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    pub vlan: u16,
    pub src: MacAddr,
    pub sources: bool,
    pub modes: u8,
    pub exclude: PortId,
    pub also: Option<PortId>,
    pub wire: bool,
    /// The L2 header length, 14 or 18 (for the per-target MTU check).
    pub hlen: u8,
}

/// What to do with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Count against `port` and recycle the frame.
    Drop { reason: DropReason, port: PortId },
    /// Hand the descriptor to `port`'s TX ring (no copy).
    Forward(PortId),
    /// Deliver to every target of [`Table::flood_targets`].
    Flood(Flood),
}

/// How a frame's 802.1Q tag changes on its way from one port to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    None,
    /// Remove the tag (wire → endpoint of a VLAN).
    Pop,
    /// Set the VID to 0, keeping PCP and DEI (wire → endpoint with `keep_pcp`, PCP ≠ 0).
    PriorityTag,
    /// Insert a tag with this TCI (endpoint of a VLAN → wire).
    Push(u16),
    /// Replace the VID of a priority tag the container sent, keeping its PCP and DEI.
    SetVid(u16),
}

/// The forwarding decision for one frame received on `ingress`.
#[inline]
pub fn decide(frame: &[u8], ingress: PortId, table: &Table) -> Action {
    let eth = match Ethernet::parse(frame) {
        Ok(eth) => eth,
        Err(ParseError::Runt) => return Action::Drop { reason: DropReason::Runt, port: ingress },
        Err(ParseError::TruncatedVlan) => return Action::Drop { reason: DropReason::BadVlan, port: ingress },
    };
    let dst = eth.dst();
    let deliver = |port: PortId| match table.check_delivery(port, eth.len(), eth.header_len()) {
        Ok(()) => Action::Forward(port),
        Err(reason) => Action::Drop { reason, port },
    };
    let flood = |vlan: u16| Flood {
        vlan,
        src: eth.src(),
        sources: false,
        modes: 0,
        exclude: PARENT,
        also: None,
        wire: false,
        hlen: eth.header_len() as u8,
    };

    if ingress == PARENT {
        let vlan = eth.vlan();
        let src = eth.src();
        if src.is_multicast() {
            return Action::Drop { reason: DropReason::SpoofedSrc, port: PARENT };
        }
        if let Some(ipv) = table.ipvlan(vlan) {
            return ipvlan_action(frame, &eth, PARENT, vlan, ipv, table);
        }
        let listed = table.source_listing(vlan, src);
        if listed.is_none() && !dst.is_multicast() {
            // The common case, with one table lookup and one port read.
            let dest = table.passthru(vlan).or_else(|| table.lookup(vlan, dst));
            return match dest.and_then(|p| Some((p, table.port(p)?))) {
                Some((p, info)) if info.mode != Mode::Source => match info.admits(eth.len(), eth.header_len()) {
                    Ok(()) => Action::Forward(p),
                    Err(reason) => Action::Drop { reason, port: p },
                },
                _ => Action::Drop { reason: DropReason::NoEndpoint, port: PARENT },
            };
        }
        let copies = Flood { sources: listed.is_some(), ..flood(vlan) };
        if listed == Some(true) {
            // nodst: the copies consume the frame.
            return Action::Flood(copies);
        }
        if dst.is_multicast() {
            return match table.lookup(vlan, src).map(|p| (p, table.mode(p))) {
                // Sent by a private/passthru/source endpoint: back to it alone.
                Some((p, Some(Mode::Private | Mode::Passthru | Mode::Source))) => {
                    if listed.is_some() {
                        Action::Flood(Flood { also: Some(p), ..copies })
                    } else {
                        deliver(p)
                    }
                }
                Some((p, Some(Mode::Vepa))) => {
                    Action::Flood(Flood { modes: Mode::Vepa.bit() | Mode::Bridge.bit(), exclude: p, ..copies })
                }
                // Sent by a bridge endpoint: the bridge ports saw it on the way out; vepa ones not.
                Some((p, _)) => {
                    let vepa = table
                        .endpoints()
                        .iter()
                        .any(|&e| e != p && table.port(e).is_some_and(|i| i.vlan == vlan && i.mode == Mode::Vepa));
                    if !vepa && listed.is_none() {
                        return Action::Drop { reason: DropReason::Reflected, port: PARENT };
                    }
                    Action::Flood(Flood { modes: Mode::Vepa.bit(), exclude: p, ..copies })
                }
                None => Action::Flood(Flood { modes: FROM_OUTSIDE, ..copies }),
            };
        }
        let dest =
            table.passthru(vlan).or_else(|| table.lookup(vlan, dst).filter(|&p| table.mode(p) != Some(Mode::Source)));
        // A listed sender's unicast: the copies, and the destination as usual.
        return Action::Flood(Flood { also: dest, ..copies });
    }

    let Some(me) = table.port(ingress) else {
        return Action::Drop { reason: DropReason::NoEndpoint, port: ingress };
    };
    if let Err(reason) = guard::check(frame, me.guard, me.mac, table.addresses(ingress)) {
        return Action::Drop { reason, port: ingress };
    }
    let vlan = me.vlan;
    if let Some(ipv) = me.ipvlan {
        return ipvlan_action(frame, &eth, ingress, vlan, ipv, table);
    }
    if me.mode == Mode::Bridge {
        if dst.is_multicast() {
            return Action::Flood(Flood { modes: Mode::Bridge.bit(), exclude: ingress, wire: true, ..flood(vlan) });
        }
        if let Some(port) = table.lookup(vlan, dst).filter(|&p| table.mode(p) == Some(Mode::Bridge)) {
            return deliver(port);
        }
    }
    if table.has_wire() {
        deliver(PARENT)
    } else {
        Action::Drop { reason: DropReason::NoEndpoint, port: ingress }
    }
}

/// An ipvlan port's verdict (ipvlan.rs) as the workers carry it out. Handing a frame to the host
/// stack or its routes is the kernel's (xmv_endpoint_tc): a frame that reaches the workers for it
/// — an internal network's, which has neither, or one from the wire whose endpoint left in flight —
/// is counted.
#[inline]
fn ipvlan_action(frame: &[u8], eth: &Ethernet, ingress: PortId, vlan: u16, ipv: Ipvlan, table: &Table) -> Action {
    let deliver = |port: PortId| match table.check_delivery(port, eth.len(), eth.header_len()) {
        Ok(()) => Action::Forward(port),
        Err(reason) => Action::Drop { reason, port },
    };
    match ipvlan::decide(frame, eth, ingress, vlan, ipv, table) {
        Verdict::Endpoint(p) => deliver(p),
        Verdict::Flood { exclude, wire } => Action::Flood(Flood {
            vlan,
            src: eth.src(),
            sources: false,
            modes: u8::MAX,
            exclude,
            also: None,
            wire,
            hlen: eth.header_len() as u8,
        }),
        Verdict::Wire if table.has_wire() => deliver(PARENT),
        Verdict::Drop(reason) => Action::Drop { reason, port: ingress },
        Verdict::Route if table.has_wire() => Action::Drop { reason: DropReason::NotRouted, port: ingress },
        Verdict::Wire | Verdict::Host | Verdict::Route => {
            Action::Drop { reason: DropReason::NoEndpoint, port: ingress }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;

    const PARENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0, 0, 0, 0x01]);
    const A: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0c]);
    const OUTSIDE: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 0x01]);

    fn ep(mac: MacAddr, mtu: u32) -> PortInfo {
        PortInfo::endpoint(mac, mtu)
    }

    /// Parent (MTU 3000) with endpoints A=1, B=2 (MTU 1500), C=3.
    fn table() -> Table {
        let mut t = Table::new(PARENT_MAC, 3000);
        t.add_endpoint(1, ep(A, 3000)).unwrap();
        t.add_endpoint(2, ep(B, 1500)).unwrap();
        t.add_endpoint(3, ep(C, 3000)).unwrap();
        t
    }

    fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
        let mut f = vec![0xa5; len];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f
    }

    fn targets(t: &Table, action: Action) -> Vec<PortId> {
        match action {
            Action::Flood(f) => t.flood_targets(&f).collect(),
            other => panic!("expected a flood, got {other:?}"),
        }
    }

    #[test]
    fn internal_network_keeps_everything_among_endpoints() {
        let mut t = Table::internal(PARENT_MAC);
        t.add_endpoint(1, ep(A, 1500)).unwrap();
        t.add_endpoint(2, ep(B, 1500)).unwrap();
        assert_eq!(decide(&frame(B, A, 60), 1, &t), Action::Forward(2));
        assert_eq!(decide(&frame(OUTSIDE, A, 60), 1, &t), Action::Drop { reason: DropReason::NoEndpoint, port: 1 });
        assert_eq!(decide(&frame(PARENT_MAC, A, 60), 1, &t), Action::Drop { reason: DropReason::NoEndpoint, port: 1 });
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, A, 60), 1, &t)), vec![2]);
    }

    #[test]
    fn rule1_wire_unicast_goes_to_its_endpoint_only() {
        let t = table();
        assert_eq!(decide(&frame(A, OUTSIDE, 60), PARENT, &t), Action::Forward(1));
        assert_eq!(decide(&frame(C, OUTSIDE, 60), PARENT, &t), Action::Forward(3));
        // Unknown unicast never reaches the datapath (XDP passes it); if it does, it is counted.
        assert_eq!(
            decide(&frame(OUTSIDE, OUTSIDE, 60), PARENT, &t),
            Action::Drop { reason: DropReason::NoEndpoint, port: PARENT }
        );
    }

    #[test]
    fn rule2_wire_broadcast_floods_every_endpoint_but_not_back_to_the_wire() {
        let t = table();
        let a = decide(&frame(MacAddr::BROADCAST, OUTSIDE, 60), PARENT, &t);
        assert_eq!(targets(&t, a), vec![1, 2, 3]);
        let mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(targets(&t, decide(&frame(mcast, OUTSIDE, 60), PARENT, &t)), vec![1, 2, 3]);
    }

    #[test]
    fn reflected_broadcast_from_a_bridge_endpoint_is_not_flooded_again() {
        let t = table();
        assert_eq!(
            decide(&frame(MacAddr::BROADCAST, B, 60), PARENT, &t),
            Action::Drop { reason: DropReason::Reflected, port: PARENT }
        );
    }

    #[test]
    fn rule3_endpoint_to_sibling_stays_local() {
        let t = table();
        assert_eq!(decide(&frame(C, A, 60), 1, &t), Action::Forward(3));
        assert_eq!(decide(&frame(A, C, 60), 3, &t), Action::Forward(1));
    }

    #[test]
    fn rule4_endpoint_to_anything_else_goes_out_of_the_parent() {
        let t = table();
        assert_eq!(decide(&frame(OUTSIDE, A, 60), 1, &t), Action::Forward(PARENT));
        // The parent's own MAC is not special: host and endpoints cannot talk directly.
        assert_eq!(decide(&frame(PARENT_MAC, A, 60), 1, &t), Action::Forward(PARENT));
    }

    #[test]
    fn rule5_endpoint_broadcast_reaches_siblings_and_wire_never_the_sender() {
        let t = table();
        let a = decide(&frame(MacAddr::BROADCAST, B, 60), 2, &t);
        assert_eq!(targets(&t, a), vec![1, 3, PARENT]);
    }

    #[test]
    fn rule6_down_endpoint_gets_nothing() {
        let mut t = table();
        t.set_up(3, false);
        assert_eq!(decide(&frame(C, OUTSIDE, 60), PARENT, &t), Action::Drop { reason: DropReason::DstDown, port: 3 });
        assert_eq!(decide(&frame(C, A, 60), 1, &t), Action::Drop { reason: DropReason::DstDown, port: 3 });
        assert_eq!(t.check_delivery(3, 60, 14), Err(DropReason::DstDown));
        t.set_up(3, true);
        assert_eq!(decide(&frame(C, OUTSIDE, 60), PARENT, &t), Action::Forward(3));
    }

    #[test]
    fn rule7_bad_frames_are_dropped_and_attributed() {
        let t = table();
        for len in 0..14 {
            assert_eq!(
                decide(&frame(A, OUTSIDE, 60)[..len], 3, &t),
                Action::Drop { reason: DropReason::Runt, port: 3 }
            );
        }
        let mut truncated = frame(B, A, 14);
        truncated[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert_eq!(decide(&truncated, 1, &t), Action::Drop { reason: DropReason::BadVlan, port: 1 });
        // B's MTU is 1500: 1514 bytes fit, 1515 do not.
        assert_eq!(decide(&frame(B, OUTSIDE, 1514), PARENT, &t), Action::Forward(2));
        assert_eq!(
            decide(&frame(B, OUTSIDE, 1515), PARENT, &t),
            Action::Drop { reason: DropReason::Oversize, port: 2 }
        );
        // The parent's MTU bounds what goes out to the wire.
        assert_eq!(
            decide(&frame(OUTSIDE, A, 3015), 1, &t),
            Action::Drop { reason: DropReason::Oversize, port: PARENT }
        );
    }

    fn tag(f: &mut Vec<u8>, tci: u16) {
        let t = tci.to_be_bytes();
        f.splice(12..12, [0x81, 0x00, t[0], t[1]]);
    }

    #[test]
    fn tagged_frames_match_only_their_vlan() {
        let mut t = table();
        let mut v10 = ep(MacAddr([0x02, 0x42, 0, 0, 0x0a, 1]), 1500);
        v10.vlan = 10;
        t.add_endpoint(10, v10).unwrap();
        // A's MAC on VLAN 10 is nobody's: from the wire it is not for A.
        let mut f = frame(A, OUTSIDE, 64);
        tag(&mut f, 10);
        assert_eq!(decide(&f, PARENT, &t), Action::Drop { reason: DropReason::NoEndpoint, port: PARENT });
        let mut f = frame(v10.mac, OUTSIDE, 64);
        tag(&mut f, 10);
        assert_eq!(decide(&f, PARENT, &t), Action::Forward(10));
        // Broadcasts stay in their VLAN, both ways.
        let mut b = frame(MacAddr::BROADCAST, OUTSIDE, 64);
        tag(&mut b, 10);
        assert_eq!(targets(&t, decide(&b, PARENT, &t)), vec![10]);
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, OUTSIDE, 64), PARENT, &t)), vec![1, 2, 3]);
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, v10.mac, 64), 10, &t)), vec![PARENT]);
        // An endpoint's lookups are in its own VLAN, whatever tag the container wrote.
        assert_eq!(decide(&frame(A, v10.mac, 64), 10, &t), Action::Forward(PARENT));
        let mut inner = frame(A, C, 64);
        tag(&mut inner, 10);
        assert_eq!(decide(&inner, 3, &t), Action::Forward(1));
    }

    #[test]
    fn vlan_edits_pop_push_and_keep_priorities() {
        let mut t = table();
        let mut v10 = ep(MacAddr([0x02, 0x42, 0, 0, 0x0a, 1]), 1500);
        v10.vlan = 10;
        t.add_endpoint(10, v10).unwrap();
        let mut keep = ep(MacAddr([0x02, 0x42, 0, 0, 0x0a, 2]), 1500);
        keep.vlan = 10;
        keep.keep_pcp = true;
        t.add_endpoint(11, keep).unwrap();
        let pcp5 = (5 << 13) | 10;
        assert_eq!(t.edit(Some(10), PARENT, 10), Edit::Pop);
        assert_eq!(t.edit(Some(pcp5), PARENT, 10), Edit::Pop);
        assert_eq!(t.edit(Some(10), PARENT, 11), Edit::Pop, "PCP 0: nothing to keep");
        assert_eq!(t.edit(Some(pcp5), PARENT, 11), Edit::PriorityTag);
        assert_eq!(t.edit(None, 10, PARENT), Edit::Push(10));
        assert_eq!(t.edit(Some(3 << 13), 10, PARENT), Edit::SetVid(10), "a priority tag gets the VLAN");
        assert_eq!(t.edit(Some(20), 10, PARENT), Edit::Push(10), "a tagged frame gets an outer tag");
        assert_eq!(t.edit(None, 10, 11), Edit::None);
        assert_eq!(t.edit(None, 1, PARENT), Edit::None, "untagged networks never touch tags");
        assert_eq!(t.edit(Some(0), PARENT, 1), Edit::None);
    }

    /// Parent; endpoints A=1 and B=2 in `mode`, C=3 in bridge mode.
    fn mixed(mode: Mode) -> Table {
        let mut t = Table::new(PARENT_MAC, 1500);
        for (id, mac, m) in [(1, A, mode), (2, B, mode), (3, C, Mode::Bridge)] {
            t.add_endpoint(id, PortInfo { mode: m, ..ep(mac, 1500) }).unwrap();
        }
        t
    }

    #[test]
    fn non_bridge_endpoints_send_everything_to_the_wire() {
        for mode in [Mode::Private, Mode::Vepa, Mode::Source] {
            let t = mixed(mode);
            assert_eq!(decide(&frame(B, A, 60), 1, &t), Action::Forward(PARENT), "{mode:?} to a sibling");
            assert_eq!(decide(&frame(C, A, 60), 1, &t), Action::Forward(PARENT), "{mode:?} to a bridge port");
            assert_eq!(decide(&frame(MacAddr::BROADCAST, A, 60), 1, &t), Action::Forward(PARENT), "{mode:?}");
            // A bridge endpoint reaches only bridge siblings directly.
            assert_eq!(decide(&frame(A, C, 60), 3, &t), Action::Forward(PARENT), "bridge to {mode:?}");
            assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, C, 60), 3, &t)), vec![PARENT]);
        }
    }

    #[test]
    fn group_frames_from_the_wire_follow_the_senders_mode() {
        let bcast = |src| frame(MacAddr::BROADCAST, src, 60);
        for mode in [Mode::Private, Mode::Vepa, Mode::Bridge] {
            let t = mixed(mode);
            assert_eq!(targets(&t, decide(&bcast(OUTSIDE), PARENT, &t)), vec![1, 2, 3], "{mode:?} outside");
        }
        // Reflected from a vepa endpoint: vepa and bridge endpoints but the sender.
        let t = mixed(Mode::Vepa);
        assert_eq!(targets(&t, decide(&bcast(A), PARENT, &t)), vec![2, 3]);
        // Reflected from a bridge endpoint: only vepa endpoints.
        assert_eq!(targets(&t, decide(&bcast(C), PARENT, &t)), vec![1, 2]);
        // Reflected from a private endpoint: back to it alone.
        let t = mixed(Mode::Private);
        assert_eq!(decide(&bcast(A), PARENT, &t), Action::Forward(1));
        assert_eq!(decide(&bcast(C), PARENT, &t), Action::Drop { reason: DropReason::Reflected, port: PARENT });
        // Source-mode endpoints get no floods from outside, only their listed senders' frames.
        let t = mixed(Mode::Source);
        assert_eq!(targets(&t, decide(&bcast(OUTSIDE), PARENT, &t)), vec![3]);
        assert_eq!(decide(&bcast(A), PARENT, &t), Action::Forward(1));
    }

    #[test]
    fn source_mode_copies_listed_senders_and_nodst_consumes() {
        let mut t = mixed(Mode::Source);
        let s = MacAddr([0x02, 0x77, 0, 0, 0, 1]);
        assert_eq!(t.set_sources(1, &[s]).unwrap(), vec![s]);
        assert_eq!(t.set_sources(3, &[s]), Err(TableError::NotSource(3)));
        // Unknown destination: the host has it (XDP passed it); A gets a copy.
        assert_eq!(targets(&t, decide(&frame(OUTSIDE, s, 60), PARENT, &t)), vec![1]);
        // To C: a copy for A, then C.
        assert_eq!(targets(&t, decide(&frame(C, s, 60), PARENT, &t)), vec![1, 3]);
        // A source-mode endpoint is never a unicast destination.
        assert_eq!(
            decide(&frame(B, OUTSIDE, 60), PARENT, &t),
            Action::Drop { reason: DropReason::NoEndpoint, port: PARENT }
        );
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, s, 60), PARENT, &t)), vec![1, 3]);
        // Other senders: nothing for A.
        assert_eq!(decide(&frame(C, OUTSIDE, 60), PARENT, &t), Action::Forward(3));
        // nodst: the copy consumes the frame.
        let mut n = mixed(Mode::Source);
        n.remove_endpoint(2);
        n.add_endpoint(2, PortInfo { mode: Mode::Source, nodst: true, ..ep(B, 1500) }).unwrap();
        n.set_sources(1, &[s]).unwrap();
        n.set_sources(2, &[s]).unwrap();
        assert_eq!(n.source_listing(0, s), Some(true));
        assert_eq!(targets(&n, decide(&frame(C, s, 60), PARENT, &n)), vec![1, 2]);
        assert_eq!(targets(&n, decide(&frame(MacAddr::BROADCAST, s, 60), PARENT, &n)), vec![1, 2]);
        // Lists are replaced, and leave with their endpoint.
        assert_eq!(n.set_sources(2, &[]).unwrap(), vec![s]);
        assert_eq!(n.source_listing(0, s), Some(false));
        n.remove_endpoint(1);
        assert_eq!(n.source_listing(0, s), None);
        assert_eq!(n.sources_of_port(1), Vec::<MacAddr>::new());
    }

    #[test]
    fn passthru_takes_all_unicast_of_its_vlan_and_is_exclusive() {
        let mut t = Table::new(PARENT_MAC, 1500);
        t.add_endpoint(1, PortInfo { mode: Mode::Passthru, ..ep(PARENT_MAC, 1500) }).unwrap();
        assert_eq!(
            t.add_endpoint(2, PortInfo { mode: Mode::Passthru, ..ep(B, 1500) }),
            Err(TableError::PassthruTaken(0, 1))
        );
        assert_eq!(decide(&frame(PARENT_MAC, OUTSIDE, 60), PARENT, &t), Action::Forward(1));
        assert_eq!(decide(&frame(OUTSIDE, OUTSIDE, 60), PARENT, &t), Action::Forward(1));
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, OUTSIDE, 60), PARENT, &t)), vec![1]);
        assert_eq!(decide(&frame(MacAddr::BROADCAST, PARENT_MAC, 60), PARENT, &t), Action::Forward(1));
        assert_eq!(decide(&frame(OUTSIDE, PARENT_MAC, 60), 1, &t), Action::Forward(PARENT));
        t.remove_endpoint(1);
        assert_eq!(t.passthru(0), None);
        t.add_endpoint(2, PortInfo { mode: Mode::Passthru, ..ep(B, 1500) }).unwrap();
    }

    #[test]
    fn source_guard_drops_what_a_container_forges() {
        let mut t = table();
        let spoofed = |port| Action::Drop { reason: DropReason::SpoofedSrc, port };
        // A's container with B's source MAC, or a group one: to a sibling, the wire, or a flood.
        assert_eq!(decide(&frame(C, B, 60), 1, &t), spoofed(1));
        assert_eq!(decide(&frame(OUTSIDE, B, 60), 1, &t), spoofed(1));
        assert_eq!(decide(&frame(MacAddr::BROADCAST, B, 60), 1, &t), spoofed(1));
        assert_eq!(decide(&frame(C, MacAddr::BROADCAST, 60), 1, &t), spoofed(1));
        // From anyone: a group source from the wire reaches no endpoint.
        assert_eq!(decide(&frame(A, MacAddr([0x03, 0, 0, 0, 0, 1]), 60), PARENT, &t), spoofed(PARENT));
        assert_eq!(decide(&frame(MacAddr::BROADCAST, MacAddr::BROADCAST, 60), PARENT, &t), spoofed(PARENT));
        // spoof_check=off: kernel macvlan.
        t.remove_endpoint(1);
        t.add_endpoint(1, PortInfo { guard: Guard::OFF, ..ep(A, 3000) }).unwrap();
        assert_eq!(decide(&frame(C, B, 60), 1, &t), Action::Forward(3));
        // The IP guard reads the endpoint's addresses from the table.
        t.remove_endpoint(1);
        t.add_endpoint(1, PortInfo { guard: Guard { mac: true, ip: true }, ..ep(A, 3000) }).unwrap();
        let mut udp = frame(C, A, 60);
        udp[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        udp[14] = 0x45;
        udp[26..30].copy_from_slice(&[198, 18, 0, 10]);
        assert_eq!(decide(&udp, 1, &t), Action::Drop { reason: DropReason::SpoofedIp, port: 1 });
        t.set_addresses(1, Arc::from(["198.18.0.10".parse::<IpAddr>().unwrap()])).unwrap();
        assert_eq!(decide(&udp, 1, &t), Action::Forward(3));
        assert_eq!(t.addresses(1).len(), 1);
        t.remove_endpoint(1);
        assert!(t.addresses(1).is_empty(), "addresses leave with their endpoint");
    }

    #[test]
    fn table_updates_are_validated() {
        let mut t = table();
        assert_eq!(t.add_endpoint(2, ep(OUTSIDE, 1500)), Err(TableError::BadPort(2)));
        assert_eq!(t.add_endpoint(PARENT, ep(OUTSIDE, 1500)), Err(TableError::BadPort(PARENT)));
        assert_eq!(t.add_endpoint(7, ep(A, 1500)), Err(TableError::MacInUse(A, 0, 1)));
        assert_eq!(t.remove_endpoint(1).map(|p| p.mac), Some(A));
        assert_eq!(t.lookup(0, A), None);
        assert_eq!(t.endpoints(), &[2, 3]);
        t.add_endpoint(7, ep(A, 1500)).unwrap();
        assert_eq!(t.endpoints(), &[2, 3, 7]);
        assert_eq!(decide(&frame(A, OUTSIDE, 60), PARENT, &t), Action::Forward(7));
    }
}
