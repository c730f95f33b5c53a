//! The lab for end-to-end tests, on the shared one (`xmacvlan-lab`: namespace guards, the OS layer,
//! the wire and macvlan children, the daemon process): the tests' topology (a wire host, the parent's
//! namespace, container namespaces), the daemon of a test, raw-socket senders and receivers, and the
//! two backends (kernel macvlan, xmacvlan) behind one interface so the same checks run against both.
//! Here failures panic, with what failed: a test's assertion.
//!
//! Addresses come from 198.18.0.0/15 only. Nothing outside the lab's namespaces is touched.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use xmacvlan_ctl::api::{Attachment, CniAdd, CniIp, CniNetwork};
use xmacvlan_lab::sys::{self, PacketSocket};
use xmacvlan_lab::topology::{self, End, MacvlanChild};
use xmacvlan_lab::{DaemonProcess, DaemonSpec};

pub mod frames;
pub mod podman;
pub mod stats;
pub mod vlan;
pub const BIN: &str = env!("CARGO_BIN_EXE_xmacvlan");
pub const MARK_TYPE: u16 = 0x88b5; // IEEE 802 local experimental EtherType
pub const SUBNET: &str = "198.18.0.0/24";
pub const GATEWAY: &str = "198.18.0.254";
pub const HOST_IP: &str = "198.18.0.253";
pub const PARENT_MTU: u32 = 3000;

/// Everything here needs CAP_NET_ADMIN and BPF. The end-to-end tests are `#[ignore]`d with that
/// reason, so a plain `cargo test` lists them as ignored instead of passing them silently; `make test`
/// runs them (`--include-ignored`), as root. Run without root they fail here, saying why.
#[macro_export]
macro_rules! require_root {
    () => {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "end-to-end tests need root (network namespaces, XDP): run them as root, e.g. `make test`");
    };
}

/// Runs a command, returning its output.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command given as one whitespace-separated string (no quoting needed for `ip` commands).
pub fn ok_words(cmd: &str) -> String {
    ok(&cmd.split_whitespace().collect::<Vec<_>>())
}

/// Runs `ip -batch` on `script` (one command per line, without the leading `ip`); with `force`
/// it goes on past failing lines (`-force`). Returns the output; the caller judges the status.
pub fn ip_batch(script: &str, force: bool) -> Output {
    xmacvlan_lab::cmd::ip_batch(None, script, force).unwrap_or_else(|e| panic!("running ip -batch: {e}"))
}

/// The lab's namespace guard, with the tests' panicking conveniences ([`NetnsExt`]).
pub use xmacvlan_lab::Netns;

/// What the tests ask of a namespace; a failure panics with the command and its output.
pub trait NetnsExt: Sized {
    fn new(name: String) -> Self;
    /// Many at once ([`Netns::create_many`]); drop them with [`Netns::remove_all`] where many go at once.
    fn many(names: impl IntoIterator<Item = String>) -> Vec<Self>;
    fn exec(&self, args: &[&str]) -> Output;
    fn ok(&self, args: &[&str]) -> String;
    /// rx_packets of an interface in this namespace.
    fn rx_packets(&self, ifname: &str) -> u64;
    fn mac(&self, ifname: &str) -> [u8; 6];
    /// Names of the links in this namespace.
    fn links(&self) -> Vec<String>;
    /// Links in this namespace with an XDP program attached.
    fn xdp_links(&self) -> Vec<String>;
    /// Interfaces on the endpoints' shared tc block, whose filter runs xmv_endpoint_tc (a clsact
    /// qdisc with that ingress block; `ip link` does not show it).
    fn block_links(&self) -> Vec<String>;
}

