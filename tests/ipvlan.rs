//! End-to-end: ipvlan networks (`-d ipvlan`), every mode and flag, IPv4 and IPv6. Three containers
//! on one ipvlan port of eth1; marked frames sent from the wire and from c1 are captured in every
//! container, on the wire and in the host stack, and who got each is checked against the rules of
//! drivers/net/ipvlan/ipvlan_core.c ([`expected`], README "ipvlan"). This kernel has no ipvlan
//! module, so unlike the macvlan suites there is no kernel run to compare with: the expectations
//! are written from the source. Then ping and TCP between the endpoints and with the wire host,
//! while the wire captures: the only source MAC it sees from our side is the parent's.
//!
//! Needs root; run serially (`make test` passes --test-threads=1): each test runs its own lab.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::frames::{arp, udp, udp6, v4, v6};
use support::*;

const SETTLE: Duration = Duration::from_millis(400);
const WIRE_IP6: &str = "2001:2::fe";
const HOST_IP6: &str = "2001:2::fd";
/// L3 ports' endpoints live on subnets of their own, which the wire reaches through the host.
const L3_SUBNET: &str = "198.19.1.0/24";
const L3_SUBNET6: &str = "2001:2:0:1::/64";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    L2,
    L3,
    L3s,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Bridge,
    Private,
    Vepa,
}

/// The lab of one ipvlan port: containers c1..c3 connected to network `ipnet` on eth1.
struct Port {
    lab: Lab,
    _daemon: Daemon,
    mode: Mode,
    parent_mac: [u8; 6],
    wire_mac: [u8; 6],
}

impl Port {
    fn new(mode: Mode, flag: Flag) -> Port {
        let lab = Lab::new();
        let (wire, dp) = (lab.wire.name.clone(), lab.dp.name.clone());
        ok(&["ip", "-n", &wire, "addr", "add", &format!("{WIRE_IP6}/64"), "dev", "wire0", "nodad"]);
        ok(&["ip", "-n", &dp, "addr", "add", &format!("{HOST_IP6}/64"), "dev", "eth1", "nodad"]);
        // A real wire delivers complete checksums; a veth peer leaves TCP's to "hardware", which
        // a frame copied through XDP and AF_XDP (every frame from the wire with --fast-path off)
        // would carry unfinished.
        support::vlan::no_tx_csum_offload(&lab.wire, "wire0");
        let daemon = Daemon::start(&lab);
        let (sub4, sub6) = match mode {
            Mode::L2 => (SUBNET.to_string(), "2001:2::/64".to_string()),
            _ => (L3_SUBNET.to_string(), L3_SUBNET6.to_string()),
        };
        let (gw4, gw6) = match mode {
            Mode::L2 => (GATEWAY, WIRE_IP6),
            _ => ("198.19.1.254", "2001:2:0:1::fe"),
        };
        let mode_o = format!("ipvlan_mode={}", format!("{mode:?}").to_lowercase());
        let flag_o = format!("ipvlan_flag={}", format!("{flag:?}").to_lowercase());
        lab.cli_ok(&[
            "network",
            "create",
            "-d",
            "ipvlan",
            "-o",
            &mode_o,
            "-o",
            &flag_o,
            "--subnet",
            &sub4,
            "--gateway",
            gw4,
            "--ipv6",
            "--subnet",
            &sub6,
            "--gateway",
            gw6,
            "-o",
            "parent=eth1",
            "ipnet",
        ]);
        if mode != Mode::L2 {
            // The wire routes the endpoints' subnets to the host, whose routes carry their frames
            // (ipvlan L3); the host forwards (as a Docker host does).
            ok(&["ip", "-n", &wire, "route", "add", L3_SUBNET, "via", HOST_IP]);
            ok(&["ip", "-n", &wire, "-6", "route", "add", L3_SUBNET6, "via", HOST_IP6]);
            in_netns(&lab.dp.path(), || {
                write_sysctl_here("net/ipv4/conf/all/forwarding", "1");
                write_sysctl_here("net/ipv6/conf/all/forwarding", "1");
            });
        }
        let parent_mac = lab.dp.mac("eth1");
        let wire_mac = lab.wire.mac("wire0");
        let port = Port { lab, _daemon: daemon, mode, parent_mac, wire_mac };
        for i in 1..=3 {
            let path = port.lab.c(i).path();
            port.lab.cli_ok(&["network", "connect", "--ip", &port.ip(i), "--ip6", &port.ip6(i), "ipnet", &path]);
        }
        port
    }

