//! ipvlan: many endpoints behind the parent's one MAC, told apart by IP address.
//!
//! The rules of drivers/net/ipvlan/ipvlan_core.c, for a parent (or a VLAN of it) whose endpoints
//! all use the parent's MAC. An address "looked up" is [`l3_addr`]: ARP's target (sender) address,
//! IPv4/IPv6 destination (source), or the target of a neighbour solicitation sent from `::` (DAD).
//! - from the wire, L2 (ipvlan_handle_mode_l2): a group frame reaches every endpoint (the host
//!   stack got it already) unless it is one of ours coming back — the parent's MAC as its source
//!   and a looked-up source address of an endpoint (ipvlan_external_frame); unicast goes to the
//!   endpoint owning the destination address, else to the host. (Unicast for another MAC the
//!   kernel hands the endpoint marked PACKET_OTHERHOST, which its IP layer drops: here the host
//!   has it.)
//! - from the wire, L3 (ipvlan_handle_mode_l3): any frame whose destination address is an
//!   endpoint's goes to it (an ARP request for it too — the L3 endpoint, NOARP, ignores it); the
//!   rest is the host's. L3S hands everything to the host's IP layer first: only IP addressed to
//!   the parent's MAC reaches an endpoint; ARP and ND are the host's.
//! - from an endpoint, L2 (ipvlan_xmit_mode_l2): a unicast frame to the parent's own MAC (its
//!   destination MAC equals its source) goes to the endpoint owning its destination address —
//!   dropped instead with `private` — or, when nobody owns it, to the host; a group frame goes to
//!   every other endpoint of the port (whatever the flag) and out of the parent; anything else
//!   out of the parent. `vepa` sends the unicast out of the parent too (the switch hairpins it).
//! - from an endpoint, L3/L3S (ipvlan_xmit_mode_l3): a frame whose destination address is an
//!   endpoint's goes to it (dropped with `private`; with `vepa` not looked up); the rest is routed
//!   by the host (ipvlan_process_outbound): group frames and non-IP are dropped, IP leaves by the
//!   host's routes and neighbour table.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::frame::{Ethernet, MacAddr};
use crate::fwd::{DropReason, PortId, Table, PARENT};

/// The ipvlan modes (`ipvlan_mode`), as in ip-link(8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpvlanMode {
    /// Endpoints demuxed by IP, but L2 among them and with the wire (ARP, broadcast, multicast).
    #[default]
    L2,
    /// Routed: no broadcast or multicast between endpoints; the host's routes carry their frames.
    L3,
    /// L3 where the host's IP layer sees the endpoints' frames first.
    L3s,
}

/// The ipvlan flags (`ipvlan_flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IpvlanFlag {
    /// Endpoints talk to each other locally.
    #[default]
    Bridge,
    /// Endpoints do not talk to each other locally.
    Private,
    /// Endpoints' unicast to each other goes out of the parent (to a hairpinning switch).
    Vepa,
}

/// One ipvlan port: a parent, or a VLAN of it, and how its endpoints are switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ipvlan {
    pub mode: IpvlanMode,
    pub flag: IpvlanFlag,
}

impl IpvlanMode {
    pub const ALL: [IpvlanMode; 3] = [IpvlanMode::L2, IpvlanMode::L3, IpvlanMode::L3s];

    pub fn name(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }

    /// L3 and L3S: routed, no L2 among endpoints; their container interfaces are NOARP.
    pub fn routed(self) -> bool {
        self != IpvlanMode::L2
    }
}

impl IpvlanFlag {
    pub const ALL: [IpvlanFlag; 3] = [IpvlanFlag::Bridge, IpvlanFlag::Private, IpvlanFlag::Vepa];

    pub fn name(self) -> &'static str {
        match self {
            IpvlanFlag::Bridge => "bridge",
            IpvlanFlag::Private => "private",
            IpvlanFlag::Vepa => "vepa",
        }
    }
}

impl fmt::Display for IpvlanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for IpvlanFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IpvlanMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpvlanMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("requested ipvlan mode '{s}' is not valid (l2, l3, l3s)"))
    }
}

