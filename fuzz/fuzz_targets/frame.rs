//! A frame through the datapath's pure rules and the worker's plane: `Ethernet::parse`, `decide`,
//! `Table::flood_targets`, `Table::edit`, then the same frame through `Replay` (the worker's
//! `Plane::handle` over real UMEM areas), whose sent bytes must be the frame with exactly the
//! edit `Table::edit` names for each destination.
//!
//! Input: a few bytes describe the table (parent MTU, up to six endpoints of any mode, VLAN, MTU,
//! up/down, source lists), one picks the ingress port, the rest is the frame. Endpoint MACs come
//! from a palette of eight, so that frames naming them (the seed corpus does) reach every rule.

#![no_main]

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use xmacvlan_datapath::frame::{tag_of, Ethernet, MacAddr, ParseError, ETHERTYPE_VLAN};
use xmacvlan_datapath::fwd::{decide, Action, DropReason, Edit, Mode, PortId, PortInfo, Table, PARENT};
use xmacvlan_datapath::guard::{self, Guard};
use xmacvlan_datapath::ipvlan::{Ipvlan, IpvlanFlag, IpvlanMode};
use xmacvlan_datapath::replay::{Replay, MAX_FRAME};

/// 02:00:00:00:00:01 ..= 02:00:00:00:00:07 and one multicast address (never an endpoint's in the
/// daemon, but the table does not refuse it).
const PALETTE: [[u8; 6]; 8] = [
    [0x02, 0, 0, 0, 0, 1],
    [0x02, 0, 0, 0, 0, 2],
    [0x02, 0, 0, 0, 0, 3],
    [0x02, 0, 0, 0, 0, 4],
    [0x02, 0, 0, 0, 0, 5],
    [0x02, 0, 0, 0, 0, 6],
    [0x02, 0, 0, 0, 0, 7],
    [0x01, 0, 0x5e, 0, 0, 1],
];

/// Reads the table's description; missing bytes read as 0.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let flags = b.byte();
    let parent_mtu = [1500, 9000, 68, 3000][usize::from(flags >> 4) & 3];
    let mut table =
        if flags & 1 != 0 { Table::internal(MacAddr(PALETTE[0])) } else { Table::new(MacAddr(PALETTE[0]), parent_mtu) };
    let frames = 1 + u32::from(flags >> 1 & 7);
    // Bits 6-7: an ipvlan port (L2, L3, L3S) on VLAN 0, its flag from the next byte; its endpoints
    // have the parent's MAC and an address each from a palette of four.
    let ipvlan = match flags >> 6 {
        0 => None,
        m => Some(Ipvlan {
            mode: IpvlanMode::ALL[usize::from(m) - 1],
            flag: IpvlanFlag::ALL[usize::from(b.byte()) % IpvlanFlag::ALL.len()],
        }),
    };
    let mut id: PortId = 0;
    for _ in 0..b.byte() % 7 {
        let (a, c) = (b.byte(), b.byte());
        id += 1 + PortId::from(c >> 6);
        let info = PortInfo {
            mac: MacAddr(PALETTE[usize::from(c & 7)]),
            mtu: [1500, 1500, 68, 9000][usize::from(c >> 3) & 3],
            vlan: [0, 0, 10, 20][usize::from(a >> 6)],
            up: a & 8 == 0,
            mode: Mode::ALL[usize::from(a & 7) % Mode::ALL.len()],
            nodst: a & 16 != 0,
            keep_pcp: a & 32 != 0,
            guard: if c & 32 == 0 { Guard::DEFAULT } else { Guard::OFF },
            ipvlan: None,
        };
        let info = match ipvlan {
            Some(ipv) => PortInfo { mac: MacAddr(PALETTE[0]), vlan: 0, mode: Mode::Bridge, ipvlan: Some(ipv), ..info },
            None => info,
        };
        let checked = table.check_endpoint(id, &info);
        let added = table.add_endpoint(id, info);
        assert_eq!(checked, added, "check_endpoint and add_endpoint disagree");
        if added.is_ok() && ipvlan.is_some() {
            let addrs: Arc<[IpAddr]> = Arc::from([IpAddr::from([198, 18, 0, 10 + (a & 3)])]);
            let checked = table.check_addresses(id, 0, &addrs);
            let set = table.set_addresses(id, addrs.clone());
            assert_eq!(checked, set, "check_addresses and set_addresses disagree");
            if set.is_ok() {
                assert_eq!(table.ip_owner(0, addrs[0]), Some(id));
            } else {
                table.remove_endpoint(id);
            }
        }
        if added.is_ok() && info.mode == Mode::Source {
            let bits = b.byte();
            let mut macs: Vec<MacAddr> = (0..8).filter(|i| bits & 1 << i != 0).map(|i| MacAddr(PALETTE[i])).collect();
            table.set_sources(id, &macs).expect("a source-mode endpoint takes a list");
            macs.sort();
            assert_eq!(table.sources_of_port(id), macs, "the list reads back, sorted");
        }
    }
    let endpoints = table.endpoints().to_vec();
    let pick = b.byte();
    if pick & 0x80 != 0 && !endpoints.is_empty() {
        // An endpoint leaves: nothing of it may stay behind.
        let gone = endpoints[usize::from(pick) % endpoints.len()];
        let addrs = table.addresses(gone).to_vec();
        let info = table.remove_endpoint(gone).expect("listed endpoints exist");
        assert_eq!(table.lookup(info.vlan, info.mac), None);
        for ip in addrs {
            assert_eq!(table.ip_owner(info.vlan, ip), None, "{ip} of a departed endpoint still finds it");
        }
        assert!(table.sources_of_port(gone).is_empty());
        assert!(!table.endpoints().contains(&gone));
    }
    let ingress = match (pick & 0x70) >> 4 {
        0 | 1 => PARENT,
        7 => 4095, // a port the table does not know (an endpoint that left meanwhile)
        _ if endpoints.is_empty() => PARENT,
        _ => endpoints[usize::from(pick & 0x0f) % endpoints.len()],
    };
    let frame = &b.0[..b.0.len().min(MAX_FRAME)];

    let parsed = Ethernet::parse(frame);
    check_parse(frame, parsed);
    check_guard(frame);
    let action = decide(frame, ingress, &table);
    let expected = check_decision(frame, parsed, ingress, &table, action);

    // The worker: the frame as the kernel hands it over, out as sent. The UMEM areas are mapped
    // once, not per input.
    thread_local!(static REPLAY: RefCell<Option<Replay>> = const { RefCell::new(None) });
    let sent = REPLAY.with_borrow_mut(|replay| {
        let replay = match replay {
            Some(r) => {
                r.reset(table, frames);
                r
            }
            None => replay.insert(Replay::new(table, frames).expect("mmap of a small UMEM area")),
        };
        replay.run(frame, ingress).unwrap_or_else(|e| panic!("{e}"))
    });
    let mut left = expected.clone();
    for s in &sent {
        let i = left
            .iter()
            .position(|&(p, _)| p == s.port)
            .unwrap_or_else(|| panic!("sent to {} unexpectedly; decided {action:?}, expected {expected:?}", s.port));
        let (port, edit) = left.swap_remove(i);
        assert_eq!(s.bytes, edited(frame, edit), "port {port} got the frame with other than {edit:?}");
    }
    // Four frames per UMEM are enough for any flood (three variants at most, and the wire's copy);
    // with fewer, copies may be short (`no_buffer`), never wrong.
    if frames >= 4 {
        assert!(left.is_empty(), "not sent: {left:?}; decided {action:?}");
    }
});