impl NetnsExt for Netns {
    fn new(name: String) -> Self {
        Netns::create(name).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn many(names: impl IntoIterator<Item = String>) -> Vec<Self> {
        Netns::create_many(names).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    fn ok(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        ok(&full)
    }

    fn rx_packets(&self, ifname: &str) -> u64 {
        let out = ok(&["ip", "-n", &self.name, "-s", "-j", "link", "show", ifname]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    }

    fn mac(&self, ifname: &str) -> [u8; 6] {
        let out = ok(&["ip", "-n", &self.name, "-j", "link", "show", ifname]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        parse_mac(v[0]["address"].as_str().expect("address"))
    }

    fn links(&self) -> Vec<String> {
        let out = ok(&["ip", "-n", &self.name, "-j", "link", "show"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect()
    }

    fn xdp_links(&self) -> Vec<String> {
        let out = ok(&["ip", "-n", &self.name, "-d", "-j", "link", "show"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j output");
        v.as_array()
            .unwrap()
            .iter()
            .filter(|l| !l["xdp"].is_null())
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    fn block_links(&self) -> Vec<String> {
        let out = ok(&["tc", "-n", &self.name, "-j", "qdisc", "show"]);
        let v: Value = serde_json::from_str(&out).expect("tc -j output");
        let block = u64::from(xmacvlan_datapath::bpf::block::BLOCK);
        v.as_array()
            .unwrap()
            .iter()
            .filter(|q| q["kind"] == "clsact" && q["ingress_block"].as_u64() == Some(block))
            .map(|q| q["dev"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Polls `f` every 20 ms until it holds, up to `limit`; how long it took, None if it never held.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether the suites run in the forced-userspace configuration (XMACVLAN_TEST_FAST_PATH=off: the
/// daemons the tests start send every frame through AF_XDP and the workers).
pub fn forced_userspace() -> bool {
    std::env::var("XMACVLAN_TEST_FAST_PATH").is_ok_and(|f| f == "off")
}

/// Runs `f` on a thread of its own that first joins the network namespace at `path`, and returns
/// what `f` returns ([`sys::in_netns`]). A panic in `f` is re-raised here with its message.
pub fn in_netns<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    sys::in_netns(path, f).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `f` once per namespace, in order, on one thread that joins each in turn
/// ([`sys::in_each_netns`]): for hundreds of namespaces one thread, not a thread or an `ip netns
/// exec` process each. A panic in `f` is re-raised here with its message.
pub fn in_each_netns<'a, T: Send>(
    namespaces: impl IntoIterator<Item = &'a Netns>,
    mut f: impl FnMut(&Netns) -> T + Send,
) -> Vec<T> {
    let namespaces: Vec<&Netns> = namespaces.into_iter().collect();
    let paths: Vec<String> = namespaces.iter().map(|n| n.path()).collect();
    let mut next = namespaces.into_iter();
    sys::in_each_netns(&paths, |_| f(next.next().expect("one namespace per path"))).unwrap_or_else(|e| panic!("{e}"))
}

/// Sets interface `ifname` of the calling thread's namespace up (SIOCSIFFLAGS; no process).
pub fn set_link_up_here(ifname: &str) {
    sys::set_link_up(ifname).unwrap_or_else(|e| panic!("{e}"));
}

/// Writes a sysctl of the calling thread's network namespace, e.g.
/// `write_sysctl_here("net/ipv6/conf/default/disable_ipv6", "1")` on an [`in_each_netns`] thread.
pub fn write_sysctl_here(key: &str, value: &str) {
    sys::write_sysctl(key, value).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs every command in its namespace at once (`ip netns exec`) and waits for all: 30 pings
/// that may each time out take one timeout, not thirty. Outputs in the order given.
pub fn exec_all<'a>(jobs: impl IntoIterator<Item = (&'a Netns, Vec<String>)>) -> Vec<Output> {
    let children: Vec<(Vec<String>, std::io::Result<Child>)> = jobs
        .into_iter()
        .map(|(ns, args)| {
            let child = Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            (args, child)
        })
        .collect();
    // Every child is waited for before a spawn failure is reported: none is left running.
    let outputs: Vec<(Vec<String>, std::io::Result<Output>)> =
        children.into_iter().map(|(args, c)| (args, c.and_then(|c| c.wait_with_output()))).collect();
    outputs.into_iter().map(|(args, o)| o.unwrap_or_else(|e| panic!("running {args:?}: {e}"))).collect()
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    xmacvlan_lab::parse_mac(s).unwrap_or_else(|| panic!("not a MAC address: {s:?}"))
}

pub fn mac_str(m: [u8; 6]) -> String {
    xmacvlan_lab::mac_str(&m)
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// wire (far-end host) —veth— eth1 (the parent, in `dp`) and three empty container namespaces.
pub struct Lab {
    pub tag: String,
    pub containers: Vec<Netns>,
    pub dp: Netns,
    pub wire: Netns,
    pub tmp: PathBuf,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_parent_queues(1)
    }

    /// A lab whose parent (eth1) has `queues` receive and transmit queues, for multi-worker daemons.
    pub fn with_parent_queues(queues: u32) -> Self {
        Self::build(queues, 3, std::env::temp_dir())
    }

    /// A lab with `n` empty container namespaces `c1…cn` instead of three, made in one batch
    /// ([`Netns::many`]) and removed in one when the lab is dropped: for hundreds of endpoints.
    /// The lab's files (the daemon's state, socket and log) are on tmpfs (`/dev/shm`, else the temp
    /// dir): the daemon rewrites and fsyncs its whole state file on every connect and disconnect,
    /// which with hundreds of endpoints on a shared disk costs more than the rest of the connect.
    pub fn with_containers(n: usize) -> Self {
        let shm = std::path::Path::new("/dev/shm");
        Self::build(1, n, if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() })
    }

    /// `queues` on the parent, `n` containers, the lab's files in a directory of its own in `base`.
    fn build(queues: u32, n: usize, base: PathBuf) -> Self {
        let tag = format!("xmvt{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let tmp = base.join(&tag);
        let wire = Netns::new(format!("{tag}-wire"));
        let dp = Netns::new(format!("{tag}-dp"));
        let containers = Netns::many((1..=n).map(|i| format!("{tag}-c{i}")));
        std::fs::create_dir_all(&tmp).unwrap();
        let (w, p) = (End { netns: &wire.name, ifname: "wire0" }, End { netns: &dp.name, ifname: "eth1" });
        topology::veth_pair(w, p, PARENT_MTU, queues).unwrap_or_else(|e| panic!("{e:#}"));
        ok(&["ip", "-n", &wire.name, "addr", "add", &format!("{GATEWAY}/24"), "dev", "wire0"]);
        ok(&["ip", "-n", &dp.name, "addr", "add", &format!("{HOST_IP}/24"), "dev", "eth1"]);
        ok(&["ip", "-n", &wire.name, "link", "set", "wire0", "up"]);
        ok(&["ip", "-n", &dp.name, "link", "set", "eth1", "up"]);
        Lab { tag, containers, dp, wire, tmp }
    }

    pub fn c(&self, i: usize) -> &Netns {
        &self.containers[i - 1]
    }

    pub fn socket(&self) -> String {
        self.tmp.join("x.sock").to_string_lossy().into_owned()
    }

    /// Runs the CLI against this lab's daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        let sock = self.socket();
        let mut full = vec![BIN, "--socket", &sock];
        full.extend_from_slice(args);
        run(&full)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "xmacvlan {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn stats(&self) -> Value {
        serde_json::from_str(&self.cli_ok(&["stats", "--format", "json"])).expect("stats JSON")
    }

    /// The stats object of the endpoint port whose MAC is `mac`.
    pub fn port_stats(&self, mac: [u8; 6]) -> Value {
        let s = self.stats();
        let m = mac_str(mac);
        s["networks"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["mac"] == m.as_str())
            .cloned()
            .expect("port in stats")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
        // The containers go first, in one batch; dp and wire by their own guards.
        Netns::remove_all(std::mem::take(&mut self.containers));
    }
}

/// The daemon, running inside the lab's `dp` namespace ([`DaemonProcess`]); stopped with SIGTERM
/// when dropped.
pub struct Daemon(DaemonProcess);

impl Lab {
    /// The daemon's state directory (kept across daemon restarts within one lab).
    pub fn state_dir(&self) -> PathBuf {
        self.tmp.join("state")
    }
}

impl Daemon {
    pub fn start(lab: &Lab) -> Self {
        Self::start_with(lab, &[])
    }

    fn spawn(lab: &Lab, extra: &[&str]) -> DaemonProcess {
        // One worker on CPU 1 unless the caller says otherwise.
        let mut args: Vec<String> = if extra.contains(&"--cpus") { vec![] } else { vec!["--cpus".into(), "1".into()] };
        // XMACVLAN_TEST_FAST_PATH=off runs the suites in the forced-userspace configuration (every
        // frame through AF_XDP and the workers); a test about one configuration names it itself.
        let forced = std::env::var("XMACVLAN_TEST_FAST_PATH").ok().filter(|_| {
            !extra.iter().any(|a| *a == "--fast-path" || a.starts_with("--fast-path=") || *a == "--xdp-fast-path")
        });
        args.extend(forced.into_iter().flat_map(|f| ["--fast-path".to_string(), f]));
        args.extend(extra.iter().map(|a| a.to_string()));
        let socket = lab.socket();
        let spec = DaemonSpec {
            bin: Path::new(BIN),
            netns: &lab.dp.name,
            socket: Path::new(&socket),
            state_dir: &lab.state_dir(),
            log: &lab.tmp.join("daemon.log"),
            args: &args,
            own_process_group: false,
        };
        DaemonProcess::spawn(&spec).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs the daemon expecting it to refuse to start; returns its exit status and log.
    pub fn refused(lab: &Lab, extra: &[&str]) -> (std::process::ExitStatus, String) {
        let mut d = Self::spawn(lab, extra);
        let status = d.wait_exit(Duration::from_secs(15)).unwrap_or_else(|e| panic!("did not refuse to start: {e:#}"));
        (status, std::fs::read_to_string(d.log_path()).unwrap_or_default())
    }

    /// The daemon's PID (`ip netns exec` execs it: the same process).
    pub fn pid(&self) -> i32 {
        self.0.pid()
    }

    /// Whether the daemon is still running (not exited, not stopped by us).
    pub fn alive(&mut self) -> bool {
        self.0.running()
    }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    pub fn kill9(&mut self) {
        self.0.kill9();
    }

    pub fn start_with(lab: &Lab, extra: &[&str]) -> Self {
        let mut d = Self::spawn(lab, extra);
        d.wait_listening(Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e:#}"));
        Daemon(d)
    }

    /// The daemon's log (stdout and stderr; a restarted daemon's follows the previous one's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.0.log_path()).unwrap_or_default()
    }

    /// SIGTERM and wait; returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        self.0.stop(Duration::from_secs(10)).is_none_or(|s| s.success())
    }
}

/// How a container is attached to the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Xmacvlan,
}

/// Container i gets MAC 02:42:c6:12:00:1i and address 198.18.0.1i.
pub fn container_mac(i: usize) -> [u8; 6] {
    [0x02, 0x42, 0xc6, 0x12, 0x00, 0x10 + i as u8]
}

pub fn container_ip(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}

/// Attaches container `i` with the given backend (`mtu` None = the parent's).
pub fn attach(lab: &Lab, backend: Backend, i: usize, mtu: Option<u32>) {
    let mac = mac_str(container_mac(i));
    let ip = container_ip(i);
    let c = lab.c(i);
    match backend {
        Backend::Kernel => {
            let child = MacvlanChild { netns: &c.name, ifname: "eth0", mac: container_mac(i), mtu, mode: "bridge" };
            topology::macvlan_children(&lab.dp.name, "eth1", &[child]).unwrap_or_else(|e| panic!("{e:#}"));
            ok(&["ip", "-n", &c.name, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ok(&["ip", "-n", &c.name, "link", "set", "eth0", "up"]);
        }
        Backend::Xmacvlan => {
            let path = c.path();
            let mtu_s = mtu.map(|m| m.to_string());
            let mut args = vec!["network", "connect", "--ip", &ip, "--mac-address", &mac];
            if let Some(m) = &mtu_s {
                args.extend_from_slice(&["--mtu", m]);
            }
            args.extend_from_slice(&["labnet", &path]);
            lab.cli_ok(&args);
        }
    }
}

/// An AF_PACKET socket bound to one interface of one namespace (the socket keeps that namespace).
pub struct RawSocket(PacketSocket);

impl RawSocket {
    /// Receives every frame on the interface (ETH_P_ALL): such a tap sees what arrives before an
    /// rx_handler (macvlan, a bridge) takes it.
    pub fn open(ns: &Netns, ifname: &str) -> Self {
        Self::open_protocol(ns, ifname, libc::ETH_P_ALL as u16)
    }

    /// Receives only frames of `ethertype` that the interface's own stack gets: a protocol handler
    /// runs after rx_handlers and XDP, so this sees what the host receives on that interface.
    pub fn open_protocol(ns: &Netns, ifname: &str, ethertype: u16) -> Self {
        let path = ns.path();
        in_netns(&path, || Self::open_here(ifname, ethertype, &path))
    }

    /// [`RawSocket::open_protocol`] on interface `ifname` of every namespace, from one thread
    /// ([`in_each_netns`]): hundreds of sockets in milliseconds. In the order given.
    pub fn open_each<'a>(namespaces: impl IntoIterator<Item = &'a Netns>, ifname: &str, ethertype: u16) -> Vec<Self> {
        in_each_netns(namespaces, |ns| Self::open_here(ifname, ethertype, &ns.path()))
    }

    /// Opens the socket in the calling thread's namespace (`path` names it in messages).
    fn open_here(ifname: &str, ethertype: u16, path: &str) -> Self {
        RawSocket(PacketSocket::open(ifname, ethertype, &[]).unwrap_or_else(|e| panic!("in {path}: {e}")))
    }

    pub fn send(&self, frame: &[u8]) {
        self.0.send(frame).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Frames received (not our own outgoing ones) carrying `marker`, until `wait` passes.
    pub fn collect(&self, marker: &[u8; 8], wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return got;
            }
            if !self.0.readable(left.max(Duration::from_millis(1))) {
                continue;
            }
            let Ok(Some(n)) = self.recv_incoming(&mut buf) else { continue };
            let f = &buf[..n];
            if f.windows(8).any(|w| w == marker) {
                got.push(f.to_vec());
            }
        }
    }

    /// Every frame received (not our own outgoing ones) until `wait` passes.
    pub fn collect_all(&self, wait: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
            if self.0.readable(left.max(Duration::from_millis(1))) {
                if let Ok(Some(n)) = self.recv_incoming(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
        }
        got
    }

    /// How many received frames carrying `marker` are queued now; reads everything queued and
    /// never blocks.
    pub fn count_queued(&self, marker: &[u8; 8]) -> usize {
        if !self.0.readable(Duration::ZERO) {
            return 0;
        }
        let mut buf = vec![0u8; 65536];
        let mut n_marked = 0;
        loop {
            match self.recv_incoming(&mut buf) {
                Ok(Some(n)) if buf[..n].windows(8).any(|w| w == marker) => n_marked += 1,
                Ok(_) => {}
                Err(_) => return n_marked,
            }
        }
    }

    /// Reads one queued frame without blocking: Ok(Some(len)) for a received frame, Ok(None) for
    /// our own outgoing one or an interrupted call, Err when nothing is queued.
    fn recv_incoming(&self, buf: &mut [u8]) -> Result<Option<usize>, std::io::Error> {
        match self.0.recv(buf) {
            Ok((n, kind)) => Ok((!kind.outgoing()).then_some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How many frames carrying `marker` each socket receives: reads all of them (without blocking)
/// until every socket has at least one or `wait` has passed, then once more after `linger`, so
/// that copies arriving late and duplicates are counted too. One count per socket, in order.
pub fn count_marked_each(sockets: &[RawSocket], marker: &[u8; 8], wait: Duration, linger: Duration) -> Vec<usize> {
    let deadline = Instant::now() + wait;
    let mut counts = vec![0usize; sockets.len()];
    loop {
        for (c, s) in counts.iter_mut().zip(sockets) {
            *c += s.count_queued(marker);
        }
        if counts.iter().all(|&c| c > 0) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(linger);
    for (c, s) in counts.iter_mut().zip(sockets) {
        *c += s.count_queued(marker);
    }
    counts
}

/// A marked test frame: dst, src, EtherType 0x88b5 (or `ethertype`), marker, padding to `len`.
pub fn frame(dst: [u8; 6], src: [u8; 6], marker: &[u8; 8], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&MARK_TYPE.to_be_bytes());
    f.extend_from_slice(marker);
    f.resize(len.max(60), 0x5a);
    f
}

static MARKS: AtomicUsize = AtomicUsize::new(1);

/// A marker unique within this test process.
pub fn marker() -> [u8; 8] {
    let n = MARKS.fetch_add(1, Ordering::Relaxed) as u32;
    let p = std::process::id();
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&p.to_be_bytes());
    m[4..].copy_from_slice(&n.to_be_bytes());
    m
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
pub const OUTSIDE: [u8; 6] = [0x02, 0x00, 0xc6, 0x12, 0x00, 0x99];

/// What the CNI plugin asks the daemon for an ADD of attachment `id` (CNI_IFNAME net1) of
/// namespace `netns` on the CNI network cninet (master eth1, bridge), once its IPAM plugin has
/// given `ip`: for tests that drive the daemon's CNI half without the plugin.
pub fn cni_request(id: &str, netns: &str, ip: &str) -> CniAdd {
    CniAdd {
        network: CniNetwork {
            name: "cninet".into(),
            master: Some("eth1".into()),
            driver: "macvlan".into(),
            mode: "bridge".into(),
            ipvlan_flag: None,
            spoof_check: true,
            ip_guard: false,
        },
        attachment: cni_attachment(id),
        netns: netns.into(),
        mtu: 0,
        mac: None,
        ips: vec![CniIp { address: ip.parse().expect("an address with its prefix"), gateway: None }],
        routes: Vec::new(),
    }
}

/// Attachment `id` (CNI_IFNAME net1) of [`cni_request`].
pub fn cni_attachment(id: &str) -> Attachment {
    Attachment { container_id: id.into(), ifname: "net1".into() }
}