impl FromStr for IpvlanFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpvlanFlag::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("requested ipvlan flag '{s}' is not valid (bridge, private, vepa)"))
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOUR_SOLICITATION: u8 = 135;

/// What kind of L3 header a frame carries (ipvlan_get_L3_hdr's types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Arp,
    V4,
    V6,
    /// ICMPv6 from `::`: only a neighbour solicitation has an address to look up (its target).
    Icmpv6,
}

/// The address ipvlan demuxes `frame` by (ipvlan_get_L3_hdr + ipvlan_addr_lookup): with
/// `dest`, ARP's target protocol address, the IPv4/IPv6 destination, or a DAD neighbour
/// solicitation's target; without, the sender's. None for other EtherTypes and malformed headers;
/// the kind alone (address None) for ICMPv6 from `::` that is not a solicitation.
pub fn l3_addr(frame: &[u8], eth: &Ethernet, dest: bool) -> Option<(L3, Option<IpAddr>)> {
    let l3 = frame.get(eth.header_len()..)?;
    match eth.inner_ethertype() {
        ETHERTYPE_ARP => {
            // The kernel reads the parent's address length (6) past the fixed header.
            let at = if dest { 8 + 6 + 4 + 6 } else { 8 + 6 };
            Some((L3::Arp, Some(v4(l3.get(at..at + 4)?))))
        }
        ETHERTYPE_IPV4 => {
            let h = l3.get(..20)?;
            let ihl = usize::from(h[0] & 0x0f);
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] >> 4 != 4 || ihl < 5 || l3.len() < total || total < ihl * 4 {
                return None;
            }
            let at = if dest { 16 } else { 12 };
            Some((L3::V4, Some(v4(&h[at..at + 4]))))
        }
        ETHERTYPE_IPV6 => {
            let h = l3.get(..40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            if h[8..24] == [0; 16] && h[6] == IPPROTO_ICMPV6 {
                let icmp = l3.get(40..44)?;
                if icmp[0] != ND_NEIGHBOUR_SOLICITATION {
                    return Some((L3::Icmpv6, None));
                }
                return Some((L3::Icmpv6, Some(v6(l3.get(48..64)?))));
            }
            let at = if dest { 24 } else { 8 };
            Some((L3::V6, Some(v6(&h[at..at + 16]))))
        }
        _ => None,
    }
}

fn v4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn v6(b: &[u8]) -> IpAddr {
    let a: [u8; 16] = b.try_into().expect("16 bytes");
    IpAddr::V6(Ipv6Addr::from(a))
}

/// Where an ipvlan port sends one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// To this endpoint.
    Endpoint(PortId),
    /// To every endpoint of the port but `exclude` (PARENT: none), and out of the parent with
    /// `wire`.
    Flood {
        exclude: PortId,
        wire: bool,
    },
    /// Out of the parent as it is (its tag pushed for a VLAN's endpoint).
    Wire,
    /// To the host stack, as if received on the parent.
    Host,
    /// Routed by the host: out by its routes, to a next hop from its neighbour table.
    Route,
    Drop(DropReason),
}