/// `parse` fails exactly on runts and truncated tags; after it succeeded no accessor panics and
/// they agree with the bytes and with `tag_of`.
fn check_parse(frame: &[u8], parsed: Result<Ethernet<'_>, ParseError>) {
    let ethertype = (frame.len() >= 14).then(|| u16::from_be_bytes([frame[12], frame[13]]));
    match parsed {
        Err(ParseError::Runt) => assert!(frame.len() < 14),
        Err(ParseError::TruncatedVlan) => assert!(ethertype == Some(ETHERTYPE_VLAN) && frame.len() < 18),
        Ok(eth) => {
            assert_eq!(eth.len(), frame.len());
            assert_eq!(eth.dst().0, frame[..6]);
            assert_eq!(eth.src().0, frame[6..12]);
            assert_eq!(Some(eth.ethertype()), ethertype);
            assert_eq!(eth.is_tagged(), ethertype == Some(ETHERTYPE_VLAN));
            assert_eq!(eth.header_len(), if eth.is_tagged() { 18 } else { 14 });
            assert!(eth.vlan() <= 0x0fff);
            assert_eq!(eth.vlan(), eth.tci() & 0x0fff);
            assert_eq!(tag_of(frame), eth.is_tagged().then_some(eth.tci()));
        }
    }
}