    fn ip(&self, i: usize) -> String {
        match self.mode {
            Mode::L2 => container_ip(i),
            _ => format!("198.19.1.{}", 10 + i),
        }
    }

    fn ip6(&self, i: usize) -> String {
        match self.mode {
            Mode::L2 => format!("2001:2::{}", 10 + i),
            _ => format!("2001:2:0:1::{}", 10 + i),
        }
    }

    /// Drops for `reason` over every port of the network (in these tests only c1 sends what is
    /// dropped).
    fn drops(&self, reason: &str) -> u64 {
        let s = self.lab.stats();
        let ports = s["networks"][0]["ports"].as_array().unwrap_or_else(|| panic!("ports in stats: {s}")).clone();
        ports.iter().map(|p| p["drops"][reason].as_u64().unwrap_or_else(|| panic!("drops.{reason}: {p}"))).sum()
    }
}

/// Where a frame went: c1, c2, c3, the wire, the host stack (1 = captured there once).
type Seen = [usize; 5];

struct Taps {
    c: Vec<RawSocket>,
    wire: RawSocket,
    /// The host stack's receive taps on eth1, one per EtherType the cases use.
    host: Vec<RawSocket>,
}

impl Taps {
    fn open(lab: &Lab) -> Taps {
        Taps {
            c: (1..=3).map(|i| RawSocket::open(lab.c(i), "eth0")).collect(),
            wire: RawSocket::open(&lab.wire, "wire0"),
            host: [0x0800, 0x0806, 0x86dd, MARK_TYPE]
                .into_iter()
                .map(|t| RawSocket::open_protocol(&lab.dp, "eth1", t))
                .collect(),
        }
    }

    /// Who captured a frame carrying `mark`, with the frames the wire captured.
    fn seen(&self, mark: &[u8; 8]) -> (Seen, Vec<Vec<u8>>) {
        let wire = self.wire.collect(mark, SETTLE);
        let short = Duration::from_millis(50);
        let host = self.host.iter().map(|h| h.collect(mark, short).len()).sum();
        let c: Vec<usize> = self.c.iter().map(|s| s.collect(mark, short).len()).collect();
        ([c[0], c[1], c[2], wire.len(), host], wire)
    }
}

/// The cases: who sends what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// The wire host broadcasts a non-IP frame.
    WireBroadcast,
    /// The wire sends IPv4 to c2's address, to the parent's MAC.
    WireToC2,
    /// ... IPv6 to c3's address.
    WireToC3v6,
    /// ... IPv4 to the host's own address.
    WireToHost,
    /// The wire broadcasts an ARP request for c2's address.
    WireArpForC2,
    /// c1 broadcasts a non-IP frame.
    C1Broadcast,
    /// c1 sends IPv4 to c2's address, to the parent's (its own) MAC.
    C1ToC2,
    /// ... IPv6 to c2's address.
    C1ToC2v6,
    /// ... IPv4 to the host's address, to the parent's MAC.
    C1ToHost,
    /// c1 sends IPv4 to the wire host: L2 to its MAC, L3 to its own (the host routes it).
    C1ToWire,
}

const CASES: [Case; 10] = [
    Case::WireBroadcast,
    Case::WireToC2,
    Case::WireToC3v6,
    Case::WireToHost,
    Case::WireArpForC2,
    Case::C1Broadcast,
    Case::C1ToC2,
    Case::C1ToC2v6,
    Case::C1ToHost,
    Case::C1ToWire,
];

