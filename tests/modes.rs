//! End-to-end: every macvlan mode (bridge, private, vepa, passthru, source with and without nodst),
//! kernel macvlan against xmacvlan in one lab. For each mode the same marked frames go once through
//! real kernel macvlan children of that mode and once through an xmacvlan network of that mode;
//! who received each frame is printed as a table (kernel/xmacvlan copies per receiver), and both
//! must deliver every frame to the same places the same number of times.
//!
//! The lab: the parent eth1 (namespace dp, where the daemon runs) is plugged into port wire0 of a
//! Linux bridge br0 (namespace wire) that stands for the external switch; its other port leads to
//! the outside host W. The bridge does not learn: static FDB entries put every MAC behind eth1
//! (the endpoints', the parent's) on wire0 and W's on W's port, so a frame goes where a switch that
//! has learned them would send it, and unknown or broadcast destinations flood. wire0's `hairpin`
//! flag is the switch's reflective relay (what VEPA relies on): with it on, a frame from eth1 to a
//! MAC behind eth1 goes back down wire0, and so does every flood from eth1.
//!
//! Receivers: A and B (endpoints of the mode under test, in c1 and c2), C (a bridge-mode endpoint in
//! c3; for xmacvlan a second network on the same parent), W (the outside host) and H (eth1's host
//! stack: a socket bound to the test EtherType, which sees only what macvlan's rx_handler or the XDP
//! program lets through to the stack, unlike an ETH_P_ALL tap that sees every arriving frame).
//!
//! `xmacvlan_vs_kernel_*` run the kernel half, check it against drivers/net/macvlan.c (the
//! "macvlan.c" column: proof that the lab observes the right thing), then the xmacvlan half, and
//! require xmacvlan to match what the kernel did. Every MTU is the parent's, so these tables hold no
//! documented deliberate difference. `ping_through_a_hairpin_*` show what the frame tables mean for
//! IP (vepa endpoints reach each other through the switch, private ones do not: their ARP comes back
//! to the sender alone), and `passthru_mac_*` the parent MAC a passthru endpoint takes and gives back.
//!
//! Needs root; run serially (`make test` passes --test-threads=1): each test runs its own lab.

mod support;

use std::time::Duration;

use support::*;

const SETTLE: Duration = Duration::from_millis(300);
/// Subnets of the xmacvlan networks (mode under test; the bridge-mode one beside it). The frames
/// are raw: addresses only satisfy `network connect`.
const MODE_SUBNET: &str = "198.18.1.0/24";
const BRIDGE_SUBNET: &str = "198.18.2.0/24";
/// Source MACs the outside host sends from in source mode; S goes on A's allow-list first.
const S: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x51];
const T: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x52];
const U: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x53];
/// Where a probe frame carries its index (after support::frame's 8-byte marker).
const INDEX_AT: usize = 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bridge,
    Private,
    Vepa,
    Passthru,
    Source { nodst: bool },
}

impl Mode {
    /// The name `ip link … macvlan mode` and `-o macvlan_mode=` take.
    fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Passthru => "passthru",
            Mode::Source { .. } => "source",
        }
    }

    fn nodst(self) -> bool {
        matches!(self, Mode::Source { nodst: true })
    }

    /// The receivers (the table's columns). Passthru is exclusive per parent: A alone. Source mode
    /// has A and the bridge-mode C.
    fn receivers(self) -> &'static [Who] {
        match self {
            Mode::Passthru => &[Who::A, Who::W, Who::H],
            Mode::Source { .. } => &[Who::A, Who::C, Who::W, Who::H],
            _ => &[Who::A, Who::B, Who::C, Who::W, Who::H],
        }
    }

    /// Endpoints in the mode under test: (container, MAC; None = passthru's, the parent's own).
    fn endpoints(self) -> Vec<(usize, Option<[u8; 6]>)> {
        match self {
            Mode::Passthru => vec![(1, None)],
            Mode::Source { .. } => vec![(1, Some(container_mac(1)))],
            _ => vec![(1, Some(container_mac(1))), (2, Some(container_mac(2)))],
        }
    }

    /// Whether the bridge-mode endpoint C (container 3) is in the lab.
    fn has_c(self) -> bool {
        self.receivers().contains(&Who::C)
    }

    fn title(self) -> String {
        let flags = if self.nodst() { " nodst" } else { "" };
        let layout = match self {
            Mode::Passthru => "A: passthru (alone on the parent)".to_string(),
            Mode::Source { .. } => format!("A: source{flags}; C: bridge"),
            _ => format!("A, B: {}; C: bridge", self.name()),
        };
        format!("macvlan mode {}{flags} ({layout}; W: outside host; H: eth1's host stack)", self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    A,
    B,
    C,
    W,
    H,
}

impl Who {
    fn letter(self) -> &'static str {
        match self {
            Who::A => "A",
            Who::B => "B",
            Who::C => "C",
            Who::W => "W",
            Who::H => "H",
        }
    }
}

