//! The forwarding decision: a pure function of (frame, ingress port, table) → action.
//!
//! It encodes kernel macvlan bridge mode (drivers/net/macvlan.c, shared/REFERENCE.md §1):
//! - from the wire (the parent): known unicast → that endpoint; broadcast/multicast → every endpoint
//!   (the host stack got its copy before us: the XDP program passed the frame); a broadcast that
//!   carries one of our endpoints' MACs as source is a reflection of what that endpoint sent: the
//!   bridge ports already saw it on the way out, so it is not flooded again.
//! - from an endpoint: unicast to a sibling → that sibling, never the wire; anything else (the
//!   parent's own MAC included) → out of the parent; broadcast/multicast → every other endpoint and
//!   the wire, never back to the sender.
//! - a destination that is down gets nothing; frames longer than the destination MTU are dropped.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::frame::{Ethernet, MacAddr, ParseError};

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
    /// The destination's TX ring was full.
    TxRingFull,
    /// No free UMEM frame for a flood copy.
    NoBuffer,
}

impl DropReason {
    pub const COUNT: usize = 8;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::BadVlan,
        DropReason::Oversize,
        DropReason::DstDown,
        DropReason::NoEndpoint,
        DropReason::Reflected,
        DropReason::TxRingFull,
        DropReason::NoBuffer,
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    Parent,
    Endpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub kind: PortKind,
    pub mac: MacAddr,
    /// L3 MTU; frames up to `mtu` + the L2 header are delivered.
    pub mtu: u32,
    pub vlan: u16,
    /// Operational state of the far side (the container interface for endpoints).
    pub up: bool,
}

/// What to do with one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Count against `port` and recycle the frame.
    Drop { reason: DropReason, port: PortId },
    /// Hand the descriptor to `port`'s TX ring (no copy).
    Forward(PortId),
    /// Deliver to every target of [`Table::flood_targets`]; `hlen` is the L2 header length (for the
    /// per-target MTU check).
    Flood { vlan: u16, wire: bool, hlen: usize },
}

/// Hashes a (VLAN, MAC) key packed into a u64; MACs are already well spread in their low bytes.
#[derive(Default)]
pub struct MacHasher(u64);

impl Hasher for MacHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        let h = (x ^ (x >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

#[inline]
fn key(vlan: u16, mac: MacAddr) -> u64 {
    (u64::from(vlan) << 48) | mac.to_u64()
}

/// The forwarding table of one domain. Each worker owns a copy; the control plane sends updates.
#[derive(Debug, Clone)]
pub struct Table {
    macs: HashMap<u64, PortId, BuildHasherDefault<MacHasher>>,
    ports: Vec<Option<PortInfo>>,
    /// Endpoints in port order, for floods.
    endpoints: Vec<PortId>,
    /// False for an internal network: no wire behind the parent port, so unknown unicast from an
    /// endpoint is dropped and floods stay among the endpoints.
    wire: bool,
}

/// The table refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("port id {0} is out of range or already in use")]
    BadPort(PortId),
    #[error("MAC {0} on VLAN {1} is already used by port {2}")]
    MacInUse(MacAddr, u16, PortId),
}

impl Table {
    pub fn new(parent_mac: MacAddr, parent_mtu: u32) -> Self {
        let parent = PortInfo { kind: PortKind::Parent, mac: parent_mac, mtu: parent_mtu, vlan: 0, up: true };
        Table { macs: HashMap::default(), ports: vec![Some(parent)], endpoints: Vec::new(), wire: true }
    }

    /// The table of an internal network (Docker's `--internal` / no parent): endpoints only.
    pub fn internal(anchor_mac: MacAddr) -> Self {
        Table { wire: false, ..Table::new(anchor_mac, 0) }
    }

    pub fn has_wire(&self) -> bool {
        self.wire
    }

    pub fn add_endpoint(&mut self, id: PortId, info: PortInfo) -> Result<(), TableError> {
        let idx = usize::from(id);
        if id == PARENT || self.ports.get(idx).is_some_and(Option::is_some) {
            return Err(TableError::BadPort(id));
        }
        if let Some(&other) = self.macs.get(&key(info.vlan, info.mac)) {
            return Err(TableError::MacInUse(info.mac, info.vlan, other));
        }
        if self.ports.len() <= idx {
            self.ports.resize(idx + 1, None);
        }
        self.ports[idx] = Some(PortInfo { kind: PortKind::Endpoint, ..info });
        self.macs.insert(key(info.vlan, info.mac), id);
        let pos = self.endpoints.partition_point(|&p| p < id);
        self.endpoints.insert(pos, id);
        Ok(())
    }

    pub fn remove_endpoint(&mut self, id: PortId) -> Option<PortInfo> {
        let info = self.ports.get_mut(usize::from(id))?.take()?;
        self.macs.remove(&key(info.vlan, info.mac));
        self.endpoints.retain(|&p| p != id);
        Some(info)
    }

    pub fn set_up(&mut self, id: PortId, up: bool) {
        if let Some(Some(p)) = self.ports.get_mut(usize::from(id)) {
            p.up = up;
        }
    }

    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    #[inline]
    pub fn lookup(&self, vlan: u16, mac: MacAddr) -> Option<PortId> {
        self.macs.get(&key(vlan, mac)).copied()
    }

    pub fn endpoints(&self) -> &[PortId] {
        &self.endpoints
    }

    /// Whether a frame of `len` bytes with an L2 header of `hlen` may go to `port`.
    #[inline]
    pub fn check_delivery(&self, port: PortId, len: usize, hlen: usize) -> Result<(), DropReason> {
        match self.port(port) {
            None => Err(DropReason::NoEndpoint),
            Some(p) if !p.up => Err(DropReason::DstDown),
            Some(p) if len > p.mtu as usize + hlen => Err(DropReason::Oversize),
            Some(_) => Ok(()),
        }
    }

    /// Every port a flood from `ingress` reaches: the endpoints of `vlan` except the sender, then
    /// the parent when `wire` is set. Delivery checks (down, MTU) are the caller's, per target.
    #[inline]
    pub fn flood_targets(&self, ingress: PortId, vlan: u16, wire: bool) -> impl Iterator<Item = PortId> + '_ {
        self.endpoints
            .iter()
            .copied()
            .filter(move |&p| p != ingress && self.port(p).is_some_and(|i| i.vlan == vlan))
            .chain((wire && self.wire).then_some(PARENT))
    }
}

