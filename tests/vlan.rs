//! End-to-end: 802.1Q trunk networks (`-o parent=eth1.VID`), without kernel VLAN devices.
//!
//! The lab's wire side becomes a trunk: hosts h10 and h20 sit behind userspace 802.1Q access ports
//! (support::vlan::Tagger) for VLANs 10 and 20, h0 behind an untagged one, so real kernel ARP and
//! ping cross a tagged trunk to the parent eth1. On the daemon side the networks are
//! `v10` (-o parent=eth1.10), `v20` (eth1.20) and `untagged` (eth1), with containers c1 and c4 on
//! v10, c2 on v20 and c3 on untagged.
//!
//! The datapath scenarios (isolation, broadcast confinement, tag push/pop exactness, unknown
//! VLANs) run twice: against a userspace reference of kernel macvlan on VLAN sub-interfaces
//! (support::vlan::RefMacvlan: what `eth1.10` + macvlan children would do; passes today and shows
//! the checks test the right thing) and against xmacvlan. PCP policy, validation, a dotted
//! interface name and `network inspect` are xmacvlan's own contract.
//!
//! Needs root; run serially (--test-threads=1): each test builds its own lab and removes it.

// Scenario rows are tuples, read as tables.
#![allow(clippy::type_complexity)]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::vlan::*;
use support::*;

const SETTLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// The topology
// ---------------------------------------------------------------------------------------------

struct NetDef {
    name: &'static str,
    parent: &'static str,
    vid: Option<u16>,
    subnet: &'static str,
    /// The gateway: the wire host of that VLAN.
    gw: &'static str,
}

const V10: NetDef =
    NetDef { name: "v10", parent: "eth1.10", vid: Some(10), subnet: "198.18.10.0/24", gw: "198.18.10.1" };
const V20: NetDef =
    NetDef { name: "v20", parent: "eth1.20", vid: Some(20), subnet: "198.18.20.0/24", gw: "198.18.20.1" };
const UNTAGGED: NetDef =
    NetDef { name: "untagged", parent: "eth1", vid: None, subnet: "198.18.30.0/24", gw: "198.18.30.1" };
const NETS: [&NetDef; 3] = [&V10, &V20, &UNTAGGED];

struct Ctr {
    i: usize,
    net: &'static NetDef,
    ip: &'static str,
    mac: [u8; 6],
    /// An address on another VLAN's subnet, so that pinging across VLANs goes out on-link (ARP)
    /// instead of failing for want of a route.
    decoy: &'static str,
}

const C1: Ctr =
    Ctr { i: 1, net: &V10, ip: "198.18.10.11", mac: [2, 0x42, 0xc6, 0x12, 0x0a, 0x11], decoy: "198.18.20.111/24" };
const C2: Ctr =
    Ctr { i: 2, net: &V20, ip: "198.18.20.12", mac: [2, 0x42, 0xc6, 0x12, 0x14, 0x12], decoy: "198.18.30.112/24" };
const C3: Ctr =
    Ctr { i: 3, net: &UNTAGGED, ip: "198.18.30.13", mac: [2, 0x42, 0xc6, 0x12, 0x1e, 0x13], decoy: "198.18.10.113/24" };
const C4: Ctr =
    Ctr { i: 4, net: &V10, ip: "198.18.10.14", mac: [2, 0x42, 0xc6, 0x12, 0x0a, 0x14], decoy: "198.18.20.114/24" };
const CTRS: [&Ctr; 4] = [&C1, &C2, &C3, &C4];

const H10_MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0x0a, 0x01];
const H20_MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0x14, 0x01];
const H0_MAC: [u8; 6] = [2, 0, 0xc6, 0x12, 0x1e, 0x01];