/// support::Lab (dp with eth1, wire, containers c1..c3) plus the outside host and the switch.
struct ModeLab {
    lab: Lab,
    outside: Netns,
    parent_mac: [u8; 6],
    w_mac: [u8; 6],
}

impl ModeLab {
    fn new() -> Self {
        let lab = Lab::new();
        let outside = Netns::new(format!("{}-w", lab.tag));
        let wire = &lab.wire.name;
        // wire0 becomes a switch port: no address of its own.
        ok_words(&format!("ip -n {wire} addr flush dev wire0"));
        ok_words(&format!("ip -n {wire} link add br0 type bridge"));
        ok_words(&format!(
            "ip -n {wire} link add wh0 mtu {PARENT_MTU} type veth peer name eth0 netns {} mtu {PARENT_MTU}",
            outside.name
        ));
        for port in ["wire0", "wh0"] {
            ok_words(&format!("ip -n {wire} link set {port} master br0"));
            ok_words(&format!("ip -n {wire} link set dev {port} type bridge_slave learning off hairpin off"));
            ok_words(&format!("ip -n {wire} link set {port} up"));
        }
        ok_words(&format!("ip -n {wire} link set br0 up"));
        ok_words(&format!("ip -n {} link set eth0 up", outside.name));
        let parent_mac = lab.dp.mac("eth1");
        let w_mac = outside.mac("eth0");
        let fdb = |mac: [u8; 6], port: &str| {
            ok_words(&format!("bridge -n {wire} fdb replace {} dev {port} master static", mac_str(mac)));
        };
        for mac in [parent_mac, container_mac(1), container_mac(2), container_mac(3)] {
            fdb(mac, "wire0");
        }
        fdb(w_mac, "wh0");
        ModeLab { lab, outside, parent_mac, w_mac }
    }

    fn hairpin(&self, on: bool) {
        let state = if on { "on" } else { "off" };
        ok_words(&format!("ip -n {} link set dev wire0 type bridge_slave hairpin {state}", self.lab.wire.name));
    }

    /// A's MAC: a passthru endpoint has the parent's.
    fn a_mac(&self, mode: Mode) -> [u8; 6] {
        if mode == Mode::Passthru {
            self.parent_mac
        } else {
            container_mac(1)
        }
    }
}

/// One frame of a step: sent by `from`, expected where drivers/net/macvlan.c delivers it.
struct Probe {
    name: &'static str,
    from: Who,
    dst: [u8; 6],
    src: [u8; 6],
    /// Receiver letters, "-" for nobody.
    expect: &'static str,
}