/// The rules (README "ipvlan", from ipvlan_core.c), as who captures each case's frame:
/// [c1, c2, c3, wire, host].
fn expected(case: Case, mode: Mode, flag: Flag) -> Seen {
    const C2: Seen = [0, 1, 0, 0, 0];
    const C3: Seen = [0, 0, 1, 0, 0];
    const WIRE: Seen = [0, 0, 0, 1, 0];
    const HOST: Seen = [0, 0, 0, 0, 1];
    const NOBODY: Seen = [0; 5];
    let l2 = mode == Mode::L2;
    match case {
        // ipvlan_handle_mode_l2: group frames to every endpoint and the host; L3: by address only.
        Case::WireBroadcast if l2 => [1, 1, 1, 0, 1],
        Case::WireBroadcast => HOST,
        Case::WireToC2 => C2,
        Case::WireToC3v6 => C3,
        Case::WireToHost => HOST,
        Case::WireArpForC2 if l2 => [1, 1, 1, 0, 1],
        // L3 looks the ARP target up (the NOARP endpoint ignores it); L3S leaves ARP to the host.
        Case::WireArpForC2 if mode == Mode::L3 => C2,
        Case::WireArpForC2 => HOST,
        // ipvlan_xmit_mode_l2: group frames to the other endpoints and the wire, whatever the flag;
        // L3 drops them (ipvlan_process_outbound).
        Case::C1Broadcast if l2 => [0, 1, 1, 1, 0],
        Case::C1Broadcast => NOBODY,
        Case::C1ToC2 | Case::C1ToC2v6 => match flag {
            Flag::Bridge => C2,
            Flag::Private => NOBODY,
            // L2 vepa: out of the parent (src = dst = the parent's MAC); L3 vepa: routed by the
            // host, whose routes do not carry it (no route to the endpoints' subnet): into its
            // stack, which drops it (the kernel's ipvlan drops it before).
            Flag::Vepa if l2 => WIRE,
            Flag::Vepa => HOST,
        },
        // L2: to the parent's MAC and nobody's address: the host stack (dev_forward_skb), but with
        // vepa out of the parent; L3: the host's routes say local.
        Case::C1ToHost if l2 && flag == Flag::Vepa => WIRE,
        Case::C1ToHost => HOST,
        Case::C1ToWire => WIRE,
    }
}

/// Sends every case's frame and compares who captured it with [`expected`]; returns the frames the
/// wire captured.
fn who_receives_what(p: &Port, flag: Flag) -> Vec<Vec<u8>> {
    let taps = Taps::open(&p.lab);
    let c1 = RawSocket::open(p.lab.c(1), "eth0");
    let wire = RawSocket::open(&p.lab.wire, "wire0");
    let (pm, wm) = (p.parent_mac, p.wire_mac);
    let host4 = v4(HOST_IP);
    let wire4 = v4(GATEWAY);
    let (ip1, ip2) = (v4(&p.ip(1)), v4(&p.ip(2)));
    let mut failures = Vec::new();
    let mut on_wire = Vec::new();
    for case in CASES {
        let mark = marker();
        let (from, frame) = match case {
            Case::WireBroadcast => (&wire, frame(BROADCAST, wm, &mark, 60)),
            Case::WireToC2 => (&wire, udp(pm, wm, wire4, ip2, &mark)),
            Case::WireToC3v6 => (&wire, udp6(pm, wm, v6(WIRE_IP6), v6(&p.ip6(3)), &mark)),
            Case::WireToHost => (&wire, udp(pm, wm, wire4, host4, &mark)),
            Case::WireArpForC2 => (&wire, arp(BROADCAST, wm, 1, wm, wire4, ip2, &mark)),
            Case::C1Broadcast => (&c1, frame(BROADCAST, pm, &mark, 60)),
            Case::C1ToC2 => (&c1, udp(pm, pm, ip1, ip2, &mark)),
            Case::C1ToC2v6 => (&c1, udp6(pm, pm, v6(&p.ip6(1)), v6(&p.ip6(2)), &mark)),
            Case::C1ToHost => (&c1, udp(pm, pm, ip1, host4, &mark)),
            Case::C1ToWire if p.mode == Mode::L2 => (&c1, udp(wm, pm, ip1, wire4, &mark)),
            Case::C1ToWire => (&c1, udp(pm, pm, ip1, wire4, &mark)),
        };
        from.send(&frame);
        let (seen, wire_frames) = taps.seen(&mark);
        let want = expected(case, p.mode, flag);
        if seen != want {
            failures.push(format!("{case:?}: captured [c1 c2 c3 wire host] {seen:?}, the rules say {want:?}"));
        }
        if case == Case::C1ToWire && p.mode != Mode::L2 {
            // Routed: the host's neighbour table gave the wire host's MAC.
            if let Some(f) = wire_frames.first() {
                assert_eq!((&f[0..6], &f[6..12]), (&wm[..], &pm[..]), "a routed frame's MACs on the wire");
            }
        }
        on_wire.extend(wire_frames);
    }
    assert!(failures.is_empty(), "ipvlan {:?} {flag:?}:\n{}", p.mode, failures.join("\n"));
    on_wire
}