/// The decision's invariants; returns the deliveries it implies (port and tag edit), those a
/// worker must make when it has frames enough.
fn check_decision(
    frame: &[u8],
    parsed: Result<Ethernet<'_>, ParseError>,
    ingress: PortId,
    table: &Table,
    action: Action,
) -> Vec<(PortId, Edit)> {
    let known = |p: PortId| p == PARENT || table.port(p).is_some();
    let tci = tag_of(frame);
    let eth = match parsed {
        Err(e) => {
            let reason = if e == ParseError::Runt { DropReason::Runt } else { DropReason::BadVlan };
            assert_eq!(action, Action::Drop { reason, port: ingress });
            return Vec::new();
        }
        Ok(eth) => eth,
    };
    let out: Vec<PortId> = match action {
        Action::Drop { reason, port } => {
            assert!(port == ingress || known(port), "drop charged to unknown port {port}");
            assert!(!matches!(reason, DropReason::Runt | DropReason::BadVlan), "{reason:?} of a parsed frame");
            Vec::new()
        }
        Action::Forward(p) => {
            assert!(known(p), "forward to unknown port {p}");
            assert_eq!(table.check_delivery(p, eth.len(), eth.header_len()), Ok(()), "forward to {p}");
            vec![p]
        }
        Action::Flood(f) => {
            assert_eq!(usize::from(f.hlen), eth.header_len());
            // ipvlan's L3 modes never flood (no broadcast or multicast between endpoints).
            assert!(table.ipvlan(eth.vlan()).is_none_or(|i| !i.mode.routed()), "an L3 ipvlan port flooded");
            let targets: Vec<PortId> = table.flood_targets(&f).collect();
            for &t in &targets {
                assert!(known(t), "flood to unknown port {t}");
            }
            if ingress != PARENT {
                // macvlan_queue_xmit: never back to the sender, each sibling once.
                assert!(!targets.contains(&ingress), "flood back to its sender {ingress}: {targets:?}");
                let mut sorted = targets.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), targets.len(), "a target twice: {targets:?}");
            }
            targets.into_iter().filter(|&t| table.check_delivery(t, eth.len(), eth.header_len()).is_ok()).collect()
        }
    };
    if ingress == PARENT {
        assert!(!out.contains(&PARENT), "from the wire back to the wire: {action:?}");
    }
    if !table.has_wire() {
        assert!(!out.contains(&PARENT), "an internal network has no wire: {action:?}");
    }
    out.into_iter()
        .map(|t| {
            let e = table.edit(tci, ingress, t);
            match e {
                Edit::None => {}
                Edit::Pop | Edit::PriorityTag => assert!(ingress == PARENT && t != PARENT && tci.is_some()),
                Edit::Push(v) => assert!(ingress != PARENT && t == PARENT && v != 0 && v <= 0x0fff),
                Edit::SetVid(v) => {
                    assert!(ingress != PARENT && t == PARENT && v != 0 && tci.is_some_and(|c| c & 0x0fff == 0))
                }
            }
            (t, e)
        })
        .collect()
}

/// The frame as it must leave with `edit`, built from the 802.1Q layout (not with frame.rs).
fn edited(frame: &[u8], edit: Edit) -> Vec<u8> {
    let mut f = frame.to_vec();
    match edit {
        Edit::None => {}
        Edit::Pop => {
            f.drain(12..16);
        }
        Edit::PriorityTag => {
            f[14] &= 0xf0;
            f[15] = 0;
        }
        Edit::SetVid(v) => {
            f[14] = (f[14] & 0xf0) | (v >> 8) as u8;
            f[15] = v as u8;
        }
        Edit::Push(v) => {
            let [hi, lo] = v.to_be_bytes();
            f.splice(12..12, [0x81, 0x00, hi, lo]);
        }
    }
    assert_eq!(
        f.len() as isize - frame.len() as isize,
        match edit {
            Edit::Pop => -4,
            Edit::Push(_) => 4,
            _ => 0,
        }
    );
    f
}

/// The source guard on any frame (as sent by the endpoint with PALETTE[1] and two addresses): it
/// never panics, a stricter guard never lets through what a looser one stops, and with both checks
/// off only a group source is refused.
fn check_guard(frame: &[u8]) {
    let (mac, addrs) = (MacAddr(PALETTE[1]), ["198.18.0.10".parse().unwrap(), "2001:2::a".parse().unwrap()]);
    let off = guard::check(frame, Guard::OFF, mac, &addrs);
    let mac_only = guard::check(frame, Guard::DEFAULT, mac, &addrs);
    let ip_only = guard::check(frame, Guard { mac: false, ip: true }, mac, &addrs);
    let both = guard::check(frame, Guard { mac: true, ip: true }, mac, &addrs);
    let group = frame.get(6..12).is_some_and(|s| s[0] & 1 != 0);
    assert_eq!(off.is_err(), group, "with the guard off only a group source is refused: {off:?}");
    if both.is_ok() {
        assert!(mac_only.is_ok() && ip_only.is_ok() && off.is_ok(), "the full guard passed what a part of it stops");
    }
    if mac_only.is_err() || ip_only.is_err() {
        assert!(both.is_err(), "the full guard passed what a part of it stops");
    }
    for r in [off, mac_only, ip_only, both].into_iter().filter_map(Result::err) {
        assert!(matches!(r, DropReason::SpoofedSrc | DropReason::SpoofedIp), "{r:?}");
    }
}