/// A batch of frames sent after the lab is put in one state.
struct Step {
    label: String,
    hairpin: bool,
    /// A change of A's source-mode allow-list made first: `macaddr OP MACS`.
    macaddr: Option<(&'static str, Vec<[u8; 6]>)>,
    probes: Vec<Probe>,
}

/// Copies per probe per receiver (in Mode::receivers order), per step.
type Seen = Vec<Vec<Vec<usize>>>;

fn steps(mode: Mode, ml: &ModeLab) -> Vec<Step> {
    match mode {
        Mode::Bridge | Mode::Private | Mode::Vepa => sibling_steps(mode, ml),
        Mode::Passthru => passthru_steps(ml),
        Mode::Source { nodst } => source_steps(nodst, ml),
    }
}

/// Bridge, private, vepa: A and B in that mode, C in bridge mode, hairpin off then on.
///
/// What the kernel does here that ip-link(8)'s "private: no communication even if the external
/// switch supports hairpin mode" does not suggest:
/// - private A -> B (and A -> C, C -> A) arrives through the hairpin: macvlan_handle_frame's
///   unicast path (`vlan = macvlan_hash_lookup(port, eth->h_dest)`) never looks at the sender's
///   mode; private only restricts broadcast.
/// - a private endpoint's broadcast comes back to the sender itself through the hairpin, and to
///   nobody else, not even the host: macvlan_handle_frame, `if (src && src->mode !=
///   MACVLAN_MODE_VEPA && src->mode != MACVLAN_MODE_BRIDGE) { /* forward to original port. */
///   vlan = src; … RX_HANDLER_CONSUMED`.
/// - a bridge endpoint's broadcast reflected back reaches the host (RX_HANDLER_PASS) and vepa
///   endpoints only (macvlan_multicast_rx: "bridge ports already saw the frame on the way out").
fn sibling_steps(mode: Mode, ml: &ModeLab) -> Vec<Step> {
    let (a, b, c, w, p) = (container_mac(1), container_mac(2), container_mac(3), ml.w_mac, ml.parent_mac);
    let col = match mode {
        Mode::Bridge => 0,
        Mode::Private => 1,
        Mode::Vepa => 2,
        _ => unreachable!("sibling modes only"),
    };
    type Row = (&'static str, Who, [u8; 6], [u8; 6], [[&'static str; 2]; 3]);
    #[rustfmt::skip]
    let table: [Row; 10] = [
        //                                       bridge: hairpin off, on   private                vepa
        ("W -> A",         Who::W, a, w,         [["A", "A"],              ["A", "A"],            ["A", "A"]]),
        ("W -> unknown",   Who::W, OUTSIDE, w,   [["H", "H"],              ["H", "H"],            ["H", "H"]]),
        ("W -> broadcast", Who::W, BROADCAST, w, [["A B C H", "A B C H"],  ["A B C H", "A B C H"], ["A B C H", "A B C H"]]),
        ("A -> B",         Who::A, b, a,         [["B", "B"],              ["-", "B"],            ["-", "B"]]),
        ("A -> C",         Who::A, c, a,         [["C", "C"],              ["-", "C"],            ["-", "C"]]),
        ("C -> A",         Who::C, a, c,         [["A", "A"],              ["-", "A"],            ["-", "A"]]),
        ("A -> W",         Who::A, w, a,         [["W", "W"],              ["W", "W"],            ["W", "W"]]),
        ("A -> parent",    Who::A, p, a,         [["-", "H"],              ["-", "H"],            ["-", "H"]]),
        ("A -> broadcast", Who::A, BROADCAST, a, [["B C W", "B C W H"],    ["W", "A W"],          ["W", "B C W H"]]),
        ("C -> broadcast", Who::C, BROADCAST, c, [["A B W", "A B W H"],    ["W", "W H"],          ["W", "A B W H"]]),
    ];
    off_then_on(|hairpin| {
        let probe = |&(name, from, dst, src, expect): &Row| Probe {
            name,
            from,
            dst,
            src,
            expect: expect[col][hairpin as usize],
        };
        table.iter().map(probe).collect()
    })
}