/// Everything the wire captured from our side carries the parent's MAC as its source.
fn only_the_parent_mac(p: &Port, frames: &[Vec<u8>]) {
    let strangers: Vec<String> = frames
        .iter()
        .filter(|f| f[6..12] != p.wire_mac && f[6..12] != p.parent_mac)
        .map(|f| mac_str(f[6..12].try_into().unwrap()))
        .collect();
    assert!(strangers.is_empty(), "the wire saw source MACs other than the parent's: {strangers:?}");
}

fn ping(ns: &Netns, to: &str) -> bool {
    let v6 = if to.contains(':') { "-6" } else { "-4" };
    within(Duration::from_secs(6), || ns.exec(&["ping", v6, "-c", "1", "-W", "1", to]).status.success()).is_some()
}

fn ping_fails(ns: &Netns, to: &str) -> bool {
    let v6 = if to.contains(':') { "-6" } else { "-4" };
    !ns.exec(&["ping", v6, "-c", "2", "-W", "1", to]).status.success()
}

/// A TCP connection from `from` to `to_ip`:5001 in `to`: 256 KiB up, their count back.
fn tcp(from: &Netns, to: &Netns, to_ip: &str) -> Result<(), String> {
    const BYTES: usize = 256 * 1024;
    let addr: SocketAddr = format!("{to_ip}:5001").parse().map_err(|e| format!("{e}"))?;
    let listener = in_netns(&to.path(), || TcpListener::bind(addr)).map_err(|e| format!("bind {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).map_err(|e| format!("server read: {e}"))?;
        s.write_all(&(got.len() as u64).to_be_bytes()).map_err(|e| format!("server write: {e}"))
    });
    let client = in_netns(&from.path(), || TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
    let result = (|| {
        let mut s = client.map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        s.write_all(&vec![0x5a; BYTES]).map_err(|e| format!("write: {e}"))?;
        s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
        let mut n = [0u8; 8];
        s.read_exact(&mut n).map_err(|e| format!("read the count: {e}"))?;
        match u64::from_be_bytes(n) as usize {
            BYTES => Ok(()),
            other => Err(format!("the server got {other} bytes of {BYTES}")),
        }
    })();
    let served = server.join().map_err(|_| "the server panicked".to_string())?;
    result.and(served)
}

/// The link-local address of eth0 in `ns`.
fn link_local(ns: &Netns) -> String {
    let out = ns.exec(&["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no link-local in {text}"));
    addr.split('/').next().unwrap().to_string()
}

/// Everything one mode/flag pair must show: who receives what, then traffic, with the wire
/// capturing throughout.
fn check(mode: Mode, flag: Flag) {
    let p = Port::new(mode, flag);
    if !forced_userspace() {
        // The parent's tc program finds the endpoints by address itself: no XDP on the parent.
        assert_eq!(p.lab.dp.xdp_links(), Vec::<String>::new(), "{mode:?} {flag:?}: XDP attached");
    }
    let sniff = RawSocket::open(&p.lab.wire, "wire0");
    let mut on_wire = who_receives_what(&p, flag);
    let (c1, c2, c3, wire) = (p.lab.c(1), p.lab.c(2), p.lab.c(3), &p.lab.wire);
    let isolated = p.drops("isolated");
    if flag == Flag::Private {
        assert!(isolated >= 2, "private: c1's frames to c2 counted as isolated ({isolated})");
    }
    // Between endpoints: only with `bridge` (vepa needs a hairpinning switch, which this wire is not).
    for (to, addr) in [(c2, p.ip(2)), (c2, p.ip6(2))] {
        if flag == Flag::Bridge {
            assert!(ping(c1, &addr), "{mode:?} {flag:?}: ping c1 -> c2 {addr}");
        } else {
            assert!(ping_fails(c1, &addr), "{mode:?} {flag:?}: ping c1 -> c2 {addr} must fail");
        }
        let _ = to;
    }
    // With the wire host, both ways, v4 and v6.
    let (wire4, wire6) = (GATEWAY, WIRE_IP6);
    assert!(ping(c1, wire4) && ping(c1, wire6), "{mode:?} {flag:?}: ping c1 -> wire");
    assert!(ping(wire, &p.ip(3)) && ping(wire, &p.ip6(3)), "{mode:?} {flag:?}: ping wire -> c3");
    tcp(c1, wire, wire4).unwrap_or_else(|e| panic!("{mode:?} {flag:?}: TCP c1 -> wire: {e}"));
    tcp(wire, c3, &p.ip(3)).unwrap_or_else(|e| panic!("{mode:?} {flag:?}: TCP wire -> c3: {e}"));
    if flag == Flag::Bridge {
        tcp(c2, c1, &p.ip(1)).unwrap_or_else(|e| panic!("{mode:?}: TCP c2 -> c1: {e}"));
    }
    if mode != Mode::L2 {
        // The host's own address: its stack gets the request (the case above), but, as with the
        // kernel's ipvlan L3, its reply has no way back (no route to the endpoints' subnet).
        assert!(ping_fails(c1, HOST_IP), "{mode:?} {flag:?}: ping c1 -> host must fail");
        assert!(p.drops("not_routed") >= 1, "{mode:?}: c1's broadcast counted as not_routed");
    }
    // Each endpoint its own link-local address (the kernel's dev_id in the EUI-64), and with L2
    // bridge one endpoint reaches another's.
    let (ll1, ll2) = (link_local(c1), link_local(c2));
    assert_ne!(ll1, ll2, "the endpoints' link-local addresses");
    if mode == Mode::L2 && flag == Flag::Bridge {
        assert!(ping(c1, &format!("{ll2}%eth0")), "ping c1 -> c2's link-local {ll2}");
        let _ = c3;
    }
    on_wire.extend(sniff.collect_all(Duration::from_millis(200)));
    only_the_parent_mac(&p, &on_wire);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l2_bridge() {
    require_root!();
    check(Mode::L2, Flag::Bridge);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l2_private() {
    require_root!();
    check(Mode::L2, Flag::Private);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l2_vepa() {
    require_root!();
    check(Mode::L2, Flag::Vepa);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l3_bridge() {
    require_root!();
    check(Mode::L3, Flag::Bridge);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l3_private() {
    require_root!();
    check(Mode::L3, Flag::Private);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l3_vepa() {
    require_root!();
    check(Mode::L3, Flag::Vepa);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn l3s_bridge() {
    require_root!();
    check(Mode::L3s, Flag::Bridge);
}

/// An address is one endpoint's per port: a second connect with it is refused by name and leaves
/// nothing behind; macvlan and ipvlan do not share a parent's VLAN.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn an_address_is_one_endpoints_and_drivers_do_not_mix() {
    require_root!();
    let p = Port::new(Mode::L2, Flag::Bridge);
    let lab = &p.lab;
    let extra = Netns::new(format!("{}-x", lab.tag));
    let out = lab.cli(&["network", "connect", "--ip", &p.ip(1), "ipnet", &extra.path()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains(&p.ip(1)), "a taken address: {err}");
    let links = extra.exec(&["ip", "-o", "link"]);
    assert_eq!(String::from_utf8_lossy(&links.stdout).lines().count(), 1, "only lo in the refused namespace");
    let out = lab.cli(&["network", "create", "--subnet", "198.18.5.0/24", "-o", "parent=eth1", "macnet"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && err.contains("ipnet"), "macvlan on an ipvlan parent: {err}");
}

/// A dotted VLAN parent and an internal network, as for macvlan: on `eth1.50` the wire's tagged
/// frame for an endpoint's address reaches it (untagged) and nobody else, the endpoints' frames leave
/// tagged, and they reach each other; on an `--internal` network (L2 and L3) the endpoints reach each
/// other and nothing else.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn vlan_parent_and_internal_networks() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    lab.cli_ok(&["network", "create", "-d", "ipvlan", "--subnet", "198.18.50.0/24", "-o", "parent=eth1.50", "v50"]);
    for i in 1..=2 {
        let ip = format!("198.18.50.{}", 10 + i);
        lab.cli_ok(&["network", "connect", "--ip", &ip, "v50", &lab.c(i).path()]);
    }
    assert!(ping(lab.c(1), "198.18.50.12"), "VLAN 50: endpoint to endpoint");
    let parent_mac = lab.dp.mac("eth1");
    let wire_mac = lab.wire.mac("wire0");
    let (c1, c2, wire) =
        (RawSocket::open(lab.c(1), "eth0"), RawSocket::open(lab.c(2), "eth0"), RawSocket::open(&lab.wire, "wire0"));
    let mark = marker();
    let to_c2 = udp(parent_mac, wire_mac, v4("198.18.50.254"), v4("198.18.50.12"), &mark);
    wire.send(&support::vlan::push_tag(&to_c2, support::vlan::Tag::vid(50)));
    let got = c2.collect(&mark, SETTLE);
    assert_eq!(got.len(), 1, "the tagged frame for c2's address");
    assert_eq!(got[0][12..14], [0x08, 0x00], "c2 gets it untagged");
    assert!(c1.collect(&mark, Duration::from_millis(50)).is_empty(), "c1 does not");
    // The kernel moves a received tag into metadata: this socket puts it back (PACKET_AUXDATA).
    let trunk = support::vlan::VlanSocket::open(&lab.wire, "wire0");
    let mark = marker();
    c1.send(&frame(BROADCAST, parent_mac, &mark, 60));
    let out: Vec<_> = trunk.collect_all(SETTLE).into_iter().filter(|rx| rx.has(&mark)).collect();
    assert_eq!(out.len(), 1, "c1's broadcast on the wire");
    assert_eq!(out[0].tags(), [support::vlan::Tag::vid(50)], "tagged 50: {}", out[0].tags_str());
    assert_eq!(c2.collect(&mark, Duration::from_millis(50)).len(), 1, "and at c2");
    let routed = lab.cli(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        "ipvlan_mode=l3",
        "--subnet",
        "198.18.60.0/24",
        "-o",
        "parent=eth1.60",
        "v60",
    ]);
    assert!(!routed.status.success(), "L3 on a VLAN we tag is refused");

    for (mode, subnet) in [("l2", "198.19.70"), ("l3", "198.19.71")] {
        let name = format!("int{mode}");
        let m = format!("ipvlan_mode={mode}");
        lab.cli_ok(&[
            "network",
            "create",
            "-d",
            "ipvlan",
            "-o",
            &m,
            "--internal",
            "--subnet",
            &format!("{subnet}.0/24"),
            &name,
        ]);
        for i in 1..=2 {
            lab.cli_ok(&[
                "network",
                "connect",
                "--ifname",
                "eth1",
                "--ip",
                &format!("{subnet}.{}", 10 + i),
                &name,
                &lab.c(i).path(),
            ]);
        }
        assert!(ping(lab.c(1), &format!("{subnet}.12")), "internal {mode}: endpoint to endpoint");
        assert!(ping_fails(lab.c(1), GATEWAY), "internal {mode}: not the wire");
        lab.cli_ok(&["network", "rm", "--force", &name]);
    }
}