/// h10 (VLAN 10), h20 (VLAN 20) and h0 (untagged), each the gateway of its network and with decoy
/// addresses on the two other subnets.
fn host_specs() -> Vec<HostSpec> {
    let spec = |name: &str, vid, mac, addrs: &[&str]| HostSpec {
        name: name.into(),
        vid,
        mac,
        addrs: addrs.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        spec("h10", Some(10), H10_MAC, &["198.18.10.1/24", "198.18.20.101/24", "198.18.30.101/24"]),
        spec("h20", Some(20), H20_MAC, &["198.18.20.1/24", "198.18.10.102/24", "198.18.30.102/24"]),
        spec("h0", None, H0_MAC, &["198.18.30.1/24", "198.18.10.100/24", "198.18.20.100/24"]),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VBackend {
    /// Userspace reference of kernel macvlan children of eth1.10 / eth1.20 / eth1.
    Reference,
    Xmacvlan,
}

/// The lab with hosts, containers and one backend. Field order is drop order: taggers and hosts,
/// the reference's thread, the daemon, then the namespaces.
struct World {
    backend: VBackend,
    hosts: Option<WireHosts>,
    reference: Option<RefMacvlan>,
    daemon: Option<Daemon>,
    c4: Netns,
    lab: Lab,
}

impl World {
    fn new(backend: VBackend, with_hosts: bool) -> Self {
        let lab = Lab::new();
        let c4 = Netns::new(format!("{}-c4", lab.tag));
        let mut w = World { backend, hosts: None, reference: None, daemon: None, c4, lab };
        match backend {
            VBackend::Reference => {
                let mut members = Vec::new();
                for c in CTRS {
                    let ns = w.c(c.i);
                    quiet_ipv6(ns);
                    let host_end = format!("r{}", c.i);
                    ok_words(&format!(
                        "ip link add {host_end} netns {} type veth peer name eth0 netns {}",
                        w.lab.dp.name, ns.name
                    ));
                    ok(&["ip", "-n", &ns.name, "link", "set", "eth0", "address", &mac_str(c.mac), "up"]);
                    ok(&["ip", "-n", &ns.name, "addr", "add", &format!("{}/24", c.ip), "dev", "eth0"]);
                    ok(&["ip", "-n", &ns.name, "route", "add", "default", "via", c.net.gw]);
                    no_tx_csum_offload(ns, "eth0");
                    ok(&["ip", "-n", &w.lab.dp.name, "link", "set", &host_end, "up"]);
                    members.push(RefMember { ifname: host_end, vid: c.net.vid, mac: c.mac });
                }
                w.reference = Some(RefMacvlan::start(&w.lab.dp, "eth1", members));
            }
            VBackend::Xmacvlan => {
                w.daemon = Some(Daemon::start(&w.lab));
                for n in NETS {
                    let parent = format!("parent={}", n.parent);
                    cli_words(
                        &w.lab,
                        &format!(
                            "network create -d macvlan --subnet {} --gateway {} -o {parent} -o macvlan_mode=bridge {}",
                            n.subnet, n.gw, n.name
                        ),
                    );
                }
                for c in CTRS {
                    connect(&w.lab, c.net.name, w.c(c.i), c.ip, c.mac);
                }
            }
        }
        if with_hosts {
            w.hosts = Some(WireHosts::new(&w.lab.wire, "wire0", &w.lab.tag, &host_specs()));
        }
        w
    }

    fn c(&self, i: usize) -> &Netns {
        if i == 4 {
            &self.c4
        } else {
            self.lab.c(i)
        }
    }

    fn host(&self, name: &str) -> &WireHost {
        self.hosts.as_ref().expect("a world with hosts").host(name)
    }

    /// Who a MAC belongs to, for messages.
    fn who(&self, mac: [u8; 6]) -> String {
        if let Some(c) = CTRS.iter().find(|c| c.mac == mac) {
            return format!("c{}", c.i);
        }
        for (n, m) in [("h10", H10_MAC), ("h20", H20_MAC), ("h0", H0_MAC)] {
            if m == mac {
                return n.into();
            }
        }
        mac_str(mac)
    }

    fn diagnostics(&self) -> String {
        let mut s = String::new();
        if let Some(h) = &self.hosts {
            s += &format!("taggers:\n{}\n", h.summary());
        }
        if let Some(r) = &self.reference {
            s += &format!("reference: {}\n", r.counts().summary());
        }
        if let Some(d) = &self.daemon {
            s += &format!("daemon log:\n{}\n", d.log());
        }
        s
    }
}

/// Packet taps: "trunk" (wire0: what left the parent), "parent" (eth1 in dp: what reached the
/// host stack), "c1".."c4" and, with hosts, "h10" "h20" "h0".
struct Taps {
    list: Vec<(String, VlanSocket)>,
}

impl Taps {
    fn open(w: &World) -> Self {
        let mut list = vec![
            ("trunk".to_string(), VlanSocket::open(&w.lab.wire, "wire0")),
            ("parent".to_string(), VlanSocket::open(&w.lab.dp, "eth1")),
        ];
        for i in 1..=4 {
            list.push((format!("c{i}"), VlanSocket::open(w.c(i), "eth0")));
        }
        if let Some(h) = &w.hosts {
            for host in &h.hosts {
                list.push((host.name().to_string(), VlanSocket::open(&host.ns, "eth0")));
            }
        }
        Taps { list }
    }

    fn get(&self, name: &str) -> &VlanSocket {
        &self.list.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no tap {name}")).1
    }

    /// Sends `frame` (carrying `mark`) from tap `from` and reports who received it.
    fn send(&self, from: &str, frame: &[u8], mark: &[u8; 8]) -> Seen {
        self.get(from).send(frame);
        std::thread::sleep(SETTLE);
        self.seen(mark)
    }

    fn seen(&self, mark: &[u8; 8]) -> Seen {
        Seen { rx: self.list.iter().map(|(n, s)| (n.clone(), s.collect(mark, Duration::ZERO))).collect() }
    }

    /// Everything each tap received so far.
    fn take_all(&self) -> Vec<(String, Vec<Rx>)> {
        self.list.iter().map(|(n, s)| (n.clone(), s.collect_all(Duration::ZERO))).collect()
    }
}

/// Who received one marked frame, and how.
struct Seen {
    rx: Vec<(String, Vec<Rx>)>,
}

impl Seen {
    fn get(&self, who: &str) -> &[Rx] {
        self.rx.iter().find(|(n, _)| n == who).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    fn n(&self, who: &str) -> usize {
        self.get(who).len()
    }

    /// The one frame `who` got (None unless exactly one).
    fn one(&self, who: &str) -> Option<&Rx> {
        match self.get(who) {
            [r] => Some(r),
            _ => None,
        }
    }

    /// Exactly these containers got it, once each; no other container did.
    fn containers(&self, want: &[&str]) -> bool {
        (1..=4).all(|i| {
            let c = format!("c{i}");
            self.n(&c) == usize::from(want.contains(&c.as_str()))
        })
    }

    /// `who` got exactly one copy, with exactly `tags` and otherwise the bytes of `plain`.
    fn exact(&self, who: &str, tags: &[Tag], plain: &[u8]) -> bool {
        self.one(who).is_some_and(|r| r.tags() == tags && r.untagged() == plain)
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .rx
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| {
                let tags: Vec<String> = v.iter().map(|r| r.tags_str()).collect();
                format!("{n}:{}[{}]", v.len(), tags.join(";"))
            })
            .collect();
        if parts.is_empty() {
            write!(f, "nobody")
        } else {
            write!(f, "{}", parts.join(" "))
        }
    }
}

/// A table of checks, printed in full before failing on the first broken rule.
struct Report {
    title: String,
    rows: Vec<(String, String, String, bool)>,
}

impl Report {
    fn new(title: impl Into<String>) -> Self {
        Report { title: title.into(), rows: Vec::new() }
    }

    fn check(&mut self, rule: &str, expected: &str, observed: impl ToString, ok: bool) {
        self.rows.push((rule.into(), expected.into(), observed.to_string(), ok));
    }

    fn finish(self, w: Option<&World>) {
        println!("\n{}", self.title);
        println!("{:<48} {:<44} {:<40} result", "rule", "expected", "observed");
        for (r, e, o, ok) in &self.rows {
            println!("{r:<48} {e:<44} {o:<40} {}", if *ok { "ok" } else { "FAIL" });
        }
        let failed: Vec<_> = self.rows.iter().filter(|r| !r.3).map(|r| r.0.clone()).collect();
        if !failed.is_empty() {
            if let Some(w) = w {
                println!("{}", w.diagnostics());
            }
        }
        assert!(failed.is_empty(), "{}: violated: {failed:?}", self.title);
    }
}

fn wire_mac(w: &World) -> [u8; 6] {
    w.lab.wire.mac("wire0")
}

// ---------------------------------------------------------------------------------------------
// The toolkit and the tagger on their own
// ---------------------------------------------------------------------------------------------

#[test]
fn toolkit_builds_and_parses_tags() {
    toolkit_self_check();
}

/// Two taggers facing each other over a veth trunk (t1 — t2, in one switch namespace) between
/// hosts ha and hb: real ARP and ping cross the trunk tagged; the kernel hands the tag to packet
/// sockets in PACKET_AUXDATA and VlanSocket puts it back; mismatched VIDs cut the hosts off; two
/// untagged ports carry them untagged.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn tagger_self_test_ping_across_a_tagged_trunk() {
    require_root!();
    let p = unique_prefix();
    let sw = Netns::new(format!("{p}-sw"));
    let ha = Netns::new(format!("{p}-ha"));
    let hb = Netns::new(format!("{p}-hb"));
    for ns in [&sw, &ha, &hb] {
        quiet_ipv6(ns);
    }
    let (ma, mb) = ([2, 0, 0xc6, 0x12, 0x28, 0x01], [2, 0, 0xc6, 0x12, 0x28, 0x02]);
    ok_words(&format!("ip -n {} link add t1 mtu 3000 type veth peer name t2 mtu 3000", sw.name));
    for (h, a, mac, ip) in [(&ha, "a1", ma, "198.18.40.1/24"), (&hb, "a2", mb, "198.18.40.2/24")] {
        ok(&["ip", "link", "add", a, "netns", &sw.name, "type", "veth", "peer", "name", "eth0", "netns", &h.name]);
        ok(&["ip", "-n", &h.name, "link", "set", "eth0", "address", &mac_str(mac), "up"]);
        ok(&["ip", "-n", &h.name, "addr", "add", ip, "dev", "eth0"]);
        no_tx_csum_offload(h, "eth0");
        ok(&["ip", "-n", &sw.name, "link", "set", a, "up"]);
    }
    for t in ["t1", "t2"] {
        ok(&["ip", "-n", &sw.name, "link", "set", t, "up"]);
    }
    let ping_ab = || pings(&[(&ha, "198.18.40.2")], 2)[0];
    let flush = || {
        for h in [&ha, &hb] {
            ok(&["ip", "-n", &h.name, "neigh", "flush", "all"]);
        }
    };
    let mut rep = Report::new("tagger self-test: two userspace 802.1Q access ports over a veth trunk");

    // Taps: what crosses the trunk in each direction, and each host.
    let on_t2 = VlanSocket::open(&sw, "t2"); // frames from ha's side
    let on_t1 = VlanSocket::open(&sw, "t1"); // frames from hb's side
    let tap_a = VlanSocket::open(&ha, "eth0");
    let tap_b = VlanSocket::open(&hb, "eth0");

    let mut ta = Tagger::start(&sw, "a1", "t1", Some(10));
    let mut tb = Tagger::start(&sw, "a2", "t2", Some(10));
    let ok1 = ping_ab();
    rep.check("ping ha -> hb, both on VLAN 10", "answered", format!("{ok1}"), ok1);
    std::thread::sleep(SETTLE);
    for (dir, tap, src) in [("ha -> hb", &on_t2, ma), ("hb -> ha", &on_t1, mb)] {
        let frames: Vec<Rx> = tap.collect_all(Duration::ZERO).into_iter().filter(|r| r.src() == src).collect();
        let arp = frames.iter().filter(|r| r.ethertype() == 0x0806).count();
        let ip = frames.iter().filter(|r| r.ethertype() == 0x0800).count();
        let all_10 = frames.iter().all(|r| r.tags() == [Tag::vid(10)]);
        let aux = frames.iter().all(|r| r.aux == Some(Tag::vid(10)));
        let observed = format!(
            "{} frames ({arp} ARP, {ip} IPv4): {}",
            frames.len(),
            frames
                .iter()
                .map(|r| r.tags_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",")
        );
        rep.check(
            &format!("trunk {dir}: ARP and ICMP tagged"),
            "all vid 10 pcp 0, ARP and IPv4",
            observed,
            all_10 && arp >= 1 && ip >= 1,
        );
        rep.check(
            &format!("trunk {dir}: tag came in PACKET_AUXDATA"),
            "the kernel stripped it into auxdata",
            format!("aux on all: {aux}"),
            aux && !frames.is_empty(),
        );
    }

    // Raw frames: exact bytes through two taggers.
    tap_b.drain();
    on_t2.drain();
    let k = marker();
    let f = frame(mb, ma, &k, 1000);
    tap_a.send(&f);
    std::thread::sleep(SETTLE);
    let got_b = tap_b.collect(&k, Duration::ZERO);
    let got_t = on_t2.collect(&k, Duration::ZERO);
    rep.check(
        "raw 1000 B ha -> hb",
        "hb: identical, untagged",
        format!("hb {} aux {:?}", got_b.len(), got_b.first().map(|r| r.aux)),
        got_b.len() == 1 && got_b[0].wire == f && got_b[0].aux.is_none(),
    );
    rep.check(
        "raw 1000 B ha -> hb on the trunk",
        "one tag vid 10, same bytes",
        format!("{} [{}]", got_t.len(), got_t.iter().map(|r| r.tags_str()).collect::<Vec<_>>().join(";")),
        got_t.len() == 1 && got_t[0].tags() == [Tag::vid(10)] && got_t[0].untagged() == f,
    );

    // Frames injected on the trunk (sent on t1, arriving at t2 where tb listens).
    let inject = |tag: Option<Tag>| {
        let k = marker();
        let plain = frame(mb, ma, &k, 100);
        on_t1.send(&match tag {
            Some(t) => push_tag(&plain, t),
            None => plain.clone(),
        });
        std::thread::sleep(SETTLE);
        (tap_b.collect(&k, Duration::ZERO), plain)
    };
    let (got, plain) = inject(Some(Tag::vid(10).with_pcp(6)));
    rep.check(
        "trunk vid 10 pcp 6 -> hb",
        "popped: hb gets it untagged",
        got.len(),
        got.len() == 1 && got[0].wire == plain && got[0].aux.is_none(),
    );
    let (got, _) = inject(Some(Tag::vid(20)));
    rep.check("trunk vid 20 -> hb", "ignored", got.len(), got.is_empty());
    let (got, _) = inject(None);
    rep.check("trunk untagged -> hb", "ignored", got.len(), got.is_empty());
    // A tagged frame from the access side is dropped by the access port.
    let k = marker();
    tap_a.send(&tagged_frame(mb, ma, Tag::vid(10), &k, 100));
    std::thread::sleep(SETTLE);
    let n = tap_b.collect(&k, Duration::ZERO).len() + on_t2.collect(&k, Duration::ZERO).len();
    rep.check("tagged frame from ha's access side", "dropped", n, n == 0);

    let fwd = |t: &Tagger| FwdCounts::get(&t.counts().to_trunk) > 0 && FwdCounts::get(&t.counts().to_access) > 0;
    rep.check(
        "tagger counters",
        "both directions counted",
        format!("{}; {}", ta.counts().summary(), tb.counts().summary()),
        fwd(&ta) && fwd(&tb),
    );

    // Mismatched VLANs: no connectivity.
    drop(tb);
    tb = Tagger::start(&sw, "a2", "t2", Some(20));
    flush();
    let ok2 = ping_ab();
    rep.check("ping ha (VLAN 10) -> hb (VLAN 20)", "no answer", format!("{ok2}"), !ok2);

    // Two untagged (native) ports: untagged on the trunk.
    drop(ta);
    drop(tb);
    ta = Tagger::start(&sw, "a1", "t1", None);
    tb = Tagger::start(&sw, "a2", "t2", None);
    flush();
    on_t2.drain();
    let ok3 = ping_ab();
    std::thread::sleep(SETTLE);
    let frames: Vec<Rx> = on_t2.collect_all(Duration::ZERO).into_iter().filter(|r| r.src() == ma).collect();
    rep.check("ping ha -> hb over untagged ports", "answered", format!("{ok3}"), ok3);
    rep.check(
        "trunk frames of untagged ports",
        "untagged, no auxdata tag",
        frames.len(),
        !frames.is_empty() && frames.iter().all(|r| r.tags().is_empty() && r.aux.is_none()),
    );
    drop((ta, tb));
    rep.finish(None);
}

// ---------------------------------------------------------------------------------------------
// Datapath scenarios, against the reference and against xmacvlan
// ---------------------------------------------------------------------------------------------

/// Real ARP and ping between hosts and containers: only within a VLAN; nothing of one VLAN ever
/// reaches a container or host of another; and everything a container sends leaves the parent
/// tagged with its VLAN (exactly one tag) or, on the untagged network, untagged.
fn check_isolation(w: &World) {
    let taps = Taps::open(w);
    let mut rep = Report::new(format!("VLAN isolation, backend {:?}", w.backend));
    for c in CTRS {
        ok(&["ip", "-n", &w.c(c.i).name, "addr", "add", c.decoy, "dev", "eth0"]);
    }
    let (h10, h20, h0) = (&w.host("h10").ns, &w.host("h20").ns, &w.host("h0").ns);
    let (c1, c2, c3, c4) = (w.c(1), w.c(2), w.c(3), w.c(4));
    let must: Vec<(&str, &Netns, &str)> = vec![
        ("ping h10 -> c1 (v10)", h10, C1.ip),
        ("ping h10 -> c4 (v10)", h10, C4.ip),
        ("ping h20 -> c2 (v20)", h20, C2.ip),
        ("ping h0 -> c3 (untagged)", h0, C3.ip),
        ("ping c1 -> c4 (both v10)", c1, C4.ip),
        ("ping c1 -> h10 (its gateway)", c1, V10.gw),
        ("ping c2 -> h20 (its gateway)", c2, V20.gw),
        ("ping c3 -> h0 (its gateway)", c3, UNTAGGED.gw),
    ];
    let must_not: Vec<(&str, &Netns, &str)> = vec![
        ("ping h10 -> c2 (v20)", h10, C2.ip),
        ("ping h10 -> c3 (untagged)", h10, C3.ip),
        ("ping h20 -> c1 (v10)", h20, C1.ip),
        ("ping h20 -> c3 (untagged)", h20, C3.ip),
        ("ping h0 -> c1 (v10)", h0, C1.ip),
        ("ping h0 -> c2 (v20)", h0, C2.ip),
        ("ping c1 (v10) -> c2 (v20), on-link", c1, C2.ip),
        ("ping c2 (v20) -> c3 (untagged), on-link", c2, C3.ip),
        ("ping c3 (untagged) -> c1 (v10), on-link", c3, C1.ip),
        ("ping c4 (v10) -> h20 (v20), on-link", c4, V20.gw),
    ];
    let cases: Vec<(&Netns, &str)> = must.iter().chain(&must_not).map(|(_, ns, ip)| (*ns, *ip)).collect();
    let answered = pings(&cases, 2);
    for (i, (rule, _, _)) in must.iter().enumerate() {
        rep.check(rule, "answered", answered[i], answered[i]);
    }
    for (i, (rule, _, _)) in must_not.iter().enumerate() {
        let a = answered[must.len() + i];
        rep.check(rule, "no answer", a, !a);
    }
    std::thread::sleep(SETTLE);
    let heard = taps.take_all();
    let heard = |who: &str| heard.iter().find(|(n, _)| n == who).map(|(_, v)| v.clone()).unwrap_or_default();

    // Nobody hears anything from another VLAN (by source MAC).
    let v10 = vec![C1.mac, C4.mac, H10_MAC];
    let v20 = vec![C2.mac, H20_MAC];
    let v0 = vec![C3.mac, H0_MAC];
    let others = |own: &[[u8; 6]]| -> Vec<[u8; 6]> {
        [&v10, &v20, &v0].into_iter().filter(|v| v.as_slice() != own).flatten().copied().collect()
    };
    for (who, own) in [("c1", &v10), ("c4", &v10), ("h10", &v10), ("c2", &v20), ("h20", &v20), ("c3", &v0), ("h0", &v0)]
    {
        let forbidden = others(own);
        let leaks: Vec<String> = heard(who)
            .iter()
            .filter(|r| forbidden.contains(&r.src()))
            .map(|r| format!("{} ({})", w.who(r.src()), r.tags_str()))
            .collect();
        rep.check(
            &format!("{who} hears nothing from other VLANs"),
            "no frame from another VLAN's MAC",
            if leaks.is_empty() { "none".to_string() } else { leaks.join(",") },
            leaks.is_empty(),
        );
    }
    // What left the parent: per container, its tags.
    let trunk = heard("trunk");
    for (c, want) in [(&C1, vec![Tag::vid(10)]), (&C4, vec![Tag::vid(10)]), (&C2, vec![Tag::vid(20)]), (&C3, vec![])] {
        let frames: Vec<&Rx> = trunk.iter().filter(|r| r.src() == c.mac).collect();
        let kinds: std::collections::BTreeSet<String> = frames.iter().map(|r| r.tags_str()).collect();
        rep.check(
            &format!("c{} ({}) frames out of the parent", c.i, c.net.name),
            &format!("all {}", tags_str(&want)),
            format!("{} frames: {}", frames.len(), kinds.into_iter().collect::<Vec<_>>().join(",")),
            !frames.is_empty() && frames.iter().all(|r| r.tags() == want),
        );
    }

    // Raw frames: (VLAN, destination MAC) decides.
    let wm = wire_mac(w);
    let fmt = |s: &Seen| s.to_string();
    let rows: Vec<(&str, Option<Tag>, [u8; 6], &[&str])> = vec![
        ("wire vid 10 -> c1's MAC", Some(Tag::vid(10)), C1.mac, &["c1"]),
        ("wire vid 20 -> c1's MAC (c1 is on v10)", Some(Tag::vid(20)), C1.mac, &[]),
        ("wire untagged -> c1's MAC", None, C1.mac, &[]),
        ("wire vid 10 -> c2's MAC (c2 is on v20)", Some(Tag::vid(10)), C2.mac, &[]),
        ("wire vid 20 -> c2's MAC", Some(Tag::vid(20)), C2.mac, &["c2"]),
        ("wire untagged -> c3's MAC", None, C3.mac, &["c3"]),
        ("wire vid 10 -> c3's MAC (c3 is untagged)", Some(Tag::vid(10)), C3.mac, &[]),
    ];
    for (rule, tag, dst, want) in rows {
        let k = marker();
        let plain = frame(dst, wm, &k, 100);
        let f = tag.map_or(plain.clone(), |t| push_tag(&plain, t));
        let s = taps.send("trunk", &f, &k);
        let expected = if want.is_empty() {
            "no container; the host".to_string()
        } else {
            format!("{} only, untagged", want.join(" "))
        };
        let delivered = want.iter().all(|c| s.exact(c, &[], &plain));
        let host = !want.is_empty() || s.one("parent").is_some_and(|r| r.wire == f);
        rep.check(rule, &expected, fmt(&s), s.containers(want) && delivered && host);
    }
    let rows: Vec<(&str, &Ctr, [u8; 6], &[&str], Vec<Tag>)> = vec![
        ("c1 -> c2's MAC (v10 -> v20)", &C1, C2.mac, &[], vec![Tag::vid(10)]),
        ("c1 -> c3's MAC (v10 -> untagged)", &C1, C3.mac, &[], vec![Tag::vid(10)]),
        ("c3 -> c1's MAC (untagged -> v10)", &C3, C1.mac, &[], vec![]),
        ("c2 -> c4's MAC (v20 -> v10)", &C2, C4.mac, &[], vec![Tag::vid(20)]),
        ("c1 -> c4's MAC (both v10)", &C1, C4.mac, &["c4"], vec![]),
    ];
    for (rule, from, dst, want, trunk_tags) in rows {
        let k = marker();
        let f = frame(dst, from.mac, &k, 100);
        let s = taps.send(&format!("c{}", from.i), &f, &k);
        let (expected, trunk_ok) = if want.is_empty() {
            (format!("no container; the wire, {}", tags_str(&trunk_tags)), s.exact("trunk", &trunk_tags, &f))
        } else {
            (format!("{} only, not the wire", want.join(" ")), s.n("trunk") == 0)
        };
        let delivered = want.iter().all(|c| s.exact(c, &[], &f));
        rep.check(rule, &expected, fmt(&s), s.containers(want) && delivered && trunk_ok);
    }
    rep.finish(Some(w));
}

/// Broadcasts stay in their VLAN: from the wire (tagged, untagged, an unknown VLAN), from
/// containers (leaving the parent tagged) and from the hosts through their taggers.
fn check_broadcast(w: &World) {
    let taps = Taps::open(w);
    let mut rep = Report::new(format!("broadcast confinement, backend {:?}", w.backend));
    let wm = wire_mac(w);
    let mcast = [0x01, 0x00, 0x5e, 0x12, 0x00, 0x0a];
    let rows: Vec<(&str, Option<Tag>, [u8; 6], &[&str])> = vec![
        ("wire broadcast vid 10", Some(Tag::vid(10)), BROADCAST, &["c1", "c4"]),
        ("wire multicast vid 10", Some(Tag::vid(10)), mcast, &["c1", "c4"]),
        ("wire broadcast vid 20", Some(Tag::vid(20)), BROADCAST, &["c2"]),
        ("wire broadcast untagged", None, BROADCAST, &["c3"]),
        ("wire broadcast vid 30 (no network)", Some(Tag::vid(30)), BROADCAST, &[]),
    ];
    for (rule, tag, dst, want) in rows {
        let k = marker();
        let plain = frame(dst, wm, &k, 100);
        let f = tag.map_or(plain.clone(), |t| push_tag(&plain, t));
        let s = taps.send("trunk", &f, &k);
        let delivered = want.iter().all(|c| s.exact(c, &[], &plain));
        let expected =
            if want.is_empty() { "no container".to_string() } else { format!("{} only, untagged", want.join(" ")) };
        rep.check(rule, &expected, &s, s.containers(want) && delivered);
    }
    // (from, want containers, trunk tags, which host hears it)
    let rows: Vec<(&Ctr, &[&str], Vec<Tag>, &str)> = vec![
        (&C1, &["c4"], vec![Tag::vid(10)], "h10"),
        (&C4, &["c1"], vec![Tag::vid(10)], "h10"),
        (&C2, &[], vec![Tag::vid(20)], "h20"),
        (&C3, &[], vec![], "h0"),
    ];
    for (from, want, tags, host) in rows {
        let k = marker();
        let f = frame(BROADCAST, from.mac, &k, 100);
        let me = format!("c{}", from.i);
        let s = taps.send(&me, &f, &k);
        let hosts_ok = ["h10", "h20", "h0"].iter().all(|h| s.n(h) == usize::from(*h == host));
        let delivered = want.iter().all(|c| s.exact(c, &[], &f));
        rep.check(
            &format!("{me} ({}) broadcast", from.net.name),
            &format!(
                "{} + wire {} + {host} only",
                if want.is_empty() { "no container".into() } else { want.join(" ") },
                tags_str(&tags)
            ),
            &s,
            s.containers(want) && delivered && s.exact("trunk", &tags, &f) && hosts_ok && s.exact(host, &[], &f),
        );
    }
    for (host, want) in [("h10", &["c1", "c4"][..]), ("h20", &["c2"][..]), ("h0", &["c3"][..])] {
        let k = marker();
        let f = frame(BROADCAST, w.host(host).mac(), &k, 100);
        let s = taps.send(host, &f, &k);
        let delivered = want.iter().all(|c| s.exact(c, &[], &f));
        rep.check(
            &format!("{host} broadcast through its access port"),
            &format!("{} only, untagged", want.join(" ")),
            &s,
            s.containers(want) && delivered,
        );
    }
    rep.finish(Some(w));
}

/// The tag is pushed and popped exactly: one tag, VID of the network, PCP 0, DEI 0, TPID 0x8100,
/// the rest byte for byte; the untagged network passes frames unchanged.
fn check_exactness(w: &World) {
    let taps = Taps::open(w);
    let mut rep = Report::new(format!("tag push/pop exactness, backend {:?}", w.backend));
    let wm = wire_mac(w);
    for c in [&C1, &C2, &C3] {
        let want: Vec<Tag> = c.net.vid.map(Tag::vid).into_iter().collect();
        for len in [200, 1400] {
            let k = marker();
            let f = frame(OUTSIDE, c.mac, &k, len);
            let s = taps.send(&format!("c{}", c.i), &f, &k);
            rep.check(
                &format!("c{} ({}) -> wire, {len} B", c.i, c.net.name),
                &format!("trunk: {}, same bytes", tags_str(&want)),
                &s,
                s.exact("trunk", &want, &f) && s.containers(&[]),
            );
            let k = marker();
            let plain = frame(c.mac, wm, &k, len);
            let f = c.net.vid.map_or(plain.clone(), |v| push_tag(&plain, Tag::vid(v)));
            let me = format!("c{}", c.i);
            let s = taps.send("trunk", &f, &k);
            let got = s.one(&me);
            rep.check(
                &format!("wire {} -> c{}, {} B", tags_str(&want), c.i, f.len()),
                &format!("{me}: untagged, same bytes, no aux tag"),
                &s,
                s.containers(&[&me]) && got.is_some_and(|r| r.wire == plain && r.aux.is_none()),
            );
        }
    }
    rep.finish(Some(w));
}

/// Frames of a VLAN without a network, and of a known VLAN to an unknown MAC, go to the host stack
/// unchanged (tag included) and to no container.
fn check_unknown_vlan(w: &World) {
    let taps = Taps::open(w);
    let mut rep = Report::new(format!("unknown VLAN, backend {:?}", w.backend));
    let wm = wire_mac(w);
    let rows: Vec<(&str, Tag, [u8; 6])> = vec![
        ("wire vid 30 (no network) -> c1's MAC", Tag::vid(30), C1.mac),
        ("wire vid 30 (no network) -> c3's MAC", Tag::vid(30), C3.mac),
        ("wire vid 30 broadcast", Tag::vid(30), BROADCAST),
        ("wire vid 10 -> unknown MAC", Tag::vid(10), OUTSIDE),
        ("wire vid 4094 pcp 7 -> c2's MAC", Tag::vid(4094).with_pcp(7), C2.mac),
    ];
    for (rule, tag, dst) in rows {
        let k = marker();
        let f = tagged_frame(dst, wm, tag, &k, 100);
        let s = taps.send("trunk", &f, &k);
        rep.check(
            rule,
            &format!("host only, still {tag}"),
            &s,
            s.containers(&[]) && s.one("parent").is_some_and(|r| r.wire == f && r.aux == Some(tag)),
        );
    }
    rep.finish(Some(w));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn isolation_reference() {
    require_root!();
    check_isolation(&World::new(VBackend::Reference, true));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn isolation_xmacvlan() {
    require_root!();
    check_isolation(&World::new(VBackend::Xmacvlan, true));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn broadcast_confinement_reference() {
    require_root!();
    check_broadcast(&World::new(VBackend::Reference, true));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn broadcast_confinement_xmacvlan() {
    require_root!();
    check_broadcast(&World::new(VBackend::Xmacvlan, true));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn tag_push_pop_exactness_reference() {
    require_root!();
    check_exactness(&World::new(VBackend::Reference, false));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn tag_push_pop_exactness_xmacvlan() {
    require_root!();
    check_exactness(&World::new(VBackend::Xmacvlan, false));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn unknown_vlan_goes_to_the_host_reference() {
    require_root!();
    check_unknown_vlan(&World::new(VBackend::Reference, false));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn unknown_vlan_goes_to_the_host_xmacvlan() {
    require_root!();
    check_unknown_vlan(&World::new(VBackend::Xmacvlan, false));
}

// ---------------------------------------------------------------------------------------------
// xmacvlan's own contract: PCP policy, validation, dotted names, inspect
// ---------------------------------------------------------------------------------------------

/// Runs the CLI with one whitespace-separated command line (no argument contains a space).
fn cli_words(lab: &Lab, cmd: &str) -> String {
    lab.cli_ok(&cmd.split_whitespace().collect::<Vec<_>>())
}

fn create(lab: &Lab, name: &str, subnet: &str, parent: &str, extra: &[&str]) {
    let parent = format!("parent={parent}");
    let mut args = vec!["network", "create", "-d", "macvlan", "--subnet", subnet, "-o", &parent];
    args.extend_from_slice(extra);
    args.push(name);
    lab.cli_ok(&args);
}

fn connect(lab: &Lab, net: &str, ns: &Netns, ip: &str, mac: [u8; 6]) {
    lab.cli_ok(&["network", "connect", "--ip", ip, "--mac-address", &mac_str(mac), net, &ns.path()]);
}

fn inspect(lab: &Lab, net: &str) -> Value {
    serde_json::from_str(&lab.cli_ok(&["network", "inspect", "--format", "json", net])).expect("inspect JSON")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `-o vlan_pcp=strip` (the default) pops a tag with PCP ≠ 0 entirely and counts it in the
/// endpoint's `pcp_stripped`; `-o vlan_pcp=keep` turns it into a priority tag (VID 0, same PCP,
/// DEI 0) and counts `pcp_kept`; PCP 0 frames are popped under both, counting neither. Out of the
/// parent, a priority-tagged container frame keeps its PCP under the network's VID, an untagged
/// one gets PCP 0.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn pcp_strip_and_keep_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    let (m1, m2, m3) =
        ([2, 0x42, 0xc6, 0x12, 0x0a, 0x21], [2, 0x42, 0xc6, 0x12, 0x0b, 0x22], [2, 0x42, 0xc6, 0x12, 0x0c, 0x23]);
    create(&lab, "v10", "198.18.10.0/24", "eth1.10", &[]);
    create(&lab, "v11", "198.18.11.0/24", "eth1.11", &["-o", "vlan_pcp=keep"]);
    create(&lab, "v12", "198.18.12.0/24", "eth1.12", &["-o", "vlan_pcp=strip"]);
    connect(&lab, "v10", lab.c(1), "198.18.10.21", m1);
    connect(&lab, "v11", lab.c(2), "198.18.11.22", m2);
    connect(&lab, "v12", lab.c(3), "198.18.12.23", m3);
    let trunk = VlanSocket::open(&lab.wire, "wire0");
    let c: Vec<VlanSocket> = (1..=3).map(|i| VlanSocket::open(lab.c(i), "eth0")).collect();
    let wm = lab.wire.mac("wire0");
    let counters = |mac| {
        let s = lab.stats();
        (endpoint_counter(&s, mac, "pcp_stripped"), endpoint_counter(&s, mac, "pcp_kept"))
    };
    let mut rep = Report::new("PCP policy (xmacvlan)");

    // From the wire: (rule, VID, PCP, receiving container, expected tags, expected counter deltas).
    let rows: Vec<(&str, u16, u8, usize, [u8; 6], Vec<Tag>, (u64, u64))> = vec![
        ("vid 10 pcp 5 -> c1 (default: strip)", 10, 5, 0, m1, vec![], (1, 0)),
        ("vid 12 pcp 5 -> c3 (vlan_pcp=strip)", 12, 5, 2, m3, vec![], (1, 0)),
        ("vid 11 pcp 5 -> c2 (vlan_pcp=keep)", 11, 5, 1, m2, vec![Tag::priority(5)], (0, 1)),
        ("vid 10 pcp 0 -> c1 (strip)", 10, 0, 0, m1, vec![], (0, 0)),
        ("vid 11 pcp 0 -> c2 (keep)", 11, 0, 1, m2, vec![], (0, 0)),
        ("vid 11 pcp 7 -> c2 (keep)", 11, 7, 1, m2, vec![Tag::priority(7)], (0, 1)),
    ];
    for (rule, vid, pcp, idx, mac, want, (ds, dk)) in rows {
        let (s0, k0) = counters(mac);
        let k = marker();
        let plain = frame(mac, wm, &k, 200);
        trunk.send(&push_tag(&plain, Tag::vid(vid).with_pcp(pcp)));
        std::thread::sleep(SETTLE);
        let got = c[idx].collect(&k, Duration::ZERO);
        let others: usize = (0..3).filter(|j| *j != idx).map(|j| c[j].collect(&k, Duration::ZERO).len()).sum();
        let (s1, k1) = counters(mac);
        let (gs, gk) = (s1 - s0, k1 - k0);
        rep.check(
            rule,
            &format!("{}; stripped +{ds} kept +{dk}", tags_str(&want)),
            format!(
                "{} frame(s) [{}]; stripped +{gs} kept +{gk}",
                got.len(),
                got.iter().map(|r| r.tags_str()).collect::<Vec<_>>().join(";")
            ),
            got.len() == 1
                && got[0].tags() == want
                && got[0].untagged() == plain
                && others == 0
                && (gs, gk) == (ds, dk),
        );
    }

    // Out of the parent.
    let rows: Vec<(&str, usize, [u8; 6], Option<Tag>, Tag)> = vec![
        ("c1 priority-tagged pcp 3 -> wire", 0, m1, Some(Tag::priority(3)), Tag::vid(10).with_pcp(3)),
        ("c1 untagged -> wire", 0, m1, None, Tag::vid(10)),
        ("c2 (keep) priority-tagged pcp 3 -> wire", 1, m2, Some(Tag::priority(3)), Tag::vid(11).with_pcp(3)),
        ("c2 (keep) untagged -> wire", 1, m2, None, Tag::vid(11)),
    ];
    for (rule, idx, mac, tag, want) in rows {
        let k = marker();
        let plain = frame(OUTSIDE, mac, &k, 200);
        c[idx].send(&tag.map_or(plain.clone(), |t| push_tag(&plain, t)));
        std::thread::sleep(SETTLE);
        let got = trunk.collect(&k, Duration::ZERO);
        rep.check(
            rule,
            &format!("trunk: exactly {want}"),
            format!("{} [{}]", got.len(), got.iter().map(|r| r.tags_str()).collect::<Vec<_>>().join(";")),
            got.len() == 1 && got[0].tags() == [want] && got[0].untagged() == plain,
        );
    }
    rep.finish(None);
}

/// True when `err` names `value`: as a substring, or for a bare number/word as a whole token.
fn names(err: &str, value: &str) -> bool {
    if value.chars().all(|c| c.is_ascii_alphanumeric()) {
        err.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t == value)
    } else {
        err.contains(value)
    }
}

/// Bad VLAN parents are refused with a message naming the bad value, and leave nothing behind.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn bad_vlan_parents_are_refused_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    create(&lab, "v10", "198.18.10.0/24", "eth1.10", &[]);
    let ls_before = lab.cli_ok(&["network", "ls", "--format", "json"]);
    let links_before = sorted(lab.dp.links());
    // (parent option, extra options, what the message must name: every one of these)
    let cases: Vec<(&str, &[&str], &[&str])> = vec![
        ("eth1.0", &[], &["0", "4094"]),
        ("eth1.4095", &[], &["4095", "4094"]),
        ("eth1.99999", &[], &["99999", "4094"]),
        ("eth1.", &[], &["eth1."]),
        ("eth1.abc", &[], &["abc"]),
        (".10", &[], &[".10"]),
        ("nosuch.10", &[], &["nosuch"]),
        ("eth1.20", &["-o", "vlan_pcp=bogus"], &["bogus"]),
    ];
    let mut rep = Report::new("bad VLAN parents (xmacvlan)");
    for (parent, extra, needles) in cases {
        let p = format!("parent={parent}");
        let mut args = vec!["network", "create", "-d", "macvlan", "--subnet", "198.18.20.0/24", "-o", &p];
        args.extend_from_slice(extra);
        args.push("bad");
        let out = lab.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let named = needles.iter().all(|n| names(&err, n));
        let ls_same = lab.cli_ok(&["network", "ls", "--format", "json"]) == ls_before;
        let links_same = sorted(lab.dp.links()) == links_before;
        rep.check(
            &format!("-o {p} {}", extra.join(" ")),
            &format!("refused naming {}; nothing left", needles.join(" & ")),
            format!("exit {:?}: {err}", out.status.code()),
            !out.status.success() && named && ls_same && links_same,
        );
    }
    // The failures poisoned nothing: a good VLAN network can still be created and removed.
    let good = lab.cli(&["network", "create", "--subnet", "198.18.20.0/24", "-o", "parent=eth1.20", "v20"]);
    rep.check(
        "-o parent=eth1.20 after the failures",
        "created",
        format!("{:?}", good.status.code()),
        good.status.success(),
    );
    let _ = lab.cli(&["network", "rm", "--force", "v20"]);
    rep.finish(None);
}

/// An existing interface whose name contains a dot is a plain, untagged parent, not a VLAN.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn dotted_interface_name_is_a_plain_parent_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    ok_words(&format!("ip link add eth2.7 netns {} type veth peer name w27 netns {}", lab.dp.name, lab.wire.name));
    ok(&["ip", "-n", &lab.wire.name, "addr", "add", "198.18.7.254/24", "dev", "w27"]);
    ok(&["ip", "-n", &lab.wire.name, "link", "set", "w27", "up"]);
    ok(&["ip", "-n", &lab.dp.name, "link", "set", "eth2.7", "up"]);
    let _d = Daemon::start(&lab);
    let m = [2, 0x42, 0xc6, 0x12, 0x07, 0x11];
    create(&lab, "dotted", "198.18.7.0/24", "eth2.7", &["--gateway", "198.18.7.254"]);
    connect(&lab, "dotted", lab.c(1), "198.18.7.11", m);
    let w27 = VlanSocket::open(&lab.wire, "w27");
    let c1 = VlanSocket::open(lab.c(1), "eth0");
    let wm = lab.wire.mac("w27");
    let mut rep = Report::new("a dotted interface name as a plain parent (xmacvlan)");

    let k = marker();
    let f = frame(m, wm, &k, 200);
    w27.send(&f);
    std::thread::sleep(SETTLE);
    let got = c1.collect(&k, Duration::ZERO);
    rep.check("wire untagged -> c1", "c1: untagged, same bytes", got.len(), got.len() == 1 && got[0].wire == f);
    let k = marker();
    w27.send(&tagged_frame(m, wm, Tag::vid(7), &k, 200));
    std::thread::sleep(SETTLE);
    let got = c1.collect(&k, Duration::ZERO);
    rep.check("wire vid 7 -> c1 (not a VLAN network)", "not delivered", got.len(), got.is_empty());
    let k = marker();
    let f = frame(OUTSIDE, m, &k, 200);
    c1.send(&f);
    std::thread::sleep(SETTLE);
    let got = w27.collect(&k, Duration::ZERO);
    rep.check(
        "c1 -> wire",
        "untagged, same bytes",
        format!("{} [{}]", got.len(), got.iter().map(|r| r.tags_str()).collect::<Vec<_>>().join(";")),
        got.len() == 1 && got[0].wire == f,
    );
    let p = lab.wire.exec(&["ping", "-n", "-c", "1", "-W", "2", "198.18.7.11"]).status.success();
    rep.check("ping wire -> c1", "answered", p, p);
    let v = inspect(&lab, "dotted");
    rep.check("inspect parent", "\"eth2.7\"", &v["parent"], v["parent"] == "eth2.7");
    rep.check("inspect vlan", "none (null, absent or 0)", &v["vlan"], v["vlan"].is_null() || v["vlan"] == 0);
    rep.finish(None);
}

/// `network inspect` shows the VLAN and the parent as given; removing VLAN networks leaves the
/// parent as it was.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn inspect_shows_the_vlan_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    let _d = Daemon::start(&lab);
    create(&lab, "v10", "198.18.10.0/24", "eth1.10", &[]);
    create(&lab, "untagged", "198.18.30.0/24", "eth1", &[]);
    connect(&lab, "v10", lab.c(1), "198.18.10.11", C1.mac);
    let v = inspect(&lab, "v10");
    assert_eq!(v["vlan"], 10, "network inspect v10: {v:#}");
    assert_eq!(v["parent"], "eth1.10", "network inspect v10: {v:#}");
    assert_eq!(v["status"], "active", "network inspect v10: {v:#}");
    let u = inspect(&lab, "untagged");
    assert_eq!(u["parent"], "eth1", "{u:#}");
    assert!(u["vlan"].is_null() || u["vlan"] == 0, "an untagged network has no vlan: {u:#}");
    let table = lab.cli_ok(&["network", "inspect", "--format", "table", "v10"]);
    assert!(table.contains("eth1.10"), "{table}");
    // `network ls --format json` lists the same network objects.
    let ls: Value = serde_json::from_str(&lab.cli_ok(&["network", "ls", "--format", "json"])).expect("ls JSON");
    let entry = ls.as_array().unwrap().iter().find(|n| n["name"] == "v10").cloned().expect("v10 in ls");
    assert_eq!((&entry["vlan"], &entry["parent"]), (&Value::from(10), &Value::from("eth1.10")), "{entry:#}");
    lab.cli_ok(&["network", "rm", "--force", "v10"]);
    lab.cli_ok(&["network", "rm", "--force", "untagged"]);
    assert_eq!(lab.dp.links(), ["lo", "eth1"], "everything the daemon created is gone");
    assert!(lab.dp.xdp_links().is_empty(), "no XDP left: {:?}", lab.dp.xdp_links());
}

/// A VLAN network and its endpoint come back after a daemon restart: the VLAN is part of the
/// network's saved state, and tagged frames reach the endpoint again.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn vlan_network_survives_a_restart_xmacvlan() {
    require_root!();
    let lab = Lab::new();
    let mut d = Daemon::start(&lab);
    create(&lab, "v10", "198.18.10.0/24", "eth1.10", &["-o", "vlan_pcp=keep"]);
    connect(&lab, "v10", lab.c(1), C1.ip, C1.mac);
    let before = inspect(&lab, "v10");
    assert!(d.stop(), "clean stop: {}", d.log());
    let _d = Daemon::start(&lab);
    let after = inspect(&lab, "v10");
    assert_eq!(after["vlan"], 10, "{after:#}");
    assert_eq!(after["parent"], "eth1.10", "{after:#}");
    assert_eq!(after["endpoints"], before["endpoints"], "endpoints after the restart");
    let trunk = VlanSocket::open(&lab.wire, "wire0");
    let c1 = VlanSocket::open(lab.c(1), "eth0");
    let wm = lab.wire.mac("wire0");
    // The policy survived too: a PCP 5 frame arrives priority-tagged (keep).
    let k = marker();
    let plain = frame(C1.mac, wm, &k, 200);
    trunk.send(&push_tag(&plain, Tag::vid(10).with_pcp(5)));
    std::thread::sleep(SETTLE);
    let got = c1.collect(&k, Duration::ZERO);
    assert!(
        got.len() == 1 && got[0].tags() == [Tag::priority(5)] && got[0].untagged() == plain,
        "wire vid 10 pcp 5 -> c1 after the restart: {:?}",
        got.iter().map(|r| r.tags_str()).collect::<Vec<_>>()
    );
    let k = marker();
    let f = frame(OUTSIDE, C1.mac, &k, 200);
    c1.send(&f);
    std::thread::sleep(SETTLE);
    let got = trunk.collect(&k, Duration::ZERO);
    assert!(
        got.len() == 1 && got[0].tags() == [Tag::vid(10)] && got[0].untagged() == f,
        "c1 -> wire after the restart: {:?}",
        got.iter().map(|r| r.tags_str()).collect::<Vec<_>>()
    );
}