/// Passthru: A alone with the parent's MAC gets every unicast (macvlan_handle_frame:
/// `vlan = list_first_or_null_rcu(&port->vlans, …)`), so its own unicast to an unknown MAC comes
/// back through the hairpin; its broadcast comes back to it alone (the "forward to original port"
/// branch, as for private).
fn passthru_steps(ml: &ModeLab) -> Vec<Step> {
    let (a, w) = (ml.parent_mac, ml.w_mac);
    type Row = (&'static str, Who, [u8; 6], [u8; 6], [&'static str; 2]);
    #[rustfmt::skip]
    let table: [Row; 6] = [
        //                                                  hairpin off, on
        ("W -> A (parent's MAC)", Who::W, a, w,             ["A", "A"]),
        ("W -> unknown",          Who::W, OUTSIDE, w,       ["A", "A"]),
        ("W -> broadcast",        Who::W, BROADCAST, w,     ["A H", "A H"]),
        ("A -> W",                Who::A, w, a,             ["W", "W"]),
        ("A -> unknown",          Who::A, OUTSIDE, a,       ["W", "A W"]),
        ("A -> broadcast",        Who::A, BROADCAST, a,     ["W", "A W"]),
    ];
    off_then_on(|hairpin| {
        let probe =
            |&(name, from, dst, src, expect): &Row| Probe { name, from, dst, src, expect: expect[hairpin as usize] };
        table.iter().map(probe).collect()
    })
}

/// The same frames with the switch's hairpin off, then on.
fn off_then_on(probes: impl Fn(bool) -> Vec<Probe>) -> Vec<Step> {
    [false, true]
        .into_iter()
        .map(|hairpin| Step { label: hairpin_label(hairpin), hairpin, macaddr: None, probes: probes(hairpin) })
        .collect()
}

fn hairpin_label(on: bool) -> String {
    format!("hairpin {}", if on { "on" } else { "off" })
}

/// Source mode: A takes frames by their source MAC (macvlan_forward_source), a copy before anything
/// else; with nodst the frame is consumed there. A is never matched by its own MAC as a destination
/// (`if (!vlan || vlan->mode == MACVLAN_MODE_SOURCE) return RX_HANDLER_PASS`: the host gets it) and
/// is not in the broadcast flood (macvlan_multicast_rx's mode mask has no SOURCE). Its reflected
/// broadcast comes back to it alone, as for private.
fn source_steps(nodst: bool, ml: &ModeLab) -> Vec<Step> {
    let (a, c, w) = (container_mac(1), container_mac(3), ml.w_mac);
    // From a listed source: copied to A; consumed there with nodst.
    let listed = |plain: &'static str| if nodst { "A" } else { plain };
    let first = |hairpin: bool| {
        #[rustfmt::skip]
        let probes = vec![
            Probe { name: "S -> unknown",   from: Who::W, dst: OUTSIDE,   src: S, expect: listed("A H") },
            Probe { name: "S -> C",         from: Who::W, dst: c,         src: S, expect: listed("A C") },
            Probe { name: "S -> A",         from: Who::W, dst: a,         src: S, expect: listed("A H") },
            Probe { name: "S -> broadcast", from: Who::W, dst: BROADCAST, src: S, expect: listed("A C H") },
            Probe { name: "W -> unknown",   from: Who::W, dst: OUTSIDE,   src: w, expect: "H" },
            Probe { name: "W -> C",         from: Who::W, dst: c,         src: w, expect: "C" },
            Probe { name: "W -> A",         from: Who::W, dst: a,         src: w, expect: "H" },
            Probe { name: "W -> broadcast", from: Who::W, dst: BROADCAST, src: w, expect: "C H" },
            Probe { name: "A -> W",         from: Who::A, dst: w,         src: a, expect: "W" },
            Probe { name: "A -> broadcast", from: Who::A, dst: BROADCAST, src: a, expect: if hairpin { "A W" } else { "W" } },
        ];
        Step {
            label: format!("list S, {}", hairpin_label(hairpin)),
            hairpin,
            macaddr: (!hairpin).then(|| ("add", vec![S])),
            probes,
        }
    };
    // After each change of the list: frames from S, T and U to an unknown MAC.
    let change = |label: &str, op: &'static str, macs: Vec<[u8; 6]>, list: &[[u8; 6]]| {
        let expect = |m: [u8; 6]| if list.contains(&m) { listed("A H") } else { "H" };
        Step {
            label: label.to_string(),
            hairpin: false,
            macaddr: Some((op, macs)),
            probes: vec![
                Probe { name: "S -> unknown", from: Who::W, dst: OUTSIDE, src: S, expect: expect(S) },
                Probe { name: "T -> unknown", from: Who::W, dst: OUTSIDE, src: T, expect: expect(T) },
                Probe { name: "U -> unknown", from: Who::W, dst: OUTSIDE, src: U, expect: expect(U) },
            ],
        }
    };
    vec![
        first(false),
        first(true),
        change("add T -> list S T", "add", vec![T], &[S, T]),
        change("del S -> list T", "del", vec![S], &[T]),
        change("set S U -> list S U", "set", vec![S, U], &[S, U]),
        change("flush -> list empty", "flush", vec![], &[]),
    ]
}