/// The ipvlan rules (see the module doc) for a frame `eth` received on `ingress`, on the port of
/// VLAN `vlan` with settings `ipv`.
pub fn decide(frame: &[u8], eth: &Ethernet, ingress: PortId, vlan: u16, ipv: Ipvlan, table: &Table) -> Verdict {
    let owner = |dest: bool| match l3_addr(frame, eth, dest) {
        Some((_, Some(ip))) => table.ip_owner(vlan, ip),
        _ => None,
    };
    let parent_mac = table.port(PARENT).map_or(MacAddr::default(), |p| p.mac);
    let dst = eth.dst();
    if ingress == PARENT {
        return match ipv.mode {
            IpvlanMode::L2 if dst.is_multicast() => {
                let ours = eth.src() == parent_mac && owner(false).is_some();
                if ours {
                    Verdict::Drop(DropReason::Reflected)
                } else {
                    Verdict::Flood { exclude: PARENT, wire: false }
                }
            }
            // The kernel looks unicast for another MAC up too, and the endpoint's stack drops it
            // (PACKET_OTHERHOST): it is the host's here.
            _ if !dst.is_multicast() && dst != parent_mac => Verdict::Host,
            IpvlanMode::L2 | IpvlanMode::L3 => owner(true).map_or(Verdict::Host, Verdict::Endpoint),
            IpvlanMode::L3s => match l3_addr(frame, eth, true) {
                Some((L3::V4 | L3::V6, Some(ip))) if dst == parent_mac => {
                    table.ip_owner(vlan, ip).map_or(Verdict::Host, Verdict::Endpoint)
                }
                _ => Verdict::Host,
            },
        };
    }
    let local = |port: PortId| {
        if ipv.flag == IpvlanFlag::Private {
            Verdict::Drop(DropReason::Isolated)
        } else {
            Verdict::Endpoint(port)
        }
    };
    match ipv.mode {
        IpvlanMode::L2 => {
            if ipv.flag != IpvlanFlag::Vepa && dst == eth.src() {
                owner(true).map_or(Verdict::Host, local)
            } else if dst.is_multicast() {
                Verdict::Flood { exclude: ingress, wire: true }
            } else {
                Verdict::Wire
            }
        }
        IpvlanMode::L3 | IpvlanMode::L3s => {
            if ipv.flag != IpvlanFlag::Vepa {
                if let Some(port) = owner(true) {
                    return local(port);
                }
            }
            let ip = matches!(eth.inner_ethertype(), ETHERTYPE_IPV4 | ETHERTYPE_IPV6);
            if dst.is_multicast() || !ip {
                Verdict::Drop(DropReason::NotRouted)
            } else {
                Verdict::Route
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::PortInfo;
    use std::sync::Arc;

    const PARENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const WIRE: MacAddr = MacAddr([0x02, 0x99, 0, 0, 0, 0x01]);
    const A: [u8; 4] = [198, 18, 0, 10];
    const B: [u8; 4] = [198, 18, 0, 11];
    const HOST: [u8; 4] = [198, 18, 0, 1];
    const OUT: [u8; 4] = [198, 19, 0, 1];

    fn table(ipv: Ipvlan) -> Table {
        let mut t = Table::new(PARENT_MAC, 1500);
        for (id, ip) in [(1, A), (2, B)] {
            let info = PortInfo { ipvlan: Some(ipv), ..PortInfo::endpoint(PARENT_MAC, 1500) };
            t.add_endpoint(id, info).unwrap();
            t.set_addresses(id, Arc::from([IpAddr::from(ip)])).unwrap();
        }
        t
    }

    fn eth(dst: MacAddr, src: MacAddr, ethertype: u16) -> Vec<u8> {
        let mut f = dst.0.to_vec();
        f.extend(src.0);
        f.extend(ethertype.to_be_bytes());
        f
    }

    fn ipv4(dst: MacAddr, src: MacAddr, from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
        let mut f = eth(dst, src, ETHERTYPE_IPV4);
        f.extend([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend(from);
        f.extend(to);
        f.extend([0; 8]);
        f
    }

    fn arp(dst: MacAddr, src: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = eth(dst, src, ETHERTYPE_ARP);
        f.extend([0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend(src.0);
        f.extend(spa);
        f.extend([0; 6]);
        f.extend(tpa);
        f
    }

    fn dad(target: Ipv6Addr) -> Vec<u8> {
        let mut f = eth(MacAddr([0x33, 0x33, 0xff, 0, 0, 0x0a]), WIRE, ETHERTYPE_IPV6);
        f.extend([0x60, 0, 0, 0, 0, 24, IPPROTO_ICMPV6, 255]);
        f.extend([0; 16]);
        f.extend(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0a).octets());
        f.extend([ND_NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
        f.extend(target.octets());
        f
    }

    fn run(t: &Table, frame: &[u8], ingress: PortId, ipv: Ipvlan) -> Verdict {
        decide(frame, &Ethernet::parse(frame).unwrap(), ingress, 0, ipv, t)
    }

    const L2: Ipvlan = Ipvlan { mode: IpvlanMode::L2, flag: IpvlanFlag::Bridge };
    const L3: Ipvlan = Ipvlan { mode: IpvlanMode::L3, flag: IpvlanFlag::Bridge };

    #[test]
    fn l3_addr_reads_what_the_kernel_looks_up() {
        let f = arp(MacAddr::BROADCAST, WIRE, HOST, A);
        let e = Ethernet::parse(&f).unwrap();
        assert_eq!(l3_addr(&f, &e, true), Some((super::L3::Arp, Some(IpAddr::from(A)))));
        assert_eq!(l3_addr(&f, &e, false), Some((super::L3::Arp, Some(IpAddr::from(HOST)))));
        let f = ipv4(PARENT_MAC, WIRE, HOST, B);
        let e = Ethernet::parse(&f).unwrap();
        assert_eq!(l3_addr(&f, &e, true), Some((super::L3::V4, Some(IpAddr::from(B)))));
        // A total length beyond the frame, or an IHL below 5, is no IPv4 header (the kernel's checks).
        let mut bad = f.clone();
        bad[17] = 200;
        assert_eq!(l3_addr(&bad, &Ethernet::parse(&bad).unwrap(), true), None);
        bad = f.clone();
        bad[14] = 0x44;
        assert_eq!(l3_addr(&bad, &Ethernet::parse(&bad).unwrap(), true), None);
        let target = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
        let f = dad(target);
        let e = Ethernet::parse(&f).unwrap();
        assert_eq!(l3_addr(&f, &e, true), Some((super::L3::Icmpv6, Some(IpAddr::V6(target)))));
        assert_eq!(l3_addr(&f[..f.len() - 1], &e, true), None);
    }

    #[test]
    fn l2_wire_unicast_by_destination_address_else_host() {
        let t = table(L2);
        assert_eq!(run(&t, &ipv4(PARENT_MAC, WIRE, OUT, A), PARENT, L2), Verdict::Endpoint(1));
        assert_eq!(run(&t, &ipv4(PARENT_MAC, WIRE, OUT, HOST), PARENT, L2), Verdict::Host);
        assert_eq!(run(&t, &arp(PARENT_MAC, WIRE, HOST, B), PARENT, L2), Verdict::Endpoint(2));
        assert_eq!(run(&t, &ipv4(WIRE, WIRE, OUT, A), PARENT, L2), Verdict::Host);
        assert_eq!(run(&t, &ipv4(WIRE, WIRE, OUT, A), PARENT, L3), Verdict::Host);
    }

    #[test]
    fn l2_wire_group_frames_reach_every_endpoint_unless_they_are_ours_back() {
        let t = table(L2);
        let bcast = arp(MacAddr::BROADCAST, WIRE, HOST, A);
        assert_eq!(run(&t, &bcast, PARENT, L2), Verdict::Flood { exclude: PARENT, wire: false });
        let back = arp(MacAddr::BROADCAST, PARENT_MAC, A, HOST);
        assert_eq!(run(&t, &back, PARENT, L2), Verdict::Drop(DropReason::Reflected));
        // The parent's MAC with the host's own address is the host's: external.
        let host = arp(MacAddr::BROADCAST, PARENT_MAC, HOST, A);
        assert_eq!(run(&t, &host, PARENT, L2), Verdict::Flood { exclude: PARENT, wire: false });
    }

    #[test]
    fn l3_wire_frames_go_by_address_even_broadcast_arp() {
        let t = table(L3);
        assert_eq!(run(&t, &arp(MacAddr::BROADCAST, WIRE, HOST, A), PARENT, L3), Verdict::Endpoint(1));
        assert_eq!(run(&t, &arp(MacAddr::BROADCAST, WIRE, A, HOST), PARENT, L3), Verdict::Host);
        let target = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
        let mut t6 = table(L3);
        t6.set_addresses(1, Arc::from([IpAddr::from(A), IpAddr::V6(target)])).unwrap();
        assert_eq!(run(&t6, &dad(target), PARENT, L3), Verdict::Endpoint(1));
        // L3S: the host's IP layer first — ARP is the host's, IP to the parent's MAC the endpoint's.
        let l3s = Ipvlan { mode: IpvlanMode::L3s, ..L3 };
        assert_eq!(run(&t, &arp(MacAddr::BROADCAST, WIRE, HOST, A), PARENT, l3s), Verdict::Host);
        assert_eq!(run(&t, &ipv4(PARENT_MAC, WIRE, OUT, A), PARENT, l3s), Verdict::Endpoint(1));
        assert_eq!(run(&t, &ipv4(WIRE, WIRE, OUT, A), PARENT, l3s), Verdict::Host);
    }

    #[test]
    fn l2_endpoint_frames_by_flag() {
        let t = table(L2);
        let to_b = ipv4(PARENT_MAC, PARENT_MAC, A, B);
        assert_eq!(run(&t, &to_b, 1, L2), Verdict::Endpoint(2));
        assert_eq!(run(&t, &ipv4(PARENT_MAC, PARENT_MAC, A, HOST), 1, L2), Verdict::Host);
        assert_eq!(run(&t, &ipv4(WIRE, PARENT_MAC, A, OUT), 1, L2), Verdict::Wire);
        let bcast = arp(MacAddr::BROADCAST, PARENT_MAC, A, B);
        for flag in IpvlanFlag::ALL {
            let ipv = Ipvlan { flag, ..L2 };
            assert_eq!(run(&t, &bcast, 1, ipv), Verdict::Flood { exclude: 1, wire: true }, "{flag}");
        }
        let private = Ipvlan { flag: IpvlanFlag::Private, ..L2 };
        assert_eq!(run(&t, &to_b, 1, private), Verdict::Drop(DropReason::Isolated));
        assert_eq!(run(&t, &ipv4(PARENT_MAC, PARENT_MAC, A, HOST), 1, private), Verdict::Host);
        let vepa = Ipvlan { flag: IpvlanFlag::Vepa, ..L2 };
        assert_eq!(run(&t, &to_b, 1, vepa), Verdict::Wire);
    }

    #[test]
    fn l3_endpoint_frames_are_local_or_routed() {
        let t = table(L3);
        let to_b = ipv4(PARENT_MAC, PARENT_MAC, A, B);
        assert_eq!(run(&t, &to_b, 1, L3), Verdict::Endpoint(2));
        assert_eq!(run(&t, &ipv4(PARENT_MAC, PARENT_MAC, A, OUT), 1, L3), Verdict::Route);
        let bcast = ipv4(MacAddr::BROADCAST, PARENT_MAC, A, [198, 18, 255, 255]);
        assert_eq!(run(&t, &bcast, 1, L3), Verdict::Drop(DropReason::NotRouted));
        assert_eq!(run(&t, &arp(MacAddr::BROADCAST, PARENT_MAC, A, OUT), 1, L3), Verdict::Drop(DropReason::NotRouted));
        let private = Ipvlan { flag: IpvlanFlag::Private, ..L3 };
        assert_eq!(run(&t, &to_b, 1, private), Verdict::Drop(DropReason::Isolated));
        let vepa = Ipvlan { flag: IpvlanFlag::Vepa, ..L3 };
        assert_eq!(run(&t, &to_b, 1, vepa), Verdict::Route);
    }

    #[test]
    fn mode_and_flag_names_round_trip_and_errors_name_the_value() {
        for m in IpvlanMode::ALL {
            assert_eq!(m.name().parse::<IpvlanMode>(), Ok(m));
        }
        for f in IpvlanFlag::ALL {
            assert_eq!(f.name().parse::<IpvlanFlag>(), Ok(f));
        }
        assert!("l4".parse::<IpvlanMode>().unwrap_err().contains("'l4'"));
        assert!("passthru".parse::<IpvlanFlag>().unwrap_err().contains("'passthru'"));
    }
}