/// The forwarding decision for one frame received on `ingress`.
#[inline]
pub fn decide(frame: &[u8], ingress: PortId, table: &Table) -> Action {
    let eth = match Ethernet::parse(frame) {
        Ok(eth) => eth,
        Err(ParseError::Runt) => return Action::Drop { reason: DropReason::Runt, port: ingress },
        Err(ParseError::TruncatedVlan) => return Action::Drop { reason: DropReason::BadVlan, port: ingress },
    };
    let vlan = eth.vlan();
    let dst = eth.dst();
    let deliver = |port: PortId| match table.check_delivery(port, eth.len(), eth.header_len()) {
        Ok(()) => Action::Forward(port),
        Err(reason) => Action::Drop { reason, port },
    };

    if ingress == PARENT {
        if dst.is_multicast() {
            // macvlan_handle_frame: a broadcast sourced by one of our bridge endpoints came back
            // from the wire; bridge ports already got it from the sender directly.
            if table.lookup(vlan, eth.src()).is_some() {
                return Action::Drop { reason: DropReason::Reflected, port: PARENT };
            }
            return Action::Flood { vlan, wire: false, hlen: eth.header_len() };
        }
        return match table.lookup(vlan, dst) {
            Some(port) if port != PARENT => deliver(port),
            _ => Action::Drop { reason: DropReason::NoEndpoint, port: PARENT },
        };
    }

    if dst.is_multicast() {
        return Action::Flood { vlan, wire: true, hlen: eth.header_len() };
    }
    match table.lookup(vlan, dst) {
        Some(port) => deliver(port),
        None if table.has_wire() => deliver(PARENT),
        None => Action::Drop { reason: DropReason::NoEndpoint, port: ingress },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0, 0, 0, 0x01]);
    const A: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x12, 0, 0x0c]);
    const OUTSIDE: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 0x01]);

    fn ep(mac: MacAddr, mtu: u32) -> PortInfo {
        PortInfo { kind: PortKind::Endpoint, mac, mtu, vlan: 0, up: true }
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

    fn targets(t: &Table, action: Action, ingress: PortId) -> Vec<PortId> {
        match action {
            Action::Flood { vlan, wire, .. } => t.flood_targets(ingress, vlan, wire).collect(),
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
        assert_eq!(targets(&t, decide(&frame(MacAddr::BROADCAST, A, 60), 1, &t), 1), vec![2]);
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
        assert_eq!(targets(&t, a, PARENT), vec![1, 2, 3]);
        let mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(targets(&t, decide(&frame(mcast, OUTSIDE, 60), PARENT, &t), PARENT), vec![1, 2, 3]);
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
        assert_eq!(targets(&t, a, 2), vec![1, 3, PARENT]);
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

    #[test]
    fn tagged_frames_match_only_their_vlan() {
        let t = table();
        let mut f = frame(A, OUTSIDE, 64);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        // Nobody serves VLAN 10: from an endpoint it leaves through the parent.
        assert_eq!(decide(&f, 3, &t), Action::Forward(PARENT));
        let mut b = frame(MacAddr::BROADCAST, OUTSIDE, 64);
        b.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(targets(&t, decide(&b, PARENT, &t), PARENT), Vec::<PortId>::new());
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