/// A kernel macvlan child of eth1 as eth0 of container i; `mac` None keeps the one it was given
/// (a passthru child inherits the parent's).
fn kernel_child(lab: &Lab, i: usize, mode: Mode, mac: Option<[u8; 6]>) {
    let (dp, c) = (&lab.dp.name, &lab.c(i).name);
    let nodst = if mode.nodst() { " nodst" } else { "" };
    ok_words(&format!(
        "ip -n {dp} link add link eth1 name mv{i} mtu {PARENT_MTU} type macvlan mode {}{nodst}",
        mode.name()
    ));
    ok_words(&format!("ip -n {dp} link set mv{i} netns {c}"));
    let address = mac.map(|m| format!(" address {}", mac_str(m))).unwrap_or_default();
    ok_words(&format!("ip -n {c} link set mv{i} name eth0{address}"));
    ok_words(&format!("ip -n {c} link set eth0 up"));
}

fn kernel_attach(ml: &ModeLab, mode: Mode) {
    let lab = &ml.lab;
    for (i, mac) in mode.endpoints() {
        kernel_child(lab, i, mode, mac);
    }
    if mode.has_c() {
        kernel_child(lab, 3, Mode::Bridge, Some(container_mac(3)));
    }
    if mode == Mode::Passthru {
        // macvlan_common_newlink: "Only 1 macvlan device can be created in passthru mode".
        let second = format!("ip -n {} link add link eth1 name mv9 type macvlan mode passthru", lab.dp.name);
        let second = run(&second.split_whitespace().collect::<Vec<_>>());
        assert!(!second.status.success(), "the kernel accepted a second child on a passthru parent");
    }
}

fn kernel_detach(ml: &ModeLab) {
    for c in &ml.lab.containers {
        if c.links().contains(&"eth0".to_string()) {
            c.ok(&["ip", "link", "del", "eth0"]);
        }
    }
}

fn xmacvlan_attach(ml: &ModeLab, mode: Mode) -> Daemon {
    let lab = &ml.lab;
    let daemon = Daemon::start(lab);
    let mode_opt = format!("macvlan_mode={}", mode.name());
    let mut create =
        vec!["network", "create", "-d", "macvlan", "--subnet", MODE_SUBNET, "-o", "parent=eth1", "-o", &mode_opt];
    if mode.nodst() {
        create.extend_from_slice(&["-o", "nodst=true"]);
    }
    create.push("modenet");
    lab.cli_ok(&create);
    for (i, mac) in mode.endpoints() {
        let ip = format!("198.18.1.{}", 10 + i);
        let mac = mac.map(mac_str);
        let path = lab.c(i).path();
        let mut args = vec!["network", "connect", "--ip", &ip];
        if let Some(m) = &mac {
            args.extend_from_slice(&["--mac-address", m]);
        }
        args.extend_from_slice(&["modenet", &path]);
        lab.cli_ok(&args);
    }
    if mode.has_c() {
        lab.cli_ok(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            BRIDGE_SUBNET,
            "-o",
            "parent=eth1",
            "-o",
            "macvlan_mode=bridge",
            "bridgenet",
        ]);
        let mac = mac_str(container_mac(3));
        lab.cli_ok(&[
            "network",
            "connect",
            "--ip",
            "198.18.2.13",
            "--mac-address",
            &mac,
            "bridgenet",
            &lab.c(3).path(),
        ]);
    }
    if mode == Mode::Passthru {
        let second = lab.cli(&["network", "connect", "--ip", "198.18.1.12", "modenet", &lab.c(2).path()]);
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(!second.status.success(), "xmacvlan accepted a second endpoint on a passthru network");
        assert!(err.contains("passthru"), "the refusal should mention passthru: {err}");
    }
    daemon
}

fn xmacvlan_detach(ml: &ModeLab, mode: Mode) {
    let lab = &ml.lab;
    for (i, _) in mode.endpoints() {
        lab.cli_ok(&["network", "disconnect", "modenet", &lab.c(i).path()]);
    }
    lab.cli_ok(&["network", "rm", "modenet"]);
    if mode.has_c() {
        lab.cli_ok(&["network", "disconnect", "bridgenet", &lab.c(3).path()]);
        lab.cli_ok(&["network", "rm", "bridgenet"]);
    }
}

/// Changes A's source-mode allow-list.
fn macaddr(ml: &ModeLab, backend: Backend, op: &str, macs: &[[u8; 6]]) {
    let list: Vec<String> = macs.iter().map(|m| mac_str(*m)).collect();
    match backend {
        Backend::Kernel => {
            ok_words(&format!(
                "ip -n {} link set dev eth0 type macvlan macaddr {op} {}",
                ml.lab.c(1).name,
                list.join(" ")
            ));
        }
        Backend::Xmacvlan => {
            let path = ml.lab.c(1).path();
            let mut args = vec!["network", "macaddr", op, "modenet", &path];
            args.extend(list.iter().map(String::as_str));
            ml.lab.cli_ok(&args);
        }
    }
}

/// One socket per receiver, opened after the endpoints exist.
struct Taps {
    sockets: Vec<(Who, RawSocket)>,
}

impl Taps {
    fn open(ml: &ModeLab, mode: Mode) -> Self {
        let lab = &ml.lab;
        let sockets = mode
            .receivers()
            .iter()
            .map(|&who| {
                let s = match who {
                    Who::A => RawSocket::open(lab.c(1), "eth0"),
                    Who::B => RawSocket::open(lab.c(2), "eth0"),
                    Who::C => RawSocket::open(lab.c(3), "eth0"),
                    Who::W => RawSocket::open(&ml.outside, "eth0"),
                    Who::H => RawSocket::open_protocol(&lab.dp, "eth1", MARK_TYPE),
                };
                (who, s)
            })
            .collect();
        Taps { sockets }
    }

    fn of(&self, who: Who) -> &RawSocket {
        &self.sockets.iter().find(|(w, _)| *w == who).expect("a sender is also a receiver").1
    }

    /// Sends every probe of a step at once (one marker, the probe's index after it) and counts the
    /// copies each receiver got of each.
    fn send(&self, probes: &[Probe]) -> Vec<Vec<usize>> {
        let mark = marker();
        for (i, p) in probes.iter().enumerate() {
            let mut f = frame(p.dst, p.src, &mark, 60);
            f[INDEX_AT..INDEX_AT + 2].copy_from_slice(&(i as u16).to_be_bytes());
            self.of(p.from).send(&f);
        }
        let mut seen = vec![vec![0; self.sockets.len()]; probes.len()];
        for (k, (_, s)) in self.sockets.iter().enumerate() {
            let wait = if k == 0 { SETTLE } else { Duration::from_millis(20) };
            for f in s.collect(&mark, wait) {
                let i = u16::from_be_bytes([f[INDEX_AT], f[INDEX_AT + 1]]) as usize;
                seen[i][k] += 1;
            }
        }
        seen
    }
}

/// Attaches `backend`, runs every step, detaches; eth1 keeps its MAC throughout.
fn run_backend(ml: &ModeLab, mode: Mode, backend: Backend, steps: &[Step]) -> Seen {
    let daemon = match backend {
        Backend::Kernel => {
            kernel_attach(ml, mode);
            None
        }
        Backend::Xmacvlan => Some(xmacvlan_attach(ml, mode)),
    };
    let a = ml.lab.c(1).mac("eth0");
    assert_eq!(mac_str(a), mac_str(ml.a_mac(mode)), "{backend:?}: A's MAC");
    let taps = Taps::open(ml, mode);
    let seen = steps
        .iter()
        .map(|step| {
            ml.hairpin(step.hairpin);
            if let Some((op, macs)) = &step.macaddr {
                macaddr(ml, backend, op, macs);
            }
            std::thread::sleep(Duration::from_millis(100));
            taps.send(&step.probes)
        })
        .collect();
    drop(taps);
    match backend {
        Backend::Kernel => kernel_detach(ml),
        Backend::Xmacvlan => xmacvlan_detach(ml, mode),
    }
    drop(daemon);
    assert_eq!(mac_str(ml.lab.dp.mac("eth1")), mac_str(ml.parent_mac), "{backend:?}: eth1's MAC after the run");
    seen
}

/// Receiver letters with a copy count above one spelled out ("A C×2"); "-" for nobody.
fn who_got(mode: Mode, counts: &[usize]) -> String {
    let got: Vec<String> = mode
        .receivers()
        .iter()
        .zip(counts)
        .filter(|(_, &n)| n > 0)
        .map(|(w, &n)| if n == 1 { w.letter().to_string() } else { format!("{}×{n}", w.letter()) })
        .collect();
    if got.is_empty() {
        "-".to_string()
    } else {
        got.join(" ")
    }
}

/// Prints the mode's table and returns its problems: kernel rows that are not what macvlan.c says,
/// and xmacvlan rows that are not what the kernel did.
fn report(mode: Mode, steps: &[Step], kernel: &Seen, xmv: Option<&Seen>) -> Vec<String> {
    let mut problems = Vec::new();
    println!("\n{}", mode.title());
    println!("cells: copies received, {}", if xmv.is_some() { "kernel/xmacvlan" } else { "kernel (xmacvlan not run)" });
    let heads: Vec<&str> = mode.receivers().iter().map(|w| w.letter()).collect();
    println!(
        "{:<24} {:<22} {} {:<10} {:<6} xmacvlan",
        "step",
        "frame",
        heads.iter().map(|h| format!("{h:<5}")).collect::<String>(),
        "macvlan.c",
        "kernel"
    );
    for (si, step) in steps.iter().enumerate() {
        for (pi, probe) in step.probes.iter().enumerate() {
            let k = &kernel[si][pi];
            let x = xmv.map(|x| &x[si][pi]);
            let cells: String = (0..k.len())
                .map(|r| {
                    let cell = match x {
                        Some(x) => format!("{}/{}", k[r], x[r]),
                        None => k[r].to_string(),
                    };
                    format!("{cell:<5}")
                })
                .collect();
            let kernel_ok = who_got(mode, k) == probe.expect;
            let same = x.map(|x| x == k);
            println!(
                "{:<24} {:<22} {cells} {:<10} {:<6} {}",
                step.label,
                probe.name,
                probe.expect,
                if kernel_ok { "ok" } else { "FAIL" },
                match same {
                    Some(true) => "same",
                    Some(false) => "DIFF",
                    None => "-",
                }
            );
            let row = format!("{} / {}", step.label, probe.name);
            if !kernel_ok {
                problems.push(format!("kernel {row}: macvlan.c says {}, got {}", probe.expect, who_got(mode, k)));
            }
            if let (Some(x), Some(false)) = (x, same) {
                problems.push(format!("xmacvlan {row}: kernel {}, xmacvlan {}", who_got(mode, k), who_got(mode, x)));
            }
        }
    }
    problems
}

fn xmacvlan_vs_kernel(mode: Mode) {
    let ml = ModeLab::new();
    let steps = steps(mode, &ml);
    let kernel = run_backend(&ml, mode, Backend::Kernel, &steps);
    let xmv = run_backend(&ml, mode, Backend::Xmacvlan, &steps);
    let problems = report(mode, &steps, &kernel, Some(&xmv));
    assert!(problems.is_empty(), "{}:\n{}", mode.title(), problems.join("\n"));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_bridge() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Bridge);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_private() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Private);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_vepa() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Vepa);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_passthru() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Passthru);
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_source() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Source { nodst: false });
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn xmacvlan_vs_kernel_source_nodst() {
    require_root!();
    xmacvlan_vs_kernel(Mode::Source { nodst: true });
}

/// ping A → B with the switch hairpinning, for both backends: (kernel, xmacvlan) succeeded.
fn ping_through_hairpin(mode: Mode) -> (bool, bool) {
    let ml = ModeLab::new();
    ml.hairpin(true);
    let ping = || {
        let out = ml.lab.c(1).exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.1.12"]);
        out.status.success()
    };
    kernel_attach(&ml, mode);
    for i in [1, 2] {
        ml.lab.c(i).ok(&["ip", "addr", "add", &format!("198.18.1.{}/24", 10 + i), "dev", "eth0"]);
    }
    let kernel = ping();
    kernel_detach(&ml);
    let daemon = xmacvlan_attach(&ml, mode);
    let xmv = ping();
    xmacvlan_detach(&ml, mode);
    drop(daemon);
    println!("ping A -> B through a hairpinning switch, {}: kernel {kernel}, xmacvlan {xmv}", mode.name());
    (kernel, xmv)
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn ping_through_a_hairpin_vepa_endpoints_reach_each_other() {
    require_root!();
    assert_eq!(ping_through_hairpin(Mode::Vepa), (true, true));
}

#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn ping_through_a_hairpin_private_endpoints_never_do() {
    require_root!();
    assert_eq!(ping_through_hairpin(Mode::Private), (false, false));
}

/// A passthru endpoint with a MAC of its own gives the parent that MAC (macvlan_set_mac_address
/// sets the lower device's); the parent's own comes back when the endpoint goes.
#[test]
#[ignore = "needs root (network namespaces, XDP); `make test` runs it"]
fn passthru_mac_is_the_parents_and_a_new_one_is_given_back() {
    require_root!();
    let ml = ModeLab::new();
    let own = mac_str(ml.parent_mac);
    let new = "02:42:c6:12:00:77";
    let eth1 = || mac_str(ml.lab.dp.mac("eth1"));
    // Kernel: the child's address change goes to eth1; deleting the child restores eth1's.
    kernel_attach(&ml, Mode::Passthru);
    ml.lab.c(1).ok(&["ip", "link", "set", "eth0", "address", new]);
    let kernel = (eth1(), mac_str(ml.lab.c(1).mac("eth0")));
    kernel_detach(&ml);
    std::thread::sleep(SETTLE);
    let kernel_after = eth1();
    // xmacvlan: --mac-address on a passthru network does the same.
    let daemon = Daemon::start(&ml.lab);
    ml.lab.cli_ok(&[
        "network",
        "create",
        "--subnet",
        MODE_SUBNET,
        "-o",
        "parent=eth1",
        "-o",
        "macvlan_mode=passthru",
        "pt",
    ]);
    let path = ml.lab.c(1).path();
    ml.lab.cli_ok(&["network", "connect", "--ip", "198.18.1.11", "--mac-address", new, "pt", &path]);
    let xmv = (eth1(), mac_str(ml.lab.c(1).mac("eth0")));
    let promisc = ml.lab.dp.ok(&["ip", "link", "show", "eth1"]).contains("PROMISC");
    ml.lab.cli_ok(&["network", "disconnect", "pt", &path]);
    let xmv_after = eth1();
    let promisc_after = ml.lab.dp.ok(&["ip", "link", "show", "eth1"]).contains("PROMISC");
    ml.lab.cli_ok(&["network", "rm", "pt"]);
    drop(daemon);
    println!("passthru MAC: eth1 {own}; child set to {new}: kernel eth1/child {kernel:?}, after {kernel_after}");
    println!(
        "              xmacvlan eth1/endpoint {xmv:?} (promisc {promisc}), after {xmv_after} (promisc {promisc_after})"
    );
    assert_eq!(kernel, (new.to_string(), new.to_string()));
    assert_eq!(kernel_after, own);
    assert_eq!(xmv, kernel);
    assert_eq!(xmv_after, own);
    assert!(promisc && !promisc_after, "the parent is promiscuous while the passthru endpoint exists");
}
